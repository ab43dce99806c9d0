"""Damaged recordings: a table of known faults, then hypothesis mutations of the real samples.

The contract (evstream/io/aedat4.py, aedat3.py): every fault is an EventFileError naming the
file and a byte offset; a fault in a packet is raised when iteration reaches it, after every whole
packet before it; nothing else is ever raised, nothing hangs.
"""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evstream.errors import EventFileError
from evstream.events import EVENT_DTYPE, SensorSize
from evstream.io import open_reader, read_events
from evstream.io.aedat3 import write_aedat3
from evstream.io.aedat4 import MAGIC, Aedat4Reader, write_aedat4
from evstream.io.flatbuf import IO_HEADER_DATA_TABLE_POSITION
from tests.helpers import random_events

PACKET = 2_000
N_PACKETS = 5
DTP_AT = len(MAGIC) + 4 + IO_HEADER_DATA_TABLE_POSITION


def consume(path, **kw) -> tuple[list[np.ndarray], EventFileError | None]:
    """Every packet readable before the first error, and that error (None if the file read whole)."""
    got = []
    try:
        with open_reader(path, **kw) if kw else open_reader(path) as reader:
            for packet in reader.iter_packets():
                assert packet.dtype == EVENT_DTYPE
                got.append(np.array(packet))
    except EventFileError as err:
        assert re.search(r": byte \d+: |: (no such file|is a directory)", str(err)), str(err)
        assert "\n" not in str(err)
        return got, err
    return got, None


def _layout(path) -> tuple[int, list[int]]:
    """(first packet offset, packet header offsets) of a file we wrote."""
    data = path.read_bytes()
    start = 18 + struct.unpack_from("<I", data, 14)[0]
    table = struct.unpack_from("<q", data, DTP_AT)[0]
    offsets, pos = [], start
    while pos < table:
        offsets.append(pos)
        pos += 8 + struct.unpack_from("<i", data, pos + 4)[0]
    return start, offsets


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("damage")
    events = random_events(PACKET * N_PACKETS, SensorSize(128, 128), t0=5_000_000, seed=11)
    out = {"events": events}
    for codec in ("lz4", "none", "zstd"):
        path = folder / f"good_{codec}.aedat4"
        write_aedat4(path, events, SensorSize(128, 128), codec, packet_events=PACKET)
        out[codec] = path
    return out


def _mutated(tmp_path, src, edit) -> object:
    data = bytearray(src.read_bytes())
    data = edit(data) or data
    path = tmp_path / "bad.aedat4"
    path.write_bytes(bytes(data))
    return path


def _put(fmt, at, value):
    def edit(data):
        struct.pack_into(fmt, data, at, value)
    return edit


def test_open_faults(tmp_path, good):
    cases = {
        "wrong magic": (lambda d: d.__setitem__(slice(0, 4), b"#!XX"), 0, "not an AEDAT 4.0 file"),
        "cut in magic": (lambda d: d[:9], 9, "inside the AEDAT 4.0 magic"),
        "cut in size": (lambda d: d[:16], 14, "IOHeader size"),
        "cut in IOHeader": (lambda d: d[:60], 14, "past the end"),
        "IOHeader size too large": (_put("<I", 14, 10**9), 14, "past the end"),
        "root offset out of range": (_put("<I", 18, 10**6), 18, "outside"),
        "unknown compression": (_put("<i", 18 + 28, 9), 18, "compression type 9"),
        "table inside header": (_put("<q", DTP_AT, 20), 18, "inside the header"),
        "no event stream": (lambda d: d.replace(b">EVTS<", b">FRME<"), 18, "no event stream"),
        "broken XML": (lambda d: d.replace(b"</dv>", b"</xx>"), 18, "not valid XML"),
    }
    for name, (edit, offset, message) in cases.items():
        path = _mutated(tmp_path, good["lz4"], edit)
        with pytest.raises(EventFileError, match=re.escape(message)) as info:
            Aedat4Reader(path)
        assert info.value.offset == offset, name
        assert str(path) in str(info.value)


def _chop_table(data: bytearray) -> bytearray:
    table = struct.unpack_from("<q", data, DTP_AT)[0]
    struct.pack_into("<q", data, DTP_AT, -1)
    return data[:table]


def _then(data: bytearray, edit) -> bytearray:
    return edit(data) or data


