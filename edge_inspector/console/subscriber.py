"""The verdict subscriber: a thread that reads the daemon's ZeroMQ PUB stream into the database.

Messages are multipart ``[topic, json]`` with topic ``<prefix>/<line>/<camera>/verdict``. Rows are
written in small batches (bulk insert, duplicates ignored) so a daemon at hundreds of frames per
second costs one INSERT per batch, and old rows are pruned (:class:`Retention`: the newest N rows,
and rows older than N days) so the table stays bounded. The plant-wide follower of many daemons
through an MQTT broker is :mod:`edge_inspector.console.mqtt_feed`; it shares ``to_row``, ``store``
and the retention here. Every running follower registers in :data:`FEEDS` for the dashboard.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import zmq
from django.db import close_old_connections
from pydantic import ValidationError

from edge_inspector.messages import Verdict as VerdictMessage

from .models import Verdict

log = logging.getLogger(__name__)
ACTIVE: VerdictSubscriber | None = None  # the running ZeroMQ subscriber, for the dashboard's feed status
#: Every running follower (ZeroMQ, MQTT) of this process; each has ``status() -> dict``.
FEEDS: list = []


def feed_statuses() -> list[dict]:
    """The dashboard's view of every verdict feed this process runs (empty in a test client)."""
    feeds = list(FEEDS)
    if ACTIVE is not None and ACTIVE not in feeds:
        feeds.insert(0, ACTIVE)
    return [f.status() for f in feeds]


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def to_row(payload: bytes | str) -> Verdict:
    """Validate one JSON message against the Verdict schema and turn it into an unsaved row."""
    msg = VerdictMessage.model_validate_json(payload)
    data = json.loads(msg.to_json())
    total = msg.latency_ms.get("total")
    return Verdict(
        line=msg.line,
        camera=msg.camera,
        frame=msg.frame,
        captured_at=parse_time(msg.captured_at),
        decided_at=parse_time(msg.decided_at),
        verdict=msg.verdict,
        score=msg.score,
        threshold=msg.threshold,
        defect_type=msg.defect_type or "",
        defect_confidence=msg.defect_confidence,
        latency_ms=total,
        image=msg.image or "",
        source=msg.source or "",
        error=msg.error or "",
        message=data,
    )


def store(rows: list[Verdict]) -> int:
    """Insert rows, silently skipping redeliveries (same line, camera, frame, capture time)."""
    if not rows:
        return 0
    Verdict.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def prune(keep: int | None, keep_days: float | None = None, now: datetime | None = None) -> int:
    """Delete all but the newest ``keep`` verdicts, and those received more than ``keep_days`` ago.

    Rows marked for review are kept whatever their age: they are the false alarms an engineer
    still has to look at. Age counts from ``received_at`` (the console's clock), not the daemon's
    ``captured_at``: a line PC with a wrong clock must not have its fresh verdicts pruned at once.
    ``None`` (or 0 days) switches that rule off.
    """
    deleted = 0
    if keep is not None:
        ids = list(Verdict.objects.order_by("-id").values_list("id", flat=True)[keep : keep + 1])
        if ids:
            deleted += Verdict.objects.filter(id__lte=ids[0], review=False).delete()[0]
    if keep_days:
        from django.utils import timezone

        cutoff = (now or timezone.now()) - timedelta(days=keep_days)
        deleted += Verdict.objects.filter(received_at__lt=cutoff, review=False).delete()[0]
    return deleted


@dataclass(frozen=True)
class Retention:
    """How much verdict history the console keeps (``KEEP_VERDICTS`` rows, ``KEEP_DAYS`` days)."""

    keep_rows: int | None = 200_000
    keep_days: float | None = None

    @classmethod
    def from_settings(cls) -> Retention:
        from django.conf import settings

        c = settings.CONSOLE
        return cls(c.get("KEEP_VERDICTS", 200_000), c.get("KEEP_DAYS") or None)

    def apply(self, now: datetime | None = None) -> int:
        return prune(self.keep_rows, self.keep_days, now)


