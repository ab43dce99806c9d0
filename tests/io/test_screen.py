"""Events outside the declared sensor or with polarity > 1: dropped and counted, or strict errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from evstream.errors import EventFileError
from evstream.events import EVENT_DTYPE, SensorSize
from evstream.io import open_reader, read_events
from evstream.io.aedat3 import write_aedat3
from evstream.io.aedat4 import write_aedat4
from evstream.io.screen import EventScreen
from tests.helpers import random_events

SENSOR = SensorSize(64, 48)


def _hostile(n: int = 3_000) -> tuple[np.ndarray, np.ndarray]:
    """(events with impossible ones planted, the events that should survive)."""
    events = random_events(n, SENSOR, seed=11)
    events["x"][10] = 64            # just outside
    events["y"][500] = 30_000       # far outside
    events["x"][501] = -1
    events["p"][1_200] = 2          # polarity > 1
    events["p"][2_999] = 255
    bad = np.zeros(n, bool)
    bad[[10, 500, 501, 1_200, 2_999]] = True
    return events, events[~bad]


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
@pytest.mark.parametrize("threads", [0, 2])
def test_aedat4_drops_and_counts_impossible_events(tmp_path, compression, threads):
    # reproducer (issue 17, finding 11): these events came back from read_events silently
    events, kept = _hostile()
    path = tmp_path / "hostile.aedat4"
    write_aedat4(path, events, SENSOR, compression, packet_events=700)
    np.testing.assert_array_equal(read_events(path), kept)
    with open_reader(path) as reader:
        reader.threads = threads
        np.testing.assert_array_equal(reader.read(), kept)
        assert reader.counts == {"off_sensor": 3, "bad_polarity": 2} and reader.screen.dropped == 5
        parts = list(reader.iter_packets())
        np.testing.assert_array_equal(np.concatenate(parts), kept)
        assert reader.counts == {"off_sensor": 3, "bad_polarity": 2}  # re-reading starts counting again
        np.testing.assert_array_equal(reader.read(t0=0), kept)


@pytest.mark.parametrize("threads", [0, 2])
def test_aedat4_screen_in_decode_threads(tmp_path, threads):
    # Packets of 20 k events are decoded and screened in the worker threads; the drops, counts
    # and the strict error stay those of the stream in file order.
    events = random_events(100_000, SENSOR, seed=12)
    bad = np.zeros(len(events), bool)
    for i, field, value in ((25_000, "x", 64), (25_001, "y", -3), (61_000, "p", 7), (99_999, "x", 9_999)):
        events[field][i] = value
        bad[i] = True
    path = tmp_path / "big.aedat4"
    write_aedat4(path, events, SENSOR, "lz4", packet_events=20_000)
    with open_reader(path) as reader:
        reader.threads = threads
        assert reader._workers() == (0 if threads == 0 or len(os.sched_getaffinity(0)) < 2 else 2)
        packets = list(reader.iter_packets())
        assert [len(p) for p in packets] == [20_000, 19_998, 20_000, 19_999, 19_999]
        np.testing.assert_array_equal(np.concatenate(packets), events[~bad])
        assert reader.counts == {"off_sensor": 3, "bad_polarity": 1} and reader.screen.seen == 100_000
    with open_reader(path, strict=True) as reader:
        reader.threads = threads
        with pytest.raises(EventFileError, match="event 25000 .*x=64.* outside the 64x48 sensor"):
            list(reader.iter_packets())


def test_screen_possible_answers_without_state():
    screen = EventScreen("f.aedat4", SENSOR)
    events = random_events(1_000, SENSOR, seed=13)
    assert screen.possible(events) and screen.possible(events[:0])
    assert not screen.possible(events[::2])  # strided: not answered, the caller checks
    events["y"][777] = 48
    assert not screen.possible(events)
    assert screen.seen == 0
    assert len(screen(events, possible=True)) == 1_000 and screen.seen == 1_000  # trusted, only counted
    assert len(screen(events)) == 999 and screen.off_sensor == 1


def test_aedat4_strict_is_one_line_naming_file_and_first_bad_event(tmp_path):
    events, _ = _hostile()
    path = tmp_path / "hostile.aedat4"
    write_aedat4(path, events, SENSOR, "lz4", packet_events=700)
    with pytest.raises(EventFileError) as err:
        read_events(path, strict=True)
    message = str(err.value)
    assert "\n" not in message and "hostile.aedat4" in message
    assert f"event 10 (t={events['t'][10]} µs, x=64, y={events['y'][10]}" in message
    assert "outside the 64x48 sensor" in message


def test_strict_names_bad_polarity(tmp_path):
    events = random_events(100, SENSOR, seed=12)
    events["p"][42] = 7
    path = tmp_path / "pol.aedat4"
    write_aedat4(path, events, SENSOR, "none")
    with pytest.raises(EventFileError, match=r"pol\.aedat4: .*event 42 .*p=7\) polarity not 0 or 1"):
        read_events(path, strict=True)
    assert len(read_events(path)) == 99


def test_aedat3_drops_and_counts_and_strict(tmp_path):
    events, _ = _hostile()
    events["p"] = np.minimum(events["p"], 1)  # AEDAT 3.1 stores one polarity bit
    events["x"][501] = 200  # and no negative addresses
    path = tmp_path / "hostile.aedat"
    write_aedat3(path, events, source="DVS128", packet_events=700)
    sensor = SensorSize(128, 128)
    bad = (events["x"] < 0) | (events["x"] >= 128) | (events["y"] >= 128)
    with open_reader(path) as reader:
        assert reader.sensor_size == sensor
        got = reader.read()
        assert reader.counts["off_sensor"] == int(bad.sum()) > 0
    np.testing.assert_array_equal(got["t"], events["t"][~bad])
    with pytest.raises(EventFileError, match=r"hostile\.aedat: byte \d+: event \d+ .*outside the 128x128 sensor"):
        read_events(path, strict=True)


def test_readers_share_one_screen(tmp_path):
    events = random_events(10, SENSOR, seed=1)
    write_aedat4(tmp_path / "a.aedat4", events, SENSOR)
    write_aedat3(tmp_path / "a.aedat", events, source="DVS128")
    for name in ("a.aedat4", "a.aedat"):
        with open_reader(tmp_path / name) as reader:
            assert type(reader.screen) is EventScreen


def test_info_reports_dropped_events(tmp_path, repo_root):
    events, kept = _hostile()
    path = tmp_path / "hostile.aedat4"
    write_aedat4(path, events, SENSOR, "lz4", packet_events=700)
    done = subprocess.run([sys.executable, "main.py", "info", str(path), "--json"], cwd=repo_root,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["events"] == len(kept) and facts["dropped"] == {"off_sensor": 3, "bad_polarity": 2}
    done = subprocess.run([sys.executable, "main.py", "info", str(path)], cwd=repo_root, capture_output=True, text=True)
    assert "dropped      3 outside the sensor, 2 with polarity not 0/1" in done.stdout


@pytest.mark.parametrize("field,value", [("x", -1), ("x", 64), ("x", -32768), ("y", -1), ("y", 48),
                                         ("y", 32767), ("p", 2), ("p", 255), (None, None)])
def test_screen_finds_one_impossible_event_anywhere(field, value):
    """The one-pass check of contiguous arrays finds a single impossible event at any position
    (padding bytes ignored), as the field-by-field check of a strided view does."""
    events = random_events(1_000, SENSOR, seed=12)
    events.view(np.uint8).reshape(-1, 16)[:, 13:] = 0xFF  # padding as a damaged packet may hold it
    for at in (0, 517, 999):
        hostile = events.copy()
        if field:
            hostile[field][at] = value
        for view in (hostile, np.repeat(hostile, 2)[::2]):
            assert view.dtype == EVENT_DTYPE
            screen = EventScreen("f.aedat4", SENSOR)
            kept = screen(view)
            assert len(kept) == len(events) - (field is not None)
            assert screen.dropped == (field is not None)
            assert screen.bad_polarity == (field == "p")
