"""Argument helpers shared by the commands (a private module: ``cli`` registers no command for it).

One definition per option so that ``--scheme``, ``--split-seed`` or ``--input-size`` mean the same in
every command that reads a dataset or builds a model.
"""

from __future__ import annotations

import argparse
import json


def parse_size(text: str) -> tuple[int, int]:
    """``224`` or ``256x192`` (height x width)."""
    try:
        parts = [int(v) for v in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 32:
        raise argparse.ArgumentTypeError(f"--input-size {text!r}: expected N or HxW with sides >= 32, e.g. 224")
    return parts[0], parts[1]


def parse_option(text: str) -> tuple[str, object]:
    """``key=value`` with value parsed as JSON when it can be (numbers, lists, true/false)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--option {text!r}: expected KEY=VALUE, e.g. coreset_ratio=0.05")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def add_dataset_options(p: argparse.ArgumentParser, *, default_scheme: str = "native", seed_alias: bool = False,
                        category_help: str = "category inside a multi-category dataset root (MVTec/VisA)") -> None:
    """How a dataset is read and split: the same options in train, calibrate, evaluate, compare and auto.

    The split seed is ``--split-seed`` everywhere; evaluate and compare also accept ``--seed`` for it
    (``seed_alias``: they have no other seed), while train and auto keep ``--seed`` for the training seed.
    """
    p.add_argument("--scheme", choices=["native", "stratified"], default=default_scheme,
                   help="native: the dataset's own train/test, val_fraction of normal train images held out; "
                   "stratified: pool everything and split by defect type (labelled defects in val); use the "
                   f"same as for training (default: {default_scheme})")
    names = ["--split-seed", "--seed"] if seed_alias else ["--split-seed"]
    p.add_argument(*names, dest="split_seed", type=int, default=0,
                   help="seed of the train/val/test split, the same as for training (default: 0)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="share of images held out for validation "
                   "(default: 0.2)")
    p.add_argument("--category", help=category_help)


def add_scoring_options(p: argparse.ArgumentParser) -> None:
    """Inference threads, composite weights and progress: evaluate, compare and auto."""
    p.add_argument("--threads", type=int, default=2, help="inference threads (default: 2)")
    p.add_argument("--weights", help="composite weights, e.g. 'image_auroc=0.3,f1=0.2,recall=0.15,pro=0.25,"
                   "defect_type_auroc=0.1' (the default; unnamed components get 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_calibration_options(p: argparse.ArgumentParser, *, default: str, with_auto: bool) -> None:
    """--method and --target, the threshold rule: the same options in train, calibrate and calibrate-fusion."""
    methods = ["auto", "fpr", "f1", "recall", "cost"] if with_auto else ["fpr", "f1", "recall", "cost"]
    p.add_argument("--method", choices=methods, default=default,
                   help=("auto: f1 with labelled defects in the split, else fpr; " if with_auto else "")
                   + "fpr: target false-reject rate on normals; f1: best F1; recall: minimum recall; "
                   f"cost: fewest false rejects + TARGET x escapes (default: {default})")
    p.add_argument("--target", type=float,
                   help="fpr: false-reject rate (default 0.01); recall: minimum recall (0.95); cost: cost of one "
                   "escape in rejected good parts (10)")
