"""report.json + one self-contained report.html (inline CSS, plots as base64 PNG, no external URL).

The JSON is the machine-readable record (CI gates, model cards, ``compare``); the HTML is for the
quality engineer and must open anywhere, offline, as a single file.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import plots
from .metrics import CALIBRATED_THRESHOLD
from .scoring import Predictions
from .types import EvaluationReport, ImageMetrics, ThresholdCounts

CSS = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;border-bottom:1px solid #ccc;padding-bottom:3px;margin-top:28px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
.na{color:#999}.figs img{margin:4px;border:1px solid #ddd}.note{color:#666;font-size:12px}
.gallery{display:flex;flex-wrap:wrap;gap:8px}.tile{font-size:11px;width:196px}
.warn{background:#fff3e0;border:1px solid #e65100;padding:4px 12px;margin:8px 0}
.tile img{border:2px solid #ccc}.tile.err img{border-color:#d62728}.best{background:#e8f5e9}
"""


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers for humans: None becomes an explicit "n/a" (never a misleading 0)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.2g}"  # tiny energies: 2 significant digits, not a misleading 0.000
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def _cell(value: Any, digits: int = 3) -> str:
    text = html.escape(fmt(value, digits))
    return f'<td class="na">{text}</td>' if value is None else f"<td>{text}</td>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], row_classes: Sequence[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(_cell(v) for v in row) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def unavailable_note(section: Mapping[str, Any] | Any | None) -> str:
    """The section's ``unavailable`` reasons (a report section or a plain dict)."""
    if isinstance(section, Mapping):
        reasons = section.get("unavailable") or {}
    else:
        reasons = getattr(section, "unavailable", None) or {}
    if not reasons:
        return ""
    items = "; ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in reasons.items())
    return f'<p class="note">Not available: {items}</p>'


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body>{body}</body></html>\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(data: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    return path


# -- evaluation report -------------------------------------------------------------------------

def _threshold_rows(image: ImageMetrics) -> list[list[Any]]:
    rows = []
    for label, at in (("calibrated", image.at_threshold), ("best F1", image.best_f1)):
        if not at:
            rows.append([label] + [None] * 9)
            continue
        rows.append([label, at.threshold, at.precision, at.recall, at.f1, at.accuracy,
                     at.false_reject_rate, at.escape_rate, f"{at.tp}/{at.fp}", f"{at.fn}/{at.tn}"])
    return rows


def calibrate_command(report: EvaluationReport) -> str:
    """The command that moves this model's threshold to the best-F1 rule, for the report and the terminal.

    A report shows what another threshold would give; without the command a reader cannot act on it.
    F1 needs labelled defects: the validation split when it has them (plain folders, stratified),
    otherwise the test split (MVTec native), which makes later test figures optimistic.
    """
    model, data = report.model, report.dataset
    split = "val" if data.val_has_defects in (None, True) else "test"
    dataset = data.source or data.root
    cmd = ["edge-inspector calibrate", model.card or model.name, str(dataset), "--method f1", f"--split {split}"]
    if data.scheme not in (None, "native"):
        cmd.append(f"--scheme {data.scheme}")
    if data.split_seed:
        cmd.append(f"--split-seed {data.split_seed}")
    return " ".join(cmd)


def _gallery_html(report: EvaluationReport, pred: Predictions) -> str:
    parts = []
    for key, title, none_wrong in (
            ("false_positives", "Worst false positives (good parts scored highest)",
             "No false positives: the good parts that scored highest, all accepted"),
            ("false_negatives", "Worst false negatives (defective parts scored lowest)",
             "No false negatives: the defective parts that scored lowest, all rejected")):
        items = getattr(report.gallery, key)
        if items and not any(item.error for item in items):
            title = none_wrong
        tiles = []
        for item in items:
            i = item.index
            sample = pred.samples[i]
            amap = pred.maps[i] if pred.maps is not None else None
            try:
                b64 = plots.overlay(str(sample.path), amap, str(sample.mask_path) if sample.mask_path else None)
            except Exception as exc:  # noqa: BLE001 - one unreadable image must not lose the report
                tiles.append(f'<div class="tile">{html.escape(sample.path.parent.name)}/'
                             f'{html.escape(sample.path.name)}: {html.escape(str(exc))}</div>')
                continue
            cls = "tile err" if item.error else "tile"
            verdict = "ERROR" if item.error else "correct (closest call)"
            shown = f"{sample.path.parent.name}/{sample.path.name}"  # names repeat across defect-type folders
            tiles.append(f'<div class="{cls}">{img(b64, shown)}<br>{html.escape(shown)}'
                         f"<br>{html.escape(str(item.defect_type))}, score {item.score:.3f}, {verdict}</div>")
        parts.append(f"<h3>{html.escape(title)}</h3>"
                     + (f'<div class="gallery">{"".join(tiles)}</div>' if tiles else "<p>none</p>"))
    return "".join(parts)


def _energy_html(energy: Mapping[str, Any] | None, label: str) -> str:
    if not energy or energy.get("method") is None:
        return ""
    return (f"<p>{html.escape(label)}: <b>{fmt(energy.get('energy_wh'), 4)} Wh</b>, "
            f"{fmt(energy.get('co2_g'), 3)} g CO2e ({html.escape(str(energy['method']))}: "
            f"{html.escape(str(energy.get('basis', '')))}).</p>")


def evaluation_html(report: EvaluationReport, pred: Predictions) -> str:
    model, data, image = report.model, report.dataset, report.image
    labels, scores = pred.labels, pred.scores
    best = image.best_f1.threshold if image.best_f1 else None
    body = [f"<h1>Evaluation: {html.escape(model.name)} v{html.escape(model.version)} on "
            f"{html.escape(str(data.name))} ({html.escape(str(data.split))})</h1>",
            f'<p class="note">created {html.escape(report.created_at)}, backend {html.escape(report.backend)}, '
            f"{data.n} images ({data.n_good} good, {data.n_defective} defective)</p>"]
    comp = report.composite
    if report.warnings:
        items = "".join(f"<li>{html.escape(w)}</li>" for w in report.warnings)
        body.append(f'<div class="warn"><b>Read this first</b><ul>{items}</ul></div>')
    at = image.at
    if image.at_threshold:
        body.append(f"<p><b>{html.escape(operating_point_words(at))}</b></p>")
    body.append("<h2>Summary</h2>" + table(
        ["figure", "value"],
        [["image AUROC", image.auroc], ["average precision", image.average_precision],
         ["F1 (calibrated)", at.f1],
         ["false-reject rate (calibrated)", at.false_reject_rate],
         ["escape rate (calibrated)", at.escape_rate],
         ["pixel AUROC", report.pixel.pixel_auroc], ["PRO (AUPRO@30 % FPR)", report.pixel.pro],
         ["defect-type macro F1", report.defect_type.macro_f1],
         ["composite score", comp.score], ["ms / image (decode+infer)", report.timing.ms_per_image]]))
    if comp.missing:
        body.append(f'<p class="note">Composite: missing {", ".join(comp.missing)}; '
                    "the remaining weights were re-scaled to sum to 1.</p>")
    body.append(_energy_html(report.energy.inference_per_1000_parts, "Inference energy per 1000 parts"))
    body.append(_energy_html(report.energy.training, "Training energy"))

    body.append("<h2>Image level</h2>" + table(
        ["threshold", "value", "precision", "recall", "F1", "accuracy", "false-reject", "escape", "TP/FP", "FN/TN"],
        _threshold_rows(image)) + unavailable_note(image)
        + f'<p class="note">To move the threshold to the best-F1 rule: <code>{html.escape(calibrate_command(report))}'
        "</code> (it updates the card and its calibration record; see the guide's <i>Calibrating thresholds</i>). "
        "<code>--method recall --target 0.99</code> keeps at least 99 % of defects, "
        "<code>--method fpr --target 0.01</code> rejects about 1 % of good parts, "
        "<code>--method cost --target 10</code> weighs one escape as ten false rejects. The threshold was set "
        "on normal images the model had not seen (training images scored out-of-fold plus the validation "
        "split); the card's <code>operating_point</code> gives its false-reject rate with a 95 % interval.</p>")
    curves = [(model.name, labels, pred.raw_scores)]  # ranking curves on raw scores (no clipping ties)
    best_line = None if best is None else min(1.0, max(0.0, best))
    figs = [img(plots.score_histogram(labels, scores, CALIBRATED_THRESHOLD, best_line), "score histogram"),
            img(plots.tradeoff_plot(labels, scores, CALIBRATED_THRESHOLD), "false rejects vs escapes")]
    if image.auroc is not None:
        figs += [img(plots.roc_plot(curves), "ROC curve"), img(plots.pr_plot(curves), "PR curve")]
    if image.at_threshold:
        figs.append(img(plots.confusion_plot([[at.tn, at.fp], [at.fn, at.tp]], ["good", "defect"],
                                             "Confusion (calibrated)"), "binary confusion matrix"))
    body.append(f'<div class="figs">{"".join(figs)}</div>')

    body.append("<h2>Per defect type</h2>" + table(
        ["type", "n", "mean score", "detection rate", "false-reject rate", "AUROC vs good", "pixel AUROC", "PRO"],
        [[r.type, r.n, r.mean_score, r.detection_rate, r.false_reject_rate, r.auroc_vs_good,
          r.pixel_auroc, r.pro] for r in report.per_type]))
    dt = report.defect_type
    body.append("<h2>Defect-type classification</h2>")
    if dt.per_class:
        body.append(table(["figure", "value"], [["macro F1", dt.macro_f1], ["weighted F1", dt.weighted_f1],
                                                ["defect-type AUROC (one-vs-rest)", dt.defect_type_auroc]]))
        body.append(table(["type", "support", "precision", "recall", "F1"],
                          [[c["type"], c["support"], c["precision"], c["recall"], c["f1"]] for c in dt.per_class]))
        body.append(f'<div class="figs">{img(plots.confusion_plot(dt.confusion, dt.classes), "type confusion")}'
                    "</div>")
    body.append(unavailable_note(dt))

    px = report.pixel
    best_dice = px.best_dice or {}
    body.append("<h2>Pixel level</h2>" + table(
        ["figure", "value"], [["pixel AUROC", px.pixel_auroc], ["PRO (normalised AUPRO to 30 % FPR)", px.pro],
                              ["IoU at threshold", px.iou], ["Dice at threshold", px.dice],
                              ["best Dice (oracle map threshold)", best_dice.get("dice")],
                              ["IoU at that threshold", best_dice.get("iou")],
                              ["resolution", "x".join(map(str, px.resolution or [])) or None]]))
    if px.pro_curve:
        curve = px.pro_curve
        body.append(f'<div class="figs">{img(plots.pro_plot(curve["fpr"], curve["pro"], px.fpr_limit), "PRO")}'
                    "</div>")
    body.append(unavailable_note(px))
    body.append("<h2>Gallery</h2><p class=\"note\">Heatmap: normalised anomaly map (JET); magenta outline: "
                "ground-truth mask; red frame: misclassified at the calibrated threshold.</p>")
    body.append(_gallery_html(report, pred))
    body.append("<h2>Model card</h2>" + table(
        ["field", "value"], [[k, json.dumps(v) if isinstance(v, (dict, list)) else v]
                             for k, v in model.model_dump(exclude_unset=True).items()]))
    return page(f"Evaluation {model.name}", "".join(body))


def write_evaluation_report(report: EvaluationReport, pred: Predictions, out_dir: Path | str) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``out_dir``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = write_json(report.to_json_dict(), out / "report.json")
    html_path = out / "report.html"
    html_path.write_text(evaluation_html(report, pred))
    if report.image.auroc is not None:  # also as a file, for tools that list a report's *roc*.png
        curves = [(report.model.name, pred.labels, pred.raw_scores)]
        (out / "roc_image.png").write_bytes(base64.b64decode(plots.roc_plot(curves)))
    return json_path, html_path


def operating_point_words(at: ThresholdCounts) -> str:
    """What the calibrated threshold did on these parts, in plain words, with 95 % intervals."""
    from ..operating_point import rate_interval  # noqa: PLC0415
    from ..toolchain.calibrate import describe_rates  # noqa: PLC0415 - calibration owns the wording

    n_good, n_def = at.tn + at.fp, at.tp + at.fn
    fr = at.fp / n_good if n_good else 0.0
    esc = at.fn / n_def if n_def else None
    return "At the calibrated threshold the model " + describe_rates(
        fr, rate_interval(at.fp, n_good), n_good, esc, rate_interval(at.fn, n_def) if n_def else None, n_def)


def terminal_summary(report: EvaluationReport) -> str:
    """A few lines for the terminal: the figures an engineer checks first."""
    image, at, px, dt, data = report.image, report.image.at, report.pixel, report.defect_type, report.dataset
    energy = report.energy.inference_per_1000_parts or {}
    lines = [operating_point_words(at)] if image.at_threshold else []
    lines += [
        f"{report.model.name} on {data.name} [{data.split}]: "
        f"{data.n} images ({data.n_good} good, {data.n_defective} defective)",
        f"  image AUROC {fmt(image.auroc)}  AP {fmt(image.average_precision)}  "
        f"F1 {fmt(at.f1)}  precision {fmt(at.precision)}  recall {fmt(at.recall)}",
        f"  at calibrated threshold: false-reject {fmt(at.false_reject_rate)}  "
        f"escape {fmt(at.escape_rate)}  accuracy {fmt(at.accuracy)}",
        f"  pixel AUROC {fmt(px.pixel_auroc)}  PRO {fmt(px.pro)}  IoU {fmt(px.iou)}  Dice {fmt(px.dice)}",
        f"  defect-type macro F1 {fmt(dt.macro_f1)}  type AUROC {fmt(dt.defect_type_auroc)}",
        f"  composite {fmt(report.composite.score)}  {fmt(report.timing.ms_per_image, 1)} ms/image  "
        f"energy/1000 parts {fmt(energy.get('energy_wh'), 4)} Wh ({energy.get('method')})",
    ]
    lines += [f"  WARNING: {w}" for w in report.warnings]
    return "\n".join(lines)
