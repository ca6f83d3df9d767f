"""Sparkplug B on a real Mosquitto, checked by a subscriber that decodes the protobuf payloads:
births, data and deaths, seq 0-255, bdSeq per session, the will on an unclean loss, rebirth on NCMD."""

from __future__ import annotations

import socket
import threading
import time

import paho.mqtt.publish as mqtt_publish
import pytest

from edge_inspector.messages import Verdict
from edge_inspector.metrics import Metrics
from edge_inspector.publishers import SparkplugConfig, create_publisher
from edge_inspector.publishers.sparkplug_pb import BOOLEAN, Payload, add_metric, metric_value
from tests.fixtures.models import write_frames
from tests.lineops.util import run_daemon, write_config


class Decoded:
    def __init__(self, topic: str, payload: bytes):
        self.topic = topic
        parts = topic.split("/")
        self.type, self.node = parts[2], parts[3]
        self.device = parts[4] if len(parts) > 4 else None
        self.payload = Payload.FromString(payload)
        self.metrics = {m.name: metric_value(m) for m in self.payload.metrics}
        self.seq = self.payload.seq if self.payload.HasField("seq") else None

    def __repr__(self) -> str:
        return f"{self.type}/{self.device} seq={self.seq} {self.metrics}"


def decoded(collector) -> list[Decoded]:
    """What the node published (the test's own NCMD is left out)."""
    return [Decoded(m.topic, m.payload) for m in collector.messages if "/NCMD/" not in m.topic]


def wait_types(collector, pred, timeout: float = 10.0) -> list[Decoded]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msgs = decoded(collector)
        if pred(msgs):
            return msgs
        time.sleep(0.05)
    raise AssertionError(f"condition not met; got {decoded(collector)}")


