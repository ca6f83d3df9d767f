"""INT8 models and reduced-precision checks, measured on the model's own data before anything ships.

``quantize_int8`` makes ``<name>-int8.onnx``: ONNX Runtime static quantization in QDQ format with
per-channel weights (the layout both ONNX Runtime's and OpenVINO's int8 kernels consume), activation
ranges calibrated on images of the model's own training split (the card's data digest is checked,
so the ranges come from the data the model learned, not from whatever folder was at hand).

``check_precision`` scores the fp32 model and the reduced one (int8 file, or the same file at
OpenVINO bf16/fp16) on the same validation images through ``LoadedModel`` (the daemon's path), and
returns a ``PrecisionCheck``: both AUROCs, the largest normalised-score change and the verdict flips.
A drop in image AUROC beyond the tolerance (default 0.005, TARGETS.md) fails the check; a failed
int8 model is deleted, a failed bf16 check is recorded so the OpenVINO backend keeps refusing bf16.

The int8 card does not keep the fp32 threshold as it is: int8 shifts raw scores, so the fp32
calibration is carried over through a line fitted from fp32 to int8 scores on the validation images
(``transfer_normalization``; the fit and the verdict flips before and after go into
``extra.quantization.recalibration``), and the recorded check counts flips after that transfer.

Why anomaly detectors quantize only their convolutions by default: their final layers measure
distances to a memory of *normal* features, and activation ranges calibrated on normal images clip
exactly the large values a defect produces. Convolutions (the backbone: almost all of the compute)
are where int8 pays; the distance head stays fp32. Classifiers quantize Conv, MatMul and Gemm.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends.base import BackendError
from ..backends.precision import DEFAULT_AUROC_TOLERANCE, PrecisionCheck, record_check
from ..card import NORMALISED_THRESHOLD, ModelCard, ScoreNormalization, card_path_for, load_card, sha256_file
from ..data.types import Dataset, DatasetError, Sample
from ..errors import EdgeInspectorError
from ..inference import LoadedModel
from ..operating_point import threshold_for_cost
from ..preprocess import decode_image, to_batch

log = logging.getLogger(__name__)

DETECTOR_OPS = ("Conv",)
CLASSIFIER_OPS = ("Conv", "MatMul", "Gemm")
#: ops that turn features into distances/errors/scores: everything after them stays fp32 in detectors
HEAD_OPS = {"MatMul", "Gemm", "ReduceMin", "ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2", "Sqrt", "Pow",
            "TopK", "GlobalAveragePool"}


class QuantizeError(EdgeInspectorError, RuntimeError):
    """Quantization or a precision check could not be done, or the model lost too much accuracy."""


@dataclass
class QuantizeResult:
    card_path: Path  # the int8 model's card (only written when the ONNX Runtime check passed)
    check: PrecisionCheck  # onnxruntime int8 vs fp32: decides whether the file exists
    extra_checks: list[PrecisionCheck]  # openvino int8 vs fp32, when OpenVINO is installed


def training_split(card: ModelCard) -> dict:
    """The split the model was trained with (scheme, seed, fractions), from its card."""
    info = card.training.model_dump().get("split") or {}
    return {k: info[k] for k in ("scheme", "seed", "val_fraction", "test_fraction") if info.get(k) is not None}


def load_training_dataset(card: ModelCard, data: Path, card_path: Path, **overrides) -> Dataset:
    """Load ``data`` with the card's split (scheme, seed, fractions, defects held out of train, the
    ``--max-train`` subset) and check its train split is the model's training data."""
    from ..data.readers import load_dataset, split_like_training
    from ..toolchain.train import limit_train

    options = {**training_split(card), **{k: v for k, v in overrides.items() if v is not None}}
    dataset = load_dataset(data, **options)
    recorded = card.training.model_dump().get("split") or {}
    dataset = split_like_training(dataset, recorded)
    if recorded.get("max_train"):
        dataset = limit_train(dataset, int(recorded["max_train"]), seed=card.training.seed or 0,
                              defects_first=recorded.get("max_train_rule") == "defects_first")
    expected = card.training.data_digest
    if expected:
        digest = dataset.digest("train")
        if digest != expected:
            raise QuantizeError(
                f"{data}: its train split (sha256 {digest[:12]}, split {options}) is not the data "
                f"{card_path} was trained on (sha256 {expected[:12]}); calibration images must come from "
                "the model's own training data: pass the training dataset and split options")
    return dataset


