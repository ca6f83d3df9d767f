"""deploy/mosquitto/mosquitto.conf runs on a real Mosquitto: auth enforced, retained status persisted."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_inspector.metrics import Metrics
from edge_inspector.publishers import MqttConfig, create_publisher, status_topic
from tests.fixtures.broker import Mosquitto

from .util import make_verdict, sample, wait_until

CONF = Path(__file__).resolve().parents[2] / "deploy/mosquitto/mosquitto.conf"


def _local_copy(broker: Mosquitto, tmp_path: Path, passwd: Path) -> str:
    text = CONF.read_text()
    text = re.sub(r"^listener 1883 0\.0\.0\.0$", f"listener {broker.port} 127.0.0.1", text, flags=re.M)
    text = re.sub(r"^persistence_location .*$", f"persistence_location {tmp_path}/", text, flags=re.M)
    text = re.sub(r"^password_file .*$", f"password_file {passwd}", text, flags=re.M)
    text = re.sub(r"^log_dest syslog$", "log_dest stderr", text, flags=re.M)
    assert f"listener {broker.port} 127.0.0.1" in text and str(passwd) in text, "deploy config changed shape"
    return text + "user root\n"


def test_deploy_config_enforces_auth_and_persists_retained_status(tmp_path):
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "edge-inspector", "pw1"], check=True,
                   capture_output=True)
    broker = Mosquitto(tmp_path)
    broker.conf.write_text(_local_copy(broker, tmp_path, passwd))
    broker.start()
    try:
        refused = threading.Event()
        anon = mqtt.Client(CallbackAPIVersion.VERSION2)
        anon.on_connect = lambda c, u, f, rc, p: refused.set() if rc.is_failure else None
        anon.connect(broker.host, broker.port)
        anon.loop_start()
        assert refused.wait(5), "anonymous client was accepted"
        anon.loop_stop()

        secret = tmp_path / "cred"
        secret.write_text("pw1")
        m = Metrics()
        cfg = MqttConfig(host=broker.host, port=broker.port, username="edge-inspector", password_file=secret,
                         spool_dir=tmp_path / "spool", reconnect_min_delay=0.1, reconnect_max_delay=0.5)
        pub = create_publisher(cfg, line="line9", metrics=m)
        pub.publish(make_verdict(1, line="line9"))
        wait_until(lambda: sample(m, "edge_inspector_spool_messages") == 0, what="delivery with password_file")
        pub.close()
        broker.stop()  # persistence true: the retained "offline" is saved on shutdown
        broker.start()

        got: list[bytes] = []
        done = threading.Event()
        reader = mqtt.Client(CallbackAPIVersion.VERSION2)
        reader.username_pw_set("edge-inspector", "pw1")
        reader.on_connect = lambda c, u, f, rc, p: c.subscribe(status_topic("edge-inspector", "line9"), qos=1)
        reader.on_message = lambda c, u, msg: (got.append(msg.payload), done.set())
        reader.connect(broker.host, broker.port)
        reader.loop_start()
        try:
            assert done.wait(5), "retained status lost across the broker restart"
            assert got[0] == b"offline"
        finally:
            reader.disconnect()
            reader.loop_stop()
    finally:
        broker.stop()
