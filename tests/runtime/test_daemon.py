"""The REAL daemon as a subprocess: ZeroMQ SUB, JSONL file, MQTT (Mosquitto), metrics over HTTP,
signals (SIGTERM drain, SIGHUP reload) and the systemd notify protocol."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
import zmq

from edge_inspector.messages import Verdict
from tests.fixtures.broker import free_port
from tests.fixtures.models import write_frames

ROOT = Path(__file__).resolve().parents[2]


class DaemonProc:
    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None):
        self.log = cwd / "daemon.log"
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
        self.proc = subprocess.Popen([sys.executable, "-m", "edge_inspector", *args], cwd=cwd, env=full_env,
                                     stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"daemon did not exit within {timeout} s; log:\n{self.output()[-3000:]}") from None

    def signal(self, sig: int) -> None:
        assert self.proc.poll() is None, f"daemon exited early ({self.proc.returncode}):\n{self.output()[-3000:]}"
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def wait_until(cond, timeout: float = 20.0, what: str = "condition", proc: DaemonProc | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"daemon exited ({proc.proc.returncode}) before {what}:\n{proc.output()[-3000:]}")
        if time.monotonic() > deadline:
            log = proc.output()[-3000:] if proc else ""
            raise AssertionError(f"timed out waiting for {what}\n{log}")
        time.sleep(0.05)


def write_config(path: Path, *, camera: str, models: list[Path], publishers: str, metrics_port: int = 0,
                 extra: str = "", line: str = "line-1") -> Path:
    model_lines = "".join(f"  - path: {m}\n" for m in models)
    path.write_text(
        f"line: {line}\ncameras:\n  - id: cam-0\n    source: {camera}\nmodels:\n{model_lines}"
        f"publishers:\n{textwrap.indent(textwrap.dedent(publishers), '  ')}"
        f"metrics: {{enabled: {'true' if metrics_port else 'false'}, port: {metrics_port}}}\n{extra}"
    )
    return path


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_run_folder_zmq_jsonl_metrics_notify_and_sigterm(tmp_path, detector_card):
    """`run` with a watched folder: READY=1 + WATCHDOG=1 over NOTIFY_SOCKET, one verdict per frame over
    ZeroMQ and JSONL, metrics scraped over HTTP match, SIGTERM -> STOPPING=1 and exit 0."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    zport, mport = free_port(), free_port()
    cfg = write_config(
        tmp_path / "config.yaml", camera=f"{{type: folder, path: {inbox}, settle_ms: 50, poll_ms: 20}}",
        models=[detector_card], metrics_port=mport,
        publishers=f"""\
            - {{type: zmq, endpoint: "tcp://127.0.0.1:{zport}"}}
            - {{type: jsonl, path: {tmp_path}/verdicts.jsonl}}
            """)
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(20)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"edge-inspector/line-1/cam-0/verdict")
    sub.setsockopt(zmq.RCVTIMEO, 10000)
    sub.connect(f"tcp://127.0.0.1:{zport}")
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path,
                        env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"})
    try:
        messages = []
        while "READY=1" not in messages:
            messages.append(notify.recv(4096).decode().split("\n")[0])
        assert "WATCHDOG=1" in notify.recv(4096).decode()  # idle with nothing pending: healthy
        time.sleep(1.0)  # let the SUB finish its handshake (ZeroMQ drops messages for late joiners)
        write_frames(tmp_path / "staging", n=6, defect_every=3)
        for p in sorted((tmp_path / "staging").glob("*.png")):
            shutil.copy(p, inbox / p.name)
        received = [sub.recv_multipart() for _ in range(6)]
        topics = {t.decode() for t, _ in received}
        assert topics == {"edge-inspector/line-1/cam-0/verdict"}
        zmq_verdicts = [Verdict.model_validate_json(body) for _, body in received]
        assert sorted(v.frame for v in zmq_verdicts) == list(range(6))
        by_file = {Path(v.source).name: v.verdict for v in zmq_verdicts}
        assert by_file["frame_00002.png"] == by_file["frame_00005.png"] == "defect"
        assert by_file["frame_00000.png"] == "ok"
        wait_until(lambda: len(read_jsonl(tmp_path / "verdicts.jsonl")) == 6, what="6 JSONL lines", proc=daemon)
        m = scrape(mport)
        assert m['edge_inspector_frames_total{camera="cam-0"}'] == 6
        assert m['edge_inspector_verdicts_total{camera="cam-0",verdict="defect"}'] == 2
        assert m['edge_inspector_verdicts_total{camera="cam-0",verdict="ok"}'] == 4
        assert m['edge_inspector_stage_seconds_count{stage="infer"}'] >= 1
        assert m['edge_inspector_source_up{camera="cam-0"}'] == 1
        assert m['edge_inspector_model_info{backend="onnxruntime",name="tiny-detector",version="1"}'] == 1
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.output()[-3000:]
        rest = []
        notify.settimeout(1)
        try:
            while True:
                rest.append(notify.recv(4096).decode())
        except TimeoutError:
            pass
        assert any(r.startswith("STOPPING=1") for r in rest)
    finally:
        daemon.kill()
        sub.close(0)
        ctx.term()
        notify.close()


