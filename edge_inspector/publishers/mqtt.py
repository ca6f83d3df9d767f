"""MQTT publisher: every verdict through a disk spool, delivered in order, removed after PUBACK.

Delivery guarantee: **at-least-once**. ``publish()`` appends the verdict to the fsync'd spool
(:mod:`edge_inspector.publishers.spool`) and returns; a sender thread hands spool entries to paho
in ``seq`` order (at most ``max_inflight`` unacknowledged) and deletes an entry only when the
broker's PUBACK (QoS 1) or PUBCOMP (QoS 2) arrives in ``on_publish``. While the broker is down the
spool grows (``edge_inspector_spool_messages``); when it returns, paho retransmits the unacknowledged
in-flight messages and the sender continues from the spool, so per-camera order is kept. A daemon
restarted during an outage finds the old entries in the spool and delivers them before new ones.
A crash between the broker receiving a message and us deleting it causes a duplicate, so
**consumers must dedupe on (camera, frame)** (see :mod:`edge_inspector.messages`).

The only loss is deliberate and visible: a full spool (``spool_max_messages``) applies
``spool_overflow`` ("drop-oldest" or "drop-newest"), counted in ``spool_dropped_total{policy}``
and ``publish_failures_total{sink="mqtt"}`` and logged.

Status: last will ``offline`` (retained, QoS 1) on ``<prefix>/<line>/status``; retained ``online``
after each successful CONNACK; retained ``offline`` on a clean ``close()``.

Reload hand-over: the spool directory is locked by one process, so a reload that changes the MQTT
settings (new password, broker, QoS) while keeping ``spool_dir`` cannot open it a second time.
Instead, a publisher created in the same process for a ``spool_dir`` that a live publisher holds
becomes its *successor*: it shares the open spool (its ``publish()`` appends right away and the
old sender delivers), and it connects only when the old one is closed. The old one then hands
nothing new to paho, waits briefly for the acks of what it has in flight (``HANDOVER_ACK_WAIT_S``),
stops without draining the spool and without publishing ``offline`` (the daemon stays online), and
hands the spool over; what is still unacknowledged is resent by the successor (at-least-once, in
order).
If the successor is closed first (the reload was refused), the old publisher simply continues.

Connection: built by :func:`edge_inspector.publishers.mqtt_client.make_client` (login, TLS, will),
in the background (``connect_async`` + ``loop_start``) with exponential backoff
(``reconnect_min_delay`` doubling to ``reconnect_max_delay``, 10 s by default), retried whatever the
error; a failed attempt is logged with its cause (TLS verification, DNS, refused...).
``broker_connected`` is 1 only after a successful CONNACK (a refused connection, e.g. bad credentials,
stays 0 and logs the broker's reason code), and drops to 0 in ``on_disconnect``.
"""

from __future__ import annotations

import collections
import logging
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from edge_inspector.messages import Verdict
from edge_inspector.publishers.base import PublisherError
from edge_inspector.publishers.config import MqttConfig
from edge_inspector.publishers.mqtt_client import Will, make_client
from edge_inspector.publishers.mqtt_client import start as start_client
from edge_inspector.publishers.spool import Spool
from edge_inspector.publishers.topics import camera_topic, status_topic, verdict_topic

if TYPE_CHECKING:
    from edge_inspector.metrics import Metrics

log = logging.getLogger(__name__)

_OWNERS_LOCK = threading.Lock()
#: spool directory (resolved) -> the publisher of this process that holds its spool.
_OWNERS: dict[Path, MqttPublisher] = {}

#: How long ``close()`` waits for a broker that is not connected before leaving the spool as is.
CLOSE_RECONNECT_GRACE_S = 2.0
#: On a reload, how long the successor waits after our DISCONNECT left before it connects with the
#: same client id. A broker that reads the successor's CONNECT before our DISCONNECT (both sockets
#: ready in one poll round) treats it as a session takeover and publishes our will, ``offline``.
#: Seen in 1 of 12 looped runs of the reload test against Mosquitto 2.0; verdicts published
#: meanwhile are spooled, so the pause costs nothing.
RELOAD_SETTLE_S = 0.2
#: On a reload, how long we wait for the broker's acks of what we have in flight before our DISCONNECT.
#: A QoS 1 PUBLISH the broker reads after our socket closed fails its PUBACK write, and Mosquitto
#: (2.0, up to 2.0.21: "disconnected due to out of memory") then drops us as an error and publishes
#: our will, ``offline``, never reading the DISCONNECT behind it. Seen in 1 of 10 looped runs of the
#: reload test on two loaded cores. What is still unacknowledged then is resent by the successor.
HANDOVER_ACK_WAIT_S = 2.0


