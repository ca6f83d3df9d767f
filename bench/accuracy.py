#!/usr/bin/env python3
"""Accuracy benchmark: train each detector on each real dataset, score its test split, print figures.

For every category under --data (default /work/shared/datasets) and every detector kind
(--models, default all registered): ``train_model`` on the train split (at most --max-train
images; threshold calibrated on the val split), then the test split is scored through
``inference.LoadedModel`` -- the ONNX file, exactly as the daemon runs it. Printed per category
and as the mean: image AUROC, pixel AUROC, false-reject and escape rates at the calibrated
threshold, fit seconds, ms per image; next to the targets of /work/shared/TARGETS.md.

    .venv/bin/python bench/accuracy.py --models feature_memory --categories mpdd_metal_plate
    .venv/bin/python bench/accuracy.py --json bench/results/accuracy.json

A detector that fails on a category is reported with its error; the others still run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from edge_inspector.commands.train import parse_size  # noqa: E402

# /work/shared/TARGETS.md, "Detection": best model per set (image AUROC, pixel AUROC)
TARGETS = {
    "mpdd_metal_plate": (1.00, 0.985),
    "magnetic_tile": (0.95, 0.90),
    "kolektorsdd": (0.95, 0.95),
}
FIT_TARGET_S = 60.0  # fit of the default detector on 200 images
MAX_PIXELS = 5_000_000  # pixels used for pixel AUROC (seeded subsample beyond that)


def pixel_auroc(maps: np.ndarray, masks: np.ndarray) -> float | None:
    """AUROC over all test pixels; None when no pixel is defective (or none is normal)."""
    from sklearn.metrics import roc_auc_score

    y, s = masks.ravel().astype(np.uint8), maps.ravel()
    if y.size > MAX_PIXELS:
        idx = np.random.default_rng(0).choice(y.size, MAX_PIXELS, replace=False)
        y, s = y[idx], s[idx]
    if y.min() == y.max():
        return None
    return float(roc_auc_score(y, s))


def score_split(model, samples, batch_size: int = 16) -> dict:
    """Raw scores, raw maps and timings of samples through a LoadedModel."""
    from edge_inspector.data.loading import load_images

    h, w = model.input_size
    scores, maps = [], []
    infer_s = load_s = 0.0
    for start in range(0, len(samples), batch_size):
        t0 = time.perf_counter()
        batch = load_images(samples[start:start + batch_size], h, w)
        t1 = time.perf_counter()
        results = model.run_batch(batch)
        t2 = time.perf_counter()
        load_s += t1 - t0
        infer_s += t2 - t1
        for r in results:
            scores.append(r.raw_score)
            if r.raw_map is not None:
                maps.append(r.raw_map)
    return {"scores": np.asarray(scores), "maps": np.stack(maps) if maps else None,
            "infer_s": infer_s, "load_s": load_s}


def evaluate_one(kind: str, dataset, work: Path, args: argparse.Namespace) -> dict:
    from sklearn.metrics import roc_auc_score

    from edge_inspector.card import load_card
    from edge_inspector.data.loading import load_masks
    from edge_inspector.inference import LoadedModel
    from edge_inspector.train import train_model

    options = dict(args.option.get(kind, {}))
    if args.input_size:
        options.setdefault("input_size", args.input_size)
    options.setdefault("threads", args.threads)
    t0 = time.perf_counter()
    card_path = train_model(kind, dataset, work, name=f"{dataset.name}-{kind}", seed=args.seed, options=options,
                            progress=False)
    train_total = time.perf_counter() - t0
    card = load_card(card_path)
    model = LoadedModel.load(card_path, threads=args.threads)
    test = dataset.split("test")
    if args.max_test and len(test) > args.max_test:
        rng = np.random.default_rng(args.seed)
        test = [test[i] for i in sorted(rng.choice(len(test), args.max_test, replace=False))]
    out = score_split(model, test, batch_size=args.batch_size)
    labels = np.array([s.label for s in test])
    scores = out["scores"]
    row = {
        "category": dataset.name, "model": kind, "n_train": card.training.n_images, "n_test": len(test),
        "n_defect": int(labels.sum()),
        "image_auroc": float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else None,
        "pixel_auroc": None,
        "fit_s": card.training.fit_seconds, "train_total_s": round(train_total, 2),
        "ms_per_img": 1000 * out["infer_s"] / max(len(test), 1),
        "ms_per_img_with_decode": 1000 * (out["infer_s"] + out["load_s"]) / max(len(test), 1),
        "threshold": card.normalization.threshold, "calibration": card.normalization.method,
        "parameters": card.parameters,
    }
    flagged = scores >= card.normalization.threshold
    if (labels == 0).any():
        row["false_reject_rate"] = float(flagged[labels == 0].mean())
    if (labels == 1).any():
        row["escape_rate"] = float(1.0 - flagged[labels == 1].mean())
    if out["maps"] is not None and any(s.mask_path is not None for s in test):
        masks = load_masks(test, *out["maps"].shape[-2:])
        row["pixel_auroc"] = pixel_auroc(out["maps"], masks)
    return row


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    head = (f"{'category':<18} {'model':<15} {'img AUROC':>9} {'target':>6} {'pix AUROC':>9} {'target':>6} "
            f"{'FRR':>6} {'escape':>6} {'fit s':>7} {'ms/img':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        if "error" in r:
            print(f"{r['category']:<18} {r['model']:<15} ERROR: {r['error']}")
            continue
        t_img, t_pix = TARGETS.get(r["category"], (None, None))
        print(f"{r['category']:<18} {r['model']:<15} {_fmt(r['image_auroc']):>9} {_fmt(t_img, '.2f'):>6} "
              f"{_fmt(r['pixel_auroc']):>9} {_fmt(t_pix, '.3f'):>6} {_fmt(r.get('false_reject_rate'), '.3f'):>6} "
              f"{_fmt(r.get('escape_rate'), '.3f'):>6} {_fmt(r['fit_s'], '.1f'):>7} {_fmt(r['ms_per_img'], '.1f'):>7}")


def mean_rows(rows: list[dict]) -> list[dict]:
    """Mean over categories, per model (only over categories where the figure exists)."""
    means = []
    for kind in sorted({r["model"] for r in rows}):
        ok = [r for r in rows if r["model"] == kind and "error" not in r]
        if not ok:
            continue
        m = {"category": "MEAN", "model": kind, "n_categories": len(ok)}
        for key in ("image_auroc", "pixel_auroc", "false_reject_rate", "escape_rate", "fit_s", "ms_per_img"):
            vals = [r[key] for r in ok if r.get(key) is not None]
            m[key] = float(np.mean(vals)) if vals else None
        means.append(m)
    return means


def parse_options(items: list[str]) -> dict[str, dict]:
    """``KIND.KEY=VALUE`` (JSON values) -> {kind: {key: value}}."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        kind, dot, name = key.partition(".")
        if not sep or not dot:
            raise SystemExit(f"--option {item!r}: expected KIND.KEY=VALUE, e.g. feature_memory.coreset_ratio=0.05")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(kind, {})[name] = parsed
    return out


