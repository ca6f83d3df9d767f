"""Feature-memory (PatchCore-style) detector: it finds defects, exports faithfully, calibrates to 0.5."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.metrics import roc_auc_score  # noqa: E402

from edge_inspector.card import InputSpec, ModelCard, ScoreNormalization, load_card, sha256_file  # noqa: E402
from edge_inspector.data.loading import load_masks  # noqa: E402
from edge_inspector.data.readers import load_dataset  # noqa: E402
from edge_inspector.data.synthetic import generate_demo_dataset  # noqa: E402
from edge_inspector.data.types import Dataset  # noqa: E402
from edge_inspector.export.onnx import export_onnx  # noqa: E402
from edge_inspector.inference import LoadedModel  # noqa: E402
from edge_inspector.models import DetectorError, create_detector  # noqa: E402
from edge_inspector.models.coreset import greedy_coreset  # noqa: E402
from edge_inspector.models.feature_memory import (  # noqa: E402
    FeatureMemoryDetector,
    FeatureMemoryModule,
    gaussian_kernel,
)
from edge_inspector.preprocess import decode_image  # noqa: E402
from edge_inspector.toolchain.calibrate import calibrate_model  # noqa: E402

SIZE = 96


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    root = generate_demo_dataset(tmp_path_factory.mktemp("fm") / "parts", n_train=40, n_test_good=6,
                                 n_test_defect=9, size=SIZE, seed=3)
    return load_dataset(root, val_fraction=0.2, seed=0)


@pytest.fixture(scope="module")
def fitted(parts: Dataset) -> tuple[FeatureMemoryDetector, dict]:
    det = create_detector("feature_memory", input_size=(SIZE, SIZE), threads=2, seed=0)
    report = det.fit(parts.split("train"), progress=False)
    return det, report


@pytest.fixture(scope="module")
def patch_only(parts: Dataset) -> tuple[FeatureMemoryDetector, dict]:
    """The patch memory alone (no region branch): what the leave-one-out checks compare with a rebuild."""
    det = create_detector("feature_memory", input_size=(SIZE, SIZE), threads=2, seed=0, region_window=0)
    return det, det.fit(parts.split("train"), progress=False)


def test_defective_parts_score_above_good_parts(parts: Dataset, fitted) -> None:
    det, _ = fitted
    test = parts.split("test")
    out = det.predict(det.load(test))
    labels = np.array([s.label for s in test])
    scores = out["pred_score"]
    assert scores.shape == (len(test),) and out["anomaly_map"].shape == (len(test), SIZE, SIZE)
    assert roc_auc_score(labels, scores) >= 0.9
    assert np.median(scores[labels == 1]) > scores[labels == 0].max()
    # the map points at the defect: pixel AUROC over the defective images
    defective = [s for s in test if s.label == 1]
    masks = load_masks(defective, SIZE, SIZE)
    maps = out["anomaly_map"][labels == 1]
    assert roc_auc_score(masks.ravel(), maps.ravel()) >= 0.85
    # the image score is the mean of the top patches: never above the map's peak ...
    peaks = out["anomaly_map"].reshape(len(test), -1).max(1)
    assert np.all(scores <= peaks + 0.01 * np.abs(peaks))
    # ... and with score_fraction 0 it is exactly the peak of the delivered map inside the border band
    # (16 px by default), or of the whole map without the band
    module = det.export_module()
    assert module.border_cells == 2
    module.score_fraction = 0.0
    try:
        peak = det.predict(det.load(test[:3]))
        module.border_cells = 0
        whole = det.predict(det.load(test[:3]))
    finally:
        module.score_fraction, module.border_cells = det.config.score_fraction, 2
    inner = peak["anomaly_map"][:, 16:-16, 16:-16]
    np.testing.assert_allclose(inner.reshape(3, -1).max(1), peak["pred_score"], rtol=1e-5)
    np.testing.assert_allclose(whole["anomaly_map"].reshape(3, -1).max(1), whole["pred_score"], rtol=1e-5)


def test_fit_report_and_card_info(parts: Dataset, fitted) -> None:
    det, report = fitted
    n_train = len(parts.split("train"))
    per_image = (SIZE // 8) ** 2
    extra = report.extra
    assert report.n_images == n_train and extra["n_features"] == n_train * per_image
    assert extra["feature_dim"] == 40 + 112 + 320
    assert extra["memory_size"] == min(extra["n_features"], 1024)  # the floor, on 32 tiny images
    assert report.seconds > 0
    info = det.card_info()
    assert info.backbone == "lite1" and info.classes == []  # the kind's measured default
    assert info.extra["memory_size"] == extra["memory_size"] and info.extra["taps"] == [8, 16, 32]
    assert info.parameters > extra["memory_size"] * extra["feature_dim"]


def test_options_are_checked() -> None:
    with pytest.raises(DetectorError, match="unknown option.*corset_ratio"):
        create_detector("feature_memory", corset_ratio=0.1)
    with pytest.raises(DetectorError, match="coreset_ratio"):
        create_detector("feature_memory", coreset_ratio=0.0)
    with pytest.raises(DetectorError, match="score_fraction"):
        create_detector("feature_memory", score_fraction=2)
    with pytest.raises(DetectorError, match="score_border"):
        create_detector("feature_memory", score_border=-8)
    with pytest.raises(DetectorError, match="call fit"):
        create_detector("feature_memory").predict(np.zeros((1, 3, 64, 64), np.float32))


@pytest.mark.parametrize("score_fraction", [0.05, 0.0])
def test_image_score_leaves_the_border_band_out_but_the_map_keeps_it(score_fraction: float) -> None:
    """A hot patch in the outer 2 cells (the backbone's zero padding makes the frame's edge unlike any
    interior patch) moves neither the top-fraction nor the maximum score; inside, it does; the map shows both."""
    memory = torch.zeros(4, 1)  # every normal patch is 0: a patch's distance is its own value

    def score(cell: tuple[int, int], border_cells: int) -> tuple[float, np.ndarray]:
        module = FeatureMemoryModule(torch.nn.Identity(), memory, (128, 128), sigma_features=0.0,
                                     score_fraction=score_fraction, border_cells=border_cells)
        f = torch.zeros(1, 1, 16, 16)
        f[0, 0, cell[0], cell[1]] = 50.0
        s, amap = module.score_features(f)
        return float(s[0]), amap[0].numpy()

    quiet, _ = score((0, 0), 2)
    assert quiet == pytest.approx(0.0, abs=1e-3)  # the band: nothing reaches the score
    if score_fraction:  # (the maximum reads the upsampled map, where a cell's value spreads half a cell inward)
        assert score((1, 9), 2)[0] == pytest.approx(0.0, abs=1e-3)
    assert score((8, 8), 2)[0] > 1.0 and score((2, 13), 2)[0] > 1.0  # inside the band's inner edge: scored
    assert score((0, 0), 0)[0] > 1.0  # border_cells 0: the whole map, as before
    _, amap = score((0, 0), 2)
    assert amap[:8, :8].max() > 40  # the heatmap still shows the border patch


def test_border_band_in_pixels_follows_the_map_when_the_input_is_no_multiple_of_the_stride() -> None:
    """140 px over 16 cells is 8.75 px per cell: 2 cells are 17.5 -> 18 px, not 2 x (140 // 16) = 16."""
    module = FeatureMemoryModule(torch.nn.Identity(), torch.zeros(4, 1), (140, 140), sigma_features=0.0,
                                 score_fraction=0.0, border_cells=2)
    assert module.inner(torch.zeros(1, 1, 16, 16)).shape[-2:] == (12, 12)
    assert module.inner(torch.zeros(1, 1, 140, 140), 140 / 16).shape[-2:] == (104, 104)


def test_border_band_of_the_maximum_score_uses_each_axis_own_pixels_per_cell() -> None:
    """A 128 x 140 input over a 16 x 16 map: 8 px per cell down, 8.75 across. The maximum-score path
    leaves out 16 rows and 18 columns at each edge (2 cells of each axis), not 16 of both."""
    module = FeatureMemoryModule(torch.nn.Identity(), torch.zeros(4, 1), (128, 140), sigma_features=0.0,
                                 score_fraction=0.0, border_cells=2)
    assert module.inner(torch.zeros(1, 1, 128, 140), (8.0, 8.75)).shape[-2:] == (96, 104)
    # end to end: the score reads exactly that window of the delivered map
    f = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    s, amap = module.score_features(f)
    assert float(s[0]) == pytest.approx(float(amap[0, 16:112, 18:122].max()), rel=1e-6)


def test_coreset_covers_every_cluster_and_beats_random() -> None:
    gen = torch.Generator().manual_seed(0)
    centres = torch.randn(8, 152, generator=gen) * 20
    sizes = [4000, 2000, 500, 100, 50, 20, 10, 5]  # rare clusters are what random sampling misses
    x = torch.cat([c + torch.randn(n, 152, generator=gen) for c, n in zip(centres, sizes, strict=True)])
    label = torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])
    torch.set_num_threads(2)
    idx = greedy_coreset(x, 8, projection_dim=32, max_candidates=10_000, seed=0)
    assert torch.get_num_threads() == 2  # the single-threaded loop gives the thread budget back
    assert len(set(idx.tolist())) == 8
    assert set(label[idx].tolist()) == set(range(8))
    assert torch.equal(idx, greedy_coreset(x, 8, projection_dim=32, max_candidates=10_000, seed=0))

    def radius(sel: torch.Tensor) -> float:  # farthest point from its nearest selected point
        return torch.cdist(x, x[sel]).min(1).values.max().item()

    random_sel = torch.randperm(len(x), generator=gen)[:64]
    assert radius(greedy_coreset(x, 64, seed=1)) < radius(random_sel)
    assert torch.equal(greedy_coreset(x[:5], 10), torch.arange(5))


