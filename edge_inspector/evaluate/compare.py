"""Compare several models on one or more datasets: accuracy next to latency, size and a composite score.

Accuracy comes from ``runner.evaluate_model`` (the very same figures as ``evaluate``); latency is
measured here, per backend, through ``LoadedModel.predict`` on single decoded images (batch 1,
preprocessing included, decode excluded), because that is what one part on a line costs.
"""

from __future__ import annotations

import html
import logging
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..backends import BackendError
from ..card import CardError
from ..data.types import Sample
from ..inference import LoadedModel
from ..preprocess import decode_image
from . import plots
from .errors import EvaluationError
from .metrics import DEFAULT_WEIGHTS, composite_inputs, composite_score
from .report import fmt, img, page, table, write_json
from .runner import evaluate_model
from .types import EvaluationReport

log = logging.getLogger(__name__)


@dataclass
class DataSpec:
    """One dataset (or category) to compare on: a name, where it came from and the samples to score."""

    name: str
    root: str
    split: str
    samples: list[Sample]


def measure_latency(model: LoadedModel, images: Sequence[np.ndarray], *, warmup: int = 2,
                    max_images: int = 20) -> dict[str, Any]:
    """Milliseconds per image at batch 1 (preprocess + inference): median, p95 and mean."""
    images = list(images)[:max_images]
    if not images:
        return {"ms_median": None, "reason": "no image to time"}
    for im in images[:warmup]:
        model.predict([im])
    times = []
    for im in images:
        t0 = time.perf_counter()
        model.predict([im])
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    return {"ms_median": statistics.median(times), "ms_p95": times[min(len(times) - 1, int(0.95 * len(times)))],
            "ms_mean": statistics.fmean(times), "n": len(times), "batch": 1,
            "includes": "preprocess + inference (decode excluded)"}


def _row(model_path: str, spec: DataSpec, report: EvaluationReport, latency: Mapping[str, Any],
         weights: Mapping[str, float]) -> dict[str, Any]:
    image, at = report.image, report.image.at
    comp = composite_score(composite_inputs(report), weights)
    energy = report.energy.inference_per_1000_parts or {}
    return {
        "model": report.model.name,
        "model_path": model_path,
        "kind": report.model.kind,
        "dataset": spec.name,
        "split": spec.split,
        "n": report.dataset.n,
        "image_auroc": image.auroc,
        "average_precision": image.average_precision,
        "f1": at.f1,
        "precision": at.precision,
        "recall": at.recall,
        "false_reject_rate": at.false_reject_rate,
        "escape_rate": at.escape_rate,
        "best_f1": image.best_f1.f1 if image.best_f1 else None,
        "pixel_auroc": report.pixel.pixel_auroc,
        "pro": report.pixel.pro,
        "defect_type_macro_f1": report.defect_type.macro_f1,
        "defect_type_auroc": report.defect_type.defect_type_auroc,
        "latency_ms": {b: lat.get("ms_median") for b, lat in latency.items()},
        "latency": dict(latency),
        "eval_ms_per_image": report.timing.ms_per_image,  # batched, decode included
        "parameters": report.model.parameters,
        "size_bytes": report.model.size_bytes,
        "energy_wh_per_1000": energy.get("energy_wh"),
        "energy_method": energy.get("method"),
        "training_energy_wh": (report.energy.training or {}).get("energy_wh"),
        "composite": comp["score"],
        "composite_missing": comp["missing"],
    }


def compare_models(models: Sequence[Path | str], datasets: Sequence[DataSpec], *,
                   backends: Sequence[str] = ("onnxruntime",), threads: int = 2,
                   weights: Mapping[str, float] | None = None, latency_images: int = 20,
                   batch_size: int = 16, progress: bool = False) -> dict[str, Any]:
    """Evaluate every model on every dataset and time it on every backend; return the comparison dict.

    A backend that cannot load here (TensorRT on a CPU box) gives ``None`` with its reason rather
    than aborting the whole comparison.
    """
    if not models:
        raise EvaluationError("no model given: name at least one model .onnx or .card.json")
    if not datasets:
        raise EvaluationError("no dataset given: --data needs at least one dataset folder or .zip")
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    rows: list[dict[str, Any]] = []
    curves: dict[str, list[tuple[str, list[int], list[float]]]] = {}
    for spec in datasets:
        timing_images = [decode_image(s.path) for s in spec.samples[:latency_images]]
        for model_path in models:
            loaded = LoadedModel.load(model_path, backend=backends[0], threads=threads)
            report, pred = evaluate_model(loaded, spec.samples, batch_size=batch_size, progress=progress,
                                          dataset={"name": spec.name, "root": spec.root, "split": spec.split},
                                          weights=weights)
            latency: dict[str, Any] = {backends[0]: measure_latency(loaded, timing_images, max_images=latency_images)}
            for backend in backends[1:]:
                try:
                    other = LoadedModel.load(model_path, backend=backend, threads=threads)
                    latency[backend] = measure_latency(other, timing_images, max_images=latency_images)
                except (BackendError, CardError, ImportError, OSError) as exc:
                    latency[backend] = {"ms_median": None, "reason": str(exc)}
            rows.append(_row(str(model_path), spec, report, latency, weights))
            curves.setdefault(spec.name, []).append((report.model.name, pred.labels.tolist(),
                                                     pred.raw_scores.tolist()))
    for spec in datasets:
        ranked = sorted((r for r in rows if r["dataset"] == spec.name),
                        key=lambda r: -1.0 if r["composite"] is None else r["composite"], reverse=True)
        for rank, r in enumerate(ranked, 1):
            r["rank"] = rank
    return {"schema": 1, "kind": "comparison", "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "weights": weights, "backends": list(backends), "threads": threads, "rows": rows,
            "summary": _summary(rows), "curves": curves}