def test_replay_command_publishes_every_frame_over_mqtt_and_jsonl(tmp_path, detector_card, classifier_card,
                                                                  mosquitto, mqtt_subscriber):
    frames = write_frames(tmp_path / "rec", n=12, defect_every=4)
    (frames / "frame_00005.png").write_bytes(b"not an image")
    sub = mqtt_subscriber("edge-inspector/daemon-test/+/verdict")  # a line no other test publishes on
    cfg = write_config(
        tmp_path / "config.yaml", camera="{type: camera, device: 0}", models=[detector_card, classifier_card],
        publishers=f"""\
            - {{type: mqtt, host: 127.0.0.1, port: {mosquitto.port}, spool_dir: {tmp_path}/spool}}
            - {{type: jsonl, path: {tmp_path}/verdicts.jsonl}}
            """,
        extra="fusion: {rule: classifier_then_detector}\nsaving: {mode: defects, dir: saved}\n", line="daemon-test")
    daemon = DaemonProc(["replay", str(frames), "--config", str(cfg)], tmp_path)
    assert daemon.wait(60) == 0, daemon.output()[-3000:]
    out = read_jsonl(tmp_path / "verdicts.jsonl")
    assert [v["frame"] for v in out] == list(range(12))
    assert [v["verdict"] for v in out].count("defect") == 3
    assert out[5]["verdict"] == "error" and "frame_00005.png" in out[5]["error"]
    defect = out[3]
    assert defect["verdict"] == "defect" and defect["defect_type"] in ("red_spot", "blue_spot")
    assert defect["regions"][0] == {"x": 12, "y": 12, "w": 40, "h": 40, "score": 1.0}
    assert (tmp_path / defect["image"]).is_file()  # path relative to saving.dir's parent
    assert (tmp_path / defect["image"].replace(".jpg", "_overlay.jpg")).is_file()
    got = sub.wait_for(12, timeout=20)
    assert {m.topic for m in got} == {"edge-inspector/daemon-test/cam-0/verdict"}
    assert all(m.qos == 1 for m in got)
    mqtt_verdicts = sorted((Verdict.model_validate_json(m.payload) for m in got), key=lambda v: v.frame)
    assert [v.frame for v in mqtt_verdicts] == list(range(12))
    assert [v.verdict for v in mqtt_verdicts] == [v["verdict"] for v in out]


def test_sigterm_mid_replay_publishes_everything_grabbed(tmp_path, detector_card):
    frames = write_frames(tmp_path / "rec", n=300, defect_every=5, size=96)
    cfg = write_config(tmp_path / "config.yaml", camera=f"{{type: replay, path: {frames}}}",
                       models=[detector_card], publishers=f"- {{type: jsonl, path: {tmp_path}/verdicts.jsonl}}\n",
                       extra="inference: {batch_max: 4}\n")
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    try:
        wait_until(lambda: len(read_jsonl(tmp_path / "verdicts.jsonl")) >= 5, what="first verdicts", proc=daemon)
        published_before = len(read_jsonl(tmp_path / "verdicts.jsonl"))
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.output()[-3000:]
    finally:
        daemon.kill()
    out = read_jsonl(tmp_path / "verdicts.jsonl")
    log = daemon.output()
    line = next(ln for ln in log.splitlines() if "stopped:" in ln)
    grabbed = int(line.split("stopped: ")[1].split(" frames")[0])
    assert grabbed < 300, "SIGTERM came too late to test a drain"
    assert grabbed > published_before, "no frame was in flight at SIGTERM"
    assert len(out) == grabbed and [v["frame"] for v in out] == list(range(grabbed))
    assert f"{grabbed} published" in line and "0 dropped" in line


