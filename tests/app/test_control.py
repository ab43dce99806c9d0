"""The control socket against hostile requests (issue 17, finding 1 and 12): real sockets on
127.0.0.1, real files in tmp_path, a real Pipeline that is never started (commands are answered
by the control thread alone)."""

from __future__ import annotations

import os

import msgpack
import pytest
import zmq

from evstream.binning import Binner
from evstream.errors import ProtocolError
from evstream.pipeline import Pipeline
from evstream.publish import ControlClient, Publisher
from evstream.sources.file import FileSource

OUT = (32, 32)


class _Classifier:
    """Enough of a StreamingClassifier for a pipeline that only answers control requests."""

    class_names = ["a", "b"]
    resets = 0

    def reset(self) -> None:
        self.resets += 1

    def capture(self, on: bool) -> None:
        pass


def _addr(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


def _pipeline(recording, control, *, publisher=None, record_dir=None) -> Pipeline:
    source = FileSource(recording, speed=None)
    return Pipeline(source, _Classifier(), Binner(source.sensor_size, OUT, 20_000, 4), publisher,
                    control_address=control, record_dir=record_dir)


def _raw_request(address: str, request: dict, wait_ms: int, **curve) -> dict | None:
    """One request from a bare REQ socket; None when no reply comes within ``wait_ms``, or when the
    request cannot even be sent in that time (a REQ socket whose every handshake was refused has
    no peer to queue it to, and a plain send would then block forever)."""
    sock = zmq.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDTIMEO, wait_ms)
    for name, value in curve.items():
        setattr(sock, name, value)
    sock.connect(address)
    try:
        try:
            sock.send(msgpack.packb(request))
        except zmq.Again:
            return None
        if not sock.poll(wait_ms):
            return None
        return msgpack.unpackb(sock.recv())
    finally:
        sock.close(0)


@pytest.fixture
def keys(tmp_path):
    import zmq.auth

    server_pub, server_secret = zmq.auth.create_certificates(str(tmp_path), "server")
    allowed = tmp_path / "clients"
    allowed.mkdir()
    _, client_secret = zmq.auth.create_certificates(str(allowed), "client")
    (tmp_path / "other").mkdir()
    _, stranger_secret = zmq.auth.create_certificates(str(tmp_path / "other"), "stranger")
    return {"server": server_pub, "server_secret": server_secret, "clients": allowed,
            "client": client_secret, "stranger": stranger_secret}


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")
def test_curve_pipeline_control_socket_admits_only_allowed_keys(recording, port, keys):
    # reproducer: a plain REQ to publish port + 1 paused a CURVE-protected pipeline
    with Publisher(_addr(port), curve_secret_key_file=keys["server_secret"], curve_clients_dir=keys["clients"]) as pub:
        pipeline = _pipeline(recording, _addr(port + 1), publisher=pub)
        try:
            assert _raw_request(_addr(port + 1), {"cmd": "pause"}, 500) is None
            assert not pipeline._paused
            server_key = zmq.auth.load_certificate(str(keys["server"]))[0]
            stranger_pub, stranger_secret = zmq.auth.load_certificate(str(keys["stranger"]))
            assert _raw_request(_addr(port + 1), {"cmd": "pause"}, 500, curve_serverkey=server_key,
                                curve_publickey=stranger_pub, curve_secretkey=stranger_secret) is None
            assert not pipeline._paused
            # the same stranger through ControlClient: one clear error within its timeout, never a hang
            with ControlClient(_addr(port + 1), timeout_ms=500, curve_secret_key_file=keys["stranger"],
                               curve_server_key_file=keys["server"]) as client:
                with pytest.raises(ProtocolError, match="within 500 ms"):
                    client.send("pause")
                with pytest.raises(ProtocolError, match="within 500 ms"):
                    client.send("pause")  # the socket is rebuilt after each failure
            assert not pipeline._paused
            with ControlClient(_addr(port + 1), timeout_ms=5000, curve_secret_key_file=keys["client"],
                               curve_server_key_file=keys["server"]) as client:
                assert client.send("pause") == {"ok": True, "state": "paused"}
            assert pipeline._paused
        finally:
            pipeline.close()


