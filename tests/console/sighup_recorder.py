"""A stand-in daemon process for the promote test: writes its pid file and records each SIGHUP."""

import os
import signal
import sys
import time
from pathlib import Path

pid_file, record = Path(sys.argv[1]), Path(sys.argv[2])


def on_hup(signum, frame):
    with open(record, "a") as fh:
        fh.write(f"SIGHUP {time.time()}\n")


signal.signal(signal.SIGHUP, on_hup)
pid_file.write_text(f"{os.getpid()}\n")
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.05)
