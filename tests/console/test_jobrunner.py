"""console/jobrunner.py run for real in its own process: a cancel is never lost, whenever it lands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path


def test_a_cancel_that_lands_while_a_step_is_being_started_stops_that_step(tmp_path: Path) -> None:
    """SIGTERM between the step's fork and the runner noting its child was dropped: the step then ran to
    its end (a console cancel that did nothing; test_cancel_queued_job failed on a loaded box)."""
    spec = tmp_path / "job" / "spec.json"
    spec.parent.mkdir()
    step = [sys.executable, "-c", "import time; time.sleep(60)"]
    spec.write_text(json.dumps({"out_dir": str(tmp_path / "out"), "steps": [{"name": "train", "argv": step}]}))
    code = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from edge_inspector.console import jobrunner

        real = jobrunner.start_child

        def start_then_cancelled(argv, env):
            started = real(argv, env)
            os.kill(os.getpid(), signal.SIGTERM)  # the console's cancel, in the window
            return started

        jobrunner.start_child = start_then_cancelled
        sys.exit(jobrunner.run(Path({str(spec)!r})))
    """)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=50,
                   env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert time.monotonic() - t0 < 30, "the step ran on after the cancel"
    status = json.loads((spec.parent / "status.json").read_text())
    assert status["cancelled"] is True and status["returncode"] != 0
