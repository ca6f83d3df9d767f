"""Typed detector options (models/options.py): every kind refuses bad names and values by name, and takes the
CLI's ``-o key=value`` strings."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch")

from edge_inspector.models import DETECTORS, DetectorError, create_detector, detector_class  # noqa: E402
from edge_inspector.models.base import FitReport  # noqa: E402
from edge_inspector.models.options import OPTIONS  # noqa: E402

SIZE = 64
# kinds still on a plain DEFAULTS dict (the base class accepts it until they are converted)
TYPED = sorted(DETECTORS)


def test_every_kind_has_its_options_model_and_the_table_matches_the_registry() -> None:
    assert set(OPTIONS) == set(DETECTORS)  # every registered kind is typed
    for kind in TYPED:
        assert detector_class(kind).options_model is OPTIONS[kind], kind
        assert OPTIONS[kind].kind == kind


@pytest.mark.parametrize("kind", TYPED)
def test_unknown_option_lists_the_known_ones(kind: str) -> None:
    with pytest.raises(DetectorError) as err:
        create_detector(kind, input_size=SIZE, epochz=3)
    text = str(err.value)
    assert text.startswith(f"{kind}: unknown option(s) ['epochz']; known options: [")
    assert all(repr(name) in text for name in OPTIONS[kind].model_fields)


@pytest.mark.parametrize("kind", [k for k in TYPED if "epochs" in OPTIONS[k].model_fields])
def test_zero_epochs_is_refused_with_the_allowed_range(kind: str) -> None:
    with pytest.raises(DetectorError, match=rf"^{kind}: option epochs=0: expected greater than or equal to 1$"):
        create_detector(kind, input_size=SIZE, epochs=0)


@pytest.mark.parametrize(("kind", "options", "words"), [
    ("classifier", {"dropout": 1.0}, "classifier: option dropout=1.0: expected less than 1"),
    ("custom_cnn", {"blocks": 7}, "custom_cnn: option blocks=7: expected less than or equal to 5"),
    ("autoencoder", {"topk_ratio": 0}, "autoencoder: option topk_ratio=0: expected greater than 0"),
    ("segmenter", {"balance": "smote"}, "option balance='smote': expected 'weights', 'oversample' or 'none'"),
    ("features_rf", {"cv_folds": 1}, "features_rf: option cv_folds=1: expected greater than or equal to 2"),
    ("features_xgb", {"n_estimators": "many"}, "features_xgb: option n_estimators='many': expected a valid integer"),
    # an even pooling window has no centre cell: the map would grow by one and shift by half a cell
    ("feature_memory", {"neighbourhood": 4}, "feature_memory: option neighbourhood=4: expected an odd window"),
])
def test_out_of_range_or_wrong_choice_names_kind_option_and_rule(kind: str, options: dict, words: str) -> None:
    with pytest.raises(DetectorError) as err:
        create_detector(kind, input_size=SIZE, **options)
    assert words in str(err.value)


def test_cli_strings_are_coerced_to_the_declared_types() -> None:
    det = create_detector("classifier", input_size=SIZE, epochs="3", dropout="0.25", augment="false",
                          synthetic_defects="true", freeze_blocks="2")
    assert (det.cfg.epochs, det.cfg.dropout, det.cfg.augment) == (3, 0.25, False)
    assert det.cfg.synthetic_defects is True and det.cfg.freeze_blocks == 2
    ae = create_detector("autoencoder", input_size=SIZE, taps="[4,8]", target="pixels")
    assert ae.cfg.taps == (4, 8) and ae.cfg.epochs == 25 and ae.cfg.ssim_weight == 0.5  # per-target defaults
    svm = create_detector("features_svm", input_size=SIZE, grid='{"C": [1, 10]}')
    assert svm.cfg.grid == {"C": [1, 10]}


def test_train_command_reports_a_bad_option_on_stderr_without_traceback(tmp_path) -> None:
    """The real CLI: ``-o epochs=0`` stops before any data is read or file written."""
    (tmp_path / "data").mkdir()
    result = subprocess.run([sys.executable, "-m", "edge_inspector.cli", "train", str(tmp_path / "data"),
                             "--model", "classifier", "-o", "epochs=0", "--out", str(tmp_path / "models")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result
    assert "epochs=0" in result.stderr and "Traceback" not in result.stderr


def test_fit_report_card_fields_are_the_flat_scalars() -> None:
    report = FitReport(seconds=1.5, n_images=4, extra={"val_loss": 0.1, "history": [{"a": 1}]})
    assert report.card_fields() == {"seconds": 1.5, "n_images": 4, "val_loss": 0.1}  # scalars only, flat
