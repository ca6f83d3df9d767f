"""Training jobs: queue, start detached workers, follow their files, cancel, recover after a restart.

The web process never trains: a job is a ``jobrunner`` process in its own session running the
``edge-inspector train`` (then ``evaluate``) CLI. ``tick()`` is the whole scheduler: it refreshes
running jobs from their files and starts the oldest queued job when none runs (2-core machines:
one job at a time). The console calls it from a monitor thread and from the job pages, and tests
call it directly.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from ..models import DETECTORS, KIND_LABELS
from .models import TrainingJob, audit

log = logging.getLogger(__name__)
_lock = threading.RLock()
_children: dict[int, subprocess.Popen] = {}
CANCEL_MARKER = "cancel-requested"

# The training form lists every registered detector kind (the registry is the one list; importing it needs no torch).
DETECTOR_KINDS = [(kind, KIND_LABELS.get(kind, kind)) for kind in DETECTORS]


class JobArgumentError(ValueError):
    """A training job's name or extra arguments are outside what the console allows; the message says which."""


# Model names become file names in the job's output folder: one plain name, nothing that is a path.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name) or ".." in name:
        raise JobArgumentError(f"name {name!r}: expected letters, digits, '.', '_' or '-' (at most 100, no '..', "
                               "no '/'), e.g. widget-fm")
    return name


def _number(kind: type, low: float, high: float):
    def check(flag: str, value: str) -> str:
        try:
            number = kind(value)
        except ValueError:
            number = None
        if number is None or not low <= number <= high:
            raise JobArgumentError(f"{flag} {value!r}: expected a {kind.__name__} from {low} to {high}")
        return value
    return check


def _choice(*choices: str):
    def check(flag: str, value: str) -> str:
        if value not in choices:
            raise JobArgumentError(f"{flag} {value!r}: expected one of {', '.join(choices)}")
        return value
    return check


_OPTION_KEY = re.compile(r"[a-z_][a-z0-9_]{0,63}")


def _detector_option(flag: str, value: str) -> str:
    """``KEY=VALUE`` where VALUE is a number, a boolean or a list of numbers: never a string, so never a path."""
    key, sep, raw = value.partition("=")
    try:
        parsed = json.loads(raw) if sep else None
    except ValueError:
        parsed = None
    numbers = (int, float)
    ok = (isinstance(parsed, bool | int | float)
          or (isinstance(parsed, list) and len(parsed) <= 64
              and all(isinstance(v, numbers) and not isinstance(v, bool) for v in parsed)))
    if not _OPTION_KEY.fullmatch(key.replace("-", "_")) or not ok:
        raise JobArgumentError(f"{flag} {value!r}: expected KEY=NUMBER, KEY=true/false or KEY=[numbers], "
                               "e.g. coreset_ratio=0.05 (options naming files are for the command line)")
    return value


# The `edge-inspector train` flags a console user may add. Everything that names a file or folder
# (--out, --calibration-dir, --include-review, string --option values) or that the form sets
# itself (--name, --model, --seed, --input-size, --epochs, --category) is refused.
EXTRA_FLAGS: dict[str, object] = {
    "--max-train": _number(int, 1, 1_000_000),
    "--threads": _number(int, 1, 64),
    "--scheme": _choice("native", "stratified"),
    "--val-fraction": _number(float, 0.0, 0.9),
    "--split-seed": _number(int, 0, 2**31 - 1),
    "--backbone": _choice("lite0", "lite1", "lite2"),
    "--calibration": _choice("val", "train", "none"),
    "--method": _choice("auto", "fpr", "f1", "recall"),
    "--target": _number(float, 0.0, 1.0),
    "--option": _detector_option,
    "-o": _detector_option,
    "--quiet": None,
    "-q": None,
}


