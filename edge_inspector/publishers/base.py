"""The publisher plugin contract: where verdicts go after the decision stage.

Why a Protocol and not an ABC: the daemon only needs ``name``/``publish``/``close``; a test double
or a third-party sink satisfies it without inheriting from us.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from edge_inspector.errors import EdgeInspectorError
from edge_inspector.messages import Verdict


class PublisherError(EdgeInspectorError, RuntimeError):
    """A publisher cannot be created or used (bad credentials file, spool locked, bind failed...)."""


@runtime_checkable
class Publisher(Protocol):
    """A verdict sink. ``publish`` is called from the pipeline thread and must return quickly."""

    #: Sink name used as the ``sink`` label of the publish metrics ("mqtt", "zmq", "jsonl").
    name: str

    def publish(self, verdict: Verdict) -> None:
        """Hand one verdict over; never blocks the pipeline for long.

        MQTT appends it to its disk spool and returns (delivery happens on a sender thread);
        ZeroMQ sends without blocking; JSONL writes one line. Failures are counted in
        ``publish_failures_total{sink}`` and logged, not raised, so one broken sink cannot stop
        inspection.
        """
        ...

    def close(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed within ``timeout`` seconds, then release resources.

        MQTT drains its spool while the broker is reachable; what is left stays in the on-disk
        spool and is delivered first at the next start. Idempotent.
        """
        ...


@runtime_checkable
class EventSink(Protocol):
    """A publisher that also carries line-operations messages (drift ``alarm``, ``shadow`` verdicts).

    Optional: MQTT, ZeroMQ, Sparkplug (and a deferred sink standing in for one) take events; the
    JSONL file does not. The pipeline picks the event sinks once per generation (``Generation``).
    """

    name: str

    def publish_event(self, kind: str, line: str, camera: str, payload: str) -> None:
        """Send one event as ``<prefix>/<line>/<camera>/<kind>``; failures are counted, not raised."""
        ...
