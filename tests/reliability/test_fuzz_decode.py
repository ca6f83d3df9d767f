"""Fuzzing the one decode path every frame goes through: only ImageDecodeError may come out.

Why: a camera, an FTP upload or a disk error can hand the daemon any byte string. Anything other
than ImageDecodeError (a cv2.error, an IndexError on an odd shape, a MemoryError) would escape the
per-frame error handling and crash a pipeline stage.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_inspector.preprocess import ImageDecodeError, decode_image, to_tensor

_SEED_IMAGES = []
for ext, img in ((".png", np.full((12, 10, 3), 90, np.uint8)), (".jpg", np.full((16, 16, 3), 40, np.uint8)),
                 (".bmp", np.full((5, 7), 200, np.uint8)), (".png", np.full((9, 9), 4000, np.uint16)),
                 (".tiff", np.full((6, 6, 4), 7, np.uint8))):
    ok, enc = cv2.imencode(ext, img)
    assert ok
    _SEED_IMAGES.append(enc.tobytes())


@pytest.fixture(autouse=True)
def _quiet_opencv():
    """OpenCV logs every failed decode at ERROR; thousands of them only slow the test down."""
    old = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    yield
    cv2.utils.logging.setLogLevel(old)


def _check(data: bytes) -> None:
    try:
        image = decode_image(data, "fuzz")
    except ImageDecodeError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    tensor = to_tensor(image, 8, 8)
    assert tensor.shape == (3, 8, 8) and tensor.dtype == np.float32


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes_only_raise_image_decode_error(data: bytes) -> None:
    _check(data)


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """A valid PNG/JPEG/BMP/TIFF, then truncated, bit-flipped and/or spliced: near-valid inputs
    reach deep into the decoders, where random bytes never get past the magic number."""
    data = bytearray(draw(st.sampled_from(_SEED_IMAGES)))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=32))
    return bytes(data)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corrupted())
def test_corrupted_images_only_raise_image_decode_error(data: bytes) -> None:
    _check(data)


def test_fuzz_inputs_include_decodable_images() -> None:
    """The corpus is not vacuous: the unmodified seeds decode (so mutations start from real files)."""
    for data in _SEED_IMAGES:
        assert decode_image(data).shape[2] == 3
