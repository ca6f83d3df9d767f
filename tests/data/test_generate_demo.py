"""``edge-inspector generate-demo`` and its tools/ wrapper write a loadable dataset and replay folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edge_inspector.cli import main
from edge_inspector.data.readers import load_dataset
from edge_inspector.data.synthetic import read_replay_labels

ROOT = Path(__file__).resolve().parents[2]


def test_command_writes_dataset_and_replay(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["generate-demo", str(out), "--replay", "10", "--size", "48", "--seed", "4",
                 "--n-train", "6", "--n-test-good", "2", "--n-test-defect", "3"]) == 0
    ds = load_dataset(out / "dataset")
    assert ds.split_info["counts"]["test"] == {"good": 2, "missing": 1, "scratch": 1, "spot": 1}
    labels = read_replay_labels(out / "replay")
    assert len(labels) == 10 and sum(y for y, _ in labels.values()) == 2
    assert "labels.csv" in capsys.readouterr().out


def test_tools_wrapper(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "generate_demo.py"), str(tmp_path / "d"),
                             "--replay", "0", "--size", "32", "--n-train", "2", "--n-test-good", "1",
                             "--n-test-defect", "1"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d" / "dataset" / "test" / "scratch" / "000.png").is_file()
    assert not (tmp_path / "d" / "replay").exists()
