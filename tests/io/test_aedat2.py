"""AEDAT 2.0 (jAER) reader: hand-built DVS128 and DAVIS files, the real header sample, damage.

The encoders follow jAER's extractors (``DVS128.Extractor``, ``DavisChip`` constants) and are
written here independently of the reader.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from evstream.errors import EventFileError
from evstream.events import EVENT_DTYPE, SensorSize
from evstream.io import detect_format, open_reader, read_events
from evstream.io.aedat2 import Aedat2Reader
from tests.helpers import random_events

DVS128_CHIP = "ch.unizh.ini.jaer.chip.retina.DVS128"
DAVIS346_CHIP = "eu.seebetter.ini.chips.davis.Davis346B"


def aedat2_header(chip: str | None, newline: str = "\r\n") -> bytes:
    lines = ["#!AER-DAT2.0", "# This is a raw AE data file - do not edit",
             "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event",
             "# Timestamps tick is 1 us"]
    if chip:
        lines.append(f"# AEChip: {chip}")
    lines += ["#Start of Preferences for this AEChip", "#<entry key=\"x\" value=\"1\"/>", "#End of Preferences"]
    return "".join(line + newline for line in lines).encode()


def records(addresses, timestamps) -> bytes:
    out = np.empty((len(addresses), 2), ">u4")
    out[:, 0] = np.asarray(addresses, np.int64) & 0xFFFFFFFF
    out[:, 1] = np.asarray(timestamps, np.int64) & 0xFFFFFFFF
    return out.tobytes()


def dvs128_addresses(events: np.ndarray) -> np.ndarray:
    x, y, p = (events[f].astype(np.int64) for f in "xyp")
    return (127 - x) << 1 | (127 - y) << 8 | (1 - p)


def davis_addresses(events: np.ndarray, sensor: SensorSize) -> np.ndarray:
    x, y, p = (events[f].astype(np.int64) for f in "xyp")
    return (sensor.height - 1 - y) << 22 | (sensor.width - 1 - x) << 12 | p << 11


@pytest.mark.parametrize("newline", ["\r\n", "\n"])
def test_dvs128_hand_built(tmp_path, newline):
    events = random_events(5_000, SensorSize(128, 128), t0=1_000, seed=1)
    addresses = list(dvs128_addresses(events))
    stamps = list(events["t"])
    addresses.insert(10, 0x8000)  # external (sync) event: counted, not an event
    stamps.insert(10, stamps[10])
    path = tmp_path / "dvs.dat"  # jAER's .aedat, under any name
    path.write_bytes(aedat2_header(DVS128_CHIP, newline) + records(addresses, stamps))
    assert detect_format(path) == "aedat2"
    with open_reader(path) as reader:
        assert isinstance(reader, Aedat2Reader)
        assert reader.layout == "dvs128" and reader.sensor_size == SensorSize(128, 128)
        assert reader.source == DVS128_CHIP
        got = reader.read()
        assert reader.counts == {"events": 5_000, "special": 1, "aps": 0, "imu": 0}
    assert got.dtype == EVENT_DTYPE
    assert np.array_equal(got, events)


def test_dvs128_known_words(tmp_path):
    """Raw address 0x0000 is x=127, y=127 (jAER mirrors x, origin lower-left), ON (raw polarity 0)."""
    path = tmp_path / "k.aedat"
    path.write_bytes(aedat2_header(DVS128_CHIP) + records([0x0000, 0x7F00 | 0xFE | 1], [5, 6]))
    ev = read_events(path)
    assert ev["x"].tolist() == [127, 0] and ev["y"].tolist() == [127, 0] and ev["p"].tolist() == [1, 0]
    assert ev["t"].tolist() == [5, 6]


def test_davis_layout_skips_and_counts_aps_imu_and_external(tmp_path):
    sensor = SensorSize(346, 260)
    events = random_events(3_000, sensor, t0=50, seed=2)
    addresses = list(davis_addresses(events, sensor))
    stamps = list(events["t"])
    extra = [(0x80000000 | 5 << 12 | 0x3FF, 7),   # APS sample, reset read
             (0x80000400 | 9 << 22, 7),           # APS sample, signal read
             (0x80000C00 | 0x12, 7)] * 3 + [(0x80000C00, 8)] * 7 + [(0x400, 9)]  # IMU words; external input
    for i, (a, _) in enumerate(extra):
        addresses.insert(100 + 3 * i, a)
        stamps.insert(100 + 3 * i, stamps[100 + 3 * i])
    path = tmp_path / "davis.aedat"
    path.write_bytes(aedat2_header(DAVIS346_CHIP) + records(addresses, stamps))
    with Aedat2Reader(path) as reader:
        assert reader.layout == "davis" and reader.sensor_size == sensor
        got = reader.read()
        assert reader.counts == {"events": 3_000, "special": 1, "aps": 6, "imu": 10}
    assert np.array_equal(got, events)


@pytest.mark.parametrize("chip,size", [("eu.seebetter.ini.chips.davis.DAVIS240C", (240, 180)),
                                       ("eu.seebetter.ini.chips.davis.Davis346red", (346, 260)),
                                       ("eu.seebetter.ini.chips.davis.Davis640", (640, 480)),
                                       ("ch.unizh.ini.jaer.chip.retina.Tmpdiff128", (128, 128))])
def test_sensor_from_chip_class(tmp_path, chip, size):
    path = tmp_path / "c.aedat"
    path.write_bytes(aedat2_header(chip))
    with open_reader(path) as reader:
        assert reader.sensor_size == SensorSize(*size)
        assert len(reader.read()) == 0


def test_unknown_chip_needs_layout_and_sensor(tmp_path):
    events = random_events(200, SensorSize(64, 32), seed=3)
    path = tmp_path / "u.aedat"
    path.write_bytes(aedat2_header("org.example.MyRetina") + records(davis_addresses(events, SensorSize(64, 32)),
                                                                       events["t"]))
    with pytest.raises(EventFileError, match="unknown jAER chip 'org.example.MyRetina': pass layout"):
        open_reader(path)
    with Aedat2Reader(path, layout="davis", sensor_size=(64, 32)) as reader:
        assert np.array_equal(reader.read(), events)
    with pytest.raises(EventFileError, match="outside 1..32767"):
        Aedat2Reader(path, layout="davis", sensor_size=(0, 32))


def test_timestamp_wrap_unwrapped_and_resets_kept(tmp_path):
    sensor = SensorSize(128, 128)
    events = random_events(1_000, sensor, t0=(1 << 32) - 5_000, duration_us=10_000, seed=4)
    events["t"][-1] = events["t"][-2] - 3  # a small step back: kept as stored
    path = tmp_path / "w.aedat"
    path.write_bytes(aedat2_header(DVS128_CHIP) + records(dvs128_addresses(events), events["t"]))
    got = read_events(path)
    assert np.array_equal(got["t"], events["t"])


def test_real_header_only_sample(shared_data):
    path = shared_data / "aedat2_header_only_davis346red_tonic.aedat"
    assert detect_format(path) == "aedat2"
    with open_reader(path) as reader:
        assert reader.source == "eu.seebetter.ini.chips.davis.Davis346red"
        assert reader.sensor_size == SensorSize(346, 260) and reader.layout == "davis"
        assert reader.data_start == 599 and any(ln.startswith("<?xml") for ln in reader.header_lines)
        assert len(reader.read()) == 0


def test_truncated_record_yields_prefix_then_error(tmp_path):
    events = random_events(300, SensorSize(128, 128), seed=5)
    head = aedat2_header(DVS128_CHIP)
    body = records(dvs128_addresses(events), events["t"])
    path = tmp_path / "cut.aedat"
    path.write_bytes(head + body[:-5])
    got = []
    with Aedat2Reader(path) as reader, pytest.raises(EventFileError, match="truncated") as err:
        for packet in reader.iter_packets():
            got.append(packet)
    assert err.value.offset == len(head) + len(body) - 8 and str(path) in str(err.value)
    assert np.array_equal(np.concatenate(got), events[:-1])


def test_davis_address_outside_sensor(tmp_path):
    sensor = SensorSize(240, 180)
    events = random_events(50, sensor, seed=6)
    addresses = davis_addresses(events, sensor)
    addresses[20] = 300 << 12  # raw x 300 on a 240-wide sensor
    head = aedat2_header("eu.seebetter.ini.chips.davis.DAVIS240C")
    path = tmp_path / "off.aedat"
    path.write_bytes(head + records(addresses, events["t"]))
    got = []
    with Aedat2Reader(path) as reader, pytest.raises(EventFileError, match="outside the 240x180 sensor") as err:
        for packet in reader.iter_packets():
            got.append(packet)
    assert err.value.offset == len(head) + 8 * 20
    assert np.array_equal(np.concatenate(got), events[:20])


@pytest.mark.parametrize("block_records", [1, 7, 1 << 18])
def test_blocks_of_a_few_records_equal_one_block(tmp_path, monkeypatch, block_records):
    """Blocks of 1 and 7 records (a wrap, APS / IMU / external words and the bad address falling
    anywhere in a block) decode exactly as one block: events, counts, zero padding, the prefix."""
    import evstream.io.aedat2 as aedat2

    sensor = SensorSize(346, 260)
    events = random_events(400, sensor, t0=(1 << 32) - 2_000, duration_us=4_000, seed=11)
    addresses = list(davis_addresses(events, sensor))
    stamps = list(events["t"])
    for i, a in enumerate([0x80000000 | 5 << 12, 0x80000C00 | 0x12, 0x400] * 4):
        addresses.insert(50 + 13 * i, a)
        stamps.insert(50 + 13 * i, stamps[50 + 13 * i])
    head = aedat2_header(DAVIS346_CHIP)
    path = tmp_path / "b.aedat"
    path.write_bytes(head + records(addresses, stamps))
    monkeypatch.setattr(aedat2, "_BLOCK_RECORDS", block_records)
    with Aedat2Reader(path) as reader:
        whole = reader.read()
        counts = dict(reader.counts)
        packets = list(reader.iter_packets())
        assert reader.counts == counts == {"events": 400, "special": 4, "aps": 4, "imu": 4}
    assert np.array_equal(whole, events) and np.array_equal(np.concatenate(packets), events)
    assert whole["t"][-1] > 1 << 32
    assert not whole.view(np.uint8).reshape(-1, 16)[:, 13:].any()  # padding bytes zero
    addresses[300] = 259 << 22 | 400 << 12  # raw x 400 on a 346-wide sensor, after every extra word
    path.write_bytes(head + records(addresses, stamps))
    got = []
    with Aedat2Reader(path) as reader, pytest.raises(EventFileError, match="0x40D90000 outside") as err:
        for packet in reader.iter_packets():
            got.append(packet)
    assert reader.counts == {"events": 300 - 12, "special": 4, "aps": 4, "imu": 4}
    assert err.value.offset == len(head) + 8 * 300
    assert np.array_equal(np.concatenate(got), events[:300 - 12])


@pytest.mark.parametrize("data,match", [
    (b"", "empty file"),
    (b"#!AER-DAT2.0\r\n# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n# cut", "inside a header line"),
    (b"#!AER-DAT2.1\r\n", "AEDAT 2.1 is not supported"),
])
def test_bad_files(tmp_path, data, match):
    path = tmp_path / "b.aedat"
    path.write_bytes(data)
    with pytest.raises(EventFileError, match=match):
        read_events(path)


def test_garbage_after_header_only_documented_errors(tmp_path):
    rng = np.random.default_rng(9)
    for case in range(100):
        path = tmp_path / f"g{case}.aedat"
        chip = DAVIS346_CHIP if case % 2 else DVS128_CHIP
        path.write_bytes(aedat2_header(chip, "\n") + b"\x00"
                         + rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8).tobytes())
        try:
            events = read_events(path)
        except EventFileError as err:
            assert err.offset is not None and "\n" not in str(err)
        else:
            assert events.dtype == EVENT_DTYPE


def test_info_reads_aedat2(tmp_path, repo_root):
    events = random_events(800, SensorSize(128, 128), t0=1_000, seed=7)
    path = tmp_path / "i.aedat"
    path.write_bytes(aedat2_header(DVS128_CHIP) + records(dvs128_addresses(events), events["t"]))
    done = subprocess.run([sys.executable, "main.py", "info", str(path), "--json"], cwd=repo_root,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["events"] == 800 and facts["sensor"] == [128, 128] and facts["camera"] == DVS128_CHIP
