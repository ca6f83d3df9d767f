"""``edge-inspector quantize``: an INT8 model, or a bf16/fp16 check, measured on the model's own data."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="make an INT8 model (QDQ, per-channel) or check OpenVINO bf16/fp16, with the accuracy change "
             "recorded in the card",
        description="int8: ONNX Runtime static quantization (QDQ, per-channel int8 weights) with activation "
        "ranges from the model's own training images (the card's data digest is checked), written as "
        "<name>-int8.onnx + card beside the model. bf16/fp16: the same model under OpenVINO at that "
        "precision. Either way the fp32 and the reduced model score the validation images (val, or test "
        "when val holds no defects), and both AUROCs, the largest normalised-score change and the verdict "
        "flips go into the card. A drop in image AUROC beyond --tolerance is refused (exit 1): the int8 "
        "file is removed, a failed bf16 check is recorded so the OpenVINO backend keeps refusing bf16.",
    )
    p.add_argument("model", type=Path, help="fp32 model .onnx or its .card.json")
    p.add_argument("--data", type=Path, required=True, help="the model's training dataset (folder or .zip)")
    p.add_argument("--precision", choices=["int8", "bf16", "fp16"], default="int8")
    p.add_argument("--tolerance", type=float, default=0.005, help="largest image-AUROC drop accepted (0.005)")
    p.add_argument("--device", default="CPU", help="bf16/fp16: OpenVINO device (CPU, GPU, NPU)")
    p.add_argument("--calibration-images", type=int, default=64,
                   help="int8: training images used for the activation ranges (seeded subset)")
    p.add_argument("--ops", help="int8: comma-separated op types to quantize (default: Conv for detectors, "
                                 "Conv,MatMul,Gemm for classifiers)")
    p.add_argument("--scheme", choices=["native", "stratified"],
                   help="split scheme (default: the one in the card)")
    p.add_argument("--split-seed", type=int, help="split seed (default: the card's)")
    p.add_argument("--val-fraction", type=float, help="validation share (default: the card's)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--force", action="store_true", help="replace an existing <name>-int8 model")
    p.set_defaults(func=run)


def recalibration_line(result) -> str:
    """How the fp32 threshold was carried over to the int8 scores (export/quantize.transfer_normalization)."""
    from ..card import load_card

    card = load_card(result.card_path, verify=False)
    info = card.extra.get("quantization", {}).get("recalibration") or {}
    if not info.get("applied"):
        return f"threshold: the fp32 model's, unchanged ({info.get('why', 'no transfer recorded')})"
    return (f"threshold: fp32 calibration transferred to int8 scores (int8 = {info['slope']:.4g} x fp32 "
            f"{info['intercept']:+.4g}, fitted on {info['n_images']} images): raw {card.normalization.threshold:.4g}"
            + (" (moved off the line to where the int8 verdicts on those images agree best with fp32's)"
               if info.get("threshold_rule") == "verdict agreement" else "") + "; "
            f"verdicts differing from fp32: {info['verdict_flips_with_fp32_normalization']} with the fp32 "
            f"threshold, {result.check.verdict_flips} with the transferred one")


def run(args: argparse.Namespace) -> int:
    """Known failures (QuantizeError, CardError, BackendError, DatasetError, ImageDecodeError) reach
    ``cli.main``: stderr, exit 1."""
    from ..export.quantize import check_reduced_precision, quantize_int8

    split = {"scheme": args.scheme, "seed": args.split_seed, "val_fraction": args.val_fraction}
    if args.precision == "int8":
        ops = [o.strip() for o in args.ops.split(",") if o.strip()] if args.ops else None
        result = quantize_int8(args.model, args.data, tolerance=args.tolerance,
                               max_calibration=args.calibration_images, op_types=ops,
                               threads=args.threads, force=args.force, **split)
        for check in [result.check, *result.extra_checks]:
            print(f"checked: {check.summary()}")
        print(f"int8 model: {result.card_path} (backend: onnxruntime"
              + (", or openvino with precision: int8" if any(c.passed for c in result.extra_checks) else "")
              + ")")
        print(recalibration_line(result))
        if result.check.verdict_flips:
            print(f"note: {result.check.verdict_flips} verdict(s) still differ from fp32 at the transferred "
                  f"threshold; to set it from the int8 scores alone: `edge-inspector calibrate "
                  f"{result.card_path} {args.data}`")
        return 0
    check = check_reduced_precision(args.model, args.data, args.precision, device=args.device,
                                    tolerance=args.tolerance, threads=args.threads, **split)
    print(f"checked: {check.summary()}")
    print(f"recorded in the card; backend: openvino with precision: {args.precision} "
          + ("may now run it" if check.passed else "stays refused"))
    return 0 if check.passed else 1
