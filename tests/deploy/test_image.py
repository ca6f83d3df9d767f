"""The container image, built from nothing with tools/build-image.sh and run for real with podman.

One image build per session (minutes on a fresh machine: debootstrap, apt, PyPI; the base tarball
is cached between runs), then the daemon container on the demo replay (generate-demo + a quickly
fitted feature-memory model) with config, models and the replay mounted read-only, a read-only
root file system, the state volume (MQTT spool, counters, JSONL, frames) a host folder, metrics
and ZeroMQ published on loopback, and MQTT to a real Mosquitto on the host:

* a full replay: every frame's verdict reaches the host over MQTT (QoS 1) and in the JSONL volume,
  ZeroMQ delivers every verdict from the moment its subscriber joined, and the container exits 0;
* a running line: the HEALTHCHECK goes healthy, metrics are scraped through the published port,
  the daemon runs as the image's non-root user, and ``podman stop`` (SIGTERM) drains every grabbed
  frame into all three sinks before exit 0;
* the console target (built right after, reusing the build stage) serves its login page as uid 10001.

Skips with the reason where podman cannot run containers (not installed, no root, not Linux, a
probe container fails to start); ``EDGE_INSPECTOR_IMAGE_TEST=0`` skips it on purpose, ``=1`` turns
a failing probe into a failure; ``EDGE_INSPECTOR_TEST_IMAGE=<name>`` tests an
image built before instead of building one (for iterating on the tests). Where podman runs, a
failing build fails the test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import zmq

from tests.deploy.helpers import IMAGE_USER, ROOT, DemoLine, demo_config, podman, until
from tests.fixtures.broker import MOSQUITTO, Mosquitto, MqttCollector, free_port

pytestmark = [pytest.mark.slow, pytest.mark.container]

MQTT_PASSWORD = "container-test-password"


class HostMosquitto(Mosquitto):
    """The test broker, reachable from containers (host.containers.internal): all interfaces, with a password."""

    host = "0.0.0.0"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostMosquitto]:
    if not (Path(MOSQUITTO).exists() or shutil.which(MOSQUITTO)) or not shutil.which("mosquitto_passwd"):
        pytest.skip(f"{MOSQUITTO} and mosquitto_passwd are needed (apt-get install mosquitto)")
    work = tmp_path_factory.mktemp("broker")
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(work / "passwd"), "edge-inspector", MQTT_PASSWORD],
                   check=True, capture_output=True, timeout=30)
    b = HostMosquitto(work, extra_config=["allow_anonymous false", f"password_file {work / 'passwd'}"])
    b.start()
    try:
        yield b
    finally:
        b.stop()


def write_config(line: DemoLine, name: str, *, rate_fps: float, broker_port: int) -> Path:
    """A folder with config.yaml (MQTT to the host broker, ZeroMQ, JSONL) and the MQTT password file."""
    folder = line.root / name
    folder.mkdir()
    (folder / "mqtt-password").write_text(MQTT_PASSWORD)
    (folder / "config.yaml").write_text(demo_config(rate_fps, [
        f"{{type: mqtt, host: host.containers.internal, port: {broker_port}, username: edge-inspector, "
        "password_file: /config/mqtt-password, spool_dir: /var/lib/edge-inspector/mqtt-spool}",
        "{type: zmq, endpoint: 'tcp://0.0.0.0:5556'}",
        "{type: jsonl, path: /var/lib/edge-inspector/verdicts.jsonl}",
    ]))
    return folder


class ZmqSubscriber:
    """A ZeroMQ SUB on the host, connected to the container's published PUB port, collecting verdicts.

    A short handshake timeout: a connection made while podman only reserves the host port (before
    its forwarding is in place) is dropped and retried instead of hanging for the default 30 s.
    """

    def __init__(self, port: int):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.setsockopt(zmq.RCVTIMEO, 200)
        self.sock.setsockopt(zmq.HANDSHAKE_IVL, 500)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 20)
        self.sock.connect(f"tcp://127.0.0.1:{port}")
        self.verdicts: list[dict] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                topic, body = self.sock.recv_multipart()
            except zmq.Again:
                continue
            if topic.endswith(b"/verdict"):
                self.verdicts.append(json.loads(body))

    def close(self, linger_s: float = 2.0) -> list[dict]:
        time.sleep(linger_s)  # the last messages may still be on the wire when the container exits
        self.stop.set()
        self.thread.join(5)
        self.sock.close(0)
        self.ctx.term()
        return self.verdicts


@dataclass
class Container:
    env: dict[str, str]
    name: str
    state: Path
    metrics_port: int
    zmq: ZmqSubscriber
    mqtt: MqttCollector

    def logs(self) -> str:
        res = podman(self.env, "logs", self.name, check=False)
        return res.stdout + res.stderr

    def jsonl(self) -> list[dict]:
        path = self.state / "verdicts.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines() if x.endswith("}")] if path.exists() else []

    def mqtt_frames(self) -> list[int]:
        return [json.loads(m.payload)["frame"] for m in self.mqtt.messages]

    def wait_exit(self, timeout: float) -> int:
        res = podman(self.env, "wait", self.name, timeout=timeout)
        return int(res.stdout.strip().splitlines()[-1])


@pytest.fixture
def run_container(podman_env: dict[str, str], image: str, demo_line: DemoLine, broker: HostMosquitto):
    """Factory: podman run -d the image on the demo line with ``rate_fps``; removed after the test.

    Config, models and replay are read-only mounts, the root file system is read-only, the state is a
    host folder, metrics and ZeroMQ are published on loopback. The MQTT and ZeroMQ subscribers join
    before the container starts.
    """
    made: list[Container] = []

    def run(name: str, rate_fps: float) -> Container:
        conf = write_config(demo_line, name, rate_fps=rate_fps, broker_port=broker.port)
        state = conf / "state"
        state.mkdir()
        state.chmod(0o777)  # the image's user (uid 10001) writes here; on a real host: chown 10001 or :U
        mqtt_sub = MqttCollector("127.0.0.1", broker.port, "edge-inspector/demo-line/+/verdict",
                                 username="edge-inspector", password=MQTT_PASSWORD)
        mqtt_sub.wait_subscribed()
        metrics_port, zmq_port = free_port(), free_port()
        c = Container(podman_env, f"ei-test-{uuid.uuid4().hex[:8]}", state, metrics_port, ZmqSubscriber(zmq_port),
                      mqtt_sub)
        made.append(c)
        podman(podman_env, "run", "-d", "--name", c.name, "--read-only", "--stop-timeout", "70",
               "-v", f"{conf / 'config.yaml'}:/config/config.yaml:ro",
               "-v", f"{conf / 'mqtt-password'}:/config/mqtt-password:ro", "-v", f"{demo_line.models}:/models:ro",
               "-v", f"{demo_line.replay}:/data/replay:ro", "-v", f"{state}:/var/lib/edge-inspector",
               "-p", f"127.0.0.1:{metrics_port}:9108", "-p", f"127.0.0.1:{zmq_port}:5556", image)
        return c

    yield run
    for c in made:
        podman(podman_env, "rm", "-f", "-t", "0", c.name, check=False)
        c.mqtt.close()
        if not c.zmq.stop.is_set():
            c.zmq.close(0)


def assert_zmq_from_join(received: list[dict], last: int) -> None:
    """ZeroMQ PUB is best effort before a subscriber joins (the slow joiner): from then on, every verdict."""
    frames = [v["frame"] for v in received]
    assert frames, "no verdict over ZeroMQ"
    assert frames == list(range(frames[0], last + 1)), f"ZeroMQ lost verdicts after joining: {frames}"
    assert frames[0] <= 3, f"ZeroMQ subscriber joined late, at frame {frames[0]}"


def test_image_config_is_what_the_line_needs(podman_env: dict[str, str], image: str) -> None:
    info = json.loads(podman(podman_env, "image", "inspect", image).stdout)[0]
    cfg = info["Config"]
    assert cfg["User"] == f"{IMAGE_USER}:{IMAGE_USER}"
    assert cfg["StopSignal"] == "SIGTERM"
    check = info.get("Healthcheck") or cfg.get("Healthcheck")  # podman lists it beside Config
    assert check and check["Test"] == ["CMD", "edge-inspector", "health", "--config", "/config/config.yaml"], info
    assert {"9108/tcp", "5556/tcp"} <= set(cfg["ExposedPorts"])
    assert "/var/lib/edge-inspector" in cfg["Volumes"]
    # the runtime path only: no torch, no pip, no console dependencies
    res = podman(podman_env, "run", "--rm", "--network=none", "--entrypoint", "python3", image, "-c",
                 "import importlib.util as u; print([m for m in ('torch', 'pip', 'django') if u.find_spec(m)])")
    assert res.stdout.strip() == "[]", res.stdout + res.stderr


def test_full_replay_every_verdict_reaches_the_host_and_the_container_exits_0(run_container,
                                                                              demo_line: DemoLine) -> None:
    c = run_container("full", rate_fps=20)
    code = c.wait_exit(timeout=300)
    zmq_received = c.zmq.close()
    log = c.logs()
    assert code == 0, log[-4000:]
    assert "all sources finished" in log
    frames = list(range(demo_line.n_frames))
    jsonl = c.jsonl()
    assert sorted(v["frame"] for v in jsonl) == frames, log[-3000:]
    assert sorted(set(c.mqtt_frames())) == frames, f"MQTT got {len(c.mqtt.messages)} of {len(frames)}"
    assert_zmq_from_join(zmq_received, frames[-1])
    assert {v["verdict"] for v in jsonl} <= {"ok", "defect"} and any(v["verdict"] == "defect" for v in jsonl)
    assert all(v["camera"] == "cam-0" and v["line"] == "demo-line" for v in zmq_received)


def test_running_line_healthy_metrics_non_root_and_stop_drains(podman_env: dict[str, str], run_container,
                                                               demo_line: DemoLine) -> None:
    # 40 frames at 2 fps: still replaying (20 s) when the checks below are done and podman stop comes
    c = run_container("live", rate_fps=2)

    def healthy() -> bool:
        return podman(podman_env, "healthcheck", "run", c.name, check=False).returncode == 0

    until(healthy, 90, "the HEALTHCHECK to pass", c.logs)
    state = json.loads(podman(podman_env, "inspect", c.name).stdout)[0]["State"]
    health = state.get("Health") or state.get("Healthcheck")
    assert health["Status"] == "healthy", health
    assert health["Log"][-1]["Output"].startswith("healthy: models demo-feature-memory"), health["Log"][-1]

    text = urllib.request.urlopen(f"http://127.0.0.1:{c.metrics_port}/metrics", timeout=5).read().decode()
    assert 'edge_inspector_model_info{backend="onnxruntime",name="demo-feature-memory"' in text
    assert re.search(r'^edge_inspector_frames_total\{camera="cam-0"\} [1-9]', text, re.M), text[:2000]
    assert re.search(r"^edge_inspector_broker_connected 1", text, re.M), "MQTT not connected to the host broker"

    uid = podman(podman_env, "exec", c.name, "sh", "-c", "id -u; awk '/^Uid:/ {print $2}' /proc/1/status")
    assert uid.stdout.split() == [IMAGE_USER, IMAGE_USER], uid.stdout
    pid1 = podman(podman_env, "exec", c.name, "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline").stdout
    assert "edge-inspector run" in pid1 and not pid1.startswith("/bin/sh"), f"PID 1 must be the daemon: {pid1}"
    assert {p.stat().st_uid for p in c.state.iterdir()} == {int(IMAGE_USER)}, "state not written by the image's user"

    until(lambda: len(c.jsonl()) >= 3, 60, "verdicts", c.logs)
    published_before = len(c.jsonl())
    podman(podman_env, "stop", "-t", "70", c.name, timeout=120)
    code = c.wait_exit(timeout=60)
    zmq_received = c.zmq.close()
    log = c.logs()
    assert code == 0, log[-4000:]
    assert "stop requested: draining in-flight frames" in log
    assert "stopped:" in podman(podman_env, "logs", c.name).stdout, "the log must go to stdout"
    stopped = re.search(r"stopped: (\d+) frames grabbed, (\d+) dropped, (\d+) published", log)
    assert stopped, log[-3000:]
    grabbed, dropped, published = map(int, stopped.groups())
    assert grabbed < demo_line.n_frames, "podman stop came after the replay ended: no drain was tested"
    assert grabbed >= published_before and dropped == 0 and published == grabbed
    assert [v["frame"] for v in c.jsonl()] == list(range(grabbed))
    assert sorted(set(c.mqtt_frames())) == list(range(grabbed)), f"MQTT got {len(c.mqtt.messages)}/{grabbed}"
    assert_zmq_from_join(zmq_received, grabbed - 1)


@pytest.fixture(scope="module")
def console_image(podman_env: dict[str, str], image: str) -> Iterator[str]:
    """The console target, built right after the runtime image (it reuses the build stage)."""
    prebuilt = os.environ.get("EDGE_INSPECTOR_TEST_CONSOLE_IMAGE")
    if prebuilt:
        yield prebuilt
        return
    tag = f"localhost/edge-inspector-console-test:{uuid.uuid4().hex[:8]}"
    res = subprocess.run(["bash", "tools/build-image.sh", "--target", "console", "--tag", tag], cwd=ROOT,
                         env=podman_env, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, f"build-image.sh --target console failed:\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    print(f"\n{res.stdout.strip().splitlines()[-1]}")
    try:
        yield tag
    finally:
        podman(podman_env, "rmi", "-f", tag, check=False)


def test_console_image_serves_the_login_page_as_non_root(podman_env: dict[str, str], console_image: str,
                                                          tmp_path: Path) -> None:
    port = free_port()
    name = f"ei-console-{uuid.uuid4().hex[:8]}"
    podman(podman_env, "run", "-d", "--name", name, "--read-only", "-v", f"{tmp_path}:/models",
           "-v", "/var/lib/edge-inspector", "-p", f"127.0.0.1:{port}:8000", console_image)
    try:
        def login_page() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3) as resp:
                    return "/accounts/login/" in resp.url and resp.status == 200
            except OSError:
                return False

        until(login_page, 90, "the console's login page",
              lambda: podman(podman_env, "logs", name, check=False).stdout)
        uid = podman(podman_env, "exec", name, "id", "-u").stdout.strip()
        assert uid == IMAGE_USER
    finally:
        podman(podman_env, "rm", "-f", "-t", "0", "-v", name, check=False)
