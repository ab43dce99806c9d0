"""AEDAT 3.1 reading/writing (cAER layout) and DVS128 Gesture label files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from evstream.errors import EventFileError
from evstream.events import EVENT_DTYPE, SensorSize
from evstream.io import open_reader, read_events
from evstream.io.aedat3 import LABEL_DTYPE, Aedat3Reader, read_labels, write_aedat3, write_labels
from evstream.labels import DVS_GESTURE_CLASSES
from tests.helpers import random_events


def _header(newline: str, source: str = "DVS128") -> bytes:
    lines = ["#!AER-DAT3.1", "#Format: RAW", f"#Source 1: {source}", "#Start-Time: 2017-01-01 00:00:00 (TZ+0000)",
             "#!END-HEADER"]
    return "".join(line + newline for line in lines).encode()


def _packet(words: list[tuple[int, int]], *, etype: int = 1, overflow: int = 0, size: int = 8) -> bytes:
    """One cAER packet built by hand from the spec (formats.md §2), independent of write_aedat3."""
    head = struct.pack("<hhiiiiii", etype, 1, size, 4, overflow, len(words), len(words), len(words))
    return head + b"".join(struct.pack("<Ii", d, t) for d, t in words)


def _word(x: int, y: int, p: int, valid: int = 1) -> int:
    return valid | p << 1 | y << 2 | x << 17


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_hand_built_file_crlf_and_lf(tmp_path, newline):
    path = tmp_path / "rec.aedat"
    body = (_packet([(_word(3, 4, 1), 100), (_word(127, 0, 0), 200)])
            + _packet([(0x1234, 50)] * 3, etype=2, size=8)  # a frame-type packet: skipped
            + _packet([(_word(0, 127, 1), 2**31 - 1), (_word(5, 6, 0, valid=0), 7)], overflow=2))
    path.write_bytes(_header(newline) + body)
    with Aedat3Reader(path) as reader:
        assert reader.sensor_size == SensorSize(128, 128)
        assert reader.source == "DVS128"
        packets = list(reader.iter_packets())
    assert [len(p) for p in packets] == [2, 1]  # frame packet skipped, invalid event dropped
    events = read_events(path)
    assert events.dtype == EVENT_DTYPE
    assert events["t"].tolist() == [100, 200, (2 << 31) | (2**31 - 1)]
    assert events["x"].tolist() == [3, 127, 0]
    assert events["y"].tolist() == [4, 0, 127]
    assert events["p"].tolist() == [1, 0, 1]


def test_round_trip_across_overflow(tmp_path):
    events = random_events(20_000, SensorSize(128, 128), t0=(5 << 31) - 300_000, duration_us=600_000, seed=7)
    path = tmp_path / "rt.aedat"
    write_aedat3(path, events, packet_events=3_000)
    assert path.read_bytes().startswith(b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n")
    got = read_events(path)
    assert np.array_equal(got, events)
    with Aedat3Reader(path) as reader:
        sizes = [len(p) for p in reader.iter_packets()]
    # Packets split at 3000 events and where eventTSOverflow changes from 4 to 5.
    assert sum(sizes) == 20_000 and max(sizes) <= 3_000
    crossing = int(np.searchsorted(events["t"], 5 << 31))
    assert crossing in np.cumsum(sizes).tolist()


def test_tonic_style_decode_agrees(tmp_path):
    # Independent decode of our file following the spec table literally, packet by packet.
    events = random_events(500, SensorSize(346, 260), seed=3)
    path = tmp_path / "d.aedat"
    write_aedat3(path, events, source="DAVIS346B", packet_events=128)
    data = path.read_bytes()
    pos = data.index(b"#!END-HEADER\r\n") + len(b"#!END-HEADER\r\n")
    decoded = []
    while pos < len(data):
        etype, _, esize, _, overflow, capacity, number, _ = struct.unpack_from("<hhiiiiii", data, pos)
        for i in range(number):
            d, t = struct.unpack_from("<Ii", data, pos + 28 + i * esize)
            decoded.append(((overflow << 31) | t, (d >> 17) & 0x7FFF, (d >> 2) & 0x7FFF, (d >> 1) & 1))
        pos += 28 + capacity * esize
    assert decoded == [tuple(int(v) for v in e) for e in events[["t", "x", "y", "p"]]]
    with open_reader(path) as reader:
        assert reader.sensor_size == SensorSize(346, 260)


def test_unknown_camera_needs_sensor_size(tmp_path):
    path = tmp_path / "u.aedat"
    path.write_bytes(_header("\r\n", source="MysteryCam") + _packet([(_word(1, 1, 1), 5)]))
    with pytest.raises(EventFileError, match="unknown camera 'MysteryCam'"):
        Aedat3Reader(path)
    with Aedat3Reader(path, sensor_size=SensorSize(10, 10)) as reader:
        assert reader.sensor_size == SensorSize(10, 10) and len(reader.read()) == 1


@pytest.mark.parametrize("damage, offset_from_data, message", [
    ("cut header", None, "no #!END-HEADER"),
    ("cut packet header", 0, "truncated packet header"),
    ("cut payload", 0, "runs past the end"),
    ("number > capacity", 0, "impossible packet sizes"),
    ("timestamp offset 6", 0, "polarity packet with eventSize 8, eventTSOffset 6"),
])
def test_damage(tmp_path, damage, offset_from_data, message):
    header = _header("\r\n")
    first = _packet([(_word(1, 2, 1), 10)] * 4)
    second = _packet([(_word(3, 4, 0), 20)] * 4)
    data = bytearray(header + first + second)
    second_at = len(header) + len(first)
    if damage == "cut header":
        data = data[:len(header) - 5]
    elif damage == "cut packet header":
        data = data[:second_at + 10]
    elif damage == "cut payload":
        data = data[:second_at + 28 + 9]
    elif damage == "number > capacity":
        struct.pack_into("<i", data, second_at + 20, 99)
    else:
        struct.pack_into("<i", data, second_at + 8, 6)
    path = tmp_path / "bad.aedat"
    path.write_bytes(bytes(data))
    got = []
    with pytest.raises(EventFileError, match=message) as info:
        with Aedat3Reader(path) as reader:
            got.extend(reader.iter_packets())
    if offset_from_data is not None:
        assert info.value.offset == second_at
        assert [len(g) for g in got] == [4]


def test_writer_rejects_negative_time(tmp_path):
    events = random_events(10)
    events["t"][3] = -1
    with pytest.raises(EventFileError, match="negative timestamps"):
        write_aedat3(tmp_path / "n.aedat", events)


def test_real_label_file(shared_data):
    labels = read_labels(shared_data / "dvsgesture_user01_natural_labels.csv")
    assert labels.dtype == LABEL_DTYPE
    assert len(labels) == 12
    # formats.md §3/§8: 1-based classes in the file, rows not sorted, class 8 (arm roll) twice.
    raw = (shared_data / "dvsgesture_user01_natural_labels.csv").read_text().split()[1:]
    assert labels["label"].tolist() == [int(r.split(",")[0]) - 1 for r in raw]
    assert labels["label"].tolist()[:5] == [0, 1, 2, 4, 3]
    assert (labels["label"] == DVS_GESTURE_CLASSES.index("arm roll")).sum() == 2
    assert labels["t_start"][0] == 53_036_986 and labels["t_end"][-1] == 177_991_967
    assert np.all(labels["t_end"] > labels["t_start"])


def test_labels_round_trip(tmp_path, shared_data):
    labels = read_labels(shared_data / "dvsgesture_user01_natural_labels.csv")
    path = tmp_path / "out_labels.csv"
    write_labels(path, labels)
    assert np.array_equal(read_labels(path), labels)


@pytest.mark.parametrize("body, line, message", [
    ("1,10,20\n12,30,40\n", 3, "class 12 outside 1..11"),
    ("1,10,20\n0,30,40\n", 3, "class 0 outside"),
    ("1,10\n", 2, "expected 'class,startTime_usec,endTime_usec'"),
    ("1,ten,20\n", 2, "expected"),
    ("3,50,40\n", 2, "before startTime_usec"),
])
def test_bad_label_rows(tmp_path, body, line, message):
    path = tmp_path / "bad_labels.csv"
    header = "class,startTime_usec,endTime_usec\n"
    path.write_text(header + body)
    with pytest.raises(EventFileError, match=f"line {line}: .*{message}") as info:
        read_labels(path)
    lines = (header + body).splitlines(keepends=True)
    assert info.value.offset == sum(len(x) for x in lines[:line - 1])
    assert str(path) in str(info.value)


def test_label_file_without_header(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(EventFileError, match="line 1: expected header"):
        read_labels(path)


def test_format_is_chosen_by_magic_not_extension(tmp_path):
    from evstream.io import detect_format
    from evstream.io.aedat4 import write_aedat4

    events = random_events(300, seed=12)
    misnamed3 = tmp_path / "really_aedat3.aedat4"
    misnamed4 = tmp_path / "really_aedat4.aedat"
    write_aedat3(misnamed3, events)
    write_aedat4(misnamed4, events, SensorSize(128, 128))
    assert (detect_format(misnamed3), detect_format(misnamed4)) == ("aedat3", "aedat4")
    assert np.array_equal(read_events(misnamed3), events)
    assert np.array_equal(read_events(misnamed4), events)