def _clustered(n_clusters: int, n_images: int = 20, per_image: int = 200, seed: int = 0):
    """Patches of ``n_images`` normal images drawn from ``n_clusters`` looks, plus unit noise."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(n_clusters, 64, generator=gen) * 30
    pick = torch.randint(n_clusters, (n_images * per_image,), generator=gen)
    x = centres[pick] + torch.randn(n_images * per_image, 64, generator=gen)
    return x, torch.arange(n_images).repeat_interleave(per_image)


def test_coverage_sizes_the_bank_by_the_variety_of_normal_images() -> None:
    """By coverage the bank grows with the number of distinct looks, not with the patch count."""
    sizes = {}
    for k in (5, 40):
        x, owners = _clustered(k)
        idx = greedy_coreset(x, 4000, projection_dim=0, owners=owners, coverage_quantile=0.99, seed=0)
        sizes[k] = len(idx)
        assert len(set(idx.tolist())) == len(idx)
        # every patch is covered to within normal variation: no patch far from the bank
        assert torch.cdist(x, x[idx]).min(1).values.max() < 15  # looks lie ~340 apart, noise ~11
    assert sizes[5] < sizes[40] < 4000, sizes
    # the floor still applies, and without owners the fixed size is kept
    x, owners = _clustered(5)
    assert len(greedy_coreset(x, 4000, owners=owners, coverage_quantile=0.99, min_select=3000)) == 3000
    assert len(greedy_coreset(x, 50, seed=0)) == 50


def test_training_images_are_scored_leave_one_out(parts: Dataset, patch_only) -> None:
    """Each training image is scored against the bank minus the entries taken from it: the same
    score as a bank built from the other images' entries (what a new part meets), above in-sample."""
    det, _ = patch_only
    train = parts.split("train")
    assert det.oof_scores is not None and det.oof_scores.shape == (len(train),)
    maps = det.embed_maps(train[:2])
    module = det.export_module()
    owners = torch.arange(len(train)).repeat_interleave(maps.shape[2] * maps.shape[3])
    memory = torch.cat([det.embed_maps(train).permute(0, 2, 3, 1).reshape(-1, maps.shape[1])])
    chosen = det._coreset(memory, owners)
    assert torch.allclose(module.memory_t.t() + module.centre[0], memory[chosen], atol=1e-4)
    keep = owners[chosen] != 0  # image 0 left out by hand
    alone = det._build_module(memory[chosen][keep])
    with torch.no_grad():
        expected = float(alone.score_features(maps[:1])[0])
    assert det.oof_scores[0] == pytest.approx(expected, rel=1e-4)
    in_sample = det.predict(det.load(train))["pred_score"]
    assert np.median(det.oof_scores) > np.median(in_sample)
    with pytest.raises(DetectorError, match="option oof='sometimes'"):
        create_detector("feature_memory", oof="sometimes")


