"""Credentials and TLS files of an MQTT connection, checked without paho.

Why apart from :mod:`~edge_inspector.publishers.mqtt_client`: ``check-config`` reports a missing
password file or a CA file that is not PEM without importing the MQTT client library (the
configuration side stays paho-free), with the same messages the daemon gives at start.
"""

from __future__ import annotations

import ssl

from edge_inspector.publishers.base import PublisherError
from edge_inspector.publishers.config import MqttConnection


def read_password(conn: MqttConnection, who: str = "mqtt") -> str | None:
    """The broker password from ``password`` or ``password_file`` (trailing newline stripped)."""
    if conn.password is not None:
        return conn.password.get_secret_value()
    if conn.password_file is None:
        return None
    try:
        return conn.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeError) as exc:
        raise PublisherError(f"{who}.password_file {conn.password_file}: cannot read the broker password: {exc}") \
            from exc


def check_tls_files(conn: MqttConnection, who: str) -> None:
    tls = conn.tls
    if tls is None:
        return
    for field in ("ca_file", "cert_file", "key_file"):
        path = getattr(tls, field)
        if path is None:
            continue
        if not path.is_file():
            raise PublisherError(f"{who}.tls.{field}: {path} does not exist or is not a file")
        try:
            with open(path, "rb") as fh:
                head = fh.read(64 * 1024)
        except OSError as exc:
            raise PublisherError(f"{who}.tls.{field}: {path}: cannot read: {exc.strerror or exc}") from exc
        if b"-----BEGIN" not in head:
            raise PublisherError(f"{who}.tls.{field}: {path} is not a PEM file (no '-----BEGIN' line)")


def tls_context(conn: MqttConnection, who: str = "mqtt") -> ssl.SSLContext:
    """The client TLS context of ``conn`` (CA, client certificate and key), errors naming the field."""
    tls = conn.tls
    assert tls is not None
    try:
        ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    except (ssl.SSLError, OSError) as exc:
        raise PublisherError(f"{who}.tls.ca_file {tls.ca_file}: not a usable CA certificate: {exc}") from exc
    if tls.cert_file is not None:
        try:
            ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (ssl.SSLError, OSError) as exc:
            raise PublisherError(f"{who}.tls.cert_file {tls.cert_file} / tls.key_file {tls.key_file}: cannot load "
                                 f"the client certificate and key (do they belong together?): {exc}") from exc
    if tls.insecure:
        ctx.check_hostname = False
    return ctx


def connection_problems(conn: MqttConnection, where: str) -> list[str]:
    """What would stop a client of ``conn`` from starting (password file, TLS files), for check-config."""
    problems = []
    for check in (lambda: read_password(conn, where), lambda: check_tls_files(conn, where),
                  lambda: conn.tls is not None and tls_context(conn, where)):
        try:
            check()
        except PublisherError as exc:
            problems.append(str(exc))
            break
    return problems
