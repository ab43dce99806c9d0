"""Publisher, Subscriber and control socket over real ZeroMQ sockets on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time

import msgpack
import numpy as np
import pytest
import zmq

from evstream import protocol
from evstream.errors import ConfigError, ProtocolError
from evstream.publish import ControlClient, ControlServer, Publisher, Subscriber, control_address_for


def _addr(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


def _wait(predicate, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_subscriptions_are_counted_per_topic_and_released_on_disconnect(port):
    with Publisher(_addr(port)) as pub:
        assert not pub.wants("attn")
        a = Subscriber(_addr(port), topics=("pred", "attn"))
        b = Subscriber(_addr(port), topics=("attn",))
        assert _wait(lambda: pub.subscribers("attn") == 2)
        assert pub.subscribers("pred") == 1
        assert not pub.wants("frame")
        b.close()
        assert _wait(lambda: pub.subscribers("attn") == 1)
        a.close()
        assert _wait(lambda: not pub.wants("attn") and not pub.wants("pred"))


def test_messages_arrive_in_order_with_arrays_and_no_gaps(port):
    # 200 in a burst: within the default high-water mark (256), so none may be lost
    with Publisher(_addr(port)) as pub, Subscriber(_addr(port), topics=("pred",)) as sub:
        assert pub.wait_subscribers("pred", 1, timeout_s=5)
        probs = np.linspace(0, 1, 11, dtype=np.float32)
        for i in range(200):
            assert pub.publish("pred", {"label": i % 11}, {"probs": probs * i}, t_start=i * 10, t_end=i * 10 + 10)
        got = [sub.recv(2000) for _ in range(200)]
        assert None not in got
        assert [m.seq for m in got] == list(range(200))
        assert [m.data["label"] for m in got] == [i % 11 for i in range(200)]
        np.testing.assert_array_equal(got[7].arrays["probs"], probs * 7)
        assert got[5].t_start == 50 and got[5].t_end == 60 and got[0].publisher == pub.publisher_id
        assert sub.stats["pred"].received == 200 and sub.stats["pred"].gaps == 0


def test_stalled_subscriber_sees_gaps_and_never_blocks_the_publisher(port):
    with Publisher(_addr(port), hwm=4) as pub, Subscriber(_addr(port), topics=("frame",), rcvhwm=4) as sub:
        assert pub.wait_subscribers("frame", 1, timeout_s=5)
        counts = np.zeros((2, 256, 256), np.uint8)  # 128 KiB a message: kernel buffers fill quickly
        began = time.monotonic()
        for _ in range(2000):
            pub.publish("frame", {"sensor": [256, 256]}, {"counts": counts})
        publish_s = time.monotonic() - began
        received = []
        while (msg := sub.recv(300)) is not None:
            received.append(msg.seq)
        assert len(received) < 2000
        # Once the stalled reader has drained its queue, the next message arrives and shows the
        # loss as a gap (without it, a burst that loses only its tail shows no gap yet).
        pub.publish("frame", {"sensor": [256, 256]}, {"counts": counts})
        while (msg := sub.recv(2000)) is not None:
            received.append(msg.seq)
            if msg.seq == 2000:
                break
        assert received == sorted(received) and received[-1] == 2000
        assert sub.stats["frame"].dropped == received[-1] + 1 - len(received)
        assert sub.stats["frame"].gaps >= 1
        assert publish_s < 30  # it returned: no send blocked on the stalled peer


_PUBLISH_SCRIPT = """
import sys
from evstream.publish import Publisher
with Publisher(sys.argv[1], publisher_id=sys.argv[2]) as pub:
    assert pub.wait_subscribers("pred", 1, timeout_s=20)
    for _ in range(int(sys.argv[3])):
        pub.publish("pred", {})
