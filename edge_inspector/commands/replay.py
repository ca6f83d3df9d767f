"""``edge-inspector replay``: run the daemon over a recorded image folder, then exit."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a recorded image folder through the daemon and exit when every verdict is delivered",
        description="Run the daemon configured in CONFIG, but with its cameras replaced by one replay source "
        "over FOLDER (images in name order). The camera's ROI and queue settings come from the camera "
        "named by --camera (default: the first camera in CONFIG). Models, fusion, publishers, saving and "
        "metrics are those of CONFIG. After the last frame it waits up to --drain-timeout seconds for every verdict "
        "to be delivered (the MQTT spool to empty, e.g. while the broker is down). Exit codes: 0 every verdict "
        "delivered; 1 cannot start or a stage failed; 3 a verdict could not be handed to a publisher; 4 verdicts "
        "left undelivered in the MQTT spool at the deadline (they are sent at the next start).",
    )
    p.add_argument("folder", type=Path, help="folder of recorded images (png/jpg/bmp/tif)")
    p.add_argument("--config", "-c", type=Path, default=Path("config.yaml"),
                   help="configuration file (default: ./config.yaml)")
    p.add_argument("--rate", type=float, default=0.0, metavar="FPS",
                   help="frames per second to replay at (default 0: as fast as the pipeline takes them)")
    p.add_argument("--camera", metavar="ID", help="camera id to replay as (default: the first camera in CONFIG)")
    p.add_argument("--loop", action="store_true", help="start again after the last image (until SIGTERM)")
    p.add_argument("--drain-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="after the last frame, wait this long for undelivered verdicts (MQTT spool) before exiting "
                   "with code 4 (default 60; 0 = do not wait)")
    p.add_argument("--pid-file", type=Path, metavar="PATH",
                   help="write the daemon's pid here while it runs (for tools that send SIGHUP, e.g. the console)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from ..runtime.daemon import replay_override, run_daemon

    if not args.folder.is_dir():
        logging.getLogger("edge_inspector").error("replay: %s is not a folder", args.folder)
        return 1
    if args.rate < 0:
        logging.getLogger("edge_inspector").error("replay: --rate must be >= 0 (0 = as fast as possible)")
        return 1
    if args.drain_timeout < 0:
        logging.getLogger("edge_inspector").error("replay: --drain-timeout must be >= 0 seconds")
        return 1
    override = replay_override(args.folder, args.rate, args.camera, args.loop)
    return run_daemon(args.config, override, pid_file=args.pid_file, delivery_timeout=args.drain_timeout)
