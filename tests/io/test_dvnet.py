"""DV network streams: a real dv-processing NetworkWriter on 127.0.0.1, fragmented decoding, and
hostile servers on 127.0.0.1 (dripping, truncating, declaring huge packets)."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from evstream.errors import SourceError
from evstream.events import SensorSize
from evstream.io import codec
from evstream.io.aedat4 import encode_event_packet
from evstream.io.dvnet import DvNetworkClient, DvStreamDecoder
from evstream.io.flatbuf import encode_io_header
from tests.helpers import free_port, random_events

ROOT = Path(__file__).resolve().parents[2]

# The server runs in its own process: dv-processing's NetworkWriter destructor blocks when a
# Python thread of the same process is involved, and a process exit closes the stream cleanly.
SERVER = r"""
import datetime, os, sys, time
import numpy as np
import dv_processing as dv
port, out, compression = int(sys.argv[1]), sys.argv[2], sys.argv[3]
stream = dv.io.Stream.EventStream(0, "events", "DVXplorer_net", (640, 480))
stream.setCompression(getattr(dv.CompressionType, compression))
writer = dv.io.NetworkWriter("127.0.0.1", port, stream)
print("ready", flush=True)
while writer.getClientCount() == 0:
    time.sleep(0.01)
stores = [dv.data.generate.uniformEventsWithinTimeRange(1_700_000_000_000_000 + 20_000 * i,
          datetime.timedelta(milliseconds=20), (640, 480), 500 + 250 * i, i) for i in range(12)]
for store in stores:
    writer.writeEvents(store)
np.save(out, np.concatenate([s.numpy() for s in stores]))
while writer.getQueuedPacketCount():
    time.sleep(0.01)
