"""The disk spool on real SQLite files: order, persistence, overflow policies, exclusive lock."""

from __future__ import annotations

import pytest

from edge_inspector.publishers.base import PublisherError
from edge_inspector.publishers.spool import Spool


def test_order_and_removal(tmp_path):
    sp = Spool(tmp_path, max_messages=100)
    seqs = [sp.append("a/b", f"m{i}".encode()).seq for i in range(5)]
    assert seqs == sorted(seqs) and len(sp) == 5
    assert [e.payload for e in sp.read_after(0, 3)] == [b"m0", b"m1", b"m2"]
    assert [e.payload for e in sp.read_after(seqs[2], 10)] == [b"m3", b"m4"]
    assert sp.remove([seqs[0], seqs[1], 999_999]) == 2
    assert len(sp) == 3
    assert [e.payload for e in sp.read_after(0, 10)] == [b"m2", b"m3", b"m4"]
    sp.close()


def test_survives_reopen_and_keeps_order(tmp_path):
    sp = Spool(tmp_path, max_messages=100)
    for i in range(3):
        sp.append("t", f"old{i}".encode())
    sp.close()
    sp = Spool(tmp_path, max_messages=100)
    assert len(sp) == 3
    sp.append("t", b"new")
    assert [e.payload for e in sp.read_after(0, 10)] == [b"old0", b"old1", b"old2", b"new"]
    sp.close()


@pytest.mark.parametrize(
    ("policy", "kept"), [("drop-oldest", [b"2", b"3", b"4"]), ("drop-newest", [b"0", b"1", b"2"])]
)
def test_overflow_policy(tmp_path, policy, kept):
    sp = Spool(tmp_path, max_messages=3, overflow=policy)
    results = [sp.append("t", str(i).encode()) for i in range(5)]
    assert sum(r.dropped for r in results) == 2
    if policy == "drop-newest":
        assert [r.seq is None for r in results] == [False, False, False, True, True]
    assert len(sp) == 3
    assert [e.payload for e in sp.read_after(0, 10)] == kept
    sp.close()


def test_second_process_cannot_open_same_spool(tmp_path):
    sp = Spool(tmp_path, max_messages=10)
    import subprocess
    import sys

    code = (
        "from edge_inspector.publishers.spool import Spool\n"
        f"Spool({str(tmp_path)!r}, 10)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "in use by another process" in proc.stderr
    sp.close()
    with pytest.raises(PublisherError, match="closed"):
        sp.append("t", b"x")
