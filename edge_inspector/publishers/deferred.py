"""A publisher that could not start because of the machine, not the configuration, retried in the background.

Why: a full spool disk or a ZeroMQ port that another local process holds stopped the whole line at
start (F7 and F13 in the 2026-12 red-team review: no verdict on any sink). Such a failure is one of
the *environment* (``ENOSPC``/``EDQUOT``, SQLite's "database or disk is full", ``EADDRINUSE``), it
often clears by itself (space is freed, the squatter exits), and the other sinks can deliver
meanwhile. So the daemon starts with this stand-in: every verdict it cannot take is refused loudly
(``publish`` raises, so the pipeline counts it in ``publish_failures_total{sink}``, logs it at most
every 5 s and the daemon exits with code 3), and every ``retry_s`` seconds it tries to create the
real publisher again; from then on it hands every verdict over. A configuration error (a missing
password file, a bad TLS file) still refuses the start: waiting would not fix it.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

from edge_inspector.messages import Verdict
from edge_inspector.publishers.base import PublisherError

if TYPE_CHECKING:
    from edge_inspector.metrics import Metrics

log = logging.getLogger(__name__)

TRANSIENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EADDRINUSE}
TRANSIENT_TEXT = ("database or disk is full", "no space left on device", "address already in use", "disk quota")


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or what caused it) is a full disk or a port in use."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in TRANSIENT_ERRNOS:
            return True
        if getattr(e, "errno", None) in TRANSIENT_ERRNOS:  # zmq.ZMQError carries the C errno
            return True
        if isinstance(e, (sqlite3.Error, OSError, PublisherError, RuntimeError)) and \
                any(t in str(e).lower() for t in TRANSIENT_TEXT):
            return True
        e = e.__cause__ or e.__context__
    return False


class DeferredPublisher:
    """Stands in for a publisher whose start failed for a transient reason; retries every ``retry_s``."""

    def __init__(self, cfg: Any, *, line: str, metrics: Metrics, error: BaseException, retry_s: float = 10.0):
        self.cfg = cfg
        self.name = getattr(cfg, "type", "unknown")
        self.line = line
        self.metrics = metrics
        self.error = error
        self.retry_s = retry_s
        self._inner: Any = None
        self._closed = False
        self._next_try = time.monotonic() + retry_s
        self._lock = threading.Lock()

    def _ensure(self) -> Any:
        with self._lock:
            if self._inner is not None or self._closed or time.monotonic() < self._next_try:
                return self._inner
            self._next_try = time.monotonic() + self.retry_s
            from edge_inspector.publishers import create_publisher

            try:
                self._inner = create_publisher(self.cfg, line=self.line, metrics=self.metrics)
            except Exception as exc:  # noqa: BLE001 - still not possible: keep refusing, retry later
                self.error = exc
                return None
            log.warning("%s publisher started after all (it had failed: %s); verdicts go to it from now on",
                        self.name, _short(self.error))
            return self._inner

    def publish(self, verdict: Verdict) -> None:
        inner = self._ensure()
        if inner is None:
            raise PublisherError(f"{self.name} publisher is not running ({_short(self.error)}); retried every "
                                 f"{self.retry_s:g} s")
        inner.publish(verdict)

    def publish_event(self, kind: str, line: str, camera: str, payload: str) -> None:
        inner = self._ensure()
        if inner is None:
            self.metrics.publish_failures_total.labels(sink=self.name).inc()
            return
        send = getattr(inner, "publish_event", None)
        if send is not None:
            send(kind, line, camera, payload)

    def undelivered(self) -> int:
        inner = self._inner
        return int(getattr(inner, "undelivered", lambda: 0)()) if inner is not None else 0

    def close(self, timeout: float = 10.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            inner = self._inner  # kept: undelivered() still reports what its close left behind
        if inner is not None:
            inner.close(timeout=timeout)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
