"""``edge-inspector deploy``: make a running daemon run a model card, and confirm it from the daemon."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: Exit code when the daemon did not confirm the model (the config change is put back).
EXIT_NOT_CONFIRMED = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "deploy",
        help="point a running daemon's config at a model card, reload it, and confirm the daemon runs it",
        description="For what train, auto and export produce (the console's Promote does the same): replace one "
        "model slot of CONFIG with CARD (the slot of the same model name, else the first of the same kind, else "
        "the first; only that path changes, comments stay; validated like the daemon's own loader, written "
        "atomically), send SIGHUP to the daemon of --pid-file, then read its metrics (--metrics) until "
        "edge_inspector_model_info shows CARD's name and version. Exit codes: 0 confirmed live; 1 the config "
        "cannot be changed; 2 not confirmed within --timeout (the daemon refused or is not running; the config "
        "is put back so a restart runs what runs now).",
    )
    p.add_argument("card", type=Path, help="model card (<name>.card.json) to run, e.g. models/my-detector.card.json")
    p.add_argument("--config", "-c", type=Path, required=True, help="the daemon's configuration file")
    p.add_argument("--pid-file", type=Path, help="the daemon's pid file (run --pid-file); without it, reload the "
                   "daemon yourself (systemctl reload edge-inspector) within --timeout")
    p.add_argument("--metrics", default="http://127.0.0.1:9108/metrics",
                   help="the daemon's metrics URL (default http://127.0.0.1:9108/metrics)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the daemon (default 30)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import signal

    from ..card import load_card
    from ..deploy_model import confirm_live, replace_model_slot

    try:
        card = load_card(args.card)
        change = replace_model_slot(args.config, args.card)
    except OSError as exc:  # CardError, DeployError, ConfigError: cli.main prints them (stderr, exit 1)
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    print(f"deploy: {args.config}: {change}" if change else f"deploy: {args.config} already names {args.card}")
    if args.pid_file is not None:
        try:
            pid = int(Path(args.pid_file).read_text().strip())
            os.kill(pid, signal.SIGHUP)
            print(f"deploy: daemon pid {pid} signalled to reload")
        except (OSError, ValueError) as exc:
            print(f"deploy: cannot signal the daemon from {args.pid_file}: {exc}")
    ok, live, error = confirm_live(args.metrics, card.name, card.version, args.timeout)
    if ok:
        print(f"deploy: the daemon confirms {card.name} v{card.version} is live ({', '.join(live)})")
        return 0
    if change is not None:
        change.revert()
    print(f"deploy: NOT deployed: the daemon runs {', '.join(live) or 'nothing it reports'}"
          f"{f' ({error})' if error else ' (reload refused? see its log)'}; {args.config} put back")
    return EXIT_NOT_CONFIRMED