def test_sighup_bad_config_keeps_running_good_config_switches_without_loss(tmp_path, detector_card, tiny_models):
    frames = write_frames(tmp_path / "rec", n=8)
    camera = f"{{type: replay, path: {frames}, rate_fps: 40, loop: true}}"
    publishers = f"- {{type: jsonl, path: {tmp_path}/verdicts.jsonl}}\n"
    cfg = write_config(tmp_path / "config.yaml", camera=camera, models=[detector_card], publishers=publishers)
    good = cfg.read_text()
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(20)
    pid_file = tmp_path / "daemon.pid"
    daemon = DaemonProc(["run", "--config", str(cfg), "--pid-file", str(pid_file)], tmp_path,
                        env={"NOTIFY_SOCKET": str(notify_path)})
    jsonl = tmp_path / "verdicts.jsonl"

    def count() -> int:
        return len(read_jsonl(jsonl))

    def hup_and_wait(marker: str) -> None:
        n = daemon.output().count(marker)
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: daemon.output().count(marker) > n, what=marker, proc=daemon)

    try:
        assert notify.recv(4096).decode().startswith("READY=1")
        wait_until(lambda: count() >= 10, what="10 verdicts", proc=daemon)
        # 1) invalid field, 2) valid fields but a model whose file is missing: both refused, old set runs on
        cfg.write_text(good + "fusion: {rule: majority}\n")
        hup_and_wait("reload refused")
        assert notify.recv(4096).decode().startswith("RELOADING=1")
        assert notify.recv(4096).decode().startswith("READY=1")
        cfg.write_text(good.replace(str(detector_card), str(tiny_models / "gone.card.json")))
        hup_and_wait("reload refused")
        n = count()
        wait_until(lambda: count() >= n + 10, what="verdicts after refused reloads", proc=daemon)
        assert {v["models"][0]["name"] for v in read_jsonl(jsonl)} == {"tiny-detector"}
        # 3) a good config with another model, signalled through the pid file as the console does it
        cfg.write_text(good.replace(str(detector_card), str(tiny_models / "tiny-detector-b.card.json")))
        assert int(pid_file.read_text()) == daemon.proc.pid
        os.kill(int(pid_file.read_text()), signal.SIGHUP)
        wait_until(lambda: "reloaded" in daemon.output(), what="reloaded", proc=daemon)
        wait_until(lambda: read_jsonl(jsonl)[-1]["models"][0]["name"] == "tiny-detector-b", what="new model",
                   proc=daemon)
        n = count()
        wait_until(lambda: count() >= n + 5, what="verdicts after reload", proc=daemon)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.output()[-3000:]
    finally:
        daemon.kill()
        notify.close()
    assert not pid_file.exists()
    out = read_jsonl(jsonl)
    assert [v["frame"] for v in out] == list(range(len(out)))  # no frame lost or repeated across reloads
    names = [v["models"][0]["name"] for v in out]
    switch = names.index("tiny-detector-b")
    assert set(names[:switch]) == {"tiny-detector"} and set(names[switch:]) == {"tiny-detector-b"}
    log = daemon.output()
    assert "fusion.rule" in log and "gone.card.json" in log  # each refusal says why


def test_sighup_changing_restart_only_settings_warns_and_says_so(tmp_path, detector_card):
    """inference.queue_size and state_dir are read once, when the pipeline is built: a SIGHUP that changes
    them must say that they wait for a restart (it used to log "reloaded" and change nothing), while the
    settings a reload does apply (here saving.mode) take effect."""
    frames = write_frames(tmp_path / "rec", n=6)
    camera = f"{{type: replay, path: {frames}, rate_fps: 40, loop: true}}"
    publishers = f"- {{type: jsonl, path: {tmp_path}/verdicts.jsonl}}\n"
    cfg = write_config(tmp_path / "config.yaml", camera=camera, models=[detector_card], publishers=publishers,
                       extra=f"state_dir: {tmp_path / 'state-a'}\n")
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    jsonl = tmp_path / "verdicts.jsonl"
    try:
        wait_until(lambda: len(read_jsonl(jsonl)) >= 5, what="5 verdicts", proc=daemon)
        cfg.write_text(cfg.read_text().replace("state-a", "state-b")
                       + "inference: {queue_size: 7}\nsaving: {mode: all, dir: " + str(tmp_path / "frames") + "}\n")
        daemon.signal(signal.SIGHUP)
        wait_until(lambda: "reloaded" in daemon.output(), what="reloaded", proc=daemon)
        wait_until(lambda: any((tmp_path / "frames").rglob("*.jpg")), what="saving applied by the reload",
                   proc=daemon)
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0, daemon.output()[-3000:]
    finally:
        daemon.kill()
    log = daemon.output()
    warned = [line for line in log.splitlines() if "WARNING" in line and "restart" in line]
    assert any("inference.queue_size" in line for line in warned), log[-3000:]
    assert any("state_dir" in line for line in warned), log[-3000:]
    assert not any("saving" in line for line in warned), warned  # a reload applies it: no warning
    reloaded = next(line for line in log.splitlines() if "reloaded" in line)
    assert "restart" in reloaded and "inference.queue_size" in reloaded, reloaded


