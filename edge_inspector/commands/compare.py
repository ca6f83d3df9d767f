"""``edge-inspector compare``: several models on one or more datasets, accuracy next to speed and size."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._options import add_dataset_options, add_scoring_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="compare models: accuracy, latency per backend, parameters, size, composite score",
        description="Evaluate every MODEL on every --data dataset (or category) and print one table: image/pixel/"
        "defect-type figures next to latency measured here (batch 1, per backend), parameter count, file size, "
        "energy estimate and a composite score. Writes comparison.json and comparison.html.",
    )
    p.add_argument("models", type=Path, nargs="+", help="model .onnx or .card.json files")
    p.add_argument("--data", type=Path, nargs="+", required=True, help="dataset folders or .zip files")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to score (default: test)")
    p.add_argument("--backends", default="onnxruntime",
                   help="comma-separated backends to time (default: onnxruntime; e.g. onnxruntime,tensorrt)")
    p.add_argument("--latency-images", type=int, default=20, help="images timed per model and backend")
    p.add_argument("--out", type=Path, default=Path("reports/compare"), help="report folder")
    add_dataset_options(p, seed_alias=True, category_help="categories of a multi-category root: 'a,b' or 'all' "
                        "(one table row per model and category)")
    add_scoring_options(p)
    p.set_defaults(func=run)


def _categories(path: Path, option: str | None) -> list[str | None]:
    """``--category a,b`` -> [a, b]; ``--category all`` -> every category under ``path``; none -> [None]."""
    if not option:
        return [None]
    if option == "all":
        from ..data.readers import list_categories  # noqa: PLC0415

        found = list_categories(path)
        if not found:
            from ..data.types import DatasetError  # noqa: PLC0415

            raise DatasetError(f"{path}: --category all, but no category folder (with train/ and test/) found")
        return list(found)
    return [c.strip() for c in option.split(",") if c.strip()]


def run(args: argparse.Namespace) -> int:
    """Known failures (CardError, BackendError, DatasetError, EvaluationError: all EdgeInspectorError) reach
    ``cli.main``, which prints them on stderr with exit code 1. A second backend that cannot load here is
    recorded in its latency column, not raised."""
    from ..evaluate.compare import compare_models, terminal_table, write_comparison
    from ..evaluate.datasets import data_spec, open_dataset
    from ..evaluate.metrics import parse_weights

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    weights = parse_weights(args.weights)
    specs = []
    for path in args.data:
        for category in _categories(path, args.category):
            ds = open_dataset(path, scheme=args.scheme, seed=args.split_seed, val_fraction=args.val_fraction,
                              category=category)
            spec = data_spec(ds, args.split)
            if category:  # "mvtec/bolt": the category alone is ambiguous across --data roots
                spec.name = f"{Path(path).name}/{category}"
            specs.append(spec)
    result = compare_models(args.models, specs, backends=backends or ["onnxruntime"], threads=args.threads,
                            weights=weights, latency_images=args.latency_images,
                            progress=not args.quiet and sys.stderr.isatty())
    json_path, html_path = write_comparison(result, args.out)
    print(terminal_table(result))
    print(f"report: {html_path}\n        {json_path}")
    return 0