def test_packet_faults_give_the_prefix_then_the_error(tmp_path, good):
    events = good["events"]
    start, heads = _layout(good["lz4"])
    third = heads[2]
    cases = {
        "truncated payload": (lambda d: d[:third + 40], third + 4, "past the end"),
        "truncated packet header": (lambda d: d[:third + 5], third, "truncated packet header"),
        "size larger than the rest": (_put("<i", third + 4, 10**8), third + 4, "past the end"),
        "negative size": (_put("<i", third + 4, -5), third + 4, "packet size -5"),
        "LZ4 magic destroyed": (lambda d: d.__setitem__(slice(third + 8, third + 12), b"\0\0\0\0"), third + 8,
                                "LZ4 frame"),
    }
    for name, (edit, offset, message) in cases.items():
        # Without a FileDataTable the packets are scanned header by header.
        path = _mutated(tmp_path, good["lz4"], lambda d, edit=edit: _then(_chop_table(d), edit))
        got, err = consume(path)
        assert err is not None, name
        assert message in str(err), (name, str(err))
        assert err.offset == offset, (name, str(err))
        assert np.array_equal(np.concatenate(got), events[:2 * PACKET]), name
    # A packet naming a stream the info node does not declare is skipped and counted, not fatal (issue 14).
    path = _mutated(tmp_path, good["lz4"], lambda d: _then(_chop_table(d), _put("<i", third, 7)))
    got, err = consume(path)
    assert err is None
    assert np.array_equal(np.concatenate(got), np.concatenate([events[:2 * PACKET], events[3 * PACKET:]]))
    with Aedat4Reader(path) as reader:
        assert [row["packets"] for row in reader.stream_summary() if row["id"] == 7] == [1]
    # With the table, an edited packet header disagrees with its table entry.
    for fmt, value in (("<i", 7), ("<i", 10**8)):
        at = third if value == 7 else third + 4
        got, err = consume(_mutated(tmp_path, good["lz4"], _put(fmt, at, value)))
        assert "does not match the FileDataTable entry" in str(err) and err.offset == third
        assert np.array_equal(np.concatenate(got), events[:2 * PACKET])


def test_swapped_codec_is_reported_at_the_first_packet(tmp_path, good):
    start, _ = _layout(good["lz4"])
    path = _mutated(tmp_path, good["lz4"], _put("<i", 18 + 28, 3))  # LZ4 -> ZSTD
    got, err = consume(path)
    assert got == [] and "ZSTD frame" in str(err) and err.offset == start + 8


def test_flatbuffer_offsets_out_of_range(tmp_path, good):
    # NONE: the payload is the FlatBuffer itself, so its fields can be edited directly.
    _, heads = _layout(good["none"])
    payload = heads[1] + 8
    cases = {
        "root offset": (_put("<I", payload + 4, 10**7), "outside"),
        "vector length": (_put("<I", payload + 28, 10**6), "overruns"),
        "identifier": (lambda d: d.__setitem__(slice(payload + 8, payload + 12), b"IMUS"), "expected b'EVTS'"),
        "vtable offset": (_put("<i", payload + 16, -(10**6)), "vtable"),
        "size prefix": (_put("<I", payload, 10**6), "size prefix"),
    }
    for name, (edit, message) in cases.items():
        got, err = consume(_mutated(tmp_path, good["none"], edit))
        assert err is not None and message in str(err), (name, err)
        assert err.offset == payload, name
        assert np.array_equal(np.concatenate(got), good["events"][:PACKET]), name


def test_truncated_table_is_reported_after_all_packets(tmp_path, good):
    data = good["lz4"].read_bytes()
    table = struct.unpack_from("<q", data, DTP_AT)[0]
    last = _layout(good["lz4"])[1][-1]
    for cut, where in ((table + 10, table), (table, table), (table - 3, last + 4)):
        path = tmp_path / "cut.aedat4"
        path.write_bytes(data[:cut])
        got, err = consume(path)
        assert err is not None and err.offset == where, str(err)
        n = N_PACKETS if cut >= table else N_PACKETS - 1
        assert np.array_equal(np.concatenate(got), good["events"][:n * PACKET])


@pytest.mark.parametrize("what", ["missing", "directory", "empty", "unknown magic", "aedat3.0"])
def test_path_faults(tmp_path, what):
    path = tmp_path / "x.aedat4"
    if what == "directory":
        path = tmp_path
    elif what == "empty":
        path.write_bytes(b"")
    elif what == "unknown magic":
        path.write_bytes(b"RIFF....")
    elif what == "aedat3.0":
        path.write_bytes(b"#!AER-DAT3.0\r\n#Format: RAW\r\n")
    with pytest.raises(EventFileError) as info:
        read_events(path)
    message = {"missing": "no such file", "directory": "is a directory", "empty": "empty file",
               "unknown magic": "unknown format", "aedat3.0": "AEDAT 3.0 is not supported"}[what]
    assert message in str(info.value) and str(path) in str(info.value)


