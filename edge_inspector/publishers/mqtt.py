"""MQTT publisher (interface committed first; implementation follows)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge_inspector.messages import Verdict
from edge_inspector.publishers.config import MqttConfig

if TYPE_CHECKING:
    from edge_inspector.metrics import Metrics


class MqttPublisher:
    name = "mqtt"

    def __init__(self, cfg: MqttConfig, *, line: str, metrics: Metrics) -> None:
        raise NotImplementedError("MqttPublisher is being implemented")

    def publish(self, verdict: Verdict) -> None:
        raise NotImplementedError

    def close(self, timeout: float = 10.0) -> None:
        raise NotImplementedError
