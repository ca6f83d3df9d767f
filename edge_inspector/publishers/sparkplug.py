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
* a clean close publishes ``NDEATH`` itself; a crash leaves it to the broker's will.

Verdicts arriving while disconnected are counted as failures and not queued: a Sparkplug host wants
the current state, which the births after reconnecting carry.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_inspector.messages import Verdict
from edge_inspector.publishers.base import PublisherError
from edge_inspector.publishers.config import SparkplugConfig
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


class SparkplugPublisher:
    name = "sparkplug"

    def __init__(self, cfg: SparkplugConfig, *, line: str, metrics: Metrics) -> None:
        self.cfg, self.line, self.metrics = cfg, line, metrics
        self.group, self.node = cfg.group_id, cfg.edge_node_id or line
        self._lock = threading.RLock()
        self._seq = 0
        self._bdseq = self._load_bdseq()
        self._state: dict[str, dict[str, Any]] = {}  # camera -> last metric values
        self._born: set[str] = set()  # devices with a DBIRTH in this session
        self._connected = threading.Event()
        self._closed = False
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id or f"edge-inspector-spb-{line}",
                             clean_session=True, protocol=mqtt.MQTTv311)
        if cfg.username is not None or cfg.password_file is not None:
            password = None
            if cfg.password_file is not None:
                try:
                    password = cfg.password_file.read_text(encoding="utf-8").rstrip("\r\n")
                except OSError as exc:
                    raise PublisherError(f"sparkplug.password_file {cfg.password_file}: cannot read: {exc}") from exc
            client.username_pw_set(cfg.username or "", password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.reconnect_delay_set(1, 30)
        self._client = client
        self._set_will()
        self._save_bdseq()
        try:
            client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        except (OSError, ValueError) as exc:
            raise PublisherError(f"sparkplug: cannot start connecting to {cfg.host}:{cfg.port}: {exc}") from exc
        client.loop_start()

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
        p = Payload(timestamp=now_ms())
        add_metric(p, "bdSeq", UINT64, self._bdseq)
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
        client.subscribe(topic(self.group, "NCMD", self.node), qos=0)
        self._births()
        self._connected.set()

    def _births(self) -> None:
        """NBIRTH (seq 0) then a DBIRTH per known camera, under the lock so no DDATA slips between."""
        with self._lock:
            self._seq = 0
            p = Payload(timestamp=now_ms(), seq=self._next_seq())
            add_metric(p, "bdSeq", UINT64, self._bdseq)
            add_metric(p, REBIRTH, BOOLEAN, False)
            add_metric(p, "Properties/line", STRING, self.line)
            self._client.publish(topic(self.group, "NBIRTH", self.node), p.SerializeToString(), qos=0)
            self._born.clear()
            for camera in list(self._state):
                self._device_birth(camera)

    def _device_birth(self, camera: str) -> None:
        p = Payload(timestamp=now_ms(), seq=self._next_seq())
        values = self._state[camera]
        for name, datatype in DEVICE_METRICS.items():
            add_metric(p, name, datatype, values.get(name))
        self._client.publish(topic(self.group, "DBIRTH", self.node, camera), p.SerializeToString(), qos=0)
        self._born.add(camera)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        self._connected.clear()
        if self._closed:
            return
        with self._lock:  # the next session needs a new bdSeq, and its will must carry it
            self._bdseq = (self._bdseq + 1) % 256
            self._set_will()
            self._save_bdseq()
        log.warning("sparkplug: disconnected from %s:%d (%s); reconnecting", self.cfg.host, self.cfg.port, reason_code)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            payload = Payload.FromString(msg.payload)
        except Exception:  # noqa: BLE001 - a malformed command from the network must not kill the loop
            log.warning("sparkplug: undecodable NCMD on %s ignored", msg.topic)
            return
        if any(m.name == REBIRTH and metric_value(m) is True for m in payload.metrics):
            log.info("sparkplug: rebirth requested")
            self._births()

    # -- pipeline side --------------------------------------------------------------------------
    def _send(self, camera: str, values: dict[str, Any]) -> None:
        with self._lock:
            state = self._state.setdefault(camera, {})
            state.update(values)
            if not self._connected.is_set():
                self.metrics.publish_failures_total.labels(sink=self.name).inc()
                return
            if camera not in self._born:
                self._device_birth(camera)
                return
            p = Payload(timestamp=now_ms(), seq=self._next_seq())
            for name, value in values.items():
                add_metric(p, name, DEVICE_METRICS[name], value)
            self._client.publish(topic(self.group, "DDATA", self.node, camera), p.SerializeToString(), qos=0)

    def publish(self, verdict: Verdict) -> None:
        start = time.perf_counter()
        self._send(verdict.camera, {
            "verdict": verdict.verdict, "score": verdict.score, "frame": verdict.frame,
            "defect": verdict.verdict == "defect", "defect_type": verdict.defect_type,
            "latency_ms": verdict.latency_ms.get("total"),
        })
        self.metrics.publish_seconds.labels(sink=self.name).observe(time.perf_counter() - start)

    def publish_event(self, kind: str, line: str, camera: str, payload: str) -> None:
        """Drift alarms become ``drift_alarm`` DDATA; other events have no Sparkplug metric."""
        if kind == "alarm":
            self._send(camera, {"drift_alarm": bool(json.loads(payload).get("active"))})

    def close(self, timeout: float = 10.0) -> None:
        """Publish NDEATH ourselves (a clean stop is not a crash), then disconnect. Idempotent."""
        if self._closed:
            return
        with self._lock:
            self._closed = True
            if self._connected.is_set():
                info = self._client.publish(topic(self.group, "NDEATH", self.node), self._death_payload(), qos=1)
                try:
                    info.wait_for_publish(timeout)
                except (RuntimeError, ValueError) as exc:
                    log.warning("sparkplug: NDEATH not confirmed: %s", exc)
        self._client.disconnect()
        self._client.loop_stop()
