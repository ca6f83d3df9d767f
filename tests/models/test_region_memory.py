"""The feature-memory detector's region branch: it finds a region-wide change no single patch shows,
scores training images leave-one-out, exports as part of the one graph, and refuses bad options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_inspector.data.readers import load_dataset  # noqa: E402
from edge_inspector.data.synthetic import generate_demo_dataset  # noqa: E402
from edge_inspector.export.onnx import export_onnx  # noqa: E402
from edge_inspector.models import DetectorError, create_detector  # noqa: E402
from edge_inspector.models.region_memory import MAX_REGION_MEMORY, fit_region_memory, window_cells  # noqa: E402

SIZE = 96


def _normal_maps(n: int, seed: int, d: int = 16, hw: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, hw, hw, generator=g)


def test_window_is_a_fraction_of_the_short_side_and_half_overlapping() -> None:
    assert window_cells(0.33, (28, 28)) == (9, 4)
    assert window_cells(0.33, (56, 22)) == (7, 3)
    assert window_cells(0.01, (28, 28)) == (2, 1)  # at least two cells: one would be the patch map again
    assert window_cells(1.0, (10, 30)) == (10, 5)


def test_a_faint_shift_over_a_region_stands_out_although_no_patch_does() -> None:
    """Every cell of the shifted half lies well inside the normal cells' spread (a shift of 0.4
    standard deviations per dimension), so a patch memory cannot tell it apart; averaged over a
    window the shift is many times the normal windows' spread, and the region distances say so."""
    train = _normal_maps(30, seed=0)
    region, owners = fit_region_memory(train, 0.33, projection_dim=0, max_candidates=40_000, seed=0)
    test = _normal_maps(2, seed=1)
    test[1, :, 12:, :] += 0.4  # the lower half of image 1, every channel
    with torch.no_grad():
        d = region(test)[:, 0]  # (2, a, b)
    normal, shifted = d[0], d[1]
    a = d.shape[1]
    lower = shifted[a // 2 + 1:]  # windows wholly inside the shifted half
    assert float(lower.min()) > 1.5 * float(normal.max()), (lower.min(), normal.max())
    # a single cell of the shifted half is not far from normal cells at all
    cell_shift = float((test[1, :, 20, 5] - train.mean((0, 2, 3))).norm())
    normal_cell = float((test[0, :, 20, 5] - train.mean((0, 2, 3))).norm())
    assert cell_shift < 1.5 * normal_cell


def test_memory_keeps_every_window_up_to_its_cap_and_leave_one_out_excludes_their_owner() -> None:
    train = _normal_maps(12, seed=2)
    region, owners = fit_region_memory(train, 0.33, projection_dim=0, max_candidates=40_000, seed=0)
    per_image = region.windows(train[:1]).shape[-1] * region.windows(train[:1]).shape[-2]
    assert region.size == 12 * per_image <= MAX_REGION_MEMORY
    assert torch.equal(torch.bincount(owners), torch.full((12,), per_image))
    with torch.no_grad():
        own = region(train[:1])
        excluded = region(train[:1], (owners == 0)[None])
    assert float(own.max()) < 1e-2  # its own windows are in the memory
    assert float(excluded.min()) > 1.0  # without them, another image's windows are far


def test_fitted_detector_uses_the_branch_scores_training_images_out_of_fold_and_exports_it(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    root = generate_demo_dataset(tmp_path_factory.mktemp("region") / "parts", n_train=24, n_test_good=4,
                                 n_test_defect=6, size=SIZE, seed=5)
    parts = load_dataset(root, val_fraction=0.2, seed=0)
    train = parts.split("train")
    det = create_detector("feature_memory", input_size=(SIZE, SIZE), threads=2, seed=0)
    report = det.fit(train, progress=False)
    module = det.export_module()
    assert module.region is not None and report.extra["region_memory_size"] == module.region.size > 0
    assert det.card_info().extra["region_window"] == pytest.approx(0.33)
    # out-of-fold scores are on the branches' common scale: around 0 (each branch's mean subtracted)
    assert abs(float(np.mean(det.oof_scores))) < 0.5 and float(np.std(det.oof_scores)) > 0.5
    in_sample = det.predict(det.load(train))["pred_score"]
    assert np.median(det.oof_scores) > np.median(in_sample)
    # the fit reuses the first pass's leave-one-out patch distances: the same scores as computed afresh
    maps = det.embed_maps(train)
    owners = torch.arange(len(train)).repeat_interleave(maps.shape[2] * maps.shape[3])
    chosen = det._coreset(maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]), owners)
    _, region_owners = fit_region_memory(maps, 0.33, projection_dim=det.config.projection_dim,
                                         max_candidates=det.config.max_candidates, seed=det.seed)
    afresh = det.leave_one_out_scores(maps, owners[chosen], region_owners)
    np.testing.assert_allclose(det.oof_scores, afresh, rtol=1e-4, atol=1e-4)

    import onnxruntime as ort

    batch = det.load(parts.split("test"))
    report = export_onnx(det, tmp_path_factory.mktemp("region_onnx") / "fm.onnx", batch)  # checks parity itself
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {"image": batch}), strict=True))
    ref = det.predict(batch)
    np.testing.assert_allclose(got["pred_score"], ref["pred_score"], atol=2e-3)

    off = create_detector("feature_memory", input_size=(SIZE, SIZE), threads=2, seed=0, region_window=0)
    off.fit(train, progress=False)
    assert off.export_module().region is None and off.card_info().extra["region_memory_size"] == 0


def test_region_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="region_window=0.5 works with oof=leave_one_out"):
        create_detector("feature_memory", region_window=0.5, oof="kfold")
    with pytest.raises(DetectorError, match="region_window"):
        create_detector("feature_memory", region_window=1.5)
    # the default gives way where no leave-one-out scores exist to scale the branch
    assert create_detector("feature_memory", oof="kfold").config.region_window == 0.0
    root = generate_demo_dataset(tmp_path / "one", n_train=1, n_test_good=1, n_test_defect=1, size=64, seed=1)
    single = [s for s in load_dataset(root).split("train")][:1]
    det = create_detector("feature_memory", input_size=(64, 64), threads=1, seed=0)
    det.fit(single, progress=False)
    assert det.export_module().region is None
    explicit = create_detector("feature_memory", input_size=(64, 64), threads=1, seed=0, region_window=0.33)
    with pytest.raises(DetectorError, match="needs out-of-fold scores of at least 2 training images"):
        explicit.fit(single, progress=False)
