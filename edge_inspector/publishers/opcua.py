"""OPC UA server with the last verdict per camera, for PLCs and MES (``publishers: [{type: opcua}]``).

Why a server and not a client: a PLC or SCADA reads (or subscribes to) typed variables on a server
it is configured for; it does not parse JSON. asyncua (pure Python, optional ``[opcua]`` extra) runs
its server in a thread of its own with its own asyncio loop; ``publish`` only queues the verdict
(thread-safe, never blocking the pipeline) and the loop writes the nodes.

Address space (namespace ``namespace_uri``)::

    Objects/EdgeInspector/<line>/<camera>/
        Verdict (String: ok|defect|error)   Defect (Boolean)    Score (Float)     DefectType (String)
        PartId (String)   Frame (UInt32)    CapturedAt (String) Message (String: the verdict JSON)
        OkCount / DefectCount / ErrorCount (UInt32, since the daemon started)
        Trigger(PartId: String)             method: announce a part (edge_inspector/parts.py)

Node ids are strings (``ns=<i>;s=<line>.<camera>.Score``) so a PLC program can hard-code them. The
configured cameras' nodes exist from the start (the daemon calls ``attach_triggers``). Each verdict
writes all of them, ``Frame`` last, so a data-change subscription on ``Frame`` sees one change per
verdict, the first one included (before it, ``Frame`` has status BadWaitingForInitialData).
``Trigger`` announces a part id: the camera's next frame carries it, and a
software-triggered GenICam camera takes that frame; a bad part id gives BadInvalidArgument.

Access: bound to 127.0.0.1 unless ``endpoint`` says otherwise; anonymous sessions are refused unless
``allow_anonymous``; users log in with ``username`` and the password in ``password_file``. With
``certificate_file`` + ``private_key_file`` the only endpoint is Basic256Sha256 SignAndEncrypt (so
the password travels encrypted), and with ``trusted_clients_dir`` only the client certificates in
that folder may connect. Without certificates the endpoint is unencrypted: keep it on loopback.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from edge_inspector.messages import Verdict
from edge_inspector.publishers.base import PublisherError

if TYPE_CHECKING:
    from edge_inspector.metrics import Metrics

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'edge-inspector[opcua]' (asyncua)"


class OpcuaConfig(BaseModel):
    """An OPC UA server with the last verdict of each camera."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    type: Literal["opcua"] = Field(description="OPC UA server (asyncua) with the last verdict per camera.")
    endpoint: str = Field("opc.tcp://127.0.0.1:4840/edge-inspector/", pattern=r"^opc\.tcp://",
                          description="Where the server listens; loopback unless you open it on purpose.")
    namespace_uri: str = Field("urn:edge-inspector", description="Namespace of the verdict nodes.")
    application_uri: str = Field("urn:edge-inspector:server", description="The server's application URI; "
                                 "must match the URI in certificate_file (clients check it).")
    allow_anonymous: bool = Field(False, description="Accept anonymous sessions (off: username + password).")
    username: str | None = Field(None, description="User that may log in.")
    password_file: Path | None = Field(None, description="File holding that user's password (first line).")
    certificate_file: Path | None = Field(
        None, description="Server certificate (DER or PEM). With private_key_file: the only endpoint is "
        "Basic256Sha256 SignAndEncrypt (no unencrypted endpoint, the password travels encrypted).")
    private_key_file: Path | None = Field(None, description="The server certificate's private key (PEM).")
    trusted_clients_dir: Path | None = Field(
        None, description="Folder of client certificates (*.der, *.pem) allowed to connect; others are refused "
        "with BadCertificateUntrusted. None: any client certificate is accepted for encryption.")


def _read_password(cfg: OpcuaConfig) -> str | None:
    if cfg.password_file is None:
        return None
    try:
        return Path(cfg.password_file).read_text().splitlines()[0]
    except (OSError, IndexError) as exc:
        raise PublisherError(f"opcua.password_file {cfg.password_file}: cannot read a password ({exc})") from None


def opcua_problems(cfg: OpcuaConfig) -> list[str]:
    """What would stop this server at start (for check-config and the constructor), without asyncua."""
    problems = []
    if not cfg.allow_anonymous and not (cfg.username and cfg.password_file):
        problems.append("anonymous access is off (allow_anonymous: false) and no username + password_file is set: "
                        "nobody could log in")
    if (cfg.certificate_file is None) != (cfg.private_key_file is None):
        problems.append("certificate_file and private_key_file go together (set both or neither)")
    for field in ("password_file", "certificate_file", "private_key_file", "trusted_clients_dir"):
        path = getattr(cfg, field)
        if path is not None and not Path(path).exists():
            problems.append(f"opcua.{field} {path}: does not exist")
    return problems


