"""Soak test: a long replay through the REAL daemon process, watching its memory and file descriptors.

Usage:
  python bench/soak.py [--frames 50000] [--files 500] [--size 32] [--model CARD] [--sample-s 0.5] [--warmup-s 2]
                       [--max-rss-growth-mb 30] [--max-fd-growth 2] [--json-only]

What it does: writes ``--files`` small generated frames (every 5th with a bright defect), starts
``edge-inspector run`` as a subprocess on a config with a looping replay source over them, a JSONL
publisher rotating at 1 MB (so file handles are opened and closed all the time) and a ZeroMQ PUB
publisher, and samples the daemon's RSS (``/proc/<pid>/status`` VmRSS) and open descriptors
(``/proc/<pid>/fd``) every ``--sample-s`` seconds, counting frames through its Prometheus
``edge_inspector_frames_total`` over HTTP, until ``--frames`` frames were inspected; then SIGTERM.

Why a subprocess and /proc: a leak of a few kB per frame only shows over tens of thousands of frames,
and only in the real process (every thread, C library and socket included).

Bound (exit code 1 when broken): after warm-up (the first 10 % of frames and at least ``--warmup-s``
seconds, default 2; the run continues until 3 samples follow it: ONNX Runtime arenas,
OpenCV buffers and Python caches reach their steady size), RSS may grow by at most
``--max-rss-growth-mb`` (default 30 MB) and open descriptors by at most ``--max-fd-growth`` (default
2: flat, allowing a rotation caught mid-way).

Model: ``--model CARD``; by default the tiny test detector (``tests/fixtures/models.py``), built on
the fly at ``--size``. Prints one JSON object, then one human line (unless --json-only).

``--parts N`` (the reliability scenario): instead of a replay, a watched folder (with ``state_dir``)
receives N parts from slow writers (each PNG in 4 chunks, pauses alternating 0.05 s and 0.4 s, i.e.
longer than ``settle_ms`` 300), while a SIGHUP storm (every ``--hup-every`` s) alternates two valid
configurations whose JSONL path differs (so every reload closes and creates a publisher). Counted at
the end from the JSONL files: parts lost (no decided verdict), parts duplicated (more than one
verdict), error verdicts, reloads done/refused, plus RSS/fds as above. Bound: 0 lost, 0 duplicated,
0 errors, exit code 0.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def frames_done(port: int) -> int:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return 0
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("edge_inspector_verdicts_total{")))


def prepare(work: Path, files: int, size: int, model: Path | None) -> tuple[Path, Path]:
    from tests.fixtures.models import make_model, write_frames

    frames = write_frames(work / "frames", n=files, defect_every=5, size=size)
    card = model or make_model(work / "models", "detector", size=size)
    return frames, card


MIN_SAMPLES_AFTER_WARMUP = 3


def _after_warmup(samples: list[dict], args: argparse.Namespace) -> list[dict]:
    """The samples from the end of warm-up on: past 10 % of the frames AND ``--warmup-s`` seconds.

    Why both: on a fast machine 10 % of a short run passes before the first sample, and the daemon's lazily
    opened descriptors (a ZeroMQ peer, the first rotation, a scrape thread) would then count as growth.
    """
    return [s for s in samples if s["frames"] >= args.frames * 0.1 and s["t"] >= args.warmup_s]


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        work = Path(tmp)
        frames, card = prepare(work, args.files, args.size, args.model)
        mport, zport = free_port(), free_port()
        cfg = work / "config.yaml"
        cfg.write_text(
            f"line: soak\ncameras:\n  - id: cam-0\n    source: {{type: replay, path: {frames}, loop: true}}\n"
            f"models:\n  - {{path: {card}, threads: {args.threads}}}\n"
            f"publishers:\n  - {{type: jsonl, path: {work}/out/verdicts.jsonl, rotate_size_mb: 1, rotate_keep: 2}}\n"
            f"  - {{type: zmq, endpoint: 'tcp://127.0.0.1:{zport}'}}\n"
            f"metrics: {{port: {mport}}}\n"
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
        log = open(work / "daemon.log", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([sys.executable, "-m", "edge_inspector", "run", "--config", str(cfg)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        samples: list[dict] = []
        try:
            t0 = time.monotonic()
            while frames_done(mport) == 0:
                if proc.poll() is not None or time.monotonic() - t0 > 120:
                    raise RuntimeError(f"daemon did not start:\n{(work / 'daemon.log').read_text()[-3000:]}")
                time.sleep(0.2)
            start = time.monotonic()
            while True:
                # /proc first, then the scrape: the scrape's own socket is still open on the daemon's side for a
                # moment after the reply, and counting it would read as a descriptor leak.
                rss, fds = round(rss_mb(proc.pid), 1), fd_count(proc.pid)
                done = frames_done(mport)
                t = round(time.monotonic() - start, 2)
                samples.append({"t": t, "frames": done, "rss_mb": rss, "fds": fds})
                if done >= args.frames and len(_after_warmup(samples, args)) >= MIN_SAMPLES_AFTER_WARMUP:
                    break
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon exited ({proc.returncode}):\n"
                                       f"{(work / 'daemon.log').read_text()[-3000:]}")
                time.sleep(args.sample_s)
            elapsed = time.monotonic() - start
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
    after = _after_warmup(samples, args)
    warm = after[0]
    end = samples[-1]
    rss_growth = round(max(s["rss_mb"] for s in after) - warm["rss_mb"], 1)
    fd_growth = max(s["fds"] for s in after) - warm["fds"]
    ok = code == 0 and rss_growth < args.max_rss_growth_mb and fd_growth <= args.max_fd_growth
    return {
        "frames": end["frames"], "seconds": round(elapsed, 1), "fps": round(end["frames"] / max(elapsed, 1e-9), 1),
        "rss_mb": {"start": samples[0]["rss_mb"], "warm": warm["rss_mb"], "end": end["rss_mb"],
                   "max": max(s["rss_mb"] for s in samples), "growth_after_warmup": rss_growth},
        "fds": {"start": samples[0]["fds"], "warm": warm["fds"], "end": end["fds"],
                "max": max(s["fds"] for s in samples), "growth_after_warmup": fd_growth},
        "bound": {"max_rss_growth_mb": args.max_rss_growth_mb, "max_fd_growth": args.max_fd_growth},
        "exit_code": code, "ok": ok, "samples": len(samples), "warm_at_s": warm["t"],
        "samples_after_warmup": len(after), "series": samples if args.series else None,
    }


def _slow_write(path: Path, data: bytes, pauses: tuple[float, ...]) -> None:
    step = -(-len(data) // (len(pauses) + 1))
    with open(path, "wb") as fh:
        for k in range(len(pauses) + 1):
            fh.write(data[k * step:(k + 1) * step])
            fh.flush()
            if k < len(pauses):
                time.sleep(pauses[k])


def run_parts(args: argparse.Namespace) -> dict:
    """Watched folder + slow writers + SIGHUP storm; count lost and duplicated parts."""
    import threading

    import cv2

    from tests.fixtures.models import make_frame, make_model

    with tempfile.TemporaryDirectory(prefix="soak-parts-") as tmp:
        work = Path(tmp)
        card = args.model or make_model(work / "models", "detector", size=args.size)
        inbox = work / "inbox"
        inbox.mkdir()
        mport = free_port()
        cfg = work / "config.yaml"

        def write_cfg(variant: int) -> None:
            tmp_cfg = work / "config.yaml.new"
            tmp_cfg.write_text(
                f"line: soak\ncameras:\n  - id: cam-0\n    source: {{type: folder, path: {inbox}, poll_ms: 50}}\n"
                f"models:\n  - {{path: {card}, threads: {args.threads}}}\n"
                f"publishers:\n  - {{type: jsonl, path: {work}/out/v{variant}.jsonl}}\n"
                f"metrics: {{port: {mport}}}\nstate_dir: {work}/state\n")
            os.replace(tmp_cfg, cfg)  # the daemon never reads a half-written config

        write_cfg(0)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(args.threads)}
        log = open(work / "daemon.log", "wb")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([sys.executable, "-m", "edge_inspector", "run", "--config", str(cfg)],
                                env=env, stdout=log, stderr=subprocess.STDOUT)
        names = [f"part_{i:05d}.png" for i in range(args.parts)]
        stop = threading.Event()
        hups = [0]
        samples: list[dict] = []

        def writer(offset: int, stride: int) -> None:
            for i in range(offset, args.parts, stride):
                ok, png = cv2.imencode(".png", make_frame(i % 5 == 4, max(args.size, 64), seed=i))
                assert ok
                _slow_write(inbox / names[i], png.tobytes(), (0.05, 0.4, 0.05) if i % 2 else (0.4, 0.05, 0.4))

        def storm() -> None:
            while not stop.wait(args.hup_every):
                hups[0] += 1
                write_cfg(hups[0] % 2)
                proc.send_signal(signal.SIGHUP)

        def seen() -> list[dict]:
            out = []
            for f in sorted((work / "out").glob("v*.jsonl")):
                out += [json.loads(ln) for ln in f.read_text().splitlines() if ln.endswith("}")]
            return out

        try:
            t0 = time.monotonic()
            while "opened" not in (work / "daemon.log").read_text():
                if proc.poll() is not None or time.monotonic() - t0 > 120:
                    raise RuntimeError(f"daemon did not start:\n{(work / 'daemon.log').read_text()[-3000:]}")
                time.sleep(0.1)
            start = time.monotonic()
            writers = [threading.Thread(target=writer, args=(k, args.writers)) for k in range(args.writers)]
            hup_thread = threading.Thread(target=storm, daemon=True)
            for t in [*writers, hup_thread]:
                t.start()
            progress, last, count = -1, time.monotonic(), 0
            while any(t.is_alive() for t in writers) or (count := len({Path(v["source"]).name for v in seen()})) \
                    < args.parts:
                samples.append({"t": round(time.monotonic() - start, 2), "rss_mb": round(rss_mb(proc.pid), 1),
                                "fds": fd_count(proc.pid)})
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon exited ({proc.returncode}):\n"
                                       f"{(work / 'daemon.log').read_text()[-3000:]}")
                if not any(t.is_alive() for t in writers):
                    if count != progress:
                        progress, last = count, time.monotonic()
                    elif time.monotonic() - last > 15:
                        break  # 15 s without a new verdict after the last write: the rest are lost
                time.sleep(args.sample_s)
            stop.set()
            hup_thread.join(5)
            time.sleep(1.0)  # a last reload settles; anything still to come would be a duplicate
            elapsed = time.monotonic() - start
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
            verdicts = seen()
            text = (work / "daemon.log").read_text()
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
            log.close()
    got = [Path(v["source"]).name for v in verdicts]
    lost = sorted(set(names) - set(got))
    duplicated = sorted({n for n in got if got.count(n) > 1})
    errors = [v["source"] for v in verdicts if v["verdict"] == "error"]
    ok = code == 0 and not lost and not duplicated and not errors
    return {
        "scenario": "parts", "parts": args.parts, "verdicts": len(verdicts), "lost": len(lost),
        "duplicated": len(duplicated), "errors": len(errors), "lost_names": lost[:20],
        "duplicated_names": duplicated[:20], "sighups": hups[0], "reloads": text.count("reloaded "),
        "reloads_refused": text.count("reload refused"), "seconds": round(elapsed, 1),
        "rss_mb": {"start": samples[0]["rss_mb"] if samples else None,
                   "max": max((s["rss_mb"] for s in samples), default=None)},
        "fds": {"start": samples[0]["fds"] if samples else None, "max": max((s["fds"] for s in samples), default=None)},
        "exit_code": code, "ok": ok,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=50_000, help="frames to inspect (default 50000)")
    ap.add_argument("--files", type=int, default=500, help="distinct generated frames replayed in a loop")
    ap.add_argument("--size", type=int, default=32, help="frame and model input size in pixels (default 32)")
    ap.add_argument("--model", type=Path, help="model card (default: the tiny test detector)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    ap.add_argument("--sample-s", type=float, default=0.5, help="seconds between RSS/fd samples")
    ap.add_argument("--warmup-s", type=float, default=2.0,
                    help="warm-up lasts at least this long (and at least 10 %% of --frames); the run goes on "
                         f"until {MIN_SAMPLES_AFTER_WARMUP} samples after it")
    ap.add_argument("--max-rss-growth-mb", type=float, default=30.0, help="bound on RSS growth after warm-up")
    ap.add_argument("--max-fd-growth", type=int, default=2, help="bound on open-descriptor growth after warm-up")
    ap.add_argument("--series", action="store_true", help="include every sample in the JSON")
    ap.add_argument("--json-only", action="store_true")
    ap.add_argument("--parts", type=int, default=0,
                    help="reliability scenario: N parts into a watched folder by slow writers, under a SIGHUP storm")
    ap.add_argument("--writers", type=int, default=4, help="--parts: concurrent slow writers (default 4)")
    ap.add_argument("--hup-every", type=float, default=0.1, help="--parts: seconds between SIGHUPs (default 0.1)")
    args = ap.parse_args(argv)
    if args.parts:
        result = run_parts(args)
        print(json.dumps(result, indent=2))
        if not args.json_only:
            print(f"soak parts {'OK' if result['ok'] else 'FAILED'}: {result['parts']} parts by {args.writers} slow "
                  f"writers, {result['sighups']} SIGHUPs ({result['reloads']} reloads, {result['reloads_refused']} "
                  f"refused) in {result['seconds']} s: {result['lost']} lost, {result['duplicated']} duplicated, "
                  f"{result['errors']} error verdicts; exit code {result['exit_code']}")
        return 0 if result["ok"] else 1
    result = run(args)
    print(json.dumps(result, indent=2))
    if not args.json_only:
        r, f = result["rss_mb"], result["fds"]
        print(f"soak {'OK' if result['ok'] else 'FAILED'}: {result['frames']} frames in {result['seconds']} s "
              f"({result['fps']} frames/s); RSS {r['start']} -> {r['end']} MB (max {r['max']}, "
              f"+{r['growth_after_warmup']} MB after warm-up, bound {args.max_rss_growth_mb}); "
              f"fds {f['start']} -> {f['end']} (max {f['max']}, +{f['growth_after_warmup']}, "
              f"bound {args.max_fd_growth})")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