# -- hypothesis mutations of the real samples ----------------------------------------------------

SAMPLES = ["dvxplorer_320x240_tonic_sample.aedat4", "davis346_aestream_sample.aedat4"]
_TRUTH: dict[str, tuple[bytes, np.ndarray, list[int]]] = {}


def _truth(shared_data, name):
    if name not in _TRUTH:
        path = shared_data / name
        data = path.read_bytes()
        with Aedat4Reader(path) as reader:
            heads = [r.byte_offset - 8 for r in reader.data_table]
            _TRUTH[name] = (data, reader.read(), heads)
    return _TRUTH[name]


def _check_prefix(got, truth):
    events = np.concatenate(got) if got else np.zeros(0, EVENT_DTYPE)
    assert np.array_equal(events, truth[:len(events)])


_FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(sample=st.sampled_from(SAMPLES), cut=st.floats(0, 1))
def test_fuzz_truncation_gives_a_prefix(tmp_path, shared_data, sample, cut):
    data, truth, _ = _truth(shared_data, sample)
    path = tmp_path / "cut.aedat4"
    path.write_bytes(data[:int(cut * len(data))])
    got, err = consume(path)
    _check_prefix(got, truth)
    if err is None:
        assert sum(len(g) for g in got) == len(truth)


@_FUZZ
@given(sample=st.sampled_from(SAMPLES), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)),
                                                       min_size=1, max_size=8))
def test_fuzz_bit_flips(tmp_path, shared_data, sample, flips):
    data, truth, _ = _truth(shared_data, sample)
    mutated = bytearray(data)
    for where, bit in flips:
        mutated[min(int(where * len(data)), len(data) - 1)] ^= 1 << bit
    path = tmp_path / "flip.aedat4"
    path.write_bytes(bytes(mutated))
    got, err = consume(path)
    assert sum(len(g) for g in got) <= 16 * len(data)


@_FUZZ
@given(sample=st.sampled_from(SAMPLES), which=st.floats(0, 1), field=st.sampled_from([0, 4]),
       value=st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 1, 8, 2**31 - 1])))
def test_fuzz_edited_packet_header(tmp_path, shared_data, sample, which, field, value):
    data, truth, heads = _truth(shared_data, sample)
    at = heads[min(int(which * len(heads)), len(heads) - 1)]
    mutated = bytearray(data)
    struct.pack_into("<i", mutated, at + field, value)
    path = tmp_path / "edit.aedat4"
    path.write_bytes(bytes(mutated))
    got, err = consume(path)
    if err is not None:
        # Packets before the edited one are untouched, so what came out first is the true prefix.
        _check_prefix(got, truth)


@_FUZZ
@given(sample=st.sampled_from(SAMPLES), code=st.integers(-3, 8))
def test_fuzz_swapped_codec(tmp_path, shared_data, sample, code):
    data, truth, _ = _truth(shared_data, sample)
    mutated = bytearray(data)
    struct.pack_into("<i", mutated, 18 + 28, code)  # both samples: compression at IOHeader byte 28
    path = tmp_path / "codec.aedat4"
    path.write_bytes(bytes(mutated))
    got, err = consume(path)
    if code in (1, 2):
        assert err is None and np.array_equal(np.concatenate(got), truth)
    else:
        assert err is not None


@pytest.fixture(scope="module")
def aedat3_file(tmp_path_factory):
    events = random_events(6_000, SensorSize(128, 128), t0=(3 << 31) - 500_000, seed=5)
    path = tmp_path_factory.mktemp("a3") / "rec.aedat"
    write_aedat3(path, events, packet_events=1_000)
    return path.read_bytes(), events


@_FUZZ
@given(cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 7)), max_size=6))
def test_fuzz_aedat3(tmp_path, aedat3_file, cut, flips):
    data, truth = aedat3_file
    mutated = bytearray(data[:int(cut * len(data))] if not flips else data)
    for where, bit in flips:
        if mutated:
            mutated[min(int(where * len(mutated)), len(mutated) - 1)] ^= 1 << bit
    path = tmp_path / "m.aedat"
    path.write_bytes(bytes(mutated))
    got, err = consume(path)
    if not flips:
        _check_prefix(got, truth)
