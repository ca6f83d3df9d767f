"""Dataset readers: MVTec AD, VisA-style CSV, plain ``normal/`` + ``anomaly/<type>/`` folders and ZIPs of them.

Every reader returns one :class:`~edge_inspector.data.types.Dataset` whose samples carry their split,
so trainers and the evaluation never re-implement splitting. Bad data is refused here, once, with a
:class:`DatasetError` naming the file or folder, rather than failing later inside a training loop.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from ..preprocess import ImageDecodeError, to_bgr8
from .archive import COMPLETE, SOURCE, extract_zip
from .types import GOOD, Dataset, DatasetError, Sample, Split

log = logging.getLogger(__name__)

Scheme = Literal["native", "stratified"]
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
# Most elongated / least elongated image in one set (elongation = long side / short side, so a part
# photographed turned by 90 degrees counts the same). Real sets mix shapes: magnetic_tile spans
# elongations 1.0-2.8 (w/h 0.36-2.68) and is routinely resized to one square input. Beyond this
# limit the images are not one kind of picture any more (e.g. line-scan strips mixed with frames).
MAX_ASPECT_SPREAD = 4.0
MASK_ASPECT_TOLERANCE = 0.02  # a mask of another size is resized only if its aspect ratio matches
SPLIT_FORMAT = 1
_DECODE_THREADS = 4
_MASK_SUFFIXES = ("_mask", "")
_IGNORED_NAMES = frozenset({"Thumbs.db", "desktop.ini", COMPLETE, SOURCE})

# (resolved path, size, mtime_ns) -> (height, width): each image is decoded once per process
_size_cache: dict[tuple[str, int, int], tuple[int, int]] = {}


# ---------------------------------------------------------------------------------------- files
def image_size(path: Path) -> tuple[int, int]:
    """(height, width) of an image file, decoding it once to prove it is readable.

    The decode is the one the models' loading uses (``cv2`` unchanged + ``preprocess.to_bgr8``),
    so an image accepted here cannot fail later in the middle of a training run.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read image ({exc.strerror or exc})") from exc
    key = (str(path), st.st_size, st.st_mtime_ns)
    size = _size_cache.get(key)
    if size is None:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if st.st_size else None
        if image is None or image.ndim < 2 or image.size == 0:
            raise DatasetError(f"{path}: corrupt or unreadable image (OpenCV cannot decode it)")
        try:
            to_bgr8(image, str(path))
        except ImageDecodeError as exc:
            raise DatasetError(f"unusable image: {exc}") from exc
        size = _size_cache[key] = (int(image.shape[0]), int(image.shape[1]))
    return size


def _image_sizes(paths: list[Path]) -> dict[Path, tuple[int, int]]:
    """Sizes of many images, decoded in a few threads (OpenCV releases the GIL while decoding).

    Errors surface in the order of ``paths``, so the message names the same file on every run.
    """
    workers = max(1, min(_DECODE_THREADS, os.cpu_count() or 1))
    if workers == 1 or len(paths) < 32:
        return {p: image_size(p) for p in paths}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(paths, pool.map(image_size, paths), strict=True))


