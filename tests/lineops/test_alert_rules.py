"""The drift alert rule, exercised with ``promtool test rules`` (Prometheus' own rule evaluator)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edge_inspector.metrics import Metrics

ALERTS = Path(__file__).resolve().parents[2] / "deploy/prometheus/alerts.yml"

UNIT_TEST = """
rule_files: [{alerts}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'edge_inspector_drift_alarm{{camera="cam1", instance="ipc1"}}'
        values: '0 0 1x20'
      - series: 'edge_inspector_drift_alarm{{camera="cam2", instance="ipc1"}}'
        values: '0x22'
    alert_rule_test:
      - eval_time: 8m
        alertname: EdgeInspectorScoreDrift
        exp_alerts: []
      - eval_time: 15m
        alertname: EdgeInspectorScoreDrift
        exp_alerts:
          - exp_labels: {{severity: warning, camera: cam1, instance: ipc1}}
            exp_annotations:
              summary: "Scores of good parts drifted on camera cam1 (ipc1)"
              description: {description!r}
"""


def test_drift_alert_fires_after_ten_minutes_of_alarm(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    import yaml

    rules = yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]
    rule = next(r for r in rules if r["alert"] == "EdgeInspectorScoreDrift")
    test = tmp_path / "drift_test.yml"
    test.write_text(UNIT_TEST.format(alerts=ALERTS, description=rule["annotations"]["description"]))
    proc = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_rules_metrics_are_exported_by_a_fresh_daemon():
    text = Metrics().render().decode()
    for name in ("edge_inspector_drift_alarm", "edge_inspector_drift_psi", "edge_inspector_shadow_frames_total",
                 "edge_inspector_shadow_agreement_ratio", "edge_inspector_review_frames_total"):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name


def test_shipped_rule_tests_pass_in_promtool():
    """deploy/prometheus/alerts_test.yml: healthy zeros raise nothing; error verdicts, model errors,
    dropped frames, publish failures and TLS failures fire with their labels and texts."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    proc = subprocess.run([promtool, "test", "rules", str(ALERTS.with_name("alerts_test.yml"))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_healthy_daemon_exports_the_alerted_counters_at_zero(tmp_path, detector_card):
    """Before any error, drop or failure, the series the alerts and the Grafana panels use exist (0),
    so rate()/increase() have something to evaluate instead of "No data"; plus process and build info."""
    from tests.fixtures.models import write_frames
    from tests.lineops.util import run_daemon, write_config

    replay = write_frames(tmp_path / "replay", n=3, defect_every=0)
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=f"- path: {detector_card}",
                       publishers=f"- {{type: jsonl, path: {tmp_path}/v.jsonl}}")
    daemon = run_daemon(cfg)
    text = daemon.metrics.render().decode()
    for series in ('edge_inspector_verdicts_total{camera="cam1",verdict="error"} 0.0',
                   'edge_inspector_errors_total{camera="cam1",reason="model"} 0.0',
                   'edge_inspector_errors_total{camera="cam1",reason="source"} 0.0',
                   'edge_inspector_frames_dropped_total{camera="cam1",reason="queue_full"} 0.0',
                   'edge_inspector_publish_failures_total{sink="jsonl"} 0.0'):
        assert series in text, series
    assert "process_resident_memory_bytes" in text and "process_open_fds" in text
    assert 'edge_inspector_build_info{' in text and "_created" not in text
