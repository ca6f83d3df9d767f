"""Broken configuration and models against the REAL daemon: at start (exit 1, a message naming the
problem) and on SIGHUP (refused, the running set keeps inspecting with the old model).

Already covered elsewhere, not repeated: an invalid enum value and a missing card on SIGHUP
(tests/runtime/test_daemon.py::test_sighup_bad_config_keeps_running_good_config_switches_without_loss),
a missing replay folder at start (tests/runtime/test_daemon.py::test_start_failure_is_a_clear_error_and_exit_1).
An unreachable broker at start is in test_security.py (it must NOT stop the daemon).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from edge_inspector.card import sha256_file
from tests.fixtures.models import build_detector_onnx, make_model, write_frames
from tests.reliability.helpers import DaemonProc, read_jsonl, wait_until, write_cfg


def broken_variants(root: Path, good_card: Path) -> dict[str, tuple[str, str]]:
    """name -> (config text suffix/replacement recipe applied by ``config_for``, expected message part)."""
    models = root / "bad-models"
    # a model file missing beside its card
    gone = make_model(models / "missing", name="gone")
    (gone.parent / "gone.onnx").unlink()
    # a 32x32 graph under a card that promises 48x48 (sha256 right, so only the shape check can catch it)
    shape = make_model(models / "shape", name="shape", size=48)
    build_detector_onnx(shape.parent / "shape.onnx", size=32)
    card = json.loads(shape.read_text())
    card["model_sha256"] = sha256_file(shape.parent / "shape.onnx")
    shape.write_text(json.dumps(card))
    # a model file changed after its card was written (tampered or half-copied)
    tampered = make_model(models / "sha", name="tampered")
    with open(tampered.parent / "tampered.onnx", "ab") as fh:
        fh.write(b"\0")
    # a pickle checkpoint with a card that even has the right sha256: still never loaded
    pt = models / "pt" / "model.pt"
    pt.parent.mkdir(parents=True)
    pt.write_bytes(b"\x80\x04\x95cos\nsystem\n(S'echo pwned'\ntR.")  # what a malicious pickle looks like
    card = json.loads(good_card.read_text())
    card.update(name="pickled", model_file="model.pt", model_sha256=sha256_file(pt))
    (pt.parent / "model.card.json").write_text(json.dumps(card))
    return {
        "unknown key": ("camera_extra: '    queue_polciy: block\\n'", "queue_polciy"),
        "wrong type": ("extra: 'inference: {batch_max: many}\\n'", "inference.batch_max"),
        "missing model file": (f"model: {gone}", "gone.onnx"),
        "wrong input shape": (f"model: {shape}", "card says 48x48"),
        "sha256 mismatch": (f"model: {tampered}", "sha256"),
        "pickle model": (f"model: {pt}", "model.pt"),
    }


def config_for(frames: Path, jsonl: Path, model: Path, recipe: str = "") -> str:
    kind, _, value = recipe.partition(": ")
    value = value.strip("'").encode().decode("unicode_escape")
    if kind == "model":
        model = Path(value)
    return (f"line: cfg\ncameras:\n  - id: cam-0\n"
            f"    source: {{type: replay, path: {frames}, rate_fps: 25, loop: true}}\n"
            f"{value if kind == 'camera_extra' else ''}"
            f"models:\n  - path: {model}\npublishers:\n  - {{type: jsonl, path: {jsonl}}}\n"
            f"metrics: {{enabled: false}}\n{value if kind == 'extra' else ''}")


@pytest.fixture
def setup(tmp_path: Path, detector_card: Path):
    frames = write_frames(tmp_path / "rec", n=6)
    return frames, broken_variants(tmp_path, detector_card)


def test_each_broken_variant_refuses_to_start_with_a_clear_message(tmp_path: Path, setup) -> None:
    frames, variants = setup
    procs = {}
    for i, (name, (recipe, _)) in enumerate(variants.items()):  # started together: the checks overlap
        work = tmp_path / f"v{i}"
        work.mkdir()
        cfg = write_cfg(work / "config.yaml", config_for(frames, work / "v.jsonl", Path("unused"), recipe))
        procs[name] = (DaemonProc(["run", "--config", str(cfg)], work), work)
    for name, (proc, work) in procs.items():
        expected = variants[name][1]
        code = proc.wait(60)
        out = proc.output()
        assert code != 0, f"{name}: daemon started:\n{out[-2000:]}"
        assert "cannot start" in out and expected in out, f"{name}: message does not name {expected!r}:\n{out[-2000:]}"
        assert "Traceback" not in out, f"{name}: a traceback instead of a message:\n{out[-2000:]}"
        assert not read_jsonl(work / "v.jsonl"), name  # nothing inspected with a broken set


def test_sighup_with_each_broken_variant_keeps_the_old_set_running(tmp_path: Path, detector_card: Path,
                                                                   setup) -> None:
    frames, variants = setup
    jsonl = tmp_path / "verdicts.jsonl"
    cfg = write_cfg(tmp_path / "config.yaml", config_for(frames, jsonl, detector_card))
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    try:
        wait_until(lambda: len(read_jsonl(jsonl)) >= 3, what="first verdicts", proc=daemon)
        for name, (recipe, expected) in variants.items():
            refused = daemon.output().count("reload refused")
            cfg.write_text(config_for(frames, jsonl, detector_card, recipe))
            daemon.signal(signal.SIGHUP)
            wait_until(lambda r=refused: daemon.output().count("reload refused") > r, what=f"{name} refused",
                       proc=daemon)
            refusal = daemon.output().split("reload refused")[-1].split("\n20")[0]  # up to the next log line
            assert expected in refusal, f"{name}: {refusal}"
            n = len(read_jsonl(jsonl))
            wait_until(lambda n=n: len(read_jsonl(jsonl)) >= n + 3, what=f"verdicts after {name}", proc=daemon)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.output()[-3000:]
    finally:
        daemon.kill()
    out = read_jsonl(jsonl)
    assert {v["models"][0]["name"] for v in out} == {"tiny-detector"}  # the old model throughout
    assert [v["frame"] for v in out] == list(range(len(out)))
    assert all(v["verdict"] in ("ok", "defect") for v in out)
