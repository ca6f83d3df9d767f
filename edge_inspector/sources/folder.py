"""Watched folder: each new image file is inspected once, never before it is completely written.

Why polling rather than inotify: it works on network shares (SMB/NFS, where smart cameras drop
files) and needs no extra dependency; listing a folder every 100 ms costs nothing measurable.

**Complete** means: the size and mtime stayed unchanged for ``settle_ms``, *and* the file decodes.
A file that does not decode although it looked settled is usually a writer that paused longer than
``settle_ms``; it is held back and looked at again, and only when it stays unchanged (and undecodable)
for ``incomplete_grace_ms`` does it get its ``error`` verdict. Writers that write then rename from
``.tmp``/``.part`` are never read early at all (those names are ignored), which is what a camera
should do. **Once**: a file is identified by (name, size, mtime) *as it was read* (fstat of the open
file), so one part gives one verdict; a file replaced later (new size or mtime) is a new part.

**Bad entries never stop the camera**: a symlink loop, a link into a folder the daemon cannot
search, a FIFO or a device named ``*.png``, a file bigger than ``max_file_mb`` are skipped (logged
once each, counted in ``folder_skipped_total{camera,reason}``) or, for a too-big file, given an
``error`` verdict without being read. Symbolic links are followed only when their target stays
inside the watched folder, unless ``follow_symlinks`` is set.

**Across restarts** (with the daemon's ``state_dir``): progress is recorded when a verdict has been
handed to every publisher (``Frame.done``), not when the file is read, so a ``kill -9`` never skips
the files still queued in the pipeline. ``<state_dir>/<camera>.folder`` holds a mark (every file
with an mtime up to it is done) plus the names done above the mark; at the next start, files newer
than the mark that are not listed as done are inspected, the others are not inspected twice.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..parts import compile_part_pattern, part_from_name
from ..preprocess import ImageDecodeError, decode_image
from .base import Frame, Source, SourceError, SourceSettings, matches

log = logging.getLogger(__name__)

EMPTY_SETTLE_S = 1.0  # a zero-byte file is read (and reported) once it stayed empty at least this long

Key = tuple[str, int, int]  # (name, size, mtime_ns)


@dataclass
class _Entry:
    """A listed file that passed the checks: where to open it and what the listing saw."""

    name: str
    path: str  # the path to open: the file itself, or a link's resolved target inside the folder
    size: int
    mtime_ns: int
    link: bool


def looks_truncated(data: bytes) -> bool:
    """A JPEG without its end-of-image marker or a PNG without its IEND chunk near the end: still being
    written. (libjpeg decodes a truncated JPEG to a half-grey image without an error.)"""
    tail = data[-4096:]
    if data[:2] == b"\xff\xd8":
        return b"\xff\xd9" not in tail
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return b"IEND" not in tail
    return False


class FolderSource(Source):
    type = "folder"

    def __init__(self, camera: str, config: Any, settings: SourceSettings | None = None):
        super().__init__(camera, config, settings)
        settings = settings or SourceSettings()
        #: progress across restarts, with the daemon's ``state_dir`` (see the module docstring)
        self.state_path: Path | None = None if settings.state_dir is None else settings.state_dir / f"{camera}.folder"
        #: called with (file name, reason) once per bad entry; the grab loop counts it in the metrics
        self.on_skip: Callable[[str, str], None] = settings.on_skip

    # -- progress -----------------------------------------------------------------------------
    def _load_state(self) -> tuple[int | None, set[Key]]:
        if self.state_path is None:
            return None, set()
        try:
            text = self.state_path.read_text().strip()
        except FileNotFoundError:
            return None, set()
        except OSError as exc:
            log.warning("folder %s: cannot read progress %s (%s); starting without it", self.config.path,
                        self.state_path, exc)
            return None, set()
        try:
            if text.lstrip("-").isdigit():  # the format before 2026-12: the mark alone
                return int(text), set()
            data = json.loads(text)
            return int(data["mark"]), {(str(n), int(s), int(m)) for n, s, m in data.get("done", [])}
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("folder %s: progress file %s is not readable (%s); starting without it",
                        self.config.path, self.state_path, exc)
            return None, set()

    def _save_state(self) -> None:
        """Write mark + the done keys above it (called with ``self._lock`` held)."""
        if self.state_path is None:
            return
        state = {"mark": self.mark, "done": sorted([n, s, m] for n, s, m in self.done_above)}
        tmp = self.state_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(state) + "\n")
            os.replace(tmp, self.state_path)
        except OSError as exc:
            if not self._state_warned:
                log.warning("folder %s: cannot record progress in %s: %s", self.config.path, self.state_path, exc)
                self._state_warned = True

    def _finished(self, key: Key) -> None:
        """A frame of this folder was handed to every publisher (or deliberately dropped): advance."""
        with self._lock:
            self.inflight.pop(key, None)
            if key[2] > self.mark:
                self.done_above.add(key)
            # every file not yet done bounds the mark: nothing at or below the mark may be outstanding
            outstanding = [m for (_, _, m) in self.inflight] + [e.mtime_ns for e in self.ready] + \
                [m for (_, m, _) in self.pending.values()] + [m for (_, m, _) in self.failed.values()]
            low = min(outstanding, default=None)
            done = [m for (_, _, m) in self.done_above]
            candidate = max(done, default=self.mark)
            if low is not None:
                candidate = min(candidate, low - 1)
            if candidate > self.mark:
                self.mark = candidate
                self.done_above = {k for k in self.done_above if k[2] > candidate}
            self._save_state()

    # -- listing ------------------------------------------------------------------------------
    def open(self) -> None:
        folder: Path = self.config.path
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SourceError(f"folder {folder}: cannot create or open ({exc.strerror or exc})") from exc
        if hasattr(self, "handled"):
            return
        self._lock = threading.Lock()  # the publisher thread reports done frames; the grab thread lists
        self._state_warned = False
        self.handled: set[Key] = set()  # decided (or deliberately skipped) this run
        self.pending: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, first seen stable)
        self.failed: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, when) settled, no decode
        self.ready: list[_Entry] = []  # complete and not yet read
        self.inflight: dict[Key, None] = {}  # read, verdict not yet handed over
        self.bad: dict[str, str] = {}  # name -> reason already reported
        self._final: set[str] = set()  # names to report even if they do not decode (grace is over)
        mark, done = self._load_state()
        self.mark = mark if mark is not None else -1
        self.done_above = {k for k in done if k[2] > self.mark}
        if mark is not None or not self.config.process_existing:
            newest = -1
            for entry in self._scan():
                key = (entry.name, entry.size, entry.mtime_ns)
                if mark is None or entry.mtime_ns <= mark or key in done:  # seen earlier, or not wanted
                    self.handled.add(key)
                    newest = max(newest, entry.mtime_ns)
            if mark is None:
                with self._lock:
                    self.mark = newest  # what was skipped now stays skipped after a restart
                    self._save_state()

    def _skip(self, name: str, reason: str, detail: str) -> None:
        if self.bad.get(name) == reason:
            return
        self.bad[name] = reason
        log.warning("folder %s: skipping %s: %s", self.config.path, name, detail)
        try:
            self.on_skip(name, reason)
        except Exception:  # noqa: BLE001 - counting must never stop the camera
            log.exception("folder %s: counting a skipped entry failed", self.config.path)

    def _scan(self) -> list[_Entry]:
        """List matching regular files; a bad entry is skipped and reported, never fatal to the listing."""
        folder = self.config.path
        try:
            real_folder = os.path.realpath(folder)
            with os.scandir(folder) as it:
                entries = [e for e in it if matches(e.name, self.config.pattern)]
        except OSError as exc:
            raise SourceError(f"folder {folder}: cannot list ({exc.strerror or exc})") from exc
        out = []
        for e in entries:
            try:
                link = e.is_symlink()
                target = e.path
                if link:
                    target = os.path.realpath(e.path)
                    inside = os.path.commonpath([real_folder, target]) == real_folder
                    if not inside and not self.config.follow_symlinks:
                        self._skip(e.name, "link_outside", f"symbolic link to {target}, outside the watched folder "
                                   "(set follow_symlinks: true to allow)")
                        continue
                    st = os.stat(e.path)
                else:
                    st = e.stat(follow_symlinks=False)
            except OSError as exc:
                reason = {errno.ELOOP: "link_loop", errno.EACCES: "permission", errno.EPERM: "permission",
                          errno.ENOENT: "dangling_link" if e.is_symlink() else "vanished"}.get(exc.errno, "unreadable")
                if reason != "vanished":
                    self._skip(e.name, reason, exc.strerror or str(exc))
                continue
            if stat.S_ISDIR(st.st_mode):
                continue  # sub-folders are not watched
            if not stat.S_ISREG(st.st_mode):
                self._skip(e.name, "not_a_file", "not a regular file (a FIFO, socket or device would block a read)")
                continue
            self.bad.pop(e.name, None)
            out.append(_Entry(e.name, target, st.st_size, st.st_mtime_ns, link))
        present = {e.name for e in entries}
        for name in [n for n in self.bad if n not in present]:
            del self.bad[name]
        return out

    def _poll(self) -> None:
        entries = self._scan()
        with self._lock:
            self._poll_locked(entries)

    def _poll_locked(self, entries: list[_Entry]) -> None:
        now = time.monotonic()
        settle = self.config.settle_ms / 1000.0
        grace = self.config.incomplete_grace_ms / 1000.0
        present = set()
        ready = []
        for entry in entries:
            present.add(entry.name)
            key = (entry.name, entry.size, entry.mtime_ns)
            if key in self.handled or key in self.inflight:
                continue
            failed = self.failed.get(entry.name)
            if failed is not None:
                if failed[:2] != (entry.size, entry.mtime_ns):
                    del self.failed[entry.name]  # it changed: the writer was not done; settle again
                elif now - failed[2] >= grace:
                    del self.failed[entry.name]
                    ready.append((entry, True))  # stayed undecodable and unchanged: a bad file, report it
                    continue
                else:
                    continue
            seen = self.pending.get(entry.name)
            if seen is None or seen[:2] != (entry.size, entry.mtime_ns):
                self.pending[entry.name] = (entry.size, entry.mtime_ns, now)  # new or still growing
            elif now - seen[2] >= (settle if entry.size > 0 else max(10 * settle, EMPTY_SETTLE_S)):
                # an empty file gets a longer grace (an upload may not have started writing), then an
                # 'error' verdict: silently waiting forever would hide a camera that writes empty files
                del self.pending[entry.name]
                ready.append((entry, entry.size == 0))
        # forget files that were removed, so the memory stays bounded over months
        self.handled = {k for k in self.handled if k[0] in present}
        for table in (self.pending, self.failed):
            for name in [n for n in table if n not in present]:
                del table[name]
        ready.sort(key=lambda r: (r[0].mtime_ns, r[0].name))  # arrival order
        self.ready += [e for e, _ in ready]
        self._final |= {e.name for e, final in ready if final}

    # -- reading ------------------------------------------------------------------------------
    def _read_bytes(self, entry: _Entry) -> tuple[bytes | None, Key, str | None]:
        """Open without following a link that appeared since the listing; never block on a FIFO; refuse
        a file larger than ``max_file_mb`` before reading it. Returns (data, key as read, error)."""
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        limit = int(self.config.max_file_mb * 1024 * 1024)
        fd = os.open(entry.path, flags)
        try:
            st = os.fstat(fd)
            key = (entry.name, st.st_size, st.st_mtime_ns)
            if not stat.S_ISREG(st.st_mode):
                return None, key, "not a regular file"
            if st.st_size > limit:
                return None, key, (f"file is {st.st_size / 2**20:.1f} MiB, more than max_file_mb "
                                   f"{self.config.max_file_mb:g}; not read")
            chunks, left = [], limit + 1
            while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
                chunks.append(chunk)
                left -= len(chunk)
            data = b"".join(chunks)
            if len(data) > limit:
                return None, key, f"file grew beyond max_file_mb {self.config.max_file_mb:g} while read; not read"
            return data, key, None
        finally:
            os.close(fd)

    def read(self) -> Frame | None:
        while not self.stop_event.is_set():
            if not self.ready:
                self._poll()
            if self.ready:
                with self._lock:
                    entry = self.ready.pop(0)
                    final = entry.name in self._final
                    self._final.discard(entry.name)
                path = self.config.path / entry.name
                listed = (entry.name, entry.size, entry.mtime_ns)
                try:
                    data, key, error = self._read_bytes(entry)
                except OSError as exc:
                    if exc.errno == errno.ENOENT:
                        continue  # removed between listing and reading: nothing to inspect
                    if exc.errno == errno.ELOOP:
                        self._skip(entry.name, "link_replaced", "became a symbolic link after it was listed")
                        self.handled.add(listed)
                        continue
                    data, key, error = None, listed, f"{path}: cannot read file ({exc.strerror or exc})"
                if error is None and key != listed and not final:
                    with self._lock:
                        self.pending[entry.name] = (key[1], key[2], time.monotonic())  # still being written
                    continue
                image = None
                if error is None:
                    try:
                        if looks_truncated(data):
                            raise ImageDecodeError(f"{path}: truncated (no end-of-image marker)")
                        image = decode_image(data, name=str(path))
                    except ImageDecodeError as exc:
                        error = str(exc)
                        if not final:  # settled but incomplete: a writer that paused; look again later
                            with self._lock:
                                self.failed[entry.name] = (key[1], key[2], time.monotonic())
                            continue
                        if image is None and looks_truncated(data):
                            try:  # the grace is over: inspect what there is (a camera may omit the marker)
                                image, error = decode_image(data, name=str(path)), None
                            except ImageDecodeError as exc2:
                                error = str(exc2)
                elif not error.startswith(str(path)):
                    error = f"{path}: {error}"
                self.handled.add(key)
                with self._lock:
                    self.inflight[key] = None
                # captured_at is when the camera wrote the file; latency is still measured from now
                return Frame(self.camera, self._next_seq(), image, error=error, source=str(path),
                             captured_wall=key[2] / 1e9, done=lambda k=key: self._finished(k),
                             part_id=part_from_name(compile_part_pattern(self.config.part_id_pattern), entry.name))
            self._sleep(self.config.poll_ms / 1000.0)
        return None

    def describe(self) -> str:
        return f"folder {self.config.path} (settle {self.config.settle_ms} ms)"
