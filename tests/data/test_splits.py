"""Property tests of the stratified split: every sample once, every type trained on, fractions honoured."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from edge_inspector.data.readers import _split_native, _split_stratified
from edge_inspector.data.types import GOOD, Sample


def _samples(groups: dict[str, int]) -> list[Sample]:
    return [Sample(Path(f"/d/{t}/{i:04d}.png"), int(t != GOOD), t) for t, n in groups.items() for i in range(n)]


groups_strategy = st.dictionaries(st.sampled_from([GOOD, "crack", "hole", "stain"]), st.integers(1, 60), min_size=1)
fraction = st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.3])


@settings(max_examples=60, deadline=None)
@given(groups=groups_strategy, val=fraction, test=fraction, seed=st.integers(0, 2**16))
def test_stratified_properties(groups: dict[str, int], val: float, test: float, seed: int) -> None:
    samples = _samples(groups)
    out = _split_stratified(samples, seed, val, test)
    assert [s.path for s in out] == [s.path for s in samples]  # order kept, each sample once
    counts = Counter((s.defect_type, s.split) for s in out)
    for t, n in groups.items():
        assert counts[(t, "train")] >= 1
        if n >= 10:
            assert abs(counts[(t, "test")] - n * test) <= 1 and abs(counts[(t, "val")] - n * val) <= 1
        if n >= 3 and val > 0 and test > 0:
            assert counts[(t, "val")] >= 1 and counts[(t, "test")] >= 1
    assert _split_stratified(samples, seed, val, test) == out


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 80), val=st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.9]), seed=st.integers(0, 2**16))
def test_native_holdout_properties(n: int, val: float, seed: int) -> None:
    samples = [Sample(Path(f"/d/{i}.png"), 0, GOOD, None, "train") for i in range(n)]
    samples.append(Sample(Path("/d/t.png"), 1, "crack", None, "test"))
    out = _split_native(samples, seed, val)
    n_val = sum(s.split == "val" for s in out)
    assert sum(s.split == "train" for s in out) >= 1 and out[-1].split == "test"
    if n >= 10:
        assert abs(n_val - n * val) <= 1


@settings(max_examples=60, deadline=None)
@given(groups=groups_strategy, val=fraction, test=st.sampled_from([0.1, 0.2, 0.3]), seed=st.integers(0, 2**16))
def test_hold_out_defects_keeps_every_defect_for_val_and_test(groups: dict[str, int], val: float, test: float,
                                                             seed: int) -> None:
    """Normal-only kinds: no defect in train, normals untouched, the ordinary test split a subset of the new one."""
    from edge_inspector.data.readers import hold_out_defects
    from edge_inspector.data.types import Dataset

    split = _split_stratified(_samples(groups), seed, val, test)
    dataset = Dataset("d", Path("/d"), split, "folders", {"seed": seed, "val_fraction": val, "test_fraction": test})
    out = hold_out_defects(dataset)
    assert [s.path for s in out.samples] == [s.path for s in split]
    assert not [s for s in out.samples if s.split == "train" and s.label == 1]
    assert [s.split for s in out.samples if s.label == 0] == [s.split for s in split if s.label == 0]
    before = {s.path for s in split if s.split == "test"}
    assert before <= {s.path for s in out.samples if s.split == "test"}
    counts = Counter((s.defect_type, s.split) for s in out.samples)
    for t, n in groups.items():
        if t != GOOD and n >= 10:  # shared in the ratio val : test (the odd one to test)
            assert abs(counts[(t, "val")] - n * val / (val + test)) <= 1.5
    assert out.split_info["defects_in_train"] is False
    assert hold_out_defects(dataset) == out  # seeded
