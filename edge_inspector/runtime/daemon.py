"""The daemon: builds the pipeline from the configuration and runs its lifecycle.

* start: metrics exporter, models, publishers, sources; then ``READY=1``.
* SIGTERM/SIGINT: ``STOPPING=1``, stop the sources, drain every frame already grabbed through
  decide and publish, close the publishers (they flush), exit 0.
* SIGHUP: ``RELOADING=1``; load and validate the new file *and* its models and publishers first; if
  anything is wrong, log every problem and keep the old set running (OpenVINO Model Server's rule);
  otherwise swap models/fusion/saving/publishers between two batches, restart only cameras whose
  configuration changed; then ``READY=1``.
* watchdog: ``WATCHDOG=1`` only while every stage thread beat recently, i.e. each made progress or
  waited idle on an empty queue. A stage stuck with frames pending stops the pings, and systemd
  restarts us.

Why explicit construction in a few functions instead of an app object wired by ordered init calls
(Frigate's weak spot): every piece is built from its config section alone, so a reload can build a
complete new set beside the running one and swap it in one assignment.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..card import CardError
from ..config import ConfigError, DaemonConfig, ReplaySourceConfig, load_config, restart_only_changes
from ..errors import EdgeInspectorError
from ..inference import LoadedModel
from ..metrics import Metrics
from ..publishers import JsonlConfig, create_publisher
from ..publishers.deferred import DeferredPublisher, is_transient
from ..sources.base import list_images
from . import sdnotify
from .framesaver import FrameSaver
from .pipeline import Generation, ModelSlot, Pipeline

log = logging.getLogger(__name__)

Override = Callable[[DaemonConfig], DaemonConfig]


#: Seconds between attempts to bind the metrics port when another process held it at start.
METRICS_RETRY_S = 5.0

#: Exit code when the run ended normally but some verdicts could not be handed to a publisher (a
#: publisher raised or was closed): the log's last ERROR line says how many, per sink.
EXIT_NOT_HANDED_OVER = 3
#: Exit code of ``replay`` when verdicts were still undelivered (in the MQTT spool) at the end of
#: ``--drain-timeout``; they are delivered at the next start.
EXIT_UNDELIVERED = 4


class StartupError(EdgeInspectorError, RuntimeError):
    """The daemon cannot start; the message lists what is wrong."""


def load_models(cfg: DaemonConfig) -> tuple[list[ModelSlot], list[str]]:
    """Load every configured model (sha256 verified); collect problems instead of stopping at one."""
    models, problems = [], []
    for i, mcfg in enumerate(cfg.models):
        try:
            model = LoadedModel.load(mcfg.path, backend=mcfg.backend, threads=mcfg.threads, **mcfg.backend_options())
        except (CardError, RuntimeError, OSError, ValueError) as exc:
            problems.append(f"models[{i}] ({mcfg.path}): {exc}")
            continue
        if mcfg.name and mcfg.name != model.name:
            problems.append(f"models[{i}].name: {mcfg.name!r} does not match the card's name {model.name!r}")
            continue
        try:  # a first run allocates and optimises lazily: pay it now, not on the first part of the shift
            model.run_batch(np.zeros((1, 3, *model.input_size), dtype=np.float32))
        except Exception as exc:  # noqa: BLE001 - a model that cannot run is a configuration problem
            problems.append(f"models[{i}] ({mcfg.path}): test inference failed: {exc}")
            continue
        models.append(ModelSlot(mcfg, model))
    names = [m.name for _, m in models]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"models: model name(s) {dupes} loaded twice; verdict votes need unique names")
    problems += fusion_problems(cfg, [m for _, m in models]) if not problems else []
    return models, problems


def fusion_problems(cfg: DaemonConfig, models: list[LoadedModel]) -> list[str]:
    """Rules that only make sense with certain kinds of models."""
    rule = cfg.fusion.rule
    primaries = [m for (mcfg, m) in zip(cfg.models, models, strict=False) if mcfg.role == "primary"]
    if rule == "classifier_then_detector" and not any(m.card.kind == "classifier" for m in primaries):
        return ["fusion.rule: classifier_then_detector needs a primary model whose card kind is 'classifier'"]
    if rule == "weighted" and not any(m.weight > 0 for m in cfg.models if m.role == "primary"):
        return ["fusion.rule: weighted needs at least one primary model with weight > 0"]
    return []


def publisher_warning(cfg: DaemonConfig) -> str | None:
    """The loud line for a configuration that sends its verdicts nowhere, or None.

    A config without a ``publishers:`` section validates and runs, and every verdict is lost
    (metrics and saved frames only): said at start and by check-config. ``publishers: []`` written
    out is the explicit opt-out (offline tests, metrics-only trials) and stays quiet.
    """
    if cfg.publishers or "publishers" in cfg.model_fields_set:
        return None
    return ("no publishers configured: verdicts are sent nowhere (only counted in the metrics and saved "
            "frames); add a publishers: section (jsonl, zmq, mqtt; see docs/configuration.md), or write "
            "'publishers: []' to run without one on purpose")


def source_problems(cfg: DaemonConfig) -> list[str]:
    """Files and folders a source needs that are missing (a camera device is only known at open)."""
    problems = []
    for i, cam in enumerate(cfg.cameras):
        src = cam.source
        if src.type == "replay" and not src.path.is_dir():
            problems.append(f"cameras[{i}].source.path: replay folder {src.path} does not exist")
        elif src.type == "replay" and not list_images(src.path, src.pattern):
            problems.append(f"cameras[{i}].source.path: replay folder {src.path} holds no file matching "
                            f"{src.pattern}")
        elif src.type == "video" and not src.path.is_file():
            problems.append(f"cameras[{i}].source.path: video file {src.path} does not exist")
    return problems + state_problems(cfg)


def state_problems(cfg: DaemonConfig) -> list[str]:
    """``state_dir``, ``saving.dir`` and the folders of JSONL files must be folders the daemon can create
    and write (checked by creating them and a probe file: what ``run`` does next), so check-config refuses
    what ``run`` would refuse."""
    folders = [("state_dir", cfg.state_dir)]
    if cfg.saving.mode != "none":
        folders.append(("saving.dir", cfg.saving.dir))
    folders += [(f"publishers[{i}].path", Path(p.path).parent) for i, p in enumerate(cfg.publishers)
                if p.type == "jsonl"]
    problems = []
    for field, folder in folders:
        if folder is None:
            continue
        probe = folder / f".probe-{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            problems.append(f"{field}: {folder} is not a writable folder ({exc.strerror or exc})")
    return problems


def default_state_dir(cfg: DaemonConfig) -> DaemonConfig:
    """Without ``state_dir``, use ``$STATE_DIRECTORY/state`` when systemd provides one (the shipped unit
    sets ``StateDirectory=edge-inspector``), so a service keeps frame numbers and watched-folder progress
    across restarts by default."""
    base = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if cfg.state_dir is None and base:
        return cfg.model_copy(update={"state_dir": Path(base) / "state"})
    return cfg


def build_generation(cfg: DaemonConfig, number: int, metrics: Metrics,
                     previous: Generation | None = None) -> Generation:
    """Load models and create publishers for ``cfg``; raise StartupError listing every problem.

    Publishers whose configuration is unchanged are reused from ``previous`` (an MQTT session and its
    spool survive a reload; a ZeroMQ socket keeps its subscribers).
    """
    models, problems = load_models(cfg)
    if problems:
        raise StartupError("; ".join(problems))
    # compared as models, not as JSON: SecretStr fields dump masked, so a changed password would look equal
    reuse = list(zip(previous.config.publishers, previous.publishers, strict=True)) if previous else []
    publishers, created = [], []
    try:
        for i, pcfg in enumerate(cfg.publishers):
            same = next((k for k, (old_cfg, _) in enumerate(reuse) if old_cfg == pcfg), None)
            if same is not None:
                publishers.append(reuse.pop(same)[1])
                continue
            try:
                pub = create_publisher(pcfg, line=cfg.line, metrics=metrics)
            except Exception as exc:
                if previous is not None or not is_transient(exc):
                    raise StartupError(f"publishers[{i}] ({pcfg.type}): {exc}") from exc
                # a full disk or a port in use at start: the line runs, this sink is retried (F7, F13)
                log.error("publishers[%d] (%s) cannot start: %s; the line runs without it, verdicts it cannot take "
                          "are counted, and it is retried every 10 s", i, pcfg.type, exc)
                pub = DeferredPublisher(pcfg, line=cfg.line, metrics=metrics, error=exc)
            publishers.append(pub)
            created.append(pub)
    except StartupError:
        for pub in created:
            pub.close(timeout=1.0)
        raise
    from ..lineops.coordinator import Operations

    try:  # drift reference file, review folder, operator-flag listener
        ops = Operations(cfg, metrics, previous.ops if previous else None)
    except Exception as exc:
        for pub in created:
            pub.close(timeout=1.0)
        raise StartupError(f"drift/review: {exc}") from exc
    return Generation(number=number, config=cfg, models=models, saver=FrameSaver(cfg.saving, metrics),
                      publishers=publishers, ops=ops)


class Daemon:
    def __init__(self, config_path: Path | str, override: Override | None = None, drain_timeout: float = 60.0,
                 delivery_timeout: float | None = None):
        self.config_path = Path(config_path)
        self.override = override
        self.drain_timeout = drain_timeout
        #: replay: wait this long at the end for the publishers to deliver (MQTT spool empty), and
        #: exit EXIT_UNDELIVERED when verdicts are still undelivered. None (run): exit 0, the spool
        #: delivers them at the next start.
        self.delivery_timeout = delivery_timeout
        self.undelivered = 0
        self.metrics = Metrics()
        self._metrics_lock = threading.Lock()
        self.pipeline: Pipeline | None = None
        self.wake = threading.Event()
        self.stop_requested = False
        self.reload_requested = False
        self.generation_number = 0

    # -- building -----------------------------------------------------------------------------
    def load(self) -> DaemonConfig:
        cfg = load_config(self.config_path)
        return default_state_dir(self.override(cfg) if self.override else cfg)

    def start(self) -> None:
        """Build everything; raise ConfigError/StartupError (nothing half-started is left running)."""
        cfg = self.load()
        problems = source_problems(cfg)
        if problems:
            raise StartupError("; ".join(problems))
        logging.getLogger("edge_inspector").setLevel(cfg.logging.level)
        if cfg.state_dir is None:
            folders = [c.id for c in cfg.cameras if c.source.type == "folder"]
            if folders:
                log.warning("state_dir is not set: watched folder camera(s) %s inspect every file already in the "
                            "folder again at each start, with frame numbers from 0. Set state_dir (see the cameras "
                            "page of the guide) to inspect each file once across restarts.", ", ".join(folders))
        self.generation_number = 1
        gen = build_generation(cfg, 1, self.metrics)
        self._record_models(gen)
        if cfg.metrics.enabled:
            try:
                self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
                log.info("metrics on http://%s:%d/metrics", self.metrics.host, self.metrics.port)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    for pub in gen.publishers:
                        pub.close(timeout=1.0)
                    raise StartupError(str(exc)) from exc
                # another process holds the port (F13 8.5): inspect anyway; scrapes fail, so monitoring notices
                log.error("%s; the line runs without the metrics exporter, which retries every %.0f s", exc,
                          METRICS_RETRY_S)
                self._serve_metrics_later(cfg.metrics.host, cfg.metrics.port)
        self.pipeline = Pipeline(gen, self.metrics)
        for cam in cfg.cameras:
            self.pipeline.add_camera(cam)
        try:
            self.triggers = start_trigger_listener(cfg, self.pipeline)
        except Exception as exc:
            for pub in gen.publishers:
                pub.close(timeout=1.0)
            raise StartupError(f"part_triggers: {exc}") from exc
        attach_part_triggers(gen, self.pipeline)
        self.pipeline.start()
        log.info("line %s: %d camera(s), models %s, fusion %s, %d publisher(s)", cfg.line, len(cfg.cameras),
                 [m.name for _, m in gen.models], cfg.fusion.rule, len(gen.publishers))
        if (warning := publisher_warning(cfg)) is not None:
            log.warning("%s: %s", self.config_path, warning)
        sdnotify.ready(f"inspecting {len(cfg.cameras)} camera(s)")

    def _serve_metrics_later(self, host: str, port: int) -> None:
        def retry() -> None:
            while not self.stop_requested:
                time.sleep(METRICS_RETRY_S)
                with self._metrics_lock:
                    if self.stop_requested:
                        return
                    try:
                        self.metrics.serve(host, port)
                    except OSError:
                        continue
                log.warning("metrics on http://%s:%d/metrics (the port is free now)", self.metrics.host,
                            self.metrics.port)
                return

        threading.Thread(target=retry, name="metrics-retry", daemon=True).start()

    def _record_models(self, gen: Generation) -> None:
        self.metrics.init_series([c.id for c in gen.config.cameras], [getattr(p, "name", "unknown")
                                                                       for p in gen.publishers])
        self.metrics.clear_models()
        for mcfg, model in gen.models:
            self.metrics.set_model(model.name, model.card.version, mcfg.backend)

    # -- signals ------------------------------------------------------------------------------
    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)

    def _on_stop(self, signum: int, _frame: Any) -> None:
        self.stop_requested = True
        self.wake.set()

    def _on_reload(self, signum: int, _frame: Any) -> None:
        self.reload_requested = True
        self.wake.set()

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM, or until every (finite) source is done; return the exit code."""
        assert self.pipeline is not None, "start() first"
        watchdog = self._start_watchdog()
        code = 0
        reload_waiting_since: float | None = None
        reload_warned = False
        while True:
            self.wake.wait(0.2)
            self.wake.clear()
            if self.stop_requested:
                log.info("stop requested: draining in-flight frames")
                break
            if self.reload_requested:
                if self.pipeline.settled():  # serialised: one reload in flight at a time (F1)
                    self.reload_requested = False
                    reload_waiting_since = None
                    self.reload()
                else:  # SIGHUPs meanwhile coalesce; the file is read when the reload runs
                    reload_waiting_since = reload_waiting_since or time.monotonic()
                    if time.monotonic() - reload_waiting_since > 10 and not reload_warned:
                        log.warning("reload waits: the previous reload has not taken over yet (a stage is busy)")
                        reload_warned = True
            if self.pipeline.crashed.is_set():
                log.error("a pipeline stage crashed; stopping")
                code = 1
                break
            if self.pipeline.sources_finished():
                log.info("all sources finished: draining and exiting")
                break
        if watchdog is not None:
            watchdog.set()
        return self.shutdown() or code

    def _start_watchdog(self) -> threading.Event | None:
        """Ping WATCHDOG=1 at half the interval, only while every stage beat recently.

        A thread of its own, so a slow reload (a big model loading) does not starve the pings while the
        running pipeline is healthy.
        """
        interval = sdnotify.watchdog_interval()
        if not interval:
            return None
        stop = threading.Event()
        ping_every, max_age = interval / 2, max(2.0, interval / 2)
        pipeline = self.pipeline
        assert pipeline is not None

        def loop() -> None:
            warned = False
            while not stop.is_set():
                if pipeline.healthy(max_age):
                    sdnotify.watchdog()
                    warned = False
                    stop.wait(ping_every)
                else:
                    if not warned:
                        log.warning("a pipeline stage made no progress for %.0f s; not pinging the watchdog",
                                    max_age)
                        warned = True
                    stop.wait(0.2)

        threading.Thread(target=loop, name="watchdog", daemon=True).start()
        return stop

    def shutdown(self) -> int:
        sdnotify.stopping()
        assert self.pipeline is not None
        ok = self.pipeline.drain(self.drain_timeout)
        if self.delivery_timeout is not None:
            wait_delivered(self.pipeline.generation.publishers, self.delivery_timeout)
        self.pipeline.close_publishers()
        self.undelivered = sum(int(getattr(p, "undelivered", lambda: 0)()) for p in self.pipeline.generation.publishers)
        if self.pipeline.generation.ops is not None:
            self.pipeline.generation.ops.close()  # operator-flag listener
        if getattr(self, "triggers", None) is not None:
            self.triggers.close()  # part-trigger listener
        with self._metrics_lock:
            self.stop_requested = True  # a metrics-retry thread stops too
            self.metrics.shutdown()
        c = self.pipeline.counters
        log.info("stopped: %d frames grabbed, %d dropped, %d published (handed to publishers), %s", c["grabbed"],
                 c["dropped"], c["published"],
                 f"{self.undelivered} NOT delivered (kept in the MQTT spool for the next start)" if self.undelivered
                 else "all delivered")
        lost = self.pipeline.lost
        if lost:
            log.error("%d verdict hand-over(s) failed (%s): those verdicts did not reach every sink; exit code %d",
                      sum(lost.values()), ", ".join(f"{k}: {v}" for k, v in sorted(lost.items())), EXIT_NOT_HANDED_OVER)
        if not ok:
            return 1
        if lost:
            return EXIT_NOT_HANDED_OVER
        if self.undelivered and self.delivery_timeout is not None:
            log.error("%d verdict(s) not delivered within --drain-timeout %.0f s; exit code %d", self.undelivered,
                      self.delivery_timeout, EXIT_UNDELIVERED)
            return EXIT_UNDELIVERED
        return 0

    # -- reload -------------------------------------------------------------------------------
    def reload(self) -> bool:
        """Validate and load the new configuration completely before touching the running one."""
        assert self.pipeline is not None
        sdnotify.reloading()
        old = self.pipeline.generation
        try:
            cfg = self.load()
            problems = source_problems(cfg)
            if problems:
                raise StartupError("; ".join(problems))
            gen = build_generation(cfg, self.generation_number + 1, self.metrics, previous=old)
        except (ConfigError, StartupError) as exc:
            log.error("reload refused, the running configuration stays active: %s", exc)
            sdnotify.ready("reload refused; previous configuration active")
            return False
        except Exception:
            log.exception("reload refused (unexpected error); the running configuration stays active")
            sdnotify.ready("reload refused; previous configuration active")
            return False
        self.generation_number += 1
        waiting = restart_only_changes(old.config, cfg)
        for path in waiting:  # read once at start: the running daemon keeps the old value
            log.warning("%s changed: a reload does not apply it; it takes effect at the next restart", path)
        logging.getLogger("edge_inspector").setLevel(cfg.logging.level)
        old_cams = {c.id: c for c in old.config.cameras}
        new_cams = {c.id: c for c in cfg.cameras}
        for cam_id, cam in old_cams.items():
            if new_cams.get(cam_id) != cam:
                log.info("camera %s removed or changed: stopping it", cam_id)
                self.pipeline.remove_camera(cam_id)
        self.pipeline.swap(gen)
        for cam_id, cam in new_cams.items():
            if old_cams.get(cam_id) != cam:
                log.info("camera %s added or changed: starting it", cam_id)
                self.pipeline.add_camera(cam)
        attach_part_triggers(gen, self.pipeline)
        self._record_models(gen)
        log.info("reloaded %s: generation %d, models %s%s", self.config_path, gen.number,
                 [m.name for _, m in gen.models], f"; waiting for a restart: {', '.join(waiting)}" if waiting else "")
        sdnotify.ready(f"reloaded (generation {gen.number})")
        return True


