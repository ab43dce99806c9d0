"""AEDAT 4.0: conformance on real recordings, round trips, dv-processing both ways, seeking."""

from __future__ import annotations

import dataclasses
import struct
import tracemalloc

import numpy as np
import pytest

from evstream.errors import EventFileError
from evstream.events import EVENT_DTYPE, SensorSize
from evstream.io import read_events
from evstream.io.aedat4 import MAGIC, Aedat4Reader, Aedat4Writer, write_aedat4
from evstream.io.flatbuf import IO_HEADER_DATA_TABLE_POSITION
from tests.helpers import random_events

COMPRESSIONS = ["none", "lz4", "lz4_high", "zstd", "zstd_high"]

# shared/reference/formats.md §8, measured with dv-processing, aedat and faery.
SAMPLES = {
    "dvxplorer_320x240_tonic_sample.aedat4": dict(
        events=111_954, first_t=1605537493718345, duration=589_917, size=(320, 240), camera="DVXplorer_DXB00010",
        streams=[(0, "EVTS"), (2, "IMUS"), (3, "TRIG")], packets={0: 59, 2: 59}, on=0.491, in_50ms=5_258,
        table_rows=118),
    "davis346_aestream_sample.aedat4": dict(
        events=117_667, first_t=1633953690975950, duration=129_999, size=(346, 260), camera="DAVIS346_00000104",
        streams=[(0, "EVTS"), (1, "FRME"), (2, "IMUS"), (3, "TRIG")], packets={0: 13, 1: 3, 2: 13, 3: 11},
        on=0.615, in_50ms=49_106, table_rows=40),
}


def _dv_events(path) -> np.ndarray:
    dv = pytest.importorskip("dv_processing")
    rec = dv.io.MonoCameraRecording(str(path))
    parts = []
    while (batch := rec.getNextEventBatch()) is not None:
        parts.append(batch.numpy())
    return np.concatenate(parts) if parts else np.zeros(0, dtype=[("timestamp", "<i8"), ("x", "<i2"),
                                                                   ("y", "<i2"), ("polarity", "i1")])


def _checksums(t, x, y, p) -> tuple[int, int, int, int]:
    """Order-sensitive per-field checksums (weighted sums), computed the same way for every decoder."""
    w = np.arange(1, len(t) + 1, dtype=np.uint64)
    return tuple(int(np.sum(np.asarray(f).astype(np.int64).astype(np.uint64) * w)) for f in (t, x, y, p))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_matches_formats_md(shared_data, name):
    want = SAMPLES[name]
    with Aedat4Reader(shared_data / name) as reader:
        assert reader.sensor_size == SensorSize(*want["size"])
        assert reader.camera_name == want["camera"]
        assert reader.compression == "LZ4"
        assert [(s.id, s.type_identifier) for s in reader.streams] == want["streams"]
        assert reader.event_stream_id == 0
        assert len(reader.data_table) == want["table_rows"]
        assert reader.packet_counts() == want["packets"]
        events = reader.read()
        assert reader.time_range() == (want["first_t"], want["first_t"] + want["duration"])
        assert len(reader.read(want["first_t"], want["first_t"] + 50_000)) == want["in_50ms"]
    assert events.dtype == EVENT_DTYPE
    assert len(events) == want["events"]
    assert events["t"][0] == want["first_t"]
    assert events["t"][-1] - events["t"][0] == want["duration"]
    assert np.all(np.diff(events["t"]) >= 0)
    assert round(float(events["p"].mean()), 3) == want["on"]


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_checksums_match_dv_processing_and_aedat(shared_data, name):
    ours = read_events(shared_data / name)
    mine = _checksums(ours["t"], ours["x"], ours["y"], ours["p"])
    ref = _dv_events(shared_data / name)
    assert _checksums(ref["timestamp"], ref["x"], ref["y"], ref["polarity"]) == mine
    aedat = pytest.importorskip("aedat")
    parts = [p["events"] for p in aedat.Decoder(str(shared_data / name)) if "events" in p]
    other = np.concatenate(parts)
    assert _checksums(other["t"], other["x"], other["y"], other["on"]) == mine


