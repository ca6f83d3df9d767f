"""torchvision-layout backbones: torchvision's parameter counts and names, strict load of a user's
weights file identified by sha256, clear errors (no file, wrong sha256, missing key), and use as the
backbone of a deep-features model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_inspector.models import DetectorError, create_detector  # noqa: E402
from edge_inspector.models.backbone import BackboneError  # noqa: E402
from edge_inspector.models.zoo import ZOO, build_zoo, load_zoo_backbone, sha256_of  # noqa: E402

# parameter counts torchvision publishes for these architectures (1000 classes)
TORCHVISION_PARAMS = {"resnet50": 25_557_032, "vgg16": 138_357_544, "densenet121": 7_978_856,
                      "efficientnet_b0": 5_288_548}
# a few keys of torchvision's state_dicts, including the unusual ones
TORCHVISION_KEYS = {
    "resnet50": ["conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_var", "fc.bias"],
    "vgg16": ["features.0.weight", "features.28.bias", "classifier.0.weight", "classifier.6.bias"],
    "densenet121": ["features.conv0.weight", "features.denseblock1.denselayer1.norm1.weight",
                    "features.transition3.conv.weight", "features.denseblock4.denselayer16.conv2.weight",
                    "features.norm5.running_mean", "classifier.weight"],
    "efficientnet_b0": ["features.0.0.weight", "features.1.0.block.1.fc1.weight", "features.2.0.block.3.1.bias",
                        "features.8.1.running_var", "classifier.1.weight"],
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_architecture_matches_torchvision(name: str) -> None:
    with torch.device("meta"):  # no memory for VGG's 138 M parameters
        model = build_zoo(name)
    assert sum(p.numel() for p in model.parameters()) == TORCHVISION_PARAMS[name]
    assert set(TORCHVISION_KEYS[name]) <= set(model.state_dict())


def _weights(tmp_path: Path, name: str, num_classes: int = 1000, **edits) -> tuple[Path, str, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_zoo(name, num_classes).eval()
    state = model.state_dict()
    for key in edits.get("drop", []):
        del state[key]
    path = tmp_path / f"{name}.pth"
    torch.save(state, path)
    return path, sha256_of(path), model


@pytest.mark.parametrize("name", ["densenet121", "efficientnet_b0"])  # ResNet/VGG: names + counts above
def test_user_weights_load_strictly_and_give_the_same_outputs(name: str, tmp_path: Path) -> None:
    path, digest, original = _weights(tmp_path, name, num_classes=5)  # a fine-tuned 5-class head
    loaded = load_zoo_backbone(name, path, digest)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), original(x).numpy(), atol=1e-5)
        assert loaded.forward_features(x).shape == (2, loaded.feature_dim)
    assert not loaded.training


def test_old_densenet_key_names_are_accepted(tmp_path: Path) -> None:
    model = build_zoo("densenet121").eval()
    old = {k.replace("denselayer1.norm1.", "denselayer1.norm.1.").replace("denselayer1.conv2.",
                                                                       "denselayer1.conv.2."): v
           for k, v in model.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    path = tmp_path / "old.pth"
    torch.save(old, path)
    load_zoo_backbone("densenet121", path, sha256_of(path))


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="never downloads.*lite0.*custom_cnn"):
        load_zoo_backbone("resnet50", None, None)
    path, digest, _ = _weights(tmp_path, "efficientnet_b0")
    with pytest.raises(BackboneError, match=r"sha256 is [0-9a-f]{64}, option weights_sha256 expected 00ff"):
        load_zoo_backbone("efficientnet_b0", path, "00ff")
    with pytest.raises(BackboneError, match=f"weights_sha256 is required.*{digest}"):
        load_zoo_backbone("efficientnet_b0", path, None)
    with pytest.raises(BackboneError, match="is not a file"):
        load_zoo_backbone("efficientnet_b0", tmp_path / "nope.pth", digest)
    (tmp_path / "d").mkdir()
    dropped, dropped_digest, _ = _weights(tmp_path / "d", "efficientnet_b0", drop=["features.8.1.weight"])
    with pytest.raises(BackboneError, match=r"1 missing key\(s\) \['features.8.1.weight'\]"):
        load_zoo_backbone("efficientnet_b0", dropped, dropped_digest)
    with pytest.raises(BackboneError, match=r"unexpected key"):  # a DenseNet file given as EfficientNet-B0
        r_path, r_digest, _ = _weights(tmp_path, "densenet121")
        load_zoo_backbone("efficientnet_b0", r_path, r_digest)
    with pytest.raises(BackboneError, match="unknown backbone"):
        load_zoo_backbone("resnet18", path, digest)


def test_deep_features_on_a_user_backbone(tmp_path: Path, demo_dataset: Path) -> None:
    from edge_inspector.data.readers import load_dataset

    with pytest.raises(DetectorError, match="never downloads"):
        create_detector("features_svm", input_size=64, backbone="efficientnet_b0").fit(
            load_dataset(demo_dataset).split("train"), progress=False)
    path, digest, _ = _weights(tmp_path, "efficientnet_b0")
    det = create_detector("features_rf", input_size=64, threads=1, backbone="efficientnet_b0", weights=str(path),
                          weights_sha256=digest, cv_folds=2, n_estimators=10)
    report = det.fit(load_dataset(demo_dataset).split("train"), progress=False)
    assert report.extra["feature_dim"] == 1280 and report.extra["n_synthetic"] > 0
    assert det.predict(det.load(load_dataset(demo_dataset).split("test")[:3]))["pred_score"].shape == (3,)


def test_train_command_without_weights_says_what_to_do(tmp_path: Path, demo_dataset: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from edge_inspector.cli import main

    rc = main(["train", str(demo_dataset), "--model", "features_svm", "--backbone", "densenet121", "--input-size", "64",
               "--threads", "1", "--out", str(tmp_path / "models"), "--quiet"])
    captured = capsys.readouterr()
    err = captured.err + captured.out
    assert rc != 0
    assert "densenet121 needs your weights file" in err and "--backbone lite0" in err and "custom_cnn" in err
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").glob("*.onnx"))
