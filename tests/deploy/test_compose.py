"""deploy/compose.yaml, deploy/container/ and the Containerfile agree with each other and with the daemon.

No container runtime needed: the files are parsed and cross-checked (the image itself is built and
run in test_image.py). Each check names the file and the field that went wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from edge_inspector.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
CONTAINERFILE = (ROOT / "Containerfile").read_text()


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(s|m)", value)
    assert m, f"deploy/compose.yaml: duration {value!r}: expected e.g. 70s"
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


def test_container_config_is_valid_and_uses_the_image_paths() -> None:
    cfg = load_config(DEPLOY / "container" / "config.yaml")
    daemon = COMPOSE["services"]["edge-inspector"]
    state = next(v.split(":")[1] for v in daemon["volumes"] if v.startswith("edge-state:"))
    assert state == "/var/lib/edge-inspector" and f'VOLUME ["{state}"]' in CONTAINERFILE
    mqtt = next(p for p in cfg.publishers if p.type == "mqtt")
    assert str(mqtt.spool_dir).startswith(state), "the MQTT spool must be on the state volume"
    assert str(cfg.state_dir).startswith(state) and str(cfg.saving.dir).startswith(state)
    assert mqtt.host == "mosquitto" and "mosquitto" in COMPOSE["services"]
    assert str(mqtt.password_file) == f"/run/secrets/{daemon['secrets'][0]}"
    assert all(str(m.path).startswith("/models/") for m in cfg.models)
    assert cfg.metrics.host == "0.0.0.0" and f"{cfg.metrics.port}:{cfg.metrics.port}" in daemon["ports"]
    assert f"EXPOSE {cfg.metrics.port} 5556" in CONTAINERFILE


def test_compose_services_restart_stop_and_mounts() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"edge-inspector", "mosquitto", "console"}
    for name, svc in services.items():
        assert svc.get("restart") == "unless-stopped", f"deploy/compose.yaml: services.{name}.restart"
    daemon = services["edge-inspector"]
    # the daemon's drain allows itself 60 s (Daemon.drain_timeout); the container must wait longer
    assert seconds(daemon["stop_grace_period"]) > 60 and daemon["stop_signal"] == "SIGTERM"
    assert "STOPSIGNAL SIGTERM" in CONTAINERFILE
    assert daemon["read_only"] is True and "/tmp" in daemon["tmpfs"]
    mounts = {v.split(":")[1]: v for v in daemon["volumes"]}
    assert mounts["/config/config.yaml"].endswith(":ro") and mounts["/models"].endswith(":ro")
    assert '"--config", "/config/config.yaml"' in CONTAINERFILE  # CMD and HEALTHCHECK read it there
    for svc in services.values():  # every host file a service mounts exists in the checkout
        for v in svc.get("volumes", []):
            src = v.split(":")[0]
            if src.startswith(".") and not src.endswith(("passwd", "models")):
                assert (DEPLOY / src).exists(), f"deploy/compose.yaml mounts {src}, which does not exist"
    assert (DEPLOY / COMPOSE["secrets"]["mqtt-password"]["file"]).parent.is_dir()


def test_compose_images_are_what_the_build_script_tags() -> None:
    script = (ROOT / "tools" / "build-image.sh").read_text()
    assert 'name="localhost/edge-inspector"' in script and '"$name:latest"' in script
    assert COMPOSE["services"]["edge-inspector"]["image"] == "localhost/edge-inspector:latest"
    assert COMPOSE["services"]["console"]["image"] == "localhost/edge-inspector-console:latest"
    assert re.search(r"^FROM python AS console$", CONTAINERFILE, re.M)
    # runtime is the last stage, so a plain `docker build` without --target gives the daemon image
    assert CONTAINERFILE.rstrip().splitlines()[-1].startswith("CMD [\"run\"")
    assert re.findall(r"^FROM .* AS (\w[\w-]*)$", CONTAINERFILE, re.M)[-1] == "runtime"
