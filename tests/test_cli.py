"""The command line as a user runs it: OpenCV's own stderr logging does not duplicate the daemon's log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_daemon_log_has_no_opencv_warnings_for_bad_frames_or_missing_cameras(tmp_path: Path,
                                                                             detector_card: Path) -> None:
    """Issue 19.9: a truncated PNG and a camera that cannot be opened give the daemon's own lines only."""
    frames = tmp_path / "frames"
    frames.mkdir()
    ok, png = cv2.imencode(".png", np.full((64, 64, 3), 100, np.uint8))
    (frames / "000.png").write_bytes(png.tobytes())
    (frames / "001.png").write_bytes(png.tobytes()[:200])  # truncated: OpenCV warns "PNG input buffer is incomplete"
    config = tmp_path / "config.yaml"
    config.write_text(f"line: line-1\ncameras:\n  - id: cam-0\n    source: {{type: replay, path: {frames}}}\n"
                      f"  - id: cam-1\n    source: {{type: camera, device: 97}}\n"
                      f"models:\n  - path: {detector_card}\n"
                      f"publishers: [{{type: jsonl, path: {tmp_path / 'verdicts.jsonl'}}}]\n"
                      "metrics: {enabled: false}\n")
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    proc = subprocess.Popen([sys.executable, "-m", "edge_inspector", "run", "--config", str(config)], cwd=tmp_path,
                            env={**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        verdicts = tmp_path / "verdicts.jsonl"
        while time.monotonic() < deadline and proc.poll() is None:
            if verdicts.exists() and len(verdicts.read_text().splitlines()) >= 2:
                break
            time.sleep(0.2)
        time.sleep(1.5)  # let the camera retry a few times (0.5 s, 1 s backoff)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert len(verdicts.read_text().splitlines()) == 2, out
    assert '"error"' in verdicts.read_text()  # the truncated frame got its error verdict
    assert "camera cam-1" in out and "attempt 2" in out, out  # the daemon's own retry lines are there
    assert "[ WARN" not in out and "[ERROR" not in out, out


def test_known_errors_are_one_line_on_stderr_exit_1_without_traceback(tmp_path: Path) -> None:
    """Every package error is an EdgeInspectorError; cli.main prints it as ``<command>: <message>`` on
    stderr with exit 1 (here a broken card given to deploy and to shadow-report's config)."""
    from edge_inspector.card import CardError
    from edge_inspector.config import ConfigError
    from edge_inspector.data.types import DatasetError
    from edge_inspector.errors import EdgeInspectorError
    from edge_inspector.publishers import PublisherError

    for error in (CardError, ConfigError, DatasetError, PublisherError):
        assert issubclass(error, EdgeInspectorError), error
    assert issubclass(CardError, ValueError) and issubclass(PublisherError, RuntimeError)  # old parents kept
    card = tmp_path / "bad.card.json"
    card.write_text('{"name": "x"')
    config = tmp_path / "config.yaml"
    config.write_text("line: l\ncameras: []\n")
    for args, expected in ((["deploy", str(card), "--config", str(config)], f"deploy: {card}: not valid JSON"),
                           (["shadow-report", "--config", str(tmp_path / "nope.yaml"), "--verdicts", str(card)],
                            "shadow-report: ")):
        proc = subprocess.run([sys.executable, "-m", "edge_inspector", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 1, proc
        assert proc.stderr.startswith(expected), proc.stderr
        assert "Traceback" not in proc.stderr and proc.stdout == "", proc


# Every command with a bad input, through the real CLI. Each row: the arguments, and what stderr must hold.
# ``health`` is a probe: its one result line ("unhealthy: ...") goes to stdout, where probes read it.
BAD_INPUTS = [
    (["train", "nowhere"], "train: nowhere: missing"),
    (["train", "empty", "--model", "classifier", "-o", "epochs=0"],
     "train: classifier: option epochs=0: expected greater than or equal to 1"),
    (["calibrate", "bad.card.json", "empty"], "calibrate: empty: unknown dataset layout"),
    (["calibrate-fusion", "empty", "bad.card.json", "bad.card.json"],
     "calibrate-fusion: empty: unknown dataset layout"),
    (["export", "bad.card.json"], "export: bad.card.json: not valid JSON"),
    (["quantize", "bad.card.json", "--data", "empty"], "quantize: bad.card.json: not valid JSON"),
    (["evaluate", "bad.card.json", "empty"], "evaluate: bad.card.json: not valid JSON"),
    (["evaluate", "bad.card.json", "empty", "--weights", "pro=-1"], "evaluate: --weights: pro must be >= 0"),
    (["compare", "bad.card.json", "--data", "empty"], "compare: empty: unknown dataset layout"),
    (["compare", "bad.card.json", "--data", "empty", "--weights", "speed=1"],
     "compare: --weights: expected NAME=VALUE with NAME in"),
    (["auto", "nowhere"], "auto: nowhere: dataset not found"),
    (["auto", "empty", "--models", "classifier", "--options", '{"classifier": {"epochs": 0}}'],
     "auto: classifier: option epochs=0: expected greater than or equal to 1"),
    (["auto", "empty", "--models", "patchcore"], "auto: unknown model kind 'patchcore'; expected one of"),
    (["auto", "empty", "--weights", "f1"], "auto: --weights: expected NAME=VALUE"),
    (["deploy", "bad.card.json", "--config", "bad.yaml"], "deploy: bad.card.json: not valid JSON"),
    (["import-anomalib", "nowhere.onnx", "--samples", "empty", "--input-normalization", "none"],
     "import-anomalib: nowhere.onnx: model file not found"),
    (["shadow-report", "--config", "bad.yaml", "--verdicts", "x.jsonl"], "shadow-report: bad.yaml: 2 problem(s)"),
    (["check-config", "bad.yaml"], "check-config: bad.yaml: 2 problem(s)"),
    (["generate-demo", "out", "--size", "3"], "generate-demo: size=3: synthetic parts need at least 32 px"),
    (["build-engine", "bad.card.json"], "build-engine: "),
    (["console", "--data-dir", "console-data", "--port", "0", "--mqtt-host", "broker..plant"],
     "console: console MQTT settings: EDGE_INSPECTOR_MQTT_HOST: Value error, host 'broker..plant'"),
    # the daemon's commands say it in their log line (stderr) before exiting 1
    (["run", "--config", "bad.yaml"], "cannot start: bad.yaml: 2 problem(s)"),
    (["replay", "empty", "--config", "bad.yaml"], "cannot start: bad.yaml: 2 problem(s)"),
    (["drift-reference", "empty", "--config", "bad.yaml", "--out", "o.json"], "cannot start: bad.yaml: 2 problem(s)"),
]


def test_every_command_reports_a_bad_input_on_stderr_with_exit_1_and_no_traceback(tmp_path: Path) -> None:
    """Review R8: one error shape for every command (message on stderr, exit 1, no traceback)."""
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "bad.card.json").write_text('{"name": "x"')
    (tmp_path / "bad.yaml").write_text("line: l\ncameras: 3\n")
    (tmp_path / "empty").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for var in ("DJANGO_SETTINGS_MODULE", "EDGE_INSPECTOR_DATA_DIR", "DATABASE_URL"):  # the console's own
        env.pop(var, None)

    def run(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edge_inspector", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, env=env)

    commands = [*BAD_INPUTS, (["health", "--config", "bad.yaml"], None)]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(run, [args for args, _ in commands]))
    for (args, expected), proc in zip(commands, results, strict=True):
        assert proc.returncode == 1, (args, proc)
        assert "Traceback" not in proc.stderr + proc.stdout, (args, proc.stderr)
        if expected is None:  # health: the probe's result line
            assert proc.stdout.startswith("unhealthy: bad.yaml: 2 problem(s)"), proc
        else:
            assert expected in proc.stderr, (args, proc.stderr)
            assert expected not in proc.stdout, (args, proc.stdout)
    covered = {args[0] for args, _ in commands}
    from edge_inspector.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == covered, "a new command needs a bad-input row here"


BLOCKER = '''
import importlib.abc, sys

class _Missing(importlib.abc.MetaPathFinder):
    """Makes the named top-level packages unimportable, as on a machine without the extra."""
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, _Missing())
'''


def test_a_missing_extra_is_named_with_its_install_line_not_a_traceback(tmp_path: Path) -> None:
    """evaluate and auto import scikit-learn (the [train] extra) before they start; on a runtime-only
    install that was an ImportError traceback. Each now says which extra to install, exit 1."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER.format(BLOCKED={"sklearn", "torch"}))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    for args in (["evaluate", str(tmp_path / "m.card.json"), str(tmp_path / "data")],
                 ["auto", str(tmp_path / "data"), "--out", str(tmp_path / "out")]):
        proc = subprocess.run([sys.executable, "-m", "edge_inspector", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert "pip install 'edge-inspector[train]'" in proc.stderr, proc.stderr
        assert proc.stderr.startswith(f"{args[0]}: needs "), proc.stderr


def test_a_missing_module_that_is_no_extra_still_raises() -> None:
    """Only the optional dependencies are advice; any other missing module is a bug and keeps its traceback."""
    from edge_inspector.cli import missing_extra

    assert missing_extra(ModuleNotFoundError("x", name="sklearn.metrics")) is not None
    assert missing_extra(ModuleNotFoundError("x", name="edge_inspector.nowhere")) is None
