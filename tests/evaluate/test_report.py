"""evaluate_model + report files on tiny real ONNX models (ONNX Runtime) and generated images."""

from __future__ import annotations

import json
import re

import pytest

from edge_inspector.evaluate.report import terminal_summary, write_evaluation_report
from edge_inspector.evaluate.runner import evaluate_model

DATA = {"name": "tiny", "root": "/tmp", "split": "test"}


@pytest.fixture(scope="module")
def detector_eval(eval_models, eval_samples):
    return evaluate_model(eval_models["detector"], eval_samples, dataset=DATA, threads=1)


def test_detector_figures(detector_eval):
    report, pred = detector_eval
    image = report.image
    # 8 good (one with a bright unmasked spot), 8 defective (one faint): exactly one FP and one FN
    at = image.at_threshold
    assert (at.tp, at.fp, at.tn, at.fn) == (7, 1, 7, 1)
    assert at.false_reject_rate == pytest.approx(1 / 8) and at.escape_rate == pytest.approx(1 / 8)
    # the spotted good part (0.90) outscores all 8 defects (0.88 and the faint 0.38); the faint defect
    # still beats the 7 plain good parts (<= 0.27): 8 of 64 pairs wrong
    assert image.auroc == pytest.approx(1 - 8 / 64)
    px = report.pixel
    assert px.resolution == [128, 128]  # the 32x32 map brought to the fixed evaluation size
    assert px.pixel_auroc > 0.9 and 0.5 < px.pro <= 1.0
    assert 0.5 < px.iou <= 1.0 and px.dice >= px.iou
    assert report.defect_type.macro_f1 is None  # a detector has no type head
    assert report.composite.missing == ["defect_type_auroc"]
    assert report.energy.inference_per_1000_parts["method"] in ("estimate", "codecarbon")
    assert report.energy.inference_per_1000_parts["energy_wh"] > 0
    fp = report.gallery.false_positives[0]
    assert fp.error and "good" in fp.path and fp.index == 0
    fn = report.gallery.false_negatives[0]
    assert fn.error and fn.defect_type == "red"
    assert pred.maps.shape == (16, 128, 128)
    rows = {r.type: r for r in report.per_type}
    # blue defects are all found and bright; the red type holds the faint one, so it localises worse
    assert rows["blue"].pro > rows["red"].pro and rows["good"].pro is None
    assert rows["blue"].pixel_auroc > 0.99


def test_classifier_defect_types(eval_models, eval_samples):
    report, _ = evaluate_model(eval_models["classifier"], eval_samples, dataset=DATA, threads=1)
    dt = report.defect_type
    by = {c["type"]: c for c in dt.per_class}
    assert by["blue"]["recall"] == 1.0
    assert by["red"]["recall"] == pytest.approx(3 / 4)  # the faint red defect is passed as good
    assert dt.defect_type_auroc is not None and dt.defect_type_auroc > 0.8
    assert report.pixel.pro is None and "no anomaly map" in report.pixel.unavailable["pro"]
    assert report.composite.missing == ["pro"]


def test_pixel_metrics_use_one_resolution_for_every_map_size(eval_models, eval_samples):
    coarse, pred = evaluate_model(eval_models["pooled"], eval_samples, dataset=DATA, threads=1, pixel_size=32)
    fine, _ = evaluate_model(eval_models["detector"], eval_samples, dataset=DATA, threads=1, pixel_size=32)
    assert coarse.pixel.resolution == fine.pixel.resolution == [32, 32]  # 8x8 map upsampled
    assert pred.masks.shape == pred.maps.shape == (16, 32, 32)
    # the same ground truth for both, so the coarse map is visibly worse at localising
    assert coarse.pixel.n_regions == fine.pixel.n_regions
    assert coarse.pixel.iou < fine.pixel.iou