def test_leave_one_out_scores_stand_in_for_an_exact_rebuild(parts: Dataset, patch_only) -> None:
    """The shipped shortcut (one coreset, the image's own entries masked) against the exact answer
    (a coreset rebuilt without each image): not optimistic (a mean gap within 5 % of the scores'
    spread), pessimistic only slightly, and ranking the images alike, so a threshold set on these
    scores neither rejects too many new good parts nor too few."""
    det, _ = patch_only
    train = parts.split("train")
    maps = det.embed_maps(train)
    feats = maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1])
    owners = torch.arange(len(train)).repeat_interleave(maps.shape[2] * maps.shape[3])
    exact = np.empty(len(train))
    for i in range(len(train)):
        others = owners != i
        bank = feats[others][det._coreset(feats[others], owners[others])]
        with torch.no_grad():
            exact[i] = float(det._build_module(bank).score_features(maps[i:i + 1])[0])
    gap = det.oof_scores - exact
    spread = float(np.percentile(exact, 90) - np.percentile(exact, 10))
    assert gap.mean() >= -0.05 * spread, (gap.mean(), spread)  # not optimistic
    assert gap.mean() <= 0.3 * spread, (gap.mean(), spread)  # and close (measured: 0.15 of the spread here)
    assert np.corrcoef(det.oof_scores, exact)[0, 1] > 0.75  # and they rank the images alike


