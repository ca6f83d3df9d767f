"""Known models: register a card (from a finished job or an existing folder) with its metrics and report.

Metrics come from the card's ``metrics`` and, when an evaluation ran, from ``report.json``
(flattened to dotted names such as ``image.auroc``), so the comparison page shows whatever the
evaluation measured without the console hard-coding its schema.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge_inspector.card import load_card

from .models import TrainedModel, TrainingJob

MAX_METRICS = 60


def flatten_metrics(data: dict, prefix: str = "", depth: int = 0) -> dict[str, float]:
    """Numeric leaves of a nested dict as {"a.b": value}; lists and strings are left out."""
    out: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float):
            out[name] = float(value)
        elif isinstance(value, dict) and depth < 2:
            out.update(flatten_metrics(value, name + ".", depth + 1))
        if len(out) >= MAX_METRICS:
            break
    return out


def find_report(report_dir: Path | None) -> tuple[Path | None, dict]:
    if report_dir is None or not Path(report_dir).is_dir():
        return None, {}
    report = Path(report_dir) / "report.json"
    if not report.is_file():
        candidates = sorted(Path(report_dir).rglob("report.json"))
        report = candidates[0] if candidates else None
    if report is None:
        return None, {}
    try:
        data = json.loads(report.read_text())
    except ValueError:
        return report.parent, {}
    return report.parent, data if isinstance(data, dict) else {}


def _section(data: dict, key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def report_metrics(data: dict) -> dict[str, float]:
    """Accuracy from ``metrics`` (the evaluation's summary) next to speed, size and energy."""
    source = data.get("metrics") if isinstance(data.get("metrics"), dict) else data
    out = flatten_metrics(source)
    model, energy = _section(data, "model"), _section(_section(data, "energy"), "inference_per_1000_parts")
    size = model.get("size_bytes")
    extras = {
        "ms_per_image": _section(data, "timing").get("ms_per_image"),
        "parameters": model.get("parameters"),
        "size_mb": size / 1e6 if isinstance(size, int | float) else None,
        "energy_wh_per_1000": energy.get("energy_wh"),
    }
    out.update({k: float(v) for k, v in extras.items() if isinstance(v, int | float) and not isinstance(v, bool)})
    return out


def register_card(card_path: Path, *, report_dir: Path | None = None, job: TrainingJob | None = None) -> TrainedModel:
    """Create or update the TrainedModel for a card; raises CardError when the card or its model is bad."""
    card_path = Path(card_path).resolve()
    card = load_card(card_path)  # checks the model file's sha256 too
    found_dir, report = find_report(report_dir)
    metrics = {k: float(v) for k, v in card.metrics.items() if isinstance(v, int | float)}
    metrics.update(report_metrics(report))
    model, _ = TrainedModel.objects.update_or_create(
        card_path=str(card_path),
        defaults={
            "name": card.name,
            "version": card.version,
            "kind": card.kind,
            "card": json.loads(card.model_dump_json(by_alias=True)),
            "metrics": metrics,
            "report_dir": str(found_dir) if found_dir else "",
            "job": job,
        },
    )
    return model


# Shown first, in this order, when present: accuracy next to latency, size and the composite score.
PREFERRED = ["image.auroc", "image.f1", "image.recall", "image.false_reject_rate", "image.escape_rate",
             "pixel.auroc", "pixel.pro", "defect_type.macro_f1", "composite", "ms_per_image", "parameters", "size_mb"]


def metric_columns(models: list[TrainedModel], limit: int = 14) -> list[str]:
    """Preferred metrics first, then the names most models share (ties: alphabetical)."""
    counts: dict[str, int] = {}
    for m in models:
        for key, value in (m.metrics or {}).items():
            if value is not None:
                counts[key] = counts.get(key, 0) + 1
    rank = {name: i for i, name in enumerate(PREFERRED)}
    ordered = sorted(counts.items(), key=lambda kv: (rank.get(kv[0], len(rank)), -kv[1], kv[0]))
    return [k for k, _ in ordered][:limit]
