#!/usr/bin/env bash
# Sets up a fresh machine (tools/bootstrap.sh) and runs the linter and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh
.venv/bin/ruff check edge_inspector tests bench tools
exec .venv/bin/python -m pytest -q "$@"