def test_sample_davis_first_event_bytes(shared_data):
    # formats.md §1.5 worked example: ce7e547d12ce0500 da00 0f00 01.
    first = read_events(shared_data / "davis346_aestream_sample.aedat4")[0]
    assert (first["t"], first["x"], first["y"], first["p"]) == (1633953690975950, 218, 15, 1)


def _edge_events(sensor: SensorSize, n: int = 30_000, seed: int = 0) -> np.ndarray:
    ev = random_events(n, sensor, t0=1_600_000_000_000_000, seed=seed)
    corners = np.zeros(6, dtype=EVENT_DTYPE)
    corners["t"] = [0, 1, np.iinfo(np.int64).max - 1, np.iinfo(np.int64).max, np.iinfo(np.int64).min, -1]
    corners["x"] = [0, sensor.width - 1, 0, sensor.width - 1, 0, sensor.width - 1]
    corners["y"] = [0, sensor.height - 1, sensor.height - 1, 0, 0, sensor.height - 1]
    corners["p"] = [0, 1, 1, 0, 1, 0]
    ev[:3] = corners[:3]
    ev[-3:] = corners[3:]
    return ev


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_round_trip_every_compression(tmp_path, compression):
    sensor = SensorSize(640, 480)
    events = _edge_events(sensor)
    path = tmp_path / f"{compression}.aedat4"
    write_aedat4(path, events, sensor, compression, packet_events=7_000)
    with Aedat4Reader(path) as reader:
        assert reader.compression == compression.upper()
        assert reader.sensor_size == sensor
        packets = list(reader.iter_packets())
        assert [len(p) for p in packets] == [7_000] * 4 + [2_000]
        back = reader.read()
    assert np.array_equal(back, events)


@pytest.mark.parametrize("threads", [0, 1, 3])
@pytest.mark.parametrize("table", [True, False])
def test_thread_counts_and_table_agree(tmp_path, threads, table):
    # Packets of 20k events go through the thread pool (small ones are decoded inline).
    events = random_events(70_000, seed=4)
    path = tmp_path / "t.aedat4"
    write_aedat4(path, events, SensorSize(128, 128), packet_events=20_000)
    if not table:
        _without_table(path, path, chop=True)
    with Aedat4Reader(path, threads=threads) as reader:
        assert (reader.data_table is not None) is table
        assert np.array_equal(reader.read(), events)
        assert [len(p) for p in reader.iter_packets()] == [20_000] * 3 + [10_000]
        assert np.array_equal(reader.read(100_000, 900_000), events[(events["t"] >= 100_000) & (events["t"] < 900_000)])


@pytest.mark.parametrize("threads,cores,load,workers", [
    (None, {0, 1}, 0.1, 2), (None, {0, 1}, 0.8, 2), (None, {0, 1}, 1.5, 0), (None, {0, 1}, 5.6, 0),
    (None, set(range(8)), 1.0, 2),
    (None, {3}, 0.0, 0), (2, {0}, 0.0, 0), (3, {0, 1}, 9.0, 2), (1, {0, 1}, 0.0, 1), (0, {0, 1}, 0.0, 0)])
def test_decode_threads_follow_cores_and_load(tmp_path, monkeypatch, threads, cores, load, workers):
    # Two threads by default while a core is idle, else none (threads on busy cores cost more than
    # they save, and a single worker only adds hand-offs), none on one core; an explicit count is kept up to the cores; the events do not depend on it.
    import evstream.io.aedat4 as aedat4

    events = random_events(70_000, seed=4)
    path = tmp_path / "t.aedat4"
    write_aedat4(path, events, SensorSize(128, 128), packet_events=20_000)
    monkeypatch.setattr(aedat4.os, "sched_getaffinity", lambda pid: cores)
    monkeypatch.setattr(aedat4.os, "getloadavg", lambda: (load, load, load))
    with Aedat4Reader(path, threads=threads) as reader:
        assert reader._workers() == workers
        assert np.array_equal(np.concatenate(list(reader.iter_packets())), events)
        assert (reader._pool is not None) == (workers > 0) and (workers == 0 or reader._pool_size == workers)
        assert np.array_equal(reader.read(), events)


