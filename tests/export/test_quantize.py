"""INT8 quantization and reduced-precision checks on a real conv model and a real dataset on disk;
the int8 model then runs through a real daemon replay and gives the fp32 verdicts."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge_inspector.backends import BackendError
from edge_inspector.backends.precision import read_checks
from edge_inspector.card import ScoreNormalization, load_card
from edge_inspector.data.readers import load_dataset
from edge_inspector.export.quantize import (
    QuantizeError,
    Scores,
    _score,
    check_reduced_precision,
    quantize_int8,
    transfer_normalization,
    validation_samples,
)
from edge_inspector.inference import LoadedModel
from tests.fixtures.conv_models import make_conv_model
from tests.fixtures.models import make_frame, write_frames
from tests.runtime.test_daemon import ROOT, DaemonProc, read_jsonl


def _frame(defect: bool, seed: int) -> np.ndarray:
    """Dark part, or one with a white square whose size varies (so AUROC ranks something)."""
    image = make_frame(False, 64, seed=seed)
    if defect:
        s = 14 + seed % 20
        image[10:10 + s, 12:12 + s] = 255
    return image


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An MVTec-layout dataset and a conv model whose card says it was trained on its train split."""
    root = tmp_path_factory.mktemp("qdata") / "part"
    for i in range(24):
        (root / "train" / "good").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "train" / "good" / f"{i:03d}.png"), _frame(False, i))
    for i in range(10):
        (root / "test" / "good").mkdir(parents=True, exist_ok=True)
        (root / "test" / "square").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "test" / "good" / f"{i:03d}.png"), _frame(False, 100 + i))
        cv2.imwrite(str(root / "test" / "square" / f"{i:03d}.png"), _frame(True, 200 + i))
    dataset = load_dataset(root)
    training = {"data_digest": dataset.digest("train"), "dataset": "part", "n_images": len(dataset.split("train")),
                "split": dataset.split_info}
    card = make_conv_model(tmp_path_factory.mktemp("qmodels"), training=training)
    return root, card


