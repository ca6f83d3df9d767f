"""ZeroMQ PUB sink: multipart ``[topic, json]``, topic frame = the MQTT verdict topic.

Why PUB and NOBLOCK: local consumers (a PLC gateway, a line HMI) subscribe by topic prefix with
no broker in between; a slow or stuck subscriber must never stall inspection, so a send that
would block is dropped. ``slow_subscriber`` chooses what a stuck subscriber costs:

* ``count`` (default): the socket sets ``XPUB_NODROP``, so a send to a subscriber at its HWM fails
  with EAGAIN, which we count in ``publish_failures_total{sink="zmq"}``. The price: while one
  subscriber is stuck at its HWM, that message is dropped for all subscribers (and counted).
* ``isolate``: plain PUB semantics: only the stuck subscriber loses messages, the others get every
  one; libzmq gives no way to count those per-subscriber drops.

Slow joiner: PUB drops messages for subscribers that are not connected yet. A subscriber waiting for
the daemon reconnects within ZeroMQ's 100 ms reconnect interval once the port is bound, so verdicts
of the first ``join_grace_ms`` after binding are held and sent when that time is up (counted like
any other send). Delivery stays best effort; use MQTT where every verdict must arrive.

Authentication: with ``curve_secret_key_file`` the socket is a CurveZMQ server (encrypted; a
subscriber must know our public key, so a process that squats the port cannot pass for us), and with
``curve_clients_dir`` only the listed subscriber keys are accepted (a ZAP authenticator thread).
Without it, any local process can subscribe, or bind the port first; binding every interface
(``tcp://*``, ``0.0.0.0``) without CurveZMQ is logged as a warning.
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
from edge_inspector.publishers.topics import camera_topic, verdict_topic

if TYPE_CHECKING:
    from edge_inspector.metrics import Metrics

log = logging.getLogger(__name__)


class ZmqPublisher:
    """A PUB socket owned by this publisher (own context, so close() cannot hang other sockets)."""

    name = "zmq"

    def __init__(self, cfg: ZmqConfig, *, line: str, metrics: Metrics) -> None:
        self.cfg = cfg
        self.line = line
        self.metrics = metrics
        self._lock = threading.Lock()  # zmq sockets are not thread-safe
        #: The publisher's own context: ``inproc://`` consumers must create their sockets from it.
        self.context = self._ctx = zmq.Context()
        self._auth = None
        self._sock: zmq.Socket | None = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.SNDHWM, cfg.sndhwm)
        if cfg.slow_subscriber == "count":
            self._sock.setsockopt(zmq.XPUB_NODROP, 1)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            self._setup_curve()
            if cfg.bind:
                self._sock.bind(cfg.endpoint)
            else:
                self._sock.connect(cfg.endpoint)
        except (zmq.ZMQError, PublisherError) as exc:
            self._sock.close(0)
            if self._auth is not None:
                self._auth.stop()
            self._ctx.term()
            if isinstance(exc, PublisherError):
                raise
            verb = "bind" if cfg.bind else "connect to"
            raise PublisherError(f"zmq publisher: cannot {verb} endpoint {cfg.endpoint!r}: {exc}") from exc
        #: The endpoint actually bound (resolves tcp://host:* to the chosen port).
        self.endpoint: str = self._sock.getsockopt_string(zmq.LAST_ENDPOINT) if cfg.bind else cfg.endpoint
        if cfg.bind and cfg.curve_secret_key_file is None and any(
                h in cfg.endpoint for h in ("://*", "://0.0.0.0", "://[::]", "://::")):
            log.warning("zmq publisher binds %s on every interface without CurveZMQ: anyone on the network can "
                        "subscribe (set curve_secret_key_file, or bind 127.0.0.1)", cfg.endpoint)
        # slow joiner: hold what is published in the first join_grace_ms, then send it
        self._held: list[list[bytes]] | None = [] if cfg.join_grace_ms > 0 else None
        self._release_at = time.monotonic() + cfg.join_grace_ms / 1000
        if self._held is not None:
            self._timer = threading.Timer(cfg.join_grace_ms / 1000, self._release)
            self._timer.daemon = True
            self._timer.start()

    def _setup_curve(self) -> None:
        """CurveZMQ server keys from the certificate file; a ZAP authenticator when clients are listed."""
        cfg = self.cfg
        if cfg.curve_secret_key_file is None:
            if cfg.curve_clients_dir is not None:
                raise PublisherError("zmq publisher: curve_clients_dir needs curve_secret_key_file")
            return
        import zmq.auth

        try:
            public, secret = zmq.auth.load_certificate(cfg.curve_secret_key_file)
        except (OSError, ValueError) as exc:
            raise PublisherError(f"zmq publisher: curve_secret_key_file {cfg.curve_secret_key_file}: cannot load a "
                                 f"certificate ({exc})") from exc
        if not secret:
            raise PublisherError(f"zmq publisher: curve_secret_key_file {cfg.curve_secret_key_file} holds no secret "
                                 "key (expected the '.key_secret' file of zmq.auth.create_certificates)")
        if cfg.curve_clients_dir is not None:
            if not cfg.curve_clients_dir.is_dir():
                raise PublisherError(f"zmq publisher: curve_clients_dir {cfg.curve_clients_dir} is not a folder")
            from zmq.auth.thread import ThreadAuthenticator

            self._auth = ThreadAuthenticator(self._ctx, log=logging.getLogger(f"{__name__}.auth"))
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(cfg.curve_clients_dir))
        else:
            self._sock.setsockopt(zmq.ZAP_DOMAIN, b"")  # no ZAP handler: any client with our public key
        self._sock.setsockopt(zmq.CURVE_SERVER, 1)
        self._sock.setsockopt(zmq.CURVE_SECRETKEY, secret)
        self._sock.setsockopt(zmq.CURVE_PUBLICKEY, public)

    def _release(self) -> None:
        with self._lock:
            held, self._held = self._held, None
            for frames in held or []:
                self._send(frames)

    def _send(self, frames: list[bytes]) -> None:
        """Send without blocking (called with the lock held); failures counted."""
        if self._sock is None:
            self.metrics.publish_failures_total.labels(sink=self.name).inc()
            return
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.metrics.publish_failures_total.labels(sink=self.name).inc()
            log.debug("zmq publisher: HWM reached on %s, message dropped", self.endpoint)
        except zmq.ZMQError as exc:
            self.metrics.publish_failures_total.labels(sink=self.name).inc()
            log.error("zmq publisher: send on %s failed: %s", self.endpoint, exc)

    def publish(self, verdict: Verdict) -> None:
        """Send [topic, json] without blocking; a full HWM or socket error counts a failure."""
        frames = [
            verdict_topic(self.cfg.topic_prefix, verdict.line or self.line, verdict.camera).encode(),
            verdict.to_json().encode(),
        ]
        start = time.perf_counter()
        with self._lock:
            if self._held is not None and len(self._held) < 10_000:
                self._held.append(frames)  # within join_grace_ms of binding: sent when it is up
            else:
                self._send(frames)
        self.metrics.publish_seconds.labels(sink=self.name).observe(time.perf_counter() - start)

    def publish_event(self, kind: str, line: str, camera: str, payload: str) -> None:
        """Operations messages (drift ``alarm``, ``shadow`` verdicts) as [<prefix>/<line>/<camera>/<kind>, json]."""
        frames = [camera_topic(self.cfg.topic_prefix, line, camera, kind).encode(), payload.encode()]
        with self._lock:
            if self._held is not None and len(self._held) < 10_000:
                self._held.append(frames)
            else:
                self._send(frames)

    def close(self, timeout: float = 10.0) -> None:
        """Let queued messages go out for up to ``timeout`` s, then close. Idempotent.

        Known libzmq 4.3.5 race (zeromq/libzmq#3442): a subscriber that drops its connection in the
        same moment as this close, while a message to it is half sent, can abort the process in
        ``session_base.cpp``. Only a close races it, so the daemon's steady state is not exposed."""
        if self._held is not None:
            self._timer.cancel()
            wait = self._release_at - time.monotonic()  # a short run: let waiting subscribers join first
            if 0 < wait <= timeout:
                time.sleep(wait)
            self._release()
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is None:
            return
        sock.close(linger=int(max(timeout, 0) * 1000))
        if self._auth is not None:
            self._auth.stop()
        self._ctx.term()