def test_fit_time_features_equal_the_exported_embedder(parts: Dataset, fitted, caplog, monkeypatch) -> None:
    """The fit-time pass runs the embedder through ONNX Runtime (or, where that cannot be built, PyTorch
    with batch norms folded, channels-last): the same features as the module that is exported."""
    det, _ = fitted
    samples = parts.split("test")[:4]
    with torch.no_grad():
        expected = det._build_embedder()(torch.from_numpy(det.load(samples)))
    with caplog.at_level("WARNING"):
        torch.testing.assert_close(det.embed_maps(samples), expected, atol=1e-3, rtol=1e-4)
    assert "feature pass unavailable" not in caplog.text  # ONNX Runtime ran
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in det.export_module().modules())

    def no_export(*args, **kwargs):
        raise RuntimeError("exporter broken")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    with caplog.at_level("WARNING"):
        torch.testing.assert_close(det.embed_maps(samples), expected, atol=1e-3, rtol=1e-4)
    assert "feature pass unavailable (exporter broken); using PyTorch" in caplog.text


def test_gaussian_kernel_is_normalised() -> None:
    k = gaussian_kernel(0.5)
    assert k.shape == (1, 1, 5, 5) and abs(k.sum().item() - 1) < 1e-6 and k[0, 0, 2, 2] == k.max()
    assert gaussian_kernel(0).numel() == 1


