"""The plant-wide verdict follower: every daemon of every line, through the MQTT broker.

Why MQTT and not one ZeroMQ socket per daemon: a plant already runs a broker tier (a Mosquitto per
line bridged to a plant broker, or an EMQX/HiveMQ cluster), the daemons already publish every
verdict there with QoS 1 from a disk spool, and a new line appears on the console without touching
its configuration. The follower subscribes to ``<prefix>/+/+/verdict`` and ``<prefix>/+/status``.

Delivery into the database is at-least-once, like the daemon's into the broker:

* a **persistent session** (``clean_session=False`` with a fixed client id): while the console is
  down or restarting, the broker keeps its subscriptions and queues its QoS 1 messages;
* **manual acknowledgement**: a PUBACK goes back only after the row is committed, so a console
  killed between receiving and writing gets the message again from the broker. A database that
  refuses the write (PostgreSQL restarting) holds the acknowledgements back, and the broker stops
  sending once its in-flight window (Mosquitto ``max_inflight_messages``, default 20) is full:
  back-pressure instead of loss;
* redeliveries are dropped by the unique (line, camera, frame, captured_at) constraint.

Each batch is written as soon as nothing more is waiting (not on a timer): with an in-flight
window of 20, waiting for a timer would cap the follower at 20 messages per tick.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import Field, ValidationError, field_validator

from edge_inspector.publishers.config import MqttConnection, MqttTlsConfig

from .subscriber import Retention, store, to_row

log = logging.getLogger(__name__)

BATCH_MAX = 500


class MqttFeedError(ValueError):
    """The console's MQTT settings are unusable (names the setting)."""


class MqttFeedConfig(MqttConnection):
    """Where the console follows the plant's daemons: the broker login (as the daemon's) and the prefix."""

    topic_prefix: str = Field("edge-inspector", min_length=1, description="The daemons' MqttConfig.topic_prefix.")
    client_id: str | None = Field("edge-inspector-console", min_length=1,
                                  description="Fixed id of the persistent session (one per console instance).")
    clean_session: bool = Field(False, description="False: the broker queues verdicts while the console is away.")

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if any(c in value for c in "#+") or value.startswith("/"):
            raise ValueError(f"topic_prefix {value!r} must not contain '#', '+' or start with '/'")
        return value

    @property
    def verdict_filter(self) -> str:
        return f"{self.topic_prefix}/+/+/verdict"

    @property
    def status_filter(self) -> str:
        return f"{self.topic_prefix}/+/status"

    @property
    def endpoint(self) -> str:
        return f"mqtt{'s' if self.tls else ''}://{self.host}:{self.port}/{self.topic_prefix}"

    @classmethod
    def from_settings(cls, console: dict) -> MqttFeedConfig | None:
        """The ``CONSOLE["MQTT"]`` dict of settings.py (None when no broker is configured)."""
        raw = console.get("MQTT")
        if not raw or not raw.get("host"):
            return None
        raw = {k: v for k, v in raw.items() if v not in (None, "")}
        ca_file = raw.pop("ca_file", None)
        if ca_file:
            raw["tls"] = MqttTlsConfig(ca_file=Path(ca_file))
        try:
            return cls(**raw)
        except ValidationError as exc:
            problems = "; ".join(f"EDGE_INSPECTOR_MQTT_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: "
                                 f"{e['msg']}" for e in exc.errors())
            raise MqttFeedError(f"console MQTT settings: {problems}") from None


