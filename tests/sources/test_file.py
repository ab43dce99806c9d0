"""FileSource: real recordings replayed whole and in order, packets handed on whole as fast as
possible, chunk tiling when paced (on a fake clock), pause, seek, speed change, loop with
increasing time, damaged files, packets that go back in time."""

from __future__ import annotations

import dataclasses
import struct
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evstream.errors import ConfigError, EventFileError
from evstream.events import SensorSize, concatenate, make_events
from evstream.io import open_reader, read_events, write_aedat4
from evstream.io.aedat3 import write_aedat3
from evstream.io.aedat4 import MAGIC, Aedat4Writer
from evstream.io.flatbuf import IO_HEADER_DATA_TABLE_POSITION
from evstream.sources import open_source
from evstream.sources.file import FileSource
from tests.helpers import FakeClock, random_events

SENSOR = SensorSize(128, 128)
REAL_FILES = ["dvxplorer_320x240_tonic_sample.aedat4", "davis346_aestream_sample.aedat4"]


def check_tiling(chunks, chunk_us=None):
    """Chunks tile time: contiguous, each holding only its own events, in order."""
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.t_end == after.t_start
    for chunk in chunks:
        assert chunk.t_start < chunk.t_end
        if len(chunk):
            assert chunk.t_start <= chunk.events["t"][0] and chunk.events["t"][-1] < chunk.t_end
            assert np.all(np.diff(chunk.events["t"]) >= 0)
        if chunk_us is not None:
            assert chunk.t_end - chunk.t_start <= chunk_us


def assert_cut_at_packets(chunks, path):
    """Chunks are never finer than the file's packets: every cut between two chunks lies at a packet
    boundary or inside the one µs that two packets share (those events form a chunk of their own)."""
    with open_reader(path) as reader:
        lengths = [len(p) for p in reader.iter_packets()]
    events = concatenate(chunks)
    packet_cuts = np.cumsum(lengths)[:-1]
    chunk_cuts = np.cumsum([len(c) for c in chunks])[:-1]
    t = events["t"]
    for cut in np.unique(chunk_cuts[(chunk_cuts > 0) & (chunk_cuts < len(events))]):
        near = packet_cuts[np.argmin(np.abs(packet_cuts - cut))]
        lo, hi = min(cut, near), max(cut, near)
        assert np.all(t[lo:hi] == t[near - 1]), (cut, near)
    assert sum(1 for c in chunks if len(c)) <= 2 * len(lengths)


def fake_paced(path, speed=4.0, **kwargs):
    clock = FakeClock(50.0)
    return FileSource(path, speed=speed, clock=clock, sleep=clock.sleep, **kwargs)


