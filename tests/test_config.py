"""config.yaml validation: every problem reported at once, each with its YAML path and line."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_inspector.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


VALID = """\
line: line-1
cameras:
  - id: cam-0
    source: {type: replay, path: frames, rate_fps: 5}
    roi: [0, 0, 32, 32]
  - id: cam-1
    source: {type: camera, device: "rtsp://10.0.0.5/stream", fps: 10}
models:
  - path: models/tiny-detector.card.json
    threads: 1
fusion: {rule: weighted, threshold: 0.6}
publishers:
  - {type: jsonl, path: out/verdicts.jsonl}
  - {type: zmq, endpoint: "tcp://127.0.0.1:5599"}
saving: {mode: sample, sample_every: 10, dir: saved}
metrics: {port: 0}
"""


def test_valid_config_loads_with_defaults_and_resolved_paths(tmp_path):
    cfg = load_config(write(tmp_path, VALID))
    assert cfg.line == "line-1"
    assert [c.id for c in cfg.cameras] == ["cam-0", "cam-1"]
    assert cfg.cameras[0].source.path == tmp_path / "frames"  # relative to the config file
    assert cfg.cameras[0].policy == "block" and cfg.cameras[1].policy == "drop-oldest"
    assert cfg.models[0].path == tmp_path / "models/tiny-detector.card.json"
    assert cfg.publishers[0].path == tmp_path / "out/verdicts.jsonl"
    assert cfg.saving.dir == tmp_path / "saved"
    assert cfg.fusion.rule == "weighted" and cfg.inference.batch_max == 8
    assert cfg.metrics.host == "127.0.0.1"


def test_every_field_has_a_description():
    from edge_inspector import config as mod

    missing = []
    for model in (mod.DaemonConfig, mod.CameraConfig, mod.ModelConfig, mod.FusionConfig, mod.SavingConfig,
                  mod.MetricsConfig, mod.LoggingConfig, mod.InferenceConfig, mod.CameraSourceConfig,
                  mod.VideoSourceConfig, mod.FolderSourceConfig, mod.ReplaySourceConfig):
        missing += [f"{model.__name__}.{n}" for n, f in model.model_fields.items() if not f.description]
    assert not missing


def test_unknown_key_wrong_type_bad_enum_all_reported_with_paths_and_lines(tmp_path):
    path = write(tmp_path, """\
        line: line-1
        cameras:
          - id: cam-0
            source: {type: replay, path: frames}
            queue_polciy: block
          - id: cam-1
            source:
              type: camera
              device: 0
              fps: -5
        models:
          - path: m.card.json
            threads: many
        fusion:
          rule: majority
        """)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    text = "\n".join(problems)
    assert len(problems) == 4, text
    assert any(p.startswith("cameras[0].queue_polciy (line 5): Extra inputs are not permitted") for p in problems)
    assert any(p.startswith("cameras[1].source.fps (line 10): Input should be greater than 0") for p in problems)
    assert any(p.startswith("models[0].threads (line 13):") and "integer" in p for p in problems)
    assert any(p.startswith("fusion.rule (line 15):") and "'majority'" in p for p in problems)
    assert str(path) in str(info.value)


def test_missing_fields_unknown_source_type_and_duplicate_ids():
    with pytest.raises(ConfigError) as info:
        parse_config("line: l\ncameras:\n  - id: a\n    source: {type: webcam}\n")
    text = "\n".join(info.value.problems)
    assert "cameras[0].source" in text and "webcam" in text
    assert "models: Field required" in text
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent("""\
            line: l
            cameras:
              - {id: a, source: {type: replay, path: x}}
              - {id: a, source: {type: replay, path: y}}
            models: [{path: m.onnx}]
            """))
    assert "duplicate camera id" in str(info.value)


def test_yaml_syntax_error_names_line():
    with pytest.raises(ConfigError) as info:
        parse_config("line: l\ncameras: [\n  - id: a\n")
    assert "not valid YAML" in str(info.value) and "line" in str(info.value)


def test_env_substitution(monkeypatch):
    text = "line: l\ncameras: [{id: a, source: {type: folder, path: '${INBOX}/cam'}}]\nmodels: [{path: m.onnx}]\n"
    monkeypatch.setenv("INBOX", "/srv/in")
    assert str(parse_config(text).cameras[0].source.path) == "/srv/in/cam"
    monkeypatch.delenv("INBOX")
    with pytest.raises(ConfigError, match="INBOX is not set"):
        parse_config(text)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge_inspector", "check-config", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})


def test_check_config_cli_exit_codes(tmp_path, tiny_models, frames_dir):
    good = write(tmp_path, f"""\
        line: line-1
        cameras:
          - id: cam-0
            source: {{type: replay, path: {frames_dir}}}
        models:
          - path: {tiny_models}/tiny-detector.card.json
          - path: {tiny_models}/tiny-classifier.card.json
        fusion: {{rule: classifier_then_detector}}
        """)
    ok = _cli(str(good), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "valid" in ok.stdout and "tiny-detector" in ok.stdout and "sha256 ok" in ok.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("classifier_then_detector", "majority") + "extra_section: 1\n")
    res = _cli(str(bad), cwd=tmp_path)
    assert res.returncode == 1
    assert "fusion.rule (line 8)" in res.stderr and "extra_section (line 9)" in res.stderr  # errors: stderr, exit 1


def test_check_config_checks_models_and_sources(tmp_path, tiny_models):
    import shutil

    from edge_inspector.commands.check_config import run

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    (models / "tiny-detector.onnx").write_bytes((models / "tiny-detector.onnx").read_bytes() + b"\0")
    path = write(tmp_path, """\
        line: line-1
        cameras:
          - {id: cam-0, source: {type: replay, path: nowhere}}
        models:
          - path: models/tiny-detector.card.json
          - path: models/missing.card.json
        """)

    class Args:
        file = path
        no_models = False

    assert run(Args()) == 1


def test_backend_options_reach_the_backend(tmp_path):
    cfg = parse_config(textwrap.dedent("""\
        line: l
        cameras: [{id: a, source: {type: camera, device: 0}}]
        models:
          - {path: m.card.json, backend: tensorrt, precision: int8, engine: engines/m.int8.engine}
          - {path: n.card.json, providers: [CUDAExecutionProvider, CPUExecutionProvider]}
          - {path: o.card.json}
        """), base=tmp_path)
    trt, ort, plain = cfg.models
    assert trt.backend_options() == {"precision": "int8", "engine": tmp_path / "engines/m.int8.engine", "device": 0}
    assert ort.backend_options() == {"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
    assert plain.backend_options() == {}


def test_missing_tensorrt_engine_is_a_clear_problem(tmp_path, detector_card):
    from edge_inspector.runtime.daemon import load_models

    cfg = parse_config(f"line: l\ncameras: [{{id: a, source: {{type: camera, device: 0}}}}]\n"
                       f"models: [{{path: {detector_card}, backend: tensorrt}}]\n", base=tmp_path)
    models, problems = load_models(cfg)
    assert not models and len(problems) == 1 and problems[0].startswith("models[0]")


def test_restart_only_fields_are_found_wherever_they_sit_in_the_tree():
    """A reload compares the fields marked RESTART_ONLY generically (nested sections too)."""
    from edge_inspector.config import DaemonConfig, restart_only_changes

    base = {"line": "l", "cameras": [{"id": "c", "source": {"type": "replay", "path": "/x"}}],
            "models": [{"path": "m.card.json"}]}
    old = DaemonConfig.model_validate(base)
    new = DaemonConfig.model_validate({**base, "inference": {"queue_size": 7, "batch_max": 2},
                                       "metrics": {"port": 9999}, "state_dir": "/s", "fusion": {"rule": "all"}})
    assert sorted(restart_only_changes(old, new)) == ["inference.queue_size", "metrics", "state_dir"]
    assert restart_only_changes(old, old) == []