class MqttPublisher:
    """Spooling MQTT sink; see the module docstring for the delivery guarantee."""

    name = "mqtt"

    def __init__(self, cfg: MqttConfig, *, line: str, metrics: Metrics) -> None:
        self.cfg = cfg
        self.line = line
        self.metrics = metrics
        self.status_topic = status_topic(cfg.topic_prefix, line)
        self.client_id = cfg.client_id or f"edge-inspector-{line}-{socket.gethostname()}"

        self._spool_key = Path(cfg.spool_dir).resolve()
        self._successor: MqttPublisher | None = None
        self._predecessor: MqttPublisher | None = None
        self._started = False

        self._connected = threading.Event()
        self._wake = threading.Event()
        self._acks: collections.deque[int] = collections.deque()
        self._closing = False
        self._closed = False
        self._stop_sender = False
        self._quiesce = False  # a reload: hand nothing new to paho (``close``)
        self._quiet = threading.Event()  # set by the sender once nothing it handed is unacknowledged
        self._drops_logged_at = 0.0
        self._drops_since_log = 0
        self._append_logged_at = -1e9
        self._append_failures = 0
        self._left_at_close = 0

        client = make_client(cfg, client_id=self.client_id, who="mqtt", metrics=metrics,
                             will=Will(self.status_topic, "offline", qos=1, retain=True))
        # Room for our own window plus the status messages; the spool bounds memory, not paho.
        client.max_inflight_messages_set(cfg.max_inflight + 4)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self._client = client
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)

        with _OWNERS_LOCK:
            owner = _OWNERS.get(self._spool_key)
            if owner is not None:
                if owner._successor is not None:
                    raise PublisherError(
                        f"mqtt.spool_dir {cfg.spool_dir}: already being handed over to another publisher"
                    )
                self.spool = owner.spool
                owner._successor = self
                self._predecessor = owner
                log.info("mqtt spool %s: new publisher waits for the current one to close (reload)", cfg.spool_dir)
                return
            self.spool = Spool(cfg.spool_dir, cfg.spool_max_messages, cfg.spool_overflow)
            _OWNERS[self._spool_key] = self
        if len(self.spool):
            log.info("mqtt spool %s holds %d undelivered verdicts from a previous run; delivering them first",
                     cfg.spool_dir, len(self.spool))
        try:
            self._start()
        except PublisherError:
            with _OWNERS_LOCK:
                _OWNERS.pop(self._spool_key, None)
            self.spool.close()
            raise

    def _start(self) -> None:
        """Connect in the background and start the sender (once this publisher owns the spool)."""
        self.spool.max_messages = self.cfg.spool_max_messages
        self.spool.overflow = self.cfg.spool_overflow
        self.metrics.spool_messages.set(len(self.spool))
        self.metrics.broker_connected.set(0)
        start_client(self._client, self.cfg, "mqtt")
        self._sender.start()
        self._started = True
        self._predecessor = None

    # ----------------------------------------------------------------- pipeline side
    def publish(self, verdict: Verdict) -> None:
        """Append the verdict to the durable spool and wake the sender; never waits for the broker."""
        start = time.perf_counter()
        if self._closing:
            self.metrics.publish_failures_total.labels(sink=self.name).inc()
            log.error("mqtt publisher is closed; verdict %s/%s not spooled", verdict.camera, verdict.frame)
            return
        topic = verdict_topic(self.cfg.topic_prefix, verdict.line or self.line, verdict.camera)
        try:
            result = self.spool.append(topic, verdict.to_json().encode())
        except (sqlite3.Error, OSError, PublisherError) as exc:
            self.metrics.publish_failures_total.labels(sink=self.name).inc()
            self._append_failures += 1  # a full disk fails every verdict: one ERROR per 10 s, with the count
            now = time.monotonic()
            if now - self._append_logged_at >= 10.0:
                log.error("mqtt spool %s: cannot append verdict %s/%s: %s (%d failure(s) since the last message)",
                          self.cfg.spool_dir, verdict.camera, verdict.frame, exc, self._append_failures)
                self._append_logged_at, self._append_failures = now, 0
            return
        if result.dropped:
            self._count_drops(result.dropped)
        self.metrics.spool_messages.set(len(self.spool))
        predecessor = self._predecessor
        (predecessor._wake if predecessor is not None and not self._started else self._wake).set()
        self.metrics.publish_seconds.labels(sink=self.name).observe(time.perf_counter() - start)

    def publish_event(self, kind: str, line: str, camera: str, payload: str) -> None:
        """Spool an operations message (``kind``: 'alarm', 'shadow') on ``<prefix>/<line>/<camera>/<kind>``.

        Same durable path as verdicts: a drift alarm raised while the broker is away is delivered later.
        """
        if self._closing:
            self.metrics.publish_failures_total.labels(sink=self.name).inc()
            return
        try:
            result = self.spool.append(camera_topic(self.cfg.topic_prefix, line, camera, kind), payload.encode())
        except (sqlite3.Error, OSError, PublisherError) as exc:
            self.metrics.publish_failures_total.labels(sink=self.name).inc()
            log.error("mqtt spool %s: cannot append %s message for %s: %s", self.cfg.spool_dir, kind, camera, exc)
            return
        if result.dropped:
            self._count_drops(result.dropped)
        self.metrics.spool_messages.set(len(self.spool))
        predecessor = self._predecessor
        (predecessor._wake if predecessor is not None and not self._started else self._wake).set()

    def _count_drops(self, n: int) -> None:
        policy = self.cfg.spool_overflow
        self.metrics.spool_dropped_total.labels(policy=policy).inc(n)
        self.metrics.publish_failures_total.labels(sink=self.name).inc(n)
        self._drops_since_log += n
        now = time.monotonic()
        if now - self._drops_logged_at >= 10.0:
            which = "oldest spooled" if policy == "drop-oldest" else "newest"
            log.warning(
                "mqtt spool %s full (spool_max_messages=%d, spool_overflow=%s): %d %s verdict(s) dropped",
                self.cfg.spool_dir, self.cfg.spool_max_messages, policy, self._drops_since_log, which,
            )
            self._drops_logged_at = now
            self._drops_since_log = 0

    # ----------------------------------------------------------------- paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._connected.clear()
            self.metrics.broker_connected.set(0)
            log.error("mqtt broker %s:%d refused the connection: %s", self.cfg.host, self.cfg.port, reason_code)
            return
        log.info("mqtt connected to %s:%d as %s", self.cfg.host, self.cfg.port, self.client_id)
        client.publish(self.status_topic, "online", qos=1, retain=True)
        self.metrics.broker_connected.set(1)
        self._connected.set()
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self.metrics.broker_connected.set(0)
        if was and not self._closing:
            log.warning("mqtt disconnected from %s:%d (%s); spooling until it returns", self.cfg.host,
                        self.cfg.port, reason_code)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        # Called under paho's message lock: only record the mid; the sender thread does the rest.
        self._acks.append(mid)
        self._wake.set()

    # ----------------------------------------------------------------- sender thread
    def _send_loop(self) -> None:
        inflight: dict[int, int] = {}  # paho mid -> spool seq
        last_handed = 0  # highest seq handed to paho; paho itself retransmits what it holds
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            self._apply_acks(inflight)
            if self._stop_sender:
                return
            if self._quiesce:
                if not inflight:
                    self._quiet.set()
                continue
            if not self._connected.is_set():
                continue
            room = self.cfg.max_inflight - len(inflight)
            if room <= 0:
                continue
            try:
                entries = self.spool.read_after(last_handed, room)
            except (sqlite3.Error, PublisherError) as exc:
                log.error("mqtt spool %s: read failed: %s", self.cfg.spool_dir, exc)
                time.sleep(1.0)
                continue
            for entry in entries:
                try:
                    info = self._client.publish(entry.topic, entry.payload, qos=self.cfg.qos)
                except ValueError as exc:  # e.g. payload too large: would block the head forever
                    log.error("mqtt: verdict seq %d on %s cannot be published and is discarded: %s",
                              entry.seq, entry.topic, exc)
                    self.metrics.publish_failures_total.labels(sink=self.name).inc()
                    self.spool.remove([entry.seq])
                    last_handed = entry.seq
                    continue
                if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
                    log.warning("mqtt: paho refused seq %d (%s); retrying", entry.seq, mqtt.error_string(info.rc))
                    self.metrics.publish_failures_total.labels(sink=self.name).inc()
                    break
                # NO_CONN: paho keeps QoS>0 messages queued and sends them after reconnecting.
                inflight[info.mid] = entry.seq
                last_handed = entry.seq
            if len(entries) == room:
                self._wake.set()  # more waiting: come back as soon as acks make room

    def _apply_acks(self, inflight: dict[int, int]) -> None:
        seqs = []
        while self._acks:
            seq = inflight.pop(self._acks.popleft(), None)
            if seq is not None:  # status messages are not spooled
                seqs.append(seq)
        if not seqs:
            return
        try:
            self.spool.remove(seqs)
        except (sqlite3.Error, PublisherError) as exc:
            # The entries stay and are sent again after a restart: a duplicate, not a loss.
            log.error("mqtt spool %s: cannot remove acknowledged entries: %s", self.cfg.spool_dir, exc)
        self.metrics.spool_messages.set(len(self.spool))

    # ----------------------------------------------------------------- shutdown
    @property
    def connected(self) -> bool:
        """True after a successful CONNACK until the next disconnect."""
        return self._connected.is_set()

    def wait_delivered(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the spool to empty, connected or not (a replay's end: the broker
        may come back). Returns the messages still undelivered; logs progress every 5 s."""
        deadline = time.monotonic() + max(timeout, 0.0)
        next_log = time.monotonic() + 5.0
        self._wake.set()
        while len(self.spool) and time.monotonic() < deadline:
            if time.monotonic() >= next_log:
                log.info("mqtt: waiting for broker %s:%d to take %d verdict(s) (%s, %.0f s left)", self.cfg.host,
                         self.cfg.port, len(self.spool), "connected" if self.connected else "not connected",
                         deadline - time.monotonic())
                next_log += 5.0
            time.sleep(0.05)
        return len(self.spool)

    def undelivered(self) -> int:
        """Messages not acknowledged by the broker: in the spool now, or left in it by ``close()``."""
        if self._closed:
            return self._left_at_close
        return len(self.spool)

    def close(self, timeout: float = 10.0) -> None:
        """Drain the spool while the broker is reachable (up to ``timeout``), say ``offline``, disconnect.

        Whatever is not acknowledged by then stays in the spool for the next start. With a
        successor (reload), hand the spool over at once instead. Idempotent.
        """
        if self._closed:
            return
        self._closing = True
        with _OWNERS_LOCK:
            successor = self._successor
            self._successor = None
            if not self._started:  # a successor that never took over: just withdraw
                owner = _OWNERS.get(self._spool_key)
                if owner is not None and owner._successor is self:
                    owner._successor = None
                self._closed = True
                return
            if successor is not None:
                _OWNERS[self._spool_key] = successor
            elif _OWNERS.get(self._spool_key) is self:
                del _OWNERS[self._spool_key]
        if successor is None:
            self._drain(timeout)
        elif self._connected.is_set() and self._sender.is_alive():
            self._quiesce = True  # let the broker ack what is in flight (HANDOVER_ACK_WAIT_S says why)
            self._wake.set()
            if not self._quiet.wait(HANDOVER_ACK_WAIT_S):
                log.info("mqtt: reload with verdicts still unacknowledged; the reloaded publisher resends them")
        self._stop_sender = True
        self._wake.set()
        self._sender.join(timeout=5)
        if successor is None and self._connected.is_set():
            try:
                info = self._client.publish(self.status_topic, "offline", qos=1, retain=True)
                info.wait_for_publish(timeout=max(0.1, min(2.0, timeout)))
            except (RuntimeError, ValueError) as exc:
                log.warning("mqtt: could not publish offline status: %s", exc)
        self._client.disconnect()
        # Let the network thread send DISCONNECT before it stops: a socket that just closes makes the
        # broker publish our will ("offline"), and a successor with the same client id taking over
        # the session does the same -- a reload must not tell the line the daemon went away.
        deadline = time.monotonic() + 2.0
        while self._connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        self._client.loop_stop()
        self._connected.clear()
        self._closed = True
        if successor is not None:
            log.info("mqtt spool %s handed over to the reloaded publisher", self.cfg.spool_dir)
            time.sleep(RELOAD_SETTLE_S)
            successor._start()
            return
        self.metrics.broker_connected.set(0)
        self._left_at_close = len(self.spool)
        self.metrics.spool_messages.set(self._left_at_close)
        self.spool.close()

    def _drain(self, timeout: float) -> None:
        deadline = time.monotonic() + max(timeout, 0.0)
        grace_end = time.monotonic() + min(max(timeout, 0.0), CLOSE_RECONNECT_GRACE_S)
        self._wake.set()
        while len(self.spool) and time.monotonic() < deadline:
            if not self._connected.is_set() and time.monotonic() >= grace_end:
                break
            time.sleep(0.02)
        left = len(self.spool)
        if left:
            log.warning("mqtt closing with %d verdict(s) left in spool %s; they are delivered at the next start",
                        left, self.cfg.spool_dir)
