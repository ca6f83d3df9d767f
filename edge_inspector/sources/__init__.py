"""Frame sources behind one interface (``base.Source``); ``SOURCES`` is the registry (registry.py)."""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import Backoff, Frame, Source, SourceError
from .seqstore import SeqStore

# The config's ``source.type`` -> implementation (see registry.py); each config class sits in config.py's
# SourceConfig union (GenicamSourceConfig beside its source: it imports without Aravis).
SOURCES = Registry("source type", {
    "camera": "edge_inspector.sources.camera:CameraSource",
    "video": "edge_inspector.sources.video:VideoSource",
    "folder": "edge_inspector.sources.folder:FolderSource",
    "replay": "edge_inspector.sources.replay:ReplaySource",
    "genicam": "edge_inspector.sources.genicam:GenicamSource",  # GigE / USB3 Vision through Aravis ([genicam] extra)
}, SourceError)


def create_source(camera: str, config: Any) -> Source:
    """Build the source for a camera from its ``source`` config (selected by ``type``)."""
    try:
        cls = SOURCES.load(config.type)
    except SourceError as exc:
        raise SourceError(f"camera {camera}: {exc}") from None
    return cls(camera, config)


__all__ = ["Backoff", "Frame", "SeqStore", "Source", "SourceError", "SOURCES", "create_source"]
