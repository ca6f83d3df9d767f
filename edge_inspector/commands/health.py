"""``edge-inspector health``: is the running daemon up and inspecting? For container HEALTHCHECKs and probes.

Why a scrape of the daemon's own metrics endpoint, not "is the process alive": the daemon serves
``/metrics`` only after its models loaded (sha256 checked, test inference run) and its publishers
were created, and a scrape is answered by the daemon process itself, so an answer listing
``edge_inspector_model_info`` proves the daemon got through start-up and is still serving. A
process that is alive but never finished loading, or whose exporter thread died, is unhealthy.

Why a stall check with a state file: one scrape cannot tell a hung stage from a quiet line. The
check remembers the verdict count between runs (a small JSON file in ``$TMPDIR``); frames waiting
in a pipeline queue while no verdict was decided for ``--stall-seconds`` is the same condition on
which the systemd watchdog stops pinging, and here it makes the container unhealthy.

Why a camera that is down is healthy by default: the daemon reconnects by itself with backoff and a
restart (what an orchestrator does with an unhealthy container) would not bring the camera back;
``--require-sources`` makes it count, e.g. for a Kubernetes readiness probe.

Exit status 0 = healthy, 1 = unhealthy (Docker/Podman reserve 2); one line on stdout says why,
and ends up in ``podman inspect``'s health log.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import EdgeInspectorError

DEFAULT_URL = "http://127.0.0.1:9108/metrics"


class HealthError(EdgeInspectorError, RuntimeError):
    """The metrics endpoint cannot be read or parsed; the message names the URL and why."""


@dataclass(frozen=True)
class StallState:
    """What the previous check saw: the verdict total and since when it has not changed."""

    verdicts: float
    since: float


@dataclass
class HealthReport:
    """The outcome of one check, with the figures behind it (printed as one line)."""

    healthy: bool
    reasons: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    sources_up: int = 0
    sources: int = 0
    frames: float = 0.0
    verdicts: float = 0.0
    queued: float = 0.0

    def line(self) -> str:
        figures = (f"models {', '.join(self.models) or 'none'}; sources up {self.sources_up}/{self.sources}; "
                   f"{self.frames:.0f} frames, {self.verdicts:.0f} verdicts, {self.queued:.0f} queued")
        if self.healthy:
            return f"healthy: {figures}"
        return f"unhealthy: {'; '.join(self.reasons)} ({figures})"


def metrics_url(config: Path | None) -> str:
    """The scrape URL of the daemon configured in ``config`` (a wildcard bind is reached on loopback)."""
    if config is None:
        return DEFAULT_URL
    from ..config import load_config

    cfg = load_config(config)
    if not cfg.metrics.enabled:
        raise HealthError(f"{config}: metrics.enabled is false; the health check reads the metrics endpoint, "
                          "so enable it (metrics.host/port) or pass --url")
    host = cfg.metrics.host
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{cfg.metrics.port}/metrics"


def scrape(url: str, timeout: float) -> str:
    """GET the exposition text; raise HealthError naming the URL on any failure."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - URL from our own config
            return resp.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        raise HealthError(f"{url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HealthError(f"cannot reach the daemon's metrics endpoint {url}: {reason}") from exc


def assess(text: str, previous: StallState | None, now: float, stall_seconds: float,
           require_sources: bool = False) -> tuple[HealthReport, StallState]:
    """Judge one scrape; return the report and the state to remember for the next check."""
    from prometheus_client.parser import text_string_to_metric_families

    report = HealthReport(healthy=True)
    try:
        families = {f.name: f for f in text_string_to_metric_families(text)}
    except ValueError as exc:
        raise HealthError(f"the metrics endpoint returned text that is not Prometheus exposition: {exc}") from exc

    def samples(name: str, suffix: str = "") -> list:
        fam = families.get(f"edge_inspector_{name}")
        return [s for s in fam.samples if s.name == f"edge_inspector_{name}{suffix}"] if fam else []

    report.models = sorted(f"{s.labels.get('name')} {s.labels.get('version')}" for s in samples("model_info")
                           if s.value == 1)
    up = samples("source_up")
    report.sources, report.sources_up = len(up), sum(1 for s in up if s.value == 1)
    report.frames = sum(s.value for s in samples("frames", "_total"))
    report.verdicts = sum(s.value for s in samples("verdicts", "_total"))
    report.queued = sum(s.value for s in samples("queue_depth"))
    if not report.models:
        report.reasons.append("no model loaded (edge_inspector_model_info is empty)")
    if require_sources and report.sources_up < report.sources:
        down = sorted(s.labels.get("camera", "?") for s in up if s.value != 1)
        report.reasons.append(f"source(s) down: {', '.join(down)}")
    if previous is None or report.verdicts != previous.verdicts:
        state = StallState(verdicts=report.verdicts, since=now)
    else:
        state = previous
        if report.queued > 0 and now - state.since >= stall_seconds:
            report.reasons.append(f"{report.queued:.0f} frame(s) queued but no verdict for {now - state.since:.0f} s")
    report.healthy = not report.reasons
    return report, state


def _state_path(url: str) -> Path:
    safe = "".join(c if c.isalnum() else "_" for c in url.split("//", 1)[-1])
    return Path(tempfile.gettempdir()) / f"edge-inspector-health-{safe}.json"


def _read_state(path: Path) -> StallState | None:
    try:
        return StallState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # first check, or an unreadable leftover: start counting afresh


def _write_state(path: Path, state: StallState) -> None:
    try:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(state)))
        tmp.replace(path)
    except OSError:
        pass  # a read-only /tmp only disables the stall check; the scrape itself still counts


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "health",
        help="check that the running daemon answers on its metrics endpoint with its models loaded (for probes)",
        description="Scrape the running daemon's Prometheus endpoint (from CONFIG's metrics section, or --url) and "
        "exit 0 when it answers with at least one loaded model and no pipeline stall (frames queued while no "
        "verdict was decided for --stall-seconds, remembered between checks in $TMPDIR), else exit 1. Prints "
        "one line with the reason and the figures. Used as the container image's HEALTHCHECK.",
    )
    p.add_argument("--config", "-c", type=Path, help="the daemon's configuration file (its metrics host/port)")
    p.add_argument("--url", help=f"metrics URL to scrape instead (default without --config: {DEFAULT_URL})")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the scrape (default 3)")
    p.add_argument("--stall-seconds", type=float, default=60.0,
                   help="frames queued with no new verdict for this long is unhealthy (default 60)")
    p.add_argument("--require-sources", action="store_true",
                   help="also unhealthy while any camera source is down (default: the daemon reconnects by itself)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import ConfigError

    try:
        url = args.url or metrics_url(args.config)
        text = scrape(url, args.timeout)
        path = _state_path(url)
        report, state = assess(text, _read_state(path), time.time(), args.stall_seconds, args.require_sources)
    except (HealthError, ConfigError) as exc:
        print(f"unhealthy: {exc}", flush=True)
        return 1
    _write_state(path, state)
    print(report.line(), flush=True)
    return 0 if report.healthy else 1
