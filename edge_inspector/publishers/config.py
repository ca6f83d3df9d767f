"""Pydantic configs of the publishers, one per ``type`` (the YAML ``publishers:`` list items).

Kept apart from the implementations so that validating a configuration (``check-config``) imports
neither paho nor pyzmq.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

OverflowPolicy = Literal["drop-oldest", "drop-newest"]


class MqttTlsConfig(BaseModel):
    """TLS towards the broker; files are PEM (with systemd ``LoadCredential=`` for the key)."""

    model_config = ConfigDict(extra="forbid")
    ca_file: Path | None = Field(None, description="CA bundle that signed the broker certificate; None = system CAs.")
    cert_file: Path | None = Field(None, description="Client certificate for mutual TLS (needs key_file).")
    key_file: Path | None = Field(None, description="Private key of cert_file, e.g. $CREDENTIALS_DIRECTORY/mqtt.key.")
    insecure: bool = Field(False, description="Skip broker hostname verification (testing only).")

    @model_validator(mode="after")
    def _cert_needs_key(self) -> MqttTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("tls.cert_file and tls.key_file must be given together")
        return self


def check_host(host: str) -> str:
    """``host`` as the resolver will see it, or ValueError saying what is wrong with it.

    Why here: paho resolves the name on its network thread, where an IDNA error (an empty label
    as in ``broker..plant.local``, a label over 63 characters, a lone surrogate) is not an
    ``OSError`` and used to end the thread without a retry; check-config now refuses it.
    """
    import ipaddress

    text = host.strip()
    if not text or text != host:
        raise ValueError(f"host {host!r} must be a host name or IP address without spaces")
    try:
        ipaddress.ip_address(text.strip("[]"))
        return host
    except ValueError:
        pass
    if len(text) > 253:
        raise ValueError(f"host {host[:40]!r}... is {len(text)} characters; a DNS name has at most 253")
    for label in text.rstrip(".").split("."):
        if not label or len(label) > 63:
            raise ValueError(f"host {host!r}: DNS label {label!r} must be 1-63 characters (no empty part, "
                             "e.g. no '..')")
        if any(c.isspace() or c in "/:@#?" for c in label):
            raise ValueError(f"host {host!r}: label {label!r} contains a character a host name cannot have")
        try:
            label.encode("idna")
        except UnicodeError as exc:
            raise ValueError(f"host {host!r}: label {label!r} is not a valid host name ({exc})") from None
    return host


class MqttConnection(BaseModel):
    """How to reach and log into an MQTT broker: shared by the MQTT and Sparkplug publishers.

    Why one model: authentication, TLS and reconnect backoff are security-relevant and were
    written three times; every MQTT client of the daemon (verdict publisher, Sparkplug node,
    operator-flag listener) is now built by :func:`edge_inspector.publishers.mqtt_client.make_client`
    from this model.
    """

    model_config = ConfigDict(extra="forbid")
    host: str = Field(description="Broker host name or IP address (checked: no empty or over-long DNS label).")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port (8883 is usual with TLS).")
    client_id: str | None = Field(
        None, description="MQTT client id; default 'edge-inspector-<line>-<hostname>' (stable across restarts)."
    )
    username: str | None = Field(None, description="Broker user name.")
    password: SecretStr | None = Field(None, description="Broker password (prefer password_file).")
    password_file: Path | None = Field(
        None, description="File holding the password (read at start), e.g. $CREDENTIALS_DIRECTORY/mqtt-password."
    )
    tls: MqttTlsConfig | None = Field(None, description="TLS settings; omit for plain TCP.")
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds (bounds last-will latency).")
    reconnect_min_delay: float = Field(1.0, gt=0, description="First reconnect delay in seconds (then doubled).")
    reconnect_max_delay: float = Field(
        10.0, gt=0, description="Largest reconnect delay in seconds: delivery resumes at most this long after "
        "the broker is back (10 s suits a line; raise it for many daemons on one broker).")

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_host(value)

    @model_validator(mode="after")
    def _check_connection(self) -> MqttConnection:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        if self.reconnect_max_delay < self.reconnect_min_delay:
            raise ValueError(
                f"reconnect_max_delay ({self.reconnect_max_delay}) must be >= reconnect_min_delay "
                f"({self.reconnect_min_delay})"
            )
        return self


class MqttConfig(MqttConnection):
    """MQTT sink: QoS>=1 verdicts through a disk spool, retained online/offline status."""

    type: Literal["mqtt"] = Field("mqtt", description="Selects the MQTT publisher.")
    topic_prefix: str = Field("edge-inspector", min_length=1, description="First topic level of every topic.")
    qos: Literal[1, 2] = Field(1, description="QoS of verdict messages (0 is refused: it cannot be acknowledged).")
    spool_dir: Path = Field(
        Path("/var/lib/edge-inspector/mqtt-spool"),
        description="Directory of the on-disk spool (SQLite WAL) holding verdicts until the broker acknowledges.",
    )
    spool_max_messages: int = Field(1_000_000, ge=1, description="Spool capacity in messages.")
    spool_overflow: OverflowPolicy = Field(
        "drop-oldest",
        description="When the spool is full: drop the oldest spooled verdict or refuse the newest; counted and logged.",
    )
    max_inflight: int = Field(20, ge=1, le=1000, description="Verdicts sent but not yet acknowledged, at most.")

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if any(c in self.topic_prefix for c in "#+") or self.topic_prefix.startswith("/"):
            raise ValueError(f"topic_prefix {self.topic_prefix!r} must not contain '#', '+' or start with '/'")
        return self


class ZmqConfig(BaseModel):
    """ZeroMQ PUB sink: multipart [topic, json], never blocking the pipeline."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["zmq"] = Field("zmq", description="Selects the ZeroMQ PUB publisher.")
    endpoint: str = Field("tcp://127.0.0.1:5556", description="ZeroMQ endpoint, e.g. tcp://127.0.0.1:5556 or ipc://...")
    bind: bool = Field(True, description="Bind the endpoint (True) or connect to it, e.g. to an XSUB proxy (False).")
    sndhwm: int = Field(1000, ge=1, le=10_000_000,
                        description="Send high-water mark per subscriber; beyond it messages are dropped.")
    topic_prefix: str = Field("edge-inspector", min_length=1, description="First level of the topic frame.")
    slow_subscriber: Literal["count", "isolate"] = Field(
        "count", description="A subscriber that stops reading: 'count' (XPUB_NODROP) fails the send once it is at "
        "its HWM, for every subscriber, and counts it in publish_failures_total; 'isolate' lets only that "
        "subscriber lose messages (others unaffected), which the daemon cannot count. With curve_clients_dir "
        "only known consumers can subscribe at all.")
    join_grace_ms: int = Field(
        500, ge=0, le=60_000, description="Verdicts of the first this-many ms after the socket is bound are held "
        "and sent when the time is up, so subscribers that were waiting for the daemon (ZeroMQ reconnects every "
        "100 ms) get them too (the 'slow joiner').")
    curve_secret_key_file: Path | None = Field(
        None, description="CurveZMQ: this publisher's certificate with its secret key (as written by "
        "zmq.auth.create_certificates, '<name>.key_secret'). Set: traffic is encrypted and subscribers must know "
        "the publisher's public key.")
    curve_clients_dir: Path | None = Field(
        None, description="CurveZMQ: folder of subscribers' public certificates ('*.key'); only those may "
        "subscribe. None with curve_secret_key_file: any subscriber that knows the publisher's public key.")


