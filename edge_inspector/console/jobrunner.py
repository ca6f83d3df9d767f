"""The detached worker that runs one training job's steps; ``python -m edge_inspector.console.jobrunner SPEC``.

It is its own process group (started with a new session), so a job survives page reloads and a
console restart; it never touches the database. It talks to the console through three files in
the job folder: ``log.txt`` (all output), ``progress.json`` (rewritten as tqdm percentages
arrive) and ``status.json`` (written once, at the end). SIGTERM cancels: it is forwarded to the
running step and the job ends as cancelled.

SPEC is a JSON file: {"steps": [{"name": "train", "argv": [...]}, ...], "out_dir": "...",
"env": {...}}. An argv item "{card}" is replaced by the card path the train step produced.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

PERCENT = re.compile(rb"(\d{1,3})%\|")
PROGRESS_LINE = re.compile(rb"PROGRESS\s+([0-9.]+)")


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def find_card(folder: Path) -> Path | None:
    cards = sorted(folder.rglob("*.card.json"), key=lambda p: p.stat().st_mtime)
    return cards[-1] if cards else None


def start_child(argv: list[str], env: dict) -> tuple[subprocess.Popen, int]:
    """Start a step with its output on a pseudo-terminal, else a pipe; returns (process, fd to read).

    The toolchain shows tqdm progress bars only when stderr is a terminal, so a pipe would leave
    the console without progress; a pty makes the step behave as if run from a shell.
    """
    try:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    except OSError:
        master, slave = os.pipe()
    try:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                                 env={**env, "COLUMNS": "120"}, close_fds=True)
    except OSError:
        os.close(master)
        raise
    finally:
        os.close(slave)
    return child, master


def read_chunk(fd: int) -> bytes:
    """Next output bytes; b"" at the end (a pty reports the end as EIO once the child has exited)."""
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def run(spec_path: Path) -> int:
    spec = json.loads(spec_path.read_text())
    job_dir = spec_path.parent
    out_dir = Path(spec["out_dir"])
    steps = spec["steps"]
    env = {**os.environ, **spec.get("env", {}), "PYTHONUNBUFFERED": "1"}
    state: dict = {"cancelled": False, "child": None}

    def on_term(signum, frame):  # noqa: ARG001
        state["cancelled"] = True
        child = state["child"]
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    card: Path | None = None
    result = {"returncode": 0, "step": "", "card": "", "cancelled": False, "error": ""}
    with open(job_dir / "log.txt", "ab", buffering=0) as log:
        for index, step in enumerate(steps):
            if state["cancelled"]:
                break
            argv = [str(card) if a == "{card}" else a for a in step["argv"]]
            if "{card}" in step["argv"] and card is None:
                result.update(returncode=1, step=step["name"], error="no model card was produced by the previous step")
                break
            log.write(f"\n== step {index + 1}/{len(steps)}: {step['name']}: {' '.join(argv)}\n".encode())
            write_json(job_dir / "progress.json", {"step": step["name"], "progress": index / len(steps)})
            try:
                child, output = start_child(argv, env)
            except OSError as exc:
                result.update(returncode=127, step=step["name"], error=f"cannot start {argv[0]}: {exc}")
                break
            state["child"] = child
            if state["cancelled"]:  # SIGTERM came while the step was being started: on_term saw no child
                child.terminate()
            last_write, best = 0.0, 0.0
            while chunk := read_chunk(output):
                log.write(chunk)
                fraction = None
                if found := PERCENT.findall(chunk):
                    fraction = min(int(found[-1]), 100) / 100
                elif found := PROGRESS_LINE.findall(chunk):
                    fraction = min(float(found[-1]), 1.0)
                now = time.monotonic()
                # A step may show several bars in turn (features, then calibration scoring): never go back.
                if fraction is not None and fraction > best and now - last_write > 0.2:
                    last_write, best = now, fraction
                    overall = (index + fraction) / len(steps)
                    write_json(job_dir / "progress.json", {"step": step["name"], "progress": overall})
            os.close(output)
            code = child.wait()
            state["child"] = None
            if step["name"] == "train":
                card = find_card(out_dir)
            if code != 0:
                error = f"step {step['name']} exited with status {code}"
                result.update(returncode=code, step=step["name"], error=error)
                break
        result["cancelled"] = state["cancelled"]
        result["card"] = str(card) if card else ""
        if result["returncode"] == 0 and not result["cancelled"]:
            write_json(job_dir / "progress.json", {"step": "done", "progress": 1.0})
        log.write(f"\n== finished: {json.dumps(result)}\n".encode())
    write_json(job_dir / "status.json", result)
    return 0


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1])))
