"""Session fixtures over the tiny models and data of ``tests/evaluate/tiny.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_inspector.data.types import Dataset, Sample

from .tiny import build_classifier, build_detector, make_samples


@pytest.fixture(scope="session")
def eval_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("eval_models")
    return {"detector": build_detector(out), "classifier": build_classifier(out),
            "pooled": build_detector(out, "tiny-pooled", pool=4)}


@pytest.fixture(scope="session")
def eval_samples(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    return make_samples(tmp_path_factory.mktemp("eval_data"))


@pytest.fixture(scope="session")
def eval_dataset(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """A Dataset with train/val/test splits, each holding good and defective parts."""
    root = tmp_path_factory.mktemp("eval_ds")
    samples = (make_samples(root / "train", n_good=6, n_red=0, n_blue=0, split="train", seed=1, hard=False)
               + make_samples(root / "val", n_good=4, n_red=2, n_blue=2, split="val", seed=2)
               + make_samples(root / "test", n_good=6, n_red=3, n_blue=3, split="test", seed=3))
    return Dataset(name="tiny", root=root, samples=samples, layout="folders", split_info={"scheme": "test"})