def test_int8_model_is_written_with_its_measured_accuracy_change(trained):
    root, card = trained
    result = quantize_int8(card, root, max_calibration=16, threads=1, force=True)
    q_card = load_card(result.card_path)
    assert q_card.name == "conv-detector-int8" and q_card.model_file == "conv-detector-int8.onnx"
    assert q_card.extra["quantization"]["calibration_images"] == 16
    assert q_card.extra["quantization"]["calibration_split"] == "train"
    import onnx

    ops = {n.op_type for n in onnx.load(str(q_card.model_path(result.card_path))).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # really quantized, not a copy
    check = read_checks(q_card)["onnxruntime:int8"]
    assert check.passed and check.split == "val+test" and check.n_defect == 10 and check.n_images > 20
    assert check.auroc_fp32 == pytest.approx(1.0) and check.auroc_drop <= 0.005
    assert 0 < check.max_score_diff < 0.1  # int8 moved the scores a little, and the card says by how much
    assert q_card.metrics["onnxruntime_int8_auroc_drop"] == check.auroc_drop
    fp32, int8 = LoadedModel.load(card), LoadedModel.load(result.card_path)
    frames = [_frame(i % 2 == 1, 300 + i) for i in range(6)]
    assert [r.is_defect for r in int8.predict(frames)] == [r.is_defect for r in fp32.predict(frames)]


def test_int8_beyond_tolerance_is_refused_with_the_numbers_and_no_file_left(trained):
    root, card = trained
    with pytest.raises(QuantizeError) as err:
        quantize_int8(card, root, max_calibration=8, threads=1, tolerance=-1.0, force=True, also_openvino=False)
    text = str(err.value)
    assert "int8 model refused" in text and "AUROC fp32 1.0000 ->" in text and "tolerance -1" in text
    assert not (card.parent / "conv-detector-int8.onnx").exists()
    assert not (card.parent / "conv-detector-int8.card.json").exists()


def test_calibration_data_must_be_the_models_training_data(trained, tmp_path):
    root, card = trained
    other = tmp_path / "other"
    write_frames(other / "train" / "good", n=4, defect_every=0)
    write_frames(other / "test" / "good", n=2, defect_every=0)
    (other / "train" / "good" / "labels.csv").unlink()
    (other / "test" / "good" / "labels.csv").unlink()
    with pytest.raises(QuantizeError, match="is not the data .* was trained on"):
        quantize_int8(card, other, threads=1)


def test_bf16_check_is_recorded_and_unlocks_the_openvino_backend(trained):
    pytest.importorskip("openvino")
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16")
    root, card = trained
    with pytest.raises(BackendError, match="never checked for accuracy"):
        LoadedModel.load(card, backend="openvino", precision="bf16")
    check = check_reduced_precision(card, root, "bf16", threads=1)
    assert check.backend == "openvino" and check.precision == "bf16" and check.passed
    assert read_checks(load_card(card))["openvino:bf16"].max_score_diff == check.max_score_diff
    model = LoadedModel.load(card, backend="openvino", precision="bf16")
    assert "bf16" in model.backend.describe()


def test_int8_model_in_a_daemon_replay_gives_the_fp32_verdicts(trained, tmp_path):
    root, card = trained
    result = quantize_int8(card, root, max_calibration=16, threads=1, force=True)
    frames = write_frames(tmp_path / "rec", n=9, defect_every=3)
    runs = {"fp32": (card, "onnxruntime", ""), "int8-ort": (result.card_path, "onnxruntime", "")}
    if any(c.backend == "openvino" and c.passed for c in result.extra_checks):
        runs["int8-ov"] = (result.card_path, "openvino", ", precision: int8")
    out = {}
    for tag, (model, backend, extra) in runs.items():
        cfg = tmp_path / f"{tag}.yaml"
        cfg.write_text(
            f"line: l\ncameras:\n  - id: cam-0\n    source: {{type: replay, path: {frames}}}\n"
            f"models:\n  - {{path: {model}, backend: {backend}{extra}, cache_dir: {tmp_path}/ov}}\n"
            f"publishers:\n  - {{type: jsonl, path: {tmp_path}/{tag}.jsonl}}\nmetrics: {{enabled: false}}\n")
        proc = DaemonProc(["replay", str(frames), "--config", str(cfg)], tmp_path)
        assert proc.wait(90) == 0, proc.output()[-3000:]
        out[tag] = read_jsonl(tmp_path / f"{tag}.jsonl")
    reference = [v["verdict"] for v in out["fp32"]]
    assert reference.count("defect") == 3
    for tag, verdicts in out.items():
        assert [v["verdict"] for v in verdicts] == reference, tag
        assert max(abs(a["score"] - b["score"]) for a, b in zip(out["fp32"], verdicts, strict=True)) < 0.1


def test_quantize_command_exit_codes(trained):
    root, card = trained
    run = subprocess.run([sys.executable, "-m", "edge_inspector", "quantize", str(card), "--data", str(root),
                          "--tolerance", "-1", "--calibration-images", "8", "--threads", "1", "--force"],
                         capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(ROOT),
                                                                            "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1, run.stdout + run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("quantize: ")]  # cli.main's error shape
    assert errors and "int8 model refused" in errors[-1] and "int8 model refused" not in run.stdout, run.stderr
    assert "Traceback" not in run.stderr
    assert json.loads(card.read_text())["name"] == "conv-detector"  # the fp32 card is untouched


def test_training_subset_is_reproduced_before_the_digest_check(trained, tmp_path):
    """A model trained with --max-train saw a seeded subset: quantize must rebuild that subset."""
    from edge_inspector.toolchain.train import limit_train

    root, _ = trained
    dataset = limit_train(load_dataset(root), 12, seed=3)
    training = {"data_digest": dataset.digest("train"), "dataset": "part", "n_images": 12, "seed": 3,
                "split": dataset.split_info}
    card = make_conv_model(tmp_path / "m", training=training)
    result = quantize_int8(card, root, max_calibration=12, threads=1, also_openvino=False)
    assert load_card(result.card_path).extra["quantization"]["calibration_images"] == 12


def test_transfer_moves_the_threshold_onto_the_shifted_scale_and_refuses_a_falling_fit():
    """int8 that scales and shifts raw scores: the threshold follows, so good parts near it keep their verdict."""
    rng = np.random.default_rng(0)
    fp32 = np.r_[rng.normal(10, 1, 200), rng.normal(16, 1, 40)]
    int8 = 1.2 * fp32 + 3 + rng.normal(0, 0.05, fp32.size)
    norm = ScoreNormalization(threshold=13, min=10, max=16, pixel_threshold=14, pixel_min=9, pixel_max=20,
                              method="fpr=0.01")
    new, record = transfer_normalization(norm, Scores(fp32), Scores(int8))
    assert record["applied"] and record["slope"] == pytest.approx(1.2, abs=0.01)
    assert new.threshold == pytest.approx(1.2 * 13 + 3, abs=0.05) and new.max == pytest.approx(1.2 * 16 + 3, abs=0.1)
    assert new.pixel_threshold == pytest.approx(1.2 * 14 + 3, abs=0.1)  # no maps: the image line
    assert new.method == "fpr=0.01, transferred to int8"
    before = np.sum((norm.score(fp32) >= 0.5) != (norm.score(int8) >= 0.5))
    after = np.sum((norm.score(fp32) >= 0.5) != (new.score(int8) >= 0.5))
    assert before > 100 and after <= 2
    kept, why = transfer_normalization(norm, Scores(fp32), Scores(-fp32))
    assert kept == norm and not why["applied"] and "increasing" in why["why"]


def test_transfer_of_a_saturating_score_keeps_the_fp32_verdicts():
    """A classifier's probabilities pile up near 0 and 1, and int8 bends them: the straight line fitted
    through them put the threshold (0.97 in fp32) at 1.05, above every possible score, so the int8
    model passed every defect (41 of 300 frames flipped in bench/throughput.py). The threshold now
    goes where the int8 scores reproduce the fp32 verdicts on the same images."""
    rng = np.random.default_rng(1)
    logits = np.r_[rng.normal(-6, 1.5, 200), rng.normal(3, 2, 40)]
    fp32 = 1 / (1 + np.exp(-logits))
    int8 = 0.1 + 0.9 / (1 + np.exp(-(1.6 * logits + 2)))  # monotone: good parts lifted, defects saturated
    norm = ScoreNormalization(threshold=0.97, min=0.0, max=1.0, method="f1")
    line = np.polyfit(fp32, int8, 1)
    assert np.polyval(line, 0.97) > int8.max()  # what the line alone would do: reject nothing
    new, record = transfer_normalization(norm, Scores(fp32), Scores(int8))
    fp32_flags = fp32 >= 0.97
    assert 0 < fp32_flags.sum() < len(fp32)
    assert np.array_equal(new.score(int8) >= 0.5, fp32_flags)  # every verdict kept
    assert int8.min() < new.threshold < int8.max()
    assert record["threshold_rule"] == "verdict agreement" and record["disagreements"] == 0


def test_int8_card_carries_the_fp32_threshold_over_to_its_own_scores(trained):
    root, card = trained
    result = quantize_int8(card, root, max_calibration=16, threads=1, force=True, also_openvino=False)
    q_card = load_card(result.card_path)
    info = q_card.extra["quantization"]["recalibration"]
    assert info["applied"] and info["n_images"] == result.check.n_images
    assert result.check.verdict_flips <= info["verdict_flips_with_fp32_normalization"]
    fp32, int8 = LoadedModel.load(card), LoadedModel.load(result.card_path)
    assert q_card.normalization.threshold != fp32.card.normalization.threshold
    _, val = validation_samples(load_dataset(root))
    ref, red = _score(fp32, val), _score(int8, val)
    shift_fp32_norm = np.mean(red.normalised(fp32.card.normalization) - ref.normalised(fp32.card.normalization))
    shift_transferred = np.mean(red.normalised(q_card.normalization) - ref.normalised(fp32.card.normalization))
    assert abs(shift_transferred) <= abs(shift_fp32_norm) + 1e-6


def test_precision_auto_picks_bf16_once_its_check_passed_and_fp32_when_it_failed(trained):
    pytest.importorskip("openvino")
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16")
    root, card = trained
    check_reduced_precision(card, root, "bf16", threads=1)
    assert LoadedModel.load(card, backend="openvino", precision="auto").backend.precision == "bf16"
    check_reduced_precision(card, root, "bf16", threads=1, tolerance=-1.0)  # recorded as failed
    assert LoadedModel.load(card, backend="openvino", precision="auto").backend.precision == "fp32"
    check_reduced_precision(card, root, "bf16", threads=1)  # leave the module's card as the other tests expect


def test_export_precision_int8_names_the_quantize_command(trained, capsys):
    from edge_inspector.cli import main

    _, card = trained
    assert main(["export", str(card), "--precision", "int8"]) == 2
    err = capsys.readouterr().err
    assert f"edge-inspector quantize {card} --precision int8 --data TRAINING_DATASET" in err
    assert main(["export", str(card), "--precision", "fp32"]) == 0  # fp32 is what export checks
