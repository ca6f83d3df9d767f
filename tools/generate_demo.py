"""Thin wrapper: ``python tools/generate_demo.py OUT [--replay N] [--size 128] [--seed 0]``.

Same as ``edge-inspector generate-demo``, for checkouts where the package is not installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_inspector.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["generate-demo", *sys.argv[1:]]))
