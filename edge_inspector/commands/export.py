"""``edge-inspector export``: check a trained model as the daemon will run it and bundle it for a device."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="check a trained ONNX model (I/O contract, batch invariance) and copy it to a deploy folder",
        description="Models are exported to ONNX by `train` (with a PyTorch parity check). This command "
        "verifies a model file against its card (sha256), runs it through ONNX Runtime on real images "
        "(--images) or a fixed random batch, checks the output contract and that batched and single-image "
        "scores agree, then copies the model, its card and its calibration record to --out. Reduced precision "
        "(int8, bf16, fp16) is `edge-inspector quantize`: it needs the model's training dataset (calibration "
        "ranges from the train split, accuracy measured on the held-out images), which export never reads.",
    )
    p.add_argument("model", type=Path, help="model .onnx or its .card.json")
    p.add_argument("--out", type=Path, help="deploy folder to copy model + card (+ calibration) into")
    p.add_argument("--images", type=Path,
                   help="folder of sample images to run, searched recursively (a dataset folder works: "
                   "my-part/ or my-part/normal for plain folders, my-part/test for MVTec; masks are skipped)")
    p.add_argument("--count", type=int, default=4, help="number of sample images")
    p.add_argument("--calibration-dir", type=Path, default=Path("calibration"),
                   help="where the model's calibration record is looked up")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    p.add_argument("--precision", choices=["fp32", "int8", "bf16", "fp16"], default="fp32",
                   help="fp32 only; int8/bf16/fp16 are made and checked by `edge-inspector quantize` (this "
                   "flag then says how)")
    p.set_defaults(func=run)


# Dataset sub-folders that hold defect masks, not part images (plain folders, MVTec).
MASK_FOLDERS = frozenset({"masks", "ground_truth"})


def _sample_batch(images: Path | None, count: int, height: int, width: int):
    import numpy as np

    from ..data.types import DatasetError
    from ..preprocess import decode_image, to_batch

    if images is None:
        return np.random.default_rng(0).uniform(0, 1, (max(count, 2), 3, height, width)).astype(np.float32)
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
    if not images.is_dir():
        raise DatasetError(f"--images {images}: no such folder (pass a folder of part images, e.g. "
                                "my-part/normal for plain folders or my-part/test for an MVTec layout)")
    files = sorted(f for f in images.rglob("*") if f.suffix.lower() in exts and f.is_file()
                   and not MASK_FOLDERS & set(f.relative_to(images).parts[:-1]))[:max(count, 1)]
    if not files:
        raise DatasetError(f"{images}: no images found (expected {', '.join(sorted(exts))})")
    return to_batch([decode_image(f) for f in files], height, width)


def run(args: argparse.Namespace) -> int:
    """Known failures (CardError, BackendError, ImageDecodeError, DatasetError) reach ``cli.main``: stderr,
    exit 1; a model that fails a check is reported the same way."""
    import sys

    from ..card import card_path_for, load_card
    from ..export.onnx import check_model

    if args.precision != "fp32":  # one way to a reduced precision: the one that measures its accuracy
        print(f"export: --precision {args.precision} is made by `edge-inspector quantize {args.model} --precision "
              f"{args.precision} --data TRAINING_DATASET` (it calibrates on the model's training split and records "
              "the accuracy change in the card); then export the result", file=sys.stderr)
        return 2
    card_path = card_path_for(args.model)
    card = load_card(card_path)
    batch = _sample_batch(args.images, args.count, card.input.height, card.input.width)
    check = check_model(card_path, batch, threads=args.threads)
    outputs = ", ".join(f"{k} {v}" for k, v in check.outputs.items())
    print(f"model:   {card.model_path(card_path)} ({card.kind}, sha256 {card.model_sha256[:12]} verified)")
    print(f"checked: {check.n_images} images -> {outputs}; batched vs single max |diff| {check.batch_max_diff:.2e}")
    if not check.ok:
        for problem in check.problems:
            print(f"export: {problem}", file=sys.stderr)
        return 1
    if card.normalization.method == "uncalibrated":
        print("warning: model is not calibrated (run `edge-inspector calibrate`); scores are not 0.5-centred")
    if args.out:
        from ..toolchain.modelfiles import deploy_copy

        copied = deploy_copy(card_path, args.out, calibration_dir=args.calibration_dir)
        print("copied:  " + ", ".join(str(c) for c in copied))
    return 0
