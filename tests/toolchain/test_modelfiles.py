"""toolchain/modelfiles.deploy_copy: the one model copy of auto, export --out and the console's promote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_inspector.card import CardError, load_card
from edge_inspector.errors import EdgeInspectorError
from edge_inspector.toolchain.modelfiles import STAGING_PREFIX, ModelCopyError, deploy_copy
from tests.fixtures.models import make_model


def _model(folder: Path, name: str = "part-fm") -> Path:
    card = make_model(folder, name=name)
    (folder / f"{name}.engine").write_bytes(b"engine bytes")  # a sibling named after the model travels along
    (folder / f"{name}-v2.onnx").write_bytes(b"another model")  # a name that only starts alike does not
    (folder / "calibration").mkdir(exist_ok=True)
    (folder / "calibration" / f"{name}.json").write_text(json.dumps({"threshold": 0.3}))
    return card


def test_copies_model_siblings_card_and_calibration_card_first(tmp_path: Path) -> None:
    card = _model(tmp_path / "job")
    copied = deploy_copy(card, tmp_path / "bundle")
    bundle = tmp_path / "bundle"
    assert copied[0] == bundle / "part-fm.card.json"
    assert set(copied) == {bundle / "part-fm.card.json", bundle / "part-fm.onnx", bundle / "part-fm.engine",
                           bundle / "calibration" / "part-fm.json"}
    assert not (bundle / "part-fm-v2.onnx").exists()
    assert load_card(copied[0]).model_sha256 == load_card(card).model_sha256  # the copy verifies
    assert not [p for p in bundle.rglob(f"{STAGING_PREFIX}*")]  # staging folders are gone


def test_models_folder_puts_calibration_beside_it(tmp_path: Path) -> None:
    copied = deploy_copy(_model(tmp_path / "job"), tmp_path / "site" / "models")
    assert tmp_path / "site" / "calibration" / "part-fm.json" in copied  # models/ -> ../calibration/, as train


def test_a_failed_copy_replaces_nothing(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    old = make_model(bundle, name="part-fm", threshold=0.7)  # the model the daemon runs now
    (bundle / "calibration").write_text("a file where the calibration folder would go")
    before = {p: p.read_bytes() for p in bundle.iterdir()}
    with pytest.raises(ModelCopyError, match="nothing was replaced") as err:
        deploy_copy(_model(tmp_path / "job"), bundle)
    assert isinstance(err.value, EdgeInspectorError) and isinstance(err.value, OSError)
    assert {p: p.read_bytes() for p in bundle.iterdir()} == before
    assert load_card(old).normalization.threshold == 0.7


def test_bad_card_or_missing_model_is_a_known_error(tmp_path: Path) -> None:
    card = _model(tmp_path / "job")
    (tmp_path / "job" / "part-fm.onnx").unlink()
    with pytest.raises(CardError, match="part-fm.onnx not found"):
        deploy_copy(card, tmp_path / "bundle")
    card.write_text("{not json")
    with pytest.raises(CardError):
        deploy_copy(card, tmp_path / "bundle")
