"""bench/accuracy.py end to end on a generated category: its figures are `edge-inspector evaluate`'s for the
same model (one scoring path), and its oracle diagnostic reads the right threshold off the labels."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_accuracy", ROOT / "bench" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_oracle_escape_is_the_lowest_escape_within_the_false_reject_limit() -> None:
    oracle = _bench_module().oracle_escape
    good = np.arange(100, dtype=float)  # 0 .. 99
    defects = np.array([10.0, 50.0, 97.5, 98.5, 200.0])
    scores = np.concatenate([good, defects])
    labels = np.r_[np.zeros(100), np.ones(5)]
    # rejecting at most 2 good parts puts the threshold just above 97: 97.5, 98.5 and 200 are caught
    assert oracle(scores, labels, 0.02) == pytest.approx(2 / 5)
    assert oracle(scores, labels, 0.0) == pytest.approx(4 / 5)  # only 200 lies above every good part
    assert oracle(scores, labels, 0.5) == pytest.approx(1 / 5)  # threshold near 49.5 catches 50 as well
    assert oracle(good, np.zeros(100), 0.02) is None  # no defects: nothing to read


def test_bench_figures_equal_evaluate_report_for_the_same_model(demo_dataset: Path, tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "accuracy.py"), "--data", str(demo_dataset.parent),
                          "--categories", demo_dataset.name, "--models", "feature_memory", "--threads", "2",
                          "--work", str(work), "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    row = json.loads(out.read_text())["rows"][0]
    assert res.stdout.splitlines()[-1].startswith("{")  # the JSON line after the human table and target lines
    lines = res.stdout.splitlines()
    assert any(line.startswith(f"{demo_dataset.name} ") and "feature_memory" in line for line in lines)
    assert "diagnostic: the best threshold on the test labels" in res.stdout
    if row["false_reject_rate"] <= 0.02:  # then the calibrated threshold is one the oracle could have read
        assert row["oracle_escape_at_frr_target"] <= row["escape_rate"] + 1e-9

    card = next((work / demo_dataset.name).glob("*.card.json"))
    report_dir = tmp_path / "report"
    res = subprocess.run([sys.executable, "-m", "edge_inspector", "evaluate", str(card), str(demo_dataset),
                          "--out", str(report_dir), "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads((report_dir / "report.json").read_text())
    assert row["image_auroc"] == pytest.approx(report["image"]["auroc"], abs=1e-9)
    assert row["pixel_auroc"] == pytest.approx(report["pixel"]["pixel_auroc"], abs=1e-9)
    at = report["image"]["at_threshold"]
    assert (row["false_reject_rate"], row["escape_rate"]) == pytest.approx((at["false_reject_rate"], at["escape_rate"]))


@pytest.mark.slow
def test_bench_auto_scores_the_model_auto_picks_on_a_native_split(demo_dataset: Path, tmp_path: Path) -> None:
    """--auto on a native split (val: good parts only): auto ranks on synthetic defects, and the bench's row is
    the chosen model's test figures, the same ones auto.json reports (one scoring path)."""
    work, out = tmp_path / "work", tmp_path / "bench.json"
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "accuracy.py"), "--data", str(demo_dataset.parent),
                          "--categories", demo_dataset.name, "--auto", "--models", "feature_memory",
                          "--threads", "2", "--work", str(work), "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    row = json.loads(out.read_text())["rows"][0]
    assert row["model"] == "auto" and row["val_defects"] == "synthetic"
    assert set(row["candidates"]) == {"feature_memory", "feature_memory@neighbourhood5"}
    assert row["chosen"] in row["candidates"] and f"auto chose {row['chosen']}" in res.stderr
    summary = json.loads((work / demo_dataset.name / "auto" / "auto_report" / "auto.json").read_text())
    assert summary["chosen"]["kind"] == row["chosen"]
    assert row["image_auroc"] == pytest.approx(summary["test"]["image_auroc"], abs=1e-9)
    assert row["escape_rate"] == pytest.approx(summary["test"]["escape_rate"], abs=1e-9)
