"""Throughput and latency of the whole daemon in replay mode, next to raw ONNX Runtime on the same frames.

Usage:
  python bench/throughput.py [--model CARD] [--frames N] [--size PX] [--batch-max B] [--threads T]
                             [--rate FPS] [--eager] [--json-only]

What it does: writes N generated frames (PNG, dark parts, every 5th with a bright defect) to a
temporary folder, runs the real daemon in-process (``Daemon``: replay source -> preprocess -> batched
inference -> decision -> JSONL publisher) over them, and reads every verdict's ``latency_ms.total``
(capture -> decision). It then times ONNX Runtime alone on the same frames, preprocessed, at batch 1
and at the daemon's batch size, so the pipeline overhead is a ratio: daemon frames/s over raw
frames/s. ``--rate`` paces the replay like a live camera (the latency target is for 10 frames/s).
``--eager`` adds the per-image PyTorch eager loop of TARGETS.md on the same frames (needs torch).

Model: ``--model CARD``; by default ``models/demo-feature-memory.card.json`` when the demo was built,
else the tiny test detector (``tests/fixtures/models.py``, built on the fly).
Prints one JSON object, then one human line (unless --json-only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

TARGETS = {"classifier_fps": 120.0, "detector_fps": 60.0, "live_p99_ms": 30.0}


def default_model(workdir: Path) -> Path:
    demo = ROOT / "models" / "demo-feature-memory.card.json"
    if demo.is_file():
        return demo
    from tests.fixtures.models import make_model

    return make_model(workdir / "models", "detector", size=64)


def write_frames(folder: Path, n: int, size: int) -> Path:
    """Dark textured parts; every 5th carries a bright square (so both verdicts occur)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = rng.integers(20, 60, size=(size, size, 3), dtype=np.uint8)
    for i in range(n):
        img = np.roll(base, i, axis=1).copy()
        if i % 5 == 4:
            s = size // 3
            img[s:2 * s, s:2 * s] = 250
        cv2.imwrite(str(folder / f"frame_{i:06d}.png"), img)
    return folder


def raw_onnxruntime(card: Path, frames: Path, threads: int, batch: int) -> dict:
    """ORT alone on the same frames, already decoded and preprocessed (the floor the daemon can reach)."""
    from edge_inspector.inference import LoadedModel
    from edge_inspector.preprocess import decode_image

    model = LoadedModel.load(card, threads=threads)
    images = [decode_image(p) for p in sorted(frames.glob("*.png"))]
    tensors = model.preprocess(images)
    model.backend.run(tensors[:1])  # warm-up
    out = {}
    for b in sorted({1, batch}):
        t0 = time.perf_counter()
        for i in range(0, len(tensors), b):
            model.backend.run(tensors[i:i + b])
        out[b] = len(tensors) / (time.perf_counter() - t0)
    return {"model": model.name, "kind": model.card.kind, "input": list(model.input_size),
            "raw_fps_batch1": round(out[1], 1), f"raw_fps_batch{batch}": round(out[batch], 1),
            "raw_fps_best": round(max(out.values()), 1)}


def eager_loop(frames: Path, size: int, threads: int) -> dict | None:
    """The reference of TARGETS.md: a per-image PyTorch eager loop as in a typical Streamlit demo
    (PIL open, resize, to tensor, forward, sigmoid) with an EfficientNet-Lite0 at ``size``.

    A speed reference only (the weights do not matter for time), so it is run on the same frames in
    the same process as the daemon. None when torch (the [train] extra) is not installed.
    """
    try:
        import torch
        from PIL import Image

        from edge_inspector.models.backbone import EfficientNetLite
    except ImportError:
        return None
    torch.set_num_threads(threads)
    net = EfficientNetLite("lite0", num_classes=1).eval()
    files = sorted(frames.glob("*.png"))
    with torch.inference_mode():
        net(torch.rand(1, 3, size, size))  # warm-up
        t0 = time.perf_counter()
        for path in files:
            image = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
            torch.sigmoid(net(x))
        elapsed = time.perf_counter() - t0
    return {"model": "efficientnet-lite0 (torch eager, batch 1)", "input": size,
            "fps": round(len(files) / elapsed, 1)}