class MqttVerdictSubscriber(threading.Thread):
    """Follows every line's verdicts and status on one broker and stores them (see the module doc)."""

    def __init__(self, cfg: MqttFeedConfig, *, retention: Retention | None = None, prune_every_s: float = 60.0,
                 retry_s: float = 1.0) -> None:
        super().__init__(name="mqtt-verdict-subscriber", daemon=True)
        self.cfg = cfg
        self.retention = retention or Retention()
        self.prune_every_s = prune_every_s
        self.retry_s = retry_s
        self.received = 0
        self.rejected = 0
        self.statuses = 0
        self.last_received: float | None = None
        self.db_errors = 0
        self.subscribed = threading.Event()  # set on SUBACK, cleared on disconnect
        self._inbox: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._client = None

    # ---------------------------------------------------------------- lifecycle
    def status(self) -> dict:
        return {"kind": "mqtt", "endpoint": self.cfg.endpoint, "running": self.is_alive(),
                "connected": self.subscribed.is_set(), "received": self.received, "rejected": self.rejected,
                "last_received": self.last_received, "db_errors": self.db_errors}

    def start(self) -> None:
        """Build and connect the client first, so a bad password or CA file raises here (PublisherError)."""
        self._client = self._connect()
        super().start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.join(timeout)

    def _connect(self):
        from edge_inspector.publishers.mqtt_client import make_client, start

        client = make_client(self.cfg, client_id=self.cfg.client_id or "edge-inspector-console", who="console",
                             clean_session=self.cfg.clean_session)
        client.manual_ack_set(True)  # PUBACK only once the row is committed (``_ack``)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        start(client, self.cfg, "console")
        return client

    # ---------------------------------------------------------------- paho callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ARG002
        if reason_code.is_failure:
            log.error("console MQTT: broker %s refused the connection: %s", self.cfg.endpoint, reason_code)
            return
        # Subscribing again on a resumed session is harmless and covers a broker that lost it.
        client.subscribe([(self.cfg.verdict_filter, 1), (self.cfg.status_filter, 1)])
        log.info("console MQTT: connected to %s (session %s)", self.cfg.endpoint,
                 "resumed" if getattr(flags, "session_present", False) else "new")

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:  # noqa: ARG002
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # noqa: ARG002
        self.subscribed.clear()
        if not self._stopping.is_set():
            log.warning("console MQTT: lost %s (%s); reconnecting", self.cfg.endpoint, reason_code)

    def _on_message(self, client, userdata, msg) -> None:  # noqa: ARG002
        self._inbox.put(msg)

    # ---------------------------------------------------------------- the writer thread
    def run(self) -> None:
        from django.db import close_old_connections

        client = self._client
        last_prune = time.monotonic()
        try:
            while not self._stopping.is_set():
                batch = self._take()
                if batch:
                    self._write_until_done(batch)
                if time.monotonic() - last_prune >= self.prune_every_s:
                    last_prune = time.monotonic()
                    self._prune()
        finally:
            client.disconnect()
            client.loop_stop()
            close_old_connections()

    def _take(self) -> list:
        try:
            batch = [self._inbox.get(timeout=0.1)]
        except queue.Empty:
            return []
        while len(batch) < BATCH_MAX:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write_until_done(self, batch: list) -> None:
        """Write the batch, retrying while the database refuses; acknowledge only after it is stored."""
        from django.db import close_old_connections

        rows, states = self._parse(batch)
        failures = 0
        while True:
            try:
                close_old_connections()
                self._write(rows, states)
            except Exception as exc:  # noqa: BLE001 - the database's error types differ per backend
                self.db_errors += 1
                failures += 1
                if failures <= 3 or failures % 60 == 0:  # a long database outage must not flood the log
                    log.error("console MQTT: cannot store %d messages (attempt %d): %s; holding their "
                              "acknowledgements, retrying every %g s", len(batch), failures, exc, self.retry_s)
                if self._stopping.wait(self.retry_s):
                    return  # not acknowledged: the broker sends them again to the next session
                continue
            for msg in batch:
                self._ack(msg)
            return

    def _parse(self, batch: list) -> tuple[list, dict[str, str]]:
        """Verdict rows (malformed ones counted, logged and dropped) and the newest status per line."""
        rows, states = [], {}
        for msg in batch:
            if msg.topic.endswith("/status"):
                line = msg.topic[len(self.cfg.topic_prefix) + 1: -len("/status")]
                states[line] = bytes(msg.payload).decode("utf-8", "replace")[:40]
                continue
            try:
                rows.append(to_row(bytes(msg.payload)))
            except (ValidationError, ValueError) as exc:
                self.rejected += 1
                log.warning("console MQTT: ignoring malformed verdict on %r: %s", msg.topic,
                            str(exc).splitlines()[0])
        return rows, states

    def _write(self, rows: list, states: dict[str, str]) -> None:
        from django.db import transaction

        with transaction.atomic():
            store(rows)
            self._store_states(states)
        if rows:
            self.received += len(rows)
            self.last_received = time.time()
        self.statuses += len(states)

    def _store_states(self, states: dict[str, str]) -> None:
        from .models import LineStatus

        now = datetime.now(UTC)
        broker = f"{self.cfg.host}:{self.cfg.port}"
        for line, state in states.items():
            LineStatus.objects.update_or_create(line=line, defaults={"state": state, "changed_at": now,
                                                                     "broker": broker})

    def _ack(self, msg) -> None:
        if msg.qos > 0 and self._client is not None:
            self._client.ack(msg.mid, msg.qos)

    def _prune(self) -> None:
        from django.db import close_old_connections

        try:
            close_old_connections()
            self.retention.apply()
        except Exception:  # noqa: BLE001
            log.exception("console MQTT: pruning verdict history failed")