def test_onnx_export_card_and_calibrated_loaded_model(parts: Dataset, fitted, tmp_path: Path) -> None:
    """The deployable path: ONNX (parity-checked) + card with sha256, calibrated, through LoadedModel."""
    det, _ = fitted
    val, test = parts.split("val"), parts.split("test")
    onnx_path = tmp_path / "fm.onnx"
    report = export_onnx(det, onnx_path, det.load(val[:2] + test[-1:]))
    assert set(report.max_abs_diff) == {"pred_score", "anomaly_map"}
    assert report.max_abs_diff["pred_score"] <= 1e-3 * max(report.output_range["pred_score"], 1e-6) + 1e-5
    assert report.sha256 == sha256_file(onnx_path)

    card = ModelCard(name="fm", kind="feature_memory", model_file=onnx_path.name, model_sha256=report.sha256,
                     input=InputSpec(height=SIZE, width=SIZE), outputs=det.output_meanings(),
                     normalization=ScoreNormalization(threshold=0, min=0, max=1))
    card_path = card.save(tmp_path / "fm.card.json")
    cal = calibrate_model(card_path, val, method="fpr", target=0.125, calibration_dir=tmp_path / "calibration")
    assert cal.false_reject_rate <= 0.125 and (tmp_path / "calibration" / "fm.json").is_file()
    norm = load_card(card_path).normalization
    assert norm.method == "fpr=0.125" and norm.threshold == pytest.approx(cal.threshold)

    model = LoadedModel.load(card_path, threads=2)
    images = [decode_image(s.path) for s in val + test]
    results = model.predict(images)
    # ORT through the daemon's path scores like torch
    torch_scores = det.predict(model.preprocess(images))["pred_score"]
    np.testing.assert_allclose([r.raw_score for r in results], torch_scores, rtol=1e-3, atol=1e-4)
    # 0.5 is the calibrated threshold: the verdict flips exactly there
    assert all((r.score >= 0.5) == (r.raw_score >= norm.threshold) for r in results)
    assert sum(r.score >= 0.5 for r in results[:len(val)]) <= 1  # at most 12.5 % of 8 normals rejected
    missing = [r.score for r, s in zip(results[len(val):], test, strict=True) if s.defect_type == "missing"]
    assert min(missing) > 0.5  # a missing chunk of the part is an obvious defect
    # heatmaps of passed normal parts stay cold: the pixel threshold was set from their peaks
    assert norm.pixel_threshold is not None
    assert sum(r.anomaly_map.max() >= 0.5 for r in results[:len(val)]) <= 1
    assert all(0.0 <= r.score <= 1.0 for r in results)
    assert results[0].anomaly_map.shape == (SIZE, SIZE)

    # the card's sha256 guards the file: a changed model is refused
    onnx_path.write_bytes(onnx_path.read_bytes() + b"\0")
    with pytest.raises(Exception, match="sha256"):
        LoadedModel.load(card_path)


def test_memory_bank_holds_only_normal_images(tmp_path):
    """A defective training image (stratified splits put some in train) must not enter the memory bank."""
    import cv2
    import numpy as np
    import pytest

    from edge_inspector.data.types import Sample
    from edge_inspector.models.base import DetectorError
    from edge_inspector.models.feature_memory import FeatureMemoryDetector

    def write(name, value):
        path = tmp_path / name
        cv2.imwrite(str(path), np.full((64, 64, 3), value, np.uint8))
        return path

    good = [Sample(write(f"g{i}.png", 100 + i), 0) for i in range(3)]
    bad = [Sample(write("b.png", 250), 1, "spot")]
    det = FeatureMemoryDetector(input_size=64, threads=1)
    report = det.fit(good + bad, progress=False)
    assert report.n_images == 3
    with pytest.raises(DetectorError, match="all defective"):
        FeatureMemoryDetector(input_size=64, threads=1).fit(bad, progress=False)


