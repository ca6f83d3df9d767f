"""Metrics over real HTTP, and the shipped Grafana dashboard / alert rules against a real Prometheus.

The Prometheus test starts Debian's ``prometheus`` on a free port with a temporary config that
scrapes a real exporter every second, then runs every PromQL expression of
deploy/grafana/edge-inspector.json and deploy/prometheus/alerts.yml and requires series back.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from edge_inspector.metrics import STAGE_BUCKETS, Metrics

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy/grafana/edge-inspector.json"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
PROM_EXAMPLE = ROOT / "deploy/prometheus/prometheus.yml"
METRIC_NAMES = [
    "frames_total", "verdicts_total", "stage_seconds", "queue_depth", "frames_dropped_total",
    "publish_failures_total", "spool_messages", "broker_connected", "model_info", "source_up", "errors_total",
    "publish_seconds",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        return resp.read().decode()


def _value(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"series {series} not in scrape")


def test_http_scrape_names_buckets_and_counters():
    m = Metrics()
    m.serve(port=0)
    try:
        assert m.host == "127.0.0.1" and m.port
        m.frames_total.labels(camera="cam1").inc()
        m.stage_seconds.labels(stage="infer").observe(0.0003)
        m.set_model("detector", "1.0.0", "onnxruntime")
        for name in ("queue_depth", "source_up"):
            getattr(m, name).labels("x").set(1)
        text = _scrape(m.port)
        for name in METRIC_NAMES:
            assert f"# TYPE edge_inspector_{name} " in text, name
        assert _value(text, 'edge_inspector_stage_seconds_bucket{le="0.0001",stage="infer"}') == 0
        assert _value(text, 'edge_inspector_stage_seconds_bucket{le="0.0005",stage="infer"}') == 1
        assert min(STAGE_BUCKETS) < 0.001 and sum(b < 0.001 for b in STAGE_BUCKETS) >= 3
        assert _value(text, 'edge_inspector_model_info{backend="onnxruntime",name="detector",version="1.0.0"}') == 1
        before = _value(text, 'edge_inspector_frames_total{camera="cam1"}')
        m.frames_total.labels(camera="cam1").inc(4)
        m.verdicts_total.labels(camera="cam1", verdict="defect").inc()
        text = _scrape(m.port)
        assert _value(text, 'edge_inspector_frames_total{camera="cam1"}') == before + 4
        assert _value(text, 'edge_inspector_verdicts_total{camera="cam1",verdict="defect"}') == 1
        # a second instance has its own registry: no duplicate-timeseries error, separate values
        other = Metrics()
        other.serve(port=0)
        try:
            assert 'camera="cam1"' not in _scrape(other.port)
        finally:
            other.shutdown()
        port = m.port
    finally:
        m.shutdown()
    with pytest.raises(urllib.error.URLError):
        _scrape(port)


def test_exporter_binds_loopback_only():
    m = Metrics()
    server = m.serve(port=0)
    try:
        assert server.server_address[0] == "127.0.0.1"
        with pytest.raises(OSError, match=f"127.0.0.1:{m.port}"):
            Metrics().serve(port=m.port)
    finally:
        m.shutdown()


def _exprs_dashboard() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def _exprs_alerts() -> list[tuple[str, str]]:
    import yaml

    doc = yaml.safe_load(ALERTS.read_text())
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


def test_dashboard_structure_and_metric_names():
    dash = json.loads(DASHBOARD.read_text())
    assert 36 <= dash["schemaVersion"] <= 41
    var_types = {v["name"]: v["type"] for v in dash["templating"]["list"]}
    assert var_types["datasource"] == "datasource"
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for word in ("frame rate", "verdict", "defect ratio", "latency", "queue", "dropped", "spool", "broker",
                 "source up", "models"):
        assert word in titles, word
    exported = set(re.findall(r"^# TYPE (\w+)", Metrics().render().decode(), re.M))
    used = set()
    for expr in _exprs_dashboard() + [e for _, e in _exprs_alerts()]:
        used |= set(re.findall(r"edge_inspector_\w+", expr))
    suffix = re.compile(r"_(bucket|sum|count)$")
    unknown = {u for u in used if suffix.sub("", u) not in exported}
    assert not unknown, f"dashboard/alerts use metrics the daemon does not export: {unknown}"
    assert any("histogram_quantile(0.99" in e for e in _exprs_dashboard())


def test_promtool_check_rules_and_config():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install prometheus)")
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(PROM_EXAMPLE)]):
        proc = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


class _Prometheus:
    def __init__(self, workdir: Path, targets: list[str], dead_target: str) -> None:
        self.port = _free_port()
        shutil.copy(ALERTS, workdir / "alerts.yml")
        (workdir / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "rule_files: [alerts.yml]\n"
            "scrape_configs:\n"
            "  - job_name: edge-inspector\n"
            f"    static_configs: [{{targets: {json.dumps(targets + [dead_target])}}}]\n"
        )
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(workdir / "prometheus.log", "wb"),  # noqa: SIM115
        )
        self.log = workdir / "prometheus.log"

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _drive(m: Metrics, stop: threading.Event) -> None:
    """Make every dashboard/alert expression meaningful: cam1 runs, cam2 is stalled and down,
    the broker is disconnected and the spool grows and overflows."""
    m.init_series(["cam1", "cam2"], ["mqtt"])  # as the daemon does at start: zeros for every known label set
    m.broker_connect_failures_total.labels(client="mqtt", reason="tls_unknown_ca")
    m.frames_total.labels(camera="cam2").inc()
    m.source_up.labels(camera="cam1").set(1)
    m.source_up.labels(camera="cam2").set(0)
    m.broker_connected.set(0)
    m.set_model("detector", "1.2.0", "onnxruntime")
    m.ops.drift_alarm.labels(camera="cam2").set(1)
    m.ops.drift_psi.labels(camera="cam2").set(0.4)
    m.ops.shadow_agreement.labels(model="candidate").set(0.97)
    n = 0
    while not stop.is_set():
        n += 1
        m.frames_total.labels(camera="cam1").inc(5)
        m.verdicts_total.labels(camera="cam1", verdict="ok").inc(4)
        m.verdicts_total.labels(camera="cam1", verdict="defect").inc()
        for stage, sec in (("preprocess", 0.0002), ("infer", 0.004), ("publish", 0.00008)):
            m.stage_seconds.labels(stage=stage).observe(sec)
        m.queue_depth.labels(queue="infer").set(n % 4)
        m.frames_dropped_total.labels(camera="cam1", reason="queue_full").inc()
        m.errors_total.labels(camera="cam1", reason="decode").inc()
        m.errors_total.labels(camera="cam1", reason="model").inc()
        m.verdicts_total.labels(camera="cam1", verdict="error").inc()
        m.broker_connect_failures_total.labels(client="mqtt", reason="tls_unknown_ca").inc()
        m.publish_failures_total.labels(sink="mqtt").inc()
        m.publish_seconds.labels(sink="mqtt").observe(0.0004)
        m.ops.review_frames.labels(reason="near_threshold").inc()
        m.spool_messages.set(n * 10)
        m.spool_dropped_total.labels(policy="drop-oldest").inc()
        stop.wait(0.2)


def _grafana_to_promql(expr: str) -> str:
    return re.sub(r"\$(job|instance|camera)\b", ".*", expr.replace("$__rate_interval", "1m"))


def test_dashboard_and_alert_queries_return_series_in_real_prometheus(tmp_path):
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus not installed (apt-get install prometheus)")
    m = Metrics()
    m.serve(port=0)
    stop = threading.Event()
    driver = threading.Thread(target=_drive, args=(m, stop), daemon=True)
    driver.start()
    prom = _Prometheus(tmp_path, [f"127.0.0.1:{m.port}"], dead_target=f"127.0.0.1:{_free_port()}")
    try:
        deadline = time.monotonic() + 40
        while True:  # ready when several scrapes of the live target have landed
            try:
                r = prom.api("query", query='count_over_time(up{job="edge-inspector"}[1m])')
                if r["data"]["result"] and min(float(s["value"][1]) for s in r["data"]["result"]) >= 3:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert prom.proc.poll() is None, prom.log.read_text()[-2000:]
            assert time.monotonic() < deadline, "prometheus did not scrape in time: " + prom.log.read_text()[-2000:]
            time.sleep(0.3)
        empty = []
        for expr in _exprs_dashboard():
            q = _grafana_to_promql(expr)
            r = prom.api("query", query=q)
            assert r["status"] == "success", (q, r)
            if not r["data"]["result"]:
                empty.append(q)
        for name, expr in _exprs_alerts():
            r = prom.api("query", query=expr)
            assert r["status"] == "success", (name, r)
            if not r["data"]["result"]:
                empty.append(f"{name}: {expr}")
        assert not empty, "queries without series:\n" + "\n".join(empty)
        for ann in json.loads(DASHBOARD.read_text())["annotations"]["list"]:  # reload/restart markers parse
            q = _grafana_to_promql(ann["expr"])
            assert prom.api("query", query=q)["status"] == "success", q
        dash = json.loads(DASHBOARD.read_text())
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
            assert match, var["query"]
            selector = re.sub(r"\$\w+", ".*", match.group(1))
            r = prom.api(f"label/{match.group(2)}/values", **{"match[]": selector})
            assert r["data"], f"variable {var['name']} has no values"
        rules = prom.api("rules")["data"]["groups"][0]["rules"]
        assert {r["health"] for r in rules} == {"ok"}, rules
    finally:
        stop.set()
        prom.stop()
        m.shutdown()