def replay_override(folder: Path, rate_fps: float = 0.0, camera: str | None = None, loop: bool = False) -> Override:
    """Replace the configured cameras by one replay source over ``folder`` (re-applied on reload).

    The replayed camera keeps the id, ROI and queue size of ``camera`` (default: the first one), so
    verdicts look exactly like the live camera's would.
    """
    folder = Path(folder).resolve()

    def apply(cfg: DaemonConfig) -> DaemonConfig:
        if camera is None:
            base = cfg.cameras[0]
        else:
            try:
                base = cfg.camera(camera)
            except KeyError:
                known = ", ".join(c.id for c in cfg.cameras)
                raise ConfigError("--camera", [f"camera {camera!r} is not in the configuration ({known})"]) from None
        source = ReplaySourceConfig(type="replay", path=folder, rate_fps=rate_fps, loop=loop,
                                    part_id_pattern=getattr(base.source, "part_id_pattern", None))
        cam = base.model_copy(update={"source": source, "queue_policy": "block"})
        return cfg.model_copy(update={"cameras": [cam]})

    return apply


def replay_verdicts(config_path: Path | str, folder: Path, out: Path) -> int:
    """Run the daemon over ``folder`` with CONFIG's models; verdicts go only to ``out`` (JSONL).

    For the offline tools (``shadow-report --replay``, ``drift-reference``). Saving, review capture and
    drift tracking are off: an offline replay must not add frames to the
    review folder, nor need the drift reference it may be about to create.
    """
    base = replay_override(folder)

    def apply(cfg: DaemonConfig) -> DaemonConfig:
        cfg = base(cfg)
        jsonl = JsonlConfig(type="jsonl", path=out, rotate_size_mb=None)
        return cfg.model_copy(update={
            "publishers": [jsonl], "metrics": cfg.metrics.model_copy(update={"enabled": False}),
            "saving": cfg.saving.model_copy(update={"mode": "none"}),
            "review": cfg.review.model_copy(update={"enabled": False}),
            "drift": cfg.drift.model_copy(update={"enabled": False, "reference_file": None}),
        })

    return run_daemon(config_path, apply)


