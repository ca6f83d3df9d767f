"""The one small interface every frame source implements, and the ``Frame`` it delivers.

Why a pull interface (``read()`` returning the next frame, ``None`` at the end): the pipeline's
grab thread owns the timing, the reconnect backoff and the queue policy, so a source is only
"how to get the next image" and stays a few dozen lines.
"""

from __future__ import annotations

import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ..errors import EdgeInspectorError

if TYPE_CHECKING:
    from ..parts import PartTrigger

TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp", "~")


class SourceError(EdgeInspectorError, RuntimeError):
    """A source cannot be opened or lost its connection; the grab loop reconnects with backoff."""


@dataclass
class Frame:
    """One grabbed frame. ``image`` is BGR uint8, or None with ``error`` saying why (bad file)."""

    camera: str
    seq: int
    image: np.ndarray | None
    captured_mono: float = field(default_factory=time.monotonic)
    captured_wall: float = field(default_factory=time.time)
    error: str | None = None
    source: str | None = None  # file name or stream the frame came from
    #: still-encoded frame (file path or bytes) when the source left decoding to the pipeline's decode
    #: pool (``Source.defer_decode``); ``image`` is then None until the preprocessor decodes it
    encoded: Path | bytes | None = None
    #: Called once the frame's verdict was handed to every publisher (or the frame was dropped and
    #: counted): a watched folder records its progress only then, so a crash never skips a file.
    done: Callable[[], None] | None = None
    #: the part this frame shows, from the trigger (edge_inspector/parts.py); None when unknown
    part_id: str | None = None
    #: when the part was triggered (epoch seconds); None: the capture time
    triggered_wall: float | None = None

    @property
    def triggered_at(self) -> str | None:
        """UTC ISO-8601 of the part's trigger; None without a part id."""
        if self.part_id is None:
            return None
        wall = self.captured_wall if self.triggered_wall is None else self.triggered_wall
        stamp = datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds")
        return stamp.replace("+00:00", "Z")

    @property
    def captured_at(self) -> str:
        """UTC ISO-8601 with milliseconds, as in the verdict message."""
        stamp = datetime.fromtimestamp(self.captured_wall, UTC).isoformat(timespec="milliseconds")
        return stamp.replace("+00:00", "Z")


def _no_beat() -> None:
    """A source built outside a pipeline (tests, tools) has no watchdog to tell."""


def _no_skip(name: str, reason: str) -> None:
    """A source built outside a pipeline counts no skipped entries."""


@dataclass(frozen=True)
class SourceSettings:
    """What the pipeline tells a source when it builds it (the camera's ``source`` section is the rest).

    Why at construction: a source is complete when built, and the pipeline never writes into it
    afterwards; a source built without settings (a test, a tool) gets the defaults, which are what a
    stand-alone source needs.
    """

    #: first frame number (edge_inspector/sources/seqstore.py); ignored by sources that are not ``numbered``
    seq_start: int = 0
    #: called while the source waits (pacing, polling an empty folder), so the pipeline's watchdog can
    #: tell a source that is idle on purpose from one that hangs
    heartbeat: Callable[[], None] = _no_beat
    #: the pipeline's decode pool decodes (edge_inspector/runtime/decodepool.py): a source that supports
    #: it returns ``Frame(image=None, encoded=...)`` and leaves decoding to the pool
    defer_decode: bool = False
    #: the daemon's ``state_dir``: where a source keeps progress across restarts (a watched folder's
    #: ``<camera>.folder``); None: nothing survives a restart
    state_dir: Path | None = None
    #: called with (entry name, reason) once per bad entry a source skips (a watched folder's links, FIFOs...)
    on_skip: Callable[[str, str], None] = _no_skip


class Source(ABC):
    """A frame source for one camera, built complete from its config section and ``SourceSettings``.

    ``open()`` raises SourceError when the source is unavailable; ``read()`` returns the next Frame,
    None when a finite source is exhausted, and raises SourceError when the connection is lost.
    """

    type: ClassVar[str]
    #: True: frame numbers come from the daemon's counters (``settings.seq_start``, unique across
    #: restarts); False: a source numbers frames itself from 0 (replay: by file position, reproducible)
    numbered: ClassVar[bool] = True

    def __init__(self, camera: str, config: Any, settings: SourceSettings | None = None):
        settings = settings or SourceSettings()
        self.camera = camera
        self.config = config
        self.seq = settings.seq_start if self.numbered else 0
        self.stop_event = threading.Event()
        self.heartbeat: Callable[[], None] = settings.heartbeat
        self.defer_decode = settings.defer_decode

    def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the device/folder; called again after a failure."""

    @abstractmethod
    def read(self) -> Frame | None:
        """Next frame, None at the end of a finite source."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the device; must be safe to call twice and from another thread."""

    def trigger(self, part: PartTrigger) -> bool:
        """A part was announced (MQTT trigger command). False (the default): the part id reaches the
        next frame through the grab loop's PartQueue (a hardware-triggered or free-running camera).
        True: the source takes the part's picture itself (a software trigger) and labels the frame --
        or, when no picture can come, reports an error frame for the part -- so a lost trigger can
        never leave its part id queued for the next part's frame."""
        return False

    def stop(self) -> None:
        """Ask a blocking ``read()`` to return soon (sets ``stop_event``)."""
        self.stop_event.set()

    def frames(self) -> Iterator[Frame]:
        """Iterate until the source is exhausted or stopped."""
        self.open()
        try:
            while not self.stop_event.is_set():
                frame = self.read()
                if frame is None:
                    return
                yield frame
        finally:
            self.close()

    def describe(self) -> str:
        return f"{self.type} source for camera {self.camera}"

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq += 1
        return seq

    def _pace(self, rate_fps: float, started: float, count: int) -> None:
        """Sleep until frame ``count`` is due at ``rate_fps`` (0 = no pacing), waking early on stop."""
        if rate_fps > 0:
            self._sleep(started + count / rate_fps - time.monotonic())

    def _sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``, beating every 0.2 s and returning at once when stopped."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not self.stop_event.is_set():
            self.stop_event.wait(min(left, 0.2))
            self.heartbeat()


def matches(name: str, patterns: str) -> bool:
    """Comma-separated glob patterns, case-insensitive; temporary/hidden names never match."""
    lower = name.lower()
    if lower.startswith(".") or lower.endswith(TEMP_SUFFIXES):
        return False
    return any(fnmatch(lower, p.strip().lower()) for p in patterns.split(",") if p.strip())


def list_images(folder: Path, patterns: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and matches(p.name, patterns))


class Backoff:
    """Exponential reconnect delay with jitter: base * 2^n, capped, +-jitter fraction.

    Why jitter: several cameras behind one switch that reboots must not reconnect in lockstep.
    """

    def __init__(self, base: float = 0.5, cap: float = 30.0, jitter: float = 0.2, rng: random.Random | None = None):
        self.base, self.cap, self.jitter = base, cap, jitter
        self.failures = 0
        self.rng = rng or random.Random()

    def next_delay(self) -> float:
        delay = min(self.cap, self.base * (2 ** self.failures))
        self.failures += 1
        return max(0.0, delay * (1 + self.rng.uniform(-self.jitter, self.jitter)))

    def reset(self) -> None:
        self.failures = 0