class JsonlConfig(BaseModel):
    """Local JSON-lines file sink: one verdict per line, with size rotation."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["jsonl"] = Field("jsonl", description="Selects the JSON-lines file publisher.")
    path: Path = Field(description="File the verdicts are appended to (parent directory is created).")
    rotate_size_mb: float | None = Field(
        100.0, gt=0, description="Rotate to <path>.1 when the file exceeds this size in MB; None = never."
    )
    rotate_keep: int = Field(5, ge=1, description="Rotated files kept (<path>.1 ... <path>.N).")
    fsync: bool = Field(False, description="fsync after every line (durable, slower on SD cards/eMMC).")


class SparkplugConfig(MqttConnection):
    """Sparkplug B edge node on MQTT, for PLC/MES bridges that expect it (Ignition, Tahu hosts).

    Topics ``spBv1.0/<group_id>/<NBIRTH|NDEATH|DBIRTH|DDATA|DDEATH>/<edge_node_id>/<camera>``;
    one device per camera. State, not history: verdicts produced while the broker is away are not
    spooled (the MQTT publisher does that); the DBIRTH after reconnecting carries the current state.
    Connection, login, TLS and backoff are those of the MQTT publisher (:class:`MqttConnection`).
    """

    type: Literal["sparkplug"] = Field("sparkplug", description="Selects the Sparkplug B publisher.")
    client_id: str | None = Field(None, description="MQTT client id; default 'edge-inspector-spb-<line>'.")
    keepalive: int = Field(30, ge=5, le=3600, description="MQTT keepalive in seconds (bounds NDEATH latency).")
    group_id: str = Field("edge-inspector", min_length=1,
                          description="Sparkplug group id (first topic level after spBv1.0).")
    edge_node_id: str | None = Field(None, description="Sparkplug edge node id; default: the line id.")
    primary_host_id: str | None = Field(
        None, description="Sparkplug 3.0 primary host application id: the node watches spBv1.0/STATE/<id> and "
        "publishes its births only while that host is online; when the host goes offline it ends its session "
        "(NDEATH) and waits. None: publish whenever connected.")
    bdseq_file: Path | None = Field(
        None, description="File keeping the birth/death sequence number across restarts (recommended by the spec); "
        "None: it starts at 0 with every run.")

    @model_validator(mode="after")
    def _ids(self) -> SparkplugConfig:
        for name in ("group_id", "edge_node_id"):
            value = getattr(self, name)
            if value is not None and any(c in value for c in "/#+"):
                raise ValueError(f"{name} {value!r} must not contain '/', '#' or '+'")
        if self.primary_host_id is not None and (not self.primary_host_id
                                                 or any(c in self.primary_host_id for c in "/#+")):
            raise ValueError(f"primary_host_id {self.primary_host_id!r} must be non-empty without '/', '#' or '+'")
        return self