def test_tap_balance_gives_every_tap_the_same_share_and_exports_it(parts: Dataset, tmp_path: Path) -> None:
    """tap_balance=equal: each tap's mean squared norm on the training patches is the same, the factors
    travel in the exported graph (ONNX equals torch), and defects still score above good parts."""
    train = parts.split("train")
    det = create_detector("feature_memory", input_size=(SIZE, SIZE), threads=2, seed=0, tap_balance="equal")
    det.fit(train, progress=False)
    embedder = det._build_embedder()
    with torch.no_grad():
        f = embedder(torch.from_numpy(det.load(train[:8])))
    energy = [float((f[:, sl] ** 2).sum(1).mean()) for sl in embedder.tap_slices()]
    assert len(energy) == 3 and max(energy) / min(energy) < 1.5  # the 8 images are a sample of the training set
    raw = create_detector("feature_memory", input_size=(SIZE, SIZE), threads=2, seed=0)
    unbalanced = raw._build_embedder()
    with torch.no_grad():
        g = unbalanced(torch.from_numpy(det.load(train[:8])))
    before = [float((g[:, sl] ** 2).sum(1).mean()) for sl in unbalanced.tap_slices()]
    assert max(before) / min(before) > 2  # what balancing corrects: the taps differ by more than 2x
    assert det.card_info().extra["tap_balance"] == "equal"

    test = parts.split("test")
    report = export_onnx(det, tmp_path / "fm.onnx", det.load(test[:3]))
    assert report.max_abs_diff["pred_score"] <= 1e-3 * max(report.output_range["pred_score"], 1e-6) + 1e-5
    scores = det.predict(det.load(test))["pred_score"]
    labels = [s.label for s in test]
    assert roc_auc_score(labels, scores) >= 0.8


def test_pca_dims_projects_the_memory_exports_it_and_refits_from_scratch(parts: Dataset, fitted,
                                                                         tmp_path: Path) -> None:
    """pca_dims=p: memory and search run in p dims (the projection travels in the exported graph: ONNX
    equals torch), the kept variance is reported, a second fit starts from the backbone's features (not
    from the first fit's projection), and defects still score above good parts."""
    train, test = parts.split("train"), parts.split("test")
    det = create_detector("feature_memory", input_size=(SIZE, SIZE), threads=2, seed=0, pca_dims=32)
    report = det.fit(train, progress=False)
    full = fitted[0].card_info()
    assert report.extra["feature_dim"] == 32 and det.card_info().extra["feature_dim"] == 32
    assert 0.5 < report.extra["pca_kept_variance"] < 1.0
    assert det.card_info().extra["pca_dims"] == 32 and full.extra["pca_dims"] == 0
    first = det.predict(det.load(test))["pred_score"]
    again = det.fit(train, progress=False)
    assert again.extra["feature_dim"] == 32 and again.extra["pca_kept_variance"] == report.extra["pca_kept_variance"]
    np.testing.assert_allclose(det.predict(det.load(test))["pred_score"], first, rtol=1e-5)

    exported = export_onnx(det, tmp_path / "fm_pca.onnx", det.load(test[:3]))
    assert exported.max_abs_diff["pred_score"] <= 1e-3 * max(exported.output_range["pred_score"], 1e-6) + 1e-5
    assert roc_auc_score([s.label for s in test], first) >= 0.8


def test_pca_dims_at_or_above_the_feature_dims_keeps_every_dim(parts: Dataset, fitted) -> None:
    det = create_detector("feature_memory", input_size=(SIZE, SIZE), threads=2, seed=0, pca_dims=100_000)
    report = det.fit(parts.split("train")[:6], progress=False)
    assert det._build_embedder().projection is None and report.extra["pca_kept_variance"] == 1.0
    assert report.extra["feature_dim"] == fitted[1].extra["feature_dim"] > 32
