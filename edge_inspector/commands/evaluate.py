"""``edge-inspector evaluate``: score one model on one dataset split; write report.json + report.html."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_dataset_options(p: argparse.ArgumentParser, default_scheme: str = "native", seed_alias: bool = True) -> None:
    """Options shared by evaluate, compare and auto for reading and splitting a dataset.

    The split seed is ``--split-seed`` as in ``train``; evaluate and compare also accept ``--seed``
    for it (they have no other seed), auto keeps ``--seed`` for the training seed, as ``train`` does.
    """
    p.add_argument("--scheme", choices=["native", "stratified"], default=default_scheme,
                   help=f"how the dataset is split (default: {default_scheme}); use the same as for training")
    names = ["--split-seed", "--seed"] if seed_alias else ["--split-seed"]
    p.add_argument(*names, dest="split_seed", type=int, default=0,
                   help="seed of the train/val/test split, the same as for training (default: 0)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share (default: 0.2)")
    p.add_argument("--category", help="category of a multi-category root (MVTec/VisA)")
    p.add_argument("--threads", type=int, default=2, help="inference threads (default: 2)")
    p.add_argument("--weights", help="composite weights, e.g. 'image_auroc=0.3,f1=0.2,recall=0.15,pro=0.25,"
                   "defect_type_auroc=0.1' (the default; unnamed components get 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a model on a dataset split (image, defect-type and pixel metrics, HTML + JSON)",
        description="Score MODEL (its .onnx or .card.json) on a split of DATASET through the same inference "
        "path as the daemon, and write report.json and a self-contained report.html (ROC/PR curves, score "
        "histograms, confusion matrices, per-defect-type table, heatmap gallery of the worst errors).",
    )
    p.add_argument("model", type=Path, help="model .onnx or .card.json")
    p.add_argument("dataset", type=Path, help="dataset folder or .zip (MVTec, VisA or normal/ + anomaly/)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to score (default: test)")
    p.add_argument("--out", type=Path, help="report folder (default: reports/<model>-<dataset>-<split>)")
    p.add_argument("--backend", default="onnxruntime", help="inference backend (default: onnxruntime)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--pixel-size", type=int, default=128,
                   help="longest side of the resolution for pixel metrics (default: 128)")
    add_dataset_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..backends import BackendError
    from ..card import CardError
    from ..data.readers import split_like_training
    from ..data.types import DatasetError
    from ..evaluate.datasets import data_spec, open_dataset
    from ..evaluate.metrics import parse_weights
    from ..evaluate.report import calibrate_command, terminal_summary, write_evaluation_report
    from ..evaluate.runner import evaluate_model
    from ..inference import LoadedModel

    try:
        weights = parse_weights(args.weights)
        model = LoadedModel.load(args.model, backend=args.backend, threads=args.threads)  # fail fast on a bad model
        dataset = open_dataset(args.dataset, scheme=args.scheme, seed=args.split_seed, val_fraction=args.val_fraction,
                               category=args.category)
        dataset = split_like_training(dataset, getattr(model.card.training, "split", None))
        spec = data_spec(dataset, args.split)
        report, pred = evaluate_model(
            model, spec.samples, batch_size=args.batch_size,
            pixel_size=args.pixel_size, weights=weights, progress=not args.quiet and sys.stderr.isatty(),
            dataset={"name": spec.name, "root": spec.root, "split": spec.split, "scheme": args.scheme,
                     "split_seed": args.split_seed, "source": str(args.dataset),
                     "val_has_defects": any(s.label == 1 for s in dataset.split("val"))},
        )
    except (BackendError, CardError, DatasetError, ValueError) as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:  # an optional backend or its dependency is not installed
        print(f"evaluate: backend {args.backend!r} is not available "
              f"here ({exc}); try --backend onnxruntime", file=sys.stderr)
        return 1
    out = args.out or Path("reports") / f"{report.model.name}-{spec.name}-{spec.split}"
    json_path, html_path = write_evaluation_report(report, pred, out)
    print(terminal_summary(report))
    print(f"report: {html_path}\n        {json_path}")
    print(f"threshold: to move it to the best-F1 rule, {calibrate_command(report)}")
    return 0