@pytest.mark.parametrize("name", REAL_FILES)
def test_real_recording_replays_every_event_in_order(shared_data, name):
    path = shared_data / name
    expected = read_events(path)
    with open_source(path, speed=None) as source:
        assert isinstance(source, FileSource) and not source.live
        chunks = list(source)
        assert source.t_first == int(expected["t"][0])
        assert source.duration_us == int(expected["t"][-1] - expected["t"][0])
        assert source.position_us >= source.duration_us
    got = concatenate(chunks)
    assert len(got) == len(expected)
    np.testing.assert_array_equal(got, expected)
    check_tiling(chunks)
    assert chunks[0].t_start == expected["t"][0]
    # as fast as possible: one chunk per packet, whole, then one empty chunk up to the 10 ms grid
    assert_cut_at_packets(chunks, path)
    whole = -(-(source.duration_us + 1) // 10_000)
    assert chunks[-1].t_end == expected["t"][0] + whole * 10_000
    # paced: the same events on the 10 ms grid
    with fake_paced(path) as paced:
        tiles = list(paced)
    np.testing.assert_array_equal(concatenate(tiles), expected)
    check_tiling(tiles, 10_000)
    assert len(tiles) == whole and tiles[-1].t_end == chunks[-1].t_end


def test_aedat3_recording_with_quiet_period(tmp_path):
    early = random_events(3_000, SENSOR, t0=5_000_000, duration_us=40_000, seed=1)
    late = random_events(2_000, SENSOR, t0=5_200_000, duration_us=30_000, seed=2)
    events = concatenate([early, late])
    write_aedat3(tmp_path / "rec.aedat", events, packet_events=700)
    with fake_paced(tmp_path / "rec.aedat", chunk_us=5_000) as source:
        assert (source.sensor_size.width, source.sensor_size.height) == (128, 128)
        chunks = list(source)
    np.testing.assert_array_equal(concatenate(chunks), events)
    check_tiling(chunks, 5_000)
    quiet = [c for c in chunks if c.t_start >= 5_040_000 and c.t_end <= 5_200_000]
    assert len(quiet) >= 30 and all(len(c) == 0 for c in quiet)
    with FileSource(tmp_path / "rec.aedat", speed=None, chunk_us=5_000) as source:
        fast = list(source)
    np.testing.assert_array_equal(concatenate(fast), events)
    check_tiling(fast)
    assert_cut_at_packets(fast, tmp_path / "rec.aedat")
    assert sum(len(c) == 0 for c in fast) <= 1  # the quiet stretch is not tiled


def paced_source(tmp_path, events, speed, **kwargs):
    write_aedat4(tmp_path / "rec.aedat4", events, SENSOR)
    clock = FakeClock(50.0)
    return FileSource(tmp_path / "rec.aedat4", speed=speed, clock=clock, sleep=clock.sleep, **kwargs), clock


@pytest.mark.parametrize("speed", [0.25, 1.0, 4.0])
def test_each_chunk_is_released_when_its_sensor_time_over_speed_has_passed(tmp_path, speed):
    events = random_events(5_000, SENSOR, t0=1_000_000, duration_us=200_000, seed=3)
    source, clock = paced_source(tmp_path, events, speed)
    t_first = source.t_first
    for chunk in source:
        assert clock.now - 50.0 == pytest.approx((chunk.t_end - t_first) / (speed * 1e6), abs=1e-9)


def test_pause_seek_and_speed_change_during_replay(tmp_path):
    events = random_events(10_000, SENSOR, t0=0, duration_us=1_000_000, seed=4)
    source, clock = paced_source(tmp_path, events, 1.0)
    it = iter(source)
    first = next(it)
    assert clock.now - 50.0 == pytest.approx(0.010, abs=1e-9) and source.position_us == first.t_end - source.t_first

    source.pause()
    assert source.paused
    resumed = []
    clock.at(51.0, lambda: (resumed.append(clock.now), source.resume()))
    second = next(it)
    assert second.t_start == first.t_end
    assert clock.now == pytest.approx(resumed[0] + 0.010, abs=1e-9)

    source.seek(600_000)
    assert source.position_us == 600_000
    before = clock.now
    after_seek = next(it)
    assert after_seek.t_start == source.t_first + 600_000
    np.testing.assert_array_equal(after_seek.events, events[(events["t"] >= after_seek.t_start) & (events["t"] < after_seek.t_end)])
    assert clock.now - before == pytest.approx(0.010, abs=1e-9)  # re-anchored: one chunk of waiting

    source.set_speed(4.0)
    assert source.speed == 4.0
    before = clock.now
    nxt = next(it)
    assert nxt.t_start == after_seek.t_end
    assert clock.now - before == pytest.approx(0.0025, abs=1e-9)
    source.set_speed(None)
    rest = list(it)
    got = concatenate([nxt, *rest])
    np.testing.assert_array_equal(got, events[events["t"] >= nxt.t_start])
    with pytest.raises(ConfigError, match="speed"):
        source.set_speed(200)
    with pytest.raises(ConfigError, match="t_us"):
        source.seek(2_000_000)


def test_loop_keeps_sensor_time_increasing(tmp_path):
    events = random_events(2_000, SENSOR, t0=3_000_000, duration_us=95_000, seed=5)
    write_aedat4(tmp_path / "rec.aedat4", events, SENSOR)
    source = FileSource(tmp_path / "rec.aedat4", speed=None, loop=True, chunk_us=10_000)
    period = source.period_us
    assert period == (-(-(source.duration_us + 1) // 10_000) + 1) * 10_000
    chunks = []
    for chunk in source:
        chunks.append(chunk)
        if chunk.t_end >= source.t_first + 2 * period + 50_000:
            source.set_loop(False)
    check_tiling(chunks)
    got = concatenate(chunks)
    assert np.all(np.diff(got["t"]) >= 0)
    assert len(got) == 3 * len(events)
    for k in range(3):
        part = got[k * len(events):(k + 1) * len(events)]
        np.testing.assert_array_equal(part["t"], events["t"] + k * period)
        np.testing.assert_array_equal(part[["x", "y", "p"]], events[["x", "y", "p"]])
    gaps = [c for c in chunks[:-1] if len(c) == 0]
    assert len(gaps) == 2  # one quiet chunk between passes
    # after the last pass, one empty chunk carries time on to the chunk grid
    assert len(chunks[-1]) == 0 and chunks[-1].t_end == source.t_first + 2 * period + period - 10_000


def test_start_us_and_open_source_options(tmp_path):
    events = random_events(3_000, SENSOR, t0=0, duration_us=300_000, seed=6)
    write_aedat4(tmp_path / "rec.aedat4", events, SENSOR)
    with open_source(tmp_path / "rec.aedat4", speed=None, start_us=100_000, chunk_us=20_000) as source:
        chunks = list(source)
    assert chunks[0].t_start == int(events["t"][0]) + 100_000
    np.testing.assert_array_equal(concatenate(chunks), events[events["t"] >= chunks[0].t_start])
    check_tiling(chunks)
    assert (chunks[-1].t_end - chunks[0].t_start) % 20_000 == 0  # the pass ends on the chunk grid


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [({"speed": 101}, "speed"), ({"speed": 0.05}, "speed"), ({"chunk_us": 0}, "chunk_us"), ({"start_us": -1}, "start_us"),
     ({"start_us": 10_000_000}, "start_us")],
)
def test_bad_options_name_the_option(tmp_path, kwargs, option):
    write_aedat4(tmp_path / "rec.aedat4", random_events(100, SENSOR), SENSOR)
    with pytest.raises(ConfigError, match=option):
        FileSource(tmp_path / "rec.aedat4", **kwargs)


def test_missing_file_is_an_event_file_error(tmp_path):
    with pytest.raises(EventFileError, match="nothing.aedat4"):
        open_source(tmp_path / "nothing.aedat4")


@pytest.mark.parametrize("fmt", ["aedat4", "aedat3"])
def test_truncated_file_yields_the_readable_prefix_then_the_error(tmp_path, fmt):
    events = random_events(20_000, SENSOR, t0=0, duration_us=400_000, seed=7)
    path = tmp_path / f"rec.{fmt}"
    if fmt == "aedat4":
        write_aedat4(path, events, SENSOR, compression="none", packet_events=1_000)
    else:
        write_aedat3(path, events, packet_events=1_000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 5])
    source = FileSource(path, speed=None)
    chunks = []
    with pytest.raises(EventFileError) as info:
        for chunk in source:
            chunks.append(chunk)
    assert str(path) in str(info.value) and "byte" in str(info.value)
    got = concatenate(chunks)
    assert len(got) >= 10_000  # every whole packet before the cut
    np.testing.assert_array_equal(got, events[: len(got)])
    check_tiling(chunks)


def test_close_from_another_thread_ends_a_paused_replay(tmp_path):
    write_aedat4(tmp_path / "rec.aedat4", random_events(1_000, SENSOR), SENSOR)
    source = FileSource(tmp_path / "rec.aedat4", speed=1.0)
    source.pause()
    got = []
    thread = threading.Thread(target=lambda: got.extend(source))
    thread.start()
    source.close()
    thread.join()
    assert got == []


def test_recording_without_events_yields_nothing(tmp_path):
    write_aedat4(tmp_path / "empty.aedat4", make_events([], [], [], []), SENSOR)
    with FileSource(tmp_path / "empty.aedat4", loop=True, speed=None) as source:
        assert list(source) == [] and source.duration_us == 0 and source.t_first is None


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    bursts=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 80_000)), min_size=1, max_size=6),
    packet_events=st.integers(1, 400),
    chunk_us=st.integers(1_000, 50_000),
    start_fraction=st.floats(0, 1),
    speed=st.sampled_from([None, 4.0]),
)
def test_any_packet_layout_replays_as_a_gapless_tiling(tmp_path, bursts, packet_events, chunk_us, start_fraction, speed):
    parts, t = [], 1_000_000
    for k, (n, gap_us) in enumerate(bursts):
        t += gap_us
        parts.append(random_events(n, SENSOR, t0=t, duration_us=5_000, seed=k))
        t += 5_000
    events = concatenate(parts)
    if len(events) == 0:
        return
    path = tmp_path / f"rec_{packet_events}_{chunk_us}.aedat4"
    write_aedat4(path, events, SENSOR, packet_events=packet_events)
    with FileSource(path, speed=None, chunk_us=chunk_us) as source:
        start_us = int(source.duration_us * start_fraction)
    with fake_paced(path, speed=speed, chunk_us=chunk_us, start_us=start_us) as source:
        chunks = list(source)
    t0 = int(events["t"][0]) + start_us
    assert chunks[0].t_start == t0
    np.testing.assert_array_equal(concatenate(chunks), events[events["t"] >= t0])
    check_tiling(chunks, chunk_us if speed else None)
    assert chunks[-1].t_end > events["t"][-1]
    assert (chunks[-1].t_end - t0) % chunk_us == 0
    if speed is None and start_us == 0:
        assert_cut_at_packets(chunks, path)


