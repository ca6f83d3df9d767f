"""Publishers: where verdicts go (MQTT with a disk spool, ZeroMQ PUB, a JSONL file).

``PUBLISHERS`` is the registry (registry.py): the config's ``type`` picks the class, and the
implementation module is imported only then (pyzmq/paho are not needed to validate a config).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from edge_inspector.publishers.base import Publisher, PublisherError
from edge_inspector.publishers.config import JsonlConfig, MqttConfig, MqttTlsConfig, SparkplugConfig, ZmqConfig
from edge_inspector.publishers.opcua import OpcuaConfig  # asyncua is imported only when the server starts
from edge_inspector.publishers.topics import status_topic, verdict_topic
from edge_inspector.registry import Registry

if TYPE_CHECKING:
    from edge_inspector.metrics import Metrics

PublisherConfig = Annotated[MqttConfig | ZmqConfig | JsonlConfig | SparkplugConfig | OpcuaConfig,
                            Field(discriminator="type")]

__all__ = [
    "JsonlConfig",
    "MqttConfig",
    "MqttTlsConfig",
    "OpcuaConfig",
    "PUBLISHERS",
    "Publisher",
    "PublisherConfig",
    "PublisherError",
    "SparkplugConfig",
    "ZmqConfig",
    "create_publisher",
    "publisher_problems",
    "status_topic",
    "verdict_topic",
]


def publisher_problems(publishers: list) -> list[str]:
    """Files an MQTT/Sparkplug publisher would fail on at start (password file, TLS CA/cert/key), for
    check-config: the same messages the daemon gives, found before it runs."""
    from edge_inspector.publishers.mqtt_files import connection_problems

    problems = []
    for i, pub in enumerate(publishers):
        if isinstance(pub, MqttConfig | SparkplugConfig):
            problems += [f"publishers[{i}] ({pub.type} {pub.host}:{pub.port}): {msg}"
                         for msg in connection_problems(pub, pub.type)]
        if isinstance(pub, OpcuaConfig):
            from edge_inspector.publishers.opcua import opcua_problems

            problems += [f"publishers[{i}] (opcua {pub.endpoint}): {msg}" for msg in opcua_problems(pub)]
    return problems


# The config's ``type`` -> implementation (see registry.py); each config class sits in PublisherConfig above.
PUBLISHERS = Registry("publisher type", {
    "mqtt": "edge_inspector.publishers.mqtt:MqttPublisher",
    "zmq": "edge_inspector.publishers.zmq:ZmqPublisher",
    "jsonl": "edge_inspector.publishers.jsonl:JsonlPublisher",
    "sparkplug": "edge_inspector.publishers.sparkplug:SparkplugPublisher",
    "opcua": "edge_inspector.publishers.opcua:OpcuaPublisher",
}, PublisherError)


def create_publisher(cfg: MqttConfig | ZmqConfig | JsonlConfig | SparkplugConfig | OpcuaConfig, *, line: str,
                     metrics: Metrics) -> Publisher:
    """Build the publisher for one config item. Raises PublisherError when it cannot start."""
    return PUBLISHERS.load(cfg.type)(cfg, line=line, metrics=metrics)
