"""The plant follower against a real Mosquitto and the daemon's real MQTT publisher.

Two lines publish through one broker (the daemon's ``MqttPublisher``: spool, QoS 1, retained
status); the console's follower stores both, with their status; a console that is away gets what
was published meanwhile from its persistent session; the line, camera and lines pages show them.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from edge_inspector.console.models import LineStatus, Verdict
from edge_inspector.console.mqtt_feed import MqttFeedConfig, MqttFeedError, MqttVerdictSubscriber
from edge_inspector.console.subscriber import Retention, prune
from edge_inspector.metrics import Metrics
from edge_inspector.publishers import MqttConfig, create_publisher
from tests.fixtures.waiting import wait_for
from tests.publishers.util import make_verdict, unique_prefix

from .conftest import make_client


def feed_config(broker, prefix: str, client_id: str | None = None) -> MqttFeedConfig:
    return MqttFeedConfig(host=broker.host, port=broker.port, topic_prefix=prefix,
                          client_id=client_id or f"console-{uuid.uuid4().hex[:8]}",
                          reconnect_min_delay=0.1, reconnect_max_delay=0.5, keepalive=5)


def daemon_publisher(broker, tmp_path, prefix: str, line: str):
    """The daemon's own MQTT sink (spool, QoS 1, retained online / offline)."""
    cfg = MqttConfig(host=broker.host, port=broker.port, topic_prefix=prefix, spool_dir=tmp_path / f"spool-{line}",
                     client_id=f"daemon-{line}-{uuid.uuid4().hex[:6]}", reconnect_min_delay=0.1,
                     reconnect_max_delay=0.5, keepalive=5)
    return create_publisher(cfg, line=line, metrics=Metrics())


@pytest.fixture
def follower(committed_db, mosquitto):
    made = []

    def make(prefix: str, client_id: str | None = None) -> MqttVerdictSubscriber:
        sub = MqttVerdictSubscriber(feed_config(mosquitto, prefix, client_id), prune_every_s=3600)
        sub.start()
        made.append(sub)
        assert sub.subscribed.wait(10), "console follower did not subscribe"
        return sub

    yield make
    for sub in made:
        sub.stop()
    LineStatus.objects.all().delete()


def test_two_lines_through_one_broker_with_status(follower, mosquitto, tmp_path):
    prefix = unique_prefix()
    sub = follower(prefix)
    a = daemon_publisher(mosquitto, tmp_path, prefix, "line-a")
    b = daemon_publisher(mosquitto, tmp_path, prefix, "line-b")
    try:
        for i in range(10):
            a.publish(make_verdict(i, camera="cam-0", line="line-a", verdict="defect" if i % 5 == 0 else "ok"))
            b.publish(make_verdict(i, camera="cam-0", line="line-b"))  # same camera id on another line
            b.publish(make_verdict(i, camera="cam-1", line="line-b"))
        wait_for(lambda: Verdict.objects.count() >= 30, what="30 verdicts of two lines")
        wait_for(lambda: LineStatus.objects.filter(state="online").count() == 2, what="both lines online")
    finally:
        a.close()
    wait_for(lambda: LineStatus.objects.get(line="line-a").state == "offline", what="line-a offline after close")
    b.close()
    rows = Verdict.objects.values("line", "camera").annotate(n=Count("id"))
    counts = {(r["line"], r["camera"]): r["n"] for r in rows}
    assert counts == {("line-a", "cam-0"): 10, ("line-b", "cam-0"): 10, ("line-b", "cam-1"): 10}
    assert sub.received == 30 and sub.rejected == 0
    assert LineStatus.objects.get(line="line-a").broker == f"{mosquitto.host}:{mosquitto.port}"

    viewer = make_client("plant-viewer", "viewer")
    lines = viewer.get("/api/lines").json()["lines"]
    by_line = {row["line"]: row for row in lines}
    assert by_line["line-a"]["state"] == "offline" and by_line["line-a"]["total"] == 10
    assert by_line["line-a"]["defect_rate"] == pytest.approx(0.2)
    assert by_line["line-b"]["cameras"] == ["cam-0", "cam-1"] and by_line["line-b"]["total"] == 20
    page = viewer.get("/lines/").content.decode()
    assert 'href="/lines/line-a/"' in page and 'href="/lines/line-b/cam-1/"' in page
    only_b = viewer.get("/api/verdicts?since=0&line=line-b&camera=cam-0&limit=500").json()
    assert {(v["line"], v["camera"]) for v in only_b["verdicts"]} == {("line-b", "cam-0")}
    assert [(c["line"], c["camera"]) for c in only_b["cameras"]] == [("line-b", "cam-0")]
    assert only_b["line"]["state"] == "offline"  # closed above: its retained offline
    assert viewer.get("/lines/line-b/").status_code == 200
    camera_page = viewer.get("/lines/line-a/cam-0/")
    assert camera_page.status_code == 200 and len(camera_page.context["defects"]) == 2
    assert viewer.get("/lines/nowhere/").status_code == 404
    assert viewer.get("/lines/line-a/cam-9/").status_code == 404
    assert len(viewer.get("/gallery/?line=line-a").context["verdicts"]) == 2