def _odd_layout_payload(events: np.ndarray) -> bytes:
    """A valid EVTS FlatBuffer laid out unlike dv-processing's (extra padding, other offsets)."""
    body = struct.pack("<I4sHHH6xiI4xI", 20, b"EVTS", 6, 8, 4, 12, 8, len(events)) + events.tobytes()
    return struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("compression", ["none", "lz4"])
@pytest.mark.parametrize("threads", [0, 2])
def test_other_flatbuffer_layouts_and_miscounting_tables(tmp_path, compression, threads):
    from evstream.io import codec
    from evstream.io.aedat4 import _INFO_NODE
    from evstream.io.flatbuf import DataTableEntry, encode_file_data_table, encode_io_header

    code = codec.compression_code(compression)
    xml = _INFO_NODE.format(id=0, compression=compression.upper(), width=128, height=128, source="odd", ts_offset=0)
    header = encode_io_header(code, xml)
    data = bytearray(MAGIC + struct.pack("<I", len(header)) + header)
    chunks = [random_events(n, seed=n) for n in (20_000, 5, 30_000)]
    rows = []
    for i, chunk in enumerate(chunks):
        payload = codec.compress(code, _odd_layout_payload(chunk))
        rows.append(DataTableEntry(len(data) + 8, 0, len(payload), len(chunk) + (7 if i == 2 else 0),
                                   int(chunk["t"][0]), int(chunk["t"][-1])))
        data += struct.pack("<ii", 0, len(payload)) + payload
    struct.pack_into("<q", data, len(MAGIC) + 4 + IO_HEADER_DATA_TABLE_POSITION, len(data))
    data += codec.compress(code, encode_file_data_table(rows))
    path = tmp_path / "odd.aedat4"
    path.write_bytes(bytes(data))
    with Aedat4Reader(path, threads=threads) as reader:
        assert reader.data_table is not None
        assert [len(p) for p in reader.iter_packets()] == [20_000, 5, 30_000]
        assert np.array_equal(reader.read(), np.concatenate(chunks))


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_ours_read_by_dv_processing(tmp_path, compression):
    dv = pytest.importorskip("dv_processing")
    sensor = SensorSize(346, 260)
    events = random_events(25_000, sensor, t0=1_700_000_000_000_000, seed=2)
    path = tmp_path / "ours.aedat4"
    write_aedat4(path, events, sensor, compression, camera_name="DAVIS346_evstream", packet_events=4_000)
    rec = dv.io.MonoCameraRecording(str(path))
    assert rec.getCameraName() == "DAVIS346_evstream"
    assert tuple(rec.getEventResolution()) == (346, 260)
    assert tuple(rec.getTimeRange()) == (events["t"][0], events["t"][-1])
    ref = _dv_events(path)
    assert np.array_equal(ref["timestamp"], events["t"])
    assert np.array_equal(ref["x"], events["x"]) and np.array_equal(ref["y"], events["y"])
    assert np.array_equal(ref["polarity"].astype(np.uint8), events["p"])
    t0, t1 = int(events["t"][5_000]), int(events["t"][17_000])
    window = rec.getEventsTimeRange(t0, t1).numpy()
    with Aedat4Reader(path) as reader:
        assert np.array_equal(reader.read(t0, t1)["t"], window["timestamp"])


