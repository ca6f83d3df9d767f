"""``edge-inspector build-engine``: compile an ONNX model into a TensorRT engine for this GPU."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build-engine",
        help="build a TensorRT engine (FP16/INT8) from a model for this GPU",
        description="Compile MODEL (an ONNX file with its card) into a TensorRT engine for the GPU of this "
        "machine. Engines are valid for one TensorRT version and GPU model only; the backend refuses "
        "an engine built elsewhere. Needs an NVIDIA GPU and the [tensorrt] extra (or JetPack).",
    )
    p.add_argument("model", type=Path, help="model .onnx or its .card.json")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp16")
    p.add_argument("--max-batch", type=int, default=32, help="largest batch of the dynamic profile")
    p.add_argument("--workspace-mb", type=int, default=2048, help="builder workspace limit")
    p.add_argument("--calibration-images", type=Path, help="folder of normal images (INT8 only)")
    p.add_argument("--calibration-dir", type=Path, default=Path("calibration"),
                   help="where the INT8 calibration cache is kept")
    p.add_argument("--out", type=Path, help="engine path (default: MODEL.<precision>.engine beside the model)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export.tensorrt import build_engine

    # a BackendError or CardError goes to cli.main: "build-engine: <message>" on stderr, exit 1
    result = build_engine(args.model, precision=args.precision, max_batch=args.max_batch,
                          workspace_mb=args.workspace_mb, calibration_images=args.calibration_images,
                          calibration_dir=args.calibration_dir, out=args.out)
    print(f"engine: {result.engine_path} ({result.meta.precision}, TensorRT {result.meta.tensorrt_version}, "
          f"{result.meta.gpu_name}) built in {result.seconds:.1f} s")
    return 0
