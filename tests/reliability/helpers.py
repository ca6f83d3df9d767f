"""Shared helpers of the fault-injection tests: the real daemon as a subprocess, plus the faults.

Why a subprocess and not the in-process ``Daemon``: signals, exit codes, a SIGKILL that leaves the
spool behind, the listening socket and the captured stderr are properties of the *process*; an
in-process test cannot show them. The generic process helpers come from ``tests/runtime/test_daemon.py``
(one definition of how we start and watch the daemon).
"""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from tests.runtime.test_daemon import DaemonProc, read_jsonl, scrape, wait_until

__all__ = ["DaemonProc", "read_jsonl", "scrape", "wait_until", "write_cfg", "spool_count", "MjpegServer",
           "NotifySocket", "metric"]


def write_cfg(path: Path, body: str) -> Path:
    """Write a config.yaml (``body`` is YAML text); returns its path."""
    path.write_text(body)
    return path


def metric(port: int, name: str, default: float = 0.0) -> float:
    """One sample of the daemon's /metrics scraped over HTTP (``default`` when absent)."""
    return scrape(port).get(name, default)


def spool_count(spool_dir: Path) -> int:
    """Rows in the MQTT spool (read through SQLite like any other reader of the WAL database)."""
    path = Path(spool_dir) / "spool.sqlite3"
    if not path.exists():
        return 0
    con = sqlite3.connect(path, timeout=5)
    try:
        return int(con.execute("select count(*) from spool").fetchone()[0])
    finally:
        con.close()


class _MjpegHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep the test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        server: MjpegServer = self.server.owner  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        server.connections.append(self.connection)
        try:
            while not server.stopped.is_set():
                part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(server.jpeg)
                self.wfile.write(part + server.jpeg + b"\r\n")
                time.sleep(1 / server.fps)
        except OSError:
            pass


class MjpegServer:
    """An MJPEG-over-HTTP camera on loopback (what many IP cameras serve), that a test can kill.

    ``kill()`` closes the listening socket and every open stream (the camera lost power);
    ``start()`` serves again on the same port (it came back).
    """

    def __init__(self, fps: float = 20.0, port: int = 0) -> None:
        ok, jpg = cv2.imencode(".jpg", np.full((64, 64, 3), 25, np.uint8))
        assert ok
        self.jpeg, self.fps, self.port = jpg.tobytes(), fps, port
        self.httpd: ThreadingHTTPServer | None = None
        self.connections: list[socket.socket] = []
        self.stopped = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        self.stopped.clear()
        ThreadingHTTPServer.allow_reuse_address = True
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _MjpegHandler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def kill(self) -> None:
        self.stopped.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
                conn.close()
            except OSError:
                pass
        self.connections.clear()


class NotifySocket:
    """A fake systemd NOTIFY_SOCKET: a real AF_UNIX datagram socket collecting messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []

    def pump(self, seconds: float) -> list[tuple[float, str]]:
        """Collect for ``seconds``; returns what arrived in that window as (monotonic time, text)."""
        end, got = time.monotonic() + seconds, []
        while time.monotonic() < end:
            try:
                got.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue
        self.messages += got
        return got

    def close(self) -> None:
        self.sock.close()


def build_hanging_detector(folder: Path, size: int = 32, iterations_per_unit: float = 1e10) -> Path:
    """A real ONNX detector whose inference never ends on a real frame, to wedge the infer stage.

    ``pred_score`` comes out of an ONNX ``Loop`` whose trip count is ``mean(image) * 1e10``: the
    daemon's start-up test inference on a black (all-zero) tensor runs 0 iterations and passes, a
    camera frame (mean ~0.1) runs ~1e9 iterations, i.e. ONNX Runtime busy for hours. That is what a
    wedged accelerator or driver looks like from the pipeline: a run_batch call that does not return.
    Test-only: nothing in the package builds or ships such a model.
    """
    import onnx
    from onnx import TensorProto, helper

    from edge_inspector.card import InputSpec, ModelCard, ScoreNormalization, card_path_for, sha256_file

    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["v_in"], ["v_out"])],
        "spin",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_in", TensorProto.FLOAT, ["N"])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("v_out", TensorProto.FLOAT, ["N"])],
    )
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[0, 1, 2, 3], keepdims=0),
        helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
        helper.make_node("Cast", ["scaled"], ["trips"], to=TensorProto.INT64),
        helper.make_node("ReduceMean", ["image"], ["score0"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Loop", ["trips", "true", "score0"], ["pred_score"], body=body),
        helper.make_node("ReduceMean", ["image"], ["anomaly_map"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "hanging_detector",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("pred_score", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("anomaly_map", TensorProto.FLOAT, ["N", size, size])],
        initializer=[helper.make_tensor("scale", TensorProto.FLOAT, [], [iterations_per_unit]),
                     helper.make_tensor("true", TensorProto.BOOL, [], [True])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx_path = folder / "hanging.onnx"
    onnx.save(model, str(onnx_path))
    card = ModelCard(
        name="hanging", version="1", kind="feature_memory", model_file=onnx_path.name,
        model_sha256=sha256_file(onnx_path),
        input=InputSpec(height=size, width=size, mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0]),
        outputs={"pred_score": "mean brightness after a long Loop", "anomaly_map": "brightness"},
        normalization=ScoreNormalization(threshold=0.3, min=0.0, max=1.0, pixel_threshold=0.5, pixel_min=0.0,
                                         pixel_max=1.0, method="fixed (test model)"),
    )
    return card.save(card_path_for(onnx_path))
