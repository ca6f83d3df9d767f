"""Safe extraction of dataset ZIPs into a cache folder.

Datasets arrive as archives from customers and colleagues; a crafted or broken archive must not
write outside the cache (absolute paths, ``..``, symlinks) or fill the disk (zip bombs). Every
member is checked before anything is written, and the bytes actually written are counted too,
since the sizes in a ZIP's directory can lie.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from .types import DatasetError

MAX_MEMBERS = 200_000
MAX_RATIO = 200  # uncompressed/compressed; images compress far less than this, bombs far more
_RATIO_MIN_BYTES = 1 << 20  # tiny files may compress well (e.g. blank masks): only judge large ones
COMPLETE = ".edge-inspector-complete"
SOURCE = ".edge-inspector-source"  # the archive an extraction came from, to prune stale versions


def default_cache_dir() -> Path:
    """``$EDGE_INSPECTOR_CACHE`` or ``$XDG_CACHE_HOME/edge-inspector/archives`` (``~/.cache`` by default)."""
    env = os.environ.get("EDGE_INSPECTOR_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edge-inspector" / "archives"


def _check_member(zip_path: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or "\\" in name:
        raise DatasetError(f"{zip_path}: unsafe member {name!r}: absolute or Windows path")
    if ".." in PurePosixPath(name).parts:
        raise DatasetError(f"{zip_path}: unsafe member {name!r}: '..' would escape the extraction folder")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise DatasetError(f"{zip_path}: member {name!r} is a symbolic link; links are refused")
    if info.flag_bits & 0x1:
        raise DatasetError(f"{zip_path}: member {name!r} is encrypted; expected an unencrypted archive")
    if info.file_size > _RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise DatasetError(f"{zip_path}: member {name!r} expands {info.compress_size} -> {info.file_size} bytes "
                           f"(ratio > {MAX_RATIO}): refused as a zip bomb")


def _prune_stale(cache: Path, zip_path: Path, keep: Path) -> None:
    """Remove earlier extractions of the same archive path (it was replaced): edge disks are small."""
    for entry in cache.glob(f"{zip_path.stem}-*"):
        source = entry / SOURCE
        if entry != keep and source.is_file() and source.read_text() == str(zip_path):
            shutil.rmtree(entry, ignore_errors=True)


def extract_zip(zip_path: Path | str, cache_dir: Path | str | None = None, *, max_mb: int = 2048,
                max_members: int = MAX_MEMBERS) -> Path:
    """Extract ``zip_path`` once into the cache and return the extracted folder.

    The folder is keyed by the archive's path, size and modification time, so a changed archive
    is extracted afresh; extraction goes to a temporary folder renamed into place only when
    complete, so an interrupted run never leaves a half dataset that looks valid.
    """
    zip_path = Path(zip_path).resolve()
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    try:
        st = zip_path.stat()
    except OSError as exc:
        raise DatasetError(f"{zip_path}: cannot read archive ({exc.strerror or exc})") from exc
    key = hashlib.sha256(f"{zip_path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache / f"{zip_path.stem}-{key}"
    if (target / COMPLETE).exists():
        return target
    limit = max_mb * (1 << 20)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{zip_path}: not a readable ZIP archive ({exc})") from exc
    with archive:
        members = archive.infolist()
        if len(members) > max_members:
            raise DatasetError(f"{zip_path}: {len(members)} members exceed the limit of {max_members}")
        for info in members:
            _check_member(zip_path, info)
        declared = sum(i.file_size for i in members)
        if declared > limit:
            raise DatasetError(f"{zip_path}: uncompressed size {declared / (1 << 20):.1f} MB exceeds the limit of "
                               f"{max_mb} MB (raise max_archive_mb if the archive is trusted)")
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{zip_path.stem}-", dir=cache))
        try:
            written = 0
            for info in members:
                if info.filename.startswith("__MACOSX/"):
                    continue
                dest = tmp.joinpath(*PurePosixPath(info.filename).parts)
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                member_bytes = 0
                with archive.open(info) as src, open(dest, "wb") as out:
                    while chunk := src.read(1 << 20):
                        member_bytes += len(chunk)
                        written += len(chunk)
                        if member_bytes > info.file_size or written > limit:
                            raise DatasetError(f"{zip_path}: member {info.filename!r} expands beyond its declared "
                                               f"size or the {max_mb} MB limit: refused as a zip bomb")
                        out.write(chunk)
            (tmp / SOURCE).write_text(str(zip_path))
            (tmp / COMPLETE).touch()
            shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
            _prune_stale(cache, zip_path, keep=target)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
            raise DatasetError(f"{zip_path}: archive is corrupt or cannot be extracted ({exc})") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
