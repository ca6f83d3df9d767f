"""Procedural demo data: machined washers on a brushed metal plate, with scratches, spots and missing pieces.

Lets the demo, the tests and the CI run end to end with no downloaded data. Every part gets a
small random pose and lighting change, so a detector has to learn the part rather than memorise
one image; defects are drawn with exact masks. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .types import GOOD, DatasetError

DEFECT_TYPES = ("scratch", "spot", "missing")
MARKER = ".edge-inspector-demo.json"  # written last: marks a complete, regenerable output folder
_OWNED_DIRS = ("train", "validation", "test", "ground_truth")


@dataclass(frozen=True)
class _Pose:
    cx: float
    cy: float
    radius: float
    hole: float
    angle: float  # degrees, rotates the bolt-hole pattern


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Brushed grey plate with a lighting gradient (float32, H x W)."""
    base = rng.uniform(95.0, 125.0)
    streaks = cv2.blur(rng.normal(0.0, 14.0, (size, size)).astype(np.float32), (max(3, size // 6), 1))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, 2 * np.pi)
    gradient = rng.uniform(-18.0, 18.0) * (np.cos(theta) * xx + np.sin(theta) * yy - 0.5)
    return base + streaks + gradient


def _pose(rng: np.random.Generator, size: int) -> _Pose:
    return _Pose(
        cx=size / 2 + rng.uniform(-0.04, 0.04) * size,
        cy=size / 2 + rng.uniform(-0.04, 0.04) * size,
        radius=size * 0.33 * rng.uniform(0.96, 1.04),
        hole=size * 0.12 * rng.uniform(0.95, 1.05),
        angle=rng.uniform(-12.0, 12.0),
    )


def _part_mask(pose: _Pose, size: int) -> np.ndarray:
    """uint8 {0,1}: a washer with four bolt holes."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(xx - pose.cx, yy - pose.cy)
    part = (r <= pose.radius) & (r >= pose.hole)
    bolt_r = (pose.radius + pose.hole) / 2
    for k in range(4):
        a = np.deg2rad(pose.angle + 90 * k + 45)
        bx, by = pose.cx + bolt_r * np.cos(a), pose.cy + bolt_r * np.sin(a)
        part &= np.hypot(xx - bx, yy - by) > pose.radius * 0.11
    return part.astype(np.uint8)


def _render_part(rng: np.random.Generator, pose: _Pose, size: int) -> np.ndarray:
    """Part surface brightness: radial shading plus fine machining rings (float32, H x W)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    r = np.hypot(xx - pose.cx, yy - pose.cy) / pose.radius
    level = rng.uniform(170.0, 195.0)
    rings = 4.0 * np.sin(r * rng.uniform(25.0, 35.0))
    return level - 25.0 * (r - 0.6) ** 2 + rings


def _draw_defect(kind: str, rng: np.random.Generator, pose: _Pose, part: np.ndarray, size: int) -> np.ndarray:
    """uint8 {0,1} defect region restricted to the part; never empty."""
    for _ in range(50):
        canvas = np.zeros((size, size), np.uint8)
        ang = rng.uniform(0, 2 * np.pi)
        rad = rng.uniform(pose.hole + 2, pose.radius - 2)
        px, py = pose.cx + rad * np.cos(ang), pose.cy + rad * np.sin(ang)
        if kind == "scratch":
            length = rng.uniform(0.25, 0.45) * size
            d = rng.uniform(0, 2 * np.pi)
            end = np.array([px + length * np.cos(d), py + length * np.sin(d)])
            start = np.array([px, py])
            bend = (start + end) / 2 + rng.normal(0, 0.08 * size, 2)
            t = np.linspace(0, 1, 24)[:, None]
            curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t**2 * end
            thickness = 1 if size < 96 else int(rng.integers(1, 3))
            cv2.polylines(canvas, [np.round(curve).astype(np.int32)], False, 1, thickness, cv2.LINE_8)
        elif kind == "spot":
            axes = (max(2, int(rng.uniform(0.03, 0.06) * size)), max(2, int(rng.uniform(0.03, 0.06) * size)))
            cv2.ellipse(canvas, (int(px), int(py)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
        elif kind == "missing":
            ex, ey = pose.cx + pose.radius * np.cos(ang), pose.cy + pose.radius * np.sin(ang)
            cv2.circle(canvas, (int(ex), int(ey)), max(3, int(rng.uniform(0.08, 0.12) * size)), 1, -1)
        else:
            raise DatasetError(f"unknown synthetic defect type {kind!r}; expected one of {DEFECT_TYPES}")
        region = canvas & part
        if int(region.sum()) >= 4:
            return region
    raise DatasetError(f"could not place a {kind!r} defect on the part (image size {size} too small?)")


def render_part(rng: np.random.Generator, size: int, defect: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One BGR uint8 image of a part (with ``defect`` drawn on it, if any) and its uint8 {0,1} mask.

    Pixels outside the mask are exactly those of the defect-free part: the mask is the truth.
    """
    pose = _pose(rng, size)
    part = _part_mask(pose, size)
    background = _background(rng, size)
    surface = _render_part(rng, pose, size)
    # shadow of the part on the plate makes the holes and the outline read as depth
    shadow = cv2.GaussianBlur(part.astype(np.float32), (0, 0), size / 40) * 25.0
    image = np.where(part > 0, surface, background - shadow)
    mask = np.zeros((size, size), np.uint8)
    if defect is not None:
        mask = _draw_defect(defect, rng, pose, part, size)
        m = mask > 0
        if defect == "scratch":
            image[m] = surface[m] - rng.uniform(60.0, 90.0)
        elif defect == "spot":
            image[m] = surface[m] + (rng.choice([-1.0, 1.0]) * rng.uniform(65.0, 95.0))
        else:  # missing: the plate shows through the notch
            image[m] = background[m] - shadow[m]
    gain = rng.uniform(0.92, 1.08)
    tint = np.array([1.0 + rng.uniform(0, 0.04), 1.0, 1.0 - rng.uniform(0, 0.03)], np.float32)  # bluish steel
    noise = rng.normal(0.0, 2.0, (size, size, 1)).astype(np.float32)
    bgr = image[:, :, None] * gain * tint + noise
    return np.clip(bgr, 0, 255).astype(np.uint8), mask


def _prepare(out_dir: Path, owned: Sequence[str] = (), owned_glob: str | None = None) -> None:
    """Create ``out_dir``; clear an earlier demo output there, but never someone else's files."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MARKER).exists():
            raise DatasetError(f"{out_dir}: folder exists and is not empty (and is not an earlier demo output); "
                               "choose an empty or new folder")
        (out_dir / MARKER).unlink()
        for name in owned:
            shutil.rmtree(out_dir / name, ignore_errors=True)
        if owned_glob:
            for f in out_dir.glob(owned_glob):
                f.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise DatasetError(f"{path}: could not write image")


def generate_demo_dataset(
    out_dir: Path | str,
    *,
    n_train: int = 60,
    n_val_good: int = 0,
    n_test_good: int = 20,
    n_test_defect: int = 30,
    size: int = 128,
    seed: int = 0,
    defect_types: Sequence[str] = DEFECT_TYPES,
) -> Path:
    """Write one MVTec-layout category at ``out_dir`` and return ``out_dir``.

    ``train/good``, ``validation/good`` (only when ``n_val_good`` > 0), ``test/good``,
    ``test/<type>`` and ``ground_truth/<type>/<stem>_mask.png``; the defective test images are
    spread evenly over ``defect_types``.
    """
    out = Path(out_dir)
    if size < 32:
        raise DatasetError(f"size={size}: synthetic parts need at least 32 px")
    unknown = [t for t in defect_types if t not in DEFECT_TYPES]
    if unknown or (n_test_defect > 0 and not defect_types):
        raise DatasetError(f"defect_types={list(defect_types)}: expected a non-empty subset of {list(DEFECT_TYPES)}")
    _prepare(out, owned=_OWNED_DIRS)
    for stream, folder, count in ((0, "train/good", n_train), (1, "validation/good", n_val_good),
                                  (2, "test/good", n_test_good)):
        for i in range(count):
            image, _ = render_part(np.random.default_rng((seed, stream, i)), size)
            _write(out / folder / f"{i:03d}.png", image)
    counters = dict.fromkeys(defect_types, 0)
    for i in range(n_test_defect):
        kind = defect_types[i % len(defect_types)]
        image, mask = render_part(np.random.default_rng((seed, 3, i)), size, defect=kind)
        k = counters[kind]
        counters[kind] += 1
        _write(out / "test" / kind / f"{k:03d}.png", image)
        _write(out / "ground_truth" / kind / f"{k:03d}_mask.png", mask * 255)
    (out / "train" / "good" / ".complete").touch()  # tools/demo.sh checks this
    params = dict(kind="dataset", n_train=n_train, n_val_good=n_val_good, n_test_good=n_test_good,
                  n_test_defect=n_test_defect, size=size, seed=seed, defect_types=list(defect_types))
    (out / MARKER).write_text(json.dumps(params, indent=1))
    return out


def write_replay_folder(out_dir: Path | str, n: int, seed: int = 0, *, size: int = 128,
                        defect_fraction: float = 0.2) -> Path:
    """Write ``n`` numbered frames (``defect_fraction`` defective) and ``labels.csv`` for the replay demo.

    ``labels.csv`` columns: ``file`` (name in the folder), ``label`` (0 good, 1 defective),
    ``defect_type`` ("good" for normal frames). Defective frames sit at random positions, so a
    replay looks like a line, not like a sorted test set.
    """
    out = Path(out_dir)
    if n < 0:
        raise DatasetError(f"n={n}: expected a number of frames >= 0")
    _prepare(out, owned_glob="frame_*.png")
    order = np.random.default_rng((seed, 10)).permutation(n)
    defective = set(order[: int(round(n * defect_fraction))].tolist())
    rows = []
    k = 0
    for i in range(n):
        kind = None
        if i in defective:
            kind = DEFECT_TYPES[k % len(DEFECT_TYPES)]
            k += 1
        image, _ = render_part(np.random.default_rng((seed, 11, i)), size, defect=kind)
        name = f"frame_{i:05d}.png"
        _write(out / name, image)
        rows.append({"file": name, "label": int(kind is not None), "defect_type": kind or GOOD})
    with open(out / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "label", "defect_type"])
        writer.writeheader()
        writer.writerows(rows)
    (out / MARKER).write_text(json.dumps(dict(kind="replay", n=n, size=size, seed=seed), indent=1))
    return out


def read_replay_labels(folder: Path | str) -> dict[str, tuple[int, str]]:
    """``labels.csv`` of a replay folder as {file name: (label, defect_type)}."""
    path = Path(folder) / "labels.csv"
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read replay labels ({exc.strerror or exc})") from exc
    try:
        return {r["file"]: (int(r["label"]), r.get("defect_type") or GOOD) for r in rows}
    except (KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: expected columns file,label(0/1),defect_type ({exc})") from exc