def test_record_start_stays_inside_the_recordings_folder(recording, port, tmp_path):
    rec_dir = tmp_path / "recordings"
    rec_dir.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    (rec_dir / "out").symlink_to(tmp_path)
    pipeline = _pipeline(recording, _addr(port), record_dir=rec_dir)
    try:
        with ControlClient(_addr(port), timeout_ms=5000) as client:
            for path in ("../precious.txt", "../x.aedat4", str(tmp_path / "x.aedat4"), "out/x.aedat4",
                         "/etc/x.aedat4", "", ".", "a\0b.aedat4"):
                reply = client.send("record_start", path=path)
                assert reply["ok"] is False, path
                assert "record_start" in reply["error"]
            assert outside.read_text() == "keep me"
            assert not (tmp_path / "x.aedat4").exists()
            assert sorted(os.listdir(rec_dir)) == ["out"]

            reply = client.send("record_start", path="take1.aedat4")
            assert reply == {"ok": True, "path": str((rec_dir / "take1.aedat4").resolve())}
            assert client.send("record_stop")["path"] == reply["path"]
    finally:
        pipeline.close()


def test_record_start_never_overwrites_unless_asked(recording, port, tmp_path):
    existing = tmp_path / "old.aedat4"
    existing.write_bytes(b"someone else's file")
    pipeline = _pipeline(recording, _addr(port), record_dir=tmp_path)
    try:
        with ControlClient(_addr(port), timeout_ms=5000) as client:
            reply = client.send("record_start", path="old.aedat4")
            assert reply["ok"] is False and "exists" in reply["error"] and "overwrite" in reply["error"]
            assert existing.read_bytes() == b"someone else's file"
            assert client.send("record_start", path="old.aedat4", overwrite="yes")["ok"] is False
            assert client.send("record_start", path="old.aedat4", overwrite=True)["ok"]
            assert client.send("record_stop")["ok"]
            assert existing.read_bytes()[:4] != b"some"
    finally:
        pipeline.close()


def test_replies_quote_only_an_excerpt_of_a_bad_argument(recording, port, tmp_path):
    pipeline = _pipeline(recording, _addr(port), record_dir=tmp_path)
    try:
        with ControlClient(_addr(port), timeout_ms=5000) as client:
            long_path = "../" + "x" * 5000
            reply = client.send("record_start", path=long_path)
            assert reply["ok"] is False and len(reply["error"]) < 300
            reply = client.send("c" * 5000)
            assert reply["ok"] is False and len(reply["error"]) < 300
            reply = client.send("seek", t_us="y" * 5000)
            assert reply["ok"] is False and len(reply["error"]) < 300
        # a request far beyond any command's size is cut off by libzmq: no reply, the server lives on
        assert _raw_request(_addr(port), {"cmd": "record_start", "path": "z" * 10_000_000}, 500) is None
        assert _raw_request(_addr(port), {"cmd": "status"}, 5000)["ok"] is True
    finally:
        pipeline.close()


def test_a_nul_byte_in_a_path_is_a_clean_one_line_refusal(recording, port, tmp_path):
    # reproducer (issue 17, finding 12): a NUL byte gave a raw "ValueError" reply
    pipeline = _pipeline(recording, _addr(port), record_dir=tmp_path)
    try:
        with ControlClient(_addr(port), timeout_ms=5000) as client:
            for path in ("a\0b.aedat4", "\0", "x" * 3000 + "\0.aedat4"):
                reply = client.send("record_start", path=path)
                assert reply["ok"] is False
                assert reply["error"].startswith("record_start: path '") and "is not a file name" in reply["error"]
                assert "ValueError" not in reply["error"] and "\n" not in reply["error"]
                assert len(reply["error"]) < 200
        assert os.listdir(tmp_path) == []
    finally:
        pipeline.close()


