"""Shared by the container tests: podman with the flags these machines need, the probe, a demo line.

How podman runs on CI machines that are containers themselves (see docs/containers.md): the runc
runtime, cgroupfs and no default ulimits (``CONTAINERS_CONF``); the same flags work on a normal host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
IMAGE_USER = "10001"
PODMAN_FLAGS = ["--runtime", "runc", "--cgroup-manager=cgroupfs"]


def podman_problem() -> str | None:
    """Why podman cannot run containers here, or None."""
    if os.environ.get("EDGE_INSPECTOR_IMAGE_TEST", "1") == "0":
        return "EDGE_INSPECTOR_IMAGE_TEST=0"
    if not sys.platform.startswith("linux"):
        return "containers need Linux"
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman runc debootstrap; tools/bootstrap.sh does it)"
    if shutil.which("runc") is None or shutil.which("debootstrap") is None:
        return "runc and debootstrap are needed (apt-get install runc debootstrap)"
    if os.geteuid() != 0 and not shutil.which("sudo"):
        return "debootstrap needs root (or sudo) to build the base image"
    return None


def run_probe(env: dict[str, str], rootfs: Path) -> str | None:
    """Start one container (``/bin/true`` with its libraries as the root file system, no image, no
    network) with the flags the build uses; return podman's error, or None when it ran."""
    info = subprocess.run(["podman", *PODMAN_FLAGS, "info", "--format", "{{.Host.OCIRuntime.Name}}"],
                          capture_output=True, text=True, env=env, timeout=120)
    if info.returncode != 0:
        return info.stderr.strip()[-500:]
    true = Path(shutil.which("true") or "/bin/true").resolve()
    libs = re.findall(r"(/\S+\.so[.\d]*)", subprocess.run(["ldd", str(true)], capture_output=True, text=True).stdout)
    for f in [true, *map(Path, libs)]:
        dest = rootfs / f.relative_to("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f.resolve(), dest)
    run = subprocess.run(["podman", *PODMAN_FLAGS, "run", "--rm", "--network=none", "--rootfs", str(rootfs),
                          str(true)], capture_output=True, text=True, env=env, timeout=120)
    return None if run.returncode == 0 else (run.stderr.strip() or f"exit {run.returncode}")[-500:]


def podman(env: dict[str, str], *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    res = subprocess.run(["podman", *PODMAN_FLAGS, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])}... exited {res.returncode}:\n{res.stdout[-2000:]}"
                             f"\n{res.stderr[-3000:]}")
    return res


def until(cond, timeout: float, what: str, logs=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; log:\n{logs()[-4000:]}")



@dataclass
class DemoLine:
    """A demo line on the host: replay frames and a quickly fitted model, for configs with container paths."""

    root: Path
    replay: Path
    models: Path
    n_frames: int


def make_demo_line(root: Path, n_frames: int = 40) -> DemoLine:
    """generate-demo + a feature-memory detector fitted in seconds (64 px, 12 images), as tools/demo.sh does."""
    ei = [str(VENV_BIN / "python"), "-m", "edge_inspector"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}
    for args in (["generate-demo", "demo", "--replay", str(n_frames), "--size", "64", "--n-train", "12",
                  "--n-test-good", "4", "--n-test-defect", "4", "--seed", "0"],
                 ["train", "demo/dataset", "--model", "feature_memory", "--input-size", "64", "--max-train", "12",
                  "-o", "coreset_ratio=0.05", "-q", "--out", "models", "--name", "demo-feature-memory"]):
        res = subprocess.run([*ei, *args], cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"{args[0]} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return DemoLine(root=root, replay=root / "demo" / "replay", models=root / "models", n_frames=n_frames)


def demo_config(rate_fps: float, publishers: list[str]) -> str:
    """The daemon's config.yaml for the demo line inside a container (replay at /data/replay)."""
    pubs = "".join(f"  - {p}\n" for p in publishers)
    return ("line: demo-line\n"
            "cameras:\n"
            "  - id: cam-0\n"
            f"    source: {{type: replay, path: /data/replay, rate_fps: {rate_fps}, loop: false}}\n"
            "models:\n"
            "  - {path: /models/demo-feature-memory.card.json, threads: 1}\n"
            f"publishers:\n{pubs}"
            "saving: {mode: defects, dir: /var/lib/edge-inspector/frames, quota_mb: 50}\n"
            "metrics: {enabled: true, host: 0.0.0.0, port: 9108}\n"
            "state_dir: /var/lib/edge-inspector/state\n")