def test_seek_from_another_thread_while_paused(tmp_path):
    events = random_events(5_000, SENSOR, t0=0, duration_us=1_000_000, seed=8)
    write_aedat4(tmp_path / "rec.aedat4", events, SENSOR)
    source = FileSource(tmp_path / "rec.aedat4", speed=None)
    source.pause()
    got = []
    thread = threading.Thread(target=lambda: got.extend(source))
    thread.start()
    source.seek(700_000)
    source.resume()
    thread.join()
    assert got[0].t_start == source.t_first + 700_000
    np.testing.assert_array_equal(concatenate(got), events[events["t"] >= got[0].t_start])
    check_tiling(got)


@pytest.mark.parametrize("fmt", ["aedat4", "aedat3"])
def test_file_damaged_before_its_first_event_raises_instead_of_replaying_empty(tmp_path, fmt):
    events = random_events(2_000, SENSOR, t0=0, duration_us=100_000, seed=3)
    path = tmp_path / f"one_packet.{fmt}"
    if fmt == "aedat4":
        write_aedat4(path, events, SENSOR, compression="lz4")
    else:
        write_aedat3(path, events)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(EventFileError, match="one_packet"):
        list(FileSource(path, speed=None))


def test_timestamp_jump_costs_a_few_chunks_as_fast_as_possible(tmp_path):
    # reproducer (issue 17, finding 3): a 1 KB file with two events 2**40 µs apart tiled the
    # gap with 10 ms chunks (~10 minutes to iterate, hours through the pipeline)
    from evstream.binning import Binner

    events = make_events(t=[1_000, 1_000 + 2**40], x=[3, 4], y=[5, 6], p=[1, 0])
    path = tmp_path / "jump.aedat4"
    write_aedat4(path, events, SENSOR)
    assert path.stat().st_size < 4096
    with FileSource(path, speed=None) as source:
        chunks = list(source)
    assert len(chunks) <= 4
    np.testing.assert_array_equal(concatenate(chunks), events)
    check_tiling(chunks)
    binner = Binner(SENSOR, (32, 32), 50_000, 4)
    windows = [w for chunk in chunks for w in binner.push(chunk)]
    assert len(windows) <= 4 and binner.stats.time_resets >= 1


