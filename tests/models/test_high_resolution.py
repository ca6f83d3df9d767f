"""The high-resolution twin (auto.resolution_variants): a small defect on a large frame, placed exactly where
overlapping tiles would be stitched, is found, and the frame map has no seam there.

The twin is the seamless form of tiling: the detector is fully convolutional, so a 2x input is scored
as one piece and no tile border exists. This test holds it to that: it trains the twin that
``resolution_variants`` proposes for generated 256 px frames, exports it (ONNX, parity-checked) and
scores through ``inference.LoadedModel`` (ONNX Runtime), as the daemon would. Small images, one thread.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from edge_inspector.card import load_card  # noqa: E402
from edge_inspector.data.types import Dataset, Sample  # noqa: E402
from edge_inspector.inference import LoadedModel  # noqa: E402
from edge_inspector.toolchain import auto  # noqa: E402
from edge_inspector.toolchain.train import train_model  # noqa: E402

FRAME = 256  # the camera frame; the base input is 64 px (the test's --input-size), so the twin is 128 px
BASE = 64
SPOT = 12  # defect side in frame pixels: 3 px at the base input, 6 px in the twin


def _surface(rng: np.random.Generator) -> np.ndarray:
    """Brushed metal: the same statistics everywhere, so any place of the frame is normal."""
    noise = rng.normal(0.0, 1.0, (FRAME, FRAME)).astype(np.float32)
    brushed = cv2.GaussianBlur(noise, (0, 0), sigmaX=6.0, sigmaY=0.8)
    gray = np.clip(128 + 20 * brushed / brushed.std(), 0, 255).astype(np.uint8)
    return cv2.merge([gray, gray, gray])


def _with_spot(image: np.ndarray, cx: int, cy: int) -> np.ndarray:
    out = image.copy()
    h = SPOT // 2
    out[cy - h:cy + h, cx - h:cx + h] = 20
    return out


# where 2 x 2 tiles of the frame meet (the centre) and where two tiles meet (the vertical border)
SEAMS = {"centre": (FRAME // 2, FRAME // 2), "border": (FRAME // 2, FRAME // 4)}


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = tmp_path_factory.mktemp("hires") / "frames"
    samples = []

    def write(split: str, name: str, image: np.ndarray, label: int, defect: str = "good") -> None:
        path = root / split / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        samples.append(Sample(path=path, label=label, defect_type=defect, split=split))

    rng = np.random.default_rng(0)
    for i in range(24):
        write("train", f"t{i:02d}", _surface(rng), 0)
    for i in range(8):
        write("val", f"v{i:02d}", _surface(rng), 0)
    for i in range(6):
        write("test", f"g{i:02d}", _surface(rng), 0)
    for where, (cx, cy) in SEAMS.items():
        for i in range(3):
            write("test", f"{where}{i}", _with_spot(_surface(rng), cx, cy), 1, "spot")
    return Dataset(name="frames", root=root, samples=samples)


@pytest.fixture(scope="module")
def twin(frames: Dataset, tmp_path_factory: pytest.TempPathFactory, monkeypatch_module) -> Path:
    monkeypatch_module.setattr("edge_inspector.toolchain.train.auto_input_size", lambda samples, **_: (BASE, BASE))
    variants = auto.resolution_variants(frames, ["feature_memory"])
    assert [(label, kind) for label, kind, _ in variants] == [("feature_memory@128x128", "feature_memory")]
    _, kind, options = variants[0]
    return train_model(kind, frames, tmp_path_factory.mktemp("hires-model"), name="fm-hires", seed=0,
                       options={**options, "threads": 1}, progress=False)


@pytest.fixture(scope="module")
def base(frames: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_model("feature_memory", frames, tmp_path_factory.mktemp("base-model"), name="fm", seed=0,
                       options={"input_size": BASE, "threads": 1}, progress=False)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _margin(card: Path, test: list[Sample]) -> float:
    """Lowest defect score minus highest good score (> 0: every defect ranks above every good frame)."""
    results = LoadedModel.load(card, threads=1).predict([cv2.imread(str(s.path)) for s in test])
    return (min(r.score for s, r in zip(test, results, strict=True) if s.label == 1)
            - max(r.score for s, r in zip(test, results, strict=True) if s.label == 0))


def test_defect_where_tiles_would_stitch_is_found(frames: Dataset, twin: Path, base: Path) -> None:
    card = load_card(twin)
    assert (card.input.height, card.input.width) == (128, 128)  # the card records the twin's input size
    model = LoadedModel.load(twin, threads=1)
    test = frames.split("test")
    results = model.predict([cv2.imread(str(s.path)) for s in test])
    good = [r.score for s, r in zip(test, results, strict=True) if s.label == 0]
    # what the twin is for: the base input shrinks the spot to 3 px and ranks it among the good frames
    assert _margin(twin, test) > 0 and _margin(twin, test) > _margin(base, test) + 0.1
    for where, (cx, cy) in SEAMS.items():
        hits = [r for s, r in zip(test, results, strict=True) if s.path.stem.startswith(where)]
        assert all(r.is_defect for r in hits), (where, [r.score for r in hits], good)
        assert min(r.score for r in hits) > max(good), (where, good)
        for r in hits:  # the map's peak is on the spot (map coordinates scaled to the frame)
            amap = r.raw_map
            y, x = np.unravel_index(int(np.argmax(amap)), amap.shape)
            fy, fx = (y + 0.5) * FRAME / amap.shape[0], (x + 0.5) * FRAME / amap.shape[1]
            assert abs(fx - cx) <= 2 * SPOT and abs(fy - cy) <= 2 * SPOT, (where, (fx, fy), (cx, cy))


def test_map_has_no_seam_where_tiles_would_meet(frames: Dataset, twin: Path) -> None:
    """On good frames the map is as smooth across the frame's centre lines as anywhere else: no step, no
    ridge where tiles would have been stitched."""
    model = LoadedModel.load(twin, threads=1)
    good = [s for s in frames.split("test") if s.label == 0]
    maps = np.stack([r.raw_map for r in model.predict([cv2.imread(str(s.path)) for s in good])])
    h, w = maps.shape[1:]
    for axis, size in ((2, w), (1, h)):
        steps = np.abs(np.diff(maps, axis=axis)).mean(axis=(0, 3 - axis))  # mean step between neighbours
        mid = size // 2 - 1  # the step across the centre line
        assert steps[mid] <= 2.0 * np.median(steps) + 1e-6, (axis, steps[mid], np.median(steps))
        lines = maps.mean(axis=(0, 3 - axis))  # mean map value per column (axis 2) or row (axis 1)
        assert lines[mid:mid + 2].max() <= lines.mean() + 3.0 * lines.std() + 1e-6, (axis, lines[mid:mid + 2])