def validation_samples(dataset: Dataset) -> tuple[str, list[Sample]]:
    """Every held-out image: val + test (native splits keep all defects in test).

    Why both: this is a parity check of one model against itself, not a model selection, and on a
    few dozen images one swapped good/defect pair already moves AUROC by more than the 0.005
    tolerance; more images make the measured drop mean something.
    """
    samples = dataset.split("val") + dataset.split("test")
    if {s.label for s in samples} != {0, 1}:
        raise QuantizeError(f"{dataset.root}: the val and test splits do not hold both good and defective "
                            "images; an accuracy check needs both")
    names = [n for n in ("val", "test") if dataset.split(n)]
    return "+".join(names), samples


def _batches(samples: Sequence[Sample], height: int, width: int, batch: int = 8):
    for i in range(0, len(samples), batch):
        yield to_batch([decode_image(s.path) for s in samples[i:i + batch]], height, width)


def _auroc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else None


@dataclass
class Scores:
    """One model's raw scores on a list of images, and a strided sample of its raw anomaly-map pixels."""

    raw: np.ndarray
    map_pixels: np.ndarray | None = None

    def normalised(self, norm: ScoreNormalization) -> np.ndarray:
        return np.asarray(norm.score(self.raw), np.float64)


#: every MAP_STRIDE-th map pixel in each direction goes into the pixel-threshold transfer fit
MAP_STRIDE = 4


def _score(model: LoadedModel, samples: Sequence[Sample]) -> Scores:
    raw, pixels = [], []
    h, w = model.input_size
    for batch in _batches(samples, h, w):
        for r in model.run_batch(batch):
            raw.append(r.raw_score)
            if r.raw_map is not None:
                pixels.append(np.asarray(r.raw_map, np.float64)[::MAP_STRIDE, ::MAP_STRIDE].ravel())
    return Scores(np.asarray(raw, np.float64), np.concatenate(pixels) if pixels else None)


def _linear_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float] | None:
    """Least-squares y = slope * x + intercept; None when it cannot serve as a monotone score map."""
    if len(x) < 3 or float(np.ptp(x)) <= 0:
        return None
    slope, intercept = np.polyfit(x, y, 1)
    return (float(slope), float(intercept)) if slope > 0 else None


def transfer_normalization(norm: ScoreNormalization, reference: Scores,
                           reduced: Scores) -> tuple[ScoreNormalization, dict]:
    """The fp32 model's calibration carried over to the reduced model's raw-score scale.

    Why not keep the fp32 normalisation: int8 shifts raw scores (a feature-memory detector's distances
    grow by ~0.6 of a 4-unit span on the demo part), so the fp32 threshold moved verdicts of good parts
    near it (17 of 76 validation images). Why not calibrate anew: the fp32 threshold came from
    out-of-fold training scores and a rule (fpr, f1, recall, cost) that a quantized copy cannot
    reproduce without refitting the model. So the reduced model's raw scores are regressed on the fp32
    ones over the same images (val + test; label-free: no label is looked at) and the
    threshold, min and max (and the pixel ones, from the anomaly-map pixels) are mapped through that
    line: the operating point stays where the fp32 rule put it, to the extent the two scores agree.
    Where the line's threshold flips more verdicts on those images than some threshold must, the
    image threshold becomes the one that flips fewest (operating_point.threshold_for_cost with
    fp32's verdicts as labels, escape cost 1; still label-free): a line through a classifier's
    saturated probabilities put a 0.97 threshold at 1.05, above every int8 score, so that model
    passed every defect.
    Returns (normalisation, record); an unusable fit (too few images, slope <= 0) keeps ``norm``.
    """
    if norm.method == "uncalibrated":
        return norm, {"applied": False, "why": "the fp32 model is uncalibrated"}
    image = _linear_fit(reference.raw, reduced.raw)
    if image is None:
        return norm, {"applied": False, "why": f"no increasing linear fit over {len(reference.raw)} images"}
    slope, intercept = image
    update = {"threshold": slope * norm.threshold + intercept, "min": slope * norm.min + intercept,
              "max": slope * norm.max + intercept, "method": f"{norm.method}, transferred to int8"}
    record: dict = {"applied": True, "n_images": int(len(reference.raw)), "slope": round(slope, 6),
                    "intercept": round(intercept, 6)}
    # fp32's verdicts as the labels of a misclassification count: where the line leaves more of them
    # flipped than a threshold can, take the threshold with the fewest (ties: the higher one)
    fp32_flags = reference.raw >= norm.threshold

    def flipped(t: float) -> int:
        return int(((reduced.raw >= t) != fp32_flags).sum())

    agreeing = threshold_for_cost(reduced.raw, fp32_flags, escape_cost=1.0)
    if flipped(agreeing) < flipped(update["threshold"]):
        update["threshold"] = agreeing
        record["threshold_rule"] = "verdict agreement"
    else:
        record["threshold_rule"] = "linear"
    record["disagreements"] = flipped(update["threshold"])
    pixel = None
    if norm.pixel_threshold is not None and reference.map_pixels is not None and reduced.map_pixels is not None \
            and len(reference.map_pixels) == len(reduced.map_pixels):
        pixel = _linear_fit(reference.map_pixels, reduced.map_pixels)
    ps, pi = pixel or image  # no pixel fit: the image line (what anomaly_map falls back to anyway)
    for key in ("pixel_threshold", "pixel_min", "pixel_max"):
        value = getattr(norm, key)
        if value is not None:
            update[key] = ps * value + pi
    if pixel is not None:
        record.update(pixel_slope=round(ps, 6), pixel_intercept=round(pi, 6),
                      n_map_pixels=int(len(reference.map_pixels)))
    return norm.model_copy(update=update), record


