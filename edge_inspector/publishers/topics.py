"""The topic names every publisher shares: ``<prefix>/<line>/<camera>/<kind>``.

A leaf module, so that the MQTT and ZeroMQ publishers take their topics from here instead of from
the package's face (``publishers/__init__.py`` imports the publishers lazily, and an import of the
face from inside a publisher closed a loop).
"""

from __future__ import annotations


def camera_topic(prefix: str, line: str, camera: str, kind: str) -> str:
    """``<prefix>/<line>/<camera>/<kind>``: ``verdict``, or an operations event (``alarm``, ``shadow``)."""
    return f"{prefix}/{line}/{camera}/{kind}"


def verdict_topic(prefix: str, line: str, camera: str) -> str:
    """``<prefix>/<line>/<camera>/verdict`` (QoS 1; also the ZeroMQ topic frame)."""
    return camera_topic(prefix, line, camera, "verdict")


def status_topic(prefix: str, line: str) -> str:
    """``<prefix>/<line>/status``: retained ``online``; ``offline`` on clean close and as last will."""
    return f"{prefix}/{line}/status"
