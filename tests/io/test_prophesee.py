"""Prophesee RAW (EVT 2.0, 2.1, 3.0) and DAT readers: hand-built files, real samples, damage.

The encoders here are written from Prophesee's format pages, independently of the decoders.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evstream.errors import EventFileError
from evstream.events import EVENT_DTYPE, SensorSize
from evstream.io import detect_format, open_reader, read_events
from evstream.io.prophesee import DatReader, PropheseeRawReader
from tests.helpers import random_events


def canonical(events: np.ndarray) -> np.ndarray:
    """Events in the order a vectorised encoder emits them (t, y, p, x), exact duplicates removed."""
    order = np.lexsort((events["x"], events["p"], events["y"], events["t"]))
    ev = events[order]
    key = np.stack([ev["t"], ev["y"], ev["p"], ev["x"]], axis=1)
    keep = np.ones(len(ev), bool)
    keep[1:] = np.any(key[1:] != key[:-1], axis=1)
    return ev[keep]


def header(*lines: str) -> bytes:
    return "".join(f"% {line}\n" for line in lines).encode()


def _merged(events, triggers):
    """(t, kind, payload) items in time order, triggers before events at equal t."""
    items = [(int(t), 0, (int(i), int(v))) for t, i, v in triggers]
    items += [(int(e["t"]), 1, e) for e in events]
    return sorted(items, key=lambda it: (it[0], it[1]))


def encode_evt2(events: np.ndarray, triggers=()) -> bytes:
    words, high = [], None
    for t, kind, item in _merged(events, triggers):
        if t >> 6 != high:
            high = t >> 6
            words.append(0x8 << 28 | (high & 0xFFFFFFF))
        if kind == 0:
            words.append(0xA << 28 | (t & 63) << 22 | item[0] << 8 | item[1])
        else:
            words.append(int(item["p"]) << 28 | (t & 63) << 22 | int(item["x"]) << 11 | int(item["y"]))
    return np.array(words, "<u4").tobytes()


def encode_evt21(events: np.ndarray, triggers=()) -> bytes:
    """Events must be canonical; runs of equal (t, y, p) within 32 columns share one vector word."""
    words, high, vector = [], None, None

    def flush():
        if vector is not None:
            t, y, p, base, mask = vector
            words.append(p << 60 | (t & 63) << 54 | base << 43 | y << 32 | mask)

    for t, kind, item in _merged(events, triggers):
        if t >> 6 != high:
            flush()
            vector = None
            high = t >> 6
            words.append(0x8 << 60 | (high & 0xFFFFFFF) << 32)
        if kind == 0:
            flush()
            vector = None
            words.append(0xA << 60 | (t & 63) << 54 | item[0] << 40 | item[1] << 32)
            continue
        x, y, p = int(item["x"]), int(item["y"]), int(item["p"])
        if vector is not None and tuple(vector[:3]) == (t, y, p) and x - vector[3] < 32:
            vector[4] |= 1 << (x - vector[3])
        else:
            flush()
            vector = [t, y, p, x, 1]
    flush()
    return np.array(words, "<u8").view("<i8").tobytes()


def encode_evt3(events: np.ndarray, triggers=()) -> bytes:
    """Events must be canonical; uses ADDR_X for lone events and VECT_BASE_X + VECT_12 / VECT_8
    (with empty vectors across gaps) for runs of equal (t, y, p)."""
    words = []
    state = {"th": None, "tl": None, "y": None}

    def set_time(t):
        th, tl = (t >> 12) & 0xFFF, t & 0xFFF
        if th != state["th"]:
            words.append(0x8000 | th)
            state["th"], state["tl"] = th, None
        if tl != state["tl"]:
            words.append(0x6000 | tl)
            state["tl"] = tl

    def emit_run(y, p, xs):
        if y != state["y"]:
            words.append(y)
            state["y"] = y
        if len(xs) == 1:
            words.append(0x2000 | p << 11 | xs[0])
            return
        base = xs[0]
        words.append(0x3000 | p << 11 | base)
        rest = list(xs)
        while rest:
            span = 8 if rest[-1] - base < 8 else 12
            mask = sum(1 << (x - base) for x in rest if x - base < span)
            rest = [x for x in rest if x - base >= span]
            words.append((0x5000 if span == 8 else 0x4000) | mask)
            base += span

    items = _merged(events, triggers)
    i = 0
    while i < len(items):
        t, kind, item = items[i]
        set_time(t)
        if kind == 0:
            words.append(0xA000 | item[0] << 8 | item[1])
            i += 1
            continue
        y, p = int(item["y"]), int(item["p"])
        xs = [int(item["x"])]
        j = i + 1
        while (j < len(items) and items[j][1] == 1 and items[j][0] == t and int(items[j][2]["y"]) == y
               and int(items[j][2]["p"]) == p and int(items[j][2]["x"]) - xs[-1] < 40):
            xs.append(int(items[j][2]["x"]))
            j += 1
        emit_run(y, p, xs)
        i = j
    return np.array(words, "<u2").tobytes()


ENCODERS = {"evt2": encode_evt2, "evt21": encode_evt21, "evt3": encode_evt3}
EVT_LINE = {"evt2": "evt 2.0", "evt21": "evt 2.1", "evt3": "evt 3.0"}


def _dense_events(sensor: SensorSize, t0: int, n: int = 4_000, seed: int = 1) -> np.ndarray:
    """Random events plus dense runs along rows (so that vectors are used), canonical order."""
    ev = random_events(n, sensor, t0=t0, duration_us=300_000, seed=seed)
    rng = np.random.default_rng(seed)
    runs = np.zeros(600, EVENT_DTYPE)
    runs["t"] = t0 + np.repeat(rng.integers(0, 300_000, 20), 30)
    runs["y"] = np.repeat(rng.integers(0, sensor.height, 20), 30)
    runs["x"] = np.repeat(rng.integers(0, sensor.width - 60, 20), 30) + np.tile(np.arange(0, 60, 2), 20)
    runs["p"] = np.repeat(rng.integers(0, 2, 20), 30)
    return canonical(np.concatenate([ev, runs]))


@pytest.mark.parametrize("encoding", ["evt2", "evt21", "evt3"])
def test_hand_built_raw_round_trip(tmp_path, encoding):
    sensor = SensorSize(640, 480)
    events = _dense_events(sensor, t0=5_000_000)
    triggers = [(5_000_010, 3, 1), (5_150_000, 3, 0)]
    path = tmp_path / "rec.bin"  # the extension says nothing; the header does
    path.write_bytes(header("Date 2024-01-01", EVT_LINE[encoding], "geometry 640x480", "plugin_name test")
                     + ENCODERS[encoding](events, triggers))
    assert detect_format(path) == encoding
    with open_reader(path) as reader:
        assert isinstance(reader, PropheseeRawReader)
        assert reader.sensor_size == sensor and reader.source == "test"
        got = reader.read()
        assert reader.triggers["t"].tolist() == [5_000_010, 5_150_000]
        assert reader.triggers["id"].tolist() == [3, 3] and reader.triggers["value"].tolist() == [1, 0]
        assert reader.counts["events"] == len(events) and reader.counts["triggers"] == 2
    assert got.dtype == EVENT_DTYPE
    assert np.array_equal(got, events)


def test_evt3_vectors_known_words(tmp_path):
    """A few EVT 3.0 words written out by hand: ADDR_Y, VECT_BASE_X, VECT_12, an empty VECT_8, VECT_8."""
    words = [0x8001, 0x6005,              # time high 1, time low 5 -> t = 4096 + 5
             0x0007,                      # y = 7
             0x3000 | 1 << 11 | 100,      # vector base x = 100, ON
             0x4000 | 0b1000_0000_0101,   # x = 100, 102, 111; base -> 112
             0x5000,                      # empty VECT_8; base -> 120
             0x5000 | 0b1000_0001,        # x = 120, 127
             0x2000 | 3,                  # lone OFF event at x = 3
             0xE000, 0xF000, 0x7000]      # OTHERS, CONTINUED_12, CONTINUED_4: counted
    path = tmp_path / "v.raw"
    path.write_bytes(header("evt 3.0", "geometry 320x320") + np.array(words, "<u2").tobytes())
    with PropheseeRawReader(path) as reader:
        ev = reader.read()
        assert reader.counts["others"] == 1 and reader.counts["continued"] == 2
    assert ev["x"].tolist() == [100, 102, 111, 120, 127, 3]
    assert ev["y"].tolist() == [7] * 6
    assert ev["p"].tolist() == [1, 1, 1, 1, 1, 0]
    assert ev["t"].tolist() == [4101] * 6


@pytest.mark.parametrize("encoding,t0", [("evt2", (1 << 34) - 150_000), ("evt21", (1 << 34) - 150_000),
                                         ("evt3", (1 << 24) - 150_000)])
def test_time_high_wrap(tmp_path, encoding, t0):
    """The time counter wraps (34 bits in EVT 2.x, 24 bits in EVT 3.0): times keep increasing."""
    sensor = SensorSize(320, 320)
    events = _dense_events(sensor, t0=t0, n=3_000, seed=4)
    assert events["t"][0] < t0 + 150_000 < events["t"][-1]
    path = tmp_path / "wrap.raw"
    path.write_bytes(header(EVT_LINE[encoding], "format x;width=320;height=320") + ENCODERS[encoding](events))
    got = read_events(path)
    assert np.all(np.diff(got["t"]) >= 0)
    assert np.array_equal(got, events)


def test_evt3_long_recording_many_wraps_and_small_blocks(tmp_path, monkeypatch):
    """60 s of EVT 3.0 (three 16.7 s wraps) decoded through tiny blocks gives the same events."""
    import evstream.io.prophesee as prophesee

    sensor = SensorSize(64, 64)
    ev = random_events(6_000, sensor, t0=0, duration_us=60_000_000, seed=5)
    events = canonical(ev)
    path = tmp_path / "long.raw"
    path.write_bytes(header("evt 3.0", "geometry 64x64") + encode_evt3(events))
    whole = read_events(path)
    monkeypatch.setattr(prophesee, "_BLOCK_BYTES", 64)
    with PropheseeRawReader(path) as reader:
        packets = list(reader.iter_packets())
    assert len(packets) > 100
    assert np.array_equal(whole, events) and np.array_equal(np.concatenate(packets), events)


def test_read_grows_past_one_slot_per_word_and_many_triggers(tmp_path):
    """Full EVT 2.1 vectors hold 32 events per word, and 5,000 triggers overflow a trigger block:
    read() and iter_packets() agree on both."""
    words = [0x8 << 60 | 1 << 32]
    words += [1 << 60 | (i % 64) << 54 | (i % 2) * 32 << 43 | (i % 50) << 32 | 0xFFFFFFFF for i in range(200)]
    words += [0xA << 60 | 7 << 54 | 2 << 40 | 1 << 32] * 5_000
    path = tmp_path / "full.raw"
    path.write_bytes(header("evt 2.1", "geometry 64x64") + np.array(words, "<u8").view("<i8").tobytes())
    with PropheseeRawReader(path) as reader:
        whole = reader.read()
        assert reader.counts["triggers"] == 5_000 and len(reader.triggers) == 5_000
        streamed = np.concatenate(list(reader.iter_packets()))
    assert len(whole) == 200 * 32 and np.array_equal(whole, streamed)
    assert whole["x"][:32].tolist() == list(range(32)) and whole["x"][32:64].tolist() == list(range(32, 64))
    assert np.all(whole["t"][:32] == 64)


def test_header_less_stream_with_format_and_sensor(tmp_path):
    sensor = SensorSize(320, 320)
    events = canonical(random_events(2_000, sensor, t0=1_000, seed=6))
    path = tmp_path / "genx320.bin"
    path.write_bytes(encode_evt2(events))
    with pytest.raises(EventFileError, match="unknown format"):
        read_events(path)
    with pytest.raises(EventFileError, match="sensor_size"):
        open_reader(path, format="evt2")
    got = read_events(path, format="evt2", sensor_size=(320, 320))
    assert np.array_equal(got, events)


def test_metavision_format_line_and_end_marker(tmp_path):
    """``% format EVT3;height=..;width=..`` and ``% end`` (Metavision 4); a first word starting with '%' is data."""
    events = np.zeros(1, EVENT_DTYPE)
    events["t"], events["x"], events["y"], events["p"] = 37, 5, 0x25, 1  # ADDR_Y 0x0025 = bytes '%' 0x00
    body = np.array([0x0025, 0x8000, 0x6025, 0x2805], "<u2").tobytes()
    path = tmp_path / "m.raw"
    path.write_bytes(header("camera_integrator_name Prophesee", "format EVT3;height=720;width=1280", "end") + body)
    with open_reader(path) as reader:
        assert reader.encoding == "evt3" and reader.sensor_size == SensorSize(1280, 720)
        assert reader.data_start == len(path.read_bytes()) - len(body)
        got = reader.read()
    assert np.array_equal(got, events)


def test_sensor_from_plugin_name_and_override(tmp_path):
    path = tmp_path / "p.raw"
    path.write_bytes(header("evt 3.0", "plugin_name hal_plugin_imx636_evk4") + np.array([0x8000], "<u2").tobytes())
    with open_reader(path) as reader:
        assert reader.sensor_size == SensorSize(1280, 720)
    with open_reader(path, sensor_size=(640, 480)) as reader:
        assert reader.sensor_size == SensorSize(640, 480)


# -- bad input ---------------------------------------------------------------------------------


def _evt2_file(tmp_path, words, head=("evt 2.0", "geometry 64x64")) -> tuple:
    path = tmp_path / "bad.raw"
    data = header(*head)
    path.write_bytes(data + np.array(words, "<u4").tobytes())
    return path, len(data)


def test_truncated_word_yields_prefix_then_error(tmp_path):
    events = canonical(random_events(500, SensorSize(64, 64), t0=100, seed=7))
    body = encode_evt2(events)
    path = tmp_path / "cut.raw"
    head = header("evt 2.0", "geometry 64x64")
    path.write_bytes(head + body[:-2])
    got = []
    with PropheseeRawReader(path) as reader, pytest.raises(EventFileError) as err:
        for packet in reader.iter_packets():
            got.append(packet)
    assert err.value.offset == len(head) + len(body) - 4
    assert str(path) in str(err.value) and "truncated" in str(err.value) and "\n" not in str(err.value)
    assert np.array_equal(np.concatenate(got), events[:-1])


@pytest.mark.parametrize("word,match", [
    (0x5 << 28, "word type 0x5"),
    (1 << 28 | 70 << 11 | 3, "x=70, y=3 outside"),
    (0x8 << 28 | 5, "time high goes backwards from 9 to 5"),
])
def test_bad_words_raise_at_their_offset(tmp_path, word, match):
    words = [0x8 << 28 | 9, 1 << 28 | 1 << 11 | 2, word, 1 << 28 | 3 << 11 | 4]
    path, start = _evt2_file(tmp_path, words)
    got = []
    with PropheseeRawReader(path) as reader, pytest.raises(EventFileError, match=match) as err:
        for packet in reader.iter_packets():
            got.append(packet)
    assert err.value.offset == start + 8
    assert [int(e) for e in np.concatenate(got)["x"]] == [1]


def test_header_that_lies_about_the_encoding(tmp_path, shared_data):
    raw = (shared_data / "prophesee_gen3_evt2_faery_sample.raw").read_bytes()
    body = raw[raw.index(b"% evt 2.0\n") + 10:]
    path = tmp_path / "lie.raw"
    path.write_bytes(header("evt 3.0", "geometry 640x480") + body)
    with pytest.raises(EventFileError):
        read_events(path)


@pytest.mark.parametrize("lines,match", [
    (("evt 4.0", "geometry 64x64"), "unknown Prophesee encoding '4.0'"),
    (("geometry 64x64", "plugin_name x"), "names no encoding"),
    (("evt 2.0",), "no geometry"),
    (("evt 2.0", "geometry 0x720"), "outside 1..32767"),
    (("evt 2.0", "geometry 99999x99999"), "outside 1..32767"),
    (("evt 3.0", "geometry 4096x64"), "11-bit"),
])
def test_header_faults_raise_on_open(tmp_path, lines, match):
    path = tmp_path / "h.raw"
    path.write_bytes(header(*lines) + b"\x00\x00\x00\x80")
    with pytest.raises(EventFileError, match=match):
        open_reader(path)


def test_zero_length_and_header_only(tmp_path):
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    with pytest.raises(EventFileError, match="empty file"):
        read_events(empty, format="evt3", sensor_size=(64, 64))
    only = tmp_path / "only.raw"
    only.write_bytes(header("evt 3.0", "geometry 64x64"))
    assert len(read_events(only)) == 0


@pytest.mark.parametrize("encoding", ["evt2", "evt21", "evt3"])
def test_garbage_words_only_documented_errors(tmp_path, encoding):
    rng = np.random.default_rng(11)
    for case in range(60):
        path = tmp_path / f"g{case}.raw"
        path.write_bytes(header(EVT_LINE[encoding], "geometry 2048x2048")
                         + rng.integers(0, 256, int(rng.integers(0, 3000)), dtype=np.uint8).tobytes())
        try:
            events = read_events(path)
        except EventFileError as err:
            assert err.offset is not None and "\n" not in str(err)
        else:
            assert events.dtype == EVENT_DTYPE


# -- block boundaries and the fast paths of the decoders ----------------------------------------


def _padding_is_zero(events: np.ndarray) -> bool:
    """Bytes 13-15 of every event are zero (equal events are equal bytes, as concatenate makes them)."""
    return not events.view(np.uint8).reshape(-1, 16)[:, 13:].any()


@pytest.mark.parametrize("encoding", ["evt2", "evt21", "evt3"])
@pytest.mark.parametrize("block_bytes", [24, 308, 1 << 21])
def test_tiny_blocks_equal_one_block(tmp_path, monkeypatch, encoding, block_bytes):
    """Blocks of a few words (groups of EVT 2.0 CD words and vectors cut at every place, outputs
    full after a few events) decode exactly as one block: events, triggers, counts, zero padding."""
    import evstream.io.prophesee as prophesee

    sensor = SensorSize(320, 320)
    events = _dense_events(sensor, t0=(1 << 34) - 100_000 if encoding != "evt3" else (1 << 24) - 100_000,
                           n=3_000, seed=9)
    triggers = [(int(events["t"][k]), 2, k % 2) for k in (5, 700, 2_900)]
    path = tmp_path / "blocks.raw"
    path.write_bytes(header(EVT_LINE[encoding], "geometry 320x320") + ENCODERS[encoding](events, triggers))
    monkeypatch.setattr(prophesee, "_BLOCK_BYTES", block_bytes)
    with PropheseeRawReader(path) as reader:
        whole = reader.read()
        counts, trig = dict(reader.counts), reader.triggers
        packets = list(reader.iter_packets())
        assert reader.counts == counts and np.array_equal(reader.triggers, trig)
    if block_bytes < 1 << 10:
        assert len(packets) > 20
    streamed = np.concatenate(packets)
    assert np.array_equal(whole, events) and np.array_equal(streamed, events)
    assert counts["events"] == len(events) and trig["t"].tolist() == [t for t, _, _ in triggers]
    assert _padding_is_zero(whole) and all(_padding_is_zero(p) for p in packets)


@pytest.mark.parametrize("at,word,match", [
    (0, 1 << 28 | 70 << 11 | 3, "x=70, y=3 outside"),
    (45, 1 << 28 | 70 << 11 | 3, "x=70, y=3 outside"),
    (63, 1 << 28 | 5 << 11 | 64, "x=5, y=64 outside"),
    (77, 0x5 << 28, "word type 0x5"),
    (90, 0x8 << 28 | 1, "time high goes backwards from 2 to 1"),
])
def test_evt2_fault_inside_a_group_of_cd_words(tmp_path, at, word, match):
    """A bad word among 32-word groups of CD events: the events before it, then the error at its offset."""
    good = [1 << 28 | (i % 64) << 11 | (i * 7) % 64 for i in range(200)]
    words = [0x8 << 28 | 2] + good[:at] + [word] + good[at:]
    path, start = _evt2_file(tmp_path, words)
    got = []
    with PropheseeRawReader(path) as reader, pytest.raises(EventFileError, match=match) as err:
        for packet in reader.iter_packets():
            got.append(packet)
    assert err.value.offset == start + 4 * (1 + at)
    prefix = np.concatenate(got) if got else np.empty(0, EVENT_DTYPE)
    assert prefix["x"].tolist() == [i % 64 for i in range(at)]
    assert prefix["y"].tolist() == [(i * 7) % 64 for i in range(at)]
    assert np.all(prefix["t"] == 2 << 6) and np.all(prefix["p"] == 1)
    with pytest.raises(EventFileError, match=match):
        read_events(path)


def test_evt3_events_before_time_and_row_are_dropped_and_counted(tmp_path):
    """EVT 3.0 events with no time high yet, or no row yet, are dropped and counted; a row off the
    sensor is an error only at the first event on it, at that event's offset."""
    words = [0x2000 | 5,               # ADDR_X before any time or row: dropped
             0x0000 | 3,               # ADDR_Y 3 (no time yet)
             0x2000 | 6,               # dropped: no time
             0x3000 | 8, 0x4000 | 0x5,  # vector before any time: dropped (one count per word)
             0x8000 | 1, 0x6000 | 7,   # TIME_HIGH 1, TIME_LOW 7: t = 4096 + 7
             0x2000 | 1 << 11 | 9,     # ADDR_X 9, polarity 1, row 3: kept
             0x0000 | 4, 0x2000 | 10,  # row 4, x 10: kept
             0x0000 | 30,              # row 30, off the 64x20 sensor, no event on it: fine
             0x0000 | 5, 0x3000 | 20, 0x4000 | 0x3,  # back on the sensor: x 20, 21 in row 5
             0x0000 | 31, 0x2000 | 2]  # an event on row 31: the error
    path = tmp_path / "drop.raw"
    head = header("evt 3.0", "geometry 64x20")
    path.write_bytes(head + np.array(words, "<u2").tobytes())
    got = []
    with PropheseeRawReader(path) as reader, pytest.raises(EventFileError, match="x=2, y=31 outside") as err:
        for packet in reader.iter_packets():
            got.append(packet)
    assert reader.counts["dropped"] == 3 and err.value.offset == len(head) + 2 * (len(words) - 1)
    ev = np.concatenate(got)
    assert ev["x"].tolist() == [9, 10, 20, 21] and ev["y"].tolist() == [3, 4, 5, 5]
    assert ev["p"].tolist() == [1, 0, 0, 0] and np.all(ev["t"] == 4096 + 7)


