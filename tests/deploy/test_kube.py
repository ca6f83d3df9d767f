"""deploy/kubernetes/edge-inspector.yaml, run for real with ``podman kube play`` (no cluster needed).

The shipped manifest is played as it is except for what is site-specific: the ConfigMap's config
(the demo replay), the host paths (the demo models, a state folder, plus the replay), no MQTT secret,
and a hostPort to scrape metrics. What it proves: the image runs under the manifest's
securityContext (uid 10001, read-only root), the ConfigMap/hostPath/emptyDir mounts are where the
daemon expects them, the liveness probe (the image's health check, with the manifest's timeout)
passes, and stopping the pod drains and exits 0. Podman ignores terminationGracePeriodSeconds and
the Service, so the stop timeout is given to ``podman pod stop``.
"""

from __future__ import annotations

import json
import re
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from edge_inspector.config import parse_config
from tests.deploy.helpers import IMAGE_USER, ROOT, DemoLine, demo_config, podman, until
from tests.fixtures.broker import free_port

pytestmark = [pytest.mark.slow, pytest.mark.container]

MANIFEST = ROOT / "deploy" / "kubernetes" / "edge-inspector.yaml"


def documents() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(MANIFEST.read_text())}


def test_manifest_config_is_valid_and_matches_the_mounts() -> None:
    docs = documents()
    assert set(docs) == {"ConfigMap", "Deployment", "Service"}
    cfg = parse_config(docs["ConfigMap"]["data"]["config.yaml"], f"{MANIFEST}: ConfigMap config.yaml")
    spec = docs["Deployment"]["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
    mqtt = next(p for p in cfg.publishers if p.type == "mqtt")
    assert str(mqtt.password_file).startswith("/run/secrets/") and mounts["/run/secrets"]["readOnly"]
    assert str(mqtt.spool_dir).startswith("/var/lib/edge-inspector/") and "/var/lib/edge-inspector" in mounts
    assert all(str(m.path).startswith("/models/") for m in cfg.models) and mounts["/models"]["readOnly"]
    assert spec["terminationGracePeriodSeconds"] > 60  # the daemon's drain allows itself 60 s
    probe = spec["containers"][0]["livenessProbe"]
    assert probe["exec"]["command"][:2] == ["edge-inspector", "health"] and probe["timeoutSeconds"] >= 5
    assert spec["securityContext"]["runAsUser"] == int(IMAGE_USER)
    assert docs["Deployment"]["spec"]["strategy"]["type"] == "Recreate"


def test_manifest_runs_under_podman_kube_play(podman_env: dict[str, str], image: str, demo_line: DemoLine,
                                              tmp_path: Path) -> None:
    docs = documents()
    jsonl = "{type: jsonl, path: /var/lib/edge-inspector/verdicts.jsonl}"
    docs["ConfigMap"]["data"]["config.yaml"] = demo_config(2, [jsonl])
    deployment = docs["Deployment"]
    name = f"ei-kube-{uuid.uuid4().hex[:8]}"
    deployment["metadata"]["name"] = name
    spec = deployment["spec"]["template"]["spec"]
    spec.pop("nodeSelector")
    container = spec["containers"][0]
    container["image"] = image
    metrics_port = free_port()
    container["ports"][0]["hostPort"] = metrics_port
    container["volumeMounts"] = [m for m in container["volumeMounts"] if m["name"] != "mqtt-password"]
    container["volumeMounts"].append({"name": "replay", "mountPath": "/data/replay", "readOnly": True})
    state = tmp_path / "state"
    state.mkdir()
    state.chmod(0o777)
    paths = {"models": demo_line.models, "state": state}
    spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "mqtt-password"]
    for v in spec["volumes"]:
        if v["name"] in paths:
            v["hostPath"]["path"] = str(paths[v["name"]])
    spec["volumes"].append({"name": "replay", "hostPath": {"path": str(demo_line.replay), "type": "Directory"}})
    docs["ConfigMap"]["metadata"]["name"] = f"{name}-config"
    next(v for v in spec["volumes"] if v["name"] == "config")["configMap"]["name"] = f"{name}-config"
    played = tmp_path / "play.yaml"
    played.write_text(yaml.safe_dump_all(list(docs.values())))

    podman(podman_env, "kube", "play", str(played), timeout=300)
    pod, ctr = f"{name}-pod-0", f"{name}-pod-0-daemon"
    try:
        def logs() -> str:
            res = podman(podman_env, "logs", ctr, check=False)
            return res.stdout + res.stderr

        until(lambda: podman(podman_env, "healthcheck", "run", ctr, check=False).returncode == 0, 90,
              "the liveness probe (health check) to pass", logs)
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        assert re.search(r'^edge_inspector_frames_total\{camera="cam-0"\} [1-9]', text, re.M), text[:1500]
        ids = podman(podman_env, "exec", ctr, "sh", "-c", "id -u; touch /x 2>/dev/null && echo rw || echo ro; "
                     "touch /tmp/ok && echo tmp-rw").stdout.split()
        assert ids == [IMAGE_USER, "ro", "tmp-rw"], ids
        podman(podman_env, "pod", "stop", "-t", "70", pod, timeout=120)
        info = json.loads(podman(podman_env, "inspect", ctr).stdout)[0]["State"]
        log = logs()
        assert info["ExitCode"] == 0, log[-3000:]
        stopped = re.search(r"stopped: (\d+) frames grabbed, 0 dropped, (\d+) published", log)
        assert stopped and stopped.group(1) == stopped.group(2), log[-3000:]
        lines = (state / "verdicts.jsonl").read_text().splitlines()
        assert len(lines) == int(stopped.group(1)) > 0
    finally:
        podman(podman_env, "kube", "down", str(played), check=False)