def check_precision(reference: LoadedModel, reduced: LoadedModel, samples: Sequence[Sample], *, split: str,
                    dataset: str = "", tolerance: float = DEFAULT_AUROC_TOLERANCE, device: str = "CPU",
                    calibration_images: int | None = None, scores: tuple[Scores, Scores] | None = None,
                    ) -> PrecisionCheck:
    """Score the same images with both models; AUROC on raw scores (ranking), differences and verdict
    flips on normalised scores, each model through its own card's normalisation. ``scores``: the
    (reference, reduced) scores of ``samples`` when already computed."""
    labels = np.array([s.label for s in samples], dtype=int)
    ref, red = scores or (_score(reference, samples), _score(reduced, samples))
    ref_raw, red_raw = ref.raw, red.raw
    ref_norm, red_norm = ref.normalised(reference.card.normalization), red.normalised(reduced.card.normalization)
    a_ref, a_red = _auroc(labels, ref_raw), _auroc(labels, red_raw)
    drop = None if a_ref is None or a_red is None else a_ref - a_red
    flips = int(np.sum((ref_norm >= NORMALISED_THRESHOLD) != (red_norm >= NORMALISED_THRESHOLD)))
    precision = getattr(reduced.backend, "precision", "int8")
    return PrecisionCheck(
        backend=reduced.backend.name, precision=precision, device=device,
        model_sha256=reduced.card.model_sha256, reference_sha256=reference.card.model_sha256,
        split=split, dataset=dataset, n_images=len(samples), n_defect=int(labels.sum()),
        calibration_images=calibration_images, auroc_fp32=a_ref, auroc_reduced=a_red, auroc_drop=drop,
        max_score_diff=float(np.max(np.abs(ref_norm - red_norm))) if len(samples) else 0.0,
        verdict_flips=flips, tolerance=tolerance, passed=drop is not None and drop <= tolerance)


class _Reader:
    """ONNX Runtime CalibrationDataReader over decoded (BGR) calibration images, in batches of 8."""

    def __init__(self, images: Sequence[np.ndarray], height: int, width: int, input_name: str = "image"):
        self._it = (to_batch(list(images[i:i + 8]), height, width) for i in range(0, len(images), 8))
        self.input_name = input_name

    def get_next(self):
        batch = next(self._it, None)
        return None if batch is None else {self.input_name: batch}


