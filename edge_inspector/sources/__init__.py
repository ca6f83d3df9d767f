"""Frame sources behind one interface (``base.Source``); ``SOURCES`` is the registry (registry.py)."""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import Backoff, Frame, Source, SourceError, SourceSettings
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


def source_class(camera: str, type_name: str) -> type[Source]:
    """The Source class registered for ``type_name``; SourceError naming the camera when there is none."""
    try:
        return SOURCES.load(type_name)
    except SourceError as exc:
        raise SourceError(f"camera {camera}: {exc}") from None


def create_source(camera: str, config: Any, settings: SourceSettings | None = None) -> Source:
    """Build the source for a camera from its ``source`` config (selected by ``type``) and the settings
    the pipeline gives it (defaults: a stand-alone source)."""
    return source_class(camera, config.type)(camera, config, settings)


__all__ = ["Backoff", "Frame", "SeqStore", "Source", "SourceError", "SourceSettings", "SOURCES", "create_source",
           "source_class"]
