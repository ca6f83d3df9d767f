"""Verdicts from a real ZeroMQ PUB socket land in the database and come out of the JSON API."""

from __future__ import annotations

import json
import time

import pytest
import zmq
from django.test import Client

from edge_inspector.console.models import Verdict
from edge_inspector.console.subscriber import VerdictSubscriber, prune
from edge_inspector.messages import Verdict as VerdictMessage

from .conftest import PASSWORD, free_port


def message(frame: int, verdict: str = "ok", camera: str = "cam-0", **extra) -> VerdictMessage:
    return VerdictMessage(line="line-1", camera=camera, frame=frame,
                          captured_at=f"2026-11-24T10:00:{frame % 60:02d}.000Z", verdict=verdict,
                          score=0.9 if verdict == "defect" else 0.1,
                          defect_type="scratch" if verdict == "defect" else None,
                          latency_ms={"infer": 3.0, "total": 5.0}, **extra)


def send(pub, msg: VerdictMessage) -> None:
    pub.send_multipart([f"edge-inspector/{msg.line}/{msg.camera}/verdict".encode(), msg.to_json().encode()])


def wait_rows(n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while Verdict.objects.count() < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Verdict.objects.count() >= n, f"only {Verdict.objects.count()} of {n} verdicts arrived"


@pytest.fixture
def pub_and_subscriber(committed_db):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    sub = VerdictSubscriber(endpoint, flush_s=0.05)
    sub.start()
    assert sub.connected.wait(5)
    # PUB/SUB slow joiner: publish a probe until the subscription is live.
    deadline = time.monotonic() + 10
    while Verdict.objects.count() == 0 and time.monotonic() < deadline:
        send(pub, message(0))
        time.sleep(0.1)
    wait_rows(1)
    yield pub, sub
    sub.stop()
    pub.close()


def test_verdicts_from_zmq_into_db_and_api(pub_and_subscriber):
    pub, sub = pub_and_subscriber
    for frame in range(1, 6):
        send(pub, message(frame, "defect" if frame % 2 else "ok", image=f"frames/cam-0/{frame}.jpg"))
    send(pub, message(3, "defect"))  # redelivery of frame 3: deduplicated
    pub.send_multipart([b"edge-inspector/line-1/cam-0/verdict", b"{not json"])  # malformed: ignored
    pub.send_multipart([b"edge-inspector/line-1/status", b"online"])  # other topic: ignored
    send(pub, message(1, "error", camera="cam-1", error="camera timeout"))
    wait_rows(7)
    time.sleep(0.3)  # let any wrongly accepted message arrive before counting
    assert Verdict.objects.count() == 7
    assert sub.rejected == 1
    row = Verdict.objects.get(camera="cam-0", frame=3)
    assert row.verdict == "defect" and row.defect_type == "scratch" and row.latency_ms == 5.0
    assert row.message["models"] == [] and row.message["schema"] == 1
    assert Verdict.objects.get(camera="cam-1").error == "camera timeout"

    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("viewer", password=PASSWORD)
    c = Client()
    assert c.login(username="viewer", password=PASSWORD)
    data = c.get("/api/verdicts?since=0").json()
    assert [v["frame"] for v in data["verdicts"] if v["camera"] == "cam-0"] == [0, 1, 2, 3, 4, 5]
    cams = {s["camera"]: s for s in data["cameras"]}
    assert cams["cam-0"]["total"] == 6 and cams["cam-0"]["defect_rate"] == pytest.approx(0.5)
    assert cams["cam-1"]["error_rate"] == 1.0
    newer = c.get(f"/api/verdicts?since={data['verdicts'][2]['id']}").json()
    assert len(newer["verdicts"]) == 4
    assert c.get("/api/verdicts?since=abc").status_code == 400

    gallery = c.get("/gallery/?camera=cam-0&min_score=0.5")
    assert len(gallery.context["verdicts"]) == 3  # frames 1, 3, 5
    assert len(c.get("/gallery/?defect_type=scratch&since=2026-11-24T10:00:02").context["verdicts"]) == 2
    assert "min_score: expected a number" in c.get("/gallery/?min_score=x").content.decode()


def test_prune_keeps_newest_and_reviewed(pub_and_subscriber):
    pub, _ = pub_and_subscriber
    for frame in range(1, 10):
        send(pub, message(frame))
    wait_rows(10)
    Verdict.objects.filter(frame=1).update(review=True)
    prune(keep=3)
    frames = sorted(Verdict.objects.values_list("frame", flat=True))
    assert frames == [1, 7, 8, 9]


def test_frame_images_served_only_inside_frames_root(pub_and_subscriber, settings_console):
    pub, _ = pub_and_subscriber
    root = settings_console["FRAMES_ROOT"]
    (root / "frames").mkdir(parents=True)
    (root / "frames" / "7.jpg").write_bytes(b"\xff\xd8frame")
    (root / "frames" / "7_overlay.jpg").write_bytes(b"\xff\xd8overlay")
    send(pub, message(7, "defect", image="frames/7.jpg"))
    send(pub, message(8, "defect", image="../../etc/passwd"))
    wait_rows(3)
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_user("viewer2", password=PASSWORD)
    c = Client()
    c.login(username="viewer2", password=PASSWORD)
    ok = Verdict.objects.get(frame=7)
    assert b"".join(c.get(f"/frames/{ok.pk}/frame").streaming_content) == b"\xff\xd8frame"
    assert b"".join(c.get(f"/frames/{ok.pk}/overlay").streaming_content) == b"\xff\xd8overlay"
    evil = Verdict.objects.get(frame=8)
    assert c.get(f"/frames/{evil.pk}/frame").status_code == 404
    assert json.loads(c.get("/api/verdicts").content)["verdicts"][-1]["image_url"] == f"/frames/{evil.pk}/frame"