@pytest.mark.parametrize("filler", [0, 16_384 - 40, 16_384 - 37, 70_000, 300_000])
def test_long_headers_read_past_the_first_read(tmp_path, filler):
    """Headers longer than the reader's first 16 KiB read (a line cut by it, a header ending at
    it) parse as a whole; one longer than 1 MiB is refused on open."""
    import evstream.io.prophesee as prophesee

    comment = []
    while sum(len(c) + 3 for c in comment) < filler:
        comment.append("c" * min(997, filler - sum(len(c) + 3 for c in comment)))
    events = canonical(random_events(300, SensorSize(64, 64), t0=100, seed=12))
    path = tmp_path / "long.raw"
    head = header("evt 2.0", *comment, "geometry 64x64")
    path.write_bytes(head + encode_evt2(events))
    with PropheseeRawReader(path) as reader:
        assert reader.data_start == len(head) and reader.sensor_size == SensorSize(64, 64)
        assert len(reader.header.lines) == len(comment) + 2
        assert np.array_equal(reader.read(), events)
    assert detect_format(path) == "evt2"
    path.write_bytes(header("evt 2.0", *["c" * 998] * (prophesee._MAX_HEADER_BYTES // 1000 + 1)) + b"\0" * 64)
    with pytest.raises(EventFileError, match="text header longer than 1 MiB"):
        PropheseeRawReader(path)


# -- DAT ---------------------------------------------------------------------------------------


def encode_dat(events: np.ndarray, version: int = 2, event_type: int = 0, geometry=None) -> bytes:
    lines = ["Data file containing Event2d events.", f"Version {version}", "Date 2017-10-31 11:29:21"]
    if geometry:
        lines += [f"Height {geometry[1]}", f"Width {geometry[0]}"]
    words = np.empty((len(events), 2), "<u4")
    words[:, 0] = events["t"] & 0xFFFFFFFF
    x, y, p = (events[f].astype(np.uint32) for f in "xyp")
    words[:, 1] = x | y << 14 | p << 28 if version == 2 else x | y << 9 | p << 17
    return header(*lines) + bytes([event_type, 8]) + words.tobytes()


@pytest.mark.parametrize("version,sensor", [(2, SensorSize(1280, 720)), (1, SensorSize(304, 240))])
def test_dat_round_trip(tmp_path, version, sensor):
    events = random_events(3_000, sensor, t0=(1 << 32) - 100_000, duration_us=200_000, seed=version)
    path = tmp_path / "cd.dat"
    path.write_bytes(encode_dat(events, version, geometry=(sensor.width, sensor.height) if version == 2 else None))
    assert detect_format(path) == "dat"
    with open_reader(path) as reader:
        assert isinstance(reader, DatReader) and reader.version == version and reader.sensor_size == sensor
        got = reader.read()
    assert np.array_equal(got, events)  # includes the 32-bit wrap


def test_dat_faults(tmp_path):
    events = random_events(100, SensorSize(304, 240), seed=3)
    path = tmp_path / "t.dat"
    data = encode_dat(events, event_type=14)
    path.write_bytes(data)
    with pytest.raises(EventFileError, match="DAT event type 14 is not CD"):
        open_reader(path)
    good = encode_dat(events)
    path.write_bytes(good[:-3])
    with pytest.raises(EventFileError, match="truncated") as err:
        read_events(path)
    assert err.value.offset == len(good) - 8
    with DatReader(path) as reader:
        got = []
        with pytest.raises(EventFileError):
            for packet in reader.iter_packets():
                got.append(packet)
    assert np.array_equal(np.concatenate(got), events[:-1])
    path.write_bytes(encode_dat(events, geometry=(64, 64)))
    with pytest.raises(EventFileError, match="outside the 64x64 sensor"):
        read_events(path)


@pytest.mark.parametrize("block_bytes", [8, 56, 1 << 21])
def test_dat_blocks_wrap_and_off_sensor(tmp_path, monkeypatch, block_bytes):
    """Blocks of 1 and 7 events: the 32-bit wrap between blocks is unwrapped as in one block, and an
    event outside the sensor in a later block gives every event before it, then its offset."""
    import evstream.io.prophesee as prophesee

    sensor = SensorSize(1280, 720)
    events = random_events(300, sensor, t0=(1 << 32) - 1_000, duration_us=2_000, seed=8)
    path = tmp_path / "b.dat"
    data = encode_dat(events, geometry=(1280, 720))
    path.write_bytes(data)
    monkeypatch.setattr(prophesee, "_BLOCK_BYTES", block_bytes)
    with DatReader(path) as reader:
        whole = reader.read()
        packets = list(reader.iter_packets())
    assert np.array_equal(whole, events) and np.array_equal(np.concatenate(packets), events)
    assert whole["t"][-1] > 1 << 32 and _padding_is_zero(whole)
    start = len(data) - 8 * len(events)
    body = bytearray(data)
    body[start + 8 * 200 + 4:start + 8 * 200 + 8] = np.array([1300 | 5 << 14], "<u4").tobytes()
    path.write_bytes(bytes(body))
    got = []
    with DatReader(path) as reader, pytest.raises(EventFileError, match="x=1300, y=5 outside") as err:
        for packet in reader.iter_packets():
            got.append(packet)
    assert err.value.offset == start + 8 * 200
    assert np.array_equal(np.concatenate(got), events[:200])


# -- real samples ------------------------------------------------------------------------------


def test_real_evt2_sample(shared_data):
    path = shared_data / "prophesee_gen3_evt2_faery_sample.raw"
    assert detect_format(path) == "evt2"
    with open_reader(path) as reader:
        assert reader.sensor_size == SensorSize(640, 480)  # from the plugin name: the header has no geometry
        assert reader.source == "hal_plugin_gen3_fx3"
        ev = reader.read()
        assert reader.counts["dropped"] == 0 and len(reader.triggers) == 0
    assert len(ev) == 521_252
    assert (int(ev["x"].min()), int(ev["x"].max()), int(ev["y"].min()), int(ev["y"].max())) == (0, 639, 0, 479)
    assert int(ev["t"][-1] - ev["t"][0]) == 95_871
    assert np.all(np.diff(ev["t"]) >= 0)
    expelliarmus = pytest.importorskip("expelliarmus", reason="expelliarmus not installed: no cross-check")
    other = expelliarmus.Wizard(encoding="evt2").read(str(path))
    for field in "txyp":
        assert np.array_equal(ev[field], other[field]), field


def test_real_evt3_sample(shared_data):
    path = shared_data / "prophesee_gen41_evt3_expelliarmus_sample.raw"
    assert detect_format(path) == "evt3"
    with open_reader(path) as reader:
        assert reader.sensor_size == SensorSize(1280, 720) and reader.source == "hal_plugin_gen41_evk3"
        ev = reader.read()
    assert len(ev) == 219_596
    assert (int(ev["x"].min()), int(ev["x"].max()), int(ev["y"].min()), int(ev["y"].max())) == (0, 1279, 0, 719)
    # Times follow the file's own TIME_HIGH words (2861 .. 2863, units of 4096 µs).
    assert ev["t"][0] == 2861 * 4096 and ev["t"][-1] < 2864 * 4096
    expelliarmus = pytest.importorskip("expelliarmus", reason="expelliarmus not installed: no cross-check")
    other = expelliarmus.Wizard(encoding="evt3").read(str(path))
    for field in "xyp":
        assert np.array_equal(ev[field], other[field]), field
    # expelliarmus adds 4096 µs whenever TIME_LOW steps back (out-of-order TIME_LOW words in this
    # file), which is how PROVENANCE.md's 0.053857 s arises; the times agree modulo that step.
    diff = other["t"] - ev["t"]
    assert np.all(diff % 4096 == 0) and np.all(diff >= 0) and diff[0] == 0


def test_real_dat_sample(shared_data):
    path = shared_data / "prophesee_atis_ncars_tonic_sample.dat"
    assert detect_format(path) == "dat"
    with open_reader(path) as reader:
        assert reader.version == 2 and reader.event_type == 0
        ev = reader.read()
    assert len(ev) == 2_009
    assert int(ev["x"].max()) <= 77 and int(ev["y"].max()) <= 41
    assert int(ev["t"][-1] - ev["t"][0]) == 99_952
    expelliarmus = pytest.importorskip("expelliarmus", reason="expelliarmus not installed: no cross-check")
    other = expelliarmus.Wizard(encoding="dat").read(str(path))
    for field in "txyp":
        assert np.array_equal(ev[field], other[field]), field


def test_info_reads_prophesee_files(tmp_path, repo_root):
    events = canonical(random_events(1_000, SensorSize(320, 320), t0=10_000, seed=2))
    path = tmp_path / "i.raw"
    path.write_bytes(header("evt 3.0", "geometry 320x320", "plugin_name hal_plugin_genx320") + encode_evt3(events))
    done = subprocess.run([sys.executable, "main.py", "info", str(path), "--json"], cwd=repo_root,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["events"] == len(events) and facts["sensor"] == [320, 320]
    assert facts["camera"] == "hal_plugin_genx320" and facts["complete"]


@pytest.mark.parametrize("wrap_at", [40, 149, 150, 260])
def test_dat_read_on_two_threads_equals_one(tmp_path, monkeypatch, wrap_at):
    """read() of a large DAT decodes two halves on two threads: a 32-bit wrap in the first half,
    right at the split or in the second half is unwrapped as by one thread; off-sensor events in
    both halves raise at the first one's offset; a truncated last record still raises."""
    import evstream.io.prophesee as prophesee

    sensor = SensorSize(1280, 720)
    events = random_events(300, sensor, t0=0, duration_us=3_000, seed=11)
    events["t"] += (1 << 32) - int(events["t"][wrap_at])  # event wrap_at is the first after the wrap
    path = tmp_path / "two.dat"
    data = encode_dat(events, geometry=(1280, 720))
    path.write_bytes(data)
    monkeypatch.setattr(prophesee, "_BLOCK_BYTES", 56)
    with DatReader(path) as reader:
        serial = reader.read()
        monkeypatch.setattr(prophesee, "_PARALLEL_DAT_BYTES", 0)
        threaded = reader.read()
        packets = list(reader.iter_packets())
    assert np.array_equal(threaded, events) and np.array_equal(serial, events)
    assert np.array_equal(np.concatenate(packets), events) and _padding_is_zero(threaded)
    start = len(data) - 8 * len(events)
    body = bytearray(data)
    for k, x in ((250, 1400), (90, 1300)):  # one in each half
        body[start + 8 * k + 4:start + 8 * k + 8] = np.array([x | 5 << 14], "<u4").tobytes()
    path.write_bytes(bytes(body))
    with DatReader(path) as reader, pytest.raises(EventFileError, match="x=1300, y=5 outside") as err:
        reader.read()
    assert err.value.offset == start + 8 * 90
    path.write_bytes(data + b"\x01\x02\x03")
    with DatReader(path) as reader, pytest.raises(EventFileError, match="truncated"):
        reader.read()


def _read_both_ways(path, monkeypatch, split=None):
    """(events, counts, triggers) or the error (message, offset) of read() on one thread and on two;
    ``split`` (a list) gets True where the second read did decode on two threads."""
    import evstream.io.prophesee as prophesee

    halves = PropheseeRawReader._read_halves

    def recorded(self, total):
        out = None
        try:
            out = halves(self, total)
            return out
        except EventFileError:
            out = True  # raised by the two threads
            raise
        finally:
            if split is not None:
                split.append(out is not None)

    monkeypatch.setattr(PropheseeRawReader, "_read_halves", recorded)
    results = []
    for threshold in (1 << 60, 0):
        monkeypatch.setattr(prophesee, "_PARALLEL_RAW_BYTES", threshold)
        with PropheseeRawReader(path) as reader:
            try:
                events = reader.read()
            except EventFileError as err:
                results.append((str(err), err.offset))
            else:
                results.append((events, dict(reader.counts), reader.triggers))
    return results


@pytest.mark.parametrize("encoding,t0", [("evt3", 0), ("evt3", 10_000_000),  # the 16.8 s wrap: 2nd / 1st half
                                         ("evt2", (1 << 34) - 15_000_000), ("evt2", (1 << 34) - 5_000_000),
                                         ("evt21", (1 << 34) - 15_000_000), ("evt21", (1 << 34) - 5_000_000)])
def test_raw_read_on_two_threads_equals_one(tmp_path, monkeypatch, encoding, t0):
    """read() of a large EVT 2.0 / 2.1 / 3.0 file decodes two halves on two threads, the second starting
    where its own words fix every register: 20 s with (EVT 2.1 / 3.0) vectors and lone events, and
    triggers, the time counter (24 / 34 bits) wrapping in the first half or the second, gives the
    events, triggers and tallies of one thread, padding bytes zero."""
    sensor = SensorSize(320, 240)
    events = _dense_events(sensor, t0=0, n=6_000, seed=21)
    events["t"] = t0 + events["t"] * 66  # 20 s
    rng = np.random.default_rng(3)
    trigger_t = np.sort(rng.integers(t0, events["t"][-1], 40))
    triggers = [(int(t), int(i), int(v))
                for t, i, v in zip(trigger_t, rng.integers(0, 8, 40), rng.integers(0, 2, 40), strict=True)]
    path = tmp_path / "two.raw"
    path.write_bytes(header(EVT_LINE[encoding], "geometry 320x240") + ENCODERS[encoding](events, triggers))
    split = []
    (serial, serial_counts, serial_triggers), (threaded, counts, trig) = _read_both_ways(path, monkeypatch, split)
    assert split == [True] and np.array_equal(serial, threaded) and _padding_is_zero(threaded)
    assert counts == serial_counts and np.array_equal(trig, serial_triggers) and len(trig) == 40
    assert np.array_equal(threaded, events)


# A CD word moved off the 320x240 sensor (x = 330), per encoding: (is a lone CD word, damaged word).
_OFF_SENSOR = {
    "evt3": (lambda w: w >> 12 == 0x2, lambda w: np.uint16(0x2000 | 330)),
    "evt2": (lambda w: (w >> 28) <= 1, lambda w: np.uint32((int(w) & ~(0x7FF << 11)) | 330 << 11)),
    # a vector at x base 330 with its first bit set
    "evt21": (lambda w: (w >> 60) & 0xF <= 1,
              lambda w: np.int64((int(w) & ~(0x7FF << 43) & ~0xFFFFFFFF) | 330 << 43 | 1)),
}


@pytest.mark.parametrize("encoding", ["evt2", "evt21", "evt3"])
def test_raw_two_threads_faults_and_fallback(tmp_path, monkeypatch, encoding):
    """Faults in either half raise at the first one's offset, as on one thread; a trailing partial
    word raises after the words; (EVT 3.0) a file with no vector base word near the middle (lone
    events only) is read on one thread, with the same result."""
    sensor = SensorSize(320, 240)
    events = _dense_events(sensor, t0=0, n=4_000, seed=22)
    body = bytearray(ENCODERS[encoding](events))
    path = tmp_path / "f.raw"
    head = header(EVT_LINE[encoding], "geometry 320x240")
    dtype = {"evt2": "<u4", "evt21": "<i8", "evt3": "<u2"}[encoding]
    size = np.dtype(dtype).itemsize
    words = np.frombuffer(bytes(body), dtype)
    is_cd, damage = _OFF_SENSOR[encoding]
    lone = np.flatnonzero(is_cd(words))
    early, late = int(lone[len(lone) // 5]), int(lone[len(lone) * 4 // 5])
    for where in ([late], [early, late]):
        damaged = np.frombuffer(bytes(body), dtype).copy()
        for w in where:
            damaged[w] = damage(damaged[w])
        path.write_bytes(head + damaged.tobytes())
        split = []
        serial, threaded = _read_both_ways(path, monkeypatch, split)
        assert split == [True] and serial == threaded and threaded[1] == len(head) + size * where[0]
        assert "x=330" in threaded[0]
    path.write_bytes(head + bytes(body) + b"\x01")
    serial, threaded = _read_both_ways(path, monkeypatch)
    assert serial == threaded and "truncated" in threaded[0]
    if encoding == "evt3":
        lone_only = random_events(3_000, sensor, t0=0, duration_us=2_000_000, seed=23)
        path.write_bytes(head + encode_evt3(canonical(lone_only)[::3]))  # no two share (t, y, p): no vectors
        split = []
        serial, threaded = _read_both_ways(path, monkeypatch, split)
        assert split == [False] and np.array_equal(serial[0], threaded[0]) and serial[1] == threaded[1]


# Random words per encoding: (word kinds drawn, kind shift, payload bits, time-high kind, a kind it lacks).
_RANDOM_WORDS = {
    "evt3": ([0x0, 0x0, 0x2, 0x2, 0x2, 0x3, 0x4, 0x5, 0x6, 0x6, 0x7, 0x8, 0xA, 0xE, 0xF], 12, 12, 0x9),
    "evt2": ([0x0, 0x1, 0x0, 0x1, 0x0, 0x1, 0x8, 0xA, 0xE, 0xF], 28, 28, 0x3),
    "evt21": ([0x0, 0x1, 0x0, 0x1, 0x0, 0x1, 0x8, 0xA, 0xE, 0xF], 60, 60, 0x3),
}


@pytest.mark.parametrize("encoding", ["evt2", "evt21", "evt3"])
def test_raw_count_equals_decoder_on_random_words(tmp_path, monkeypatch, encoding):
    """On random streams of every word kind (faults included), the two-thread read gives exactly
    what one thread gives: the same events and tallies, or the same error at the same byte; and
    the event count the split relies on equals the decoder's wherever it decodes."""
    from evstream.io import _prophesee_kernels as kernels

    kinds, shift, bits, lacking = _RANDOM_WORDS[encoding]
    count, decode = {"evt2": (kernels.count_evt2, kernels.decode_evt2),
                     "evt21": (kernels.count_evt21, kernels.decode_evt21),
                     "evt3": (kernels.count_evt3, kernels.decode_evt3)}[encoding]
    rng = np.random.default_rng(24)
    head = header(EVT_LINE[encoding], "geometry 2048x2048")
    path = tmp_path / "r.raw"
    decoded, split = 0, []
    for case in range(60):
        n = int(rng.integers(1, 3_000))
        kind = rng.choice(np.array(kinds, np.int64), n)
        payload = rng.integers(0, 1 << bits, n)
        highs = kind == 0x8
        payload[highs] = np.sort(rng.integers(0, 1 << bits, int(highs.sum())))  # forward, as a camera
        if encoding == "evt3":
            payload[kind == 0x3] &= 0x0FFF - 0x7F0  # vector bases low enough that most vectors stay on the sensor
        if encoding == "evt21":
            payload[kind <= 1] &= ~(1 << 53)  # x bases < 1024: the 32 columns of a vector stay on the sensor
        if case % 3 == 0:
            kind[rng.integers(0, n)] = lacking  # a word type the encoding does not have
        words = (kind.astype(np.uint64) << np.uint64(shift) | payload.astype(np.uint64))
        words = words.astype("<u2") if encoding == "evt3" else (
            words.astype("<u4") if encoding == "evt2" else words.view("<i8"))
        out = np.empty(32 * n + 64, EVENT_DTYPE)
        _, m, _, status = decode(words, 0, kernels.packed(out), np.empty((4096, 3), np.int64),
                                 kernels.new_state(), 2048, 2048)
        if status == kernels.DONE:
            assert count(words, kernels.new_state()) == m
            decoded += 1
        path.write_bytes(head + words.tobytes())
        serial, threaded = _read_both_ways(path, monkeypatch, split)
        if isinstance(serial[0], str):
            assert serial == threaded
        else:
            assert np.array_equal(serial[0], threaded[0]) and serial[1] == threaded[1]
            assert np.array_equal(serial[2], threaded[2])
    assert decoded >= 20 and sum(split) >= 40


@pytest.mark.parametrize("encoding", ["evt3", "evt2"])
def test_decoder_resumes_exactly_from_a_full_output(encoding):
    """A decoder handed outputs of a few slots (FULL, then called again from the position it
    returned, as the readers do) gives the events, triggers, state and fault of one call with
    room for everything: EVT 3.0's ADDR_X / ADDR_Y run loop and EVT 2.0's groups (kept up to
    their first other word) stop at a full output without losing or repeating a word."""
    from evstream.io import _prophesee_kernels as kernels

    kinds, shift, bits, _ = _RANDOM_WORDS[encoding]
    # More CD / address words than _RANDOM_WORDS draws, so that runs and whole groups occur.
    kinds = np.array(kinds + ([0x2] * 3 if encoding == "evt3" else [0x0, 0x1] * 9), np.int64)
    dtype = {"evt3": "<u2", "evt2": "<u4"}[encoding]
    decoder = {"evt3": kernels.decode_evt3, "evt2": kernels.decode_evt2}[encoding]
    rng = np.random.default_rng(31)

    def decode(words, cap, width, height):
        state, pos, events, triggers = kernels.new_state(), 0, [], []
        while True:
            out, trig = np.zeros(cap, EVENT_DTYPE), np.zeros((7, 3), np.int64)
            pos, n, nt, status = decoder(words, pos, kernels.packed(out), trig, state, width, height)
            events.append(out[:n])
            triggers.append(trig[:nt])
            if status != kernels.FULL:
                return np.concatenate(events), np.concatenate(triggers), pos, status, state

    faults = 0
    for case in range(120):
        n = int(rng.integers(1, 2_000))
        kind = rng.choice(kinds, n)
        payload = rng.integers(0, 1 << bits, n)
        payload[kind == 0x8] = np.sort(payload[kind == 0x8])
        if encoding == "evt3":
            payload[kind == 0x3] &= 0x0FFF - 0x7F0
        else:
            payload[kind <= 1] &= ~((1 << 21) | (1 << 10))  # x, y < 1024: on a 2048x2048 sensor
        words = (kind << shift | payload).astype(dtype)
        width, height = (2048, 2048) if case % 2 else (1000, 900)  # 1000x900: some addresses off the sensor
        whole = decode(words, 32 * n + 64, width, height)
        parts = decode(words, int(rng.choice([12, 13, 20, 50])), width, height)
        assert np.array_equal(parts[0], whole[0]) and np.array_equal(parts[1], whole[1])
        assert parts[2:4] == whole[2:4] and np.array_equal(parts[4], whole[4])
        faults += whole[3] != kernels.DONE
    assert 10 <= faults <= 110  # both ways through the decoder were taken


def _small_raw_and_dat(tmp_path, seed):
    """500 events of a 320x240 sensor as an EVT 3.0 file ``a.raw`` and a DAT file ``a.dat``."""
    events = _dense_events(SensorSize(320, 240), t0=0, n=500, seed=seed)
    raw, dat = tmp_path / "a.raw", tmp_path / "a.dat"
    raw.write_bytes(header("evt 3.0", "geometry 320x240") + encode_evt3(events))
    dat.write_bytes(encode_dat(events, geometry=(320, 240)))
    return events, raw, dat


def test_open_reader_parses_a_prophesee_header_once(tmp_path, monkeypatch):
    """Detection's parsed header is handed to the reader (small files are mostly header work)."""
    import evstream.io as io
    import evstream.io.prophesee as prophesee

    events, raw, dat = _small_raw_and_dat(tmp_path, 25)
    calls = []
    parse = prophesee.read_header

    def counted(*args):
        calls.append(args[0])
        return parse(*args)

    monkeypatch.setattr(prophesee, "read_header", counted)
    monkeypatch.setattr(io, "read_header", counted)
    for path in (raw, dat):
        assert np.array_equal(read_events(path), events)
    assert [p.name for p in calls] == ["a.raw", "a.dat"]


def test_open_reader_opens_a_prophesee_file_once_and_leaks_no_descriptor(tmp_path, monkeypatch):
    """Detection's descriptor goes on to the reader; every path out of open_reader closes it."""
    import evstream.io as io
    import evstream.io.prophesee as prophesee

    events, raw, dat = _small_raw_and_dat(tmp_path, 26)
    bad = tmp_path / "bad.raw"  # detected as EVT 3.0, refused by the reader: no geometry
    bad.write_bytes(header("evt 3.0") + encode_evt3(events))
    unknown = tmp_path / "unknown.raw"  # refused by detection
    unknown.write_bytes(header("evt 4.0") + encode_evt3(events))
    opened, real_open = [], os.open
    monkeypatch.setattr(os, "open", lambda path, *a, **kw: opened.append(Path(path).name) or real_open(path, *a, **kw))
    fds_before = set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for path in (raw, dat):
        assert np.array_equal(read_events(path), events)
    assert opened == ["a.raw", "a.dat"]
    with io.open_reader(raw) as reader:
        assert reader.read().size == events.size
    for path, match in ((bad, "geometry"), (unknown, "unknown Prophesee encoding")):
        with pytest.raises(EventFileError, match=match):
            read_events(path)
    with prophesee.DatReader(dat) as reader:  # a reader opened on its own still works
        assert np.array_equal(reader.read(), events)
    if fds_before is not None:
        assert set(os.listdir("/proc/self/fd")) == fds_before
