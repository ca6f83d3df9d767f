"""ZIP datasets: read through a cache, and hostile archives refused before anything is written."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from edge_inspector.data.archive import extract_zip
from edge_inspector.data.readers import load_dataset
from edge_inspector.data.types import DatasetError

from . import builders


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_zip_of_mvtec_with_top_folder(tmp_path: Path, demo_dataset: Path) -> None:
    zip_path = builders.zip_folder(demo_dataset, tmp_path / "washers.zip", prefix="washer/")
    cache = tmp_path / "cache"
    ds = load_dataset(zip_path, cache_dir=cache)
    direct = load_dataset(demo_dataset)
    assert ds.name == "washer" and ds.layout == "mvtec"
    assert ds.split_info["counts"] == direct.split_info["counts"]
    assert ds.root.is_relative_to(cache) and ds.split_info["source"] == str(zip_path)
    assert ds.digest() == direct.digest()
    # second read reuses the extraction
    marker = next(cache.iterdir()) / ".edge-inspector-complete"
    before = marker.stat().st_mtime_ns
    load_dataset(zip_path, cache_dir=cache)
    assert marker.stat().st_mtime_ns == before and len(list(cache.iterdir())) == 1


def test_zip_of_plain_folders_at_top_level(tmp_path: Path) -> None:
    src = builders.folders(tmp_path / "src")
    ds = load_dataset(builders.zip_folder(src, tmp_path / "line7.zip"), cache_dir=tmp_path / "cache")
    assert ds.name == "line7" and ds.layout == "folders" and ds.split_info["scheme"] == "stratified"
    assert len(ds.samples) == 20


def _evil_zip(path: Path, name: str, data: bytes = b"x", mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("cat/train/good/0.png", b"x")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return path


@pytest.mark.parametrize("name", ["../evil.png", "cat/../../evil.png", "/etc/evil.png", "C:/evil.png",
                                  "cat\\..\\evil.png"])
def test_path_traversal_is_refused(tmp_path: Path, name: str) -> None:
    zip_path = _evil_zip(tmp_path / "evil.zip", name)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match=f"{zip_path}: unsafe member"):
        load_dataset(zip_path, cache_dir=cache)
    assert _files(cache) == [] and not (tmp_path / "evil.png").exists()


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    zip_path = _evil_zip(tmp_path / "link.zip", "cat/train/good/1.png", b"/etc/passwd", stat.S_IFLNK | 0o777)
    with pytest.raises(DatasetError, match="symbolic link"):
        load_dataset(zip_path, cache_dir=tmp_path / "cache")
    assert _files(tmp_path / "cache") == []


def test_oversize_archive_is_refused(tmp_path: Path) -> None:
    zip_path = tmp_path / "big.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(3):
            zf.writestr(f"cat/train/good/{i}.bin", os.urandom(600_000))  # incompressible, 1.7 MB in all
    with pytest.raises(DatasetError, match="exceeds the limit of 1 MB"):
        load_dataset(zip_path, max_archive_mb=1, cache_dir=tmp_path / "cache")
    assert _files(tmp_path / "cache") == []


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    zip_path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cat/train/good/0.png", b"\0" * (20 << 20))  # 20 MB of zeros in ~20 kB
    assert zip_path.stat().st_size < 100_000
    with pytest.raises(DatasetError, match="zip bomb"):
        load_dataset(zip_path, cache_dir=tmp_path / "cache")


def test_member_count_limit_and_garbage_zip(tmp_path: Path) -> None:
    zip_path = tmp_path / "many.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        for i in range(11):
            zf.writestr(f"f{i}", b"")
    with pytest.raises(DatasetError, match="11 members exceed the limit of 10"):
        extract_zip(zip_path, tmp_path / "cache", max_members=10)
    (tmp_path / "junk.zip").write_bytes(b"PK not really")
    with pytest.raises(DatasetError, match="junk.zip: not a readable ZIP"):
        load_dataset(tmp_path / "junk.zip", cache_dir=tmp_path / "cache")


def test_zip_with_corrupt_image_names_the_extracted_file(tmp_path: Path) -> None:
    src = builders.mvtec(tmp_path / "src")
    (src / "test" / "good" / "000.png").write_bytes(b"garbage")
    zip_path = builders.zip_folder(src, tmp_path / "c.zip", prefix="cat/")
    with pytest.raises(DatasetError, match="test/good/000.png: corrupt"):
        load_dataset(zip_path, cache_dir=tmp_path / "cache")


def test_tests_never_extract_into_the_home_cache(tmp_path: Path, demo_dataset: Path) -> None:
    ds = load_dataset(builders.zip_folder(demo_dataset, tmp_path / "d.zip"))  # default cache dir
    assert ds.root.is_relative_to(Path(os.environ["EDGE_INSPECTOR_CACHE"]))
    assert not ds.root.is_relative_to(Path.home() / ".cache")


def test_replaced_archive_is_extracted_afresh_and_the_old_copy_pruned(tmp_path: Path) -> None:
    src = builders.mvtec(tmp_path / "src", n_train=3)
    zip_path = builders.zip_folder(src, tmp_path / "line.zip", prefix="cat/")
    cache = tmp_path / "cache"
    first = load_dataset(zip_path, cache_dir=cache)
    builders.image(src / "train" / "good" / "extra.png")
    builders.zip_folder(src, zip_path, prefix="cat/")
    os.utime(zip_path, ns=(1, 1))  # a different modification time, whatever the clock resolution
    second = load_dataset(zip_path, cache_dir=cache)
    assert len(second.samples) == len(first.samples) + 1
    assert [p.name for p in cache.iterdir()] == [second.root.parent.name]
