"""Safe file serving: frames, overlays and reports are served only from inside their allowed folder."""

from __future__ import annotations

import mimetypes
from pathlib import Path

from django.http import FileResponse, Http404

OVERLAY_PATTERNS = ("{stem}_overlay{suffix}", "{stem}.overlay{suffix}", "{stem}_heatmap{suffix}",
                    "{stem}.heatmap{suffix}", "{stem}_overlay.jpg", "{stem}_overlay.png", "{stem}.overlay.jpg",
                    "{stem}.overlay.png", "{stem}_heatmap.jpg", "{stem}_heatmap.png")


def contained(root: Path, relative: str | Path) -> Path | None:
    """``root / relative`` resolved, or None when it escapes ``root`` (``..``, absolute paths, links)."""
    root = Path(root).resolve()
    try:
        candidate = (root / relative).resolve()
    except (ValueError, OSError):  # a NUL byte ("%00" in a URL) or a name the OS refuses: not found
        return None
    if candidate != root and root not in candidate.parents:
        return None
    return candidate


def frame_path(frames_root: Path, image: str) -> Path | None:
    if not image:
        return None
    path = contained(frames_root, image)
    return path if path is not None and path.is_file() else None


def overlay_path(frame: Path | None) -> Path | None:
    """The heatmap overlay the daemon saved beside a frame, under any of the usual names."""
    if frame is None:
        return None
    for pattern in OVERLAY_PATTERNS:
        candidate = frame.with_name(pattern.format(stem=frame.stem, suffix=frame.suffix))
        if candidate != frame and candidate.is_file():
            return candidate
    return None


def serve(path: Path | None, *, attachment: bool = False) -> FileResponse:
    if path is None or not path.is_file():
        raise Http404("file not found")
    content_type, _ = mimetypes.guess_type(path.name)
    response = FileResponse(open(path, "rb"), content_type=content_type or "application/octet-stream",  # noqa: SIM115
                            as_attachment=attachment, filename=path.name)
    response["X-Content-Type-Options"] = "nosniff"
    return response
