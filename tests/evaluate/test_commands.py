"""The evaluate and compare subcommands end to end on a generated MVTec-layout dataset."""

from __future__ import annotations

import json

from edge_inspector.cli import main


def test_evaluate_command_writes_reports(eval_models, demo_dataset, tmp_path, capsys):
    out = tmp_path / "rep"
    rc = main(["evaluate", str(eval_models["detector"]), str(demo_dataset), "--out", str(out), "--quiet",
               "--threads", "1"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "image AUROC" in text and "report:" in text
    data = json.loads((out / "report.json").read_text())
    assert data["dataset"]["split"] == "test" and data["dataset"]["n"] == 17
    assert data["dataset"]["n_defective"] == 9 and data["pixel"]["n_regions"] >= 9
    assert (out / "report.html").stat().st_size > 10_000


def test_compare_command(eval_models, demo_dataset, tmp_path, capsys):
    rc = main(["compare", str(eval_models["detector"]), str(eval_models["pooled"]), "--data", str(demo_dataset),
               "--out", str(tmp_path), "--quiet", "--threads", "1", "--latency-images", "3"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "tiny-pooled" in text and "composite" in text
    assert (tmp_path / "comparison.html").is_file() and (tmp_path / "comparison.json").is_file()


def test_evaluate_command_errors_are_clear(eval_models, tmp_path, capsys):
    rc = main(["evaluate", str(eval_models["detector"]), str(tmp_path / "nope"), "--quiet"])
    assert rc == 1 and "dataset not found" in capsys.readouterr().err
    rc = main(["evaluate", str(tmp_path / "missing.onnx"), str(tmp_path), "--quiet"])
    assert rc == 1 and "missing.card.json: model card not found" in capsys.readouterr().err
    rc = main(["evaluate", str(eval_models["detector"]), str(tmp_path), "--quiet", "--weights", "speed=1"])
    assert rc == 1 and "--weights" in capsys.readouterr().err


def test_compare_every_category_of_a_root(eval_models, tmp_path, capsys):
    from edge_inspector.data.synthetic import generate_demo_dataset

    for name in ("bolt", "plate"):
        generate_demo_dataset(tmp_path / "root" / name, n_train=4, n_test_good=3, n_test_defect=3, size=48, seed=1)
    rc = main(["compare", str(eval_models["detector"]), "--data", str(tmp_path / "root"), "--category", "all",
               "--out", str(tmp_path / "cmp"), "--quiet", "--threads", "1", "--latency-images", "2"])
    assert rc == 0, capsys.readouterr()
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert [r["dataset"] for r in data["rows"]] == ["root/bolt", "root/plate"]
    assert data["summary"][0]["datasets"] == 2