"""


def test_restarted_publisher_resets_gap_tracking(port, repo_root):
    # The publisher runs in its own process, as a restarted pipeline would.
    sub = Subscriber(_addr(port), topics=("pred",))
    try:
        for run, count in (("first", 8), ("second", 3)):
            proc = subprocess.Popen([sys.executable, "-c", _PUBLISH_SCRIPT, _addr(port), run, str(count)], cwd=repo_root)
            msgs = [sub.recv(20_000) for _ in range(count)]
            assert proc.wait() == 0
            assert None not in msgs and {m.publisher for m in msgs} == {run}
            assert [m.seq for m in msgs] == list(range(count))
        assert sub.publisher == "second"
        assert sub.stats["pred"].received == 11
        assert sub.stats["pred"].gaps == 0  # seq starting over at 0 is a new publisher, not a gap
    finally:
        sub.close()


def test_late_joiner_gets_status_within_a_second(port):
    with Publisher(_addr(port)) as pub:
        pub.start_status(lambda: {"state": "running", "classes": ["a", "b"]}, interval_s=30.0)
        time.sleep(0.2)  # the periodic one went out before anybody listened
        with Subscriber(_addr(port), topics=("status",)) as sub:
            began = time.monotonic()
            msg = sub.recv(1000)
            assert msg is not None and msg.topic == "status"
            assert msg.data["classes"] == ["a", "b"]
            assert time.monotonic() - began < 1.0


def test_malformed_message_is_counted_and_skipped(port):
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.XPUB)
    raw.bind(_addr(port))
    try:
        with Subscriber(_addr(port), topics=("pred",)) as sub:
            assert raw.poll(5000) and raw.recv() == b"\x01pred"
            raw.send_multipart([b"pred", b"\xc1 not msgpack"])
            raw.send_multipart(protocol.encode("pred", 0, "x", {"label": 1}))
            msg = sub.recv(2000)
            assert msg is not None and msg.data == {"label": 1}
            assert sub.malformed == 1
    finally:
        raw.close(0)


def test_curve_only_keyed_subscribers_receive(tmp_path, port):
    import zmq.auth

    server_pub, server_secret = zmq.auth.create_certificates(str(tmp_path), "server")
    allowed = tmp_path / "clients"
    allowed.mkdir()
    client_pub, client_secret = zmq.auth.create_certificates(str(allowed), "client")
    (tmp_path / "other").mkdir()
    _, stranger_secret = zmq.auth.create_certificates(str(tmp_path / "other"), "stranger")
    with Publisher(_addr(port), curve_secret_key_file=server_secret, curve_clients_dir=allowed) as pub:
        keyed = Subscriber(_addr(port), ("pred",), curve_secret_key_file=client_secret,
                           curve_server_key_file=server_pub)
        plain = Subscriber(_addr(port), ("pred",))
        stranger = Subscriber(_addr(port), ("pred",), curve_secret_key_file=stranger_secret,
                              curve_server_key_file=server_pub)
        try:
            assert pub.wait_subscribers("pred", 1, timeout_s=5)
            time.sleep(0.3)  # give the refused ones every chance to (not) join
            assert pub.subscribers("pred") == 1
            for i in range(5):
                pub.publish("pred", {"i": i})
            assert [keyed.recv(2000).data["i"] for _ in range(5)] == list(range(5))
            assert plain.recv(300) is None
            assert stranger.recv(300) is None
        finally:
            for s in (keyed, plain, stranger):
                s.close()


def test_bad_options_raise_config_errors(tmp_path, port):
    with pytest.raises(ConfigError, match="topic"):
        Subscriber(_addr(port), topics=("predictions",))
    with pytest.raises(ConfigError, match="both"):
        Subscriber(_addr(port), curve_secret_key_file=tmp_path / "x")
    bogus = tmp_path / "bogus.key_secret"
    bogus.write_text("not a certificate")
    with pytest.raises(ConfigError, match="bogus.key_secret"):
        Publisher(_addr(port), curve_secret_key_file=bogus)
    with Publisher(_addr(port)), pytest.raises(ConfigError, match="cannot bind"):
        Publisher(_addr(port))
    assert control_address_for("tcp://127.0.0.1:5556") == "tcp://127.0.0.1:5557"
    assert control_address_for("inproc://x") is None


def test_control_server_answers_bad_requests_and_survives(port):
    seen = []

    def handler(request: dict) -> dict:
        seen.append(request)
        if request["cmd"] == "step":
            raise RuntimeError("boom")
        if request["cmd"] == "pause":
            raise ConfigError("pause: not now")
        return {"echo": request["cmd"]}

    server = ControlServer(_addr(port), handler)
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.REQ)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(_addr(port))
    try:
        with ControlClient(_addr(port), timeout_ms=3000) as client:
            assert client.send("seek", t_us=5) == {"ok": True, "echo": "seek"}
            assert seen[-1] == {"cmd": "seek", "t_us": 5}
            reply = client.send("bogus")
            assert reply["ok"] is False and "unknown control command 'bogus'" in reply["error"]
            reply = client.send("seek", t_us="soon")
            assert reply["ok"] is False and "'t_us'" in reply["error"]
            assert client.send("step") == {"ok": False, "error": "RuntimeError: boom"}
            assert client.send("pause") == {"ok": False, "error": "pause: not now"}
            for junk in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"nocmd": 1})):
                raw.send(junk)
                assert raw.poll(3000)
                answer = msgpack.unpackb(raw.recv())
                assert answer["ok"] is False and answer["error"]
            raw.send_multipart([b"two", b"frames"])
            assert raw.poll(3000) and msgpack.unpackb(raw.recv())["ok"] is False
            assert client.send("status") == {"ok": True, "echo": "status"}
    finally:
        raw.close(0)
        server.close()


def test_control_client_times_out_with_one_line_error(port):
    with ControlClient(_addr(port), timeout_ms=200) as client:
        with pytest.raises(ProtocolError, match="no reply"):
            client.send("status")
        server = ControlServer(_addr(port), lambda r: {"n": 1})
        try:
            assert client.send("status") == {"ok": True, "n": 1}  # the socket was rebuilt
        finally:
            server.close()


def _hostile_messages() -> list[list[bytes]]:
    """Messages a hostile publisher sends: right topic, every header field of a wrong type."""
    good = {"v": 1, "type": "pred", "seq": 0, "pub": "x", "t0": 0, "t1": 10, "ns": 1, "data": {}, "arrays": []}
    out = []
    for key, bad in [("seq", "1"), ("seq", 1.5), ("seq", True), ("seq", -1), ("seq", None), ("v", "1"),
                     ("v", [1]), ("ns", "now"), ("ns", 1.5), ("t0", "0"), ("t1", [1]), ("pub", 7),
                     ("data", [1, 2]), ("arrays", "none"), ("arrays", {"a": 1}), ("type", 5)]:
        out.append([b"pred", msgpack.packb({**good, key: bad})])
    for desc in (["p", "O", [1]], ["p", "<f4", [-1]], ["p", "<f4", [2**62, 2**62]], ["p", "<f4", "ab"],
                 [1, "<f4", [1]], "p", ["p", "<f4"], ["p", "<f4", [1] * 40], ["p", "<f4", [1.5]], ["p", 4, [1]]):
        out.append([b"pred", msgpack.packb({**good, "arrays": [desc]}), b"\0" * 4])
    out.append([b"pred", msgpack.packb(good), b"extra"])
    out.append([b"pred", msgpack.packb([1, 2])])
    out.append([b"pred"])
    return out


def test_hostile_headers_are_skipped_and_counted_never_raised(port):
    # reproducer (issue 17, finding 6): seq/v/ns of the wrong type raised out of recv()
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.XPUB)
    raw.bind(_addr(port))
    hostile = _hostile_messages()
    seen = []
    try:
        with Subscriber(_addr(port), topics=("pred",), on_malformed=seen.append) as sub:
            assert raw.poll(5000) and raw.recv() == b"\x01pred"
            for frames in hostile:
                raw.send_multipart(frames)
            raw.send_multipart(protocol.encode("pred", 0, "x", {"label": 1}))
            msg = sub.recv(5000)
            assert msg is not None and msg.data == {"label": 1}
            assert sub.malformed == len(hostile) == len(seen)
            assert sub.stats["pred"].malformed == len(hostile) and sub.stats["pred"].received == 1
            assert all(isinstance(err, ProtocolError) and "\n" not in str(err) for err in seen)
            for frames in hostile:
                raw.send_multipart(frames)
            raw.send_multipart(protocol.encode("pred", 1, "x", {"label": 2}))
            assert next(iter(sub)).data == {"label": 2}  # iteration skips them too
    finally:
        raw.close(0)


def test_subscribe_command_prints_one_line_per_malformed_message(port, repo_root):
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.XPUB)
    raw.bind(_addr(port))
    proc = subprocess.Popen([sys.executable, "main.py", "subscribe", _addr(port), "--count", "1", "--topics", "pred"],
                            cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert raw.poll(60_000) and raw.recv() == b"\x01pred"
        raw.send_multipart([b"pred", msgpack.packb({"v": 1, "type": "pred", "seq": "zero", "pub": "x",
                                                    "data": {}, "arrays": []})])
        raw.send_multipart(protocol.encode("pred", 0, "x", {"label": 1, "name": "wave", "changed": True}))
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        raw.close(0)
    assert proc.returncode == 0
    lines = [line for line in err.splitlines() if "malformed message" in line]
    assert len(lines) == 1 and "'seq'" in lines[0]
    assert "Traceback" not in err and "wave" in out


_FLOOD_SCRIPT = """
import sys, time, zmq
address, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = zmq.Context.instance().socket(zmq.XSUB)
s.setsockopt(zmq.SNDHWM, 0)  # queue every subscription: none dropped on this side
s.connect(address)
time.sleep(0.2)
for i in range(count):
    s.send(b"\\x01" + ((b"%08d" % i) * 128)[:size])
    if i % 2 == 1:
        s.send(b"\\x00" + ((b"%08d" % i) * 128)[:size])  # unsubscribe-flood too
