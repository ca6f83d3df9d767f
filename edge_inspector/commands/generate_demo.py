"""``edge-inspector generate-demo``: write a synthetic inspection line (dataset + replay frames)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate-demo",
        help="write a synthetic demo dataset (MVTec layout) and replay frames",
        description="Write OUT/dataset, an MVTec-layout category of procedural parts with scratches, spots "
        "and missing pieces (exact masks), and OUT/replay, numbered frames (about one in five defective) with "
        "labels.csv for the daemon's replay mode. Deterministic for a given seed; needs no download.",
    )
    p.add_argument("out", type=Path, help="output folder (created)")
    p.add_argument("--replay", type=int, default=200, metavar="N", help="number of replay frames (0: none)")
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--n-train", type=int, default=60, help="normal training images")
    p.add_argument("--n-test-good", type=int, default=20, help="normal test images")
    p.add_argument("--n-test-defect", type=int, default=30, help="defective test images")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.synthetic import generate_demo_dataset, write_replay_folder

    dataset = generate_demo_dataset(args.out / "dataset", n_train=args.n_train, n_test_good=args.n_test_good,
                                    n_test_defect=args.n_test_defect, size=args.size, seed=args.seed)
    print(f"dataset: {dataset}")
    if args.replay > 0:
        replay = write_replay_folder(args.out / "replay", args.replay, seed=args.seed + 1, size=args.size)
        print(f"replay: {replay} ({args.replay} frames, labels in {replay / 'labels.csv'})")
    return 0
