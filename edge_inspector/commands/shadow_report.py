"""``edge-inspector shadow-report``: how often would the shadow model have decided differently?"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "shadow-report",
        help="summarise shadow-model agreement over a replay (or over recorded verdict JSON lines)",
        description="Agreement of every model with role 'shadow' in CONFIG with the daemon's verdicts: agree, "
        "shadow-only defects (the shadow would reject parts the line passes), primary-only defects (the shadow "
        "would pass parts the line rejects), frames the shadow skipped. With --replay FOLDER the daemon runs "
        "CONFIG's models over the folder (publishing nowhere but a temporary JSONL file); with --verdicts it "
        "reads JSONL written by a jsonl publisher.",
    )
    p.add_argument("--config", "-c", type=Path, default=Path("config.yaml"), help="configuration file")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--replay", type=Path, metavar="FOLDER", help="replay this image folder through CONFIG")
    src.add_argument("--verdicts", type=Path, metavar="JSONL", help="verdict JSON lines to summarise")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the summary as JSON here")
    p.set_defaults(func=run)


def shadow_names(config_path: Path) -> list[str]:
    """Names of the shadow models (from their cards, as they appear in the verdicts' votes)."""
    from ..card import load_card
    from ..config import load_config

    cfg = load_config(config_path)
    return [m.name or load_card(m.path, verify=False).name for m in cfg.models if m.role == "shadow"]


def format_summary(rows: list[dict]) -> str:
    lines = [f"{'shadow model':24} {'compared':>8} {'agree':>7} {'shadow-only':>11} {'primary-only':>12} "
             f"{'skipped':>7} {'agreement':>9}"]
    for r in rows:
        rate = "-" if r["agreement"] is None else f"{100 * r['agreement']:.1f}%"
        lines.append(f"{r['model']:24} {r['compared']:>8} {r['agree']:>7} {r['shadow_only_defect']:>11} "
                     f"{r['primary_only_defect']:>12} {r['not_run']:>7} {rate:>9}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from ..lineops.shadow import summarise
    from ..runtime.daemon import replay_verdicts

    names = shadow_names(args.config)  # ConfigError, CardError: cli.main prints them (stderr, exit 1)
    if not names:
        print(f"shadow-report: {args.config}: no model has role 'shadow'; nothing to compare", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="shadow-report-") as tmp:
        path = args.verdicts
        if args.replay is not None:
            if not args.replay.is_dir():
                print(f"shadow-report: --replay {args.replay}: not a folder", file=sys.stderr)
                return 1
            path = Path(tmp) / "verdicts.jsonl"
            if replay_verdicts(args.config, args.replay, path) != 0:
                print("shadow-report: the replay failed (see the log above)", file=sys.stderr)
                return 1
        try:
            verdicts = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except (OSError, json.JSONDecodeError) as exc:
            print(f"shadow-report: {path}: cannot read verdict JSON lines ({exc})", file=sys.stderr)
            return 1
    rows = [s.as_dict() for s in summarise(verdicts, names).values()]
    print(f"{len(verdicts)} verdicts")
    print(format_summary(rows))
    if args.json:
        args.json.write_text(json.dumps({"verdicts": len(verdicts), "shadows": rows}, indent=2) + "\n")
    return 0