def test_short_quiet_periods_are_tiled_chunk_by_chunk_when_paced(tmp_path):
    events = make_events(t=[0, 900_000], x=[1, 1], y=[1, 1], p=[1, 1])
    write_aedat4(tmp_path / "quiet.aedat4", events, SENSOR)
    with fake_paced(tmp_path / "quiet.aedat4", speed=1.0, chunk_us=10_000) as source:
        chunks = list(source)
    check_tiling(chunks, 10_000)
    assert len(chunks) == 91
    with FileSource(tmp_path / "quiet.aedat4", speed=None, chunk_us=10_000) as source:
        fast = list(source)
    check_tiling(fast)
    assert len(fast) == 2 and fast[-1].t_end == chunks[-1].t_end  # the packet, then up to the grid


def test_switching_to_as_fast_as_possible_mid_packet_hands_on_the_rest_whole(tmp_path):
    events = random_events(4_000, SENSOR, t0=0, duration_us=400_000, seed=12)
    write_aedat4(tmp_path / "rec.aedat4", events, SENSOR, packet_events=2_000)
    source = fake_paced(tmp_path / "rec.aedat4", speed=1.0)
    it = iter(source)
    first = next(it)
    assert first.t_end - first.t_start == 10_000
    source.set_speed(None)
    rest = list(it)
    np.testing.assert_array_equal(concatenate([first, *rest]), events)
    check_tiling([first, *rest])
    assert len([c for c in rest if len(c)]) <= 3  # the rest of packet 0, then packet 1


