#!/usr/bin/env python3
"""Image-score rules of one fitted feature_memory, side by side on each category's test split.

The issue asked whether anomalib PatchCore's image score would serve us better than ours. Both
start from the same patch distances (each test patch to its nearest memory entry); this script
fits ``feature_memory`` once per category with the product's defaults (the input size ``train``
would choose, Lite1, leave-one-out off: no calibration is needed here) and computes, from one
pass over the test split:

* ``top_fraction``: the product's rule, the mean of the top ``score_fraction`` of the smoothed map;
* ``max`` / ``max_smoothed``: the largest patch distance, before / after the map's Gaussian;
* ``patchcore`` / ``patchcore_smoothed``: PatchCore's re-weighting of that maximum (Roth et al.
  2022, eq. 7): weight = 1 - softmax(distances from the worst patch to its nearest entry's ``b``
  nearest memory neighbours)[that entry], ``b`` = 9 as in anomalib;
* ``top_fraction_reweighted``: our rule times the same weight.

Image AUROC per rule and the mean PatchCore weight are printed (JSON, then one human line per
category). The test split is only scored, never used to choose anything.

    .venv/bin/python bench/image_scores.py --categories kolektorsdd mpdd_metal_plate magnetic_tile
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
RULES = ("top_fraction", "max", "max_smoothed", "patchcore", "patchcore_smoothed", "top_fraction_reweighted")


def score_rules(det, samples, neighbours: int = 9, batch: int = 8) -> tuple[dict[str, list[float]], list[float]]:
    """Every rule's image score for ``samples`` and the PatchCore weight of each. The distances, the
    smoothing and our rule are the exported module's own code; only PatchCore's weight is computed here."""
    import torch

    mod = det.export_module()
    memory = mod.memory_t.t()  # (M, D), centred as the module centres its queries
    with torch.no_grad():
        support = torch.cdist(memory, memory).topk(min(neighbours, len(memory)), largest=False).indices
        scores: dict[str, list[float]] = {r: [] for r in RULES}
        weights: list[float] = []
        for start in range(0, len(samples), batch):
            f = mod.embedder(torch.from_numpy(det.load(samples[start:start + batch])))
            top, _ = mod.score_features(f)  # the product's rule (score_fraction > 0 by default)
            dist = mod.patch_distances(f)  # (n, 1, h, w)
            smoothed = mod.smooth(dist).flatten(1)
            dist = dist.flatten(1)
            queries = (f.flatten(2).transpose(1, 2) - mod.centre)  # (n, hw, D)
            rows = torch.arange(len(f))
            for key, src in (("patchcore", dist), ("patchcore_smoothed", smoothed)):
                worst = queries[rows, src.argmax(1)]  # (n, D): the worst patch of each image
                entry = torch.cdist(worst, memory).argmin(1)  # its nearest memory entry
                dd = torch.linalg.norm(memory[support[entry]] - worst[:, None, :], dim=-1)  # to its b neighbours
                weight = 1.0 - torch.softmax(dd, 1)[:, 0]
                scores[key] += (weight * src.max(1).values).tolist()
                if key == "patchcore_smoothed":
                    scores["top_fraction_reweighted"] += (weight * top).tolist()
                    weights += weight.tolist()
            scores["top_fraction"] += top.tolist()
            scores["max"] += dist.max(1).values.tolist()
            scores["max_smoothed"] += smoothed.max(1).values.tolist()
    return scores, weights


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("EI_DATASETS", DEFAULT_DATA)),
                   help="folder of categories (MVTec layout each); default $EI_DATASETS or ../shared/datasets")
    p.add_argument("--categories", nargs="*", help="category names (default: every folder under --data)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json-only", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from sklearn.metrics import roc_auc_score

    from edge_inspector.data.readers import load_dataset
    from edge_inspector.models.feature_memory import FeatureMemoryDetector
    from edge_inspector.toolchain.train import auto_input_size

    if not args.data.is_dir():
        p.error(f"--data {args.data}: no such folder (set $EI_DATASETS or pass --data)")
    categories = args.categories or sorted(d.name for d in args.data.iterdir() if d.is_dir())
    results = []
    for category in categories:
        dataset = load_dataset(args.data / category, scheme="native", seed=args.seed)
        train = [s for s in dataset.split("train") if s.label == 0]
        test = dataset.split("test")
        size = auto_input_size(train)
        det = FeatureMemoryDetector(input_size=size, threads=args.threads, seed=args.seed, oof="off")
        print(f"[{category}] feature_memory at {size[0]}x{size[1]}: fitting on {len(train)} images ...",
              file=sys.stderr)
        t0 = time.perf_counter()
        det.fit(train, progress=False)
        fit_s = time.perf_counter() - t0
        scores, weights = score_rules(det, test)
        labels = np.array([s.label for s in test])
        results.append({"category": category, "input_size": list(size), "n_train": len(train), "n_test": len(test),
                        "fit_s": round(fit_s, 1), "mean_patchcore_weight": float(np.mean(weights)),
                        "image_auroc": {r: float(roc_auc_score(labels, v)) for r, v in scores.items()}})
    print(json.dumps({"benchmark": "image_score_rules", "results": results}, indent=2))
    if not args.json_only:
        for r in results:
            figures = ", ".join(f"{k} {v:.3f}" for k, v in r["image_auroc"].items())
            print(f"{r['category']}: image AUROC {figures} (mean PatchCore weight {r['mean_patchcore_weight']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