@pytest.mark.parametrize("compression", ["NONE", "LZ4", "LZ4_HIGH", "ZSTD"])
def test_dv_processing_written_read_by_ours(tmp_path, compression):
    dv = pytest.importorskip("dv_processing")
    import datetime

    path = tmp_path / "dv.aedat4"
    config = dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer_test", (640, 480),
                                                    getattr(dv.CompressionType, compression))
    writer = dv.io.MonoCameraWriter(str(path), config)
    stores = [dv.data.generate.uniformEventsWithinTimeRange(10_000 * i, datetime.timedelta(milliseconds=10),
                                                            (640, 480), 3_000 + 100 * i, i) for i in range(5)]
    for store in stores:
        writer.writeEvents(store)
    del writer
    expected = np.concatenate([s.numpy() for s in stores])
    with Aedat4Reader(path) as reader:
        assert reader.camera_name == "DVXplorer_test"
        assert reader.sensor_size == SensorSize(640, 480)
        assert reader.compression == compression
        assert reader.data_table is not None
        got = reader.read()
        assert reader.time_range() == (int(expected["timestamp"][0]), int(expected["timestamp"][-1]))
    assert np.array_equal(got["t"], expected["timestamp"])
    assert np.array_equal(got["x"], expected["x"]) and np.array_equal(got["y"], expected["y"])
    assert np.array_equal(got["p"], expected["polarity"].astype(np.uint8))


def _without_table(src, dst, *, chop: bool) -> None:
    """Copy ``src`` with dataTablePosition = -1; ``chop`` also cuts the table bytes off."""
    data = bytearray(src.read_bytes())
    at = len(MAGIC) + 4 + IO_HEADER_DATA_TABLE_POSITION
    table = struct.unpack_from("<q", data, at)[0]
    struct.pack_into("<q", data, at, -1)
    dst.write_bytes(bytes(data[:table]) if chop else bytes(data))
    return table


@pytest.fixture(scope="module")
def seek_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("seek") / "seek.aedat4"
    events = random_events(60_000, SensorSize(64, 48), t0=10_000_000, duration_us=3_000_000, seed=9)
    write_aedat4(path, events, SensorSize(64, 48), "lz4", packet_events=2_500)
    return path, events


def test_seek_with_table_and_without(tmp_path, seek_file):
    path, events = seek_file
    chopped = tmp_path / "chopped.aedat4"
    _without_table(path, chopped, chop=True)
    for p, has_table in ((path, True), (chopped, False)):
        with Aedat4Reader(p) as reader:
            assert (reader.data_table is not None) is has_table
            assert reader.time_range() == (int(events["t"][0]), int(events["t"][-1]))
            for t0, t1 in [(11_000_000, 11_500_000), (10_000_000, 10_000_001), (12_999_000, 14_000_000),
                           (0, 5), (20_000_000, 30_000_000)]:
                want = events[(events["t"] >= t0) & (events["t"] < t1)]
                assert np.array_equal(reader.read(t0, t1), want), (p.name, t0, t1)
            first = next(reader.iter_packets(t_start=12_000_000))
            assert first["t"][0] <= 12_000_000 <= first["t"][-1]
    assert np.array_equal(read_events(chopped), events)


def test_table_position_minus_one_but_table_still_there_is_misread_as_damage(tmp_path, seek_file):
    # A table left behind the packets without dataTablePosition looks like a packet with a stream
    # id nobody declared: every packet before it is read, then the documented error.
    path, events = seek_file
    stale = tmp_path / "stale.aedat4"
    table = _without_table(path, stale, chop=False)
    with Aedat4Reader(stale) as reader:
        got = []
        with pytest.raises(EventFileError, match=f"byte {table}: "):
            for packet in reader.iter_packets():
                got.append(packet.copy())
    assert np.array_equal(np.concatenate(got), events)


def test_writer_killed_midway_reads_every_whole_packet(tmp_path):
    sensor = SensorSize(128, 128)
    path = tmp_path / "live.aedat4"
    writer = Aedat4Writer(path, sensor, packet_events=1_000)
    chunks = [random_events(1_000, sensor, t0=i * 1_000_000, seed=i) for i in range(5)]
    for chunk in chunks:
        writer.write(chunk)
    # Not closed: another process reading now sees a recording without its table.
    with Aedat4Reader(path) as reader:
        assert reader.data_table is None
        assert np.array_equal(reader.read(), np.concatenate(chunks))
    writer.close()
    with Aedat4Reader(path) as reader:
        assert len(reader.data_table) == 5


