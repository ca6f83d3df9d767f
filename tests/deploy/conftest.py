"""Fixtures of the container tests: podman that can run containers, the image (built once per
session with tools/build-image.sh) and a demo line with a fitted model."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.deploy.helpers import ROOT, DemoLine, make_demo_line, podman, podman_problem, run_probe


@pytest.fixture(scope="session")
def podman_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    problem = podman_problem()
    if problem:
        pytest.skip(f"container image test skipped: {problem}")
    env = dict(os.environ)
    if not env.get("CONTAINERS_CONF"):
        conf = tmp_path_factory.mktemp("podman") / "containers.conf"
        conf.write_text("[containers]\ndefault_ulimits = []\n")
        env["CONTAINERS_CONF"] = str(conf)
    problem = run_probe(env, tmp_path_factory.mktemp("probe-rootfs"))
    if problem and os.environ.get("EDGE_INSPECTOR_IMAGE_TEST") == "1":
        pytest.fail(f"EDGE_INSPECTOR_IMAGE_TEST=1 but podman cannot run containers here: {problem}")
    if problem:
        pytest.skip(f"container image test skipped: podman cannot run containers here: {problem}")
    return env


@pytest.fixture(scope="session")
def image(podman_env: dict[str, str]) -> Iterator[str]:
    """Build the runtime image with the shipped script (unique tag, removed afterwards)."""
    prebuilt = os.environ.get("EDGE_INSPECTOR_TEST_IMAGE")
    if prebuilt:
        yield prebuilt
        return
    tag = f"localhost/edge-inspector-test:{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    res = subprocess.run(["bash", "tools/build-image.sh", "--tag", tag], cwd=ROOT, env=podman_env,
                         capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, f"build-image.sh failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    last = res.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"image: {re.escape(tag)} size: \d+ MB build: \d+ s \(podman build \d+ s\)", last), last
    print(f"\n{last} (test wall clock {time.monotonic() - started:.0f} s)")
    try:
        yield tag
    finally:
        podman(podman_env, "rmi", "-f", tag, check=False)


@pytest.fixture(scope="session")
def demo_line(tmp_path_factory: pytest.TempPathFactory) -> DemoLine:
    return make_demo_line(tmp_path_factory.mktemp("line"))
