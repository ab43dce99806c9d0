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


@pytest.mark.parametrize("bad", [0, 0.09, 100.5, -1, float("nan"), "fast"])
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


def test_a_long_quiet_stretch_is_waited_out_only_up_to_the_bound_then_skipped():
    # issue 17: at real-time speed a 2^40 µs gap would have been waited out for 12.7 days
    clock = FakeClock(100.0)
    pacer = ReplayPacer(1.0, clock=clock, sleep=clock.sleep, max_quiet_s=2.0)
    step, gap_end = 10_000, 1 << 40
    assert pacer.wait(0, step)
    limit = pacer.quiet_limit_us()
    assert limit == 2_000_000
    t = step
    while t < step + limit:  # what a source tiling quiet time does, up to the bound
        assert pacer.wait(t, t + step)
        t += step
    assert clock.now - 100.0 == pytest.approx(2.01, abs=1e-9)
    pacer.skip(gap_end - t)
    assert pacer.wait(t, gap_end)  # the rest of the stretch as one chunk, due at once
    assert clock.now - 100.0 == pytest.approx(2.01, abs=1e-9)
    assert pacer.wait(gap_end, gap_end + step)  # pacing carries on after the jump
    assert clock.now - 100.0 == pytest.approx(2.02, abs=1e-9)
    assert (pacer.quiet_skips, pacer.skipped_us) == (1, gap_end - t)


def test_quiet_bound_scales_with_speed_and_is_validated():
    assert ReplayPacer(4.0, max_quiet_s=2.0).quiet_limit_us() == 8_000_000
    assert ReplayPacer(0.25).quiet_limit_us() == 1_250_000  # MAX_QUIET_WAIT_S = 5 s of wall time
    assert ReplayPacer(None).quiet_limit_us() is None
    for bad in (0, -1.0, float("nan"), float("inf"), True, "5"):
        with pytest.raises(ConfigError, match="max_quiet_s"):
            ReplayPacer(1.0, max_quiet_s=bad)
