"""MQTT publisher against a real Mosquitto: round trip, status/last will, outages, spool, overflow, auth."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from edge_inspector.messages import Verdict
from edge_inspector.metrics import Metrics
from edge_inspector.publishers import MqttConfig, create_publisher, status_topic, verdict_topic
from edge_inspector.publishers.base import PublisherError
from edge_inspector.publishers.spool import Spool
from tests.fixtures.broker import Mosquitto, free_port

from .util import make_verdict, sample, unique_prefix, wait_until


def _cfg(broker, tmp_path, prefix, **kw) -> MqttConfig:
    base = dict(host=broker.host, port=broker.port, topic_prefix=prefix, spool_dir=tmp_path / "spool",
                reconnect_min_delay=0.1, reconnect_max_delay=0.5, keepalive=5)
    base.update(kw)
    return MqttConfig(**base)


def _frames(messages) -> list[int]:
    return [Verdict.model_validate_json(m.payload).frame for m in messages if m.topic.endswith("/verdict")]


def _first_occurrences(frames: list[int]) -> list[int]:
    seen: set[int] = set()
    out = []
    for f in frames:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out


def test_round_trip_topics_schema_and_status(mosquitto, mqtt_subscriber, tmp_path):
    prefix = unique_prefix()
    sub = mqtt_subscriber(f"{prefix}/#")
    m = Metrics()
    pub = create_publisher(_cfg(mosquitto, tmp_path, prefix), line="line1", metrics=m)
    wait_until(lambda: pub.connected, what="broker connection")
    assert sample(m, "edge_inspector_broker_connected") == 1
    for i in range(5):
        pub.publish(make_verdict(i, camera="cam1" if i % 2 else "cam2"))
    msgs = sub.wait_for(6)
    wait_until(lambda: sample(m, "edge_inspector_spool_messages") == 0, what="spool drained")
    pub.close()
    assert sample(m, "edge_inspector_broker_connected") == 0

    verdicts = [x for x in sub.messages if x.topic.endswith("/verdict")]
    assert len(verdicts) == 5  # one message per verdict, no duplicates on a healthy link
    for msg in verdicts:
        v = Verdict.model_validate_json(msg.payload)
        assert msg.topic == verdict_topic(prefix, "line1", v.camera)
        assert msg.qos == 1
    assert sorted(_frames(verdicts)) == list(range(5))
    status = [x.payload for x in msgs if x.topic == status_topic(prefix, "line1")]
    assert status[0] == b"online"
    # clean close: retained "offline" for anyone subscribing later
    late = mqtt_subscriber(status_topic(prefix, "line1"))
    got = late.wait_for(1)
    assert (got[0].payload, got[0].retain) == (b"offline", True)


def test_last_will_when_killed(mosquitto, mqtt_subscriber, tmp_path):
    prefix = unique_prefix()
    topic = status_topic(prefix, "line1")
    code = textwrap.dedent(f"""
        import sys, time
        from edge_inspector.metrics import Metrics
        from edge_inspector.publishers import MqttConfig, create_publisher
        cfg = MqttConfig(host={mosquitto.host!r}, port={mosquitto.port}, topic_prefix={prefix!r},
                         spool_dir={str(tmp_path / "spool")!r}, keepalive=5)
        pub = create_publisher(cfg, line="line1", metrics=Metrics())
        while not pub.connected:
            time.sleep(0.02)
        print("CONNECTED", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": os.getcwd()}, text=True)
    try:
        assert proc.stdout.readline().strip() == "CONNECTED", proc.stderr.read()
        sub = mqtt_subscriber(topic)
        first = sub.wait_for(1)
        assert (first[0].payload, first[0].retain) == (b"online", True)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        msgs = sub.wait_for(2, timeout=15)
        assert msgs[1].payload == b"offline"  # the broker published the last will
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    later = mqtt_subscriber(topic).wait_for(1)
    assert (later[0].payload, later[0].retain) == (b"offline", True)


def test_broker_outage_mid_stream_delivers_everything_in_order(mosquitto, mqtt_subscriber, tmp_path):
    prefix = unique_prefix()
    sub = mqtt_subscriber(f"{prefix}/+/+/verdict")
    m = Metrics()
    # The publisher retries after 3 s, long after the subscriber (50-200 ms) has re-subscribed to the
    # restarted broker, which keeps no sessions: the test checks our delivery, not the subscriber's luck.
    cfg = _cfg(mosquitto, tmp_path, prefix, reconnect_min_delay=3.0, reconnect_max_delay=3.0)
    pub = create_publisher(cfg, line="line1", metrics=m)
    try:
        wait_until(lambda: pub.connected, what="broker connection")
        for i in range(20):
            pub.publish(make_verdict(i))
        mosquitto.stop()
        wait_until(lambda: sample(m, "edge_inspector_broker_connected") == 0, what="disconnect noticed")
        for i in range(20, 40):
            pub.publish(make_verdict(i))
        assert sample(m, "edge_inspector_spool_messages") >= 20  # the spool grows during the outage
        mosquitto.start()
        sub.wait_subscribed(timeout=5)
        assert not pub.connected, "publisher reconnected before the subscriber; test timing assumption broken"
        for i in range(40, 45):
            pub.publish(make_verdict(i))
        # frames 0-19 may be lost with the stopped broker's memory (see below): wait for 20-44
        wait_until(lambda: set(_frames(sub.messages)) >= set(range(20, 45)), timeout=20,
                   what="frames 20-44 delivered")
        wait_until(lambda: sample(m, "edge_inspector_spool_messages") == 0, what="spool drained")
    finally:
        mosquitto.start()
        pub.close(timeout=2)
    frames = _frames(sub.messages)
    assert set(frames) >= set(range(20, 45)), f"missing {sorted(set(range(45)) - set(frames))}"
    # Frames 0-19 went out before the stop; any the broker had not yet forwarded may be lost with
    # the broker's memory (persistence false), but none of ours that was not acknowledged.
    assert _first_occurrences([f for f in frames if f >= 20]) == list(range(20, 45))


def test_spool_survives_publisher_restart_during_outage(mosquitto, mqtt_subscriber, tmp_path):
    prefix = unique_prefix()
    sub = mqtt_subscriber(f"{prefix}/+/+/verdict")
    cfg = _cfg(mosquitto, tmp_path, prefix)
    mosquitto.stop()
    try:
        m1 = Metrics()
        pub1 = create_publisher(cfg, line="line1", metrics=m1)
        for i in range(6):
            pub1.publish(make_verdict(i))
        pub1.close(timeout=0.5)  # broker down: everything stays on disk
        sp = Spool(cfg.spool_dir, cfg.spool_max_messages)
        assert [Verdict.model_validate_json(e.payload).frame for e in sp.read_after(0, 100)] == list(range(6))
        sp.close()
    finally:
        mosquitto.start()
    sub.wait_subscribed(timeout=5)
    m2 = Metrics()
    pub2 = create_publisher(cfg, line="line1", metrics=m2)
    assert sample(m2, "edge_inspector_spool_messages") == 6
    for i in range(6, 9):
        pub2.publish(make_verdict(i))
    sub.wait_for(9, timeout=15)
    pub2.close()
    assert _first_occurrences(_frames(sub.messages)) == list(range(9))  # old spool first, then new


@pytest.mark.parametrize(("policy", "kept"), [("drop-oldest", [3, 4, 5, 6]), ("drop-newest", [0, 1, 2, 3])])
def test_spool_overflow_policy_counted_then_delivered(mosquitto, mqtt_subscriber, tmp_path, policy, kept):
    prefix = unique_prefix()
    m = Metrics()
    nowhere = _cfg(mosquitto, tmp_path, prefix, port=free_port(), spool_max_messages=4, spool_overflow=policy)
    pub = create_publisher(nowhere, line="line1", metrics=m)
    for i in range(7):
        pub.publish(make_verdict(i))
    assert sample(m, "edge_inspector_spool_dropped_total", {"policy": policy}) == 3
    assert sample(m, "edge_inspector_publish_failures_total", {"sink": "mqtt"}) == 3
    assert sample(m, "edge_inspector_spool_messages") == 4
    assert sample(m, "edge_inspector_broker_connected") == 0  # nothing listens: never "connected"
    pub.close(timeout=0.2)
    sub = mqtt_subscriber(f"{prefix}/+/+/verdict")
    pub = create_publisher(nowhere.model_copy(update={"port": mosquitto.port}), line="line1", metrics=Metrics())
    sub.wait_for(4, timeout=10)
    pub.close()
    assert _frames(sub.messages) == kept


def test_password_file_auth_and_refused_connection(tmp_path, mqtt_subscriber):
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "inspector", "s3cret"], check=True,
                   capture_output=True)
    broker = Mosquitto(tmp_path, extra_config=["allow_anonymous false", f"password_file {pwfile}"])
    broker.start()
    try:
        wrong = Metrics()
        bad = create_publisher(
            MqttConfig(host=broker.host, port=broker.port, username="inspector", password="nope",
                       spool_dir=tmp_path / "s1", reconnect_min_delay=0.1, reconnect_max_delay=0.2),
            line="line1", metrics=wrong)
        bad.publish(make_verdict(0))
        secret = tmp_path / "mqtt-password"
        secret.write_text("s3cret\n")
        good_m = Metrics()
        good = create_publisher(
            MqttConfig(host=broker.host, port=broker.port, username="inspector", password_file=secret,
                       spool_dir=tmp_path / "s2", reconnect_min_delay=0.1, reconnect_max_delay=0.2),
            line="line1", metrics=good_m)
        good.publish(make_verdict(0))
        wait_until(lambda: sample(good_m, "edge_inspector_spool_messages") == 0, what="authenticated delivery")
        # several refused attempts later, the refused client is still not "connected" and keeps its spool
        assert not bad.connected
        assert sample(wrong, "edge_inspector_broker_connected") == 0
        assert sample(wrong, "edge_inspector_spool_messages") == 1
        good.close()
        bad.close(timeout=0.2)
    finally:
        broker.stop()


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(PublisherError, match="password_file"):
        create_publisher(MqttConfig(host="127.0.0.1", password_file=tmp_path / "missing", spool_dir=tmp_path),
                         line="l", metrics=Metrics())
    with pytest.raises(PublisherError, match="tls.ca_file"):
        create_publisher(MqttConfig(host="127.0.0.1", tls={"ca_file": tmp_path / "ca.pem"}, spool_dir=tmp_path),
                         line="l", metrics=Metrics())
    with pytest.raises(ValueError, match="password or password_file"):
        MqttConfig(host="h", password="a", password_file=tmp_path / "p")
    with pytest.raises(ValueError, match="extra"):
        MqttConfig(host="h", qos_level=1)
    with pytest.raises(ValueError):
        MqttConfig(host="h", qos=0)


