"""Energy estimate: CPU seconds x watts per core, labelled as an estimate, configurable by environment."""

from __future__ import annotations

import pytest

from edge_inspector.errors import EdgeInspectorError
from edge_inspector.evaluate.energy import EnergyMeter, estimate
from edge_inspector.evaluate.errors import EvaluationError


def test_estimate_arithmetic():
    e = estimate(36.0, watts=10.0, grid_g_per_kwh=400.0)
    assert e["method"] == "estimate"
    assert e["energy_wh"] == pytest.approx(0.1)  # 36 core-seconds x 10 W = 360 J = 0.1 Wh
    assert e["co2_g"] == pytest.approx(0.04)  # 0.0001 kWh x 400 g/kWh


def test_meter_counts_cpu_time_and_scales_per_1000(monkeypatch):
    monkeypatch.setenv("EDGE_INSPECTOR_WATTS_PER_CORE", "20")
    with EnergyMeter(use_codecarbon=False) as meter:
        x = 0
        for i in range(300_000):
            x += i * i
    assert meter.cpu_s > 0
    per = meter.result(per_parts=1000, n_parts=10)
    assert per["method"] == "estimate" and per["watts_per_core"] == 20.0
    assert per["energy_wh"] == pytest.approx(meter.cpu_s * 100 * 20 / 3600, rel=1e-3)
    assert meter.result(per_parts=1000, n_parts=0)["method"] is None


def test_bad_setting_is_named(monkeypatch):
    monkeypatch.setenv("EDGE_INSPECTOR_WATTS_PER_CORE", "lots")
    with pytest.raises(EvaluationError, match="EDGE_INSPECTOR_WATTS_PER_CORE='lots': expected a positive number"):
        estimate(1.0)
    monkeypatch.setenv("EDGE_INSPECTOR_WATTS_PER_CORE", "-3")
    with pytest.raises(EvaluationError, match="EDGE_INSPECTOR_WATTS_PER_CORE='-3'"):
        estimate(1.0)
    assert issubclass(EvaluationError, EdgeInspectorError) and issubclass(EvaluationError, ValueError)


def test_training_energy_from_card(eval_models, monkeypatch):
    from edge_inspector.card import TrainingInfo, load_card
    from edge_inspector.evaluate.energy import training_energy_from_card

    monkeypatch.setenv("EDGE_INSPECTOR_WATTS_PER_CORE", "10")
    card = load_card(eval_models["detector"])
    assert training_energy_from_card(card)["method"] is None  # no fit time recorded
    card.training = TrainingInfo(fit_seconds=90.0, options={"threads": 4})
    e = training_energy_from_card(card)
    assert e["energy_wh"] == pytest.approx(90 * 4 * 10 / 3600) and "upper bound" in e["basis"]
    card.metrics["training_energy_wh"] = 0.25  # measured by auto: preferred
    assert training_energy_from_card(card)["energy_wh"] == 0.25


def test_codecarbon_is_used_when_installed_and_falls_back_when_it_fails(monkeypatch):
    """CodeCarbon is optional and not installed here: a stand-in module checks the adapter's contract
    (start/stop, final_emissions_data.energy_consumed in kWh) and the fallback to the estimate."""
    import sys
    import types

    class Tracker:
        fail = False

        def __init__(self, **kwargs):
            assert kwargs["save_to_file"] is False

        def start(self):
            if Tracker.fail:
                raise RuntimeError("no RAPL, no internet")

        def stop(self):
            self.final_emissions_data = types.SimpleNamespace(energy_consumed=0.002)  # kWh
            return 0.0008  # kg CO2e

    monkeypatch.setitem(sys.modules, "codecarbon", types.SimpleNamespace(OfflineEmissionsTracker=Tracker))
    with EnergyMeter() as meter:
        pass
    r = meter.result(per_parts=1000, n_parts=100)
    assert r["method"] == "codecarbon"
    assert r["energy_wh"] == pytest.approx(2.0 * 10) and r["co2_g"] == pytest.approx(0.8 * 10)
    Tracker.fail = True
    with EnergyMeter() as meter:
        pass
    r = meter.result()
    assert r["method"] == "estimate" and "could not start" in r["notes"][0]