def start_trigger_listener(cfg: DaemonConfig, pipeline: Pipeline) -> Any:
    """The MQTT part-trigger listener (``part_triggers.mqtt``) on the first MQTT publisher's broker.

    Started once with the daemon (a reload keeps it: it announces to whatever cameras run then).
    """
    if not cfg.part_triggers.mqtt:
        return None
    mqtt_cfg = next((p for p in cfg.publishers if p.type == "mqtt"), None)
    if mqtt_cfg is None:
        raise StartupError("part_triggers.mqtt is set but no MQTT publisher is configured (its broker carries "
                           "the trigger topic <prefix>/<line>/<camera>/trigger)")
    from ..parts import TriggerListener

    listener = TriggerListener(mqtt_cfg, cfg.line, pipeline.announce_part)
    log.info("part triggers on %s", listener.topic)
    return listener


def attach_part_triggers(gen: Generation, pipeline: Pipeline) -> None:
    """Give publishers that take part triggers (the OPC UA server's Trigger method) the pipeline's
    ``announce_part`` and the cameras, at start and after every reload (cameras may have changed)."""
    cameras = [c.id for c in gen.config.cameras]
    for pub in gen.publishers:
        attach = getattr(pub, "attach_triggers", None)
        if attach is not None:
            attach(pipeline.announce_part, cameras)