class TcpProxy:
    """Forwards a local port to the broker; ``cut()`` drops every connection without an MQTT DISCONNECT
    (a pulled cable as both ends see it) while new connections are still accepted."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def close(self) -> None:
        try:  # close() alone leaves the accept thread blocked; shutdown wakes it (accept raises, it returns)
            self.server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.server.close()
        self.cut()


def verdict(frame: int, kind: str = "ok", camera: str = "cam1") -> Verdict:
    return Verdict(line="line1", camera=camera, frame=frame, captured_at="2026-01-01T00:00:00.000Z",
                   verdict=kind, score=0.7 if kind == "defect" else 0.2, latency_ms={"total": 3.0})


def test_daemon_births_data_and_death(tmp_path, detector_card, mosquitto, mqtt_subscriber):
    replay = write_frames(tmp_path / "replay", n=6, defect_every=3)
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=f"- path: {detector_card}",
                       publishers=f"- {{type: sparkplug, host: {mosquitto.host}, port: {mosquitto.port}, "
                                  f"group_id: plant1, edge_node_id: line1-node, bdseq_file: {tmp_path}/bdseq}}")
    sub = mqtt_subscriber("spBv1.0/plant1/#", qos=1)
    run_daemon(cfg)
    msgs = wait_types(sub, lambda ms: any(m.type == "NDEATH" for m in ms))
    types = [(m.type, m.device) for m in msgs]
    assert types == [("NBIRTH", None), ("DBIRTH", "cam1")] + [("DDATA", "cam1")] * 5 + [("NDEATH", None)], types
    assert all(m.node == "line1-node" for m in msgs)
    nbirth, dbirth, *ddata, ndeath = msgs
    assert nbirth.seq == 0 and nbirth.metrics["bdSeq"] == ndeath.metrics["bdSeq"]
    assert nbirth.metrics["Node Control/Rebirth"] is False and nbirth.metrics["Properties/line"] == "line1"
    assert ndeath.seq is None  # NDEATH carries no seq
    assert [m.seq for m in [dbirth, *ddata]] == [1, 2, 3, 4, 5, 6]
    # DBIRTH declares every metric; the first frame is ok, frames 2 and 5 are defects
    assert set(dbirth.metrics) >= {"verdict", "score", "frame", "defect", "defect_type", "drift_alarm"}
    frames = {dbirth.metrics["frame"]: dbirth.metrics["verdict"]} | {m.metrics["frame"]: m.metrics["verdict"]
                                                                       for m in ddata}
    assert frames == {0: "ok", 1: "ok", 2: "defect", 3: "ok", 4: "ok", 5: "defect"}
    assert all(isinstance(m.metrics["score"], float) for m in ddata)
    assert int((tmp_path / "bdseq").read_text()) == (nbirth.metrics["bdSeq"] + 1) % 256  # next run's


def test_seq_wraps_will_on_loss_and_rebirth(tmp_path, mosquitto, mqtt_subscriber):
    sub = mqtt_subscriber("spBv1.0/g2/#", qos=1)
    proxy = TcpProxy(mosquitto.host, mosquitto.port)
    cfg = SparkplugConfig(type="sparkplug", host="127.0.0.1", port=proxy.port, group_id="g2",
                          edge_node_id="n1", keepalive=5)
    pub = create_publisher(cfg, line="line1", metrics=Metrics())
    try:
        wait_types(sub, lambda ms: any(m.type == "NBIRTH" for m in ms))
        for i in range(300):
            pub.publish(verdict(i))
        msgs = wait_types(sub, lambda ms: len(ms) >= 301)
        seqs = [m.seq for m in msgs]
        assert seqs[:3] == [0, 1, 2] and seqs[255] == 255 and seqs[256] == 0 and seqs[300] == 44
        first_bdseq = msgs[0].metrics["bdSeq"]
        # operations events: a drift alarm is a DDATA of drift_alarm
        pub.publish_event("alarm", "line1", "cam1", '{"active": true, "state": "raised"}')
        msgs = wait_types(sub, lambda ms: "drift_alarm" in ms[-1].metrics)
        assert msgs[-1].metrics == {"drift_alarm": True}
        # a rebirth request from a host: NBIRTH (seq 0) and DBIRTH again, same bdSeq
        cmd = Payload(timestamp=1)
        add_metric(cmd, "Node Control/Rebirth", BOOLEAN, True)
        n = len(decoded(sub))
        mqtt_publish.single("spBv1.0/g2/NCMD/n1", cmd.SerializeToString(), hostname=mosquitto.host,
                            port=mosquitto.port)
        msgs = wait_types(sub, lambda ms: [m.type for m in ms[n:]] == ["NBIRTH", "DBIRTH"])
        assert msgs[n].seq == 0 and msgs[n].metrics["bdSeq"] == first_bdseq and msgs[n + 1].seq == 1
        assert msgs[n + 1].metrics["drift_alarm"] is True  # the birth carries the current state
        # an unclean loss of the connection: the broker publishes our will (NDEATH, same bdSeq);
        # the reconnect is a new session with bdSeq + 1
        n = len(decoded(sub))
        proxy.cut()  # TCP gone without an MQTT DISCONNECT
        msgs = wait_types(sub, lambda ms: [m.type for m in ms[n:]][:3] == ["NDEATH", "NBIRTH", "DBIRTH"],
                          timeout=20)
        death, birth = msgs[n], msgs[n + 1]
        assert death.metrics["bdSeq"] == first_bdseq
        assert birth.metrics["bdSeq"] == (first_bdseq + 1) % 256 and birth.seq == 0
    finally:
        pub.close()
        proxy.close()
    msgs = wait_types(sub, lambda ms: ms[-1].type == "NDEATH")
    assert msgs[-1].metrics["bdSeq"] == (first_bdseq + 1) % 256


def test_config_refuses_topic_characters():
    with pytest.raises(ValueError, match="group_id 'a/b' must not contain"):
        SparkplugConfig(type="sparkplug", host="h", group_id="a/b")


def _iso_ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def test_daemon_over_tls_with_password_decoded_by_pysparkplug(tmp_path, detector_card, secure_mosquitto):
    """A third-party decoder (pysparkplug, Eclipse Tahu's proto) reads births, data and death sent over
    TLS with a password file; every payload and every metric carries a timestamp (Sparkplug 3.0 MUST),
    and a verdict's metrics carry its capture time."""
    import json

    spb = pytest.importorskip("pysparkplug")
    s = secure_mosquitto
    replay = write_frames(tmp_path / "replay", n=4, defect_every=2)
    jsonl = tmp_path / "verdicts.jsonl"
    cfg = write_config(tmp_path / "config.yaml", replay=replay, models=f"- path: {detector_card}", publishers=(
        f"- {{type: sparkplug, host: {s.host}, port: {s.tls_port}, username: {s.username}, "
        f"password_file: {s.password_file}, tls: {{ca_file: {s.pki['ca.crt']}}}, group_id: tls1, "
        f"edge_node_id: n1}}\n- {{type: jsonl, path: {jsonl}}}"))
    sub = s.collector("spBv1.0/tls1/#")
    try:
        run_daemon(cfg)
        wait_types(sub, lambda ms: any(m.type == "NDEATH" for m in ms))
    finally:
        sub.close()
    raw = [m for m in sub.messages if "/NCMD/" not in m.topic]
    types = [m.topic.split("/")[2] for m in raw]
    # Verdicts decided before the TLS session is up are not queued (state, not history): the DBIRTH
    # then carries the latest one.
    assert types[:2] == ["NBIRTH", "DBIRTH"] and types[-1] == "NDEATH" and set(types[2:-1]) <= {"DDATA"}, types
    nbirth = spb.NBirth.decode(raw[0].payload)
    dbirth = spb.DBirth.decode(raw[1].payload)
    ddata = [spb.DData.decode(m.payload, birth=dbirth) for m in raw[2:-1]]
    # the datatype is declared once, in the birth (Sparkplug 3.0: it SHOULD NOT repeat in DDATA)
    assert all(not mm.HasField("datatype") for m in raw[2:-1] for mm in Decoded(m.topic, m.payload).payload.metrics)
    ndeath = spb.NDeath.decode(raw[-1].payload)
    for p in (nbirth, dbirth, *ddata):
        assert p.timestamp > 0
        assert p.metrics and all(m.timestamp is not None and m.timestamp > 0 for m in p.metrics), p
    # pysparkplug 0.6.1 inverts NDEATH's timestamp test (None when present), so read it from the Tahu proto
    assert ndeath.bd_seq_metric.timestamp > 0 and Decoded(raw[-1].topic, raw[-1].payload).payload.timestamp > 0
    captured = {v["frame"]: _iso_ms(v["captured_at"]) for v in map(json.loads, jsonl.read_text().splitlines())}
    frames = []
    for p in (dbirth, *ddata):
        metrics = {m.name: m for m in p.metrics}
        frame = metrics["frame"].value
        frames.append(frame)
        assert metrics["verdict"].timestamp == metrics["frame"].timestamp == captured[frame], (frame, p)
    assert frames[-1] == max(captured)  # the last verdict reached the host
    assert {m.name: m.value for m in nbirth.metrics}["bdSeq"] == ndeath.bd_seq_metric.value


def test_primary_host_state_gates_births(mosquitto, mqtt_subscriber):
    """With primary_host_id the node births only while the host's retained STATE says online; an offline
    host ends the session (NDEATH), and the next birth carries the next bdSeq."""
    spb = pytest.importorskip("pysparkplug")
    import uuid

    host_id = f"scada-{uuid.uuid4().hex[:6]}"
    state_topic = f"spBv1.0/STATE/{host_id}"

    def say(online: bool, ts: int) -> None:
        mqtt_publish.single(state_topic, spb.State(timestamp=ts, online=online).encode(), qos=1, retain=True,
                            hostname=mosquitto.host, port=mosquitto.port)

    sub = mqtt_subscriber("spBv1.0/g3/#", qos=1)
    cfg = SparkplugConfig(host=mosquitto.host, port=mosquitto.port, group_id="g3", edge_node_id="n3",
                          primary_host_id=host_id, reconnect_min_delay=0.1, reconnect_max_delay=0.2)
    pub = create_publisher(cfg, line="line1", metrics=Metrics())
    try:
        time.sleep(1.0)
        pub.publish(verdict(0))
        assert decoded(sub) == []  # no host online: nothing born, nothing sent
        say(True, 1000)
        msgs = wait_types(sub, lambda ms: [m.type for m in ms] == ["NBIRTH", "DBIRTH"])
        bdseq = msgs[0].metrics["bdSeq"]
        assert msgs[1].metrics["frame"] == 0  # the birth carries the state kept while waiting
        say(False, 2000)
        wait_types(sub, lambda ms: [m.type for m in ms][2:] == ["NDEATH"])
        time.sleep(0.8)  # reconnected, but the retained STATE still says offline: no birth
        assert [m.type for m in decoded(sub)] == ["NBIRTH", "DBIRTH", "NDEATH"]
        say(False, 1500)  # an older STATE is ignored
        say(True, 3000)
        msgs = wait_types(sub, lambda ms: [m.type for m in ms][3:] == ["NBIRTH", "DBIRTH"])
        assert msgs[3].metrics["bdSeq"] == (bdseq + 1) % 256 and msgs[3].seq == 0
        pub.publish(verdict(1, "defect"))
        msgs = wait_types(sub, lambda ms: ms[-1].type == "DDATA")
        assert msgs[-1].metrics["frame"] == 1
    finally:
        pub.close()
        mqtt_publish.single(state_topic, b"", retain=True, hostname=mosquitto.host, port=mosquitto.port)