class VerdictSubscriber(threading.Thread):
    """Connects a SUB socket to the daemon's endpoint and stores every verdict message it receives."""

    def __init__(self, endpoint: str, *, keep: int = 200_000, flush_s: float = 0.25, prune_every_s: float = 60.0,
                 retention: Retention | None = None):
        super().__init__(name="verdict-subscriber", daemon=True)
        self.endpoint = endpoint
        self.retention = retention or Retention(keep_rows=keep)
        self.flush_s = flush_s
        self.prune_every_s = prune_every_s
        self.received = 0
        self.rejected = 0
        self.last_received: float | None = None  # time.time() of the last accepted message
        self.connected = threading.Event()
        self._stopping = threading.Event()

    def status(self) -> dict:
        return {"kind": "zmq", "endpoint": self.endpoint, "running": self.is_alive(), "received": self.received,
                "rejected": self.rejected, "last_received": self.last_received}

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.join(timeout)

    def run(self) -> None:
        ctx = zmq.Context.instance()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(self.endpoint)
        self.connected.set()
        log.info("verdict subscriber connected to %s", self.endpoint)
        pending: list[Verdict] = []
        last_flush = last_prune = time.monotonic()
        try:
            while not self._stopping.is_set():
                if sock.poll(100):
                    while True:
                        try:
                            parts = sock.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        row = self._decode(parts)
                        if row is not None:
                            pending.append(row)
                        if len(pending) >= 500:
                            break
                now = time.monotonic()
                if pending and (now - last_flush >= self.flush_s or len(pending) >= 500):
                    self._flush(pending)
                    pending = []
                    last_flush = now
                if now - last_prune >= self.prune_every_s:
                    last_prune = now
                    self._safe(self.retention.apply)
            self._flush(pending)
        finally:
            sock.close()
            close_old_connections()

    def _decode(self, parts: list[bytes]) -> Verdict | None:
        topic = parts[0].decode("utf-8", "replace") if len(parts) > 1 else ""
        if topic and not topic.endswith("/verdict"):
            return None  # status or other topics share the socket
        try:
            row = to_row(parts[-1])
        except (ValidationError, ValueError) as exc:
            self.rejected += 1
            log.warning("ignoring malformed verdict on %r: %s", topic, str(exc).splitlines()[0])
            return None
        self.received += 1
        self.last_received = time.time()
        return row

    def _flush(self, rows: list[Verdict]) -> None:
        self._safe(store, rows)

    def _safe(self, fn, *args) -> None:
        """A database hiccup (locked SQLite, restarted PostgreSQL) must not kill the thread."""
        try:
            close_old_connections()
            fn(*args)
        except Exception:  # noqa: BLE001
            log.exception("verdict subscriber: %s failed", fn.__name__)


# ------------------------------------------------------------------ is the daemon alive?
class DaemonWatch:
    """The daemon's own signals, for the dashboard badge: its pid, its metrics endpoint, its stream.

    Why not the browser's polling: the page kept a green "live" badge after the daemon died
    (integrators' check): the console answered, the line did not. ``state`` is ``live``,
    ``silent`` (no verdict for ``silence_s`` while the daemon seems up: a stopped line or a broken
    publisher), ``down`` (pid gone or metrics unreachable, with how long) or ``unknown`` (nothing
    configured to watch and no verdict yet).
    """

    def __init__(self, pid_file=None, metrics_url: str | None = None, silence_s: float = 60.0) -> None:
        self.pid_file, self.metrics_url, self.silence_s = pid_file, metrics_url, silence_s
        self.started = time.time()
        self._down_since: float | None = None
        self._metrics_cache: tuple[float, str] = (0.0, "")
        self._lock = threading.Lock()

    def _pid_problem(self) -> str:
        import os

        from .promote import read_pid

        try:
            pid = read_pid(self.pid_file)
        except ProcessLookupError as exc:
            return str(exc)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"daemon pid {pid} is not running"
        except PermissionError:
            pass  # alive, another user's
        return ""

    def _metrics_problem(self, now: float) -> str:
        import urllib.error
        import urllib.request

        checked, problem = self._metrics_cache
        if now - checked < 2.0:
            return problem
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=1.0) as resp:  # noqa: S310 - configured URL
                resp.read(1)
            problem = ""
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problem = f"daemon metrics {self.metrics_url} unreachable ({getattr(exc, 'reason', exc)})"
        self._metrics_cache = (now, problem)
        return problem

    def status(self, last_received: float | None, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        with self._lock:
            problems = []
            if self.pid_file is not None:
                problems.append(self._pid_problem())
            if self.metrics_url:
                problems.append(self._metrics_problem(now))
            problem = "; ".join(p for p in problems if p)
            if problem:
                self._down_since = self._down_since or now
                down_for = now - self._down_since
                return {"state": "down", "for_s": round(down_for),
                        "text": f"daemon unreachable for {down_for:.0f} s: {problem}"}
            self._down_since = None
        silent_for = now - (last_received if last_received is not None else self.started)
        if last_received is None and self.pid_file is None and not self.metrics_url:
            return {"state": "unknown", "for_s": None, "text": "live (daemon not watched: start the console "
                    "with --daemon-pid-file or --daemon-metrics)"}
        if silent_for > self.silence_s:
            since = "since the console started" if last_received is None else "for"
            return {"state": "silent", "for_s": round(silent_for),
                    "text": f"no verdicts {since} {silent_for:.0f} s"}
        return {"state": "live", "for_s": 0, "text": "live"}


WATCH: DaemonWatch | None = None


def daemon_status(last_received: float | None) -> dict:
    """The badge state from the configured daemon signals (created on first use from the settings)."""
    global WATCH
    if WATCH is None:
        from django.conf import settings

        c = settings.CONSOLE
        WATCH = DaemonWatch(c.get("DAEMON_PID_FILE"), c.get("DAEMON_METRICS"), float(c.get("DAEMON_SILENCE_S", 60)))
    return WATCH.status(last_received)