def _list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted; other files are ignored with a warning."""
    images = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name in _IGNORED_NAMES:
            continue
        if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(entry)
        else:
            log.warning("ignoring %s: not an image file (expected one of %s)", entry,
                        ", ".join(sorted(IMAGE_EXTENSIONS)))
    return images


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise DatasetError(f"{path}: missing folder ({what})")


def _require_images(folder: Path, what: str) -> list[Path]:
    images = _list_images(folder)
    if not images:
        kinds = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise DatasetError(f"{folder}: no images in this folder ({what}); expected {kinds} files")
    return images


def _mask_stem(mask: Path) -> str:
    return mask.stem[: -len("_mask")] if mask.stem.endswith("_mask") else mask.stem


def _match_masks(images: list[Path], image_dir: Path, mask_dir: Path | None) -> dict[Path, Path]:
    """Pair every mask in ``mask_dir`` (``<stem>_mask.png`` or ``<stem>.png``) with its image."""
    if mask_dir is None or not mask_dir.is_dir():
        return {}
    by_stem = {p.stem: p for p in images}
    pairs: dict[Path, Path] = {}
    for mask in _list_images(mask_dir):
        image = by_stem.get(_mask_stem(mask)) or by_stem.get(mask.stem)
        if image is None:
            raise DatasetError(f"{mask}: mask without image (no {_mask_stem(mask)}.* in {image_dir})")
        if image in pairs:
            raise DatasetError(f"{mask}: second mask for {image} (already {pairs[image]})")
        pairs[image] = mask
    return pairs


def _elongation(size: tuple[int, int]) -> float:
    h, w = size
    return max(h, w) / min(h, w)


def _warn_partial_masks(samples: list[Sample]) -> None:
    """Pixel metrics need every defect of a type masked; a partly masked type is usually a copy mistake."""
    by_type: dict[str, list[Sample]] = defaultdict(list)
    for s in samples:
        if s.label == 1:
            by_type[s.defect_type].append(s)
    for name, group in sorted(by_type.items()):
        missing = [s for s in group if s.mask_path is None]
        if 0 < len(missing) < len(group):
            log.warning("defect type %r: %d of %d images have no mask (e.g. %s); pixel metrics will skip them",
                        name, len(missing), len(group), missing[0].path)


def _check_images(samples: list[Sample], max_aspect_spread: float | None = MAX_ASPECT_SPREAD) -> None:
    """Decode every image and mask once: corrupt files, mask size mismatches, unusable size mixes."""
    every = _image_sizes([s.path for s in samples] + [s.mask_path for s in samples if s.mask_path is not None])
    sizes: dict[Path, tuple[int, int]] = {}
    for s in samples:
        h, w = sizes[s.path] = every[s.path]
        if s.mask_path is not None:
            mh, mw = every[s.mask_path]
            if (mh, mw) != (h, w) and abs((mw / mh) / (w / h) - 1) > MASK_ASPECT_TOLERANCE:
                raise DatasetError(f"{s.mask_path}: mask is {mw}x{mh} but its image {s.path} is {w}x{h}; "
                                   "a mask must have the image's size (or at least its aspect ratio)")
    if sizes and max_aspect_spread is not None:
        shape = {p: _elongation(hw) for p, hw in sizes.items()}
        square = min(shape, key=shape.__getitem__)
        long = max(shape, key=shape.__getitem__)
        if shape[long] / shape[square] > max_aspect_spread:
            (sh, sw), (lh, lw) = sizes[square], sizes[long]
            raise DatasetError(f"images differ in aspect ratio by more than a factor {max_aspect_spread:g}, so they "
                               f"cannot share one input size: {square} is {sw}x{sh}, {long} is {lw}x{lh} "
                               "(pass max_aspect_spread to accept the distortion)")


# -------------------------------------------------------------------------------------- layouts
def _is_mvtec(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "test").is_dir()


def _visa_csv(root: Path) -> Path | None:
    path = root / "split_csv" / "1cls.csv"
    return path if path.is_file() else None


def list_categories(path: Path | str) -> list[str]:
    """Names of the MVTec-layout categories (sub-folders with ``train/`` and ``test/``) under ``path``."""
    root = Path(path)
    _require_dir(root, "a folder of dataset categories")
    return [p.name for p in _subdirs(root) if _is_mvtec(p)]


def _read_mvtec(root: Path) -> tuple[list[Sample], dict]:
    """MVTec AD category: train/good, optional validation/good (MVTec LOCO), test/<type>, ground_truth/<type>."""
    good_dir = root / "train" / GOOD
    _require_dir(good_dir, "MVTec layout expects train/good/ with the normal training images")
    samples = [Sample(p, 0, GOOD, None, "train") for p in _require_images(good_dir, "normal training images")]
    for extra in _subdirs(root / "train"):
        if extra.name != GOOD:
            log.warning("ignoring %s: MVTec training data is train/good only", extra)
    native: dict = {}
    val_dir = root / "validation" / GOOD
    if val_dir.is_dir():
        samples += [Sample(p, 0, GOOD, None, "val") for p in _require_images(val_dir, "normal validation images")]
        native["val_source"] = "validation/good"
    type_dirs = _subdirs(root / "test")
    if not type_dirs:
        raise DatasetError(f"{root / 'test'}: no defect-type folders; expected test/good/ and test/<defect_type>/")
    gt = root / "ground_truth"
    if gt.is_dir():
        for mask_dir in _subdirs(gt):
            if mask_dir.name != GOOD and not (root / "test" / mask_dir.name).is_dir():
                raise DatasetError(f"{mask_dir}: masks without images (no folder test/{mask_dir.name})")
    for type_dir in type_dirs:
        images = _require_images(type_dir, f"test images of type {type_dir.name!r}")
        label = 0 if type_dir.name == GOOD else 1
        masks = _match_masks(images, type_dir, gt / type_dir.name) if label else {}
        samples += [Sample(p, label, type_dir.name, masks.get(p), "test") for p in images]
    return samples, native


def _read_folders(root: Path) -> list[Sample]:
    """Plain folders: normal/*, anomaly/<type>/* (or anomaly/*), optional masks/<type>/."""
    samples = [Sample(p, 0, GOOD, None, "train") for p in _require_images(root / "normal", "normal images")]
    anomaly = root / "anomaly"
    if not anomaly.is_dir():
        log.warning("%s: no anomaly/ folder; the dataset has normal images only", root)
        return samples
    loose = [p for p in anomaly.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    groups: list[tuple[str, list[Path], Path]] = []
    if loose:
        groups.append(("anomaly", sorted(loose), root / "masks"))
    for type_dir in _subdirs(anomaly):
        groups.append((type_dir.name, _require_images(type_dir, f"images of defect type {type_dir.name!r}"),
                       root / "masks" / type_dir.name))
    if not groups:
        raise DatasetError(f"{anomaly}: no images and no defect-type folders; expected anomaly/<defect_type>/*")
    known = {name for name, _, _ in groups}
    if (root / "masks").is_dir():
        for mask_dir in _subdirs(root / "masks"):
            if mask_dir.name not in known:
                raise DatasetError(f"{mask_dir}: masks without images (no folder anomaly/{mask_dir.name})")
    for name, images, mask_dir in groups:
        if name == "anomaly" and mask_dir == root / "masks":
            loose_masks = [m for m in mask_dir.iterdir() if m.is_file()] if mask_dir.is_dir() else []
            masks = _match_masks(images, anomaly, mask_dir) if loose_masks else {}
        else:
            masks = _match_masks(images, anomaly / name, mask_dir)
        samples += [Sample(p, 1, name, masks.get(p), "train") for p in images]
    return samples


def _read_visa(root: Path, csv_path: Path, category: str | None) -> tuple[list[Sample], str]:
    """VisA ``split_csv/1cls.csv``: columns object, split, label (normal/anomaly), image, mask."""
    try:
        with open(csv_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DatasetError(f"{csv_path}: cannot read ({exc.strerror or exc})") from exc
    need = {"object", "split", "label", "image", "mask"}
    if not rows or not need <= set(rows[0]):
        raise DatasetError(f"{csv_path}: expected a header with columns {sorted(need)}")
    objects = sorted({r["object"] for r in rows})
    if category is None:
        if len(objects) > 1:
            raise DatasetError(f"{csv_path}: {len(objects)} categories ({', '.join(objects)}); pick one with category=")
        category = objects[0]
    elif category not in objects:
        raise DatasetError(f"{csv_path}: no category {category!r}; available: {', '.join(objects)}")
    samples = []
    for line, r in enumerate(rows, start=2):
        if r["object"] != category:
            continue
        if r["split"] not in ("train", "test") or r["label"] not in ("normal", "anomaly"):
            raise DatasetError(f"{csv_path}:{line}: expected split train/test and label normal/anomaly, "
                               f"got {r['split']!r}/{r['label']!r}")
        image = root / r["image"]
        if not image.is_file():
            raise DatasetError(f"{csv_path}:{line}: image {image} does not exist")
        mask = root / r["mask"] if r["mask"].strip() else None
        if mask is not None and not mask.is_file():
            raise DatasetError(f"{csv_path}:{line}: mask {mask} does not exist")
        label = int(r["label"] == "anomaly")
        samples.append(Sample(image, label, "anomaly" if label else GOOD, mask if label else None, r["split"]))
    if not any(s.split == "train" and s.label == 0 for s in samples):
        raise DatasetError(f"{csv_path}: category {category!r} has no normal training images")
    return samples, category


# --------------------------------------------------------------------------------------- splits
def _counts(samples: Iterable[Sample]) -> dict[str, dict[str, int]]:
    out: dict[str, Counter] = defaultdict(Counter)
    for s in samples:
        out[s.split][s.defect_type] += 1
    return {split: dict(sorted(out[split].items())) for split in ("train", "val", "test") if split in out}


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DatasetError(f"val_fraction={val_fraction}, test_fraction={test_fraction}: expected fractions in [0, 1) "
                           "that sum to less than 1")


def _split_native(samples: list[Sample], seed: int, val_fraction: float) -> list[Sample]:
    """Hold out ``val_fraction`` of the normal training images as "val" (unless a native val exists)."""
    if any(s.split == "val" for s in samples):
        return samples
    train_good = [i for i, s in enumerate(samples) if s.split == "train" and s.label == 0]
    n_val = round(len(train_good) * val_fraction)
    if val_fraction > 0 and len(train_good) >= 2:
        n_val = max(1, n_val)
    n_val = max(0, min(n_val, len(train_good) - 1))
    chosen = set(np.random.default_rng(seed).permutation(train_good)[:n_val].tolist())
    return [replace(s, split="val") if i in chosen else s for i, s in enumerate(samples)]


def _split_stratified(samples: list[Sample], seed: int, val_fraction: float, test_fraction: float) -> list[Sample]:
    """Pool everything; per defect type, shuffle (seeded) and cut into test, val and train."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = defaultdict(list)
    order = sorted(range(len(samples)), key=lambda i: str(samples[i].path))
    for i in order:
        groups[samples[i].defect_type].append(i)
    assigned: dict[int, str] = {}
    for name in sorted(groups):
        idx = [groups[name][j] for j in rng.permutation(len(groups[name]))]
        n = len(idx)
        n_test = round(n * test_fraction)
        n_val = round(n * val_fraction)
        if test_fraction > 0 and n >= 2:
            n_test = max(1, n_test)
        if val_fraction > 0 and n >= 3:
            n_val = max(1, n_val)
        while n_test + n_val >= n and n_test + n_val > 0:  # keep at least one for training
            if n_val >= n_test:
                n_val -= 1
            else:
                n_test -= 1
        for k, i in enumerate(idx):
            assigned[i] = "test" if k < n_test else "val" if k < n_test + n_val else "train"
    return [replace(s, split=assigned[i]) for i, s in enumerate(samples)]


def hold_out_defects(dataset: Dataset, seed: int | None = None) -> Dataset:
    """``dataset`` with every defective training image moved to validation or test.

    For kinds that learn from normal images only (``feature_memory``, ``autoencoder``) a defect in
    the training split is wasted: the detector ignores it, and with a stratified 60/20/20 split
    that leaves 2 of 10 defects per type for the test. Moving them keeps the normal images where
    they are and only grows val and test, so the test split of the ordinary split is a subset of
    this one (a model trained on the ordinary split is never scored on images it learned from,
    and one trained on this split never saw a defect). Defects are shared between val and test
    in the ratio of ``val_fraction`` to ``test_fraction``, seeded, per defect type; test gets the
    odd one. A dataset without defects in train comes back unchanged (MVTec native splits).
    """
    moving = [i for i, s in enumerate(dataset.samples) if s.split == "train" and s.label == 1]
    info = dict(dataset.split_info, defects_in_train=False)
    if not moving:
        return replace(dataset, split_info=info)
    val_fraction = float(info.get("val_fraction") or 0.0)
    if info.get("test_fraction") is None:  # a native split: its test is the dataset's own, keep val as it is
        val_share = 0.0
    else:
        test_fraction = float(info["test_fraction"])
        val_share = val_fraction / (val_fraction + test_fraction) if val_fraction + test_fraction > 0 else 0.5
    rng = np.random.default_rng(info.get("seed", 0) if seed is None else seed)
    by_type: dict[str, list[int]] = defaultdict(list)
    for i in sorted(moving, key=lambda i: str(dataset.samples[i].path)):
        by_type[dataset.samples[i].defect_type].append(i)
    assigned: dict[int, Split] = {}
    for name in sorted(by_type):
        group = [by_type[name][j] for j in rng.permutation(len(by_type[name]))]
        # bring the type's val/test totals to the ratio, counting what is already there
        have_val = sum(1 for s in dataset.samples if s.split == "val" and s.defect_type == name)
        have_test = sum(1 for s in dataset.samples if s.split == "test" and s.defect_type == name)
        total = have_val + have_test + len(group)
        n_val = min(len(group), max(0, int(total * val_share) - have_val))  # floor: test gets the odd one
        for k, i in enumerate(group):
            assigned[i] = "val" if k < n_val else "test"
    samples = [replace(s, split=assigned[i]) if i in assigned else s for i, s in enumerate(dataset.samples)]
    info.update(defects_moved=len(moving), counts=_counts(samples))
    log.info("dataset %s: %d defective training image(s) moved to val/test (the model learns from normal "
             "images only): %s", dataset.name, len(moving), info["counts"])
    return replace(dataset, samples=samples, split_info=info)


def split_like_training(dataset: Dataset, training_split: dict | None) -> Dataset:
    """Apply the defect policy a model was trained with (its card's ``training.split``) to ``dataset``.

    ``evaluate`` and ``calibrate`` re-split the dataset from the same seed; a model whose training
    moved the defects out of train (:func:`hold_out_defects`) must be scored on the same, larger
    val/test splits, or its report would count 2 defects per type where 5 are available.
    """
    if isinstance(training_split, dict) and training_split.get("defects_in_train") is False:
        return hold_out_defects(dataset)
    return dataset


def _relpath(sample: Sample, root: Path) -> str:
    try:
        return sample.path.relative_to(root).as_posix()
    except ValueError:
        return sample.path.as_posix()


def save_split(dataset: Dataset, path: Path | str) -> Path:
    """Write the split (``split_info`` plus every sample's relative path and split) as JSON."""
    path = Path(path)
    payload = {
        "format": SPLIT_FORMAT,
        "dataset": dataset.name,
        "info": dataset.split_info,
        "assignments": {_relpath(s, dataset.root): s.split for s in sorted(dataset.samples, key=lambda s: str(s.path))},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=False) + "\n")
    return path


def load_split(path: Path | str) -> dict:
    """Read a split written by :func:`save_split`; keys: ``info`` (dict) and ``assignments`` {relpath: split}."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read split file ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != SPLIT_FORMAT:
        raise DatasetError(f"{path}: expected a split file with format {SPLIT_FORMAT} (written by save_split)")
    assignments = payload.get("assignments")
    if not isinstance(assignments, dict) or not all(v in ("train", "val", "test") for v in assignments.values()):
        raise DatasetError(f"{path}: field 'assignments' must map relative paths to train/val/test")
    payload.setdefault("info", {})
    payload["source"] = str(path)
    return payload


def apply_split(dataset: Dataset, split: dict) -> Dataset:
    """Reassign ``dataset``'s samples to the splits recorded in ``split`` (from :func:`load_split`)."""
    assignments: dict[str, str] = split["assignments"]
    where = split.get("source", "split file")
    names = {_relpath(s, dataset.root): s for s in dataset.samples}
    missing = sorted(set(names) - set(assignments))
    extra = sorted(set(assignments) - set(names))
    if missing or extra:
        example = f"not in the split: {missing[0]}" if missing else f"not in the dataset: {extra[0]}"
        raise DatasetError(f"{where}: does not match dataset {dataset.root} ({len(missing)} files not in the split, "
                           f"{len(extra)} split entries not in the dataset; e.g. {example})")
    samples = [replace(s, split=assignments[name]) for name, s in names.items()]
    info = dict(split.get("info", {}), split_file=str(where), counts=_counts(samples))
    return replace(dataset, samples=samples, split_info=info)


# ------------------------------------------------------------------------------------ top level
def _find_root(root: Path, category: str | None) -> tuple[Path, str]:
    """Resolve categories and single wrapping folders (as in most ZIPs) down to one dataset root."""
    for _ in range(4):
        if _visa_csv(root) is not None:
            return root, "visa"
        if category is not None and (root / category).is_dir() and _is_mvtec(root / category):
            return root / category, "mvtec"
        if _is_mvtec(root):
            return root, "mvtec"
        if (root / "normal").is_dir():
            return root, "folders"
        if (root / "train").is_dir() or (root / "test").is_dir():
            half = "test" if (root / "train").is_dir() else "train"
            raise DatasetError(f"{root / half}: missing folder (MVTec layout needs both train/ and test/)")
        categories = list_categories(root)
        if category is not None and categories:
            raise DatasetError(f"{root}: no category {category!r}; available: {', '.join(categories)}")
        if len(categories) > 1:
            raise DatasetError(f"{root}: contains {len(categories)} categories ({', '.join(categories)}); "
                               "pick one (category= or the category's folder)")
        files = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
        subdirs = _subdirs(root)
        if len(subdirs) == 1 and not files:
            root = subdirs[0]
            continue
        break
    raise DatasetError(f"{root}: unknown dataset layout; expected MVTec (train/good, test/<type>), "
                       "VisA (split_csv/1cls.csv) or plain folders (normal/, anomaly/<type>/)")


def load_dataset(
    path: Path | str,
    *,
    scheme: Scheme = "native",
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    max_archive_mb: int = 2048,
    category: str | None = None,
    split_file: Path | str | None = None,
    cache_dir: Path | str | None = None,
    max_aspect_spread: float | None = MAX_ASPECT_SPREAD,
) -> Dataset:
    """Read the dataset at ``path`` (folder or ``.zip``), auto-detecting its layout, and split it.

    scheme "native": MVTec/VisA's own train/test, with ``val_fraction`` of the normal training
    images held out as "val" (or MVTec-LOCO style ``validation/good`` when present).
    scheme "stratified": everything pooled, then a seeded split stratified by defect type into
    train/val/test. Plain folders have no native split and are always split stratified.
    ``category`` picks one category of a multi-category root; ``split_file`` (from
    :func:`save_split`) reproduces an earlier split exactly; ``cache_dir`` is where ZIPs are
    extracted (default ``$XDG_CACHE_HOME/edge-inspector/archives``). ``max_aspect_spread`` bounds how
    much image shapes may differ (long/short side ratio, most vs least elongated); None disables it.
    """
    if scheme not in ("native", "stratified"):
        raise DatasetError(f"scheme={scheme!r}: expected 'native' or 'stratified'")
    _check_fractions(val_fraction, test_fraction)
    source = Path(path)
    if not source.exists():
        raise DatasetError(f"{source}: missing (expected a dataset folder or .zip archive)")
    if source.is_file():
        if source.suffix.lower() != ".zip":
            raise DatasetError(f"{source}: expected a dataset folder or a .zip archive")
        extracted = extract_zip(source, cache_dir, max_mb=max_archive_mb)
        root, layout = _find_root(extracted, category)
        name = source.stem if root == extracted else root.name
    else:
        root, layout = _find_root(source, category)
        name = root.name
    native: dict = {}
    if layout == "mvtec":
        samples, native = _read_mvtec(root)
    elif layout == "visa":
        samples, name = _read_visa(root, _visa_csv(root), category)
    else:
        samples = _read_folders(root)
    _check_images(samples, max_aspect_spread)
    _warn_partial_masks(samples)
    effective = "stratified" if layout == "folders" else scheme
    if effective == "native":
        samples = _split_native(samples, seed, val_fraction)
    else:
        samples = _split_stratified(samples, seed, val_fraction, test_fraction)
    info = {
        "scheme": effective,
        "requested_scheme": scheme,
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction if effective == "stratified" else None,
        "layout": layout,
        "source": str(source),
        **native,
        "counts": _counts(samples),
    }
    dataset = Dataset(name=name, root=root, samples=samples, layout=layout, split_info=info)
    if split_file is not None:
        dataset = apply_split(dataset, load_split(split_file))
    log.info("dataset %s (%s, %s split): %s", name, layout, effective, info["counts"])
    return dataset
