"""Synthetic defects on the validation split's good images, so that models can be ranked where no defect is labelled.

Why: a native split (MVTec's: train on good parts only, test is the dataset's own) leaves the validation
split with good parts only, and a line that has collected no defects yet is in the same place. Models
cannot be ranked on good parts alone (AUROC, recall and PRO need defects), so ``auto`` refused such
datasets. Here every good validation image gets defective copies (data/augment.py: cut-paste, scratch,
noise patch), with masks that are exactly the changed pixels, at three sizes: over the whole image, and
inside a window of a quarter and of an eighth of the image's side. The sizes matter because the size of a
line's defects is what decides between the default input and the high-resolution twin (a defect of a few
dozen pixels on a large frame), and the generator's own defects cover a tenth of the image or more.

What these figures are, and what they are not: they rank candidates that never saw this generator. They
are not a line's escape rate on real defects (the test split's real defects give that), and a model
trained on the same generator (the classifier tops its training up with these defects when none are
labelled) would rank itself first, so ``auto`` does not rank such models on them. The images are written
to disk (``out_dir``) so that an engineer can look at what the models were ranked on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..preprocess import decode_image
from .augment import KINDS, synthesize_defects
from .types import Sample

#: (name, window side as a fraction of the image's): one defect of each size per good image
SIZES: tuple[tuple[str, float], ...] = (("large", 1.0), ("small", 0.25), ("tiny", 0.125))
MIN_WINDOW = 32  # px: the augmentations need room to draw (data/augment.py refuses < 8 px)
TYPE_PREFIX = "synthetic_"  # defect_type of every sample made here: synthetic_<size>


def defect_in_window(image: np.ndarray, rng: np.random.Generator, fraction: float,
                     kinds: Sequence[str] = KINDS) -> tuple[np.ndarray, np.ndarray, str]:
    """One synthetic defect drawn inside a random window of ``fraction`` of the image's side (at least
    ``MIN_WINDOW`` px, at most the image). Returns (image, mask {0, 1} of the whole image, kind)."""
    h, w = image.shape[:2]
    wh, ww = (min(h, max(MIN_WINDOW, round(h * fraction))), min(w, max(MIN_WINDOW, round(w * fraction))))
    y, x = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
    window = np.ascontiguousarray(image[y:y + wh, x:x + ww])
    drawn, masks, types = synthesize_defects([window], rng, kinds)
    out, mask = image.copy(), np.zeros((h, w), np.uint8)
    out[y:y + wh, x:x + ww] = drawn[0]
    mask[y:y + wh, x:x + ww] = masks[0]
    return out, mask, types[0]


def synthetic_validation(samples: Sequence[Sample], out_dir: Path | str, seed: int = 0) -> list[Sample]:
    """``samples`` (a validation split) plus, for each good image, one synthetic defective copy per size
    in ``SIZES``, written as PNG (image and mask) under ``out_dir``; seeded, so the same split gives the
    same defects. Defective copies have ``defect_type`` ``synthetic_<size>`` and ``split`` "val"; the
    generator's kind is in the file name. An unreadable image raises ImageDecodeError naming it."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng((seed, 7305))
    made: list[Sample] = []
    for i, s in enumerate(x for x in samples if x.label == 0):
        image = decode_image(s.path)
        for size, fraction in SIZES:
            new, mask, kind = defect_in_window(image, rng, fraction)
            if not mask.any():  # the drawing vanished into the surface ten times over: no defect to rank on
                continue
            stem = f"{i:04d}_{Path(s.path).stem}_{size}_{kind}"
            path, mask_path = out / "images" / f"{stem}.png", out / "masks" / f"{stem}.png"
            cv2.imwrite(str(path), new)
            cv2.imwrite(str(mask_path), mask * 255)
            made.append(Sample(path=path, label=1, defect_type=f"{TYPE_PREFIX}{size}", mask_path=mask_path,
                               split="val"))
    return [*samples, *made]
