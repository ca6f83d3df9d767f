"""systemd notify protocol (``Type=notify`` readiness and watchdog) in a few lines of stdlib.

Why not the ``sdnotify``/``systemd-python`` packages: the protocol is one datagram to
``$NOTIFY_SOCKET`` and the daemon must not gain a C dependency for it. Every function is a no-op
returning False when the daemon runs outside systemd (no ``$NOTIFY_SOCKET``), so the daemon can
call them unconditionally. Sending never raises: a broken notify socket must not kill inspection;
it is reported through the return value.

An ``@`` at the start of the socket path means the Linux abstract namespace (a leading NUL byte).
Debian 12 ships systemd 252, so ``RELOADING=1`` is informative only (no ``Type=notify-reload``).
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger(__name__)


def _address(path: str) -> str | bytes:
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


def notify(message: str) -> bool:
    """Send one notification datagram (e.g. ``"READY=1"``); False when unset or the send failed."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if not (path.startswith("/") or path.startswith("@")):
        log.warning("NOTIFY_SOCKET=%r is neither an absolute path nor '@abstract'; not notifying", path)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(_address(path))
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("sd_notify(%r) to %s failed: %s", message, path, exc)
        return False


def ready(status: str | None = None) -> bool:
    """Tell systemd start-up is complete (sources open, models loaded, publishers created)."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def stopping() -> bool:
    """Tell systemd a graceful stop (drain) has begun."""
    return notify("STOPPING=1")


def reloading() -> bool:
    """Tell systemd a reload started; send ``ready()`` when it completes."""
    return notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def watchdog() -> bool:
    """Ping the watchdog; call only when capture, inference and publishing all made progress."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """Set the free-form status line shown by ``systemctl status``."""
    return notify(f"STATUS={text}")


def watchdog_interval() -> float | None:
    """The watchdog timeout in seconds from ``WATCHDOG_USEC``, or None when it is not for us.

    None when unset, malformed, or when ``WATCHDOG_PID`` names another process (the variables were
    inherited from a parent). Ping at about half this interval.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = os.environ.get("WATCHDOG_PID")
    if pid:
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; watchdog disabled", usec)
        return None
    return value / 1_000_000 if value > 0 else None
