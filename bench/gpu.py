"""GPU benchmark: TensorRT FP16/INT8 vs ONNX Runtime (CUDA, CPU) vs PyTorch eager, per model.

For each detector kind: fit on the train split of a real category (in-process, so the same
fitted detector is the PyTorch eager reference), export ONNX through the normal toolchain path,
build TensorRT engines, then for batch 1 and batch 32 print throughput (frames/s) and p50/p99
latency per backend, plus output agreement with the FP32 ONNX model and image AUROC on the test
split per backend/precision. JSON on stdout's last line, a human table before it.

    python bench/gpu.py --data PATH/TO/category [--models feature_memory,classifier] [--iters 200]

Needs an NVIDIA GPU with TensorRT + pycuda; without one it says so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def timed(fn, batch: np.ndarray, iters: int) -> dict:
    for _ in range(5):
        fn(batch)
    lat = []
    for _ in range(iters):
        t = time.perf_counter()
        fn(batch)
        lat.append(time.perf_counter() - t)
    lat_ms = np.array(lat) * 1e3
    return {"fps": round(len(batch) / (np.mean(lat_ms) / 1e3), 1), "p50_ms": round(float(np.percentile(lat_ms, 50)), 3),
            "p99_ms": round(float(np.percentile(lat_ms, 99)), 3), "per_frame_p50_ms": round(
                float(np.percentile(lat_ms, 50)) / len(batch), 4)}


def auroc(labels, scores) -> float | None:
    from sklearn.metrics import roc_auc_score

    return None if len(set(labels)) < 2 else round(float(roc_auc_score(labels, scores)), 4)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="MVTec-layout category")
    ap.add_argument("--models", default="feature_memory,classifier")
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--max-train", type=int, default=200)
    ap.add_argument("--input-size", type=int, default=224)
    args = ap.parse_args()

    try:
        import onnxruntime as ort
        import torch

        from edge_inspector.backends.tensorrt import import_tensorrt

        import_tensorrt()
        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
    except Exception as exc:  # noqa: BLE001 - explain and leave
        print(f"bench/gpu.py: needs an NVIDIA GPU with TensorRT + pycuda ({exc})")
        return 2

    from edge_inspector.backends import create_backend
    from edge_inspector.data.loading import load_images
    from edge_inspector.data.readers import load_dataset
    from edge_inspector.export.tensorrt import build_engine
    from edge_inspector.inference import LoadedModel
    from edge_inspector.toolchain.train import limit_train, train_model

    dataset = limit_train(load_dataset(args.data), args.max_train)
    test = dataset.split("test")
    labels = [s.label for s in test]
    results = []
    work = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    for kind in args.models.split(","):
        card = train_model(kind, dataset, work, name=f"gpu-{kind}", options={"input_size": args.input_size},
                           progress=False)
        model = LoadedModel.load(card)
        h, w = model.input_size
        x_test = load_images(test, h, w)
        ref = model.backend.run(x_test)["pred_score"]
        row = {"model": kind, "backends": {}}
        backends = {"onnxruntime-cpu": model.backend}
        if "CUDAExecutionProvider" in ort.get_available_providers():
            backends["onnxruntime-cuda"] = create_backend("onnxruntime", model.card.model_path(card),
                                                          providers=["CUDAExecutionProvider"])
        for precision in ("fp16", "int8"):
            calib = Path(dataset.split("train")[0].path).parent if precision == "int8" else None
            build_engine(card, precision=precision, calibration_images=calib, calibration_dir=work)
            backends[f"tensorrt-{precision}"] = create_backend("tensorrt", model.card.model_path(card),
                                                               precision=precision)
        for name, backend in backends.items():
            scores = np.concatenate([backend.run(x_test[i:i + 32])["pred_score"] for i in range(0, len(x_test), 32)])
            entry = {"max_abs_diff_vs_fp32": round(float(np.max(np.abs(scores - ref))), 5),
                     "image_auroc": auroc(labels, scores)}
            for b in (1, 32):
                entry[f"batch{b}"] = timed(backend.run, np.repeat(x_test[:1], b, axis=0), args.iters if b == 1 else
                                           max(20, args.iters // 8))
            row["backends"][name] = entry
        # PyTorch eager on the GPU: the ONNX graph's source module, rebuilt by fitting in-process.
        from edge_inspector.models import create_detector

        det = create_detector(kind, input_size=args.input_size)
        det.fit(dataset.split("train"), dataset.split("val") or None, progress=False)
        module = det.export_module().cuda().eval()

        def eager(batch, module=module):
            with torch.no_grad():
                out = module(torch.from_numpy(batch).cuda())
                torch.cuda.synchronize()
                return out

        row["backends"]["torch-eager-cuda"] = {f"batch{b}": timed(eager, np.repeat(x_test[:1], b, axis=0), 50)
                                               for b in (1, 32)}
        results.append(row)

    print(f"{'model':16} {'backend':20} {'b1 fps':>8} {'b1 p50':>8} {'b32 fps':>9} {'b32 p50/frame':>13} "
          f"{'AUROC':>6} {'|diff|':>8}")
    for row in results:
        for name, e in row["backends"].items():
            print(f"{row['model']:16} {name:20} {e['batch1']['fps']:8.0f} {e['batch1']['p50_ms']:8.2f} "
                  f"{e['batch32']['fps']:9.0f} {e['batch32']['per_frame_p50_ms']:13.3f} "
                  f"{str(e.get('image_auroc', '-')):>6} {str(e.get('max_abs_diff_vs_fp32', '-')):>8}")
    gpu = torch.cuda.get_device_name(0)
    print(f"GPU: {gpu}; target: TensorRT FP16 >= 1000 frames/s batched, p50 < 2 ms per frame")
    print(json.dumps({"gpu": gpu, "data": str(args.data), "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
