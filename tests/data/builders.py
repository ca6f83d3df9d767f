"""Tiny hand-made datasets for reader tests: each test states exactly the layout it needs."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np


def image(path: Path, h: int = 16, w: int = 16, value: int = 128, seed: int = 0) -> Path:
    """Write a small PNG/JPEG (noisy, so files differ) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = np.clip(value + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)
    assert cv2.imwrite(str(path), pixels)
    return path


def mask(path: Path, h: int = 16, w: int = 16) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((h, w), np.uint8)
    m[h // 4: h // 2, w // 4: w // 2] = 255
    assert cv2.imwrite(str(path), m)
    return path


def mvtec(root: Path, n_train: int = 6, n_good: int = 3, defects: dict[str, int] | None = None,
          masks: bool = True) -> Path:
    """root/train/good, root/test/good, root/test/<type>, root/ground_truth/<type>/<stem>_mask.png."""
    defects = {"crack": 3, "hole": 2} if defects is None else defects
    for i in range(n_train):
        image(root / "train" / "good" / f"{i:03d}.png", seed=i)
    for i in range(n_good):
        image(root / "test" / "good" / f"{i:03d}.png", seed=100 + i)
    for t, n in defects.items():
        for i in range(n):
            image(root / "test" / t / f"{i:03d}.png", value=60, seed=200 + i)
            if masks:
                mask(root / "ground_truth" / t / f"{i:03d}_mask.png")
    return root


def folders(root: Path, n_normal: int = 10, defects: dict[str, int] | None = None) -> Path:
    """root/normal/*, root/anomaly/<type>/*, masks for the first type as <stem>_mask.png, second as <stem>.png."""
    defects = {"dent": 5, "stain": 5} if defects is None else defects
    for i in range(n_normal):
        image(root / "normal" / f"n{i:03d}.png", seed=i)
    for k, (t, n) in enumerate(defects.items()):
        for i in range(n):
            image(root / "anomaly" / t / f"{t}{i:03d}.png", value=60, seed=300 + i)
            mask(root / "masks" / t / (f"{t}{i:03d}_mask.png" if k == 0 else f"{t}{i:03d}.png"))
    return root


def zip_folder(folder: Path, zip_path: Path, prefix: str = "") -> Path:
    """Zip every file under ``folder``, member names prefixed by ``prefix``."""
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + f.relative_to(folder).as_posix())
    return zip_path
