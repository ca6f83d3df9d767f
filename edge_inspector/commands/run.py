"""``edge-inspector run``: the inspection daemon (what the systemd unit starts)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run the inspection daemon (cameras -> models -> verdicts over MQTT/ZeroMQ/JSONL)",
        description="Run the inspection daemon as configured in CONFIG: grab frames from every camera, run "
        "the models, decide ok/defect/error per frame and publish one verdict per frame. SIGTERM drains "
        "every frame already grabbed and exits 0; SIGHUP reloads CONFIG and the models (an invalid new "
        "configuration is logged and the running one is kept). Speaks the systemd notify protocol "
        "(READY/WATCHDOG/RELOADING/STOPPING) when NOTIFY_SOCKET is set. Exits 0 by itself when every "
        "source is finite (replay, video, no loop) and done. Validate a file first with check-config.",
    )
    p.add_argument("--config", "-c", type=Path, default=Path("config.yaml"),
                   help="configuration file (default: ./config.yaml)")
    p.add_argument("--pid-file", type=Path, metavar="PATH",
                   help="write the daemon's pid here while it runs (for tools that send SIGHUP, e.g. the console)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtime.daemon import run_daemon

    return run_daemon(args.config, pid_file=args.pid_file)
