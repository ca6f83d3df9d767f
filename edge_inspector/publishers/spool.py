"""Durable, ordered, capped message spool for the MQTT publisher (SQLite in WAL mode).

Why SQLite WAL: an append is one fsync'd transaction (``synchronous=FULL``), so a verdict handed
to ``append`` survives a crash or power cut; ``seq`` (AUTOINCREMENT) gives a total order that
survives restarts; reading the head and deleting acknowledged entries are indexed operations;
and the file is inspectable with the ``sqlite3`` CLI on the inspection PC. Segment files would
need our own compaction and torn-write recovery.

Capacity: at most ``max_messages`` entries. When full, ``drop-oldest`` deletes the head (the
newest data wins: live monitoring) and ``drop-newest`` refuses the new entry (the history wins:
audits). The caller counts and logs what :meth:`append` reports as dropped.

One process per spool: an exclusive ``flock`` on ``<dir>/spool.lock`` stops two daemons (or a
daemon and a forgotten test run) from delivering the same entries twice.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge_inspector.publishers.base import PublisherError

log = logging.getLogger(__name__)

SPOOL_FILE = "spool.sqlite3"
LOCK_FILE = "spool.lock"


@dataclass(frozen=True)
class SpoolEntry:
    """One spooled message; ``seq`` increases strictly in append order."""

    seq: int
    topic: str
    payload: bytes


@dataclass(frozen=True)
class AppendResult:
    """What :meth:`Spool.append` did: the new entry's seq (None if refused) and entries dropped."""

    seq: int | None
    dropped: int


class Spool:
    """Append at the tail, read from the head, remove after acknowledgement. Thread-safe."""

    def __init__(
        self,
        directory: Path | str,
        max_messages: int,
        overflow: Literal["drop-oldest", "drop-newest"] = "drop-oldest",
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"spool max_messages must be >= 1, got {max_messages}")
        self.directory = Path(directory)
        self.max_messages = max_messages
        self.overflow = overflow
        self._lock = threading.Lock()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise PublisherError(f"MQTT spool_dir {self.directory}: cannot create or open it: {exc}") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(self._lock_fd)
            raise PublisherError(
                f"MQTT spool_dir {self.directory} is in use by another process (lock {LOCK_FILE}); "
                "give each daemon its own spool_dir"
            ) from exc
        path = self.directory / SPOOL_FILE
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            # a small WAL (checkpoint every ~400 kB, file truncated back to 1 MiB): on a disk shared with
            # saved frames, the spool needs little more room than its messages (saving.min_free_mb)
            self._db.execute("PRAGMA wal_autocheckpoint=100")
            self._db.execute("PRAGMA journal_size_limit=1048576")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS spool ("
                " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " topic TEXT NOT NULL,"
                " payload BLOB NOT NULL,"
                " created_at REAL NOT NULL)"
            )
            self._count = int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])
        except sqlite3.DatabaseError as exc:
            os.close(self._lock_fd)
            raise PublisherError(f"MQTT spool {path}: not a usable SQLite spool: {exc}") from exc
        self._closed = False

    def __len__(self) -> int:
        return self._count

    def append(self, topic: str, payload: bytes) -> AppendResult:
        """Durably append one message (fsync'd before returning), applying the overflow policy."""
        with self._lock:
            self._check_open()
            dropped = 0
            if self._count >= self.max_messages:
                excess = self._count - self.max_messages + 1
                if self.overflow == "drop-newest":
                    return AppendResult(seq=None, dropped=1)
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    cur = self._db.execute(
                        "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT ?)", (excess,)
                    )
                    dropped = cur.rowcount
                    cur = self._db.execute(
                        "INSERT INTO spool (topic, payload, created_at) VALUES (?, ?, ?)",
                        (topic, payload, time.time()),
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            else:
                cur = self._db.execute(
                    "INSERT INTO spool (topic, payload, created_at) VALUES (?, ?, ?)", (topic, payload, time.time())
                )
            self._count += 1 - dropped
            return AppendResult(seq=int(cur.lastrowid), dropped=dropped)

    def read_after(self, seq: int, limit: int) -> list[SpoolEntry]:
        """Up to ``limit`` entries with a seq greater than ``seq``, in order."""
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM spool WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
            ).fetchall()
        return [SpoolEntry(int(s), str(t), bytes(p)) for s, t, p in rows]

    def remove(self, seqs: Iterable[int]) -> int:
        """Delete acknowledged entries (absent seqs are ignored); returns how many were deleted."""
        seqs = list(seqs)
        if not seqs:
            return 0
        with self._lock:
            self._check_open()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                deleted = 0
                for i in range(0, len(seqs), 500):
                    chunk = seqs[i : i + 500]
                    cur = self._db.execute(
                        f"DELETE FROM spool WHERE seq IN ({','.join('?' * len(chunk))})", chunk
                    )
                    deleted += cur.rowcount
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._count -= deleted
            return deleted

    def close(self) -> None:
        """Checkpoint and close the database, release the directory lock. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # a full disk: the WAL stays, SQLite replays it at the next open
                log.warning("MQTT spool %s: checkpoint at close failed (%s); the entries are safe in the WAL",
                            self.directory, exc)
            finally:
                self._db.close()
                os.close(self._lock_fd)

    def _check_open(self) -> None:
        if self._closed:
            raise PublisherError(f"MQTT spool {self.directory} is closed")
