"""``edge-inspector import-anomalib``: adopt an anomalib ONNX export (card written after a sample check)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._options import parse_size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import-anomalib",
        help="import an ONNX model exported by anomalib and write its model card",
        description="Copy MODEL (anomalib ONNX export: outputs pred_score, pred_label, anomaly_map, pred_mask) "
        "into --out as <name>.onnx, adapted to edge-inspector's input contract (input 'image', RGB [0,1]), and "
        "write <name>.card.json after running it on the sample images. Say where the ImageNet normalisation "
        "is with --input-normalization: 'inside' (the graph does it), 'imagenet' (the graph expects normalised "
        "input: the import adds it in front) or 'none' (the model uses [0,1] pixels as they are).",
    )
    p.add_argument("model", type=Path, help="anomalib ONNX file (e.g. weights/onnx/model.onnx)")
    p.add_argument("--samples", type=Path, required=True, metavar="DIR",
                   help="folder of sample images (a few good and defective parts) to check the model on")
    p.add_argument("--input-normalization", choices=["inside", "imagenet", "none"], required=True,
                   help="where the ImageNet mean/std normalisation happens (see above)")
    p.add_argument("--name", help="model name (default: the file name without .onnx)")
    p.add_argument("--out", type=Path, default=Path("models"), help="output folder (default: models)")
    p.add_argument("--input-size", type=parse_size, help="HxW, needed when the export's input size is dynamic")
    p.add_argument("--threshold", type=float,
                   help="raw score threshold, for exports whose scores are not normalised (default: anomalib's "
                   "normalised scores, threshold 0.5)")
    p.add_argument("--score-min", type=float, help="raw score mapped to threshold - 0.5 (with --threshold)")
    p.add_argument("--score-max", type=float, help="raw score mapped to threshold + 0.5 (with --threshold)")
    p.add_argument("--max-samples", type=int, default=32, help="check at most this many sample images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..preprocess import decode_image
    from ..sources.base import list_images
    from ..toolchain.anomalib_import import import_anomalib

    if (args.score_min is not None or args.score_max is not None) and args.threshold is None:
        print("import-anomalib: --score-min/--score-max need --threshold (raw scores)", file=sys.stderr)
        return 1
    if not args.samples.is_dir():
        print(f"import-anomalib: --samples {args.samples}: not a folder", file=sys.stderr)
        return 1
    files = list_images(args.samples, "*.png,*.jpg,*.jpeg,*.bmp,*.tif,*.tiff")[: args.max_samples]
    # ImageDecodeError, AnomalibImportError, CardError: cli.main prints "import-anomalib: <message>" (stderr, exit 1)
    images = [decode_image(f) for f in files]
    result = import_anomalib(args.model, args.out, name=args.name, samples=images,
                             input_normalization=args.input_normalization, threshold=args.threshold,
                             score_min=args.score_min, score_max=args.score_max, input_size=args.input_size)
    scores = result.sample_scores
    print(f"imported {args.model} -> {result.card_path}")
    for note in result.notes:
        print(f"  {note}")
    print(f"checked on {len(scores)} sample image(s): raw pred_score {min(scores):.4g} .. {max(scores):.4g}"
          + ("" if result.label_agreement is None
             else f"; pred_label agrees with the card's threshold on {100 * result.label_agreement:.0f}%"))
    return 0