def test_entries_leave_the_spool_only_after_puback(mosquitto, mqtt_subscriber, tmp_path):
    """A hung broker takes our bytes but never acknowledges: every verdict must stay spooled."""
    prefix = unique_prefix()
    sub = mqtt_subscriber(f"{prefix}/+/+/verdict")
    cfg = _cfg(mosquitto, tmp_path, prefix)
    pub = create_publisher(cfg, line="line1", metrics=Metrics())
    wait_until(lambda: pub.connected, what="broker connection")
    mosquitto.pause()
    try:
        for i in range(5):
            pub.publish(make_verdict(i))
        pub.close(timeout=0.5)
    finally:
        mosquitto.resume()
    sp = Spool(cfg.spool_dir, cfg.spool_max_messages)
    assert len(sp) == 5, "entries were removed without a PUBACK"
    sp.close()
    pub2 = create_publisher(cfg, line="line1", metrics=Metrics())
    sub.wait_for(5, timeout=10)
    pub2.close()
    assert _first_occurrences(_frames(sub.messages)) == list(range(5))


def test_reload_hands_the_spool_over_without_loss_or_offline(mosquitto, mqtt_subscriber, tmp_path):
    prefix = unique_prefix()
    sub = mqtt_subscriber(f"{prefix}/#")
    m = Metrics()
    old = create_publisher(_cfg(mosquitto, tmp_path, prefix), line="line1", metrics=m)
    wait_until(lambda: old.connected, what="broker connection")
    for i in range(5):
        old.publish(make_verdict(i))
    # a reload that is refused: the would-be successor withdraws, the old publisher carries on
    refused = create_publisher(_cfg(mosquitto, tmp_path, prefix, qos=2), line="line1", metrics=m)
    refused.close(timeout=1)
    # a reload with changed MQTT settings and the same spool_dir
    new = create_publisher(_cfg(mosquitto, tmp_path, prefix, keepalive=10), line="line1", metrics=m)
    assert not new.connected
    for i in range(5, 10):
        new.publish(make_verdict(i))  # spooled at once, delivered by the old connection meanwhile
    old.close()
    wait_until(lambda: new.connected, what="successor connection")
    for i in range(10, 15):
        new.publish(make_verdict(i))
    sub.wait_for(15 + 2)  # 15 verdicts + online twice
    wait_until(lambda: sample(m, "edge_inspector_spool_messages") == 0, what="spool drained")
    statuses = [x.payload for x in sub.messages if x.topic.endswith("/status")]
    new.close()
    assert _first_occurrences(_frames(sub.messages)) == list(range(15))
    assert b"offline" not in statuses, "a reload must not announce the daemon offline"
    with pytest.raises(PublisherError, match="in use by another process"):
        code = (f"from edge_inspector.publishers.spool import Spool; s = Spool({str(tmp_path / 'spool')!r}, 5);"
                "import time; print('L', flush=True); time.sleep(30)")
        holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": os.getcwd()})
        try:
            assert holder.stdout.readline().strip() == "L"
            create_publisher(_cfg(mosquitto, tmp_path, prefix), line="line1", metrics=m)
        finally:
            holder.kill()
            holder.wait()