def _summary(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per model across datasets: mean composite and mean first-backend latency."""
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        comps = [r["composite"] for r in mine if r["composite"] is not None]
        lats = [next(iter(r["latency_ms"].values())) for r in mine]
        lats = [v for v in lats if v is not None]
        out.append({"model": name, "datasets": len(mine),
                    "mean_composite": statistics.fmean(comps) if comps else None,
                    "mean_latency_ms": statistics.fmean(lats) if lats else None})
    return sorted(out, key=lambda r: -1.0 if r["mean_composite"] is None else r["mean_composite"], reverse=True)


COLUMNS = [("model", "model"), ("dataset", "dataset"), ("AUROC", "image_auroc"), ("F1", "f1"),
           ("recall", "recall"), ("FRR", "false_reject_rate"), ("escape", "escape_rate"),
           ("px AUROC", "pixel_auroc"), ("PRO", "pro"), ("type F1", "defect_type_macro_f1"),
           ("type AUROC", "defect_type_auroc"), ("params", "parameters"), ("MB", "size_bytes"),
           ("Wh/1000", "energy_wh_per_1000"), ("train Wh", "training_energy_wh"), ("composite", "composite"),
           ("rank", "rank")]


def _values(row: Mapping[str, Any], backends: Sequence[str]) -> list[Any]:
    vals = []
    for _, key in COLUMNS:
        v = row.get(key)
        if key == "size_bytes" and v is not None:
            v = v / 1e6
        vals.append(v)
    return vals[:11] + [row["latency_ms"].get(b) for b in backends] + vals[11:]


def _headers(backends: Sequence[str]) -> list[str]:
    names = [h for h, _ in COLUMNS]
    return names[:11] + [f"ms/img {b}" for b in backends] + names[11:]


def terminal_table(result: Mapping[str, Any]) -> str:
    headers = _headers(result["backends"])
    cells = [[fmt(v, 3) for v in _values(r, result["backends"])] for r in result["rows"]]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    notes = {f"{r['model']}@{r['dataset']}": r["composite_missing"] for r in result["rows"] if r["composite_missing"]}
    for key, missing in notes.items():
        lines.append(f"  note: {key}: composite without {', '.join(missing)} (re-weighted)")
    lines.append("  energy: " + ", ".join(sorted({str(r["energy_method"]) for r in result["rows"]}))
                 + " (see energy.py; 'estimate' = CPU seconds x watts per core)")
    return "\n".join(lines)


def comparison_html(result: Mapping[str, Any]) -> str:
    backends = result["backends"]
    weights = ", ".join(f"{k} {v:g}" for k, v in result["weights"].items())
    body = [f"<h1>Model comparison</h1><p class=\"note\">created {html.escape(result['created_at'])}; "
            f"composite weights: {html.escape(weights)}; latency: batch 1, {result['threads']} threads, "
            "preprocess + inference, measured on this machine.</p>"]
    best = [r.get("rank") == 1 for r in result["rows"]]
    body.append(table(_headers(backends), [_values(r, backends) for r in result["rows"]],
                      ["best" if b else "" for b in best]))
    for r in result["rows"]:
        if r["composite_missing"]:
            body.append(f'<p class="note">{html.escape(r["model"])} on {html.escape(r["dataset"])}: composite '
                        f"without {html.escape(', '.join(r['composite_missing']))} (remaining weights re-scaled).</p>")
        for b, lat in r["latency"].items():
            if lat.get("ms_median") is None and lat.get("reason"):
                body.append(f'<p class="note">{html.escape(r["model"])} / {html.escape(b)}: '
                            f"{html.escape(lat['reason'])}</p>")
    body.append("<h2>Across datasets</h2>" + table(
        ["model", "datasets", "mean composite", f"mean ms/img ({backends[0]})"],
        [[s["model"], s["datasets"], s["mean_composite"], s["mean_latency_ms"]] for s in result["summary"]]))
    body.append(img(plots.bar_plot([s["model"] for s in result["summary"]],
                                   [s["mean_composite"] for s in result["summary"]], "Composite score", "score"),
                    "composite bar chart"))
    for name, curves in result["curves"].items():
        arrays = [(m, np.asarray(y), np.asarray(s)) for m, y, s in curves]
        if all(len(set(y.tolist())) == 2 for _, y, _ in arrays):
            body.append(f"<h2>{html.escape(name)}</h2>" + img(plots.roc_plot(arrays, f"ROC: {name}"), "ROC")
                        + img(plots.pr_plot(arrays, f"PR: {name}"), "PR"))
    body.append('<p class="note">Energy per 1000 parts: "estimate" = process CPU seconds x watts per busy '
                "core (EDGE_INSPECTOR_WATTS_PER_CORE, default 10 W), decode included; not a measurement.</p>")
    return page("Model comparison", "".join(body))


def write_comparison(result: Mapping[str, Any], out_dir: Path | str) -> tuple[Path, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in result.items() if k != "curves"}
    json_path = write_json(data, out / "comparison.json")
    html_path = out / "comparison.html"
    html_path.write_text(comparison_html(result))
    return json_path, html_path