def wait_delivered(publishers: list[Any], timeout: float) -> int:
    """Wait up to ``timeout`` s until every publisher that keeps undelivered messages has delivered them.

    Returns how many are still waiting (the MQTT spool's entries; other sinks deliver on hand-over).
    """
    left = 0
    deadline = time.monotonic() + timeout
    for pub in publishers:
        wait = getattr(pub, "wait_delivered", None)
        if wait is not None:
            left += int(wait(max(0.0, deadline - time.monotonic())))
    return left


def run_daemon(config_path: Path | str, override: Override | None = None, pid_file: Path | None = None,
               delivery_timeout: float | None = None) -> int:
    """Entry point of ``run``/``replay``: start, run, drain; errors become exit code 1 with a message.

    ``pid_file`` lets tools outside systemd (the console's model promotion) send SIGHUP.
    """
    daemon = Daemon(config_path, override, delivery_timeout=delivery_timeout)
    daemon.install_signals()  # before start, so a SIGTERM during model loading is not fatal
    try:
        daemon.start()
    except (ConfigError, StartupError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    if pid_file is not None:
        Path(pid_file).write_text(f"{os.getpid()}\n")
    try:
        return daemon.run()
    finally:
        if pid_file is not None:
            Path(pid_file).unlink(missing_ok=True)
