"""``edge-inspector drift-reference``: the drift alarm's reference from known-good images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "drift-reference",
        help="write the drift alarm's reference scores from a folder of good images (e.g. the calibration set)",
        description="Replay FOLDER through the daemon configured in CONFIG (its models and fusion, publishing "
        "nowhere) and write the fused scores of the frames judged OK to --out, for drift.reference_file. "
        "Without a reference file the daemon learns one from the first drift.reference_frames OK frames "
        "after start instead.",
    )
    p.add_argument("folder", type=Path, help="folder of good images (png/jpg/bmp/tif)")
    p.add_argument("--config", "-c", type=Path, default=Path("config.yaml"), help="configuration file")
    p.add_argument("--out", "-o", type=Path, required=True, help="JSON file to write ({\"scores\": [...]})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import tempfile

    from ..runtime.daemon import replay_verdicts

    if not args.folder.is_dir():
        print(f"drift-reference: {args.folder}: not a folder", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="drift-reference-") as tmp:
        path = Path(tmp) / "verdicts.jsonl"
        code = replay_verdicts(args.config, args.folder, path)  # a ConfigError: cli.main prints it
        if code != 0:
            print("drift-reference: the replay failed (see the log above)", file=sys.stderr)
            return 1
        verdicts = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    scores = [v["score"] for v in verdicts if v["verdict"] == "ok" and v["score"] is not None]
    rejected = sum(v["verdict"] != "ok" for v in verdicts)
    if len(scores) < 10:
        print(f"drift-reference: only {len(scores)} of {len(verdicts)} images were judged OK; the reference "
              "needs at least 10 good images", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"scores": scores, "source": str(args.folder.resolve()),
                                    "config": str(args.config.resolve())}, indent=1) + "\n")
    print(f"wrote {len(scores)} reference scores to {args.out}"
          + (f" ({rejected} image(s) not judged OK were left out)" if rejected else ""))
    return 0