def test_every_refusal_quotes_only_an_excerpt_of_what_was_sent(recording, port, tmp_path):
    from evstream.protocol import CONTROL_COMMANDS, CONTROL_OPTIONS, EXCERPT_CHARS

    pipeline = _pipeline(recording, _addr(port), record_dir=tmp_path)
    big_values = ["q" * 7000, b"q" * 7000, ["q" * 60] * 100, {"q" * 60: 1} | {f"k{i}": "q" * 60 for i in range(90)}]
    try:
        with ControlClient(_addr(port), timeout_ms=5000) as client:
            sent = 0
            for cmd, args in CONTROL_COMMANDS.items():
                for arg in [*args, *CONTROL_OPTIONS.get(cmd, {})]:
                    for value in big_values:
                        request = {a: 1 for a in args} | {arg: value}
                        if cmd == "record_start":
                            request.setdefault("path", "ok.aedat4")
                        reply = _raw_request(_addr(port), {"cmd": cmd, **request}, 5000)
                        sent += 1
                        assert reply["ok"] is False, (cmd, arg)
                        assert "\n" not in reply["error"] and "q" * (EXCERPT_CHARS + 1) not in reply["error"]
            arguments = sum(len(a) + len(CONTROL_OPTIONS.get(c, {})) for c, a in CONTROL_COMMANDS.items())
            assert arguments >= 5 and sent == 4 * arguments  # seek, speed, loop, record_start path, overwrite, ...
            reply = client.send("q" * 7000)
            assert reply["ok"] is False and "q" * (EXCERPT_CHARS + 1) not in reply["error"]
        assert os.listdir(tmp_path) == []
    finally:
        pipeline.close()


def test_seek_refuses_booleans_and_speed_refuses_negative_zero_and_nan(recording, port, tmp_path):
    pipeline = _pipeline(recording, _addr(port), record_dir=tmp_path)
    try:
        speed = pipeline._speed
        with ControlClient(_addr(port), timeout_ms=5000) as client:
            reply = client.send("seek", t_us=True)
            assert reply["ok"] is False and "'t_us'" in reply["error"]
            for value in (-0.0, float("nan"), float("inf"), -1.0, True):
                reply = client.send("speed", value=value)
                assert reply["ok"] is False, value
            assert pipeline._speed == speed  # unchanged
            assert client.send("speed", value=2.0) == {"ok": True, "speed": 2.0}
            assert client.send("speed", value=0) == {"ok": True, "speed": 0.0}
    finally:
        pipeline.close()


def test_control_binds_loopback_even_when_publishing_on_every_interface():
    from evstream.publish import control_address_for

    assert control_address_for("tcp://0.0.0.0:5556", host="127.0.0.1") == "tcp://127.0.0.1:5557"
    assert control_address_for("tcp://10.0.0.2:7000") == "tcp://10.0.0.2:7001"  # a client's guess




@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")
def test_dashboard_control_worker_steers_a_curve_pipeline_with_the_keys(recording, port, keys):
    import time

    from evstream.dashboard.control import ControlWorker

    with Publisher(_addr(port), curve_secret_key_file=keys["server_secret"], curve_clients_dir=keys["clients"]) as pub:
        pipeline = _pipeline(recording, _addr(port + 1), publisher=pub)
        worker = ControlWorker(_addr(port + 1), timeout_ms=5000,
                               curve={"curve_secret_key_file": keys["client"], "curve_server_key_file": keys["server"]})
        try:
            worker.send("pause")
            replies = []
            for _ in range(1000):  # a hang guard: the reply comes within the worker's own timeout
                replies += worker.replies()
                if replies:
                    break
                time.sleep(0.01)
            assert replies and replies[0].ok and pipeline._paused
        finally:
            worker.close()
            pipeline.close()