FIELDS: tuple[tuple[str, str, Any], ...] = (  # node name, asyncua VariantType name, initial value
    ("Verdict", "String", ""), ("Defect", "Boolean", False), ("Score", "Float", 0.0),
    ("DefectType", "String", ""), ("PartId", "String", ""), ("Frame", "UInt32", 0),
    ("CapturedAt", "String", ""), ("Message", "String", ""),
    ("OkCount", "UInt32", 0), ("DefectCount", "UInt32", 0), ("ErrorCount", "UInt32", 0),
)


class OpcuaPublisher:
    """The OPC UA server; ``publish`` queues, the server's loop writes the nodes."""

    name = "opcua"

    def __init__(self, cfg: OpcuaConfig, *, line: str, metrics: Metrics) -> None:
        try:
            import asyncua  # noqa: F401
        except ImportError:
            raise PublisherError(f"opcua publisher needs asyncua: {INSTALL_HINT}") from None
        if problems := opcua_problems(cfg):
            raise PublisherError(f"opcua: {'; '.join(problems)}")
        self.cfg, self.line, self.metrics = cfg, line, metrics
        self.password = _read_password(cfg)
        self.counts: dict[str, dict[str, int]] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self._loop = asyncio.new_event_loop()
        self._queue: asyncio.Queue[Verdict | None] | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._closed = False
        self._announce: Callable[[str, Any], bool] | None = None
        self._thread = threading.Thread(target=self._run, name="opcua", daemon=True)
        self._thread.start()
        self._started.wait(30)
        if self._error is not None:
            raise PublisherError(f"opcua: cannot start the server on {cfg.endpoint}: {self._error}") from None
        if not self._started.is_set():
            raise PublisherError(f"opcua: the server on {cfg.endpoint} did not start within 30 s")
        log.info("opcua server on %s (namespace %s, anonymous %s)", cfg.endpoint, cfg.namespace_uri,
                 "allowed" if cfg.allow_anonymous else "refused")

    # -- server thread -------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to the constructor, or logged
            if not self._started.is_set():
                self._error = exc
                self._started.set()
            else:
                log.exception("opcua server stopped")

    def _user_manager(self) -> Any:
        """Anonymous only when allowed; else the configured user with its password (constant-time compare)."""
        from asyncua.crypto.permission_rules import User, UserRole

        cfg, secret = self.cfg, self.password

        class Users:
            def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                         certificate: Any = None) -> Any:
                if username is None and password is None:
                    return User(role=UserRole.User) if cfg.allow_anonymous else None
                given = password.encode() if isinstance(password, str) else (password or b"")
                if cfg.username and secret is not None and username == cfg.username and \
                        hmac.compare_digest(given, secret.encode()):
                    return User(role=UserRole.User, name=username)
                log.warning("opcua: login refused for user %r", username)
                return None

        return Users()

    def _client_validator(self) -> Any:
        """Only client certificates present in ``trusted_clients_dir`` (compared by SHA-256 fingerprint)."""
        from asyncua import ua
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        folder = Path(self.cfg.trusted_clients_dir)
        trusted = set()
        for path in sorted(folder.glob("*")):
            if path.suffix.lower() in (".der", ".pem", ".crt"):
                data = path.read_bytes()
                der = path.suffix.lower() == ".der"
                cert = x509.load_der_x509_certificate(data) if der else x509.load_pem_x509_certificate(data)
                trusted.add(cert.fingerprint(hashes.SHA256()))
        log.info("opcua: %d trusted client certificate(s) in %s", len(trusted), folder)

        async def validate(cert: Any, app_description: Any) -> None:
            if cert.fingerprint(hashes.SHA256()) not in trusted:
                log.warning("opcua: client certificate %s is not in trusted_clients_dir %s; refused",
                            cert.subject.rfc4514_string(), folder)
                raise ua.uaerrors.BadCertificateUntrusted

        return validate

    async def _serve(self) -> None:
        from asyncua import Server, ua

        self.ua = ua
        server = Server(user_manager=self._user_manager())
        await server.init()
        server.set_endpoint(self.cfg.endpoint)
        server.set_server_name("edge-inspector")
        await server.set_application_uri(self.cfg.application_uri)
        if self.cfg.certificate_file is not None:
            await server.load_certificate(str(self.cfg.certificate_file))
            await server.load_private_key(str(self.cfg.private_key_file))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            if self.cfg.trusted_clients_dir is not None:
                server.set_certificate_validator(self._client_validator())
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_security_IDs(["Anonymous", "Username"] if self.cfg.allow_anonymous else ["Username"])
        self.ns = await server.register_namespace(self.cfg.namespace_uri)
        root = await server.nodes.objects.add_folder(ua.NodeId("EdgeInspector", self.ns), "EdgeInspector")
        self.line_folder = await root.add_folder(ua.NodeId(self.line, self.ns), self.line)
        self._queue = asyncio.Queue()
        await server.start()
        self._started.set()
        try:
            while (verdict := await self._queue.get()) is not None:
                try:
                    await self._write(verdict)
                except Exception:  # noqa: BLE001 - one bad write must not stop the server
                    self.metrics.publish_failures_total.labels(sink=self.name).inc()
                    log.exception("opcua: writing verdict %s/%s failed", verdict.camera, verdict.frame)
        finally:
            await server.stop()

    async def _camera_nodes(self, camera: str) -> dict[str, Any]:
        nodes = self.nodes.get(camera)
        if nodes is None:
            ua = self.ua
            folder = await self.line_folder.add_folder(ua.NodeId(f"{self.line}.{camera}", self.ns), camera)
            nodes = {}
            for name, vtype, initial in FIELDS:
                nodes[name] = await folder.add_variable(ua.NodeId(f"{self.line}.{camera}.{name}", self.ns), name,
                                                        ua.Variant(initial, getattr(ua.VariantType, vtype)))
            # no verdict yet: Frame says so (a status, not a fake frame 0), so a subscriber is notified of
            # the first verdict too (value 0 with status Good is a change from BadWaitingForInitialData)
            await nodes["Frame"].write_value(ua.DataValue(ua.Variant(0, ua.VariantType.UInt32),
                                                          ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)))
            part_arg = ua.Argument(Name="PartId", DataType=ua.NodeId(ua.ObjectIds.String), ValueRank=-1,
                                   Description=ua.LocalizedText("part id the next frame of this camera carries"))
            nodes["Trigger"] = await folder.add_method(
                ua.NodeId(f"{self.line}.{camera}.Trigger", self.ns), "Trigger",
                lambda parent, part_id, c=camera: self._trigger(c, part_id), [part_arg], [])
            self.nodes[camera] = nodes
            self.counts[camera] = {"ok": 0, "defect": 0, "error": 0}
        return nodes

    async def _write(self, v: Verdict) -> None:
        ua = self.ua
        nodes = await self._camera_nodes(v.camera)
        counts = self.counts[v.camera]
        counts[v.verdict] += 1
        values = {"Verdict": v.verdict, "Defect": v.verdict == "defect", "Score": float(v.score or 0.0),
                  "DefectType": v.defect_type or "", "PartId": v.part_id or "", "CapturedAt": v.captured_at,
                  "Message": v.to_json(), "OkCount": counts["ok"], "DefectCount": counts["defect"],
                  "ErrorCount": counts["error"], "Frame": max(0, v.frame) % 2**32}
        for name, vtype, _ in FIELDS:  # Frame last: a subscriber on Frame reads a complete verdict
            if name != "Frame":
                await nodes[name].write_value(ua.Variant(values[name], getattr(ua.VariantType, vtype)))
        await nodes["Frame"].write_value(ua.Variant(values["Frame"], ua.VariantType.UInt32))

    # -- part triggers ---------------------------------------------------------------------------
    def attach_triggers(self, announce: Callable[[str, Any], bool], cameras: list[str]) -> None:
        """Called by the daemon: create the configured cameras' nodes now (a software-triggered camera
        has no verdict before its first trigger) with their ``Trigger(PartId)`` method."""
        self._announce = announce
        if self._closed or not self._loop.is_running():
            return
        future = asyncio.run_coroutine_threadsafe(self._attach(cameras), self._loop)
        try:
            future.result(10)
        except Exception as exc:  # noqa: BLE001 - the verdict nodes still work without the method
            log.error("opcua: cannot create the nodes of cameras %s: %s", cameras, exc)

    async def _attach(self, cameras: list[str]) -> None:
        for camera in cameras:
            await self._camera_nodes(camera)

    def _trigger(self, camera: str, part_id: Any) -> Any:
        """``Trigger(PartId)``: announce the part (its next frame carries it; a software-triggered camera
        takes it now). A bad part id or an unknown camera is refused with a Bad status code."""
        from edge_inspector.parts import PartTrigger

        ua = self.ua
        value = part_id.Value if isinstance(part_id, ua.Variant) else part_id
        try:
            trigger = PartTrigger.parse(json.dumps({"part_id": value}), f"opcua {self.line}.{camera}.Trigger")
        except ValueError as exc:
            log.warning("opcua: %s", exc)
            return ua.StatusCode(ua.StatusCodes.BadInvalidArgument)
        announce = self._announce
        if announce is None or not announce(camera, trigger):
            log.warning("opcua: Trigger for camera %s, which is not running in this daemon", camera)
            return ua.StatusCode(ua.StatusCodes.BadNotFound)
        log.info("camera %s: part %s triggered over OPC UA", camera, trigger.part_id)
        return []

    # -- publisher contract --------------------------------------------------------------------
    def publish(self, verdict: Verdict) -> None:
        if self._closed or self._queue is None:
            self.metrics.publish_failures_total.labels(sink=self.name).inc()
            return
        self._loop.call_soon_threadsafe(self._queue.put_nowait, verdict)

    def close(self, timeout: float = 10.0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._queue is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._queue.put_nowait, None)
        self._thread.join(timeout)