def test_backward_timestamps_are_kept_as_stored(tmp_path):
    events = random_events(5_000, seed=1)
    events["t"][2_000:2_100] -= 400_000
    path = tmp_path / "back.aedat4"
    write_aedat4(path, events, SensorSize(128, 128), packet_events=1_000)
    assert np.array_equal(read_events(path), events)
    with Aedat4Reader(path) as reader:
        t0, t1 = 100_000, 600_000
        got = reader.read(t0, t1)
    assert np.array_equal(got, events[(events["t"] >= t0) & (events["t"] < t1)])


def test_empty_recording(tmp_path):
    path = tmp_path / "empty.aedat4"
    write_aedat4(path, np.zeros(0, EVENT_DTYPE), SensorSize(32, 32))
    with Aedat4Reader(path) as reader:
        assert len(reader.read()) == 0
        assert reader.time_range() is None
        assert reader.data_table == []


def test_writer_rejects_unknown_compression(tmp_path):
    with pytest.raises(EventFileError, match="compression must be one of"):
        Aedat4Writer(tmp_path / "x.aedat4", SensorSize(8, 8), compression="gzip")


def test_ours_read_by_aedat_and_public_contract(tmp_path):
    import evstream

    aedat = pytest.importorskip("aedat")
    sensor = SensorSize(320, 240)
    events = random_events(12_000, sensor, t0=1_650_000_000_000_000, seed=6)
    path = tmp_path / "contract.aedat4"
    evstream.write_aedat4(path, events, sensor, compression="zstd_high")
    decoder = aedat.Decoder(str(path))
    assert decoder.id_to_stream()[0] == {"type": "events", "width": 320, "height": 240}
    other = np.concatenate([p["events"] for p in decoder if "events" in p])
    assert np.array_equal(other["t"].astype(np.int64), events["t"])
    assert np.array_equal(other["x"], events["x"]) and np.array_equal(other["on"], events["p"].astype(bool))
    assert np.array_equal(evstream.read_events(path), events)


def test_lowest_id_event_stream_is_read_and_others_skipped(tmp_path):
    from evstream.io import codec
    from evstream.io.aedat4 import encode_event_packet
    from evstream.io.flatbuf import encode_io_header

    def stream(sid: int, kind: str, size: str) -> str:
        return (f'<node name="{sid}" path="/outInfo/{sid}/"><attr key="typeIdentifier" type="string">{kind}</attr>'
                f'<attr key="originalOutputName" type="string">s{sid}</attr><node name="info" path="/outInfo/{sid}/info/">'
                f'{size}<attr key="source" type="string">cam{sid}</attr></node></node>')

    xml = ('<dv version="2.0"><node name="outInfo" path="/outInfo/">'
           + stream(5, "EVTS", '<attr key="sizeX" type="int">10</attr><attr key="sizeY" type="int">10</attr>')
           + stream(1, "IMUS", "")
           + stream(2, "EVTS", '<attr key="sizeX" type="int">20</attr><attr key="sizeY" type="int">30</attr>')
           + "</node></dv>")
    header = encode_io_header(1, xml)
    data = bytearray(MAGIC + struct.pack("<I", len(header)) + header)
    wanted = [random_events(50, SensorSize(20, 30), seed=i) for i in range(3)]
    for chunk in wanted:
        for sid, payload in ((5, encode_event_packet(1, random_events(40, SensorSize(10, 10), seed=9))),
                             (1, codec.compress(1, b"imu" * 10)), (2, encode_event_packet(1, chunk))):
            data += struct.pack("<ii", sid, len(payload)) + payload
    path = tmp_path / "multi.aedat4"
    path.write_bytes(bytes(data))
    with Aedat4Reader(path) as reader:
        assert [s.id for s in reader.streams] == [1, 2, 5]
        assert reader.event_stream_id == 2
        assert reader.sensor_size == SensorSize(20, 30) and reader.camera_name == "cam2"
        assert reader.data_table is None
        assert reader.packet_counts() == {5: 3, 1: 3, 2: 3}
        assert np.array_equal(reader.read(), np.concatenate(wanted))


