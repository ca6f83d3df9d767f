"""Shared fixtures live in tests/fixtures/<area>.py, one module per area, registered here."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

pytest_plugins = [
    "tests.fixtures.broker",  # real Mosquitto on a free port
    "tests.fixtures.models",  # tiny real ONNX models + cards, built without torch
    "tests.fixtures.data",  # tiny generated datasets on disk
    "tests.fixtures.postgres",  # a throwaway PostgreSQL cluster on a Unix socket
]
