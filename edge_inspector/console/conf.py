"""Console configuration from environment variables, read once by settings.py.

Environment variables rather than a settings file because the console is started by
``edge-inspector console`` (which turns its flags into these variables) or by systemd, and both
pass configuration most simply through the environment.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import EdgeInspectorError

ENV_PREFIX = "EDGE_INSPECTOR_"
DEFAULT_DATA_DIR = "~/.local/share/edge-inspector"


class ConsoleConfigError(EdgeInspectorError, ValueError):
    """A console setting (environment variable or flag) has an unusable value, or the console extra is
    missing; ``cli.main`` prints it as ``console: <message>`` (stderr, exit 1) like every command's error."""


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(ENV_PREFIX + name)
    return value if value not in (None, "") else default


PRIVATE_UMASK = 0o077


def restrict_umask() -> None:
    """Files the console creates (database, WAL, uploads, extractions, job outputs) are owner-only.

    The red team read session keys from a 0644 ``console.sqlite3``: SQLite creates its files with
    the process umask, so the console process sets 077 for itself (and its job workers) instead of
    trusting the service manager's default 022.
    """
    os.umask(PRIVATE_UMASK)


def make_private(path: Path, mode: int) -> None:
    """Tighten ``path`` to ``mode`` when group/other have any access (a folder or file from an older
    version, or created under a permissive umask); a path we do not own is left alone."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        path.chmod(mode)


def data_dir() -> Path:
    """Where the database, secret key, uploads and job folders live (created 0700 on first use)."""
    path = Path(env("DATA_DIR", DEFAULT_DATA_DIR)).expanduser().resolve()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    make_private(path, 0o700)
    return path


def private_sqlite(database: Path) -> None:
    """Create the SQLite database 0600 before Django opens it, and tighten an existing one with its
    ``-wal``/``-shm`` files: the sessions and password hashes in it must not be world-readable."""
    if not database.exists():
        database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
    for suffix in ("", "-wal", "-shm", "-journal"):
        make_private(database.with_name(database.name + suffix), 0o600)


def secret_key(directory: Path) -> str:
    """The SECRET_KEY: from the environment, else generated once into ``<data dir>/secret_key`` (0600)."""
    if key := env("SECRET_KEY"):
        return key
    path = directory / "secret_key"
    if path.is_file():
        key = path.read_text().strip()
        if len(key) < 32:
            raise ConsoleConfigError(f"{path}: secret key is shorter than 32 characters; delete it to regenerate")
        return key
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
    return key


def parse_database_url(url: str, base_dir: Path) -> dict:
    """``sqlite:///rel.db``, ``sqlite:////abs.db`` or ``postgres://user:pw@host:5432/name`` -> DATABASES entry.

    A PostgreSQL server on a Unix socket is named as libpq does: ``postgres://user@/name?host=/run/postgresql``
    (or the socket folder percent-encoded as the host, ``postgres://user@%2Frun%2Fpostgresql/name``).
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        name = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
        if not name:
            raise ConsoleConfigError(f"DATABASE_URL {url!r}: sqlite URL needs a file path, e.g. sqlite:////var/lib/x.db")
        path = Path(name)
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(path if path.is_absolute() else base_dir / path)}
    if scheme in ("postgres", "postgresql", "pgsql"):
        name = unquote(parts.path.lstrip("/"))
        if not name:
            raise ConsoleConfigError(f"DATABASE_URL {url!r}: PostgreSQL URL needs a database name after the host")
        query = parse_qs(parts.query)
        netloc_host = parts.netloc.rsplit("@", 1)[-1]
        host = unquote(netloc_host) if netloc_host.lower().startswith("%2f") else (parts.hostname or "")
        host = query.get("host", [host])[0]
        try:
            port = str(parts.port or "")
        except ValueError:
            raise ConsoleConfigError(f"DATABASE_URL {url!r}: the port must be a number") from None
        if host.startswith("/"):
            port = ""
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": host,
            "PORT": query.get("port", [port])[0],
        }
    raise ConsoleConfigError(f"DATABASE_URL {url!r}: unsupported scheme {scheme!r} (expected sqlite or postgres)")


def flag(name: str, default: bool = False) -> bool:
    value = env(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ConsoleConfigError(f"{ENV_PREFIX}{name}={value!r}: expected a boolean (1/0, true/false)")


def integer(name: str, default: int, minimum: int = 0) -> int:
    value = env(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ConsoleConfigError(f"{ENV_PREFIX}{name}={value!r}: expected a whole number >= {minimum}")
    return number


def path_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]
