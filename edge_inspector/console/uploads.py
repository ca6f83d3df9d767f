"""Limits on what logged-in users may put on the console's disk: upload size, ZIP shape, per-user quota.

The red team filled the console's disk from a normal login (issue 14, F10): an 840 KB ZIP of
512 one-MiB members of zeros became 537 MB (each member stayed under the per-member ratio
check), 100,000 one-byte members were all extracted, a 900 MiB upload was kept, a 1,000,000-entry
ZIP cost 472 MB of memory before it was refused, and nothing rejected was ever deleted. So:

- the request body is cut off at ``MAX_UPLOAD_BYTES`` while it streams (``LimitedUploadHandler``;
  waitress gets the same limit, so a bigger body never reaches Django);
- a user's stored archives plus their extracted size count against ``UPLOAD_QUOTA_BYTES``;
- a ZIP's entry count and central-directory size are read from its end-of-central-directory
  record *before* ``zipfile.ZipFile`` parses anything, then the declared total size and the
  whole archive's compression ratio are checked before a byte is extracted.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler

MIB = 1 << 20
# Real image datasets barely compress (PNG/JPEG are compressed already); a whole archive that
# expands more than this is a bomb even when each member is small.
MAX_ARCHIVE_RATIO = 50
RATIO_MIN_BYTES = 16 * MIB  # below this the ratio says nothing (a handful of blank masks)
CD_BYTES_PER_ENTRY = 1024  # central-directory budget per allowed entry (46-byte header + name + extras)
_EOCD = struct.Struct("<4s4H2LH")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


class UploadRefused(ValueError):
    """An upload or archive is over a limit; the message names the limit and the setting that sets it."""


@dataclass(frozen=True)
class UploadLimits:
    """The console's upload limits (settings.CONSOLE, from ``EDGE_INSPECTOR_*`` variables)."""

    max_upload_bytes: int
    quota_bytes: int
    max_entries: int
    max_extracted_bytes: int

    @classmethod
    def current(cls) -> UploadLimits:
        c = settings.CONSOLE
        return cls(c["MAX_UPLOAD_MB"] * MIB, c["UPLOAD_QUOTA_MB"] * MIB, c["MAX_ZIP_ENTRIES"],
                   c["MAX_EXTRACTED_MB"] * MIB)


@dataclass(frozen=True)
class ZipShape:
    """What a ZIP's directory declares: members, packed and unpacked bytes."""

    entries: int
    compressed_bytes: int
    uncompressed_bytes: int


def _mb(n: int) -> str:
    return f"{n / MIB:.1f} MB"


class LimitedUploadHandler(TemporaryFileUploadHandler):
    """Django's temporary-file upload handler, stopped once the body passes ``MAX_UPLOAD_MB``.

    The refusal is left on the request (``console_upload_refused``) so the view can answer with a
    form error instead of a reset connection; the partial temporary file is deleted by Django.
    """

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):  # noqa: N803
        self.limit = UploadLimits.current().max_upload_bytes
        # A declared body over the limit (+ the multipart envelope) is refused at its first chunk.
        self.received = content_length if content_length and content_length > self.limit + MIB else 0
        return super().handle_raw_input(input_data, META, content_length, boundary, encoding)

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self._refuse(self.received)
        return super().receive_data_chunk(raw_data, start)

    def _refuse(self, size: int) -> None:
        self.request.console_upload_refused = (
            f"upload of {_mb(size)} or more exceeds the limit of {_mb(self.limit)} (EDGE_INSPECTOR_MAX_UPLOAD_MB)")
        raise StopUpload(connection_reset=False)


def _read_tail(path: Path) -> tuple[bytes, int]:
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        start = max(0, size - (_EOCD.size + 0xFFFF))
        fh.seek(start)
        return fh.read(), start


