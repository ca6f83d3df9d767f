"""bench/soak.py runs end to end on a small input (the long 50,000-frame run is the lead's job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_soak_bench_small_run_reports_rss_fds_and_bound() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--frames", "300", "--files", "20",
                          "--sample-s", "0.2", "--warmup-s", "1"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    body, _, human = res.stdout.rpartition("}\n")
    result = json.loads(body + "}")
    assert result["ok"] and result["exit_code"] == 0 and result["frames"] >= 300
    assert result["rss_mb"]["max"] > 20 and result["fds"]["end"] > 3  # real /proc samples of the daemon
    # The bound is read after a real warm-up, also on a machine fast enough to finish 300 frames before the
    # first sample (a fresh-clone CI box once took its warm-up sample at t=0 and counted the lazy opens as growth).
    assert result["warm_at_s"] >= 1.0 and result["samples_after_warmup"] >= 3
    assert human.startswith("soak OK:") and "frames/s" in human


def test_soak_bench_parts_scenario_reports_no_lost_or_duplicated_part() -> None:
    """--parts: a watched folder under slow writers and a SIGHUP storm (issue 14, "Done when")."""
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--parts", "16", "--writers", "4",
                          "--hup-every", "0.1", "--sample-s", "0.2"], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    body, _, human = res.stdout.rpartition("}\n")
    result = json.loads(body + "}")
    assert (result["lost"], result["duplicated"], result["errors"], result["exit_code"]) == (0, 0, 0, 0)
    assert result["verdicts"] == 16 and result["reloads"] >= 5  # the storm really reloaded mid-run
    assert human.startswith("soak parts OK:")
