"""Throughput and latency of the whole daemon on realistic frames, for every backend and precision
side by side, next to the raw runtime on the same model and the per-image PyTorch eager loop.

Usage:
  python bench/throughput.py [--model CARD ...] [--frame-size 256 1280x1024 2448x2048 ...]
                             [--format png jpeg raw ...] [--frames N] [--backends onnxruntime,openvino]
                             [--precisions fp32,bf16,int8] [--batch-max B] [--threads T] [--rate FPS]
                             [--reduced-decode safe|fast|off] [--decode-workers W] [--eager] [--json-only]

What it does, per configuration (model x frame size x format): writes N generated frames (synthetic
washers on brushed metal from data/synthetic.py, scaled to the frame size with sensor noise, every
5th with a defect) as PNG or JPEG files, or keeps them as decoded arrays in memory (``raw``: what a
camera driver hands over; replayed by an in-process array source); then for every available
backend/precision it runs the real daemon in-process (replay source -> decode pool -> batched
inference -> decision -> JSONL publisher) and reads each verdict's ``latency_ms.total`` (capture ->
decision), and times the raw runtime alone on the same frames already decoded and preprocessed (batch
1 and the daemon's batch). ``ratio`` = daemon frames/s / raw frames/s: how close the pipeline gets to
the runtime's limit; ``cpu_ratio_to_raw`` is the same from CPU time per frame (raw / daemon), which
a shared machine's load barely moves (the two wall-clock timings run one after the other).
``--eager`` adds the per-image PyTorch eager loop of TARGETS.md (PIL open,
resize, forward, sigmoid; EfficientNet-Lite0) on the same frames.

Backends/precisions: onnxruntime fp32; onnxruntime int8 and openvino int8 when ``<name>-int8.card.json``
(``edge-inspector quantize``) sits beside the model; openvino fp32; openvino bf16 when the card records
a passing bf16 check. A combination that is not available is listed with the reason, never silently
dropped. Models: ``--model CARD`` (repeatable); default the demo model, else the tiny test detector.

Prints one JSON object, then one human line per configuration and backend with the TARGETS.md
"Speed" figures beside the measured ones (unless --json-only). The CPU of the machine this runs on
may be shared: say so when quoting figures.
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

#: cores the targets are stated for (TARGETS.md: "2 cores, no GPU"). ``idle_fps_estimate`` = CORES /
#: CPU seconds per frame: what the run would reach on that many otherwise idle cores if every stage
#: kept them busy. An upper bound that does not depend on how loaded a shared machine is; quote it
#: beside, never instead of, the measured frames/s.
CORES = int(os.environ.get("EI_BENCH_CORES", "2"))

#: ../shared/TARGETS.md "Speed": daemon end to end, frames/s
TARGETS = {
    "classifier_256_fps": 200.0,
    "feature_memory_fps": 150.0,
    "classifier_1280_jpeg_fps": 60.0,
    "ratio_to_raw": 0.8,
    "speedup_vs_eager_1280": 5.0,
    "live_p99_ms": 20.0,
}


def parse_size(text: str) -> tuple[int, int]:
    """'256' -> (256, 256); '1280x1024' -> (height 1024, width 1280) (camera convention: W x H)."""
    if "x" in text:
        w, h = text.lower().split("x")
        return int(h), int(w)
    return int(text), int(text)


def default_model(workdir: Path) -> Path:
    demo = ROOT / "models" / "demo-feature-memory.card.json"
    if demo.is_file():
        return demo
    from tests.fixtures.models import make_model

    return make_model(workdir / "models", "detector", size=64)


def make_frames(n: int, hw: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    """Synthetic parts (data/synthetic.py) at the frame size; every 5th defective. Parts are rendered at
    up to 256 px (the generator's own noise) and scaled up to larger frames, which then get fresh
    per-pixel sensor noise (an upscaled image would be unrealistically smooth, and cheap to encode)."""
    from edge_inspector.data.synthetic import DEFECT_TYPES, render_part

    rng = np.random.default_rng(seed)
    h, w = hw
    base = min(256, max(h, w))  # the demo models' training size: scaled back down, frames look familiar
    noise_rng = np.random.default_rng(seed + 1)
    noise = noise_rng.normal(0, 3.0, (h, w, 1)).astype(np.float32)
    frames = []
    for i in range(n):
        defect = DEFECT_TYPES[i // 5 % len(DEFECT_TYPES)] if i % 5 == 4 else None
        part, _ = render_part(rng, base, defect)
        if (h, w) == (base, base):
            frames.append(part)
            continue
        side = min(h, w)  # the square part fills the frame's short side, the plate continues beside it
        big = cv2.resize(part, (side, side), interpolation=cv2.INTER_LINEAR if side > base else cv2.INTER_AREA)
        top, left = (h - side) // 2, (w - side) // 2
        big = cv2.copyMakeBorder(big, top, h - side - top, left, w - side - left, cv2.BORDER_REFLECT)
        if max(h, w) > base:
            big = np.clip(big.astype(np.float32) + np.roll(noise, i * 7, axis=1), 0, 255).astype(np.uint8)
        frames.append(big)
    return frames


def write_frames(folder: Path, frames: list[np.ndarray], fmt: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    ext, params = {"png": (".png", []), "jpeg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90])}[fmt]
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"frame_{i:06d}{ext}"), frame, params)
    return folder


class _ArrayReplay:
    """Stands in for the replay source in ``raw`` runs: frames are decoded arrays already, as a camera
    driver delivers them; installed in edge_inspector.sources.SOURCES for the run only."""

    frames: list[np.ndarray] = []

    @classmethod
    def make(cls):
        from edge_inspector.sources.base import Frame
        from edge_inspector.sources.replay import ReplaySource

        class ArrayReplaySource(ReplaySource):
            def open(self) -> None:
                self.index, self.count, self.started = 0, 0, time.monotonic()
                self.files = cls.frames

            def read(self):
                if self.index >= len(self.files):
                    return None
                image = self.files[self.index]
                self.index += 1
                self._pace(self.config.rate_fps, self.started, self.count)
                self.count += 1
                return Frame(self.camera, self._next_seq(), image, source=f"array {self.index - 1}")

        return ArrayReplaySource


def variants(card: Path) -> list[dict]:
    """Every backend/precision for this model, each with ``available`` and, if not, ``why``."""
    from edge_inspector.backends.precision import passing_check, read_checks
    from edge_inspector.card import card_path_for, load_card

    card = card_path_for(card)
    fp32 = load_card(card)
    int8 = card.with_name(f"{fp32.name}-int8.card.json")
    out = [{"backend": "onnxruntime", "precision": "fp32", "card": card, "available": True}]
    q = load_card(int8) if int8.is_file() else None
    out.append({"backend": "onnxruntime", "precision": "int8", "card": int8, "available": q is not None,
                "why": None if q else f"no {int8.name} (edge-inspector quantize)"})
    try:
        import openvino  # noqa: F401
    except ImportError:
        return out + [{"backend": "openvino", "precision": p, "card": card, "available": False,
                       "why": "openvino not installed"} for p in ("fp32", "bf16", "int8")]
    out.append({"backend": "openvino", "precision": "fp32", "card": card, "available": True})
    bf16 = passing_check(fp32, "openvino", "bf16", fp32.model_sha256)
    recorded = read_checks(fp32).get("openvino:bf16")
    out.append({"backend": "openvino", "precision": "bf16", "card": card, "available": bf16 is not None,
                "why": None if bf16 else (f"bf16 check failed: {recorded.summary()}" if recorded
                                          else "no bf16 check in the card (edge-inspector quantize --precision bf16)")})
    ov8 = q and passing_check(q, "openvino", "int8", q.model_sha256)
    out.append({"backend": "openvino", "precision": "int8", "card": int8, "available": bool(ov8),
                "why": None if ov8 else ("no int8 model" if q is None else "no passing openvino int8 check")})
    return out


def load_variant(v: dict, threads: int):
    from edge_inspector.inference import LoadedModel

    options = {"precision": v["precision"]} if v["backend"] == "openvino" else {}
    return LoadedModel.load(v["card"], backend=v["backend"], threads=threads, **options)


def raw_runtime(model, frames: list[np.ndarray], batch: int, repeat_to: int = 64, rounds: int = 5) -> dict:
    """The runtime alone on the frames, already decoded and preprocessed (the limit the daemon can reach).

    One pass over 64 tensors lasts a few hundred ms, short enough for a neighbour's burst or a
    frequency step to move it by 2x between runs; so each batch size is timed in ``rounds``
    interleaved passes and the median pass is the figure (the daemon's run lasts seconds and
    averages such bursts out by itself)."""
    tensors = model.preprocess(frames[:max(batch, min(len(frames), repeat_to))])
    model.backend.run(tensors[:batch])  # warm-up (shape specialisation)
    model.backend.run(tensors[:1])
    sizes = sorted({1, batch})
    fps: dict[int, list[float]] = {b: [] for b in sizes}
    cpu: dict[int, list[float]] = {b: [] for b in sizes}
    for _ in range(rounds):
        for b in sizes:
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(0, len(tensors), b):
                model.backend.run(tensors[i:i + b])
            fps[b].append(len(tensors) / (time.perf_counter() - t0))
            cpu[b].append((time.process_time() - c0) / len(tensors))
    out = {b: float(np.median(v)) for b, v in fps.items()}
    cpu_ms = {b: float(np.median(v)) for b, v in cpu.items()}
    best = max(out, key=out.get)
    return {"fps_batch1": round(out[1], 1), f"fps_batch{batch}": round(out[batch], 1),
            "fps_best": round(out[best], 1), "fps_best_rounds": [round(x, 1) for x in fps[best]],
            "cpu_ms_per_frame": round(cpu_ms[best] * 1000, 2),
            "idle_fps_estimate": round(CORES / cpu_ms[best], 1) if cpu_ms[best] > 0 else None}


def centred_roi(hw: tuple[int, int]) -> list[int] | None:
    """The square ROI around the part on a non-square frame (how a line inspects a 4:3 or 5:4 camera
    with a square model input), None on square frames."""
    h, w = hw
    if h == w:
        return None
    side = min(h, w)
    return [(w - side) // 2, (h - side) // 2, side, side]


class ThreadCpu:
    """CPU seconds per thread of this process while the daemon runs, grouped by the daemon's thread names
    (``decode``, ``infer``, ``decide``, ``ort-stream``...; threads the runtimes start are ``runtime``).

    Why: on a shared machine frames/s move with the load, CPU time per stage does not; it says where a
    frame's time goes (what to optimise) in every run. Sampled every 50 ms from /proc (the stage threads
    are gone by the time the run returns); Linux only, empty elsewhere.
    """

    def __init__(self) -> None:
        import threading

        self._threading = threading
        self._start: dict[str, float] = self._read()
        self._last: dict[str, float] = dict(self._start)
        self._names: dict[str, str] = {}
        self._stop = threading.Event()
        self.own_seconds = 0.0  # CPU time of the sampler itself, known after stop()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)
        self._thread.start()

    @staticmethod
    def _read() -> dict[str, float]:
        out = {}
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        try:
            tids = os.listdir(f"/proc/{os.getpid()}/task")
        except OSError:
            return out
        for tid in tids:
            try:
                stat = Path(f"/proc/{os.getpid()}/task/{tid}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            out[tid] = (int(fields[11]) + int(fields[12])) / tick
        return out

    def _loop(self) -> None:
        start = time.thread_time()
        try:
            while not self._stop.wait(0.05):
                self._sample()
        finally:  # the measurement's own cost (~25 CPU ms per second), not the daemon's
            self.own_seconds = time.thread_time() - start

    def _sample(self) -> None:
        self._last.update(self._read())
        self._names.update({str(t.native_id): t.name for t in self._threading.enumerate()})

    def stop(self, frames: int) -> dict[str, float]:
        """CPU ms per frame by thread group (bench and main thread left out)."""
        self._sample()
        self._stop.set()
        self._thread.join()
        groups: dict[str, float] = {}
        for tid, seconds in self._last.items():
            name = self._names.get(tid, "runtime")
            if name in ("bench-sampler", "MainThread"):
                continue
            group = name.rstrip("0123456789_-").removesuffix("-cam")
            groups[group] = groups.get(group, 0.0) + seconds - self._start.get(tid, 0.0)
        return {k: round(1000 * v / max(1, frames), 2) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])
                if v > 0}


def run_daemon(v: dict, frames_dir: Path, pattern: str, workdir: Path, args, roi: list[int] | None) -> dict:
    from edge_inspector.runtime.daemon import Daemon

    tag = f"{v['backend']}-{v['precision']}"
    jsonl = workdir / f"verdicts-{tag}.jsonl"
    jsonl.unlink(missing_ok=True)
    cfg = workdir / f"config-{tag}.yaml"
    extra = f", precision: {v['precision']}, cache_dir: {workdir / 'ov-cache'}" if v["backend"] == "openvino" else ""
    cfg.write_text(
        "line: bench\ncameras:\n  - id: cam-0\n    queue_size: 64\n"
        + (f"    roi: {roi}\n" if roi else "") +
        f"    source: {{type: replay, path: {frames_dir}, pattern: '{pattern}', rate_fps: {args.rate}}}\n"
        f"models:\n  - {{path: {v['card']}, backend: {v['backend']}, threads: {args.threads}{extra}}}\n"
        f"publishers:\n  - {{type: jsonl, path: {jsonl}}}\n"
        f"metrics: {{enabled: false}}\nlogging: {{level: WARNING}}\n"
        f"inference: {{batch_max: {args.batch_max}, queue_size: 64, decode_workers: {args.decode_workers}, "
        f"reduced_decode: '{args.reduced_decode}'}}\n"
    )
    daemon = Daemon(cfg)
    daemon.start()
    threads = ThreadCpu()  # after start: model loading is not a frame's cost
    t0, c0 = time.perf_counter(), time.process_time()
    code = daemon.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    verdicts = [json.loads(line) for line in jsonl.read_text().splitlines()]
    by_thread = threads.stop(len(verdicts))
    cpu -= threads.own_seconds  # process time counts the sampler too: it is the bench's cost, not the daemon's
    total = np.array([v_["latency_ms"]["total"] for v_ in verdicts], dtype=np.float64)
    kinds = {k: sum(v_["verdict"] == k for v_ in verdicts) for k in ("ok", "defect", "error")}
    return {"exit_code": code, "frames": len(verdicts), "wall_s": round(wall, 3),
            "fps": round(len(verdicts) / wall, 1) if wall > 0 else None,
            "latency_ms_p50": round(float(np.percentile(total, 50)), 2) if len(total) else None,
            "latency_ms_p99": round(float(np.percentile(total, 99)), 2) if len(total) else None,
            "cpu_ms_per_frame": round(cpu / max(1, len(verdicts)) * 1000, 2),
            "idle_fps_estimate": round(CORES * len(verdicts) / cpu, 1) if cpu > 0 else None,
            "cpu_ms_per_frame_by_thread": by_thread,
            "latency_ms_by_step_p50": latency_steps(verdicts),
            "verdicts": kinds, "scores": [v_.get("score") for v_ in verdicts]}


def latency_steps(verdicts: list[dict]) -> dict[str, float]:
    """Median of each step of capture -> decision (the verdict's ``latency_ms``); ``waiting`` is what the
    steps leave of the total: the frame sat in a queue or on the decode pool."""
    if not verdicts:
        return {}
    rows = [v["latency_ms"] for v in verdicts]
    steps = ("preprocess", "infer", "decide")
    out = {k: round(float(np.median([r.get(k, 0.0) for r in rows])), 2) for k in steps}
    out["waiting"] = round(float(np.median([r["total"] - sum(r.get(k, 0.0) for k in steps) for r in rows])), 2)
    return out


def eager_loop(frames_dir: Path | None, frames: list[np.ndarray], size: int, threads: int,
               max_frames: int = 0) -> dict | None:
    """The reference of TARGETS.md: a per-image PyTorch eager loop as in a typical Streamlit demo
    (PIL open, resize, to tensor, forward, sigmoid) with an EfficientNet-Lite0 at ``size``, on the
    same frames (files, or arrays for ``raw``). None when torch (the [train] extra) is not installed."""
    try:
        import torch
        from PIL import Image

        from edge_inspector.models.backbone import EfficientNetLite
    except ImportError:
        return None
    torch.set_num_threads(threads)
    net = EfficientNetLite("lite0", num_classes=1).eval()
    items = sorted(p for p in frames_dir.iterdir() if p.is_file()) if frames_dir else frames
    items = items[:max_frames] if max_frames else items
    with torch.inference_mode():
        net(torch.rand(1, 3, size, size))  # warm-up
        t0 = time.perf_counter()
        for item in items:
            image = (Image.open(item) if isinstance(item, Path) else Image.fromarray(item[:, :, ::-1])).convert("RGB")
            image = image.resize((size, size), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
            torch.sigmoid(net(x))
        elapsed = time.perf_counter() - t0
    return {"model": "efficientnet-lite0 (torch eager, batch 1)", "input": size, "frames": len(items),
            "fps": round(len(items) / elapsed, 1)}


def target_for(kind: str, hw: tuple[int, int], fmt: str) -> tuple[float | None, str]:
    if kind == "classifier":
        if max(hw) <= 512:
            return TARGETS["classifier_256_fps"], "classifier path, 256 px frames"
        if fmt == "jpeg" and max(hw) >= 1280:
            return TARGETS["classifier_1280_jpeg_fps"], "classifier path, 1280x1024 JPEG"
        return None, "no published target at this size/format"
    return TARGETS["feature_memory_fps"], "feature-memory path"


def run_configuration(card: Path, hw: tuple[int, int], fmt: str, args, work: Path) -> dict:
    from edge_inspector.card import load_card
    from edge_inspector.sources import SOURCES

    c = load_card(card)
    tag = f"{c.name}-{hw[1]}x{hw[0]}-{fmt}"
    folder = work / tag
    frames = make_frames(args.frames, hw)
    frames_dir, pattern = None, "*"
    if fmt in ("png", "jpeg"):
        frames_dir = write_frames(folder / "frames", frames, fmt)
        pattern = "*.png" if fmt == "png" else "*.jpg"
    folder.mkdir(parents=True, exist_ok=True)
    decoded = frames if fmt == "raw" else [cv2.imread(str(p)) for p in sorted(frames_dir.iterdir())]
    runs = []
    original = SOURCES["replay"]
    try:
        if fmt == "raw":
            _ArrayReplay.frames = frames
            SOURCES["replay"] = _ArrayReplay.make()
        for v in variants(card):
            entry = {"backend": v["backend"], "precision": v["precision"], "model": Path(v["card"]).name}
            if not v["available"]:
                runs.append({**entry, "available": False, "why": v["why"]})
                continue
            try:
                model = load_variant(v, args.threads)
            except Exception as exc:  # noqa: BLE001 - e.g. a device without bf16: report, carry on
                runs.append({**entry, "available": False, "why": str(exc)})
                continue
            load_before = round(os.getloadavg()[0], 2)
            raw = raw_runtime(model, decoded, args.batch_max)
            streams = getattr(model.backend, "streams", 1)
            del model
            daemon = run_daemon(v, frames_dir if frames_dir else folder, pattern, folder, args, centred_roi(hw))
            ratio = float(f"{daemon['fps'] / raw['fps_best']:.3g}") if daemon["fps"] and raw["fps_best"] else None
            # the same ratio from CPU time per frame: what the load does not move (see CORES)
            cpu_ratio = (float(f"{raw['cpu_ms_per_frame'] / daemon['cpu_ms_per_frame']:.3g}")
                         if daemon["cpu_ms_per_frame"] and raw["cpu_ms_per_frame"] else None)
            runs.append({**entry, "available": True, "daemon": daemon, "raw": raw, "ratio_to_raw": ratio,
                         "cpu_ratio_to_raw": cpu_ratio,
                         "streams": streams, "load_avg_1m": [load_before, round(os.getloadavg()[0], 2)]})
    finally:
        SOURCES["replay"] = original
    reference = next((r for r in runs if r.get("available") and r["precision"] == "fp32"
                      and r["backend"] == "onnxruntime"), None)
    for r in runs:  # verdict agreement with onnxruntime fp32 on the same frames
        if r.get("available") and reference is not None:
            a, b = reference["daemon"]["scores"], r["daemon"]["scores"]
            pairs = [(x, y) for x, y in zip(a, b, strict=False) if x is not None and y is not None]
            r["max_score_diff_vs_ort_fp32"] = round(max((abs(x - y) for x, y in pairs), default=0.0), 4)
            r["verdict_flips_vs_ort_fp32"] = sum((x >= 0.5) != (y >= 0.5) for x, y in pairs)
    for r in runs:
        if r.get("available"):
            r["daemon"].pop("scores", None)
    eager = eager_loop(frames_dir, frames, c.input.height, args.threads, args.eager_frames) if args.eager else None
    target, target_label = target_for(c.kind, hw, fmt)
    if args.rate:
        target, target_label = None, f"live source at {args.rate:g} frames/s"
    return {"model": c.name, "kind": c.kind, "input": [c.input.height, c.input.width],
            "frame_size": f"{hw[1]}x{hw[0]}", "format": fmt, "roi": centred_roi(hw), "frames": args.frames,
            "runs": runs,
            "eager": eager, "target_fps": target, "target": target_label}


def human_lines(conf: dict, rate: float) -> list[str]:
    lines = []
    eager = conf["eager"]
    for r in conf["runs"]:
        head = (f"{conf['model']} ({conf['kind']}) {conf['frame_size']} {conf['format']} "
                f"{r['backend']} {r['precision']}")
        if not r.get("available"):
            lines.append(f"{head}: not run ({r['why']})")
            continue
        d, raw = r["daemon"], r["raw"]
        goal = []
        if conf["target_fps"] is not None:
            goal.append(f"target >= {conf['target_fps']:g}: {'MET' if d['fps'] >= conf['target_fps'] else 'NOT MET'}")
        if rate:
            ok = d["latency_ms_p99"] is not None and d["latency_ms_p99"] <= TARGETS["live_p99_ms"]
            goal.append(f"p99 target <= {TARGETS['live_p99_ms']:g} ms: {'MET' if ok else 'NOT MET'}")
        ratio_ok = r["ratio_to_raw"] is not None and r["ratio_to_raw"] >= TARGETS["ratio_to_raw"]
        # at a set rate the daemon waits for frames: the ratio says nothing about the pipeline then
        ratio_goal = ("n/a at a set rate" if rate else
                      f"target >= {TARGETS['ratio_to_raw']:g}: {'MET' if ratio_ok else 'NOT MET'}")
        load = (f" [load {r['load_avg_1m'][0]:g}-{r['load_avg_1m'][1]:g}, {r.get('streams', 1)} stream(s)]"
                if r.get("load_avg_1m") else "")
        text = (f"{head}: daemon {d['fps']} frames/s{load} ({'; '.join(goal) or conf['target']}; "
                f"{d['cpu_ms_per_frame']} CPU ms/frame, idle {CORES}-core estimate {d['idle_fps_estimate']}), "
                f"p50 {d['latency_ms_p50']} ms p99 {d['latency_ms_p99']} ms | raw {raw['fps_best']} frames/s "
                f"(idle estimate {raw['idle_fps_estimate']}), "
                f"ratio {r['ratio_to_raw']} ({ratio_goal}; from CPU time {r.get('cpu_ratio_to_raw')}) | "
                f"{d['frames']} verdicts "
                f"({', '.join(f'{k} {n}' for k, n in d['verdicts'].items())}), "
                f"max |score - ort fp32| {r.get('max_score_diff_vs_ort_fp32')}, "
                f"{r.get('verdict_flips_vs_ort_fp32')} verdict flips")
        if d.get("cpu_ms_per_frame_by_thread"):
            text += " | CPU ms/frame by thread: " + ", ".join(
                f"{k} {v}" for k, v in d["cpu_ms_per_frame_by_thread"].items())
        if eager:
            speedup = d["fps"] / eager["fps"]
            text += f" | eager torch loop {eager['fps']} frames/s: x{speedup:.1f}"
            if conf["kind"] == "classifier" and conf["format"] == "jpeg" and conf["frame_size"] != "256x256":
                text += f" (target >= {TARGETS['speedup_vs_eager_1280']:g}x)"
        lines.append(text)
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, action="append",
                    help="model card, repeatable (default: demo model, else the tiny test detector)")
    ap.add_argument("--frame-size", nargs="+", default=["256"], help="frame sizes: 256, 1280x1024, 2448x2048")
    ap.add_argument("--format", nargs="+", default=["png"], choices=["png", "jpeg", "raw"])
    ap.add_argument("--frames", type=int, default=200, help="frames per configuration (default 200)")
    ap.add_argument("--backends", default="onnxruntime,openvino", help="comma-separated subset to run")
    ap.add_argument("--precisions", default="fp32,bf16,int8", help="comma-separated subset to run")
    ap.add_argument("--batch-max", type=int, default=8, help="daemon batch_max (default 8)")
    ap.add_argument("--threads", type=int, default=2, help="runtime intra-op threads (default 2)")
    ap.add_argument("--decode-workers", type=int, default=0, help="inference.decode_workers (0: one per core)")
    ap.add_argument("--reduced-decode", default="safe", choices=["off", "safe", "fast"])
    ap.add_argument("--rate", type=float, default=0.0, help="replay rate in frames/s (0: as fast as possible)")
    ap.add_argument("--eager", action="store_true", help="also time the per-image PyTorch eager Lite0 loop")
    ap.add_argument("--eager-frames", type=int, default=60,
                    help="frames the eager loop runs (0: all); it is the slow reference, a sample is enough")
    ap.add_argument("--json-only", action="store_true")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    backends = set(args.backends.split(","))
    precisions = set(args.precisions.split(","))
    configurations = []
    with tempfile.TemporaryDirectory(prefix="ei-bench-") as tmp:
        work = Path(tmp)
        cards = [m.resolve() for m in args.model] if args.model else [default_model(work)]
        global variants
        all_variants = variants
        variants = lambda card: [v for v in all_variants(card)  # noqa: E731
                                 if v["backend"] in backends and v["precision"] in precisions]
        for card in cards:
            for size in args.frame_size:
                for fmt in args.format:
                    configurations.append(run_configuration(card, parse_size(size), fmt, args, work))
    result = {"benchmark": "daemon_throughput", "targets": TARGETS, "batch_max": args.batch_max,
              "threads": args.threads, "decode_workers": args.decode_workers, "reduced_decode": args.reduced_decode,
              "rate_fps": args.rate, "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
              "configurations": configurations}
    print(json.dumps(result, indent=2))
    if not args.json_only:
        print(f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (a shared machine lowers every figure)")
        for conf in configurations:
            for line in human_lines(conf, args.rate):
                print(line)
    ok = all(r["daemon"]["exit_code"] == 0 and r["daemon"]["frames"] == conf["frames"]
             for conf in configurations for r in conf["runs"] if r.get("available"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