def test_report_files_are_self_contained(detector_eval, tmp_path):
    report, pred = detector_eval
    json_path, html_path = write_evaluation_report(report, pred, tmp_path / "r")
    data = json.loads(json_path.read_text())
    for key in ("model", "dataset", "image", "per_type", "defect_type", "pixel", "composite", "energy",
                "gallery", "timing", "metrics"):
        assert key in data, key
    assert data["metrics"]["image"]["auroc"] == pytest.approx(0.875) and data["metrics"]["pixel"]["pro"] > 0.5
    assert len(data["samples"]) == 16 and data["samples"][0]["label"] == 0 and data["samples"][0]["score"] > 0.5
    assert (json_path.parent / "roc_image.png").stat().st_size > 1000
    for key in ("auroc", "average_precision", "at_threshold", "best_f1"):
        assert key in data["image"]
    for key in ("pixel_auroc", "pro", "iou", "dice"):
        assert key in data["pixel"]
    assert data["model"]["name"] == "tiny-detector" and data["model"]["parameters"] == 2
    text = html_path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "external resource in report"
    assert "<script" not in text and "<link" not in text
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) >= 6  # histogram, ROC, PR, confusion, PRO curve, gallery tiles
    for name in ("ROC", "Per defect type", "Gallery", "Model card", "PRO", "false rejects vs escapes"):
        assert name in text or name in "".join(re.findall(r'alt="([^"]+)"', text)), name
    shown = pred.samples[report.gallery.false_negatives[0].index].path
    assert f"{shown.parent.name}/{shown.name}" in text  # gallery names carry their folder
    summary = terminal_summary(report)
    assert "image AUROC" in summary and "escape" in summary and "PRO" in summary
    assert summary.startswith("At the calibrated threshold the model rejects")  # the operating point first


def test_ranking_metrics_survive_clipped_normalisation(eval_models, eval_samples, detector_eval, tmp_path):
    """A narrow normalisation clips most scores to 0 or 1 (ties); AUROC, PRO and pixel AUROC rank the
    raw outputs, so they equal the unclipped model's, while the at-threshold counts are unchanged."""
    from tests.evaluate.tiny import build_detector

    clipped = build_detector(tmp_path, "tiny-clipped", span=0.1)  # raw outside 0.45..0.55 clips
    report, pred = evaluate_model(clipped, eval_samples, dataset=DATA, threads=1)
    ref = detector_eval[0]
    assert len(set(pred.scores.round(6))) <= 4  # normalised scores are nearly all 0 or 1
    assert report.image.auroc == pytest.approx(ref.image.auroc) == pytest.approx(0.875)
    assert report.pixel.pixel_auroc == pytest.approx(ref.pixel.pixel_auroc)
    assert report.pixel.pro == pytest.approx(ref.pixel.pro)
    # ranking the clipped maps instead would tie the faint defect's pixels with the background
    from edge_inspector.evaluate.metrics import pixel_metrics

    tied = pixel_metrics(pred.maps, pred.masks)
    assert tied["pixel_auroc"] < report.pixel.pixel_auroc - 0.005 and tied["pro"] < report.pixel.pro
    assert report.image.at_threshold.tp == ref.image.at_threshold.tp
    assert ref.warnings == []
    best = report.image.best_f1
    assert best.raw_threshold == pytest.approx(ref.image.best_f1.raw_threshold)
    # normalised equivalent of the raw best-F1 threshold: (raw - 0.5) / 0.1 + 0.5, may leave [0, 1]
    assert best.threshold == pytest.approx((best.raw_threshold - 0.5) / 0.1 + 0.5)


def test_warnings_flag_a_model_that_rejects_everything(eval_samples, tmp_path):
    from edge_inspector.card import load_card
    from tests.evaluate.tiny import build_detector

    card_path = build_detector(tmp_path, "tiny-low")
    card = load_card(card_path)
    card.normalization.threshold = 0.0  # every part scores above it
    card.normalization.method = "uncalibrated"
    card.save(card_path)
    report, _ = evaluate_model(card_path, eval_samples, dataset=DATA, threads=1)
    assert report.image.at_threshold.false_reject_rate == 1.0
    text = " ".join(report.warnings)
    assert "uncalibrated" in text and "100% of good parts are rejected" in text
    assert "WARNING" in terminal_summary(report)


def test_report_json_reads_back_into_the_same_report(detector_eval, tmp_path):
    """report.json is the typed report dumped: reading it back gives the same object, and the JSON
    holds no key the report was not built with (no nulls for fields no metric filled in)."""
    from edge_inspector.evaluate.types import EvaluationReport

    report, pred = detector_eval
    json_path, _ = write_evaluation_report(report, pred, tmp_path / "r")
    data = json.loads(json_path.read_text())
    again = EvaluationReport.model_validate(data)
    assert json.loads(json.dumps(again.to_json_dict(), default=str)) == data
    assert data["schema"] == 1 and data["kind"] == "evaluation"
    assert "raw_threshold" not in data["image"]["at_threshold"]  # only best_f1 has one
    assert data["pixel"]["pro_curve"]["fpr"] and isinstance(again.pixel.pro_curve["fpr"], list)
    with pytest.raises(ValueError, match="image"):
        EvaluationReport.model_validate({k: v for k, v in data.items() if k != "image"})
