"""``edge-inspector calibrate``: set a model's threshold from images, through the deployed ONNX model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_calibration_options, add_dataset_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="choose a model's threshold (false-reject rate, best F1 or minimum recall)",
        description="Score DATASET's images with MODEL through ONNX Runtime (exactly as the daemon does), "
        "choose the raw threshold by --method, store it in the card's normalization (threshold = 0.5) "
        "and record the decision in calibration/NAME.json. fpr needs normal images only; f1 and recall "
        "need labelled defects (use --split test or --scheme stratified).",
    )
    p.add_argument("model", type=Path, help="model .onnx or its .card.json")
    p.add_argument("dataset", type=Path, help="dataset folder or .zip")
    add_calibration_options(p, default="fpr", with_auto=True)
    p.add_argument("--split", choices=["val", "test", "train", "all"], default="val",
                   help="images to calibrate on (val falls back to train when the dataset has none)")
    p.add_argument("--calibration-dir", type=Path, default=Path("calibration"), help="where NAME.json goes")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    p.add_argument("--dry-run", action="store_true", help="print the result, leave the card unchanged")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_dataset_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Known failures (CalibrationError, DatasetError, CardError, BackendError) reach ``cli.main``: stderr, exit 1."""
    import sys

    from ..card import card_path_for, load_card
    from ..data.readers import load_dataset, split_like_training
    from ..toolchain.calibrate import CalibrationError, calibrate_model

    dataset = load_dataset(args.dataset, scheme=args.scheme, seed=args.split_seed,
                           val_fraction=args.val_fraction, category=args.category)
    card = load_card(card_path_for(args.model), verify=False)  # calibrate_model verifies it
    dataset = split_like_training(dataset, getattr(card.training, "split", None))
    split = args.split
    samples = dataset.samples if split == "all" else dataset.split(split)
    if not samples and split == "val":
        print(f"calibrate: {dataset.name} has no val split; using the train split", file=sys.stderr)
        split, samples = "train", dataset.split("train")
    if not samples:
        raise CalibrationError(f"{args.dataset}: split '{split}' has no images")
    cal = calibrate_model(args.model, samples, method=args.method, target=args.target,
                          calibration_dir=args.calibration_dir, source=f"{dataset.name}:{split}",
                          progress=not args.quiet, write_card=not args.dry_run, threads=args.threads,
                          on_training_images=split in ("train", "all"))
    print(f"At this threshold the model {cal.summary()}")
    print(f"calibrated on {cal.n_normal} normal + {cal.n_defect} defective images ({split}): "
          f"method {cal.method_label()}")
    print(f"threshold:   {cal.threshold:.6g} raw  (normalised 0.5; min {cal.min:.4g}, max {cal.max:.4g})")
    figures = [f"false-reject rate {cal.false_reject_rate:.3f}"]  # a fraction, as train and evaluate print it
    if cal.recall is not None:
        figures += [f"recall {cal.recall:.3f}", f"precision {cal.precision:.3f}", f"F1 {cal.f1:.3f}"]
    print("achieved:    " + ", ".join(figures))
    if cal.pixel_threshold is not None:
        pixel_f1 = "n/a (no masks)" if cal.pixel_f1 is None else f"{cal.pixel_f1:.3f}"
        print(f"pixel:       threshold {cal.pixel_threshold:.6g} raw (pixel F1 {pixel_f1})")
    print("card:        " + ("unchanged (--dry-run)" if args.dry_run else f"updated ({args.model})"))
    return 0
