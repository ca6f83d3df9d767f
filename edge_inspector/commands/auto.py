"""``edge-inspector auto``: train the candidate models, keep the best by composite score on validation."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._options import add_dataset_options, add_scoring_options, parse_size


def _json_options(text: str) -> dict[str, dict]:
    """``--options``: a JSON object mapping a candidate kind to its trainer options."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--options: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise argparse.ArgumentTypeError('--options: expected {"<kind>": {"<option>": value, ...}, ...}')
    return data


def build_options(kinds: list[str], args: argparse.Namespace) -> dict[str, dict]:
    """Per-kind trainer options: the shortcuts (--input-size, --epochs, --threads) under --options."""
    from ..models.options import OPTIONS

    options = {}
    for kind in kinds:
        opts: dict = {"threads": args.threads}
        if args.input_size:
            opts["input_size"] = args.input_size
        if args.epochs is not None and kind in OPTIONS and "epochs" in OPTIONS[kind].model_fields:
            opts["epochs"] = args.epochs
        opts.update(args.options.get(kind, {}))
        options[kind] = opts
    return options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "auto",
        help="train candidate models, choose the best on the validation split, report it on test",
        description="Train each candidate kind on DATASET, evaluate each on the VALIDATION split, keep the best "
        "by composite score (model + card in --out, the others in --out/candidates/), then report the chosen "
        "model's figures on the test split. The test split is never used for choosing. Twins of feature_memory "
        "join the candidates: a 5x5 patch neighbourhood, a 2x input when the frames are at least twice the "
        "default input, and (against labelled validation defects only) the region branch off; a twin is kept "
        "only when validation ranks it higher. When the validation split has no "
        "labelled defect (--scheme native, or a line with good parts only), candidates are ranked on synthetic "
        "defects of three sizes made from its good images (on the part only where it stands on a plain "
        "background; written to --out/auto_report/synthetic_val/); the "
        "candidates are then feature_memory and its twins (synthetic defects were measured to choose the input "
        "size, not detector families), and of kinds given with --models only those that learn from normal images "
        "are ranked.",
    )
    p.add_argument("dataset", type=Path, help="dataset folder or .zip")
    p.add_argument("--models", default=None,
                   help="comma-separated candidate kinds (default: feature_memory,autoencoder,classifier, plus "
                   "segmenter when the training defects have masks; only feature_memory (and its twins) when "
                   "validation has no labelled defect; also custom_cnn, features_svm, features_rf, features_xgb)")
    p.add_argument("--out", type=Path, default=Path("models"), help="where the chosen model goes (default: models/)")
    p.add_argument("--input-size", type=parse_size,
                   help="input size for every candidate, N or HxW (default: the trainer's)")
    p.add_argument("--epochs", type=int, help="training epochs for the autoencoder, classifier and segmenter")
    p.add_argument("--options", type=_json_options, default={},
                   help='per-kind trainer options as JSON, e.g. \'{"feature_memory": {"coreset_ratio": 0.02}}\'')
    p.add_argument("--seed", type=int, default=0, help="training seed (default: 0)")
    p.add_argument("--force", action="store_true",
                   help="let the chosen model replace a model of the same name (<dataset>-<kind>) in --out")
    add_dataset_options(p, default_scheme="stratified")
    add_scoring_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Known failures (DatasetError, DetectorError, EvaluationError, AutoError: all EdgeInspectorError) reach
    ``cli.main``, which prints them on stderr with exit code 1; one failed candidate is only recorded."""
    from ..evaluate.datasets import open_dataset
    from ..evaluate.metrics import parse_weights
    from ..models import check_options
    from ..toolchain.auto import default_candidates, placement_words, run_auto

    weights = parse_weights(args.weights)
    kinds = [k.strip() for k in args.models.split(",") if k.strip()] if args.models is not None else None
    for kind, opts in build_options(kinds or [], args).items():  # a bad kind or option: before any data
        check_options(kind, opts)
    dataset = open_dataset(args.dataset, scheme=args.scheme, seed=args.split_seed, val_fraction=args.val_fraction,
                           category=args.category)
    if kinds is None:
        kinds = list(default_candidates(dataset))
    if not args.force:  # the chosen model is copied to --out as <dataset>-<kind>: never over one silently
        from .train import existing_model_files

        existing = [p for k in kinds for p in existing_model_files(f"{dataset.name}-{k}", args.out, None)]
        if existing:
            print(f"auto: {', '.join(str(p) for p in existing)} exist(s) and the chosen candidate would "
                  f"replace them; nothing was changed. Give auto its own --out (e.g. {args.out / 'auto'}) "
                  "or pass --force", file=sys.stderr)
            return 1
    summary = run_auto(dataset, args.out, models=kinds, seed=args.seed, weights=weights, threads=args.threads,
                       options=build_options(kinds, args), progress=not args.quiet and sys.stderr.isatty())
    if summary["val_defects"]["source"] == "synthetic":
        print(f"ranked on {summary['val_defects']['defective']} synthetic defects (the validation split has no "
              f"labelled one), drawn {placement_words(summary['val_defects'])}: {summary['val_defects']['folder']}")
    for c in summary["candidates"]:
        score = (c.get("val_composite") or {}).get("score")
        status = c["error"] if "error" in c else f"val composite {score:.3f}" if score is not None else "n/a"
        if c.get("not_ranked"):
            status += f" (not ranked: {c['not_ranked']})"
        print(f"  {'*' if c.get('chosen') else ' '} {c['kind']:<15} {status}")
    print(f"chosen: {summary['chosen']['kind']} -> {summary['chosen']['card']}")
    print(summary["test_summary"])
    print(f"report: {args.out / 'auto_report' / 'auto.html'}")
    return 0
