"""Part identity: which part a frame shows, supplied with the trigger (file name, PLC, camera).

Why: the MES books results per part (a serial, a carrier id, a lot position), not per frame counter.
A verdict therefore carries an optional ``part_id`` and ``triggered_at`` (schema 2), from one of:

* **a file name**: ``part_id_pattern`` on a folder or replay source, a regular expression with a
  named group ``part_id`` searched in the file name (``^(?P<part_id>[A-Z0-9-]+)_``);
* **an MQTT command**: ``{"part_id": "A-17", "ts": "2026-12-01T10:00:00.000Z"}`` published to
  ``<prefix>/<line>/<camera>/trigger`` on the broker of the first MQTT publisher
  (``part_triggers.mqtt``). The part id is *announced*: the next frame the camera delivers after
  the announcement carries it (a software-triggered GenICam camera takes a picture for it). An
  announcement no frame claimed within ``max_age_s`` is dropped and logged, so one missed frame
  does not shift every later part id by one;
* **an OPC UA method call**: ``Trigger(PartId)`` on the camera's node of an ``opcua`` publisher
  (edge_inspector/publishers/opcua.py), announced the same way;
* **the camera**: a GenICam source with ``part_id_from: frame_id`` uses the camera's frame id.

A frame that already has a part id from its source (file name, camera) keeps it; announcements only
fill frames without one. A file name that does not match the pattern gives a verdict without a part
id (and a log line), never a lost frame.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

PART_GROUP = "part_id"
MAX_PART_ID = 128


def compile_part_pattern(pattern: str | None) -> re.Pattern[str] | None:
    """The compiled ``part_id_pattern``; ValueError (shown with the config field's path) if unusable."""
    if pattern is None:
        return None
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    if PART_GROUP not in rx.groupindex:
        raise ValueError(f"expected a named group (?P<{PART_GROUP}>...) that captures the part id, "
                         f"e.g. '^(?P<{PART_GROUP}>[A-Za-z0-9-]+)_'")
    return rx


def part_from_name(rx: re.Pattern[str] | None, name: str) -> str | None:
    """The part id in a file name (searched, so the pattern need not cover the whole name)."""
    if rx is None:
        return None
    m = rx.search(name)
    if m is None or not m.group(PART_GROUP):
        log.debug("file name %s does not match part_id_pattern %s; verdict without part id", name, rx.pattern)
        return None
    return m.group(PART_GROUP)[:MAX_PART_ID]


def iso_utc(wall: float) -> str:
    """UTC ISO-8601 with milliseconds, as the verdict's other times."""
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """Epoch seconds of an ISO-8601 time (``Z`` or an offset; naive times are taken as UTC)."""
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


@dataclass(frozen=True)
class PartTrigger:
    """One announced part: its id and when it was triggered (epoch seconds)."""

    part_id: str
    triggered_wall: float
    received_mono: float

    @staticmethod
    def parse(payload: bytes | str, topic: str = "trigger") -> PartTrigger:
        """A trigger command; ValueError naming the field and the expected form."""
        expected = '{"part_id": "...", "ts": "<ISO-8601>"}'
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{topic}: not JSON ({exc}); expected {expected}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{topic}: expected a JSON object {{\"part_id\": \"...\"}}")
        part = data.get("part_id")
        if not isinstance(part, str | int) or isinstance(part, bool) or not str(part).strip():
            raise ValueError(f"{topic}: field 'part_id' must be a non-empty string (got {part!r})")
        part = str(part).strip()
        if len(part) > MAX_PART_ID:
            raise ValueError(f"{topic}: field 'part_id' is {len(part)} characters, at most {MAX_PART_ID} allowed")
        ts = data.get("ts")
        wall = time.time()
        if ts is not None:
            try:
                wall = parse_time(str(ts))
            except ValueError:
                raise ValueError(f"{topic}: field 'ts' must be an ISO-8601 time (got {ts!r})") from None
        return PartTrigger(part, wall, time.monotonic())


class PartQueue:
    """Announced parts of one camera, oldest first; the next frame without a part id claims one.

    Thread-safe: the MQTT network thread announces, the grab thread claims.
    """

    def __init__(self, camera: str, max_age_s: float = 10.0, limit: int = 1000):
        self.camera = camera
        self.max_age_s = max_age_s
        self._q: deque[PartTrigger] = deque(maxlen=limit)
        self._lock = threading.Lock()
        self.expired = 0

    def announce(self, trigger: PartTrigger) -> None:
        with self._lock:
            self._q.append(trigger)

    def claim(self) -> PartTrigger | None:
        now = time.monotonic()
        with self._lock:
            while self._q:
                t = self._q.popleft()
                if now - t.received_mono <= self.max_age_s:
                    return t
                self.expired += 1
                log.warning("camera %s: part %s was announced %.1f s ago and no frame came for it; dropped",
                            self.camera, t.part_id, now - t.received_mono)
        return None

    def __len__(self) -> int:
        with self._lock:
            return len(self._q)


def tag_frame(frame: Any, parts: PartQueue | None) -> None:
    """Give ``frame`` the oldest announced part if its source supplied none (called by the grab loop)."""
    if parts is None or getattr(frame, "part_id", None) is not None:
        return
    trigger = parts.claim()
    if trigger is not None:
        frame.part_id = trigger.part_id
        frame.triggered_wall = trigger.triggered_wall


class PartTriggerConfig(BaseModel):
    """``part_triggers:`` section of config.yaml."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    mqtt: bool = Field(
        False, description="Take part ids from <prefix>/<line>/<camera>/trigger on the broker of the first MQTT "
        "publisher; payload {\"part_id\": \"A-17\", \"ts\": \"<ISO-8601>\"} (ts optional: the time it arrived). "
        "The next frame of that camera carries the part id; a software-triggered GenICam camera is triggered.")
    max_age_s: float = Field(10.0, gt=0, le=3600, description="An announced part no frame claimed within this "
                             "long is dropped (logged), so one missed frame does not shift later part ids.")


class TriggerListener:
    """MQTT part triggers -> the camera's :class:`PartQueue` (and its source's ``trigger()``).

    Its own client (same factory, login and TLS as the verdict publisher), QoS 1, clean session: a
    trigger sent while the daemon is down is for a part that has left the station.
    """

    def __init__(self, mqtt_cfg: Any, line: str, deliver: Any):
        from .publishers.mqtt_client import make_client, start

        self.topic = f"{mqtt_cfg.topic_prefix}/{line}/+/trigger"
        self.deliver = deliver  # callable(camera, PartTrigger) -> bool (known camera)
        self.received = 0
        self.rejected = 0
        client = make_client(mqtt_cfg, client_id="", who="triggers")
        client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        client.on_message = self._on_message
        client.on_subscribe = lambda *_: log.info("part triggers: subscribed to %s", self.topic)
        start(client, mqtt_cfg, "triggers")
        self.client = client

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        camera = msg.topic.split("/")[-2]
        try:
            trigger = PartTrigger.parse(msg.payload, msg.topic)
        except ValueError as exc:
            self.rejected += 1
            log.warning("part trigger ignored: %s", exc)
            return
        try:
            known = self.deliver(camera, trigger)
        except Exception:  # noqa: BLE001 - a trigger must never kill the MQTT network thread
            log.exception("part trigger for camera %s failed", camera)
            return
        if not known:
            self.rejected += 1
            log.warning("part trigger on %s: no camera %r in this daemon", msg.topic, camera)
            return
        self.received += 1
        log.info("camera %s: part %s announced", camera, trigger.part_id)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
