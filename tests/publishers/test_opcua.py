"""OPC UA server of the REAL daemon (watched folder), read and subscribed to with an asyncua client on
loopback: typed nodes per camera, one data change per verdict, anonymous login refused."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.broker import free_port
from tests.fixtures.models import write_frames
from tests.runtime.test_daemon import DaemonProc, read_jsonl, wait_until, write_config

ROOT = Path(__file__).resolve().parents[2]


def test_without_asyncua_the_publisher_names_the_extra(tmp_path):
    """The runtime installs without [opcua]: configs validate, the publisher fails with what to install."""
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['asyncua'] = None\n")
    code = ("from edge_inspector.publishers import create_publisher, PublisherError, OpcuaConfig\n"
            "from edge_inspector.metrics import Metrics\n"
            "try:\n    create_publisher(OpcuaConfig(type='opcua', allow_anonymous=True), line='l', metrics=Metrics())\n"
            "except PublisherError as e:\n    print('ERR', e)\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert "ERR opcua publisher needs asyncua: pip install 'edge-inspector[opcua]'" in out.stdout, out.stderr


def test_no_anonymous_and_no_user_is_refused(tmp_path):
    from edge_inspector.metrics import Metrics
    from edge_inspector.publishers import OpcuaConfig, PublisherError, create_publisher

    with pytest.raises(PublisherError, match="anonymous access is off .* nobody could log in"):
        create_publisher(OpcuaConfig(type="opcua"), line="l", metrics=Metrics())


async def _client_session(url: str, password: str, files, inbox, daemon, results: dict) -> None:
    from asyncua import Client, ua

    anon = Client(url)
    with pytest.raises(ua.UaStatusCodeError) as refused:
        await anon.connect()
    results["anonymous"] = type(refused.value).__name__
    try:
        await anon.disconnect()
    except Exception:  # noqa: BLE001 - the refused session may already be gone
        pass

    wrong = Client(url)
    wrong.set_user("plc")
    wrong.set_password("not-it")
    with pytest.raises(ua.UaStatusCodeError):
        await wrong.connect()

    client = Client(url)
    client.set_user("plc")
    client.set_password(password)
    async with client:
        ns = await client.get_namespace_index("urn:edge-inspector")
        changes: list[int] = []

        class Handler:
            def datachange_notification(self, node, val, data):  # noqa: ANN001 - asyncua's callback
                changes.append(val)

        # the camera's nodes appear with its first verdict
        shutil.copy(files[0], inbox / files[0].name)
        frame = client.get_node(f"ns={ns};s=line-1.cam-0.Frame")
        for _ in range(200):
            try:
                await frame.read_value()
                break
            except ua.UaStatusCodeError:
                await asyncio.sleep(0.05)
        sub = await client.create_subscription(50, Handler())
        await sub.subscribe_data_change(frame)
        await asyncio.sleep(0.3)
        for f in files[1:]:
            shutil.copy(f, inbox / f.name)
            await asyncio.sleep(0.4)  # one part at a time, as on a line
        for _ in range(100):
            if len(read_jsonl(inbox.parent / "verdicts.jsonl")) >= len(files) and len(changes) >= len(files):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)
        node = lambda name: client.get_node(f"ns={ns};s=line-1.cam-0.{name}")  # noqa: E731
        results["values"] = {name: await node(name).read_value() for name in
                             ("Verdict", "Defect", "Score", "DefectType", "PartId", "Frame", "OkCount", "DefectCount",
                              "ErrorCount", "Message")}
        results["types"] = {name: (await node(name).read_data_type_as_variant_type()).name
                            for name in ("Verdict", "Defect", "Score", "Frame", "OkCount")}
        results["changes"] = list(changes)
        await sub.delete()
        # the Trigger method announces a part: the next frame (a file without a part id in its name) carries it
        cam = client.get_node(f"ns={ns};s=line-1.cam-0")
        trigger = client.get_node(f"ns={ns};s=line-1.cam-0.Trigger")
        with pytest.raises(ua.UaStatusCodeError) as bad:
            await cam.call_method(trigger, ua.Variant("", ua.VariantType.String))
        results["bad_trigger"] = type(bad.value).__name__
        await cam.call_method(trigger, ua.Variant("P-9", ua.VariantType.String))
        shutil.copy(files[0], inbox / "extra.png")
        for _ in range(100):
            if await node("PartId").read_value() == "P-9":
                break
            await asyncio.sleep(0.1)
        results["triggered_part"] = await node("PartId").read_value()


def test_daemon_serves_verdicts_over_opcua(tmp_path, detector_card):
    pytest.importorskip("asyncua", reason="asyncua not installed (pip install 'edge-inspector[opcua]')")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "opcua.pw").write_text("s3cret-plc\n")
    port = free_port()
    url = f"opc.tcp://127.0.0.1:{port}/edge-inspector/"
    cfg = write_config(
        tmp_path / "config.yaml", models=[detector_card],
        camera=f"{{type: folder, path: {inbox}, settle_ms: 50, poll_ms: 20, "
               "part_id_pattern: '^(?P<part_id>frame_[0-9]+)'}",
        publishers=f"""\
            - {{type: opcua, endpoint: "{url}", username: plc, password_file: opcua.pw}}
            - {{type: jsonl, path: {tmp_path}/verdicts.jsonl}}
            """)
    files = sorted(write_frames(tmp_path / "staging", n=4, defect_every=3).glob("*.png"))
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    results: dict = {}
    try:
        wait_until(lambda: "opcua server on" in daemon.output(), what="OPC UA server", proc=daemon)
        asyncio.run(asyncio.wait_for(_client_session(url, "s3cret-plc", files, inbox, daemon, results), 60))
    finally:
        daemon.kill()
    out = read_jsonl(tmp_path / "verdicts.jsonl")
    assert len(out) == 5 and out[-1]["part_id"] == "P-9" and results["triggered_part"] == "P-9"
    assert results["bad_trigger"] == "BadInvalidArgument"
    assert "field 'part_id' must be a non-empty string" in daemon.output()
    out, last = out[:4], out[3]
    values = results["values"]
    assert results["anonymous"] in ("BadIdentityTokenRejected", "BadIdentityTokenInvalid", "BadUserAccessDenied")
    assert values["Frame"] == last["frame"] == 3 and values["Verdict"] == last["verdict"]
    assert values["PartId"] == "frame_00003" and values["Defect"] == (last["verdict"] == "defect")
    assert values["Score"] == pytest.approx(last["score"], abs=1e-6)
    counts = {k: sum(v["verdict"] == k for v in out) for k in ("ok", "defect", "error")}
    assert (values["OkCount"], values["DefectCount"], values["ErrorCount"]) == (counts["ok"], counts["defect"], 0)
    assert json.loads(values["Message"])["frame"] == 3
    assert results["types"] == {"Verdict": "String", "Defect": "Boolean", "Score": "Float", "Frame": "UInt32",
                                "OkCount": "UInt32"}
    # the subscription's initial value, then one change per later verdict
    assert results["changes"][-3:] == [1, 2, 3], results["changes"]
    assert "opcua: login refused for user 'plc'" in daemon.output()


def _make_cert(folder: Path, name: str, uri: str, server: bool) -> tuple[Path, Path]:
    from asyncua.crypto import cert_gen
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    key = cert_gen.generate_private_key()
    cert = cert_gen.generate_self_signed_app_certificate(
        key, name, {"organizationName": "edge-inspector tests"},
        [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost"),
         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH])
    cert_path, key_path = folder / f"{name}.der", folder / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    return cert_path, key_path


def test_basic256sha256_sign_and_encrypt_with_trusted_client_certificates(tmp_path, detector_card):
    """Certificates set: the only endpoint is Basic256Sha256 SignAndEncrypt; a trusted client reads the
    verdict nodes, an unencrypted client and a client with an unknown certificate are refused."""
    pytest.importorskip("asyncua", reason="asyncua not installed (pip install 'edge-inspector[opcua]')")
    from asyncua import Client, ua

    certs, trusted = tmp_path / "certs", tmp_path / "trusted"
    certs.mkdir()
    trusted.mkdir()
    server_cert, server_key = _make_cert(certs, "server", "urn:edge-inspector:server", server=True)
    client_cert, client_key = _make_cert(certs, "plc", "urn:plant:plc", server=True)
    stranger_cert, stranger_key = _make_cert(certs, "stranger", "urn:plant:stranger", server=True)
    shutil.copy(client_cert, trusted / "plc.der")
    (tmp_path / "opcua.pw").write_text("s3cret-plc\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge-inspector/"
    cfg = write_config(
        tmp_path / "config.yaml", models=[detector_card],
        camera=f"{{type: folder, path: {inbox}, settle_ms: 50, poll_ms: 20}}",
        publishers=f"""\
            - {{type: opcua, endpoint: "{url}", username: plc, password_file: opcua.pw,
                certificate_file: {server_cert}, private_key_file: {server_key}, trusted_clients_dir: {trusted}}}
            """)
    files = sorted(write_frames(tmp_path / "staging", n=1).glob("*.png"))
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)

    async def session() -> dict:
        out: dict = {}
        plain = Client(url)
        plain.set_user("plc")
        plain.set_password("s3cret-plc")
        with pytest.raises((ua.UaError, ua.UaStatusCodeError, OSError, asyncio.TimeoutError)):
            await plain.connect()  # no unencrypted endpoint
        stranger = Client(url)
        stranger.application_uri = "urn:plant:stranger"
        await stranger.set_security_string(f"Basic256Sha256,SignAndEncrypt,{stranger_cert},{stranger_key}")
        stranger.set_user("plc")
        stranger.set_password("s3cret-plc")
        with pytest.raises((ua.UaError, ua.UaStatusCodeError, OSError, asyncio.TimeoutError)):
            await stranger.connect()
        client = Client(url)
        client.application_uri = "urn:plant:plc"
        await client.set_security_string(f"Basic256Sha256,SignAndEncrypt,{client_cert},{client_key}")
        client.set_user("plc")
        client.set_password("s3cret-plc")
        async with client:
            ns = await client.get_namespace_index("urn:edge-inspector")
            shutil.copy(files[0], inbox / files[0].name)
            node = client.get_node(f"ns={ns};s=line-1.cam-0.Verdict")
            for _ in range(100):
                if (value := await node.read_value()):
                    break
                await asyncio.sleep(0.1)
            out["verdict"] = value
            out["policy"] = client.security_policy.URI
        return out

    try:
        wait_until(lambda: "opcua server on" in daemon.output(), what="OPC UA server", proc=daemon)
        out = asyncio.run(asyncio.wait_for(session(), 60))
    finally:
        daemon.kill()
    assert out["verdict"] in ("ok", "defect") and out["policy"].endswith("#Basic256Sha256")
    assert "client certificate" in daemon.output() and "stranger" in daemon.output()


NODE_CLIENT = Path(__file__).parent / "opcua_node"


def test_node_opcua_client_reads_and_subscribes(tmp_path, detector_card):
    """An independent implementation (node-opcua) against the daemon's server: anonymous refused, typed
    values readable, one data change per verdict (the first one included)."""
    pytest.importorskip("asyncua", reason="asyncua not installed (pip install 'edge-inspector[opcua]')")
    node = shutil.which("node")
    if node is None or not (NODE_CLIENT / "node_modules" / "node-opcua-client").is_dir():
        pytest.skip("node or node-opcua-client missing (tools/bootstrap.sh: npm ci in tests/publishers/opcua_node)")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (tmp_path / "opcua.pw").write_text("s3cret-plc\n")
    url = f"opc.tcp://127.0.0.1:{free_port()}/edge-inspector/"
    cfg = write_config(
        tmp_path / "config.yaml", models=[detector_card],
        camera=f"{{type: folder, path: {inbox}, settle_ms: 50, poll_ms: 20}}",
        publishers=f"""\
            - {{type: opcua, endpoint: "{url}", username: plc, password_file: opcua.pw}}
            - {{type: jsonl, path: {tmp_path}/verdicts.jsonl}}
            """)
    files = sorted(write_frames(tmp_path / "staging", n=3, defect_every=3).glob("*.png"))
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    client = None
    try:
        wait_until(lambda: "opcua server on" in daemon.output(), what="OPC UA server", proc=daemon)
        client = subprocess.Popen([node, str(NODE_CLIENT / "client.js"), url, "plc", "s3cret-plc", "line-1", "cam-0",
                                   "3"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        while not lines or "ready" not in lines[-1]:
            line = client.stdout.readline()
            assert line, f"node client ended early: {''.join(lines)}"
            lines.append(json.loads(line) if line.startswith("{") else {"text": line})
        for f in files:
            shutil.copy(f, inbox / f.name)
            time.sleep(0.4)
        rest, _ = client.communicate(timeout=40)
    finally:
        if client is not None and client.poll() is None:
            client.kill()
        daemon.kill()
    msgs = lines + [json.loads(x) for x in rest.splitlines() if x.startswith("{")]
    assert client.returncode == 0, rest
    assert [m.get("anonymous") for m in msgs if "anonymous" in m] == ["refused"], msgs
    final = msgs[-1]
    out = read_jsonl(tmp_path / "verdicts.jsonl")
    assert final["changes"] == [0, 1, 2] == [v["frame"] for v in out]
    values = final["values"]
    assert values["Verdict"] == {"value": out[-1]["verdict"], "type": "String"}
    assert values["Defect"]["type"] == "Boolean" and values["Score"]["type"] == "Float"
    assert values["Frame"] == {"value": 2, "type": "UInt32"} and values["OkCount"]["type"] == "UInt32"
    assert values["OkCount"]["value"] + values["DefectCount"]["value"] == 3


def test_check_config_reports_opcua_problems(tmp_path, detector_card):
    cfg = write_config(tmp_path / "config.yaml", models=[detector_card], camera="{type: folder, path: inbox}",
                       publishers="- {type: opcua, username: plc, password_file: missing.pw, "
                                  "certificate_file: server.der}\n")
    proc = subprocess.run([sys.executable, "-m", "edge_inspector", "check-config", str(cfg)], cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "(opcua opc.tcp://127.0.0.1:4840/edge-inspector/)" in out and "3 problem(s)" in out
    assert "certificate_file and private_key_file go together" in out and "missing.pw: does not exist" in out
