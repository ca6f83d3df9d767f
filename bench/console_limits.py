"""Console upload limits against the red team's archives (issue 14, F10): refused before extraction?

Builds, in a temporary folder: 512 members of 1 MiB zeros (840 KB packed), 100,000 one-byte members,
and a 1,000,000-entry archive; runs each through the console's pre-extraction check
(``edge_inspector.console.uploads.check_zip`` with the default limits) and reports the decision,
the seconds and the peak-RSS growth, next to what ``zipfile.ZipFile().infolist()`` alone costs
on the 1M-entry archive (what the console did before). Prints JSON, then one line per archive.

    .venv/bin/python bench/console_limits.py
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edge_inspector.console.uploads import MIB, UploadLimits, UploadRefused, check_zip  # noqa: E402

DEFAULTS = UploadLimits(max_upload_bytes=1024 * MIB, quota_bytes=4096 * MIB, max_entries=50_000,
                        max_extracted_bytes=2048 * MIB)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def many_entries(path: Path, n: int) -> Path:
    """A valid stored ZIP of ``n`` empty members, written record by record (zipfile would take minutes)."""
    crc = zlib.crc32(b"")
    central = bytearray()
    with open(path, "wb") as fh:
        offset = 0
        for i in range(n):
            name = f"m/{i:07d}.png".encode()
            local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 0, 0, len(name), 0) + name
            fh.write(local)
            central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, 0, 0, len(name), 0, 0,
                                   0, 0, 0, offset) + name
            offset += len(local)
        fh.write(central)
        count = min(n, 0xFFFF)
        fh.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central), offset, 0)
                 if n < 0xFFFF else b"")
        if n >= 0xFFFF:  # ZIP64 end records
            z64 = offset + len(central)
            fh.write(struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(central), offset))
            fh.write(struct.pack("<4sLQL", b"PK\x06\x07", 0, z64, 1))
            fh.write(struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0))
    return path


def check(path: Path) -> dict:
    before, t0 = rss_mb(), time.perf_counter()
    try:
        check_zip(path, DEFAULTS)
        decision = "accepted"
    except UploadRefused as exc:
        decision = f"refused: {exc}"
    return {"archive": path.name, "packed_bytes": path.stat().st_size, "decision": decision,
            "seconds": round(time.perf_counter() - t0, 4), "rss_growth_mb": round(rss_mb() - before, 1)}


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bomb = tmp / "bomb-512x1MiB.zip"
        with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
            for i in range(512):
                zf.writestr(f"d/train/good/{i:03d}.png", b"\0" * MIB)
        small = tmp / "100k-one-byte.zip"
        with zipfile.ZipFile(small, "w", zipfile.ZIP_STORED) as zf:
            for i in range(100_000):
                zf.writestr(f"d/train/good/{i:06d}.png", b"x")
        million = many_entries(tmp / "1M-entries.zip", 1_000_000)
        rows = [check(bomb), check(small), check(million)]
        before, t0 = rss_mb(), time.perf_counter()
        with zipfile.ZipFile(million) as zf:
            n = len(zf.infolist())
        rows.append({"archive": "1M-entries.zip via ZipFile().infolist() (the old path)", "members": n,
                     "seconds": round(time.perf_counter() - t0, 2), "rss_growth_mb": round(rss_mb() - before, 1)})
    print(json.dumps(rows, indent=2))
    for r in rows:
        print(f"{r['archive']}: {r.get('decision', 'parsed')} in {r['seconds']} s, peak RSS +{r['rss_growth_mb']} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
