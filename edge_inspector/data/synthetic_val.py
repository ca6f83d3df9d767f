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

Where the part stands on a plain background (data/foreground.py), the defects are drawn on the part only: a
scratch on the wall behind a plate ranks nothing, least of all for a small part in a large frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..preprocess import decode_image
from .augment import KINDS, synthesize_defects
from .foreground import foreground_mask
from .types import Sample

#: (name, window side as a fraction of the image's): one defect of each size per good image
SIZES: tuple[tuple[str, float], ...] = (("large", 1.0), ("small", 0.25), ("tiny", 0.125))
MIN_WINDOW = 32  # px: the augmentations need room to draw (data/augment.py refuses < 8 px)
PART_ATTEMPTS = 5  # placements tried before a size is left out of an image whose drawing keeps missing the part
TYPE_PREFIX = "synthetic_"  # defect_type of every sample made here: synthetic_<size>


def defect_in_window(image: np.ndarray, rng: np.random.Generator, fraction: float,
                     kinds: Sequence[str] = KINDS,
                     foreground: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """One synthetic defect drawn inside a random window of ``fraction`` of the image's side (at least
    ``MIN_WINDOW`` px, at most the image). Returns (image, mask {0, 1} of the whole image, kind).

    With a ``foreground`` (bool (H, W), data/foreground.py) the window is centred on a part pixel, is no
    larger than the part's bounding box, and the defect keeps only its part pixels (the background is
    left as it was), so the mask is exactly the changed pixels and all of them lie on the part; the
    mask is empty when the drawing missed the part."""
    h, w = image.shape[:2]
    wh, ww = (min(h, max(MIN_WINDOW, round(h * fraction))), min(w, max(MIN_WINDOW, round(w * fraction))))
    if foreground is None:
        y, x = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
    else:
        ys, xs = np.nonzero(foreground)
        wh = min(wh, max(MIN_WINDOW, int(ys.max() - ys.min() + 1)))
        ww = min(ww, max(MIN_WINDOW, int(xs.max() - xs.min() + 1)))
        pick = int(rng.integers(ys.size))
        y = int(np.clip(ys[pick] - wh // 2, 0, h - wh))
        x = int(np.clip(xs[pick] - ww // 2, 0, w - ww))
    window = np.ascontiguousarray(image[y:y + wh, x:x + ww])
    drawn, masks, types = synthesize_defects([window], rng, kinds)
    out, mask = image.copy(), np.zeros((h, w), np.uint8)
    out[y:y + wh, x:x + ww] = drawn[0]
    mask[y:y + wh, x:x + ww] = masks[0]
    if foreground is not None:
        out[~foreground] = image[~foreground]
        mask[~foreground] = 0
    return out, mask, types[0]


@dataclass
class SyntheticValidation:
    """What ``synthetic_validation`` made: the samples to rank on and where their defects were placed."""

    samples: list[Sample]  # the given samples first, then the synthetic defective copies
    goods: int  # good images that got defects
    on_part: int  # of those, images whose part was told from a plain background (defects drawn on it only)


def synthetic_validation(samples: Sequence[Sample], out_dir: Path | str, seed: int = 0) -> SyntheticValidation:
    """``samples`` (a validation split) plus, for each good image, one synthetic defective copy per size
    in ``SIZES``, written as PNG (image and mask) under ``out_dir``; seeded, so the same split gives the
    same defects. Defective copies have ``defect_type`` ``synthetic_<size>`` and ``split`` "val"; the
    generator's kind is in the file name. Where data/foreground.py finds the part on a plain background,
    the defects are drawn on the part only and its mask is written to ``out_dir/foreground``; elsewhere
    anywhere in the frame. An unreadable image raises ImageDecodeError naming it."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng((seed, 7305))
    made: list[Sample] = []
    goods = on_part = 0
    for i, s in enumerate(x for x in samples if x.label == 0):
        image = decode_image(s.path)
        part = foreground_mask(image)
        goods += 1
        if part is not None:
            on_part += 1
            (out / "foreground").mkdir(exist_ok=True)
            cv2.imwrite(str(out / "foreground" / f"{i:04d}_{Path(s.path).stem}.png"), part.astype(np.uint8) * 255)
        for size, fraction in SIZES:
            for _ in range(PART_ATTEMPTS if part is not None else 1):
                new, mask, kind = defect_in_window(image, rng, fraction, foreground=part)
                if mask.any():
                    break
            if not mask.any():  # the drawing vanished into the surface (or missed the part) every time
                continue
            stem = f"{i:04d}_{Path(s.path).stem}_{size}_{kind}"
            path, mask_path = out / "images" / f"{stem}.png", out / "masks" / f"{stem}.png"
            cv2.imwrite(str(path), new)
            cv2.imwrite(str(mask_path), mask * 255)
            made.append(Sample(path=path, label=1, defect_type=f"{TYPE_PREFIX}{size}", mask_path=mask_path,
                               split="val"))
    return SyntheticValidation(samples=[*samples, *made], goods=goods, on_part=on_part)