# -- packets that go back in time (issue 17, finding 10) ---------------------------------------


def backwards_events():
    """Two packets of 500 events; the second is older than the first."""
    late = random_events(500, SENSOR, t0=2_000_000, duration_us=50_000, seed=13)
    early = random_events(500, SENSOR, t0=1_000_000, duration_us=50_000, seed=14)
    return late, early


def test_recording_whose_last_packet_is_before_the_first_is_refused_naming_packet_and_times(tmp_path):
    # reproducer: replay said "start_us: 0 µs is past the end", an option the user never set
    late, early = backwards_events()
    path = tmp_path / "backwards.aedat4"
    write_aedat4(path, concatenate([late, early]), SENSOR, packet_events=500)
    assert len(read_events(path)) == 1_000  # readable
    with pytest.raises(EventFileError) as info:
        open_source(path, speed=None)
    message = str(info.value)
    assert "backwards.aedat4" in message and "event packet 1" in message and "start_us" not in message
    assert str(int(early["t"].min())) in message and str(int(late["t"].max())) in message


def test_aedat3_recording_with_a_packet_going_back_is_refused_at_open(tmp_path):
    late, early = backwards_events()
    path = tmp_path / "backwards.aedat"
    write_aedat3(path, concatenate([late, early, late]), packet_events=500)
    with pytest.raises(EventFileError, match=r"backwards\.aedat.*event packet 1 starts at "
                                             f"{int(early['t'][0])} µs.*{int(late['t'][-1])} µs"):
        FileSource(path, speed=None)


def test_packet_going_back_without_a_table_is_refused_at_open(tmp_path):
    late, early = backwards_events()
    after = random_events(500, SENSOR, t0=3_000_000, duration_us=50_000, seed=15)
    path = tmp_path / "no_table.aedat4"
    write_aedat4(path, concatenate([late, early, after]), SENSOR, packet_events=500)
    data = bytearray(path.read_bytes())  # dataTablePosition = -1: the source scans the packets
    struct.pack_into("<q", data, len(MAGIC) + 4 + IO_HEADER_DATA_TABLE_POSITION, -1)
    path.write_bytes(bytes(data))
    with pytest.raises(EventFileError, match=f"no_table.aedat4.*event packet 1 starts at {int(early['t'][0])} µs"):
        FileSource(path, speed=None)


def test_packet_going_back_behind_a_lying_table_stops_the_replay_after_the_packets_before_it(tmp_path):
    late, early = backwards_events()
    after = random_events(500, SENSOR, t0=3_000_000, duration_us=50_000, seed=15)
    path = tmp_path / "lying.aedat4"
    with Aedat4Writer(path, SENSOR, packet_events=500) as writer:
        writer.write(concatenate([late, early, after]))
        # the table claims packet 1 follows packet 0; its events say otherwise
        writer._entries[1] = dataclasses.replace(writer._entries[1], t_start=2_100_000, t_end=2_150_000)
    for speed in (None, 4.0):
        source = fake_paced(path, speed=speed)
        chunks = []
        with pytest.raises(EventFileError, match=f"lying.aedat4.*event packet 1 starts at {int(early['t'][0])} µs"):
            for chunk in source:
                chunks.append(chunk)
        np.testing.assert_array_equal(concatenate(chunks), late)
        check_tiling(chunks)