def _declaring(size_x: str, size_y: str = "64") -> bytes:
    """An AEDAT 4 file whose event stream declares ``size_x`` x ``size_y`` and holds one packet."""
    from evstream.io.flatbuf import encode_io_header

    xml = ('<dv version="2.0"><node name="outInfo" path="/outInfo/"><node name="0" path="/outInfo/0/">'
           '<attr key="typeIdentifier" type="string">EVTS</attr><node name="info" path="/outInfo/0/info/">'
           f'<attr key="sizeX" type="int">{size_x}</attr><attr key="sizeY" type="int">{size_y}</attr>'
           '</node></node></node></dv>')
    header = encode_io_header(0, xml)
    return MAGIC + struct.pack("<I", len(header)) + header


@pytest.mark.parametrize("size_x", ["2147483648", "100000000000000000000", "\u0663\u0662", "0", "32768", "-5",
                                    "12x", "", "1e3"])
def test_declared_sensor_size_out_of_bounds_is_one_line_naming_file_and_field(tmp_path, size_x):
    # reproducer (issue 17, finding 5): 2**31, 10**20 and Unicode digits were accepted, and the
    # binner then asked for 8 GiB or raised a ValueError traceback
    path = tmp_path / "size.aedat4"
    path.write_bytes(_declaring(size_x))
    with pytest.raises(EventFileError, match=r"size\.aedat4: byte \d+: .*sizeX .*1 \.\.\. 32767") as err:
        Aedat4Reader(path)
    assert "\n" not in str(err.value)


def test_largest_declared_sensor_size_is_accepted(tmp_path):
    path = tmp_path / "big.aedat4"
    path.write_bytes(_declaring("32767", "32767"))
    with Aedat4Reader(path) as reader:
        assert reader.sensor_size == SensorSize(32767, 32767)
    with pytest.raises(Exception, match="32767"):
        SensorSize(32768, 1)


def _inflated_table(path, events, compression: str, claim) -> None:
    """Write ``events`` (several packets) and rewrite each table count ``n`` as ``claim(n)``."""
    with Aedat4Writer(path, (64, 64), compression=compression, packet_events=1_000) as writer:
        writer.write(events)
        writer._entries = [dataclasses.replace(e, num_elements=claim(e.num_elements)) for e in writer._entries]


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
@pytest.mark.parametrize("claim", [lambda n: 10**12, lambda n: 200 * n], ids=["1e12", "200x"])
def test_read_does_not_preallocate_from_inflated_table_counts(tmp_path, compression, claim):
    # reproducer (issue 17, finding 9): read() sized its output from the FileDataTable's event
    # counts before any packet was checked, so a small file claiming 10**12 events asked for TiB
    events = random_events(5_000, SensorSize(64, 64), seed=3)
    path = tmp_path / "inflated.aedat4"
    _inflated_table(path, events, compression, claim)
    read_events(path)  # once untraced: the first read in a process loads numba's cache (~26 MB traced)
    tracemalloc.start()
    try:
        got = read_events(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, events)
    assert peak < 2 * 1024 * 1024 + 4 * events.nbytes, peak


def test_read_still_preallocates_from_an_honest_table(tmp_path, monkeypatch):
    events = random_events(5_000, SensorSize(64, 64), seed=4)
    path = tmp_path / "honest.aedat4"
    write_aedat4(path, events, (64, 64), "lz4", packet_events=1_000)
    import evstream.io.aedat4 as aedat4

    monkeypatch.setattr(aedat4, "concatenate", lambda parts: pytest.fail("fell back to packet-wise decoding"))
    with Aedat4Reader(path) as reader:
        np.testing.assert_array_equal(reader.read(), events)
