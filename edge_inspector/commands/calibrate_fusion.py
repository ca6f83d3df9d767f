"""``edge-inspector calibrate-fusion``: the threshold of a fused pair (rule soft_vote or weighted) for the config."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._options import add_calibration_options, add_dataset_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate-fusion",
        help="choose the fusion threshold of models that run together (rule soft_vote or weighted)",
        description="Score DATASET's images with every MODEL through ONNX Runtime (exactly as the daemon does), "
        "fuse their normalised scores by --rule (the daemon's runtime.decision.fuse, weighted by --weights) "
        "and choose the threshold on the fused score by --method. Prints the `fusion:` section to put in the "
        "daemon's config and the false-reject/escape rates it gives on these images. Each member keeps its own "
        "calibration (edge-inspector calibrate); use images no member trained on (the val split).",
    )
    p.add_argument("dataset", type=Path, help="dataset folder or .zip")
    p.add_argument("models", type=Path, nargs="+", help="two or more models (.onnx or .card.json), as in the config")
    p.add_argument("--rule", choices=["soft_vote", "weighted"], default="soft_vote",
                   help="fusion rule whose threshold is calibrated (default: soft_vote)")
    p.add_argument("--weights", type=float, nargs="+", metavar="W",
                   help="each model's `weight` in the config, in the order of MODELS (default: all 1)")
    add_calibration_options(p, default="fpr", with_auto=False)
    p.add_argument("--split", choices=["val", "test", "train", "all"], default="val",
                   help="images to calibrate on (default: val)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_dataset_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Known failures (CalibrationError, DatasetError, CardError, BackendError) reach ``cli.main``: stderr, exit 1."""
    import yaml

    from ..card import card_path_for, load_card
    from ..data.readers import load_dataset, split_like_training
    from ..evaluate.fusion import Member
    from ..evaluate.scoring import score_samples
    from ..inference import LoadedModel
    from ..toolchain.calibrate import CalibrationError, calibrate_fusion

    if len(args.models) < 2:
        raise CalibrationError(f"calibrate-fusion needs at least two models, got {len(args.models)}")
    weights = args.weights or [1.0] * len(args.models)
    if len(weights) != len(args.models) or min(weights) < 0 or sum(weights) <= 0:
        raise CalibrationError(f"--weights {args.weights}: expected {len(args.models)} weights >= 0 (one per model, "
                               "as in the config's models list), not all 0")
    dataset = load_dataset(args.dataset, scheme=args.scheme, seed=args.split_seed,
                           val_fraction=args.val_fraction, category=args.category)
    first = load_card(card_path_for(args.models[0]), verify=False)
    dataset = split_like_training(dataset, getattr(first.training, "split", None))
    samples = dataset.samples if args.split == "all" else dataset.split(args.split)
    if not samples:
        raise CalibrationError(f"{args.dataset}: split '{args.split}' has no images")
    members = []
    for path, weight in zip(args.models, weights, strict=True):
        model = LoadedModel.load(card_path_for(path), threads=args.threads)
        members.append(Member(model.name, model.card.kind, score_samples(model, samples, progress=not args.quiet),
                              model.card.normalization, weight=weight))
    fusion, cal = calibrate_fusion(members, args.rule, method=args.method, target=args.target)
    names = " + ".join(m.name for m in members)
    print(f"At this threshold the fusion of {names} {cal.summary()}")
    print(f"calibrated on {cal.n_normal} normal + {cal.n_defect} defective images ({args.split}): "
          f"method {cal.method_label()}, rule {fusion.rule}")
    print("put this section in the daemon's config, with these weights on its models: "
          + ", ".join(f"{m.name} {m.weight:g}" for m in members))
    print(yaml.safe_dump({"fusion": {"rule": fusion.rule, "threshold": fusion.threshold}}, sort_keys=False).rstrip())
    return 0
