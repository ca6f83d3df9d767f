"""ZeroMQ PUB sink: multipart ``[topic, json]``, topic frame = the MQTT verdict topic.

Why PUB and NOBLOCK: local consumers (a PLC gateway, a line HMI) subscribe by topic prefix with
no broker in between; a slow or stuck subscriber must never stall inspection, so a send that
would block (HWM reached) is dropped and counted in ``publish_failures_total{sink="zmq"}``.
A plain PUB socket drops silently at the HWM, which would make the loss invisible, so the socket
sets ``XPUB_NODROP``: the send then fails with EAGAIN, which we count. The price: while one
subscriber is stuck at its HWM, that message is dropped for all subscribers (and counted).
Delivery is best effort by design: PUB drops messages for subscribers that are not connected
yet (the "slow joiner"); use MQTT where every verdict must arrive.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

import zmq

from edge_inspector.messages import Verdict
from edge_inspector.publishers.base import PublisherError
from edge_inspector.publishers.config import ZmqConfig

if TYPE_CHECKING:
    from edge_inspector.metrics import Metrics

log = logging.getLogger(__name__)


class ZmqPublisher:
    """A PUB socket owned by this publisher (own context, so close() cannot hang other sockets)."""

    name = "zmq"

    def __init__(self, cfg: ZmqConfig, *, line: str, metrics: Metrics) -> None:
        from edge_inspector.publishers import verdict_topic

        self._topic = verdict_topic
        self.cfg = cfg
        self.line = line
        self.metrics = metrics
        self._lock = threading.Lock()  # zmq sockets are not thread-safe
        #: The publisher's own context: ``inproc://`` consumers must create their sockets from it.
        self.context = self._ctx = zmq.Context()
        self._sock: zmq.Socket | None = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, cfg.sndhwm)
        self._sock.setsockopt(zmq.XPUB_NODROP, 1)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            if cfg.bind:
                self._sock.bind(cfg.endpoint)
            else:
                self._sock.connect(cfg.endpoint)
        except zmq.ZMQError as exc:
            self._sock.close(0)
            self._ctx.term()
            verb = "bind" if cfg.bind else "connect to"
            raise PublisherError(f"zmq publisher: cannot {verb} endpoint {cfg.endpoint!r}: {exc}") from exc
        #: The endpoint actually bound (resolves tcp://host:* to the chosen port).
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT) if cfg.bind else cfg.endpoint

    def publish(self, verdict: Verdict) -> None:
        """Send [topic, json] without blocking; a full HWM or socket error counts a failure."""
        frames = [
            self._topic(self.cfg.topic_prefix, verdict.line or self.line, verdict.camera).encode(),
            verdict.to_json().encode(),
        ]
        start = time.perf_counter()
        with self._lock:
            if self._sock is None:
                self.metrics.publish_failures_total.labels(sink=self.name).inc()
                return
            try:
                self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
            except zmq.Again:
                self.metrics.publish_failures_total.labels(sink=self.name).inc()
                log.debug("zmq publisher: HWM reached on %s, verdict %s/%s dropped", self.endpoint,
                          verdict.camera, verdict.frame)
            except zmq.ZMQError as exc:
                self.metrics.publish_failures_total.labels(sink=self.name).inc()
                log.error("zmq publisher: send on %s failed: %s", self.endpoint, exc)
        self.metrics.publish_seconds.labels(sink=self.name).observe(time.perf_counter() - start)

    def publish_event(self, kind: str, line: str, camera: str, payload: str) -> None:
        """Operations messages (drift ``alarm``, ``shadow`` verdicts) as [<prefix>/<line>/<camera>/<kind>, json]."""
        frames = [f"{self.cfg.topic_prefix}/{line}/{camera}/{kind}".encode(), payload.encode()]
        with self._lock:
            if self._sock is None:
                self.metrics.publish_failures_total.labels(sink=self.name).inc()
                return
            try:
                self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # zmq.Again (HWM) included
                self.metrics.publish_failures_total.labels(sink=self.name).inc()
                log.debug("zmq publisher: %s message for %s dropped: %s", kind, camera, exc)

    def close(self, timeout: float = 10.0) -> None:
        """Let queued messages go out for up to ``timeout`` s, then close. Idempotent."""
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is None:
            return
        sock.close(linger=int(max(timeout, 0) * 1000))
        self._ctx.term()
