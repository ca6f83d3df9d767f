"""Part identity (schema 2): part ids from file names and from MQTT trigger commands, through the
REAL daemon (replay and a watched folder) and a real Mosquitto broker."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge_inspector.config import ConfigError, load_config
from edge_inspector.messages import SCHEMA_VERSION, Verdict
from edge_inspector.parts import PartQueue, PartTrigger, compile_part_pattern, part_from_name
from tests.fixtures.models import write_frames
from tests.runtime.test_daemon import DaemonProc, read_jsonl, wait_until, write_config

#: the keys of a schema-1 message: a consumer written for schema 1 must see nothing else
SCHEMA1_KEYS = {"schema", "line", "camera", "frame", "captured_at", "decided_at", "verdict", "score", "threshold",
                "defect_type", "defect_confidence", "confidence", "regions", "models", "latency_ms", "image",
                "source", "error"}
PATTERN = r"^(?P<part_id>SN-\d+)_"


def test_pattern_needs_the_named_group_and_reports_the_field(tmp_path, detector_card):
    assert part_from_name(compile_part_pattern(PATTERN), "SN-0042_top.png") == "SN-0042"
    assert part_from_name(compile_part_pattern(PATTERN), "calibration.png") is None
    with pytest.raises(ValueError, match=r"\(\?P<part_id>"):
        compile_part_pattern(r"^(SN-\d+)_")
    cfg = write_config(tmp_path / "config.yaml",
                       camera="{type: folder, path: inbox, part_id_pattern: '^(SN-[0-9]+'}",
                       models=[detector_card], publishers="[]\n")
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    text = str(err.value)
    assert "cameras[0].source" in text and "part_id_pattern" in text and "regular expression" in text


def test_trigger_command_parsing_names_the_field():
    t = PartTrigger.parse(b'{"part_id": "A-17", "ts": "2026-12-01T10:00:00.000Z"}')
    assert t.part_id == "A-17" and t.triggered_wall == 1796119200.0
    assert PartTrigger.parse(b'{"part_id": 17}').part_id == "17"
    for payload, field in ((b"nope", "not JSON"), (b'{"ts": "2026-12-01T10:00:00Z"}', "'part_id'"),
                           (b'{"part_id": ""}', "'part_id'"), (b'{"part_id": "A", "ts": "yesterday"}', "'ts'"),
                           (b'["A"]', "JSON object")):
        with pytest.raises(ValueError, match=field):
            PartTrigger.parse(payload, "edge-inspector/l/c/trigger")


def test_stale_announcements_are_dropped_not_shifted():
    q = PartQueue("cam-0", max_age_s=0.05)
    q.announce(PartTrigger.parse(b'{"part_id": "old"}'))
    time.sleep(0.1)
    q.announce(PartTrigger.parse(b'{"part_id": "new"}'))
    assert q.claim().part_id == "new" and q.expired == 1 and q.claim() is None


def test_schema2_without_part_id_has_only_schema1_keys():
    v = Verdict(line="l", camera="c", frame=1, captured_at="2026-12-01T10:00:00.000Z", verdict="ok")
    data = json.loads(v.to_json())
    assert data["schema"] == 1 and set(data) == SCHEMA1_KEYS  # a message without part id IS a schema-1 one
    tagged = json.loads(v.model_copy(update={"part_id": "SN-1", "triggered_at": data["captured_at"]}).to_json())
    assert set(tagged) - SCHEMA1_KEYS == {"part_id", "triggered_at"} and tagged["schema"] == SCHEMA_VERSION == 2
    assert Verdict.model_validate_json(v.to_json()).part_id is None  # and a schema-1 message still parses


def test_replay_takes_part_ids_from_the_file_names(tmp_path, detector_card):
    rec = write_frames(tmp_path / "rec", n=4, defect_every=3)
    for i, p in enumerate(sorted(rec.glob("*.png"))):
        p.rename(rec / (f"SN-{100 + i}_{p.name}" if i != 2 else f"nopart_{p.name}"))
    cfg = write_config(tmp_path / "config.yaml", camera=f"{{type: folder, path: inbox, part_id_pattern: '{PATTERN}'}}",
                       models=[detector_card], publishers=f"- {{type: jsonl, path: {tmp_path}/verdicts.jsonl}}\n")
    daemon = DaemonProc(["replay", str(rec), "--config", str(cfg)], tmp_path)
    assert daemon.wait(60) == 0, daemon.output()[-3000:]
    out = read_jsonl(tmp_path / "verdicts.jsonl")
    by_name = {Path(v["source"]).name.split("_")[0]: v for v in out}
    assert {k: v.get("part_id") for k, v in by_name.items()} == {
        "SN-100": "SN-100", "SN-101": "SN-101", "nopart": None, "SN-103": "SN-103"}
    assert by_name["SN-100"]["triggered_at"] == by_name["SN-100"]["captured_at"]
    assert "triggered_at" not in by_name["nopart"]
    assert {k: v["schema"] for k, v in by_name.items()} == {"SN-100": 2, "SN-101": 2, "nopart": 1, "SN-103": 2}


def test_folder_part_ids_from_mqtt_trigger_commands(tmp_path, detector_card, mosquitto, mqtt_subscriber):
    """PLC announces a part on <prefix>/<line>/<camera>/trigger, then the camera drops its file: that
    verdict carries the part id and the trigger's time; a file without an announcement has none; a
    malformed command is refused by name and does not tag the next frame."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sub = mqtt_subscriber("edge-inspector/parts-test/+/verdict")
    cfg = write_config(
        tmp_path / "config.yaml", camera=f"{{type: folder, path: {inbox}, settle_ms: 50, poll_ms: 20}}",
        models=[detector_card], line="parts-test",
        publishers=f"- {{type: mqtt, host: 127.0.0.1, port: {mosquitto.port}, spool_dir: {tmp_path}/spool}}\n",
        extra="part_triggers: {mqtt: true}\n")
    frames = write_frames(tmp_path / "staging", n=3, defect_every=3)
    files = sorted(frames.glob("*.png"))
    plc = mqtt.Client(CallbackAPIVersion.VERSION2)
    plc.connect("127.0.0.1", mosquitto.port)
    plc.loop_start()
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    try:
        wait_until(lambda: "part triggers: subscribed" in daemon.output(), what="trigger subscription", proc=daemon)
        topic = "edge-inspector/parts-test/cam-0/trigger"

        def part(payload: str, file: Path, n: int) -> dict:
            plc.publish(topic, payload, qos=1).wait_for_publish(5)
            time.sleep(0.3)  # the announcement reaches the daemon before the part's picture does
            shutil.copy(file, inbox / file.name)
            got = sub.wait_for(n, timeout=20)
            return json.loads(got[n - 1].payload)

        first = part('{"part_id": "A-17", "ts": "2026-12-01T10:00:00.000Z"}', files[0], 1)
        assert first["part_id"] == "A-17" and first["triggered_at"] == "2026-12-01T10:00:00.000Z"
        assert first["schema"] == 2 and first["frame"] == 0
        bad = part('{"ts": "2026-12-01T10:00:01Z"}', files[1], 2)
        assert "part_id" not in bad and bad["schema"] == 1
        assert "field 'part_id' must be a non-empty string" in daemon.output()
        third = part('{"part_id": "A-18"}', files[2], 3)
        assert third["part_id"] == "A-18" and third["triggered_at"] >= first["decided_at"][:10]
    finally:
        daemon.kill()
        plc.loop_stop()
        plc.disconnect()


def test_mqtt_triggers_need_an_mqtt_publisher(tmp_path, detector_card):
    cfg = write_config(tmp_path / "config.yaml", camera="{type: folder, path: inbox}", models=[detector_card],
                       publishers=f"- {{type: jsonl, path: {tmp_path}/v.jsonl}}\n",
                       extra="part_triggers: {mqtt: true}\n")
    daemon = DaemonProc(["run", "--config", str(cfg)], tmp_path)
    assert daemon.wait(30) == 1
    assert "part_triggers.mqtt is set but no MQTT publisher" in daemon.output()
