"""``python -m edge_inspector``: the same command line as the ``edge-inspector`` script."""

import sys

from .cli import main

sys.exit(main())
