"""Score a list of samples through the one inference path and keep what the metrics need.

Images are decoded by ``preprocess.decode_image`` and scored by ``inference.LoadedModel`` only, so
an evaluation measures exactly what the daemon will do. Anomaly maps and ground-truth masks are
compared at one fixed resolution: ``pixel_size`` (default 128 px) on the longer side, whatever
the model's map resolution. Fixed, because ``compare`` puts pixel figures of different models side
by side: a 28 x 28 map scored against 28 x 28 masks would be judged on a coarser ground truth than
a 224 x 224 map. Small, because pixel metrics must stay vectorised and fast on a few hundred images
(300 x 128 x 128 = 5 M pixels). Masks are resized from full resolution with nearest neighbour
(``preprocess.load_mask``); maps bilinearly (``cv2.INTER_AREA`` when shrinking), as anomalib
upsamples its maps. The map covers the whole resized input (``to_tensor`` squashes, never crops),
so mask and map align in normalised image coordinates.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..data.types import DatasetError, Sample
from ..inference import LoadedModel
from ..preprocess import ImageDecodeError, decode_image, load_mask
from .energy import EnergyMeter

DEFAULT_PIXEL_SIZE = 128


@dataclass
class Predictions:
    """Everything one model said about one list of samples, aligned by index."""

    samples: list[Sample]
    scores: np.ndarray  # normalised, 0.5 = calibrated threshold
    raw_scores: np.ndarray
    maps: np.ndarray | None = None  # (N, h, w) normalised maps at the pixel-evaluation resolution
    raw_maps: np.ndarray | None = None  # (N, h, w) raw maps, same resolution: ranking metrics use these
    masks: np.ndarray | None = None  # (N, h, w) uint8 ground truth at the same resolution
    has_mask: np.ndarray | None = None  # (N,) bool: ground truth known (good image, or defect with mask)
    type_names: list[str | None] = field(default_factory=list)
    type_probs: np.ndarray | None = None  # (N, K) over ``classes``
    classes: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    energy: dict | None = None

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=int)

    @property
    def true_types(self) -> list[str]:
        return [s.defect_type for s in self.samples]


def map_resolution(map_shape: tuple[int, int], pixel_size: int = DEFAULT_PIXEL_SIZE) -> tuple[int, int]:
    """The map's (h, w) scaled (up or down) so that the longer side is ``pixel_size``."""
    h, w = map_shape
    scale = pixel_size / max(h, w)
    return max(1, round(h * scale)), max(1, round(w * scale))


def resize_map(amap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    if amap.shape == (h, w):
        return amap.astype(np.float32, copy=False)
    interp = cv2.INTER_AREA if amap.shape[0] > h else cv2.INTER_LINEAR
    return cv2.resize(amap.astype(np.float32), (w, h), interpolation=interp)


def score_samples(model: LoadedModel, samples: Sequence[Sample], *, batch_size: int = 16,
                  pixel_size: int = DEFAULT_PIXEL_SIZE, progress: bool = False) -> Predictions:
    """Decode, score and collect ``samples`` in batches; raise DatasetError naming an unreadable file."""
    samples = list(samples)
    if not samples:
        raise DatasetError("no samples to evaluate (is the split empty?)")
    scores, raws, maps, raw_maps, masks, has_mask, names, probs = [], [], [], [], [], [], [], []
    size: tuple[int, int] | None = None
    bar = None
    if progress:
        from tqdm import tqdm  # noqa: PLC0415 - only for interactive runs

        bar = tqdm(total=len(samples), desc=f"scoring {model.name}", unit="img")
    t0 = time.perf_counter()
    with EnergyMeter() as meter:
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            images = []
            for s in chunk:
                try:
                    images.append(decode_image(s.path))
                except ImageDecodeError as exc:
                    raise DatasetError(f"{s.path}: cannot evaluate: {exc}") from exc
            for s, res in zip(chunk, model.predict(images), strict=True):
                scores.append(res.score)
                raws.append(res.raw_score)
                names.append(res.defect_type)
                if res.type_probs is not None:
                    probs.append(res.type_probs)
                if res.anomaly_map is not None:
                    if size is None:
                        size = map_resolution(res.anomaly_map.shape[-2:], pixel_size)
                    maps.append(resize_map(res.anomaly_map, size))
                    raw_maps.append(resize_map(res.raw_map if res.raw_map is not None else res.anomaly_map, size))
                    known = s.label == 0 or s.mask_path is not None
                    has_mask.append(known)
                    try:
                        masks.append(load_mask(s.mask_path if s.label else None, *size))
                    except ImageDecodeError as exc:
                        raise DatasetError(f"{s.mask_path}: cannot read ground-truth mask: {exc}") from exc
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    wall = time.perf_counter() - t0
    return Predictions(
        samples=samples,
        scores=np.asarray(scores, np.float64),
        raw_scores=np.asarray(raws, np.float64),
        maps=np.stack(maps) if maps else None,
        raw_maps=np.stack(raw_maps) if raw_maps else None,
        masks=np.stack(masks) if masks else None,
        has_mask=np.asarray(has_mask, bool) if maps else None,
        type_names=names,
        type_probs=np.stack(probs) if len(probs) == len(samples) else None,
        classes=list(model.card.classes),
        wall_seconds=wall,
        energy=meter.result(per_parts=1000, n_parts=len(samples)),
    )
