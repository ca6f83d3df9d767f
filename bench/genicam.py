"""GenICam source rate: frames per second that ``GenicamSource.read()`` hands to the pipeline.

Usage:
  python bench/genicam.py [--width 1280] [--height 1024] [--format Mono8] [--seconds 3] [--json-only]

What it measures: Aravis's in-process simulated camera (the Fake interface, no network) at the
given sensor ROI and ``AcquisitionFrameRate`` 1000 (its maximum), read through the real source for
``--seconds``: frames/s, and per frame the time to take the bytes out of the Aravis buffer (the one
copy PyGObject makes) and to convert them to the pipeline's BGR array. The fake camera draws its
test pattern on the same CPU, so the rate is a lower bound of what the source sustains.

Prints one JSON object, then one human line (unless --json-only). Needs Aravis + PyGObject
(``tools/bootstrap.sh``); exits 2 saying so without them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.sources.base import SourceError  # noqa: E402
from edge_inspector.sources.genicam import GenicamSource, GenicamSourceConfig, frame_to_bgr  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--format", default="Mono8", choices=["Mono8", "BayerRG8", "RGB8"])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args(argv)
    cfg = GenicamSourceConfig(type="genicam", fake_interface=True, pixel_format=args.format,
                              roi=[0, 0, args.width, args.height], frame_rate=1000, buffers=16)
    src = GenicamSource("bench", cfg)
    try:
        src.open()
    except SourceError as exc:
        print(f"bench/genicam.py: {exc}", file=sys.stderr)
        return 2
    copy_s = convert_s = 0.0
    try:
        src.read()  # warm-up: the first buffer
        n, errors = 0, 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            frame = src.read()
            n += 1
            errors += frame.error is not None
        elapsed = time.perf_counter() - t0
        # the two per-frame costs on the source's side, on one buffer popped directly
        buf = src.stream.timeout_pop_buffer(2_000_000)
        reps = 50
        t = time.perf_counter()
        for _ in range(reps):
            data = buf.get_data()
        copy_s = (time.perf_counter() - t) / reps
        t = time.perf_counter()
        for _ in range(reps):
            frame_to_bgr(data, buf.get_image_width(), buf.get_image_height(), args.format)
        convert_s = (time.perf_counter() - t) / reps
        src.stream.push_buffer(buf)
    finally:
        src.close()
    result = {"bench": "genicam_source", "camera": "Aravis Fake", "width": args.width, "height": args.height,
              "pixel_format": args.format, "seconds": round(elapsed, 3), "frames": n, "error_frames": errors,
              "fps": round(n / elapsed, 1), "buffer_copy_ms": round(copy_s * 1000, 3),
              "to_bgr_ms": round(convert_s * 1000, 3)}
    print(json.dumps(result))
    if not args.json_only:
        print(f"GenICam source: {result['fps']} frames/s of {args.width}x{args.height} {args.format} "
              f"(buffer copy {result['buffer_copy_ms']} ms, to BGR {result['to_bgr_ms']} ms per frame)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
