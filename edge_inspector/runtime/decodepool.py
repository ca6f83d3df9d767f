"""Decode and preprocess frames on a small thread pool, in frame order, at reduced JPEG size when safe.

Why: decoding a 1.3-5 MP frame costs 15-45 ms on one core, and it used to run serially in the grab
thread: at 1280 px a classifier that infers at 200 frames/s was held to ~20 by its decoder. OpenCV's
``imdecode``, ``pyrDown``, ``resize`` and ``cvtColor`` release the GIL, so a few threads decode and
preprocess several frames at once. Each camera's preprocessor submits its frames in arrival order and
hands the results on in that same order (``OrderedWork``), so per-camera order, the camera queue's
drop/block policy and back-pressure are unchanged: the pool only sits between the camera queue and the
inference queue.

Reduced-size JPEG decoding (``cv2.IMREAD_REDUCED_COLOR_2/4/8``: libjpeg-turbo scales in the DCT
domain, 2-8x less work) replaces pyramid levels the preprocessing would compute anyway. The shared
``preprocess.resize`` halves the image with ``pyrDown`` while it is at least twice the model input;
a frame that would be halved ``n`` times can instead be decoded at 1/2^n (``fast``) or 1/2^(n-1)
(``safe``, one pyramid level still done by ``pyrDown``). What the model then sees differs from the
full decode by (1280x1024 JPEG q90, 256x256 input, tensors in [0, 1]; demo parts / noisy textured
parts of tests/runtime/test_decodepool.py): ``safe`` mean |diff| 0.0018 / 0.0038, max 0.06 / 0.08; ``fast``
mean 0.0066 / 0.012, max 0.22 / 0.29 (tests hold them to 0.005 / 0.1 and 0.015 / 0.35). The factor is
computed from the ROI, not the frame, and the ROI is cropped at the reduced scale before resizing,
so a small ROI on a large frame is never decoded smaller than the model needs. Only when nothing
downstream needs the full-resolution frame (no frame saving, no review capture): the decision stage
still gets the full-resolution crop size, so regions stay in frame pixels.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..preprocess import ImageDecodeError, crop_roi, decode_image, to_bgr8, to_tensor

#: IGNORE_ORIENTATION: decode_image (IMREAD_UNCHANGED) ignores EXIF rotation, so the reduced path must too
REDUCED_FLAGS = {k: flag | cv2.IMREAD_IGNORE_ORIENTATION for k, flag in
                 ((2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4), (8, cv2.IMREAD_REDUCED_COLOR_8))}
JPEG_MAGIC = b"\xff\xd8\xff"


def default_workers() -> int:
    """One decode thread per core, at most 4 (beyond that inference, not decoding, is the limit)."""
    return max(1, min(4, os.cpu_count() or 1))


def pyramid_levels(height: int, width: int, sizes: Iterable[tuple[int, int]]) -> int:
    """How many times ``preprocess.resize`` halves an (height, width) crop for the largest input size."""
    levels = None
    for h, w in sizes:
        n, ch, cw = 0, height, width
        while ch >= 2 * h and cw >= 2 * w:
            ch, cw, n = (ch + 1) // 2, (cw + 1) // 2, n + 1
        levels = n if levels is None else min(levels, n)
    return levels or 0


def roi_levels(frame_hw: tuple[int, int], roi: tuple[int, int, int, int] | None,
               sizes: Iterable[tuple[int, int]]) -> int:
    """``pyramid_levels`` of the frame's ROI crop (clipped to the frame; 0 for an ROI outside it)."""
    H, W = frame_hw
    if roi is not None:
        x, y, w, h = roi
        H, W = min(H, y + h) - max(0, y), min(W, x + w) - max(0, x)
        if H <= 0 or W <= 0:
            return 0
    return pyramid_levels(H, W, list(sizes))


def reduction_factor(frame_hw: tuple[int, int], roi: tuple[int, int, int, int] | None,
                     sizes: Iterable[tuple[int, int]], mode: str = "safe") -> int:
    """1, 2, 4 or 8: the JPEG decode scale whose result the preprocessing would reach by pyrDown anyway."""
    if mode == "off":
        return 1
    n = roi_levels(frame_hw, roi, sizes)
    if mode == "safe":
        n -= 1
    return 1 << max(0, min(n, 3))


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's SOF marker, without decoding; None when not found."""
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
        i += 2 + length
    return None


