"""Console configuration from environment variables, read once by settings.py.

Environment variables rather than a settings file because the console is started by
``edge-inspector console`` (which turns its flags into these variables) or by systemd, and both
pass configuration most simply through the environment.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import unquote, urlsplit

ENV_PREFIX = "EDGE_INSPECTOR_"
DEFAULT_DATA_DIR = "~/.local/share/edge-inspector"


class ConsoleConfigError(ValueError):
    """A console setting (environment variable or flag) has an unusable value."""


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(ENV_PREFIX + name)
    return value if value not in (None, "") else default


def data_dir() -> Path:
    """Where the database, secret key, uploads and job folders live (created on first use)."""
    path = Path(env("DATA_DIR", DEFAULT_DATA_DIR)).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


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
    """``sqlite:///rel.db``, ``sqlite:////abs.db`` or ``postgres://user:pw@host:5432/name`` -> DATABASES entry."""
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
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
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
