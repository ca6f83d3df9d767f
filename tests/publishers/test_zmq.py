"""ZeroMQ PUB with a real SUB socket: multipart [topic, json], topic filtering, HWM failures counted."""

from __future__ import annotations

import time

import pytest
import zmq

from edge_inspector.messages import Verdict
from edge_inspector.metrics import Metrics
from edge_inspector.publishers import ZmqConfig, create_publisher, verdict_topic
from edge_inspector.publishers.base import PublisherError

from .util import make_verdict, sample


def _join(pub, sub, camera: str = "cam1") -> None:
    """Beat the slow-joiner: publish probe frame -1 until the SUB sees it."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pub.publish(make_verdict(-1, camera=camera))
        if sub.poll(50):
            while sub.poll(50):
                sub.recv_multipart()
            return
    raise AssertionError("SUB never received the probe")


def test_sub_receives_topic_and_json():
    m = Metrics()
    pub = create_publisher(ZmqConfig(endpoint="tcp://127.0.0.1:*"), line="line1", metrics=m)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    try:
        sub.connect(pub.endpoint)
        sub.setsockopt_string(zmq.SUBSCRIBE, verdict_topic("edge-inspector", "line1", "cam1"))
        _join(pub, sub)
        for i in range(5):
            pub.publish(make_verdict(i, camera="cam2"))  # filtered out by the subscription
            pub.publish(make_verdict(i, camera="cam1"))
        got = []
        while len(got) < 5 and sub.poll(2000):
            got.append(sub.recv_multipart())
        assert len(got) == 5 and not sub.poll(200)
        for i, (topic, body) in enumerate(got):
            assert topic == b"edge-inspector/line1/cam1/verdict"
            v = Verdict.model_validate_json(body)
            assert (v.camera, v.frame) == ("cam1", i)
        assert sample(m, "edge_inspector_publish_failures_total", {"sink": "zmq"}) == 0
    finally:
        sub.close()
        ctx.term()
        pub.close(timeout=1)


def test_full_hwm_counts_failures_without_blocking():
    m = Metrics()
    pub = create_publisher(ZmqConfig(endpoint="inproc://verdicts-hwm", sndhwm=2), line="line1", metrics=m)
    sub = pub.context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 2)
    sub.setsockopt(zmq.LINGER, 0)
    try:
        sub.connect("inproc://verdicts-hwm")
        sub.setsockopt_string(zmq.SUBSCRIBE, "")
        _join(pub, sub)
        start = time.monotonic()
        for i in range(50):  # the SUB never reads
            pub.publish(make_verdict(i))
        assert time.monotonic() - start < 2.0
        assert sample(m, "edge_inspector_publish_failures_total", {"sink": "zmq"}) >= 40
        assert sample(m, "edge_inspector_publish_seconds_count", {"sink": "zmq"}) >= 50
    finally:
        sub.close()
        pub.close(timeout=0)


def test_bind_conflict_is_a_clear_error():
    m = Metrics()
    a = create_publisher(ZmqConfig(endpoint="tcp://127.0.0.1:*"), line="l", metrics=m)
    try:
        with pytest.raises(PublisherError, match="cannot bind endpoint"):
            create_publisher(ZmqConfig(endpoint=a.endpoint), line="l", metrics=m)
    finally:
        a.close(timeout=0)
