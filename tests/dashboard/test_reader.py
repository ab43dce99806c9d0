"""The socket reader thread: latest message per topic, sequence gaps, bad messages, frames accumulated."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zmq

from evstream.dashboard.accumulate import EventAccumulator
from evstream.dashboard.reader import StreamReader
from evstream.protocol import encode


def _until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


@pytest.fixture
def pub(zmq_context):
    socket = zmq_context.socket(zmq.PUB)
    socket.setsockopt(zmq.LINGER, 0)
    port = socket.bind_to_random_port("tcp://127.0.0.1")
    yield socket, f"tcp://127.0.0.1:{port}"
    socket.close(0)


def _join(socket, reader) -> None:
    """Send status until the subscription is through (the slow joiner of zguide ch. 5)."""
    seq = 0

    def through() -> bool:
        nonlocal seq
        socket.send_multipart(encode("status", seq, "p1", {"state": "running"}))
        seq += 1
        time.sleep(0.01)
        return reader.received("status") > 0

    _until(through)


def test_latest_message_per_topic_and_gaps(pub, zmq_context):
    socket, address = pub
    accumulator = EventAccumulator("window", 1_000_000)
    reader = StreamReader(address, accumulator, context=zmq_context).start()
    try:
        _join(socket, reader)
        for seq in (0, 1, 5, 6):  # 2, 3, 4 lost
            socket.send_multipart(encode("pred", seq, "p1", {"label": seq}, {"probs": np.ones(3, np.float32) / 3}))
        counts = np.zeros((2, 3, 4), dtype=np.uint8)
        counts[1, 1, 2] = 7
        socket.send_multipart(encode("frame", 0, "p1", {"sensor": [4, 3]}, {"counts": counts}, 0, 10_000))
        socket.send_multipart([b"pred", b"\xc1 is never msgpack"])  # a subscribed topic, a broken header
        _until(lambda: reader.received("pred") >= 4 and accumulator.frames_in == 1 and reader.bad_messages == 1)
        snapshot = reader.take()
        assert snapshot.topics["pred"].gaps == 3
        assert snapshot.topics["pred"].lag_ms is not None and 0 <= snapshot.topics["pred"].lag_ms < 5000
        image = accumulator.render()
        assert image[1, 2] > 128 and (image[0] == 128).all()
    finally:
        reader.stop()
    assert not reader.alive


def test_fresh_holds_only_the_latest_and_only_once(pub, zmq_context):
    socket, address = pub
    reader = StreamReader(address, context=zmq_context).start()
    try:
        _join(socket, reader)
        for seq in range(5):
            socket.send_multipart(encode("pred", seq, "p1", {"label": seq}))
        _until(lambda: reader.received("pred") >= 5)
        first = reader.take()
        second = reader.take()
    finally:
        reader.stop()
    assert "pred" not in second.fresh
    if "pred" in first.fresh:
        assert first.fresh["pred"].data["label"] == 4


def test_a_restarted_publisher_is_not_a_gap(pub, zmq_context):
    socket, address = pub
    reader = StreamReader(address, context=zmq_context).start()
    try:
        _join(socket, reader)
        socket.send_multipart(encode("stats", 100, "old", {}))
        socket.send_multipart(encode("stats", 0, "new", {}))
        socket.send_multipart(encode("stats", 1, "new", {}))
        _until(lambda: reader.received("stats") >= 3)
        assert reader.take().topics["stats"].gaps == 0
    finally:
        reader.stop()


def test_unreachable_address_is_reported_not_raised(zmq_context):
    reader = StreamReader("tcp://no-such-host-name.invalid:x", context=zmq_context).start()
    try:
        _until(lambda: reader.take().last_error is not None)
        assert "no-such-host-name.invalid" in reader.take().last_error
    finally:
        reader.stop()
