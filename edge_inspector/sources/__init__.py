"""Frame sources behind one interface (``base.Source``); ``SOURCES`` is the explicit registry."""

from __future__ import annotations

from typing import Any

from .base import Backoff, Frame, Source, SourceError
from .camera import CameraSource
from .folder import FolderSource
from .genicam import GenicamSource
from .replay import ReplaySource
from .seqstore import SeqStore
from .video import VideoSource

SOURCES: dict[str, type[Source]] = {
    "camera": CameraSource,
    "video": VideoSource,
    "folder": FolderSource,
    "replay": ReplaySource,
    "genicam": GenicamSource,  # GigE Vision / USB3 Vision through Aravis (optional [genicam] extra)
}


def create_source(camera: str, config: Any) -> Source:
    """Build the source for a camera from its ``source`` config (selected by ``type``)."""
    try:
        cls = SOURCES[config.type]
    except KeyError:
        raise SourceError(f"camera {camera}: unknown source type {config.type!r}; expected {sorted(SOURCES)}") from None
    return cls(camera, config)


__all__ = ["Backoff", "Frame", "SeqStore", "Source", "SourceError", "SOURCES", "create_source"]