def calibration_images(samples: Sequence[Sample], seed: int = 0) -> tuple[list[np.ndarray], int]:
    """The training images, plus one synthetic-defect copy of each when the split holds no defect.

    Why: activation ranges are the largest values seen during calibration. A detector trained on
    good parts only would get ranges from good parts only, and int8 would then clip the larger
    activations a defect causes (measured on the conv test model: a white-square defect scored as
    ok). The synthetic defects (data/augment.py: cut-paste, scratch, noise patch) and copies with a
    saturated white and a black patch stretch the ranges over defect-like values; returns (images,
    number of synthetic ones).
    """
    images = [decode_image(s.path) for s in samples]
    if any(s.label == 1 for s in samples):
        return images, 0
    from ..data.augment import synthesize_defects

    rng = np.random.default_rng(seed)
    synthetic, _, _ = synthesize_defects([im.copy() for im in images], rng)
    synthetic = list(synthetic)
    for image in images[::2]:  # pixels reach 0 and 255 on a line (glare, holes): the ranges must too
        h, w = image.shape[:2]
        out = image.copy()
        for value in (255, 0):
            ph, pw = int(rng.integers(h // 8, h // 2 + 1)), int(rng.integers(w // 8, w // 2 + 1))
            y, x = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
            out[y:y + ph, x:x + pw] = value
        synthetic.append(out)
    return images + synthetic, len(synthetic)


def fragile_nodes(path: Path) -> list[str]:
    """Nodes left in fp32: the scoring head, the stem convolution and the depthwise convolutions.

    Measured on an EfficientNet-Lite0 classifier (demo data, 28 validation images): quantizing every
    Conv moved the raw score by 0.36 on average; keeping the stem (it sees the in-graph mean/std
    normalised pixels) and the depthwise convs (one filter per channel: per-tensor activation ranges
    fit them badly) in fp32 brought that to 0.01, and they are a small share of the compute.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    depthwise = [n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    stem = [convs[0].name] if convs else []
    return sorted(set(head_nodes(path)) | set(depthwise) | set(stem))


def head_nodes(path: Path) -> list[str]:
    """Names of every node downstream of a distance/score reduction (the detector's scoring head).

    Their inputs are distances or errors whose range on normal calibration images is exactly what a
    defect exceeds, so quantizing them (e.g. the Gaussian smoothing Conv of the anomaly map) would
    clip every defect to the same value.
    """
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    tainted: set[str] = set()
    names: list[str] = []
    for node in graph.node:  # ONNX graphs are topologically sorted
        if node.op_type in HEAD_OPS or any(i in tainted for i in node.input):
            tainted.update(node.output)
            if node.name:
                names.append(node.name)
    return names


def quantize_file(src: Path, dst: Path, calibration: Sequence[np.ndarray], height: int, width: int,
                  op_types: Sequence[str]) -> None:
    """Static QDQ quantization: uint8 activations (MinMax ranges), int8 per-channel symmetric weights."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="ei-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:  # shape inference + fusions make more of the graph quantizable; optional
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=False)
        except Exception as exc:  # noqa: BLE001 - pre-processing is an optimisation, not a requirement
            log.warning("%s: quantization pre-processing skipped (%s)", src, exc)
            shutil.copyfile(src, prepared)
        exclude = fragile_nodes(prepared)
        quantize_static(
            str(prepared), str(dst), _Reader(calibration, height, width),
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, op_types_to_quantize=list(op_types), nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})


def quantize_int8(card_path: Path | str, data: Path | str, *, tolerance: float = DEFAULT_AUROC_TOLERANCE,
                  max_calibration: int = 64, op_types: Sequence[str] | None = None, threads: int = 2,
                  force: bool = False, also_openvino: bool = True, **split) -> QuantizeResult:
    """Write ``<name>-int8.onnx`` + card beside the fp32 model, or raise QuantizeError with the numbers."""
    card_path = card_path_for(Path(card_path))
    card = load_card(card_path)
    data = Path(data)
    dataset = load_training_dataset(card, data, card_path, **split)
    train = dataset.split("train")
    if not train:
        raise QuantizeError(f"{data}: the train split is empty; nothing to calibrate on")
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(len(train), size=min(max_calibration, len(train)), replace=False).tolist())
    calibration = [train[i] for i in pick]
    split_name, val = validation_samples(dataset)
    src = card.model_path(card_path)
    name = f"{card.name}-int8"
    dst = src.with_name(f"{name}.onnx")
    dst_card = card_path_for(dst)
    if (dst.exists() or dst_card.exists()) and not force:
        raise QuantizeError(f"{dst_card}: exists; pass --force to replace it")
    ops = tuple(op_types) if op_types else (CLASSIFIER_OPS if card.kind == "classifier" else DETECTOR_OPS)
    h, w = card.input.height, card.input.width
    images, n_synthetic = calibration_images(calibration)
    log.info("quantizing %s (%s) with %d training images (+%d with synthetic defects)", src, ", ".join(ops),
             len(calibration), n_synthetic)
    try:
        quantize_file(src, dst, images, h, w, ops)
    except (DatasetError, BackendError):
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime.quantization raises many types
        dst.unlink(missing_ok=True)
        raise QuantizeError(f"{src}: ONNX Runtime static quantization failed ({exc})") from exc
    q_card = card.model_copy(deep=True)
    q_card.name, q_card.model_file, q_card.model_sha256 = name, dst.name, sha256_file(dst)
    q_card.extra = {**card.extra, "quantization": {
        "precision": "int8", "format": "QDQ", "per_channel": True, "activations": "uint8 (MinMax)",
        "weights": "int8 symmetric", "op_types": list(ops), "calibration_images": len(calibration),
        "kept_fp32": "scoring head, stem conv, depthwise convs",
        "calibration_split": "train", "synthetic_defect_images": n_synthetic,
        "source_model": card.model_file, "source_sha256": card.model_sha256}}
    q_card.extra.pop("precision_checks", None)
    q_card.save(dst_card)
    reference = LoadedModel.load(card_path, threads=threads)
    ref_scores = _score(reference, val)
    red_scores = _score(LoadedModel.load(dst_card, threads=threads), val)
    before = int(np.sum((ref_scores.normalised(card.normalization) >= NORMALISED_THRESHOLD)
                        != (red_scores.normalised(card.normalization) >= NORMALISED_THRESHOLD)))
    q_card.normalization, transfer = transfer_normalization(card.normalization, ref_scores, red_scores)
    transfer["verdict_flips_with_fp32_normalization"] = before
    q_card.extra["quantization"]["recalibration"] = transfer
    q_card.save(dst_card)
    quantized = LoadedModel.load(dst_card, threads=threads)
    checks = [check_precision(reference, quantized, val, split=split_name, dataset=str(data), tolerance=tolerance,
                              calibration_images=len(calibration), scores=(ref_scores, red_scores))]
    if also_openvino:
        try:
            ov = LoadedModel.load(dst_card, backend="openvino", threads=threads, precision="int8",
                                  require_check=False)
        except BackendError as exc:  # not installed, or no int8 on this CPU: the ORT check still stands
            log.info("no OpenVINO int8 check: %s", exc)
        else:
            checks.append(check_precision(reference, ov, val, split=split_name, dataset=str(data), tolerance=tolerance,
                                          calibration_images=len(calibration), scores=(ref_scores, _score(ov, val))))
    for check in checks:
        record_check(q_card, check)
    main = checks[0]
    if not main.passed:  # the file itself is refused
        dst.unlink(missing_ok=True)
        dst_card.unlink(missing_ok=True)
        raise QuantizeError(f"{card_path}: int8 model refused, it loses too much accuracy: {main.summary()}")
    q_card.save(dst_card)  # a failed OpenVINO check is kept: the OpenVINO backend then refuses int8
    return QuantizeResult(dst_card, main, checks[1:])


def check_reduced_precision(card_path: Path | str, data: Path | str, precision: str = "bf16", *,
                            device: str = "CPU", tolerance: float = DEFAULT_AUROC_TOLERANCE, threads: int = 2,
                            **split) -> PrecisionCheck:
    """Measure OpenVINO ``precision`` (bf16/fp16) against fp32 on the model's validation images and
    record the result in its card (passing or not: a failed check keeps the backend refusing it)."""
    card_path = card_path_for(Path(card_path))
    card = load_card(card_path)
    dataset = load_training_dataset(card, Path(data), card_path, **split)
    split_name, val = validation_samples(dataset)
    reference = LoadedModel.load(card_path, threads=threads)
    reduced = LoadedModel.load(card_path, backend="openvino", threads=threads, precision=precision,
                               device=device, require_check=False)
    check = check_precision(reference, reduced, val, split=split_name, dataset=str(data),
                            tolerance=tolerance, device=device)
    card = load_card(card_path)  # re-read: keep whatever else changed while we scored
    record_check(card, check)
    card.save(card_path)
    return check
