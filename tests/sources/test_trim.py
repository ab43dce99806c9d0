"""Replay trimming (``start_us``/``end_us``, ``--start``/``--end``) and the 0.1x ... 100x speed range,
against the injected fake clock: the events replayed are exactly the numpy selection, and paced
chunks are released when their sensor time has come at the chosen speed."""

from __future__ import annotations

import numpy as np
import pytest

from evstream.commands.run import _speed, trim_us
from evstream.errors import ConfigError
from evstream.events import SensorSize, concatenate
from evstream.io import write_aedat4
from evstream.sources.file import FileSource
from tests.helpers import FakeClock, random_events

SENSOR = SensorSize(64, 48)


@pytest.fixture
def recording(tmp_path):
    events = random_events(20_000, SENSOR, duration_us=2_000_000, seed=3)
    path = tmp_path / "rec.aedat4"
    write_aedat4(path, events, SENSOR, packet_events=1_000)
    return path, events


def _selection(events, start_us, end_us):
    t = events["t"] - events["t"][0]
    return events[(t >= start_us) & (t < end_us)]


@pytest.mark.parametrize("speed", [None, 0.1, 1.0, 10.0, 100.0])
def test_trimmed_replay_is_the_numpy_selection(recording, speed):
    path, events = recording
    clock = FakeClock(50.0)
    with FileSource(path, speed=speed, start_us=300_000, end_us=1_250_000, clock=clock, sleep=clock.sleep) as source:
        chunks = list(source)
    np.testing.assert_array_equal(concatenate(chunks), _selection(events, 300_000, 1_250_000))
    t0 = int(events["t"][0])
    assert chunks[0].t_start == t0 + 300_000
    assert chunks[-1].t_end == t0 + 1_250_000  # the pass ends exactly at end_us
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.t_end == after.t_start


@pytest.mark.parametrize("speed", [0.1, 0.5, 4.0, 25.0, 100.0])
def test_paced_trimmed_replay_releases_on_the_fake_clock(recording, speed):
    path, _ = recording
    clock = FakeClock(50.0)
    released = []
    with FileSource(path, speed=speed, start_us=500_000, end_us=1_500_000, clock=clock, sleep=clock.sleep) as source:
        for chunk in source:
            released.append((chunk.t_start, chunk.t_end, clock.now))
    first = released[0][0]
    for _t_start, t_end, wall in released:
        # Each chunk leaves when (t_end - first) / speed of wall time has passed since the start.
        assert wall == pytest.approx(50.0 + (t_end - first) / (speed * 1e6), abs=1e-6)
    # One second of sensor time took 1/speed seconds of (fake) wall time, nothing more.
    assert clock.now - 50.0 == pytest.approx(1.0 / speed, rel=1e-9)


def test_a_looping_trimmed_replay_starts_every_pass_at_start(recording):
    path, events = recording
    clock = FakeClock(50.0)
    wanted = _selection(events, 200_000, 700_000)
    got = []
    with FileSource(path, speed=None, loop=True, start_us=200_000, end_us=700_000, clock=clock,
                    sleep=clock.sleep) as source:
        period = source.period_us
        for chunk in source:
            got.append(chunk)
            if sum(len(c) for c in got) >= 2 * len(wanted):
                break
    replayed = concatenate(got)
    np.testing.assert_array_equal(replayed[:len(wanted)], wanted)
    second = replayed[len(wanted):2 * len(wanted)].copy()
    second["t"] -= period
    np.testing.assert_array_equal(second, wanted)
    assert np.all(np.diff(replayed["t"]) >= 0)  # time keeps increasing across the loop


def test_an_end_past_the_recording_replays_to_its_end(recording):
    path, events = recording
    with FileSource(path, speed=None, start_us=1_900_000, end_us=60_000_000) as source:
        got = concatenate(list(source))
    np.testing.assert_array_equal(got, _selection(events, 1_900_000, 10**12))


@pytest.mark.parametrize(("kwargs", "needle"), [({"start_us": 500, "end_us": 500}, "end_us"),
                                                ({"end_us": 0}, "end_us")])
def test_bad_trims_name_the_option(recording, kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        FileSource(recording[0], **kwargs)


def test_command_line_trim_and_speed_options():
    assert trim_us(1.5, 2.25) == {"start_us": 1_500_000, "end_us": 2_250_000}
    assert trim_us(None, None) == {}
    with pytest.raises(ConfigError, match="--end"):
        trim_us(2.0, 1.0)
    with pytest.raises(ConfigError, match="--start"):
        trim_us(-1.0, None)
    assert _speed("0.1") == 0.1 and _speed("100") == 100.0 and _speed("max") is None
    for bad in ("0.05", "101", "fast"):
        with pytest.raises(ConfigError, match="--speed"):
            _speed(bad)


@pytest.mark.parametrize("speed", [1.0, 10.0])
def test_a_long_quiet_stretch_is_waited_out_only_up_to_the_bound_then_skipped(tmp_path, speed):
    from evstream.sources.pacing import MAX_QUIET_WAIT_S

    gap_us = 3_600_000_000  # an hour with no events between two bursts
    first = random_events(2_000, SENSOR, t0=0, duration_us=100_000, seed=1)
    second = random_events(2_000, SENSOR, t0=100_000 + gap_us, duration_us=100_000, seed=2)
    path = tmp_path / "gap.aedat4"
    write_aedat4(path, concatenate([first, second]), SENSOR, packet_events=500)
    clock = FakeClock(0.0)
    with FileSource(path, speed=speed, clock=clock, sleep=clock.sleep) as source:
        released = []
        for chunk in source:
            released.append((chunk, clock()))
        skips, skipped = source.quiet_skips, source.skipped_us
    got = concatenate([c for c, _ in released])
    np.testing.assert_array_equal(got, concatenate([first, second]))  # nothing lost
    assert all(a.t_end == b.t_start for (a, _), (b, _) in zip(released, released[1:], strict=False))
    t_second = next(w for c, w in released if len(c) and int(c.events["t"][0]) >= second["t"][0])
    # the first burst and the waited part of the gap at this speed, then the rest is skipped
    waited = (100_000 / 1e6) / speed + MAX_QUIET_WAIT_S
    assert waited <= t_second <= waited + 0.05
    assert skips == 1 and gap_us - MAX_QUIET_WAIT_S * speed * 1e6 - 20_000 <= skipped <= gap_us
