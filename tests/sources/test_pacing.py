"""ReplayPacer driven by a fake clock: release times are asserted exactly, nothing really waits."""

from __future__ import annotations

import threading

import pytest

from evstream.errors import ConfigError
from evstream.sources.pacing import ReplayPacer
from tests.helpers import FakeClock


def make(speed=1.0, start=100.0):
    clock = FakeClock(start)
    return ReplayPacer(speed, clock=clock, sleep=clock.sleep), clock


@pytest.mark.parametrize("speed", [0.25, 0.5, 1.0, 2.0, 4.0])
def test_each_chunk_released_when_its_sensor_time_over_speed_has_passed(speed):
    pacer, clock = make(speed)
    t0 = 1_600_000_000_000_000
    released = []
    for k in range(10):
        assert pacer.wait(t0 + k * 10_000, t0 + (k + 1) * 10_000)
        released.append(clock.now - 100.0)
    for k, wall in enumerate(released):
        assert wall == pytest.approx((k + 1) * 0.010 / speed, abs=1e-9)


def test_at_4x_a_chunk_is_due_after_a_quarter_of_its_sensor_time():
    pacer, clock = make(4.0)
    assert pacer.wait(0, 40_000)
    assert clock.now - 100.0 == pytest.approx(0.010, abs=1e-9)
    assert pacer.wait(40_000, 100_000)
    assert clock.now - 100.0 == pytest.approx(0.025, abs=1e-9)


def test_as_fast_as_possible_never_sleeps():
    pacer, clock = make(None)
    for k in range(100):
        assert pacer.wait(k * 1_000_000, (k + 1) * 1_000_000)
    assert clock.slept == 0.0


def test_a_late_consumer_gets_due_chunks_without_waiting():
    pacer, clock = make(1.0)
    assert pacer.wait(0, 10_000)
    clock.now += 0.5  # the consumer spent 0.5 s on the first chunk
    slept = clock.slept
    for k in range(1, 50):
        assert pacer.wait(k * 10_000, (k + 1) * 10_000)
    assert clock.slept == slept
    assert pacer.wait(50_000 * 10, 50_000 * 10 + 10_000)
    assert clock.now - 100.0 == pytest.approx(0.510, abs=1e-9)


def test_paused_time_does_not_count():
    pacer, clock = make(1.0)
    assert pacer.wait(0, 10_000)  # released at +0.010
    pacer.pause()
    assert pacer.paused
    resumed = []

    def resume():
        resumed.append(clock.now)
        pacer.resume()

    clock.at(100.0 + 2.010, resume)  # paused for about 2 s of wall time
    assert pacer.wait(10_000, 20_000)
    assert not pacer.paused
    paused_s = resumed[0] - 100.010
    assert paused_s >= 2.0 - 1e-9
    assert clock.now - 100.0 == pytest.approx(0.020 + paused_s, abs=1e-9)
    assert pacer.wait(20_000, 30_000)
    assert clock.now - 100.0 == pytest.approx(0.030 + paused_s, abs=1e-9)


def test_pause_holds_even_as_fast_as_possible():
    pacer, clock = make(None)
    pacer.pause()
    clock.at(100.5, pacer.resume)
    assert pacer.wait(0, 10_000)
    assert 100.5 - 1e-9 <= clock.now <= 100.5 + 0.02 + 1e-9


def test_reanchor_after_seek_times_from_the_new_position():
    pacer, clock = make(2.0)
    assert pacer.wait(0, 10_000)
    assert pacer.wait(10_000, 20_000)
    start = clock.now
    pacer.reanchor()
    # seek back to the start: no waiting for time already replayed, and no burst either
    assert pacer.wait(0, 10_000)
    assert clock.now - start == pytest.approx(0.005, abs=1e-9)
    pacer.reanchor()
    # seek far ahead: the chunk is still only its own duration away
    assert pacer.wait(5_000_000, 5_010_000)
    assert clock.now - start == pytest.approx(0.010, abs=1e-9)


def test_speed_change_continues_from_the_current_position():
    pacer, clock = make(1.0)
    assert pacer.wait(0, 10_000)  # +0.010 s, sensor position 10 ms
    pacer.set_speed(4.0)
    assert pacer.speed == 4.0
    assert pacer.wait(10_000, 50_000)  # 40 ms of sensor time at 4x = 10 ms of wall time
    assert clock.now - 100.0 == pytest.approx(0.020, abs=1e-9)
    pacer.set_speed(0.5)
    assert pacer.wait(50_000, 60_000)
    assert clock.now - 100.0 == pytest.approx(0.040, abs=1e-9)


def test_speed_change_mid_wait_applies_to_the_rest_of_the_wait():
    pacer, clock = make(0.25)
    assert pacer.wait(0, 0)  # anchor at sensor 0, wall 100
    changed = []

    def speed_up():
        changed.append(clock.now - 100.0)
        pacer.set_speed(4.0)

    clock.at(100.1, speed_up)
    assert pacer.wait(0, 100_000)
    # at wall time w the position is w * 0.25 s; the rest of the 100 ms at 4x takes (0.1 - w/4) / 4
    w = changed[0]
    assert clock.now - 100.0 == pytest.approx(w + (0.1 - w * 0.25) / 4, abs=1e-9)


def test_speed_change_to_and_from_unpaced():
    pacer, clock = make(1.0)
    assert pacer.wait(0, 10_000)
    pacer.set_speed(None)
    slept = clock.slept
    assert pacer.wait(10_000, 1_000_000)
    assert clock.slept == slept
    pacer.set_speed(2.0)
    start = clock.now
    assert pacer.wait(1_000_000, 1_020_000)
    assert clock.now - start == pytest.approx(0.010, abs=1e-9)


@pytest.mark.parametrize("bad", [0, 0.1, 4.5, -1, float("nan"), "fast"])
def test_speed_out_of_range_names_the_option(bad):
    with pytest.raises(ConfigError, match="speed"):
        ReplayPacer(bad)
    pacer, _ = make(1.0)
    with pytest.raises(ConfigError, match="speed"):
        pacer.set_speed(bad)
    assert pacer.speed == 1.0


def test_cancel_releases_a_waiting_thread():
    pacer = ReplayPacer(0.25)
    results = []
    thread = threading.Thread(target=lambda: results.append(pacer.wait(0, 3_600_000_000)))
    thread.start()
    pacer.cancel()
    thread.join()
    assert results == [False]


def test_reanchor_during_a_wait_gives_up_that_chunk():
    pacer, clock = make(1.0)
    pacer.pause()
    clock.at(100.1, pacer.reanchor)  # a seek while paused
    assert pacer.wait(0, 10_000) is False
    pacer.resume()
    start = clock.now
    assert pacer.wait(500_000, 510_000) is True
    assert clock.now - start == pytest.approx(0.010, abs=1e-9)