@dataclass
class Prepared:
    """What one frame became: the crop the decision maps regions onto, and one tensor per input size."""

    crop: np.ndarray | None
    crop_size: tuple[int, int] | None  # (w, h) of the ROI crop in full-frame pixels
    tensors: dict[tuple[int, int], np.ndarray] = field(default_factory=dict)
    error: str | None = None
    image: np.ndarray | None = None  # the decoded frame (reduced when ``factor`` > 1)
    factor: int = 1
    seconds: float = 0.0


def decode_frame(encoded: Path | bytes, roi: tuple[int, int, int, int] | None, sizes: list[tuple[int, int]],
                 mode: str, label: str) -> tuple[np.ndarray, int, tuple[int, int]]:
    """Decode at the largest safe JPEG reduction; returns (image, factor, full (h, w))."""
    if isinstance(encoded, Path):
        try:
            data = encoded.read_bytes()
        except OSError as exc:
            raise ImageDecodeError(f"{label}: cannot read file ({exc.strerror or exc})") from exc
    else:
        data = bytes(encoded)
    if mode != "off" and data[:3] == JPEG_MAGIC and (hw := jpeg_size(data)) is not None:
        factor = reduction_factor(hw, roi, sizes, mode)
        if factor > 1:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED_FLAGS[factor])
            if image is not None:
                return to_bgr8(image, label), factor, hw
    image = decode_image(data, name=label)
    return image, 1, image.shape[:2]


def prepare(image: np.ndarray | None, encoded: Path | bytes | None, roi: tuple[int, int, int, int] | None,
            sizes: list[tuple[int, int]], mode: str = "safe", label: str = "frame") -> Prepared:
    """Decode (when needed), crop the ROI, then resize to each model input: the pool's unit of work."""
    t0 = time.perf_counter()
    factor = 1
    try:
        if image is None:
            if encoded is None:
                raise ImageDecodeError(f"{label}: frame carries neither pixels nor encoded data")
            image, factor, full_hw = decode_frame(encoded, roi, sizes, mode, label)
        else:
            full_hw = image.shape[:2]
        full_crop = crop_roi(np.empty((*full_hw, 0), np.uint8), roi)  # clipped ROI size, no pixels
        crop_size = (full_crop.shape[1], full_crop.shape[0])
        scaled = None if roi is None else tuple(int(round(v / factor)) for v in roi)
        crop = crop_roi(image, scaled)
        tensors = {(h, w): to_tensor(crop, h, w) for h, w in sizes}
    except (ImageDecodeError, ValueError, cv2.error) as exc:  # one error verdict per bad frame, no crash
        text = str(exc).strip().splitlines()[-1] if isinstance(exc, cv2.error) else str(exc)
        return Prepared(None, None, error=text, seconds=time.perf_counter() - t0)
    return Prepared(crop, crop_size, tensors, image=image, factor=factor, seconds=time.perf_counter() - t0)


class DecodePool:
    """A shared ThreadPoolExecutor; ``OrderedWork`` gives each camera its results back in order."""

    def __init__(self, workers: int = 0):
        self.workers = workers or default_workers()
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="decode")
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        return self._executor.submit(fn, *args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)


class OrderedWork:
    """Futures of one camera in submission order; results leave in that order, whatever finishes first.

    ``depth`` bounds the frames in flight per camera (2 per worker keeps every thread busy while the
    preprocessor hands finished frames on).
    """

    def __init__(self, pool: DecodePool, depth: int | None = None):
        self.pool = pool
        self.depth = depth or 2 * pool.workers
        self._pending: deque[tuple[Any, Future]] = deque()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def full(self) -> bool:
        return len(self._pending) >= self.depth

    def submit(self, tag: Any, fn: Callable[..., Any], *args: Any) -> None:
        self._pending.append((tag, self.pool.submit(fn, *args)))

    def ready(self, wait: float = 0.0) -> list[tuple[Any, Any]]:
        """The finished head of the line (in order); waits up to ``wait`` s for the first of them."""
        out = []
        if self._pending and wait > 0:
            try:
                self._pending[0][1].result(timeout=wait)
            except Exception:  # noqa: BLE001 - TimeoutError, or the work's own error (raised below)
                pass
        while self._pending and self._pending[0][1].done():
            tag, fut = self._pending.popleft()
            out.append((tag, fut.result()))
        return out

    def drain(self) -> list[tuple[Any, Any]]:
        """Everything still in flight, in order (blocks until done)."""
        out = [(tag, fut.result()) for tag, fut in self._pending]
        self._pending.clear()
        return out
