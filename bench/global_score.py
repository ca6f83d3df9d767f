"""Would an image-level (global) nearest-neighbour score add to feature_memory's patch score?

A measurement, not a feature: feature_memory is fitted on a category's good training images (native split,
today's defaults); every image is also summarised by the mean and standard deviation of its patch features
(standardised by the training images), and scored by the distance to its nearest training image (the
training images leave-one-out). The test split is then ranked by the patch score, the global score, and
their sum after each is standardised by its training (out-of-fold) scores, with the global part weighted
by w. Printed per category: image AUROC and the oracle escape (best threshold on the test labels at
false-reject <= 2 %, not a calibrated figure), as JSON and one human line.

    OMP_NUM_THREADS=2 .venv/bin/python bench/global_score.py --categories kolektorsdd magnetic_tile
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
WEIGHTS = (0.25, 0.5, 1.0)


def _nearest(query: np.ndarray, ref: np.ndarray, leave_one_out: bool = False) -> np.ndarray:
    d = ((query[:, None, :] - ref[None]) ** 2).sum(-1)
    if leave_one_out:
        np.fill_diagonal(d, np.inf)
    return np.sqrt(d.min(1))


def measure(category: Path, threads: int) -> dict:
    import torch
    from sklearn.metrics import roc_auc_score, roc_curve

    from edge_inspector.data.readers import load_dataset
    from edge_inspector.models import create_detector
    from edge_inspector.toolchain.train import auto_input_size

    torch.set_num_threads(threads)
    dataset = load_dataset(category)
    train = [s for s in dataset.split("train") if s.label == 0]
    test = dataset.split("test")
    detector = create_detector("feature_memory", input_size=auto_input_size(train), threads=threads)
    detector.fit(train)
    module = detector.export_module()

    def describe(samples):
        maps = detector.embed_maps(samples)
        with torch.no_grad():
            patch = np.concatenate([module.score_features(maps[i:i + 8], None)[0].double().numpy()
                                    for i in range(0, len(maps), 8)])
        return patch, torch.cat([maps.mean((2, 3)), maps.std((2, 3))], 1).double().numpy()

    _, g_train = describe(train)
    patch_test, g_test = describe(test)
    mu, sd = g_train.mean(0), g_train.std(0) + 1e-6
    g_train, g_test = (g_train - mu) / sd, (g_test - mu) / sd
    global_train, global_test = _nearest(g_train, g_train, leave_one_out=True), _nearest(g_test, g_train)
    labels = np.array([s.label for s in test])

    def figures(score: np.ndarray) -> dict:
        fpr, tpr, _ = roc_curve(labels, score)
        return {"image_auroc": float(roc_auc_score(labels, score)), "oracle_escape": float(1 - tpr[fpr <= 0.02].max())}

    oof = detector.oof_scores
    z_patch = (patch_test - oof.mean()) / oof.std()
    z_global = (global_test - global_train.mean()) / global_train.std()
    row = {"category": category.name, "patch": figures(patch_test), "global": figures(global_test)}
    for w in WEIGHTS:
        row[f"sum_w{w:g}"] = figures(z_patch + w * z_global)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("EI_DATASETS", DEFAULT_DATA)))
    p.add_argument("--categories", nargs="+", required=True)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    for name in args.categories:
        row = measure(args.data / name, args.threads)
        print(json.dumps(row))
        print(f"{name}: " + ", ".join(f"{k} {v['image_auroc']:.3f} (oracle escape {v['oracle_escape']:.3f})"
                                      for k, v in row.items() if k != "category"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
