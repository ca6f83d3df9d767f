"""The backbone names: one torch-free table (models/backbone_table.py) that the CLI, the docs and the
torch-side builders (backbone.VARIANTS, zoo.ZOO) all agree with."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge_inspector.models.backbone_table import BACKBONE_NAMES, LITE_VARIANTS, ZOO_NAMES

ROOT = Path(__file__).resolve().parents[2]


def _train_backbone_choices() -> tuple[str, ...]:
    from edge_inspector.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    train = sub.choices["train"]
    return tuple(next(a for a in train._actions if a.dest == "backbone").choices)


def test_cli_choices_are_the_table() -> None:
    assert _train_backbone_choices() == BACKBONE_NAMES == (*LITE_VARIANTS, *ZOO_NAMES)
    assert len(set(BACKBONE_NAMES)) == len(BACKBONE_NAMES)


def test_torch_side_tables_build_exactly_the_listed_names() -> None:
    pytest.importorskip("torch")
    from edge_inspector.models import backbone, zoo

    assert backbone.VARIANTS is LITE_VARIANTS
    assert tuple(zoo.ZOO) == ZOO_NAMES


def test_docs_list_the_table() -> None:
    training = (ROOT / "docs" / "training.md").read_text()
    listed = re.search(r"^- `--backbone ([a-z0-9_|]+)`", training, re.M)
    assert listed, "docs/training.md: the `--backbone a|b|...` item is missing"
    assert tuple(listed.group(1).split("|")) == BACKBONE_NAMES
    cli = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert f"--backbone {{{','.join(BACKBONE_NAMES)}}}" in cli  # generated (tests/test_docs.py: fresh)


def test_listing_the_choices_imports_no_torch() -> None:
    code = ("import sys\n"
            "for blocked in ('torch', 'torchvision', 'timm'): sys.modules[blocked] = None\n"
            "from edge_inspector.cli import build_parser\n"
            "build_parser()\n"
            "from edge_inspector.models.backbone_table import BACKBONE_NAMES\n"
            "print(','.join(BACKBONE_NAMES))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == ",".join(BACKBONE_NAMES)
