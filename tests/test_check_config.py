"""check-config and the daemon say loudly when a configuration sends its verdicts nowhere (issue 19.4)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WARNING = "no publishers configured: verdicts are sent nowhere"


def _config(tmp_path: Path, card: Path, frames: Path, publishers: str | None) -> Path:
    path = tmp_path / "config.yaml"
    text = (f"line: line-1\ncameras:\n  - id: cam-0\n    source: {{type: replay, path: {frames}}}\n"
            f"models:\n  - path: {card}\nmetrics: {{enabled: false}}\n")
    path.write_text(text + (f"publishers: {publishers}\n" if publishers is not None else ""))
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_inspector", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})


def test_no_publishers_is_a_warning_in_check_config_and_at_start(tmp_path: Path, detector_card: Path,
                                                                 frames_dir: Path) -> None:
    missing = _config(tmp_path, detector_card, frames_dir, None)
    check = _run("check-config", str(missing), cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr  # valid, but said
    assert f"warning: {WARNING}" in check.stdout and "publishers: []" in check.stdout

    replay = _run("replay", str(frames_dir), "--config", str(missing), cwd=tmp_path)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert WARNING in replay.stdout + replay.stderr

    opted_out = _config(tmp_path, detector_card, frames_dir, "[]")  # written out: on purpose, quiet
    check = _run("check-config", str(opted_out), cwd=tmp_path)
    assert check.returncode == 0 and WARNING not in check.stdout, check.stdout
    jsonl = _config(tmp_path, detector_card, frames_dir, f"[{{type: jsonl, path: {tmp_path / 'v.jsonl'}}}]")
    check = _run("check-config", str(jsonl), cwd=tmp_path)
    assert check.returncode == 0 and WARNING not in check.stdout, check.stdout


def test_model_and_source_problems_carry_their_yaml_line(tmp_path: Path, detector_card: Path) -> None:
    """Issue 19.10: check-config's model problems come with a line, like the loader's own problems."""
    path = tmp_path / "config.yaml"
    path.write_text(f"line: line-1\ncameras:\n  - id: cam-0\n    source:\n      type: replay\n      path: nowhere\n"
                    f"models:\n  - path: {detector_card}\n  - path: models/missing.card.json\n"
                    "publishers: []\n")
    check = _run("check-config", str(path), cwd=tmp_path)
    assert check.returncode == 1, check.stdout
    assert "models[1] (line 9) (" in check.stderr and "missing.card.json: model card not found" in check.stderr
    assert "cameras[0].source.path (line 6): replay folder" in check.stderr, check.stderr
