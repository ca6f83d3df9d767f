"""Sparkplug B publisher: the daemon as a Sparkplug edge node, one device per camera.

Why a separate publisher and not a flag on the MQTT one: Sparkplug is a *state* protocol with its
own session rules, while the MQTT publisher is a durable verdict log. Here:

* the node registers ``NDEATH`` (with the session's ``bdSeq``) as its MQTT will, then publishes
  ``NBIRTH`` (``seq`` 0, metrics ``bdSeq``, ``Node Control/Rebirth``, ``Properties/line``);
* each camera is a device: ``DBIRTH`` with every metric the first time it has a verdict (and after
  every NBIRTH), then ``DDATA`` per verdict; drift alarms are ``DDATA`` of ``drift_alarm``;
* ``seq`` counts every node message after NBIRTH, 0-255 then wraps; ``bdSeq`` goes up by one per
  MQTT session (0-255), optionally persisted in ``bdseq_file`` so a restart does not reuse it;
* ``NCMD`` with ``Node Control/Rebirth`` = true makes the node re-publish its births (the way a
  primary host asks for the full state);
* a clean close publishes ``NDEATH`` itself; a crash leaves it to the broker's will;
* every metric carries a timestamp (a MUST in Sparkplug 3.0): a verdict's metrics carry the frame's
  capture time (``captured_at``), node metrics and births the time they were published;
* with ``primary_host_id``, the node follows the primary host application's retained
  ``spBv1.0/STATE/<id>`` (``{"online": bool, "timestamp": ms}``): births only while it is online;
  when it goes offline the node publishes NDEATH, ends the session and reconnects with the next
  bdSeq, waiting for the host before its next NBIRTH (what Ignition-style hosts expect);
* connection, login, TLS and backoff come from the shared factory
  (:mod:`edge_inspector.publishers.mqtt_client`), so a plant broker on 8883 works as for verdicts.

Verdicts arriving while disconnected are counted as failures and not queued: a Sparkplug host wants
the current state, which the births after reconnecting carry.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt

from edge_inspector.messages import Verdict
from edge_inspector.publishers.base import PublisherError
from edge_inspector.publishers.config import SparkplugConfig
from edge_inspector.publishers.mqtt_client import make_client
from edge_inspector.publishers.mqtt_client import start as start_client
from edge_inspector.publishers.sparkplug_pb import (
    BOOLEAN,
    DOUBLE,
    STRING,
    UINT64,
    Payload,
    add_metric,
    metric_value,
)

if TYPE_CHECKING:
    from edge_inspector.metrics import Metrics

log = logging.getLogger(__name__)
NAMESPACE = "spBv1.0"
REBIRTH = "Node Control/Rebirth"

#: Device metrics: name -> Sparkplug data type. DBIRTH declares them all, DDATA sends what changed.
DEVICE_METRICS = {"verdict": STRING, "score": DOUBLE, "frame": UINT64, "defect": BOOLEAN,
                  "defect_type": STRING, "latency_ms": DOUBLE, "drift_alarm": BOOLEAN}


def topic(group: str, message_type: str, node: str, device: str | None = None) -> str:
    """``spBv1.0/<group>/<type>/<edge node>[/<device>]``."""
    return "/".join([NAMESPACE, group, message_type, node] + ([device] if device else []))


def now_ms() -> int:
    return int(time.time() * 1000)


def iso_ms(text: str | None) -> int:
    """Milliseconds since the epoch of an ISO-8601 time (``captured_at``); now when absent or unreadable."""
    if text:
        from datetime import datetime

        try:
            t = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return now_ms()
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        return int(t.timestamp() * 1000)
    return now_ms()


def state_topic(host_id: str) -> str:
    """Sparkplug 3.0 primary host STATE topic."""
    return f"{NAMESPACE}/STATE/{host_id}"


class SparkplugPublisher:
    name = "sparkplug"

    def __init__(self, cfg: SparkplugConfig, *, line: str, metrics: Metrics) -> None:
        self.cfg, self.line, self.metrics = cfg, line, metrics
        self.group, self.node = cfg.group_id, cfg.edge_node_id or line
        self._lock = threading.RLock()
        self._seq = 0
        self._bdseq = self._load_bdseq()
        self._state: dict[str, dict[str, Any]] = {}  # camera -> last metric values
        self._stamps: dict[str, dict[str, int]] = {}  # camera -> metric -> timestamp (ms) of that value
        self._born: set[str] = set()  # devices with a DBIRTH in this session
        self._connected = threading.Event()
        self._node_born = False  # NBIRTH published in this MQTT session
        self._host_online = cfg.primary_host_id is None
        self._host_stamp = -1  # timestamp of the last primary host STATE seen
        self._closed = False
        client = make_client(cfg, client_id=cfg.client_id or f"edge-inspector-spb-{line}", who="sparkplug",
                             metrics=metrics)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._set_will()
        self._save_bdseq()
        start_client(client, cfg, "sparkplug")

    # -- bdSeq ----------------------------------------------------------------------------------
    def _load_bdseq(self) -> int:
        path = self.cfg.bdseq_file
        if path is None or not Path(path).is_file():
            return 0
        try:
            return int(Path(path).read_text().strip()) % 256
        except (OSError, ValueError) as exc:
            raise PublisherError(f"sparkplug.bdseq_file {path}: expected an integer 0-255 ({exc})") from exc

    def _save_bdseq(self) -> None:
        """Write the bdSeq the next session (or run) will use."""
        if self.cfg.bdseq_file is not None:
            path = Path(self.cfg.bdseq_file)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"{(self._bdseq + 1) % 256}\n")  # the *next* session's: a crash never reuses ours

    def _death_payload(self) -> bytes:
        t = now_ms()
        p = Payload(timestamp=t)
        add_metric(p, "bdSeq", UINT64, self._bdseq, timestamp=t)
        return p.SerializeToString()

    def _set_will(self) -> None:
        self._client.will_set(topic(self.group, "NDEATH", self.node), self._death_payload(), qos=1, retain=False)

    # -- session --------------------------------------------------------------------------------
    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        return seq

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("sparkplug: broker %s:%d refused the connection: %s", self.cfg.host, self.cfg.port, reason_code)
            return
        log.info("sparkplug: connected to %s:%d as edge node %s/%s", self.cfg.host, self.cfg.port, self.group,
                 self.node)
        client.subscribe(topic(self.group, "NCMD", self.node), qos=0)
        self._connected.set()
        if self.cfg.primary_host_id is not None:
            # The retained STATE arrives right after the subscription; births wait for "online".
            client.subscribe(state_topic(self.cfg.primary_host_id), qos=1)
            if not self._host_online:
                log.info("sparkplug: waiting for primary host %s to be online before NBIRTH",
                         self.cfg.primary_host_id)
                return
        self._births()

    def _births(self) -> None:
        """NBIRTH (seq 0) then a DBIRTH per known camera, under the lock so no DDATA slips between."""
        with self._lock:
            self._seq = 0
            t = now_ms()
            p = Payload(timestamp=t, seq=self._next_seq())
            add_metric(p, "bdSeq", UINT64, self._bdseq, timestamp=t)
            add_metric(p, REBIRTH, BOOLEAN, False, timestamp=t)
            add_metric(p, "Properties/line", STRING, self.line, timestamp=t)
            self._client.publish(topic(self.group, "NBIRTH", self.node), p.SerializeToString(), qos=0)
            self._node_born = True
            self._born.clear()
            for camera in list(self._state):
                self._device_birth(camera)

    def _device_birth(self, camera: str) -> None:
        t = now_ms()
        p = Payload(timestamp=t, seq=self._next_seq())
        values, stamps = self._state[camera], self._stamps.get(camera, {})
        for name, datatype in DEVICE_METRICS.items():
            add_metric(p, name, datatype, values.get(name), timestamp=stamps.get(name, t))
        self._client.publish(topic(self.group, "DBIRTH", self.node, camera), p.SerializeToString(), qos=0)
        self._born.add(camera)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self._connected.clear()
        self._node_born = False
        if self._closed:
            return
        with self._lock:  # the next session needs a new bdSeq, and its will must carry it
            self._bdseq = (self._bdseq + 1) % 256
            self._set_will()
            self._save_bdseq()
        log.warning("sparkplug: disconnected from %s:%d (%s); reconnecting", self.cfg.host, self.cfg.port, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if self.cfg.primary_host_id is not None and msg.topic == state_topic(self.cfg.primary_host_id):
            self._on_state(msg.payload)
            return
        try:
            payload = Payload.FromString(msg.payload)
        except Exception:  # noqa: BLE001 - a malformed command from the network must not kill the loop
            log.warning("sparkplug: undecodable NCMD on %s ignored", msg.topic)
            return
        if any(m.name == REBIRTH and metric_value(m) is True for m in payload.metrics):
            if not self._host_online:
                log.info("sparkplug: rebirth requested while the primary host is offline; waiting for it")
                return
            log.info("sparkplug: rebirth requested")
            self._births()

    def _on_state(self, raw: bytes) -> None:
        """Primary host STATE (Sparkplug 3.0 JSON): births on online, end of session on offline."""
        try:
            data = json.loads(raw)
            online, stamp = data["online"], int(data.get("timestamp", 0))
            if not isinstance(online, bool):
                raise ValueError("online must be true or false")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("sparkplug: ignoring STATE of %s: expected {\"online\": bool, \"timestamp\": ms} (%s)",
                        self.cfg.primary_host_id, exc)
            return
        if stamp < self._host_stamp:
            return  # an older STATE than one already seen (spec: ignore)
        self._host_stamp = stamp
        was, self._host_online = self._host_online, online
        if online and not self._node_born:
            log.info("sparkplug: primary host %s online; publishing births", self.cfg.primary_host_id)
            self._births()
        elif not online and was and self._node_born:
            log.warning("sparkplug: primary host %s went offline; ending the session (NDEATH) and reconnecting",
                        self.cfg.primary_host_id)
            with self._lock:
                info = self._client.publish(topic(self.group, "NDEATH", self.node), self._death_payload(), qos=1)
                self._node_born = False
            threading.Thread(target=self._new_session, args=(info,), name="sparkplug-session", daemon=True).start()

    def _new_session(self, death: mqtt.MQTTMessageInfo) -> None:
        """Once NDEATH is acknowledged, disconnect (on_disconnect moves bdSeq on and re-arms the will), then
        connect again; an unacknowledged NDEATH would otherwise be resent in the next session."""
        try:
            death.wait_for_publish(timeout=5.0)
        except (RuntimeError, ValueError) as exc:
            log.warning("sparkplug: NDEATH not confirmed before ending the session: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
        if not self._closed:
            start_client(self._client, self.cfg, "sparkplug")

    # -- pipeline side --------------------------------------------------------------------------
    def _send(self, camera: str, values: dict[str, Any], stamp: int) -> None:
        with self._lock:
            self._state.setdefault(camera, {}).update(values)
            self._stamps.setdefault(camera, {}).update(dict.fromkeys(values, stamp))
            if not self._connected.is_set() or not self._node_born:
                self.metrics.publish_failures_total.labels(sink=self.name).inc()
                return
            if camera not in self._born:
                self._device_birth(camera)
                return
            p = Payload(timestamp=now_ms(), seq=self._next_seq())
            for name, value in values.items():
                add_metric(p, name, DEVICE_METRICS[name], value, timestamp=stamp, with_datatype=False)
            self._client.publish(topic(self.group, "DDATA", self.node, camera), p.SerializeToString(), qos=0)

    def publish(self, verdict: Verdict) -> None:
        start = time.perf_counter()
        self._send(verdict.camera, {
            "verdict": verdict.verdict, "score": verdict.score, "frame": verdict.frame,
            "defect": verdict.verdict == "defect", "defect_type": verdict.defect_type,
            "latency_ms": verdict.latency_ms.get("total"),
        }, iso_ms(verdict.captured_at))
        self.metrics.publish_seconds.labels(sink=self.name).observe(time.perf_counter() - start)

    def publish_event(self, kind: str, line: str, camera: str, payload: str) -> None:
        """Drift alarms become ``drift_alarm`` DDATA; other events have no Sparkplug metric."""
        if kind == "alarm":
            self._send(camera, {"drift_alarm": bool(json.loads(payload).get("active"))}, now_ms())

    def close(self, timeout: float = 10.0) -> None:
        """Publish NDEATH ourselves (a clean stop is not a crash), then disconnect. Idempotent."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
            if self._connected.is_set() and self._node_born:
                info = self._client.publish(topic(self.group, "NDEATH", self.node), self._death_payload(), qos=1)
                try:
                    info.wait_for_publish(timeout)
                except (RuntimeError, ValueError) as exc:
                    log.warning("sparkplug: NDEATH not confirmed: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
