"""The dashboard reads an encrypted (CURVE) published stream when given the keys, and only then."""

from __future__ import annotations

import threading

import pytest
import zmq
import zmq.auth

from evstream.publish import Publisher
from tests.dashboard.streams import status_data

pytestmark = pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")


def test_encrypted_stream_needs_the_keys(qtbot, window_factory, tmp_path, zmq_context):
    keys = tmp_path / "keys"
    keys.mkdir()
    zmq.auth.create_certificates(str(keys), "server")
    zmq.auth.create_certificates(str(keys), "client")
    publisher = Publisher(f"tcp://127.0.0.1:{_free_port()}", context=zmq_context,
                          curve_secret_key_file=keys / "server.key_secret")
    stop = threading.Event()

    def feed() -> None:
        while not stop.is_set():
            publisher.publish("status", status_data())
            stop.wait(0.02)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        keyed = window_factory(publisher.address, curve_secret_key_file=keys / "client.key_secret",
                               curve_server_key_file=keys / "server.key")
        plain = window_factory(publisher.address)
        qtbot.waitUntil(lambda: keyed.connection_state == "connected", timeout=10_000)
        qtbot.wait(300)
        assert plain.connection_state == "waiting"
        assert keyed.prediction.classes == tuple(status_data()["classes"])
    finally:
        stop.set()
        thread.join()
        publisher.close()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
