"""Prometheus metrics of the daemon, named as in DESIGN.md (all prefixed ``edge_inspector_``).

Why a class owning its own ``CollectorRegistry`` instead of module-level metrics on the global
registry: tests (and a reload that rebuilds the pipeline) can create several independent
``Metrics`` objects without "Duplicated timeseries" errors, and what a scrape shows is exactly what
this object registered.

Why custom histogram buckets: the client's default buckets start at 5 ms, but preprocessing and
small-model inference stages take tens to hundreds of microseconds; without sub-millisecond
buckets every observation lands in the first bucket and p50/p99 are meaningless.

Why loopback by default: ``prometheus_client.start_http_server`` binds 0.0.0.0, which exposes
line/camera names and model versions to the whole plant network; exposing it is an explicit
choice in the configuration.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import start_http_server

PREFIX = "edge_inspector"

# The ``*_created`` companion series (one per counter/histogram child) carry nothing an operator
# graphs or alerts on, and doubled the exposition; Prometheus detects counter resets itself.
disable_created_metrics()

#: Label values initialised to 0 for every camera/sink, so that ``rate(...)``/``increase(...)``
#: alerts and the dashboard's "Errors"/"Publish failures" panels have a series on a healthy line
#: (a counter that does not exist yet cannot be evaluated, and Grafana shows "No data").
VERDICTS = ("ok", "defect", "error")
ERROR_REASONS = ("source", "frame", "model")
DROP_REASONS = ("queue_full",)

#: Latency buckets in seconds: 100 us ... 10 s, dense below 100 ms where the stages live.
STAGE_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def _build_labels() -> dict[str, str]:
    import platform

    from . import __version__

    try:
        from importlib.metadata import version

        ort = version("onnxruntime")
    except Exception:  # noqa: BLE001 - a build without onnxruntime (or an odd wheel name) still starts
        ort = "none"
    return {"version": __version__, "python": platform.python_version(), "onnxruntime": ort}


class OpsMetrics:
    """The operations metrics, registered once per ``Metrics`` registry (reloads reuse them)."""

    def __init__(self, registry: Any):
        self.drift_psi = Gauge(f"{PREFIX}_drift_psi", "PSI of recent OK scores against the drift reference.",
                               ["camera"], registry=registry)
        self.drift_shift = Gauge(f"{PREFIX}_drift_median_shift",
                                 "Median OK score of the window minus the reference's (normalised units).",
                                 ["camera"], registry=registry)
        self.drift_alarm = Gauge(f"{PREFIX}_drift_alarm", "1 while the camera's drift alarm is raised.",
                                 ["camera"], registry=registry)
        self.shadow_frames = Counter(
            f"{PREFIX}_shadow_frames_total",
            "Frames per shadow model by result: agree, shadow_only_defect, primary_only_defect, skipped, error.",
            ["model", "result"], registry=registry)
        self.shadow_agreement = Gauge(f"{PREFIX}_shadow_agreement_ratio",
                                      "Share of compared frames where the shadow agreed with the verdict.",
                                      ["model"], registry=registry)
        self.review_frames = Counter(f"{PREFIX}_review_frames_total", "Frames captured for review, by reason.",
                                     ["reason"], registry=registry)
        self.review_skipped = Counter(f"{PREFIX}_review_skipped_total",
                                      "Frames not captured for review because the quota was reached.",
                                      registry=registry)


class Metrics:
    """All metrics of one daemon instance, registered in a private registry.

    Attribute names match the DESIGN.md metric names without the prefix, e.g.
    ``metrics.frames_total.labels(camera="cam1").inc()``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.frames_total = Counter(
            f"{PREFIX}_frames_total", "Frames grabbed from a source.", ["camera"], registry=r
        )
        self.verdicts_total = Counter(
            f"{PREFIX}_verdicts_total", "Verdicts decided, by result (ok/defect/error).", ["camera", "verdict"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            f"{PREFIX}_stage_seconds",
            "Time spent in a pipeline stage (grab, preprocess, infer, decide, save, publish) and per frame from "
            "capture to published (total).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth", "Items waiting in a bounded pipeline queue.", ["queue"], registry=r
        )
        self.frames_dropped_total = Counter(
            f"{PREFIX}_frames_dropped_total", "Frames dropped, by reason (queue_full, decode, ...).",
            ["camera", "reason"], registry=r,
        )
        self.frames_not_saved_total = Counter(
            f"{PREFIX}_frames_not_saved_total", "Frames that saving wanted but did not save, by reason (disk_floor: "
            "below saving.min_free_mb; error: a write failed).", ["reason"], registry=r,
        )
        self.folder_skipped_total = Counter(
            f"{PREFIX}_folder_skipped_total", "Entries of a watched folder skipped (counted once each), by reason "
            "(link_outside, link_loop, permission, dangling_link, not_a_file, link_replaced, unreadable).",
            ["camera", "reason"], registry=r,
        )
        self.publish_failures_total = Counter(
            f"{PREFIX}_publish_failures_total",
            "Messages a sink failed to publish or dropped (including MQTT spool overflow).",
            ["sink"], registry=r,
        )
        self.spool_messages = Gauge(
            f"{PREFIX}_spool_messages", "Verdicts in the MQTT disk spool not yet acknowledged by the broker.",
            registry=r,
        )
        self.spool_dropped_total = Counter(
            f"{PREFIX}_spool_dropped_total", "Verdicts discarded because the MQTT spool was full, by policy.",
            ["policy"], registry=r,
        )
        self.broker_connected = Gauge(
            f"{PREFIX}_broker_connected", "1 while the MQTT broker accepted our connection (CONNACK success).",
            registry=r,
        )
        self.broker_connect_failures_total = Counter(
            f"{PREFIX}_broker_connect_failures_total",
            "Failed connection attempts to the MQTT broker, by client (mqtt, sparkplug, flags) and reason "
            "(tls_unknown_ca, tls_hostname_mismatch, tls_expired, tls_verify_failed, tls_handshake, dns, refused, "
            "timeout, bad_host, network).",
            ["client", "reason"], registry=r,
        )
        self.model_info = Gauge(
            f"{PREFIX}_model_info", "Loaded model (value is always 1).", ["name", "version", "backend"], registry=r
        )
        self.source_up = Gauge(
            f"{PREFIX}_source_up", "1 while a frame source is open and delivering.", ["camera"], registry=r
        )
        self.errors_total = Counter(
            f"{PREFIX}_errors_total", "Frames that ended in an error verdict or a stage exception, by reason.",
            ["camera", "reason"], registry=r,
        )
        self.publish_seconds = Histogram(
            f"{PREFIX}_publish_seconds", "Time a publisher's publish() call took (handing over, not delivery).",
            ["sink"], buckets=STAGE_BUCKETS, registry=r,
        )
        self.build_info = Gauge(
            f"{PREFIX}_build_info", "Version of the running daemon and its runtime (value is always 1).",
            ["version", "python", "onnxruntime"], registry=r,
        )
        self.build_info.labels(**_build_labels()).set(1)
        # process_resident_memory_bytes, process_cpu_seconds_total, process_open_fds...: what a
        # months-long daemon is watched for (bench/soak.py measures the same).
        ProcessCollector(registry=r)
        self.ops = OpsMetrics(r)  # drift alarm, shadow agreement, review capture
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.host: str | None = None
        self.port: int | None = None

    def set_model(self, name: str, version: str, backend: str) -> None:
        """Record a loaded model; call once per model after (re)loading."""
        self.model_info.labels(name=name, version=version, backend=backend).set(1)

    def init_series(self, cameras: list[str], sinks: list[str]) -> None:
        """Create the known label sets at 0 (see :data:`VERDICTS`); idempotent, call after (re)loading."""
        for camera in cameras:
            self.frames_total.labels(camera=camera)
            for verdict in VERDICTS:
                self.verdicts_total.labels(camera=camera, verdict=verdict)
            for reason in ERROR_REASONS:
                self.errors_total.labels(camera=camera, reason=reason)
            for reason in DROP_REASONS:
                self.frames_dropped_total.labels(camera=camera, reason=reason)
        for sink in sinks:
            self.publish_failures_total.labels(sink=sink)

    def clear_models(self) -> None:
        """Forget the model_info series, e.g. before a reload registers the new set."""
        self.model_info.clear()

    def render(self) -> bytes:
        """The exposition text a scrape would return (useful for tests and `check-config`)."""
        return generate_latest(self.registry)

    def serve(self, host: str = "127.0.0.1", port: int = 9108) -> Any:
        """Start the HTTP exporter in a daemon thread; port 0 picks a free one (see ``self.port``).

        Returns the server object (a ``wsgiref`` server); ``shutdown()`` stops it.
        Raises ``OSError`` naming host:port when the address is taken.
        """
        if self._server is not None:
            raise RuntimeError(f"metrics exporter already serving on {self.host}:{self.port}")
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise OSError(exc.errno, f"metrics exporter cannot bind {host}:{port}: {exc.strerror}") from exc
        self._server, self._thread = server, thread
        self.host = host
        self.port = int(server.server_address[1])
        return server

    def shutdown(self) -> None:
        """Stop the HTTP exporter (no-op when not serving)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