print("sent", flush=True)
sys.stdin.read()  # stay connected until the test is done
"""


def _rss_mib() -> float:
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.parametrize("size", [30, 1024])
def test_subscription_flood_is_ignored_bounded_and_pred_keeps_flowing(port, size):
    # reproducer (issue 17, finding 2): one client, 10,000 distinct bogus prefixes (the longest
    # within the frame cap, and 1 KiB ones past it) grew the publisher by GBs and stalled pred
    count = 10_000
    with Publisher(_addr(port)) as pub, Subscriber(_addr(port), topics=("pred",)) as sub:
        pub.start_status(lambda: {"n": 1}, interval_s=0.2)
        assert pub.wait_subscribers("pred", 1, timeout_s=5)
        before = _rss_mib()
        flood = subprocess.Popen([sys.executable, "-c", _FLOOD_SCRIPT, _addr(port), str(count), str(size)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert flood.stdout.readline().strip() == "sent"
            received = 0
            for i in range(100_000):  # a hang guard only: ends once the flood has been drained
                pub.publish("pred", {"i": i})
                received += sub.recv(2) is not None
                drained = size >= 32 or pub.ignored_subscriptions >= count * 3 // 2
                if drained and received > 100:
                    break
            while sub.recv(200) is not None:
                received += 1
            assert received > 100  # pred flowed during the flood
            if size < 32:
                assert pub.ignored_subscriptions >= count * 3 // 2  # every bogus (un)subscription counted
            assert pub._subscriptions == {b"pred": 1}  # only known topics are tracked
            assert pub.subscribers("pred") == 1 and not pub.wants("frame")
            # libzmq keeps each short bogus prefix until the peer leaves (~0.5 KiB apiece here);
            # a 1 KiB prefix is past the frame cap: the peer is dropped before anything is stored
            assert _rss_mib() - before < 16
        finally:
            flood.stdin.close()
            flood.wait()
        pub.publish("pred", {"i": -1})
        assert sub.recv(5000).data == {"i": -1}
        # the flooder has left: its unsubscriptions are drained and the freed heap given back
        for _ in range(200):
            if pub.ignored_subscriptions >= (count * 2 if size < 32 else 0):
                break
            pub.poll_subscriptions(None)
            time.sleep(0.01)
        pub.poll_subscriptions(None)
        assert _rss_mib() - before < 4
