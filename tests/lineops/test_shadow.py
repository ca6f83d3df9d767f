"""Shadow models in the real daemon: never change the verdict, publish their own, agreement figures
match a replay with known differences; the gate skips (and counts) frames; shadow-report agrees."""

from __future__ import annotations

import json

import pytest

from edge_inspector.cli import main
from tests.fixtures.models import make_model
from tests.lineops.util import metric, run_daemon, write_config, write_levels

# Primary: score = brightness + 0.2. Shadow 'lo' (threshold 0.2): brightness + 0.3, more sensitive.
# Shadow 'hi' (threshold 0.4): brightness + 0.1, less sensitive.
#   level  26 (0.10): primary ok     lo ok     hi ok       x10
#   level  64 (0.25): primary ok     lo DEFECT hi ok       x4   -> lo shadow_only
#   level  90 (0.35): primary defect lo defect hi OK       x3   -> hi primary_only
#   level 153 (0.60): primary defect lo defect hi defect   x3
LEVELS = [26] * 10 + [64] * 4 + [90] * 3 + [153] * 3
EXPECTED = {"shadow-lo": {"agree": 16, "shadow_only_defect": 4, "primary_only_defect": 0},
            "shadow-hi": {"agree": 17, "shadow_only_defect": 0, "primary_only_defect": 3}}


@pytest.fixture(scope="module")
def shadow_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shadow-models")
    return {"primary": make_model(folder, "detector", name="primary"),
            "shadow-lo": make_model(folder, "detector", name="shadow-lo", threshold=0.2),
            "shadow-hi": make_model(folder, "detector", name="shadow-hi", threshold=0.4)}


def _models(m) -> str:
    return (f"- path: {m['primary']}\n- {{path: {m['shadow-lo']}, role: shadow}}\n"
            f"- {{path: {m['shadow-hi']}, role: shadow}}")


def test_shadow_verdicts_and_agreement_on_mqtt(tmp_path, shadow_models, mosquitto, mqtt_subscriber):
    replay = write_levels(tmp_path / "replay", LEVELS)
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=_models(shadow_models),
                       publishers=f"- {{type: mqtt, host: {mosquitto.host}, port: {mosquitto.port}, "
                                  f"spool_dir: {tmp_path}/spool, client_id: shadow-test}}")
    shadow_sub = mqtt_subscriber("edge-inspector/line1/cam1/shadow")
    verdict_sub = mqtt_subscriber("edge-inspector/line1/cam1/verdict")
    daemon = run_daemon(cfg)
    verdicts = [json.loads(m.payload) for m in verdict_sub.wait_for(20)]
    # the verdict is the primary's alone
    assert [v["verdict"] for v in sorted(verdicts, key=lambda v: v["frame"])] == \
        ["ok"] * 14 + ["defect"] * 6
    shadows = [json.loads(m.payload) for m in shadow_sub.wait_for(40)]
    by_model: dict[str, dict] = {}
    for s in shadows:
        by_model.setdefault(s["models"][0]["name"], {})[s["frame"]] = s["verdict"]
    assert sorted(by_model) == ["shadow-hi", "shadow-lo"]
    assert [by_model["shadow-lo"][i] for i in range(20)] == ["ok"] * 10 + ["defect"] * 10
    assert [by_model["shadow-hi"][i] for i in range(20)] == ["ok"] * 17 + ["defect"] * 3
    for name, expected in EXPECTED.items():
        for result, n in expected.items():
            got = metric(daemon, "edge_inspector_shadow_frames_total", model=name, result=result) or 0
            assert got == n, (name, result)
        assert metric(daemon, "edge_inspector_shadow_agreement_ratio", model=name) == \
            pytest.approx(expected["agree"] / 20)


def test_gate_skips_and_counts_and_shadow_report_matches(tmp_path, shadow_models, capsys):
    replay = write_levels(tmp_path / "replay", LEVELS)
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=_models(shadow_models),
                       extra="inference: {batch_max: 1}\nshadow: {every: 2}\n")
    # one frame per batch, so 'every: 2' skips exactly every second frame
    cfg.write_text(cfg.read_text().replace("inference: {batch_max: 4}\n", ""))
    out = tmp_path / "report.json"
    assert main(["shadow-report", "--config", str(cfg), "--replay", str(replay), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["verdicts"] == 20
    rows = {r["model"]: r for r in report["shadows"]}
    for name in EXPECTED:
        assert rows[name]["not_run"] == 10, rows[name]  # every second single-frame batch skipped
        assert rows[name]["compared"] == 10
    assert "shadow-lo" in capsys.readouterr().out


def test_shadow_report_over_full_replay_matches_known_differences(tmp_path, shadow_models):
    replay = write_levels(tmp_path / "replay", LEVELS)
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=_models(shadow_models))
    out = tmp_path / "report.json"
    assert main(["shadow-report", "-c", str(cfg), "--replay", str(replay), "--json", str(out)]) == 0
    rows = {r["model"]: r for r in json.loads(out.read_text())["shadows"]}
    for name, expected in EXPECTED.items():
        assert {k: rows[name][k] for k in expected} == expected
        assert rows[name]["agreement"] == pytest.approx(expected["agree"] / 20)
        assert rows[name]["not_run"] == 0


def test_shadow_report_without_shadow_models_says_so(tmp_path, shadow_models, capsys):
    replay = write_levels(tmp_path / "replay", [26] * 2)
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=f"- path: {shadow_models['primary']}")
    assert main(["shadow-report", "-c", str(cfg), "--replay", str(replay)]) == 1
    assert "no model has role 'shadow'" in capsys.readouterr().err


def test_gate_skips_while_inference_is_backlogged():
    from edge_inspector.lineops.shadow import ShadowConfig, ShadowGate, compare

    gate = ShadowGate(ShadowConfig(max_backlog=2))
    assert [gate.admit(b) for b in (0, 2, 3, 9, 1)] == [True, True, False, False, True]
    assert compare("ok", "defect") == "shadow_only_defect" and compare("defect", "ok") == "primary_only_defect"
    assert compare("error", "ok") is None and compare("ok", "ok") == "agree"


def test_zmq_carries_shadow_and_alarm_messages_on_their_own_topics():
    import time

    import zmq

    from edge_inspector.metrics import Metrics
    from edge_inspector.publishers import ZmqConfig, create_publisher

    pub = create_publisher(ZmqConfig(type="zmq", endpoint="tcp://127.0.0.1:*"), line="line1", metrics=Metrics())
    sub = pub.context.socket(zmq.SUB)
    try:
        sub.connect(pub.endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, b"edge-inspector/line1/cam1/shadow")
        sub.setsockopt(zmq.RCVTIMEO, 100)
        got = None
        deadline = time.monotonic() + 10
        while got is None and time.monotonic() < deadline:  # the SUB handshake takes a moment
            pub.publish_event("alarm", "line1", "cam1", '{"alarm": "drift"}')  # filtered out by the SUB
            pub.publish_event("shadow", "line1", "cam1", '{"verdict": "ok"}')
            try:
                got = sub.recv_multipart()
            except zmq.Again:
                continue
        assert got == [b"edge-inspector/line1/cam1/shadow", b'{"verdict": "ok"}']
    finally:
        sub.close(0)
        pub.close(timeout=0)