def parse_extra_args(text: str) -> list[str]:
    """The extra arguments as argv items, each flag on the whitelist with a checked value."""
    try:
        tokens = shlex.split(text or "")
    except ValueError as exc:
        raise JobArgumentError(f"extra arguments: {exc}") from exc
    out: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        flag, eq, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if flag not in EXTRA_FLAGS:
            allowed = ", ".join(sorted(f for f in EXTRA_FLAGS if f.startswith("--")))
            what = ("is not allowed here" if token.startswith("-")
                    else "is not a flag (positional arguments are set by the console)")
            raise JobArgumentError(f"extra arguments: {token!r} {what}; allowed: {allowed}")
        check = EXTRA_FLAGS[flag]
        if check is None:
            if eq:
                raise JobArgumentError(f"extra arguments: {flag} takes no value")
            out.append(flag)
            i += 1
            continue
        if eq:
            value = inline
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise JobArgumentError(f"extra arguments: {flag} needs a value")
            value = tokens[i + 1]
            i += 2
        out += [flag, check(flag, value)]
    return out


def _command(key: str, default: list[str]) -> list[str]:
    configured = settings.CONSOLE.get(key) or ""
    return shlex.split(configured) if configured else default


def build_steps(job: TrainingJob, out_dir: Path, report_dir: Path) -> list[dict]:
    """The argv of each step; ``{card}`` stands for the card the train step will produce.

    The name and extra arguments are checked again here (a job queued by an older console, or a
    row edited in the database, gets no further than this), and the extra arguments come first so
    the console's own ``--out``/``--name`` are the ones argparse keeps.
    """
    cli = [sys.executable, "-m", "edge_inspector"]
    train = _command("TRAIN_COMMAND", [*cli, "train"])
    opts = job.options or {}
    extra = parse_extra_args(opts.get("extra_args", "") or "")
    argv = [*train, job.dataset.path, *extra, "--model", job.kind, "--out", str(out_dir)]
    if opts.get("name"):
        argv += ["--name", check_name(str(opts["name"]))]
    for key, flag in (("seed", "--seed"), ("input_size", "--input-size"), ("epochs", "--epochs")):
        if opts.get(key) not in (None, ""):
            argv += [flag, str(int(opts[key]))]
    category = ["--category", job.dataset.category] if job.dataset.category else []
    argv += category
    steps = [{"name": "train", "argv": argv}]
    if opts.get("evaluate", True):
        evaluate = _command("EVALUATE_COMMAND", [*cli, "evaluate"])
        steps.append({"name": "evaluate",
                      "argv": [*evaluate, "{card}", job.dataset.path, "--out", str(report_dir), *category]})
    return steps


def start(job: TrainingJob) -> TrainingJob:
    """Spawn the detached worker for a queued job and mark it running."""
    job_dir = Path(settings.CONSOLE["JOBS_DIR"]) / f"job-{job.pk}"
    out_dir, report_dir = job_dir / "model", job_dir / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = {"steps": build_steps(job, out_dir, report_dir), "out_dir": str(out_dir), "env": {"OMP_NUM_THREADS": "2"}}
    spec_path = job_dir / "spec.json"
    spec_path.write_text(json.dumps(spec, indent=2))
    for stale in ("status.json", "progress.json", CANCEL_MARKER):
        (job_dir / stale).unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_inspector.console.jobrunner", str(spec_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=open(job_dir / "runner-stderr.txt", "wb"),  # noqa: SIM115 - handed to the child
        start_new_session=True,  # survives the console: its own session and process group
        cwd=os.getcwd(),
    )
    _children[proc.pid] = proc
    job.status, job.pid, job.started_at = "running", proc.pid, timezone.now()
    job.work_dir, job.log_path = str(job_dir), str(job_dir / "log.txt")
    job.progress, job.step, job.error = 0.0, "starting", ""
    job.save()
    log.info("started %s as pid %d", job, proc.pid)
    return job


def pid_alive(pid: int | None) -> bool:
    """True while the worker runs; reaps our own children so a finished one is not a live zombie."""
    if not pid:
        return False
    proc = _children.get(pid)
    if proc is not None:
        if proc.poll() is None:
            return True
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a pid reused by an unrelated process is not our worker
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return b"jobrunner" in cmdline and stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def refresh(job: TrainingJob) -> TrainingJob:
    """Update a running job from its worker's files; finish it when the worker has ended."""
    if job.status != "running":
        return job
    with _lock:  # the job monitor and page requests (other threads) may finish the same job at once
        job.refresh_from_db()
        if job.status != "running":
            return job
        return _finish_if_done(job)