def test_start_failure_is_a_clear_error_and_exit_1(tmp_path, detector_card):
    cfg = write_config(tmp_path / "config.yaml", camera="{type: replay, path: missing-folder}",
                       models=[detector_card], publishers="[]\n")
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    assert daemon.wait() == 1
    assert "cannot start" in daemon.output() and "missing-folder" in daemon.output()
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    replay = DaemonProc(["replay", str(tmp_path / "empty"), "--config", str(cfg)], tmp_path)
    assert replay.wait() == 1  # fails fast instead of retrying forever
    assert "holds no file matching" in replay.output()


@pytest.mark.parametrize("cmd", [["run", "--help"], ["replay", "--help"], ["check-config", "--help"]])
def test_help_texts(cmd):
    res = subprocess.run([sys.executable, "-m", "edge_inspector", *cmd], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=30)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("usage: edge-inspector") and len(res.stdout) > 400  # a real description


def test_in_process_reload_restarts_only_changed_cameras(tmp_path, detector_card, keep_log_level):
    """Reload with camera b changed and c added: a keeps its grabber thread, b and c start anew."""
    import threading

    from edge_inspector.runtime.daemon import Daemon

    rec = write_frames(tmp_path / "rec", n=4)
    cams = {
        "a": f"{{id: a, source: {{type: replay, path: {rec}, rate_fps: 20, loop: true}}}}",
        "b": f"{{id: b, source: {{type: replay, path: {rec}, rate_fps: 20, loop: true}}}}",
    }

    def write(cameras: dict[str, str]) -> Path:
        lines = "".join(f"  - {c}\n" for c in cameras.values())
        path = tmp_path / "config.yaml"
        path.write_text(f"line: l\ncameras:\n{lines}models:\n  - path: {detector_card}\n"
                        f"publishers:\n  - {{type: jsonl, path: {tmp_path}/v.jsonl}}\nmetrics: {{enabled: false}}\n")
        return path

    daemon = Daemon(write(cams))
    daemon.start()
    runner = threading.Thread(target=lambda: setattr(daemon, "code", daemon.run()))
    runner.start()
    try:
        lanes = dict(daemon.pipeline.lanes)
        cams["b"] = cams["b"].replace("rate_fps: 20", "rate_fps: 25")
        cams["c"] = f"{{id: c, source: {{type: replay, path: {rec}, rate_fps: 20, loop: true}}}}"
        write(cams)
        daemon.reload_requested = True
        daemon.wake.set()
        wait_until(lambda: set(daemon.pipeline.lanes) == {"a", "b", "c"} and daemon.generation_number == 2,
                   what="reload")
        assert daemon.pipeline.lanes["a"].grabber is lanes["a"].grabber  # unchanged camera kept running
        assert daemon.pipeline.lanes["b"].grabber is not lanes["b"].grabber
        assert not lanes["b"].grabber.is_alive()
        wait_until(lambda: any(v["camera"] == "c" for v in read_jsonl(tmp_path / "v.jsonl")), what="camera c")
    finally:
        daemon.stop_requested = True
        daemon.wake.set()
        runner.join(20)
    assert daemon.code == 0
    out = read_jsonl(tmp_path / "v.jsonl")
    for cam in ("a", "c"):  # a never restarted, c started once: contiguous numbering
        seqs = [v["frame"] for v in out if v["camera"] == cam]
        assert seqs == list(range(len(seqs))), cam


@pytest.fixture
def keep_log_level():
    """The daemon applies logging.level to the 'edge_inspector' logger; undo it for other tests."""
    import logging

    logger = logging.getLogger("edge_inspector")
    level = logger.level
    yield
    logger.setLevel(level)


def test_replay_override_takes_the_named_camera_settings(tmp_path, detector_card):
    from edge_inspector.config import load_config
    from edge_inspector.runtime.daemon import replay_override

    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(f"line: l\ncameras:\n  - {{id: top, source: {{type: camera, device: 0}}}}\n"
                        f"  - {{id: side, source: {{type: camera, device: 1}}, roi: [1, 2, 30, 40]}}\n"
                        f"models: [{{path: {detector_card}}}]\n")
    cfg = replay_override(tmp_path / "rec", rate_fps=5, camera="side")(load_config(cfg_path))
    assert [c.id for c in cfg.cameras] == ["side"] and cfg.cameras[0].roi == [1, 2, 30, 40]
    src = cfg.cameras[0].source
    assert src.type == "replay" and src.rate_fps == 5 and src.path == (tmp_path / "rec").resolve()
    assert cfg.cameras[0].policy == "block"
    from edge_inspector.config import ConfigError

    with pytest.raises(ConfigError, match="'front' is not in the configuration"):
        replay_override(tmp_path, camera="front")(load_config(cfg_path))
