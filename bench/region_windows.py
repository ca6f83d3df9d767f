"""How large should the region branch's window be? Image and pixel AUROC of feature_memory's patch map, of a
region map at several window sizes, and of their sum (each on the scale of its training scores).

A measurement on the test split of a native split, offline (the region memory as models/region_memory.py
builds it; the image score here sums the two branches' image scores, where the shipped detector reads
one summed map): it shows the shape of
the curve (which window sizes help at all), not a figure to quote for the product; bench/accuracy.py gives
those. Window = a fraction of the feature map's short side, half-overlapping. Printed per window: JSON and
one human line.

    OMP_NUM_THREADS=2 .venv/bin/python bench/region_windows.py --categories magnetic_tile --fractions 0.25 0.33 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def measure(category: Path, fractions: list[float], threads: int) -> list[dict]:
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import roc_auc_score

    from edge_inspector.data.readers import load_dataset
    from edge_inspector.evaluate.scoring import map_resolution, resize_map
    from edge_inspector.models import create_detector
    from edge_inspector.models.region_memory import fit_region_memory
    from edge_inspector.preprocess import load_mask
    from edge_inspector.toolchain.train import auto_input_size

    torch.set_num_threads(threads)
    dataset = load_dataset(category)
    train = [s for s in dataset.split("train") if s.label == 0]
    test = dataset.split("test")
    det = create_detector("feature_memory", input_size=auto_input_size(train), threads=threads, region_window=0)
    det.fit(train, progress=False)
    module = det.export_module()
    f_train, f_test = det.embed_maps(train), det.embed_maps(test)
    with torch.no_grad():
        parts = [module.score_features(f_test[i:i + 8]) for i in range(0, len(f_test), 8)]
    patch_score = torch.cat([s for s, _ in parts]).double().numpy()
    patch_map = torch.cat([m for _, m in parts]).numpy()
    labels = np.array([s.label for s in test])
    size = map_resolution(patch_map.shape[-2:])
    masks = np.stack([load_mask(s.mask_path if s.label else None, *size) for s in test]) > 0

    def pixel(maps: np.ndarray) -> float:
        return float(roc_auc_score(masks.ravel(), np.stack([resize_map(m, size) for m in maps]).ravel()))

    oof = det.oof_scores
    z_patch_map, z_patch = (patch_map - oof.mean()) / oof.std(), (patch_score - oof.mean()) / oof.std()
    rows = []
    for fraction in fractions:
        region, owners = fit_region_memory(f_train, fraction, projection_dim=0, max_candidates=10**9, seed=0)
        with torch.no_grad():
            n = len(f_train)
            own = torch.cat([region(f_train[i:i + 8], owners[None] == torch.arange(i, min(i + 8, n))[:, None])
                             for i in range(0, n, 8)])
            d = torch.cat([region(f_test[i:i + 8]) for i in range(0, len(f_test), 8)])
        train_peak = own.flatten(1).max(1).values.double().numpy()
        loc, scale = train_peak.mean(), train_peak.std()
        up = F.interpolate(d.float(), size=patch_map.shape[-2:], mode="bilinear", align_corners=False)[:, 0].numpy()
        z_region_map = (up - loc) / scale
        z_region = (d.flatten(1).max(1).values.double().numpy() - loc) / scale
        rows.append({
            "category": category.name, "fraction": fraction, "window_cells": region.kernel,
            "patch": {"image_auroc": float(roc_auc_score(labels, patch_score)), "pixel_auroc": pixel(patch_map)},
            "region": {"image_auroc": float(roc_auc_score(labels, z_region)), "pixel_auroc": pixel(up)},
            "sum": {"image_auroc": float(roc_auc_score(labels, z_patch + z_region)),
                    "pixel_auroc": pixel(z_patch_map + z_region_map)},
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("EI_DATASETS", DEFAULT_DATA)))
    p.add_argument("--categories", nargs="+", required=True)
    p.add_argument("--fractions", nargs="+", type=float, default=[0.25, 0.33, 0.5])
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    for name in args.categories:
        for row in measure(args.data / name, args.fractions, args.threads):
            print(json.dumps(row))
            print(f"{name} window {row['fraction']:g} ({row['window_cells']} cells): image / pixel AUROC "
                  + ", ".join(f"{k} {row[k]['image_auroc']:.3f}/{row[k]['pixel_auroc']:.3f}"
                              for k in ("patch", "region", "sum")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