def _finish_if_done(job: TrainingJob) -> TrainingJob:
    """refresh() under the lock: progress from the files; at the end the model first, then the status."""
    job_dir = Path(job.work_dir)
    if progress := _read_json(job_dir / "progress.json"):
        job.progress = float(progress.get("progress", job.progress))
        job.step = str(progress.get("step", job.step))
    status = _read_json(job_dir / "status.json")
    if status is None and pid_alive(job.pid):
        job.save(update_fields=["progress", "step"])
        return job
    if status is None:
        status = {"returncode": -1, "error": "the worker process ended without a result (killed, or lost in a restart)",
                  "cancelled": (job_dir / CANCEL_MARKER).exists()}
    job.finished_at = timezone.now()
    if status.get("cancelled"):
        job.status, job.error = "cancelled", ""
    elif status.get("returncode") == 0 and status.get("card"):
        job.status, job.progress, job.result_card = "done", 1.0, status["card"]
    else:
        job.status = "failed"
        job.error = status.get("error") or "failed"
        if status.get("returncode") == 0:
            job.error = "training finished but wrote no model card"
    if job.status == "done":
        # The model is registered before "done" is saved: a page that sees "done" (and stops
        # polling) always finds the job's model, even while another thread is finishing the job.
        from .registry import register_card

        try:
            register_card(Path(job.result_card), report_dir=job_dir / "report", job=job)
        except Exception as exc:  # noqa: BLE001 - a bad card fails the job visibly instead of the page
            job.status, job.error = "failed", f"model card {job.result_card}: {exc}"
    job.save()
    audit(None, f"job.{job.status}", job=job.pk, kind=job.kind, error=job.error)
    return job


def cancel(job: TrainingJob, user) -> TrainingJob:
    """Queued jobs are cancelled at once; running ones get SIGTERM and finish as cancelled."""
    with _lock:
        job.refresh_from_db()
        if job.status == "queued":
            job.status, job.finished_at = "cancelled", timezone.now()
            job.save()
        elif job.status == "running" and pid_alive(job.pid):
            # The marker covers a worker killed by this SIGTERM before its handler was installed.
            (Path(job.work_dir) / CANCEL_MARKER).touch()
            os.kill(job.pid, signal.SIGTERM)
        audit(user, "job.cancel", job=job.pk)
    return job


def tick() -> None:
    """One scheduler pass: refresh running jobs, then start the oldest queued one if none runs."""
    with _lock:
        running = list(TrainingJob.objects.filter(status="running"))
        for job in running:
            refresh(job)
        if not TrainingJob.objects.filter(status="running").exists():
            nxt = TrainingJob.objects.filter(status="queued").order_by("created_at", "id").first()
            if nxt is not None:
                try:
                    start(nxt)
                except OSError as exc:
                    nxt.status, nxt.error, nxt.finished_at = "failed", f"cannot start worker: {exc}", timezone.now()
                    nxt.save()
                except JobArgumentError as exc:
                    nxt.status, nxt.error, nxt.finished_at = "failed", f"refused: {exc}", timezone.now()
                    nxt.save()
                    audit(None, "job.refused", job=nxt.pk, error=str(exc))


def recover() -> None:
    """At console start: running jobs whose worker is gone are finished from their files or failed."""
    for job in TrainingJob.objects.filter(status="running"):
        if not pid_alive(job.pid):
            log.info("recovering %s: worker pid %s is gone", job, job.pid)
        refresh(job)


class JobMonitor(threading.Thread):
    """Calls tick() every ``interval`` seconds inside the console process."""

    def __init__(self, interval: float = 1.0):
        super().__init__(name="job-monitor", daemon=True)
        self.interval = interval
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join(5)

    def run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                close_old_connections()
                tick()
            except Exception:  # noqa: BLE001 - the monitor must outlive a transient DB error
                log.exception("job monitor tick failed")


def log_tail(job: TrainingJob, limit: int = 8000) -> str:
    """The end of the job's log, with tqdm's carriage-return redraws collapsed to their last state."""
    if not job.log_path:
        return ""
    try:
        with open(job.log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - limit * 4))
            raw = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    # A pty ends lines with \r\n; tqdm redraws with \r: keep each line's last non-empty state.
    lines = []
    for line in raw.split("\n"):
        states = [part for part in line.split("\r") if part.strip()]
        lines.append(states[-1] if states else "")
    return "\n".join(lines)[-limit:]
