"""Drift alarm: the statistics alone, then the real daemon replaying frames to a real Mosquitto."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from edge_inspector.lineops.drift import DriftConfig, DriftMonitor, load_reference, psi
from tests.lineops.util import metric, run_daemon, write_config, write_levels


def test_psi_is_zero_for_the_same_sample_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(0.3, 0.01, 500)
    assert psi(ref, ref, 10) == pytest.approx(0.0, abs=1e-9)
    assert psi(ref, ref + 0.05, 10) > 2.0


def test_monitor_needs_psi_and_shift_and_clears_with_hysteresis():
    cfg = DriftConfig(enabled=True, reference_frames=50, window=50, psi_bound=0.25, min_shift=0.03)
    mon = DriftMonitor(cfg)
    rng = np.random.default_rng(1)
    states = [mon.observe(s) for s in rng.normal(0.30, 0.002, 300)]
    assert not any(s and s.alarm for s in states), "a stable line raised the alarm"
    # a tiny move: PSI is large (tight reference) but the median moved less than min_shift -> no alarm
    states = [mon.observe(s) for s in rng.normal(0.31, 0.002, 100)]
    assert states[-1].psi > cfg.psi_bound and not states[-1].alarm
    changes = [s.changed for s in (mon.observe(x) for x in rng.normal(0.40, 0.002, 100)) if s and s.changed]
    assert changes == ["raised"]
    changes = [s.changed for s in (mon.observe(x) for x in rng.normal(0.30, 0.002, 100)) if s and s.changed]
    assert changes == ["cleared"]


def test_reference_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "ref.json"
    bad.write_text('{"scores": [1, 2]}')
    with pytest.raises(ValueError, match="ref.json: expected a list of at least 10"):
        load_reference(bad)
    bad.write_text(json.dumps({"scores": [0.3] * 12}))
    assert load_reference(bad) == [0.3] * 12


DRIFT = """
drift: {enabled: true, reference_frames: 20, window: 15}
"""


@pytest.mark.parametrize("shift", [True, False], ids=["brightness-shift", "stable"])
def test_daemon_raises_the_drift_alarm_once_on_a_brightness_shift(tmp_path, detector_card, mosquitto,
                                                                   mqtt_subscriber, shift):
    levels = [26] * 40 + ([52] * 40 if shift else [26] * 40)  # scores 0.30 then 0.40: all frames stay OK
    replay = write_levels(tmp_path / "replay", levels)
    cfg = write_config(
        tmp_path / "config.yaml", replay=replay, models=f"- path: {detector_card}",
        publishers=f"- {{type: mqtt, host: {mosquitto.host}, port: {mosquitto.port}, "
                   f"spool_dir: {tmp_path}/spool, client_id: drift-{shift}}}",
        extra=DRIFT)
    alarms = mqtt_subscriber("edge-inspector/line1/+/alarm")
    verdicts = mqtt_subscriber("edge-inspector/line1/cam1/verdict")
    daemon = run_daemon(cfg)
    got = verdicts.wait_for(80)
    assert all(json.loads(m.payload)["verdict"] == "ok" for m in got)
    time.sleep(0.5)  # the alarm is spooled before the later verdicts: it has arrived by now if it exists
    messages = [json.loads(m.payload) for m in alarms.messages]
    if shift:
        assert len(messages) == 1, messages
        alarm = messages[0]
        assert alarm["camera"] == "cam1" and alarm["alarm"] == "drift" and alarm["state"] == "raised"
        assert alarm["median_shift"] == pytest.approx(0.1, abs=0.01)
        assert metric(daemon, "edge_inspector_drift_alarm", camera="cam1") == 1.0
    else:
        assert messages == []
        assert metric(daemon, "edge_inspector_drift_alarm", camera="cam1") == 0.0
        # a tight reference makes even a stable PSI large: the median shift is what keeps it quiet
        assert abs(metric(daemon, "edge_inspector_drift_median_shift", camera="cam1")) < 0.03


def test_a_bad_reference_file_is_a_startup_error_naming_it(tmp_path, detector_card):
    from edge_inspector.runtime.daemon import Daemon, StartupError

    replay = write_levels(tmp_path / "replay", [26])
    (tmp_path / "ref.json").write_text("[0.3]")
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=f"- path: {detector_card}",
                       extra="drift: {enabled: true, reference_file: ref.json}\n")
    with pytest.raises(StartupError, match=r"ref.json: expected a list of at least 10 numbers"):
        Daemon(cfg).start()


def test_learned_reference_survives_a_restart_in_state_dir(tmp_path, detector_card):
    """Run 1 learns the reference on dark frames; run 2 starts on bright frames and must alarm at once
    (without the state it would learn the drifted frames as its new normal)."""
    state = tmp_path / "state"
    models = f"- path: {detector_card}"
    extra = f"state_dir: {state}\n{DRIFT}"
    cfg = write_config(tmp_path / "a.yaml", replay=write_levels(tmp_path / "dark", [26] * 25), models=models,
                       extra=extra)
    run_daemon(cfg)
    assert len(json.loads((state / "cam1.drift.json").read_text())["scores"]) == 20
    cfg = write_config(tmp_path / "b.yaml", replay=write_levels(tmp_path / "bright", [52] * 20), models=models,
                       extra=extra)
    daemon = run_daemon(cfg)
    assert metric(daemon, "edge_inspector_drift_alarm", camera="cam1") == 1.0


def test_drift_reference_command_feeds_the_daemon(tmp_path, detector_card, capsys):
    from edge_inspector.cli import main

    good = write_levels(tmp_path / "good", [26] * 12 + [200])  # the bright one is a defect: left out
    cfg = write_config(tmp_path / "config.yaml", replay=good, models=f"- path: {detector_card}",
                       extra="drift: {enabled: true, reference_file: ref.json, window: 10}\n")
    assert main(["drift-reference", str(good), "-c", str(cfg), "-o", str(tmp_path / "ref.json")]) == 0
    assert "wrote 12 reference scores" in capsys.readouterr().out
    assert load_reference(tmp_path / "ref.json") == pytest.approx([26 / 255 + 0.2] * 12, abs=0.01)
    # with the reference from a file, the very first window of bright frames alarms
    cfg.write_text(cfg.read_text().replace(str(good), str(write_levels(tmp_path / "bright", [52] * 10))))
    daemon = run_daemon(cfg)
    assert metric(daemon, "edge_inspector_drift_alarm", camera="cam1") == 1.0
    assert main(["drift-reference", str(write_levels(tmp_path / "few", [26] * 3)), "-c", str(cfg),
                 "-o", str(tmp_path / "r2.json")]) == 1
    assert "only 3 of 3 images were judged OK" in capsys.readouterr().err


def test_a_borderline_line_does_not_flap_within_the_hold():
    """Integrators' looped replay: the median wavers around min_shift; without a hold every wobble was a
    raise/clear pair on the MES (5 pairs in 75 s). Each state now holds for min_hold_frames OK frames."""
    rng = np.random.default_rng(3)
    reference = rng.normal(0.30, 0.002, 50)
    wavering = np.concatenate([rng.normal(mean, 0.002, 30) for mean in [0.34, 0.31] * 8])  # 480 frames

    def flips(hold: int | None) -> list[int]:
        mon = DriftMonitor(DriftConfig(enabled=True, reference_frames=50, window=50, psi_bound=0.25,
                                       min_shift=0.03, min_hold_frames=hold))
        for s in reference:
            mon.observe(s)
        states = [mon.observe(x) for x in wavering]
        return [i for i, st in enumerate(states) if st and st.changed]

    one = flips(1)  # no hold: what the integrators saw
    assert len(one) >= 8, one
    default = flips(None)  # one window
    assert len(default) < len(one) and all(b - a >= 50 for a, b in zip(default, default[1:], strict=False))
    long = flips(240)
    assert len(long) <= 2 and all(b - a >= 240 for a, b in zip(long, long[1:], strict=False)), long
