"""A loaded model: card + backend + the shared preprocessing, giving typed, normalised results.

This is the single inference path: the daemon, ``evaluate``, ``compare`` and ``calibrate`` all
score images through ``LoadedModel``, so a model cannot score differently in the field than it
did in its report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backends import Backend, BackendError, create_backend
from .backends.base import submit
from .card import NORMALISED_THRESHOLD, ModelCard, card_path_for, load_card
from .preprocess import to_batch

# Input bytes one backend call may take. A batch of frames bigger than this runs in chunks, so the
# activations ONNX Runtime allocates for it stay bounded however many frames were waiting (the
# card's input-size limit bounds a single frame). EDGE_INSPECTOR_MAX_BATCH_MB changes it.
MAX_BATCH_BYTES_DEFAULT = 512 << 20


def max_batch_bytes() -> int:
    value = os.environ.get("EDGE_INSPECTOR_MAX_BATCH_MB", "")
    return (int(value) << 20) if value.isdigit() and int(value) > 0 else MAX_BATCH_BYTES_DEFAULT


@dataclass
class ModelResult:
    """One model's opinion on one frame. ``score`` is normalised: 0.5 is the calibrated threshold."""

    score: float
    raw_score: float
    anomaly_map: np.ndarray | None = None  # normalised [0, 1], model output resolution
    raw_map: np.ndarray | None = None
    defect_type: str | None = None
    defect_confidence: float | None = None
    type_probs: np.ndarray | None = None  # [K] over card.classes, when the model has a type head

    @property
    def is_defect(self) -> bool:
        return self.score >= NORMALISED_THRESHOLD


class LoadedModel:
    def __init__(self, card: ModelCard, backend: Backend, card_path: Path):
        self.card = card
        self.backend = backend
        self.card_path = card_path
        if "pred_score" not in backend.output_names:
            raise BackendError(
                f"{card.model_path(card_path)}: model has outputs {backend.output_names}, "
                "expected 'pred_score' (see edge_inspector/card.py for the I/O contract)"
            )
        frame_bytes = 3 * card.input.height * card.input.width * 4
        if frame_bytes > max_batch_bytes():
            raise BackendError(
                f"{card.model_path(card_path)}: one {card.input.height}x{card.input.width} frame is a "
                f"{frame_bytes / 2**20:.1f} MiB input tensor, over the batch memory limit of "
                f"{max_batch_bytes() / 2**20:.1f} MiB (EDGE_INSPECTOR_MAX_BATCH_MB)"
            )
        shape = backend.input_shape
        if len(shape) == 4:
            h, w = shape[2], shape[3]
            if isinstance(h, int) and isinstance(w, int) and (h, w) != (card.input.height, card.input.width):
                raise BackendError(
                    f"{card.model_path(card_path)}: model input is {h}x{w} but its card says "
                    f"{card.input.height}x{card.input.width}"
                )

    @classmethod
    def load(cls, path: Path | str, backend: str = "onnxruntime", threads: int = 0,
             providers: list[str] | None = None, **options) -> LoadedModel:
        """Load a model from its card or model file; verifies the sha256 on the way."""
        card_path = card_path_for(Path(path))
        card = load_card(card_path)
        model_file = card.model_path(card_path)
        return cls(card, create_backend(backend, model_file, threads=threads, providers=providers, **options),
                   card_path)

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def input_size(self) -> tuple[int, int]:
        return self.card.input.height, self.card.input.width

    @property
    def max_batch(self) -> int:
        """Most frames one backend call takes: ``max_batch_bytes()`` over one frame's input tensor."""
        h, w = self.input_size
        return max(1, max_batch_bytes() // (3 * h * w * 4))

    def preprocess(self, images_bgr: list[np.ndarray]) -> np.ndarray:
        return to_batch(images_bgr, *self.input_size)

    def run_batch(self, batch: np.ndarray) -> list[ModelResult]:
        """Score a preprocessed float32 batch (N, 3, H, W), in chunks of at most ``max_batch`` frames."""
        step = self.max_batch
        if len(batch) > step:
            results: list[ModelResult] = []
            for start in range(0, len(batch), step):
                results += self._run_chunk(batch[start:start + step])
            return results
        return self._run_chunk(batch)

    def submit_batch(self, batch: np.ndarray) -> Callable[[], list[ModelResult]]:
        """Start scoring ``batch`` and return what waits for its results (``backends.base.submit``):
        the daemon starts the next batch before it collects this one. A batch over ``max_batch`` runs in
        chunks, here and now."""
        if len(batch) > self.max_batch:
            results = self.run_batch(batch)
            return lambda: results
        pending = submit(self.backend, batch)
        return lambda: self._results(pending.result(), len(batch))

    def _run_chunk(self, batch: np.ndarray) -> list[ModelResult]:
        return self._results(self.backend.run(batch), len(batch))

    def _results(self, out: dict[str, np.ndarray], n: int) -> list[ModelResult]:
        norm = self.card.normalization
        raw_scores = np.asarray(out["pred_score"], np.float32).reshape(n, -1)[:, 0]
        scores = norm.score(raw_scores)
        maps = out.get("anomaly_map")
        if maps is not None:
            maps = np.asarray(maps, np.float32).reshape(n, *maps.shape[-2:])
            norm_maps = norm.anomaly_map(maps)
        probs = out.get("type_probs")
        results = []
        for i in range(n):
            defect_type = confidence = None
            if probs is not None and self.card.classes:
                k = int(np.argmax(probs[i]))
                defect_type, confidence = self.card.classes[k], float(probs[i][k])
            results.append(ModelResult(
                score=float(scores[i]), raw_score=float(raw_scores[i]),
                anomaly_map=None if maps is None else norm_maps[i],
                raw_map=None if maps is None else maps[i],
                defect_type=defect_type, defect_confidence=confidence,
                type_probs=None if probs is None else np.asarray(probs[i], np.float32),
            ))
        return results

    def predict(self, images_bgr: list[np.ndarray]) -> list[ModelResult]:
        """Decode-free convenience: BGR uint8 images in, results out (preprocessed chunk by chunk)."""
        step = self.max_batch
        results: list[ModelResult] = []
        for start in range(0, len(images_bgr), step):
            results += self.run_batch(self.preprocess(images_bgr[start:start + step]))
        return results
