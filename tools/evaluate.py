#!/usr/bin/env python3
"""Evaluate a model on a dataset: a thin wrapper over ``edge-inspector evaluate`` (same arguments)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_inspector.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
