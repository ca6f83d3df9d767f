"""``edge-inspector evaluate``: score one model on one dataset split; write report.json + report.html."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._options import add_dataset_options, add_scoring_options


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
    add_dataset_options(p, seed_alias=True)
    add_scoring_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Known failures (CardError, BackendError, DatasetError, EvaluationError: all EdgeInspectorError) reach
    ``cli.main``, which prints them on stderr with exit code 1 (an optional backend that is not installed
    is a BackendError saying what to install)."""
    from ..data.readers import split_like_training
    from ..evaluate.datasets import data_spec, open_dataset
    from ..evaluate.metrics import parse_weights
    from ..evaluate.report import calibrate_command, terminal_summary, write_evaluation_report
    from ..evaluate.runner import evaluate_model
    from ..inference import LoadedModel

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
    out = args.out or Path("reports") / f"{report.model.name}-{spec.name}-{spec.split}"
    json_path, html_path = write_evaluation_report(report, pred, out)
    print(terminal_summary(report))
    print(f"report: {html_path}\n        {json_path}")
    print(f"threshold: to move it to the best-F1 rule, {calibrate_command(report)}")
    return 0