def test_console_away_gets_what_was_published_meanwhile(follower, mosquitto, tmp_path):
    """Persistent session + QoS 1: the broker queues for a stopped console; redeliveries are deduplicated."""
    prefix = unique_prefix()
    client_id = f"console-{uuid.uuid4().hex[:8]}"
    first = follower(prefix, client_id)
    pub = daemon_publisher(mosquitto, tmp_path, prefix, "line-a")
    try:
        for i in range(5):
            pub.publish(make_verdict(i, line="line-a"))
        wait_for(lambda: Verdict.objects.count() == 5, what="first 5 verdicts")
        first.stop()
        for i in range(5, 25):
            pub.publish(make_verdict(i, line="line-a"))
        wait_for(lambda: len(pub.spool) == 0, what="broker acknowledged all 25")
        assert Verdict.objects.count() == 5  # nobody stored them yet
        second = follower(prefix, client_id)
        wait_for(lambda: Verdict.objects.count() == 25, what="the 20 queued while the console was away")
        assert second.received >= 20
    finally:
        pub.close()
    assert sorted(Verdict.objects.values_list("frame", flat=True)) == list(range(25))


def test_malformed_messages_are_counted_and_acknowledged(follower, mosquitto, mqtt_subscriber):
    import paho.mqtt.publish as publish

    prefix = unique_prefix()
    sub = follower(prefix)
    publish.single(f"{prefix}/line-x/cam/verdict", b"{not json", qos=1, hostname=mosquitto.host, port=mosquitto.port)
    publish.single(f"{prefix}/line-x/cam/verdict", make_verdict(1, line="line-x").to_json(), qos=1,
                   hostname=mosquitto.host, port=mosquitto.port)
    wait_for(lambda: Verdict.objects.filter(line="line-x").count() == 1, what="the good verdict")
    assert sub.rejected == 1


def test_retention_by_rows_and_by_age(committed_db):
    def add(frame: int, days_old: float, review: bool = False) -> None:
        v = make_verdict(frame, line="line-r")
        from edge_inspector.console.subscriber import store, to_row

        store([to_row(v.to_json())])
        Verdict.objects.filter(frame=frame, line="line-r").update(received_at=timezone.now() - timedelta(days=days_old),
                                                                   review=review)

    for frame, age in enumerate([40, 35, 31, 20, 10, 1, 0.1]):
        add(frame, age, review=frame == 0)
    assert Retention(keep_rows=None, keep_days=30).apply() == 2  # frames 1 and 2; frame 0 is marked for review
    assert sorted(Verdict.objects.values_list("frame", flat=True)) == [0, 3, 4, 5, 6]
    assert prune(keep=2) == 2  # the newest 2 and the reviewed one stay
    assert sorted(Verdict.objects.values_list("frame", flat=True)) == [0, 5, 6]
    assert Retention(keep_rows=100, keep_days=None).apply() == 0


def test_feed_settings_errors_name_the_variable():
    assert MqttFeedConfig.from_settings({"MQTT": {"host": None}}) is None
    with pytest.raises(MqttFeedError, match="EDGE_INSPECTOR_MQTT_TOPIC_PREFIX"):
        MqttFeedConfig.from_settings({"MQTT": {"host": "broker", "topic_prefix": "a/#"}})
    with pytest.raises(MqttFeedError, match="EDGE_INSPECTOR_MQTT_HOST"):
        MqttFeedConfig.from_settings({"MQTT": {"host": "bad..host"}})
    cfg = MqttFeedConfig.from_settings({"MQTT": {"host": "broker", "port": 8883, "ca_file": "/ca.crt"}})
    assert cfg.tls is not None and cfg.endpoint == "mqtts://broker:8883/edge-inspector"
    assert (cfg.verdict_filter, cfg.status_filter) == ("edge-inspector/+/+/verdict", "edge-inspector/+/status")


def test_refused_write_holds_the_acknowledgement_until_stored(follower, mosquitto, tmp_path):
    """The database refuses the insert (its table is away): nothing is acknowledged, so a console
    stopped meanwhile gets the messages again from its session, and stores them once the table is back."""
    from django.db import connection

    prefix = unique_prefix()
    client_id = f"console-{uuid.uuid4().hex[:8]}"
    first = follower(prefix, client_id)
    first.retry_s = 0.2
    pub = daemon_publisher(mosquitto, tmp_path, prefix, "line-a")
    table = Verdict._meta.db_table
    with connection.cursor() as cur:
        cur.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        for i in range(8):
            pub.publish(make_verdict(i, line="line-a"))
        wait_for(lambda: first.db_errors >= 2, what="the follower to retry the refused write")
        assert first.received == 0
        first.stop()  # killed before anything was stored: nothing was acknowledged
    finally:
        with connection.cursor() as cur:
            cur.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
    second = follower(prefix, client_id)
    try:
        wait_for(lambda: Verdict.objects.count() == 8, what="the 8 unacknowledged verdicts, redelivered")
    finally:
        pub.close()
    assert sorted(Verdict.objects.values_list("frame", flat=True)) == list(range(8))
    assert second.received >= 8


@pytest.mark.parametrize("flags, expected", [
    (["--mqtt-host", "broker..plant"], "EDGE_INSPECTOR_MQTT_HOST"),
    (["--mqtt-host", "127.0.0.1", "--mqtt-password-file", "missing.pw", "--mqtt-username", "console"],
     "missing.pw"),
])
def test_console_refuses_to_start_with_bad_mqtt_settings(tmp_path, flags, expected):
    import os
    import subprocess
    import sys

    from .conftest import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for var in ("DJANGO_SETTINGS_MODULE", "EDGE_INSPECTOR_DATA_DIR", "DATABASE_URL"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-m", "edge_inspector", "console", "--data-dir", str(tmp_path / "d"),
                           "--port", "0", *flags], capture_output=True, text=True, env=env, timeout=90, cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the one CLI error shape (tests/test_cli.py)
    assert proc.stderr.startswith("console: "), proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
