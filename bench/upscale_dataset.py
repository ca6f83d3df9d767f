#!/usr/bin/env python3
"""Copy an MVTec-layout category with every image and mask scaled by --factor (images bicubic, masks nearest).

Why: `auto` tries its high-resolution twin only on frames at least twice its default input, and none of the
shared sets has such frames. An upscaled copy (written to a scratch folder, never committed: the images'
licences forbid it) lets bench/accuracy.py --auto / --hires check on real parts that the synthetic ranking
picks the twin when the real defects say so (bench/results/accuracy_auto_native.txt).

    .venv/bin/python bench/upscale_dataset.py ../shared/datasets/mpdd_metal_plate "$SCRATCH/mpdd_2x" --factor 2
    .venv/bin/python bench/accuracy.py --data "$SCRATCH" --categories mpdd_2x --auto --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", type=Path, help="category folder (train/, test/, ground_truth/)")
    p.add_argument("dest", type=Path, help="where the scaled copy goes (must not exist)")
    p.add_argument("--factor", type=float, default=2.0)
    args = p.parse_args(argv)
    if not (args.source / "train").is_dir():
        p.error(f"{args.source}: expected an MVTec-layout category with a train/ folder")
    if args.dest.exists():
        p.error(f"{args.dest}: exists; give a new folder")
    n = 0
    for f in sorted(args.source.rglob("*")):
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        image = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if image is None:
            p.error(f"{f}: not a readable image")
        mask = "ground_truth" in f.relative_to(args.source).parts
        size = (round(image.shape[1] * args.factor), round(image.shape[0] * args.factor))
        out = args.dest / f.relative_to(args.source)
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), cv2.resize(image, size, interpolation=cv2.INTER_NEAREST if mask else cv2.INTER_CUBIC))
        n += 1
    print(f"{n} images scaled x{args.factor:g} -> {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
