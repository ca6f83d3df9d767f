"""Thin wrapper: ``python tools/export.py ...`` is ``edge-inspector export ...`` (same arguments).

For checkouts where the package is not installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_inspector.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
