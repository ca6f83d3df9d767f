"""Shared training helpers: AUROC, early stopping with best-weights restore, seeded batching, augmentation."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.metrics import roc_auc_score  # noqa: E402

from edge_inspector.models.base import DetectorError  # noqa: E402
from edge_inspector.models.training import (  # noqa: E402
    AugmentConfig,
    EarlyStopping,
    augment_batch,
    binary_auroc,
    make_generator,
    minibatches,
    run_epochs,
)


def test_auroc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.integers(0, 4, 30).astype(float)  # many ties
        labels = rng.integers(0, 2, 30)
        assert binary_auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert np.isnan(binary_auroc([0.1, 0.2], [1, 1]))


def test_early_stopping_stops_after_patience_and_restores_the_best_weights() -> None:
    model = torch.nn.Linear(1, 1)
    losses = iter([1.0, 0.5, 0.7, 0.8, 0.9, 0.1])

    def epoch(i: int) -> float:
        with torch.no_grad():
            model.weight.fill_(float(i))  # weights record which epoch wrote them
        return next(losses)

    report = run_epochs(6, epoch, validate=None, stopper=EarlyStopping(patience=3), module=model,
                        show_progress=False, desc="t")
    assert report["epochs_run"] == 5 and report["best_epoch"] == 1 and report["best_monitor"] == 0.5
    assert float(model.weight.detach()) == 1.0  # epoch 1's weights, not the last epoch's
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")


def test_non_finite_loss_is_an_error() -> None:
    with pytest.raises(DetectorError, match="learning rate"):  # the train command reports it, no traceback
        run_epochs(2, lambda i: float("nan"), validate=None, stopper=EarlyStopping(), module=torch.nn.Linear(1, 1),
                   show_progress=False, desc="t")


def test_minibatches_cover_every_item_once_and_oversample_on_request() -> None:
    batches = list(minibatches(10, 4, make_generator(0)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))
    again = list(minibatches(10, 4, make_generator(0)))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))
    weights = torch.tensor([1.0] * 90 + [9.0] * 10)  # 10 rare items weighted to half the draws
    drawn = torch.cat(list(minibatches(100, 32, make_generator(1), weights)))
    assert len(drawn) == 100 and 30 <= int((drawn >= 90).sum()) <= 70


def test_augmentation_is_seeded_bounded_and_identity_when_disabled() -> None:
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = augment_batch(x, make_generator(5))
    b = augment_batch(x, make_generator(5))
    c = augment_batch(x, make_generator(6))
    assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b) and not torch.allclose(a, c)
    off = AugmentConfig(hflip=False, vflip=False, rotate_deg=0, shift=0, brightness=0, contrast=0)
    assert torch.allclose(augment_batch(x, make_generator(0), off), x, atol=1e-5)
