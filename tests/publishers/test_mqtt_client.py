"""The shared MQTT client factory against a real Mosquitto with TLS and a password file.

What integrators hit: a wrong CA was logged as "cannot reach broker" (the broker's log said
``unknown ca``), and a typo'd host (``broker..plant.local``) ended paho's network thread with an
IDNA ``UnicodeError``: no retry, no log line, the spool growing forever.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from edge_inspector.metrics import Metrics
from edge_inspector.publishers import MqttConfig, PublisherError, SparkplugConfig, create_publisher
from edge_inspector.publishers.mqtt_client import make_client

from .util import make_verdict, sample, wait_until

FAIL = "edge_inspector_broker_connect_failures_total"


def _cfg(secure, tmp_path, **kw) -> MqttConfig:
    base = dict(host=secure.host, port=secure.tls_port, username=secure.username,
                password_file=secure.password_file, spool_dir=tmp_path / "spool",
                tls={"ca_file": secure.pki["ca.crt"]}, reconnect_min_delay=0.1, reconnect_max_delay=0.3)
    base.update(kw)
    return MqttConfig(**base)


def test_tls_and_password_file_deliver(secure_mosquitto, tmp_path):
    m = Metrics()
    pub = create_publisher(_cfg(secure_mosquitto, tmp_path), line="line1", metrics=m)
    try:
        pub.publish(make_verdict(0))
        wait_until(lambda: sample(m, "edge_inspector_spool_messages") == 0, what="delivery over TLS + password")
        assert sample(m, "edge_inspector_broker_connected") == 1
    finally:
        pub.close()


def test_wrong_ca_is_named_in_the_log_and_the_metric(secure_mosquitto, tmp_path, caplog):
    m = Metrics()
    cfg = _cfg(secure_mosquitto, tmp_path, tls={"ca_file": secure_mosquitto.pki["other-ca.crt"]})
    with caplog.at_level(logging.WARNING, logger="edge_inspector"):
        pub = create_publisher(cfg, line="line1", metrics=m)
        try:
            wait_until(lambda: sample(m, FAIL, {"client": "mqtt", "reason": "tls_unknown_ca"}) >= 2,
                       what="two failed TLS attempts counted as tls_unknown_ca")
        finally:
            pub.close(timeout=0.2)
    text = caplog.text
    assert "TLS certificate verify failed" in text, text
    assert "tls.ca_file" in text and str(cfg.tls.ca_file) in text, text
    assert "cannot reach broker" not in text, text
    assert sample(m, FAIL, {"client": "mqtt", "reason": "network"}) == 0  # exported, and 0


def test_hostname_mismatch_is_named(secure_mosquitto, tmp_path, caplog):
    m = Metrics()
    cfg = _cfg(secure_mosquitto, tmp_path, host="localhost")  # the certificate names only 127.0.0.1
    with caplog.at_level(logging.WARNING, logger="edge_inspector"):
        pub = create_publisher(cfg, line="line1", metrics=m)
        try:
            wait_until(lambda: sample(m, FAIL, {"client": "mqtt", "reason": "tls_hostname_mismatch"}) >= 1,
                       what="a hostname mismatch counted")
        finally:
            pub.close(timeout=0.2)
    assert "hostname mismatch" in caplog.text.lower(), caplog.text


def test_tls_towards_a_plain_port_says_so(secure_mosquitto, tmp_path, caplog):
    m = Metrics()
    cfg = _cfg(secure_mosquitto, tmp_path, port=secure_mosquitto.broker.port)
    with caplog.at_level(logging.WARNING, logger="edge_inspector"):
        pub = create_publisher(cfg, line="line1", metrics=m)
        try:
            wait_until(lambda: sample(m, FAIL, {"client": "mqtt", "reason": "tls_handshake"}) >= 1,
                       what="a TLS handshake failure counted")
        finally:
            pub.close(timeout=0.2)
    assert "TLS handshake" in caplog.text, caplog.text


def test_missing_or_non_pem_tls_file_is_a_clear_error(secure_mosquitto, tmp_path):
    with pytest.raises(PublisherError, match=r"mqtt\.tls\.ca_file: .*does not exist"):
        create_publisher(_cfg(secure_mosquitto, tmp_path, tls={"ca_file": tmp_path / "nope.crt"}),
                         line="l", metrics=Metrics())
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    with pytest.raises(PublisherError, match=r"sparkplug\.tls\.ca_file: .*not a PEM file"):
        create_publisher(SparkplugConfig(host="127.0.0.1", tls={"ca_file": junk}), line="l", metrics=Metrics())


@pytest.mark.parametrize("host", ["broker..plant.local", "x" * 64 + ".plant.local", "bad\ud800host", " broker"])
def test_config_refuses_a_host_the_resolver_cannot_take(host):
    with pytest.raises(ValueError, match="host"):
        MqttConfig(host=host)
    with pytest.raises(ValueError, match="host"):
        SparkplugConfig(host=host)


def test_check_config_names_the_bad_host(tmp_path, detector_card):
    from tests.lineops.util import write_config

    cfg = write_config(tmp_path / "config.yaml", replay=tmp_path, models=f"- path: {detector_card}",
                       publishers=f"- {{type: mqtt, host: broker..plant.local, spool_dir: {tmp_path}/spool}}")
    proc = subprocess.run([sys.executable, "-m", "edge_inspector", "check-config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "publishers" in out and "host" in out and "broker..plant.local" in out, out


def test_a_host_paho_cannot_encode_is_retried_not_fatal(tmp_path, caplog):
    """Config validation is bypassed (as a library user or a future field could): the network thread
    must survive the IDNA error and keep retrying with backoff, logging why."""
    m = Metrics()
    cfg = MqttConfig.model_construct(**{**MqttConfig(host="h", spool_dir=tmp_path / "s").__dict__,
                                        "host": "broker..plant.local", "reconnect_min_delay": 0.05,
                                        "reconnect_max_delay": 0.1})
    with caplog.at_level(logging.WARNING, logger="edge_inspector"):
        client = make_client(cfg, client_id="t-bad-host", who="mqtt", metrics=m)
        client.connect_async(cfg.host, 1883)
        client.loop_start()
        try:
            wait_until(lambda: sample(m, FAIL, {"client": "mqtt", "reason": "bad_host"}) >= 3, timeout=10,
                       what="three retried attempts")
            time.sleep(0.2)
            assert client._thread is not None and client._thread.is_alive()
        finally:
            client.loop_stop()
    assert "not a valid host name" in caplog.text, caplog.text


DOCS_CONSUMER = Path(__file__).resolve().parents[2] / "docs" / "examples" / "mqtt_consumer.py"


def test_documented_consumer_reaches_a_tls_password_broker(secure_mosquitto, tmp_path):
    """docs/examples/mqtt_consumer.py against a broker like deploy/mosquitto's (TLS, no anonymous)."""
    s = secure_mosquitto
    prefix = f"c-{uuid.uuid4().hex[:6]}"
    base = [sys.executable, str(DOCS_CONSUMER), "--host", s.host, "--port", str(s.tls_port), "--prefix", prefix,
            "--username", s.username, "--password-file", str(s.password_file), "--client-id", prefix]
    consumer = subprocess.Popen([*base, "--cafile", str(s.pki["ca.crt"]), "--count", "1"], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    m = Metrics()
    pub = create_publisher(_cfg(s, tmp_path, topic_prefix=prefix), line="line1", metrics=m)
    try:
        first = consumer.stdout.readline()  # the daemon's retained status: the consumer is subscribed
        assert first.strip() == f"{prefix}/line1/status: online", first
        pub.publish(make_verdict(7, verdict="defect"))
        out, _ = consumer.communicate(timeout=20)
    finally:
        pub.close()
        if consumer.poll() is None:
            consumer.kill()
    assert consumer.returncode == 0 and "line1/cam1 frame 7: reject" in out, out
    wrong = subprocess.run([*base, "--cafile", str(s.pki["other-ca.crt"])], capture_output=True, text=True,
                           timeout=20)
    assert wrong.returncode != 0 and "TLS certificate verify failed" in wrong.stderr, wrong.stdout + wrong.stderr


def test_check_config_names_missing_tls_and_password_files(tmp_path, detector_card):
    from tests.lineops.util import write_config

    junk = tmp_path / "ca.crt"
    junk.write_text("not a certificate\n")
    cfg = write_config(tmp_path / "config.yaml", replay=tmp_path, models=f"- path: {detector_card}",
                       publishers=f"- {{type: mqtt, host: broker.plant.local, spool_dir: {tmp_path}/spool, "
                                  f"password_file: {tmp_path}/nope.pw}}\n"
                                  f"- {{type: sparkplug, host: broker.plant.local, tls: {{ca_file: {junk}}}}}")
    proc = subprocess.run([sys.executable, "-m", "edge_inspector", "check-config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "publishers[0] (line" in out and "mqtt.password_file" in out and "nope.pw" in out, out
    assert "publishers[1] (line" in out and "sparkplug.tls.ca_file" in out and "not a PEM file" in out, out
