"""compare: two tiny real ONNX models, one table with accuracy, latency, size, parameters, composite."""

from __future__ import annotations

import json
import re

import pytest

from edge_inspector.evaluate.compare import DataSpec, compare_models, terminal_table, write_comparison


@pytest.fixture(scope="module")
def comparison(eval_models, eval_samples):
    spec = DataSpec(name="tiny", root="/tmp", split="test", samples=eval_samples)
    return compare_models([eval_models["detector"], eval_models["classifier"]], [spec],
                          backends=["onnxruntime", "tensorrt"], threads=1, latency_images=5)


def test_rows_hold_accuracy_speed_and_size(comparison, eval_models):
    rows = {r["model"]: r for r in comparison["rows"]}
    assert set(rows) == {"tiny-detector", "tiny-classifier"}
    det, cls = rows["tiny-detector"], rows["tiny-classifier"]
    assert det["image_auroc"] == pytest.approx(0.875)
    assert det["pro"] is not None and cls["pro"] is None
    assert cls["defect_type_auroc"] is not None and det["defect_type_auroc"] is None
    assert det["latency_ms"]["onnxruntime"] > 0 and det["latency"]["onnxruntime"]["n"] == 5
    # no TensorRT on a CPU box: None with the reason, the comparison still completes
    assert det["latency_ms"]["tensorrt"] is None and det["latency"]["tensorrt"]["reason"]
    assert det["parameters"] == 2  # gain + squeeze axis initializers
    assert det["size_bytes"] == eval_models["detector"].with_name("tiny-detector.onnx").stat().st_size
    assert det["composite_missing"] == ["defect_type_auroc"] and cls["composite_missing"] == ["pro"]
    assert sorted(r["rank"] for r in comparison["rows"]) == [1, 2]
    best = min(comparison["rows"], key=lambda r: r["rank"])
    assert best["composite"] == max(r["composite"] for r in comparison["rows"])


def test_outputs(comparison, tmp_path):
    text = terminal_table(comparison)
    assert "ms/img onnxruntime" in text and "ms/img tensorrt" in text and "tiny-detector" in text
    assert "re-weighted" in text
    json_path, html_path = write_comparison(comparison, tmp_path)
    data = json.loads(json_path.read_text())
    assert len(data["rows"]) == 2 and data["weights"]["pro"] == 0.25
    page = html_path.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert page.count("data:image/png;base64,") >= 3  # composite bars, ROC, PR


def test_weights_change_the_ranking(eval_models, eval_samples):
    spec = DataSpec(name="tiny", root="/tmp", split="test", samples=eval_samples)
    only_pro = dict.fromkeys(("image_auroc", "f1", "recall", "defect_type_auroc"), 0.0) | {"pro": 1.0}
    result = compare_models([eval_models["classifier"], eval_models["detector"]], [spec], threads=1,
                            latency_images=2, weights=only_pro)
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["tiny-detector"]["rank"] == 1 and rows["tiny-classifier"]["composite"] is None


def test_needs_models_and_data(eval_samples):
    with pytest.raises(ValueError, match="no model"):
        compare_models([], [DataSpec("x", "/", "test", eval_samples)])
    with pytest.raises(ValueError, match="no dataset"):
        compare_models(["m.onnx"], [])
