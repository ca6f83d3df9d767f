"""Energy and carbon of training and of inference per 1000 parts: measured where possible, else estimated.

Why an estimate at all: a quality engineer choosing between a 5 ms and a 50 ms model on a fleet of
industrial PCs wants the running cost next to the accuracy, and most edge boxes expose no power
sensor (RAPL needs root, Jetsons need tegrastats). So:

1. If CodeCarbon is installed and can measure offline (``OfflineEmissionsTracker``), its figure is
   used (``method = "codecarbon"``).
2. Otherwise: energy = process CPU seconds x watts per busy core (``method = "estimate"``).
   CPU seconds are user + system time of this process and its waited-for children
   (``resource.getrusage``), i.e. the core-seconds actually burnt. The default of
   ``DEFAULT_WATTS_PER_CORE`` = 10 W per busy core is a typical desktop/industrial x86 TDP share
   (65 W / 6 cores); set ``EDGE_INSPECTOR_WATTS_PER_CORE`` (a Jetson Orin Nano is ~2.5 W per core).
   Carbon uses ``EDGE_INSPECTOR_GRID_G_CO2_PER_KWH`` (default 400 g/kWh, roughly the world mean).

Reports label every figure with its method; an estimate is never shown as a measurement.
"""

from __future__ import annotations

import logging
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import EvaluationError

log = logging.getLogger(__name__)

DEFAULT_WATTS_PER_CORE = 10.0
DEFAULT_GRID_G_CO2_PER_KWH = 400.0
WATTS_ENV = "EDGE_INSPECTOR_WATTS_PER_CORE"
GRID_ENV = "EDGE_INSPECTOR_GRID_G_CO2_PER_KWH"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise EvaluationError(f"environment variable {name}={raw!r}: expected a positive number") from exc
    if value <= 0:
        raise EvaluationError(f"environment variable {name}={raw!r}: expected a positive number")
    return value


def watts_per_core() -> float:
    return _env_float(WATTS_ENV, DEFAULT_WATTS_PER_CORE)


def grid_intensity() -> float:
    return _env_float(GRID_ENV, DEFAULT_GRID_G_CO2_PER_KWH)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (all threads)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def estimate(cpu_s: float, *, watts: float | None = None, grid_g_per_kwh: float | None = None) -> dict[str, Any]:
    """The documented CPU-time x TDP estimate for ``cpu_s`` core-seconds."""
    watts = watts_per_core() if watts is None else watts
    grid = grid_intensity() if grid_g_per_kwh is None else grid_g_per_kwh
    wh = cpu_s * watts / 3600.0
    return {
        "method": "estimate",
        "basis": f"process CPU seconds x {watts:g} W per busy core ({WATTS_ENV})",
        "cpu_seconds": round(cpu_s, 4),
        "watts_per_core": watts,
        "energy_wh": wh,
        "co2_g": wh / 1000.0 * grid,
        "grid_g_co2_per_kwh": grid,
    }


@dataclass
class EnergyMeter:
    """Context manager measuring one job: wall time, CPU seconds, and CodeCarbon's figure when available.

    >>> with EnergyMeter() as meter:
    ...     work()
    >>> meter.result()   # dict with method, energy_wh, co2_g, cpu_seconds, wall_seconds
    """

    use_codecarbon: bool = True
    _cpu0: float = 0.0
    _wall0: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    _tracker: Any = None
    _measured_kwh: float | None = None
    _measured_co2_kg: float | None = None
    notes: list[str] = field(default_factory=list)

    def __enter__(self) -> EnergyMeter:
        if self.use_codecarbon:
            self._tracker = _start_codecarbon(self.notes)
        self._cpu0, self._wall0 = cpu_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_s = cpu_seconds() - self._cpu0
        self.wall_s = time.perf_counter() - self._wall0
        if self._tracker is not None:
            try:
                self._measured_co2_kg = self._tracker.stop()
                data = getattr(self._tracker, "final_emissions_data", None)
                self._measured_kwh = getattr(data, "energy_consumed", None)
            except Exception as exc:  # noqa: BLE001 - optional tool; fall back to the estimate
                self.notes.append(f"codecarbon failed ({exc}); using the CPU-time estimate")
                self._measured_kwh = None

    def result(self, per_parts: int | None = None, n_parts: int | None = None) -> dict[str, Any]:
        """Energy of the measured job, or scaled to ``per_parts`` parts when ``n_parts`` were processed."""
        scale = 1.0
        if per_parts is not None:
            if not n_parts:
                return {"method": None, "reason": "no part was processed"}
            scale = per_parts / n_parts
        if self._measured_kwh is not None:
            wh = self._measured_kwh * 1000.0 * scale
            out = {"method": "codecarbon", "basis": "CodeCarbon OfflineEmissionsTracker",
                   "energy_wh": wh, "co2_g": (self._measured_co2_kg or 0.0) * 1000.0 * scale,
                   "cpu_seconds": round(self.cpu_s * scale, 4)}
        else:
            out = estimate(self.cpu_s * scale)
        out["wall_seconds"] = round(self.wall_s * scale, 4)
        if per_parts is not None:
            out["per_parts"] = per_parts
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def _start_codecarbon(notes: list[str]) -> Any:
    """An offline CodeCarbon tracker, or None when it is not installed or cannot start offline."""
    try:
        from codecarbon import OfflineEmissionsTracker  # noqa: PLC0415 - optional dependency
    except ImportError:
        return None
    try:
        tracker = OfflineEmissionsTracker(country_iso_code=os.environ.get("EDGE_INSPECTOR_COUNTRY", "DEU"),
                                          save_to_file=False, log_level="error")
        tracker.start()
        return tracker
    except Exception as exc:  # noqa: BLE001 - optional tool; the estimate still works
        notes.append(f"codecarbon could not start offline ({exc}); using the CPU-time estimate")
        return None


def training_energy_from_card(card: Any) -> dict[str, Any]:
    """Training energy for a model card, best source first.

    1. ``metrics.training_energy_wh`` (written by ``auto``, measured as process CPU seconds);
    2. otherwise an upper bound from ``training.fit_seconds`` x the training threads (every thread
       assumed busy for the whole fit) x watts per core;
    3. otherwise None with the reason.
    """
    metrics = getattr(card, "metrics", {}) or {}
    if metrics.get("training_energy_wh") is not None:
        return {"method": "codecarbon" if metrics.get("training_energy_codecarbon") else "estimate",
                "basis": "CPU seconds measured during training by auto",
                "energy_wh": float(metrics["training_energy_wh"]),
                "co2_g": float(metrics["training_energy_wh"]) / 1000.0 * grid_intensity()}
    training = getattr(card, "training", None)
    fit = getattr(training, "fit_seconds", None)
    if not fit:
        return {"method": None, "reason": "the card records no fit time"}
    options = getattr(training, "options", None) or (training.model_extra or {}).get("options") or {}
    threads = int(options.get("threads", 2)) if isinstance(options, dict) else 2
    out = estimate(float(fit) * threads)
    out["basis"] = (f"upper bound: fit wall time {float(fit):.1f} s x {threads} threads x "
                    f"{out['watts_per_core']:g} W per core ({WATTS_ENV})")
    return out