time.sleep(0.2)
os._exit(0)
"""


@pytest.fixture(params=["NONE"])
def dv_server(request, tmp_path):
    pytest.importorskip("dv_processing")
    port = free_port()
    out = tmp_path / "sent.npy"
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(out), request.param],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield port, out, request.param
    proc.kill()
    proc.wait()


def _assert_same(events, sent):
    assert np.array_equal(events["t"], sent["timestamp"])
    assert np.array_equal(events["x"], sent["x"]) and np.array_equal(events["y"], sent["y"])
    assert np.array_equal(events["p"], sent["polarity"].astype(np.uint8))


@pytest.mark.parametrize("dv_server", ["NONE", "LZ4", "ZSTD"], indirect=True)
def test_client_receives_what_dv_processing_sends(dv_server):
    port, out, compression = dv_server
    with DvNetworkClient("127.0.0.1", port) as client:
        assert client.sensor_size == SensorSize(640, 480)
        assert client.camera_name == "DVXplorer_net"
        assert client.compression == compression
        packets = [np.array(p) for p in client]  # ends when the server process exits
    assert len(packets) == 12
    _assert_same(np.concatenate(packets), np.load(out))


@pytest.mark.parametrize("dv_server", ["LZ4"], indirect=True)
def test_decoder_with_random_fragmentation_of_real_bytes(dv_server):
    port, out, _ = dv_server
    raw = bytearray()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        while chunk := sock.recv(65536):
            raw += chunk
    rng = np.random.default_rng(0)
    for _ in range(5):
        decoder = DvStreamDecoder("tcp://test")
        cuts = np.sort(rng.integers(0, len(raw), size=rng.integers(1, 400)))
        got = []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(raw)], strict=True):
            got.extend(np.array(p) for p in decoder.feed(bytes(raw[lo:hi])))
        assert decoder.offset == len(raw)
        _assert_same(np.concatenate(got), np.load(out))


_XML = """<dv version="2.0"><node name="outInfo" path="/outInfo/">
<node name="0" path="/outInfo/0/"><attr key="typeIdentifier" type="string">IMUS</attr></node>
<node name="3" path="/outInfo/3/"><attr key="typeIdentifier" type="string">EVTS</attr>
<node name="info" path="/outInfo/3/info/"><attr key="sizeX" type="int">128</attr>
<attr key="sizeY" type="int">64</attr><attr key="source" type="string">synthetic</attr></node></node>
</node></dv>"""


def _stream(code: int, chunks: list[np.ndarray]) -> bytes:
    header = encode_io_header(code, _XML)
    out = struct.pack("<I", len(header)) + header
    for i, chunk in enumerate(chunks):
        payload = encode_event_packet(code, chunk)
        out += struct.pack("<ii", 3, len(payload)) + payload
        if i % 2 == 0:
            junk = codec.compress(code, b"not events" * 7)
            out += struct.pack("<ii", 0, len(junk)) + junk  # another stream: skipped
    return out


@pytest.mark.parametrize("code", [0, 1, 3])
def test_decoder_every_split_point_and_codec(code):
    chunks = [random_events(n, SensorSize(128, 64), t0=1_000 * n, seed=n) for n in (10, 0, 300, 7)]
    data = _stream(code, chunks)
    for split in range(0, len(data), 37):
        decoder = DvStreamDecoder()
        got = decoder.feed(data[:split]) + decoder.feed(data[split:])
        assert decoder.sensor_size == SensorSize(128, 64) and decoder.camera_name == "synthetic"
        assert [len(g) for g in got] == [10, 0, 300, 7]
        assert np.array_equal(np.concatenate(got), np.concatenate(chunks))
    decoder = DvStreamDecoder()
    got = [a for b in data for a in decoder.feed(bytes([b]))]  # one byte at a time
    assert np.array_equal(np.concatenate(got), np.concatenate(chunks))


def test_decoder_errors_name_the_byte():
    data = bytearray(_stream(1, [random_events(5, SensorSize(128, 64))]))
    header_len = 4 + struct.unpack_from("<I", data, 0)[0]
    bad = bytearray(data)
    struct.pack_into("<i", bad, header_len + 4, -3)
    with pytest.raises(SourceError, match=rf"^tcp://x: byte {header_len + 4}: packet size -3"):
        DvStreamDecoder("tcp://x").feed(bytes(bad))
    bad = bytearray(data)
    bad[header_len + 8:header_len + 12] = b"\0\0\0\0"
    with pytest.raises(SourceError, match=rf"byte {header_len + 8}: event packet: LZ4"):
        DvStreamDecoder("tcp://x").feed(bytes(bad))
    with pytest.raises(SourceError, match="IOHeader length 4294967295"):
        DvStreamDecoder("tcp://x").feed(b"\xff\xff\xff\xff")


def test_connection_refused_names_the_address():
    port = free_port()
    with pytest.raises(SourceError, match=rf"^tcp://127.0.0.1:{port}: connection refused$"):
        DvNetworkClient("127.0.0.1", port, timeout=2.0)


def test_server_closing_before_header():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]

        def accept_and_close():
            conn, _ = server.accept()
            conn.close()

        thread = threading.Thread(target=accept_and_close)
        thread.start()
        try:
            with pytest.raises(SourceError, match=rf"^tcp://127.0.0.1:{port}: server closed the connection before"):
                DvNetworkClient("127.0.0.1", port, timeout=5.0)
        finally:
            thread.join()


@pytest.mark.parametrize("size", ["4294967296", "\u0661\u0662\u0668", "0", "40000"])
def test_server_declaring_an_impossible_sensor_size_is_one_line(size):
    # reproducer (issue 17, finding 5): a DV server's sizeX of 2**32 or in Unicode digits was accepted
    header = encode_io_header(1, _XML.replace('"sizeX" type="int">128', f'"sizeX" type="int">{size}'))
    with pytest.raises(SourceError, match=r"^tcp://x: byte 4: IOHeader: stream 3: sizeX .*1 \.\.\. 32767\)$"):
        DvStreamDecoder("tcp://x").feed(struct.pack("<I", len(header)) + header)


# -- hostile servers (issue 17, finding 8) ------------------------------------------------------


class _HostileServer:
    """A DV server on 127.0.0.1 that plays ``steps`` to one client: ``bytes`` are sent at once,
    ``("drip", data, seconds)`` one byte per ``seconds``, ``("sleep", seconds)`` waits, and
    ``"close"`` hangs up (without it the connection is held until the test ends)."""

    def __init__(self, steps: list) -> None:
        self.steps = steps
        self.sent = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _send(self, conn: socket.socket, data: bytes) -> None:
        conn.sendall(data)
        self.sent += len(data)

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn:
            try:
                for step in self.steps:
                    if self._stop.is_set():
                        return
                    if step == "close":
                        return
                    if isinstance(step, bytes):
                        self._send(conn, step)
                    elif step[0] == "sleep":
                        self._stop.wait(step[1])
                    else:
                        for i in range(len(step[1])):
                            if self._stop.wait(step[2]):
                                return
                            self._send(conn, step[1][i:i + 1])
                self._stop.wait()
            except OSError:  # the client hung up
                return

    def __enter__(self) -> _HostileServer:
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join()


def _header() -> bytes:
    header = encode_io_header(0, _XML)
    return struct.pack("<I", len(header)) + header


def _packet(events: np.ndarray, stream_id: int = 3) -> bytes:
    payload = encode_event_packet(0, events)
    return struct.pack("<ii", stream_id, len(payload)) + payload


def _received(message: str) -> int:
    import re

    return int(re.search(r"\((\d[\d,]*) of [\d,]+ bytes received\)", message).group(1).replace(",", ""))


def test_dripping_header_times_out_by_the_total_deadline():
    # reproducer: 5 s per read let a server dripping a byte a second hold start-up indefinitely
    declared = 2000
    with _HostileServer([struct.pack("<I", declared), ("drip", b"\0" * declared, 0.02)]) as server:
        with pytest.raises(SourceError) as err:
            DvNetworkClient("127.0.0.1", server.port, timeout=0.5)
        sent = server.sent
    message = str(err.value)
    assert message.startswith(f"tcp://127.0.0.1:{server.port}: no complete stream header within 0.5 s: "
                              "stream header at byte 0 (")
    assert "\n" not in message
    # every read got bytes well within 0.5 s, so only a total deadline stops it; it stopped while
    # the server still had bytes to drip
    assert _received(message) > 4 + 1 and sent < 4 + declared


def test_dripping_packet_times_out_by_the_packet_deadline():
    events = random_events(20, SensorSize(128, 64), seed=1)
    slow = _packet(random_events(60, SensorSize(128, 64), t0=50_000, seed=2))
    offset = len(_header()) + len(_packet(events))
    with _HostileServer([_header() + _packet(events), slow[:8], ("drip", slow[8:], 0.02)]) as server:
        with DvNetworkClient("127.0.0.1", server.port, timeout=5.0, packet_timeout=0.5) as client:
            got = []
            with pytest.raises(SourceError) as err:
                for packet in client:
                    got.append(np.array(packet))
        sent = server.sent
    assert len(got) == 1 and np.array_equal(got[0], events)
    message = str(err.value)
    assert message.startswith(f"tcp://127.0.0.1:{server.port}: packet at byte {offset} (")
    assert message.endswith(f" of {len(slow):,} bytes received) incomplete after 0.5 s (packet deadline)")
    assert _received(message) > 8 + 1 and sent < offset + len(slow)


def test_silence_between_packets_and_a_slow_consumer_are_not_timeouts():
    first = random_events(30, SensorSize(128, 64), seed=3)
    second = _packet(random_events(40, SensorSize(128, 64), t0=90_000, seed=4))
    third = random_events(5, SensorSize(128, 64), t0=200_000, seed=5)
    steps = [_header() + _packet(first) + second[:20], ("sleep", 0.2), second[20:], ("sleep", 0.8),
             _packet(third), "close"]
    with _HostileServer(steps) as server:
        with DvNetworkClient("127.0.0.1", server.port, timeout=5.0, packet_timeout=0.3) as client:
            got = []
            for packet in client:
                got.append(np.array(packet))
                if len(got) == 1:
                    time.sleep(0.6)  # the consumer holds the first packet while the second is half here
    assert [len(g) for g in got] == [30, 40, 5]


@pytest.mark.parametrize("cut", [3, 8 + 100])
def test_truncated_final_packet_is_an_error_not_the_end(cut):
    events = random_events(20, SensorSize(128, 64), seed=1)
    last = _packet(random_events(60, SensorSize(128, 64), t0=50_000, seed=2))
    offset = len(_header()) + len(_packet(events))
    with _HostileServer([_header() + _packet(events) + last[:cut], "close"]) as server:
        with DvNetworkClient("127.0.0.1", server.port, timeout=5.0) as client:
            got = []
            with pytest.raises(SourceError) as err:
                for packet in client:
                    got.append(np.array(packet))
    assert len(got) == 1
    what, total = ("packet header", 8) if cut < 8 else ("packet", len(last))
    assert str(err.value) == (f"tcp://127.0.0.1:{server.port}: stream ended inside the {what} at byte {offset} "
                              f"({cut:,} of {total:,} bytes received): truncated")


def test_truncated_final_packet_ends_the_pipeline_in_error_on_status():
    pytest.importorskip("torch")
    from evstream.binning import Binner
    from evstream.pipeline import Pipeline, PipelineConfig
    from evstream.sources.network import NetworkSource
    from models import create_model
    from models.streaming import StreamingClassifier

    events = random_events(2000, SensorSize(128, 64), duration_us=400_000, seed=1)
    last = _packet(random_events(60, SensorSize(128, 64), t0=500_000, seed=2))
    with _HostileServer([_header() + _packet(events) + last[:100], "close"]) as server:
        source = NetworkSource(f"tcp://127.0.0.1:{server.port}", timeout=5.0)
        pipeline = Pipeline(source, StreamingClassifier(create_model("spikformer_tiny"), device="cpu"),
                            Binner(SensorSize(128, 64), (32, 32), 20_000, 4), None, config=PipelineConfig())
        pipeline.start()
        assert pipeline.wait() == 2  # an expected fault
        status = pipeline.status()
        pipeline.close()
    assert status["state"] == "error"
    assert status["message"].endswith(f"(100 of {len(last):,} bytes received): truncated")
    assert "\n" not in status["message"]


def test_main_exits_non_zero_with_one_line_on_a_truncated_stream():
    events = random_events(2000, SensorSize(128, 64), duration_us=400_000, seed=1)
    last = _packet(random_events(60, SensorSize(128, 64), t0=500_000, seed=2))
    with _HostileServer([_header() + _packet(events) + last[:100], "close"]) as server:
        run = subprocess.run([sys.executable, "main.py", "--network", f"127.0.0.1:{server.port}", "--no-gui",
                              "--quiet", "--publish", f"tcp://127.0.0.1:{free_port(pair=True)}"],
                             capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith(f"(100 of {len(last):,} bytes received): truncated"), run.stderr


def test_a_declared_huge_packet_is_refused_before_anything_is_buffered():
    # reproducer: one declared 256 MiB packet cost 0.8-1.2 GB of RSS
    huge = struct.pack("<ii", 3, 1 << 28)
    with pytest.raises(SourceError, match=rf"byte {len(_header()) + 4}: packet size 268,435,456 above the "
                                          r"limit of 67,108,864 bytes$"):
        DvStreamDecoder("tcp://x").feed(_header() + huge)
    with _HostileServer([_header(), ("sleep", 0.2), huge + b"\0" * 4096]) as server:
        with pytest.raises(SourceError, match="packet size 268,435,456 above the limit"):
            with DvNetworkClient("127.0.0.1", server.port, timeout=5.0) as client:
                list(client)


def test_an_allowed_large_packet_is_buffered_only_as_its_bytes_arrive():
    import tracemalloc

    huge = struct.pack("<ii", 3, 1 << 28)
    with _HostileServer([_header() + huge, ("drip", b"\0" * 200, 0.005), ("sleep", 60)]) as server:
        tracemalloc.start()
        try:
            with DvNetworkClient("127.0.0.1", server.port, timeout=5.0, packet_timeout=0.5,
                                 max_packet_bytes=1 << 28) as client:
                with pytest.raises(SourceError, match=r"of 268,435,464 bytes received\) incomplete after 0\.5 s"):
                    list(client)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 4 << 20  # the declared 256 MiB was never allocated
