"""DV network streams: a real dv-processing NetworkWriter on 127.0.0.1, and fragmented decoding."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading

import numpy as np
import pytest

from evstream.errors import SourceError
from evstream.events import SensorSize
from evstream.io import codec
from evstream.io.aedat4 import encode_event_packet
from evstream.io.dvnet import DvNetworkClient, DvStreamDecoder
from evstream.io.flatbuf import encode_io_header
from tests.helpers import free_port, random_events

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
