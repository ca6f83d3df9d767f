"""Operator flags over MQTT: an HMI button or a Node-RED flow marks a frame for review.

A subscriber, not a publisher, so it lives apart from ``review.py`` (the capture store) and from
``publishers/`` (sinks of verdicts); it shares the one MQTT client factory with them.
"""

from __future__ import annotations

import logging

from .review import ReviewCapture

log = logging.getLogger(__name__)


class FlagListener:
    """Operator flags over MQTT (an HMI button, a Node-RED flow) -> ``ReviewCapture.flag``.

    Its own client on the verdict broker, so flags arrive while the MQTT publisher is busy delivering
    a backlog; QoS 1, clean session: a flag sent while the daemon is down is for a frame it no
    longer holds anyway.
    """

    def __init__(self, capture: ReviewCapture, mqtt_cfg, line: str):
        from ..publishers.mqtt_client import make_client, start

        self.capture = capture
        self.topic = f"{mqtt_cfg.topic_prefix}/{line}/+/flag"
        self.flagged = 0
        # Same login, TLS and backoff as the verdict publisher (one factory: mqtt_client.make_client).
        client = make_client(mqtt_cfg, client_id="", who="flags")
        client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        client.on_message = self._on_message
        start(client, mqtt_cfg, "flags")
        self.client = client

    def _on_message(self, client, userdata, msg) -> None:
        import json

        camera = msg.topic.split("/")[-2]
        try:
            data = json.loads(msg.payload)
            frame, label = int(data["frame"]), data.get("label")
            if label is not None and not isinstance(label, str):
                raise ValueError("label must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("review: ignoring flag on %s: expected {\"frame\": N, \"label\": ...} (%s)", msg.topic, exc)
            return
        if self.capture.flag(camera, frame, label):
            self.flagged += 1
            log.info("review: operator flagged %s/%s (%s)", camera, frame, label or "as decided")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