def main(argv: list[str] | None = None) -> int:
    from edge_inspector.models import DETECTORS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(os.environ.get("EI_DATASETS", "/work/shared/datasets")),
                   help="folder of categories (MVTec layout each)")
    p.add_argument("--categories", nargs="*", help="category names (default: every folder under --data)")
    p.add_argument("--models", nargs="*", default=list(DETECTORS), help=f"detector kinds (default: {list(DETECTORS)})")
    p.add_argument("--max-train", type=int, default=200, help="at most this many training images")
    p.add_argument("--max-test", type=int, help="score at most this many test images (quick runs)")
    p.add_argument("--input-size", type=parse_size, help="N or HxW (default: from the images' aspect ratio)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16, help="images per ONNX Runtime call when scoring")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scheme", choices=["native", "stratified"], default="native")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--option", action="append", default=[], metavar="KIND.KEY=VALUE",
                   help="detector option, e.g. feature_memory.coreset_ratio=0.05 (repeatable)")
    p.add_argument("--work", type=Path, help="keep trained models here (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    args.option = parse_options(args.option)
    logging.basicConfig(level=logging.WARNING)

    from edge_inspector.data.readers import load_dataset
    from edge_inspector.train import limit_train

    unknown = [m for m in args.models if m not in DETECTORS]
    if unknown:
        p.error(f"unknown model kind(s) {unknown}; expected {list(DETECTORS)}")
    categories = args.categories or sorted(d.name for d in args.data.iterdir() if d.is_dir())
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ei-bench-") as tmp:
        work = args.work or Path(tmp)
        for category in categories:
            try:
                dataset = load_dataset(args.data / category, scheme=args.scheme, seed=args.seed,
                                       val_fraction=args.val_fraction)
            except Exception as exc:  # a broken dataset must not stop the others
                rows.append({"category": category, "model": "*", "error": str(exc)})
                continue
            dataset = limit_train(dataset, args.max_train, seed=args.seed)
            for kind in args.models:
                print(f"[{category}] {kind}: training on {len(dataset.split('train'))} images ...", file=sys.stderr)
                try:
                    rows.append(evaluate_one(kind, dataset, work / category, args))
                except Exception as exc:
                    logging.debug(traceback.format_exc())
                    rows.append({"category": category, "model": kind, "error": f"{type(exc).__name__}: {exc}"})
    means = mean_rows(rows)
    print_table(rows + means)
    fm = [r for r in rows if r.get("model") == "feature_memory" and "error" not in r and r["n_train"] >= 200]
    for r in fm:
        verdict = "ok" if r["fit_s"] < FIT_TARGET_S else "OVER"
        print(f"fit target: {r['category']} feature_memory {r['fit_s']:.1f} s on {r['n_train']} images "
              f"(target < {FIT_TARGET_S:.0f} s): {verdict}")
    result = {"rows": rows, "mean": means, "args": {k: (str(v) if isinstance(v, Path) else v)
                                                     for k, v in vars(args).items()}}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"mean": means}))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