def directory_size(path: Path) -> tuple[int, int]:
    """(entry count, central-directory bytes) from the end-of-central-directory record (ZIP64 too).

    This reads at most 64 KiB + 22 bytes from the end, so an archive listing millions of members
    is refused before ``ZipFile`` parses (and allocates) its directory.
    """
    tail, start = _read_tail(path)
    pos = len(tail) - _EOCD.size if tail[-_EOCD.size:-_EOCD.size + 4] == b"PK\x05\x06" else tail.rfind(b"PK\x05\x06")
    if pos < 0 or pos + _EOCD.size > len(tail):
        raise UploadRefused(f"{path.name}: not a ZIP archive (no end-of-central-directory record)")
    _, _, _, _, entries, cd_size, _, _ = _EOCD.unpack_from(tail, pos)
    if entries == 0xFFFF or cd_size == 0xFFFFFFFF:  # ZIP64: the real figures are in the ZIP64 record
        loc = pos - _ZIP64_LOCATOR.size
        if loc < 0 or tail[loc:loc + 4] != b"PK\x06\x07":
            raise UploadRefused(f"{path.name}: ZIP64 archive without its ZIP64 locator")
        _, _, offset, _ = _ZIP64_LOCATOR.unpack_from(tail, loc)
        with open(path, "rb") as fh:
            fh.seek(offset)
            record = fh.read(_ZIP64_EOCD.size)
        if len(record) < _ZIP64_EOCD.size or record[:4] != b"PK\x06\x06":
            raise UploadRefused(f"{path.name}: ZIP64 end-of-central-directory record missing or corrupt")
        fields = _ZIP64_EOCD.unpack(record)
        entries, cd_size = fields[7], fields[8]
    return entries, cd_size


def check_zip(path: Path, limits: UploadLimits) -> ZipShape:
    """Refuse an archive whose directory is too big, or that would unpack to too much, before extracting."""
    import zipfile

    entries, cd_size = directory_size(path)
    if entries > limits.max_entries:
        raise UploadRefused(f"{path.name}: {entries} members exceed the limit of {limits.max_entries} "
                            "(EDGE_INSPECTOR_MAX_ZIP_ENTRIES)")
    if cd_size > limits.max_entries * CD_BYTES_PER_ENTRY:
        raise UploadRefused(f"{path.name}: central directory of {_mb(cd_size)} is larger than "
                            f"{limits.max_entries} members need: refused")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UploadRefused(f"{path.name}: not a readable ZIP archive ({exc})") from exc
    if len(members) > limits.max_entries:  # the record may understate what the directory holds
        raise UploadRefused(f"{path.name}: {len(members)} members exceed the limit of {limits.max_entries} "
                            "(EDGE_INSPECTOR_MAX_ZIP_ENTRIES)")
    shape = ZipShape(len(members), sum(i.compress_size for i in members), sum(i.file_size for i in members))
    if shape.uncompressed_bytes > limits.max_extracted_bytes:
        raise UploadRefused(f"{path.name}: unpacks to {_mb(shape.uncompressed_bytes)}, over the limit of "
                            f"{_mb(limits.max_extracted_bytes)} (EDGE_INSPECTOR_MAX_EXTRACTED_MB)")
    if (shape.uncompressed_bytes > RATIO_MIN_BYTES
            and shape.uncompressed_bytes > MAX_ARCHIVE_RATIO * max(shape.compressed_bytes, 1)):
        raise UploadRefused(f"{path.name}: {_mb(shape.compressed_bytes)} of members unpack to "
                            f"{_mb(shape.uncompressed_bytes)} (ratio > {MAX_ARCHIVE_RATIO}): refused as a zip bomb")
    return shape


def used_bytes(username: str) -> int:
    """Disk a user's uploads hold now: each stored archive plus what it unpacked to."""
    from .models import Dataset

    total = 0
    for record in Dataset.objects.filter(source="zip", created_by=username):
        path = Path(record.path)
        try:
            total += path.stat().st_size
        except OSError:
            continue  # deleted (refused, or removed by an administrator): no longer counts
        counts = record.counts if isinstance(record.counts, dict) else {}
        total += int(counts.get("extracted_bytes", 0) or 0)
    return total


def check_quota(username: str, incoming: int, limits: UploadLimits) -> None:
    used = used_bytes(username)
    if used + incoming > limits.quota_bytes:
        raise UploadRefused(f"{username}: this upload ({_mb(incoming)}) and your datasets ({_mb(used)}) exceed "
                            f"your quota of {_mb(limits.quota_bytes)} (EDGE_INSPECTOR_UPLOAD_QUOTA_MB); ask an "
                            "administrator to remove old datasets")