def run_daemon(card: Path, frames: Path, workdir: Path, threads: int, batch: int, rate: float) -> dict:
    from edge_inspector.daemon import Daemon

    jsonl = workdir / "verdicts.jsonl"
    jsonl.unlink(missing_ok=True)
    cfg = workdir / "config.yaml"
    cfg.write_text(
        f"line: bench\ncameras:\n  - id: cam-0\n    queue_size: 64\n"
        f"    source: {{type: replay, path: {frames}, rate_fps: {rate}}}\n"
        f"models:\n  - {{path: {card}, threads: {threads}}}\n"
        f"publishers:\n  - {{type: jsonl, path: {jsonl}}}\n"
        f"metrics: {{enabled: false}}\nlogging: {{level: WARNING}}\n"
        f"inference: {{batch_max: {batch}, queue_size: 64}}\n"
    )
    daemon = Daemon(cfg)
    daemon.start()
    t0 = time.perf_counter()
    code = daemon.run()
    wall = time.perf_counter() - t0
    verdicts = [json.loads(line) for line in jsonl.read_text().splitlines()]
    total = np.array([v["latency_ms"]["total"] for v in verdicts], dtype=np.float64)
    infer = np.array([v["latency_ms"].get("infer", 0.0) for v in verdicts], dtype=np.float64)
    kinds = {k: sum(v["verdict"] == k for v in verdicts) for k in ("ok", "defect", "error")}
    return {"exit_code": code, "frames": len(verdicts), "wall_s": round(wall, 3),
            "fps": round(len(verdicts) / wall, 1) if wall > 0 else None,
            "latency_ms_p50": round(float(np.percentile(total, 50)), 2),
            "latency_ms_p99": round(float(np.percentile(total, 99)), 2),
            "infer_ms_p50": round(float(np.percentile(infer, 50)), 2), "verdicts": kinds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="model card (default: demo model, else the tiny test detector)")
    ap.add_argument("--frames", type=int, default=200, help="number of generated frames (default 200)")
    ap.add_argument("--size", type=int, default=256, help="frame size in pixels (default 256)")
    ap.add_argument("--batch-max", type=int, default=8, help="daemon batch_max (default 8)")
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads (default 2)")
    ap.add_argument("--rate", type=float, default=0.0, help="replay rate in frames/s (default 0: as fast as possible)")
    ap.add_argument("--eager", action="store_true",
                    help="also time the per-image PyTorch eager Lite0 loop of TARGETS.md on the same frames")
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    with tempfile.TemporaryDirectory(prefix="ei-bench-") as tmp:
        work = Path(tmp)
        card = args.model.resolve() if args.model else default_model(work)
        frames = write_frames(work / "frames", args.frames, args.size)
        daemon = run_daemon(card, frames, work, args.threads, args.batch_max, args.rate)
        raw = raw_onnxruntime(card, frames, args.threads, args.batch_max)
        eager = eager_loop(frames, raw["input"][0], args.threads) if args.eager else None
    target = TARGETS["classifier_fps"] if raw["kind"] == "classifier" else TARGETS["detector_fps"]
    result = {
        "benchmark": "daemon_throughput", "model": raw["model"], "kind": raw["kind"], "card": str(card),
        "frames": args.frames, "frame_size": args.size, "batch_max": args.batch_max, "threads": args.threads,
        "rate_fps": args.rate, "daemon": daemon, "onnxruntime": raw,
        "overhead_ratio": round(raw["raw_fps_best"] / daemon["fps"], 2) if daemon["fps"] else None,
        "target_fps": target if args.rate == 0 else None,
        "target_p99_ms": TARGETS["live_p99_ms"] if args.rate > 0 else None,
        "machine": {"cpus": os.cpu_count()},
        "eager": eager,
        "speedup_vs_eager": round(daemon["fps"] / eager["fps"], 2) if eager and daemon["fps"] else None,
        "target_speedup_vs_eager": 3.0 if eager else None,
    }
    print(json.dumps(result, indent=2))
    if not args.json_only:
        goal = (f"target >= {target:g} fps" if args.rate == 0 else f"p99 target <= {TARGETS['live_p99_ms']:g} ms")
        print(f"daemon {daemon['fps']} frames/s ({goal}), latency p50 {daemon['latency_ms_p50']} ms "
              f"p99 {daemon['latency_ms_p99']} ms | raw ONNX Runtime {raw['raw_fps_best']} frames/s | "
              f"overhead x{result['overhead_ratio']} | {raw['model']} ({raw['kind']}), {args.frames} frames "
              f"{args.size}px, {daemon['frames']} verdicts, exit {daemon['exit_code']}"
              + (f" | eager torch loop {eager['fps']} frames/s: daemon x{result['speedup_vs_eager']} "
                 "(target >= 3x)" if eager else ""))
    return 0 if daemon["exit_code"] == 0 and daemon["frames"] == args.frames else 1


if __name__ == "__main__":
    sys.exit(main())
