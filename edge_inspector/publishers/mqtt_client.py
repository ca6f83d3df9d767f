"""One way to build an MQTT client: login, TLS, backoff, last will and named connection errors.

Why one factory: the verdict publisher, the Sparkplug node and the operator-flag listener all talk
to the plant broker, and the security-relevant parts (password files, CA/cert/key files, hostname
checks) and the failure handling used to be written three times, differently (Sparkplug had no
TLS at all). :func:`make_client` builds every one of them from a
:class:`~edge_inspector.publishers.config.MqttConnection`.

What it adds over a bare paho client:

* files are checked when the client is built, and a bad one is a :class:`PublisherError` naming
  the field (``mqtt.tls.ca_file``) and the problem, not an ``ssl`` traceback;
* **every** connection error is retried with the configured backoff. paho's network thread only
  retries ``OSError``; a host name the IDNA codec rejects (``broker..plant.local``) raised a
  ``UnicodeError`` there and silently ended the thread (red team F11). :class:`BrokerClient`
  turns such errors into ``OSError`` so paho's own loop retries them;
* a failed attempt is logged with what actually went wrong -- ``certificate verify failed:
  unable to get local issuer certificate``, ``hostname mismatch``, ``certificate has expired``,
  ``cannot resolve host``, ``connection refused`` -- and counted in
  ``edge_inspector_broker_connect_failures_total{client, reason}``; a TLS failure used to read
  "cannot reach broker" with nothing in the log pointing at the certificate.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_inspector.publishers.base import PublisherError
from edge_inspector.publishers.config import MqttConnection
from edge_inspector.publishers.mqtt_files import check_tls_files, read_password, tls_context

if TYPE_CHECKING:
    from edge_inspector.metrics import Metrics

log = logging.getLogger(__name__)

#: Reason labels of ``broker_connect_failures_total`` (initialised to 0 so alerts can evaluate).
CONNECT_FAILURE_REASONS = ("tls_unknown_ca", "tls_hostname_mismatch", "tls_expired", "tls_verify_failed",
                           "tls_handshake", "dns", "refused", "timeout", "bad_host", "network")

# OpenSSL X509_V_ERR_* codes we name (see openssl/x509_vfy.h).
_UNKNOWN_CA_CODES = {2, 18, 19, 20, 21}
_EXPIRED_CODES = {9, 10}  # not yet valid, has expired
_HOSTNAME_MISMATCH = 62


@dataclass(frozen=True)
class Will:
    """The last will the broker publishes when this client vanishes without a DISCONNECT."""

    topic: str
    payload: bytes | str
    qos: int = 1
    retain: bool = False


@dataclass(frozen=True)
class ConnectFailure:
    """Why one connection attempt failed: a metric label and a sentence for the log."""

    reason: str
    text: str

    @property
    def is_tls(self) -> bool:
        return self.reason.startswith("tls_")


def describe_connect_error(exc: BaseException | None, conn: MqttConnection) -> ConnectFailure:
    """Name what went wrong in a connection attempt, pointing at the setting to check."""
    where = f"{conn.host}:{conn.port}"
    if exc is None:
        return ConnectFailure("network", f"cannot reach broker {where}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", None)
        detail = getattr(exc, "verify_message", None) or str(exc)
        ca = conn.tls.ca_file if conn.tls is not None else None
        if code == _HOSTNAME_MISMATCH or "hostname mismatch" in detail.lower():
            return ConnectFailure("tls_hostname_mismatch",
                                  f"TLS certificate verify failed for broker {where}: hostname mismatch ({detail}); "
                                  "the certificate must name the configured host (subjectAltName)")
        if code in _EXPIRED_CODES:
            return ConnectFailure("tls_expired",
                                  f"TLS certificate verify failed for broker {where}: {detail} (certificate expired "
                                  "or not yet valid: check the broker certificate and this machine's clock)")
        if code in _UNKNOWN_CA_CODES:
            hint = f"tls.ca_file {ca} did not sign it" if ca else "no system CA signed it: set tls.ca_file"
            return ConnectFailure("tls_unknown_ca",
                                  f"TLS certificate verify failed for broker {where}: {detail} ({hint})")
        return ConnectFailure("tls_verify_failed", f"TLS certificate verify failed for broker {where}: {detail}")
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or str(exc)
        hint = ""
        if "CERTIFICATE_REQUIRED" in str(reason).upper():
            hint = " (the broker wants a client certificate: set tls.cert_file and tls.key_file)"
        elif "WRONG_VERSION_NUMBER" in str(reason).upper() or "RECORD_LAYER" in str(reason).upper():
            hint = " (is this port a TLS listener?)"
        elif "UNKNOWN_CA" in str(reason).upper() or "BAD_CERTIFICATE" in str(reason).upper():
            hint = " (the broker refused our client certificate)"
        return ConnectFailure("tls_handshake", f"TLS handshake with broker {where} failed: {reason}{hint}")
    if conn.tls is not None and isinstance(exc, ConnectionResetError | BrokenPipeError):
        return ConnectFailure("tls_handshake", f"TLS handshake with broker {where} failed: the broker closed the "
                              "connection (is this port a TLS listener? 8883 usually is, 1883 is not)")
    if isinstance(exc, socket.gaierror):
        return ConnectFailure("dns", f"cannot resolve broker host {conn.host!r} ({exc.strerror or exc})")
    if isinstance(exc, ConnectionRefusedError):
        return ConnectFailure("refused", f"cannot reach broker {where}: connection refused")
    if isinstance(exc, TimeoutError | socket.timeout):
        return ConnectFailure("timeout", f"cannot reach broker {where}: timed out")
    cause = exc.__cause__ if isinstance(exc, _WrappedError) else exc
    if isinstance(cause, UnicodeError | ValueError):
        return ConnectFailure("bad_host", f"broker host {conn.host!r} is not a valid host name ({cause})")
    return ConnectFailure("network", f"cannot reach broker {where}: {exc}")


class _WrappedError(OSError):
    """A non-OSError from a connection attempt, re-raised as OSError so paho retries it."""


class BrokerClient(mqtt.Client):
    """A paho client whose network thread survives any connection error (and remembers it).

    ``on_connect_fail`` gets no exception from paho; :attr:`last_error` holds it.
    """

    last_error: BaseException | None = None
    #: Failed attempts since the last successful one (log level: WARNING for the first 3, every 50th).
    failed_attempts: int = 0

    def reconnect(self) -> mqtt.MQTTErrorCode:
        try:
            rc = super().reconnect()
        except OSError as exc:
            self.last_error = exc
            raise
        except Exception as exc:  # noqa: BLE001 - IDNA UnicodeError, ValueError...: paho would end its thread
            self.last_error = exc
            raise _WrappedError(str(exc)) from exc
        self.last_error = None
        self.failed_attempts = 0
        return rc


def make_client(
    conn: MqttConnection,
    *,
    client_id: str,
    who: str,
    will: Will | None = None,
    metrics: Metrics | None = None,
    on_connect_fail: Callable[[ConnectFailure], None] | None = None,
    clean_session: bool = True,
) -> BrokerClient:
    """A configured, not yet connected client; call :func:`start` once callbacks are set.

    ``who`` names the client in errors, logs and the ``client`` metric label ("mqtt", "sparkplug",
    "flags", "console"). Raises :class:`PublisherError` for an unreadable password file or a bad TLS file.
    ``clean_session=False`` (with a fixed ``client_id``) is for subscribers that must not miss
    messages while they are away: the broker keeps their subscriptions and queues QoS 1 messages.
    """
    password = read_password(conn, who)
    check_tls_files(conn, who)
    client = BrokerClient(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                          protocol=mqtt.MQTTv311)
    if will is not None:
        client.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
    if conn.username is not None or password is not None:
        client.username_pw_set(conn.username or "", password)
    if conn.tls is not None:
        client.tls_set_context(tls_context(conn, who))
        client.tls_insecure_set(conn.tls.insecure)
    client.reconnect_delay_set(conn.reconnect_min_delay, conn.reconnect_max_delay)  # type: ignore[arg-type]
    if metrics is not None:
        for reason in CONNECT_FAILURE_REASONS:
            metrics.broker_connect_failures_total.labels(client=who, reason=reason)

    def _failed(_client: mqtt.Client, _userdata: Any) -> None:
        failure = describe_connect_error(client.last_error, conn)
        client.failed_attempts += 1
        n = client.failed_attempts
        if metrics is not None:
            metrics.broker_connect_failures_total.labels(client=who, reason=failure.reason).inc()
        loud = n <= 3 or n % 50 == 0
        # A certificate or host-name problem never fixes itself: ERROR, so it stands out from outages.
        level = (logging.ERROR if failure.is_tls or failure.reason == "bad_host" else logging.WARNING) if loud \
            else logging.DEBUG
        log.log(level, "%s %s; retrying with backoff (attempt %d, at most every %g s)", who, failure.text,
                n, conn.reconnect_max_delay)
        if on_connect_fail is not None:
            on_connect_fail(failure)

    client.on_connect_fail = _failed
    return client


def start(client: BrokerClient, conn: MqttConnection, who: str) -> None:
    """Connect in the background (paho's thread, retrying with backoff whatever the error)."""
    try:
        client.connect_async(conn.host, conn.port, keepalive=conn.keepalive)
    except (OSError, ValueError) as exc:
        raise PublisherError(f"{who}: cannot start connecting to {conn.host}:{conn.port}: {exc}") from exc
    client.loop_start()

