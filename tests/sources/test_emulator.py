"""DvsEmulator: threshold rule, interpolated timestamps, noise rates, refractory period, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evstream.errors import ConfigError, EventFormatError
from evstream.events import EVENT_DTYPE, SensorSize
from evstream.sources.emulator import DvsEmulator, emulate_video

SENSOR = SensorSize(64, 48)
EPS = 0.01  # the emulator's default log_eps, intensity in [0, 1]


def ideal(**options) -> DvsEmulator:
    """No mismatch, no noise, no refractory period: the bare threshold rule."""
    params = dict(threshold_sigma=0.0, leak_rate_hz=0.0, shot_noise_rate_hz=0.0, refractory_us=0)
    params.update(options)
    return DvsEmulator(SENSOR, **params)


def level(base: float, contrasts: float) -> np.ndarray:
    """A uniform frame whose log(I + eps) is ``contrasts`` log units above that of ``base``."""
    value = math.exp(math.log(base + EPS) + contrasts) - EPS
    return np.full((SENSOR.height, SENSOR.width), value)


def per_pixel(events: np.ndarray) -> np.ndarray:
    counts = np.zeros((SENSOR.height, SENSOR.width), dtype=int)
    np.add.at(counts, (events["y"], events["x"]), 1)
    return counts


@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("threshold", [0.15, 0.4])
def test_brightness_step_gives_k_events_per_pixel(k, threshold):
    emu = ideal(pos_threshold=threshold, neg_threshold=threshold)
    assert len(emu.push(level(0.2, 0.0), 0)) == 0
    up = emu.push(level(0.2, (k + 0.5) * threshold), 10_000)
    assert up.dtype == EVENT_DTYPE
    assert np.all(per_pixel(up) == k)
    assert np.all(up["p"] == 1)
    # The reference now sits k thresholds up: going to -0.5 is k + 0.5 thresholds down.
    down = emu.push(level(0.2, -0.5 * threshold), 20_000)
    assert np.all(per_pixel(down) == k)
    assert np.all(down["p"] == 0)


def test_off_and_on_thresholds_are_separate():
    emu = ideal(pos_threshold=0.1, neg_threshold=0.3)
    emu.push(level(0.5, 0.0), 0)
    down = emu.push(level(0.5, -0.95), 1000)  # 3 OFF thresholds of 0.3
    assert np.all(per_pixel(down) == 3) and np.all(down["p"] == 0)


def test_timestamps_are_interpolated_between_frames():
    theta, k = 0.2, 4
    emu = ideal(pos_threshold=theta)
    emu.push(level(0.2, 0.0), 1_000_000)
    contrast = (k + 0.5) * theta
    events = emu.push(level(0.2, contrast), 1_033_333)
    # Log intensity is linear in time between frames, so crossing j happens at j*theta/contrast.
    expected = [1_000_000 + j * theta / contrast * 33_333 for j in range(1, k + 1)]
    assert np.allclose(np.unique(events["t"]), expected, atol=1.0)
    assert np.all(np.diff(events["t"]) >= 0)
    assert events["t"].min() > 1_000_000 and events["t"].max() <= 1_033_333


def test_moving_edge_events_are_sorted_and_spread_over_each_interval():
    emu = DvsEmulator(SENSOR, seed=3)
    x = np.arange(SENSOR.width)
    frames = [np.where(x[None, :] < 5 + 2.5 * i, 0.8, 0.1) * np.ones((SENSOR.height, 1)) for i in range(20)]
    chunks = list(emulate_video(frames, fps=30.0, emulator=emu, t0_us=0))
    events = np.concatenate(chunks)
    assert np.all(np.diff(events["t"]) >= 0)
    for i, chunk in enumerate(chunks[1:], start=1):
        t0, t1 = round((i - 1) * 1e6 / 30), round(i * 1e6 / 30)
        assert chunk["t"].min() > t0 and chunk["t"].max() <= t1
        # Not a burst at the frame time: the edge sweeps across the interval.
        assert len(np.unique(chunk["t"])) > 10
        assert np.mean(chunk["t"] == t1) < 0.5


def test_static_scene_shot_noise_matches_rate():
    rate = 3.0
    emu = DvsEmulator(SENSOR, leak_rate_hz=0.0, shot_noise_rate_hz=rate, seed=1)
    frame = np.full((SENSOR.height, SENSOR.width), 0.3)
    events = np.concatenate([emu.push(frame, i * 20_000) for i in range(101)])  # 2 s
    expected = rate * SENSOR.width * SENSOR.height * 2.0
    assert abs(len(events) - expected) < 0.2 * expected
    assert 0.4 < events["p"].mean() < 0.6
    assert np.all(np.diff(events["t"]) >= 0)


def test_static_scene_leak_events_match_rate_and_are_on():
    rate = 2.0
    emu = DvsEmulator(SENSOR, leak_rate_hz=rate, shot_noise_rate_hz=0.0, seed=2)
    frame = np.full((SENSOR.height, SENSOR.width), 0.3)
    events = np.concatenate([emu.push(frame, i * 25_000) for i in range(121)])  # 3 s
    expected = rate * SENSOR.width * SENSOR.height * 3.0
    assert abs(len(events) - expected) < 0.2 * expected
    assert np.all(events["p"] == 1)
    # Random leak phase: the leak events are spread in time, not synchronous waves.
    per_interval = np.bincount(events["t"] // 25_000)
    assert per_interval[1:].max() < 3 * per_interval[1:].mean()


def test_static_scene_without_noise_is_silent():
    emu = ideal()
    frame = np.full((SENSOR.height, SENSOR.width), 0.3)
    assert sum(len(emu.push(frame, i * 10_000)) for i in range(50)) == 0


def test_threshold_mismatch_spreads_counts_around_the_nominal():
    emu = DvsEmulator(SENSOR, threshold_sigma=0.03, leak_rate_hz=0, shot_noise_rate_hz=0, refractory_us=0, seed=4)
    emu.push(level(0.2, 0.0), 0)
    counts = per_pixel(emu.push(level(0.2, 2.0), 10_000))  # 10 nominal thresholds
    assert len(np.unique(counts)) > 2
    assert abs(counts.mean() - 10) < 1.0


def test_refractory_period_delays_but_keeps_the_change():
    emu = ideal(refractory_us=15_000)
    emu.push(level(0.2, 0.0), 0)
    first = emu.push(level(0.2, 3.5 * 0.2), 10_000)
    assert np.all(per_pixel(first) == 1)  # 3 crossings, but the pixel is dead for 15 ms after one
    later = [emu.push(level(0.2, 3.5 * 0.2), 10_000 * i) for i in range(2, 8)]
    total = per_pixel(np.concatenate([first, *later]))
    assert np.all(total == 3)
    pixel = np.concatenate([first, *later])
    pixel = pixel[(pixel["x"] == 0) & (pixel["y"] == 0)]
    assert np.all(np.diff(np.sort(pixel["t"])) >= 15_000)


def test_same_seed_same_events_other_seed_other_noise():
    def run(seed):
        emu = DvsEmulator(SENSOR, seed=seed, shot_noise_rate_hz=5.0)
        x = np.arange(SENSOR.width)
        return np.concatenate([emu.push(np.where(x[None, :] < 10 + i, 0.7, 0.2) * np.ones((SENSOR.height, 1)),
                                        i * 10_000) for i in range(10)])

    a, b, c = run(7), run(7), run(8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sensor_size_from_first_frame_and_integer_frames():
    emu = DvsEmulator(threshold_sigma=0, leak_rate_hz=0, shot_noise_rate_hz=0)
    emu.push(np.full((30, 40), 50, np.uint8), 0)
    assert emu.sensor_size == SensorSize(40, 30)
    events = emu.push(np.full((30, 40), 200, np.uint8), 1000)
    # log(200/255 + eps) - log(50/255 + eps) = 1.33 -> 6 thresholds of 0.2
    assert np.all(per_pixel_of(events, 40, 30) == 6)
    emu16 = DvsEmulator(threshold_sigma=0, leak_rate_hz=0, shot_noise_rate_hz=0)
    emu16.push(np.full((30, 40), 50 * 257, np.uint16), 0)
    assert np.all(per_pixel_of(emu16.push(np.full((30, 40), 200 * 257, np.uint16), 1000), 40, 30) == 6)


def per_pixel_of(events, width, height):
    counts = np.zeros((height, width), dtype=int)
    np.add.at(counts, (events["y"], events["x"]), 1)
    return counts


@pytest.mark.parametrize(
    "field, value",
    [("pos_threshold", -0.2), ("neg_threshold", 0.0), ("threshold_sigma", -0.01), ("leak_rate_hz", -1.0),
     ("shot_noise_rate_hz", float("nan")), ("refractory_us", -5)],
)
def test_bad_parameters_raise_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        DvsEmulator(SENSOR, **{field: value})


@pytest.mark.parametrize("fps", [0, -30, float("inf")])
def test_bad_fps_raises(fps):
    with pytest.raises(ConfigError, match="fps"):
        list(emulate_video([np.zeros((4, 4))], fps))


def test_bad_frames_raise_event_format_error():
    emu = DvsEmulator(SENSOR)
    with pytest.raises(EventFormatError, match="2-D"):
        emu.push(np.zeros((SENSOR.height, SENSOR.width, 3)), 0)
    with pytest.raises(EventFormatError, match="numpy array"):
        emu.push([[0.0]], 0)
    with pytest.raises(EventFormatError, match="dtype"):
        emu.push(np.zeros((SENSOR.height, SENSOR.width), dtype=object), 0)
    with pytest.raises(EventFormatError, match="80x60.*64x48"):
        emu.push(np.zeros((60, 80)), 0)
    emu.push(np.zeros((SENSOR.height, SENSOR.width)), 0)
    bad = np.zeros((SENSOR.height, SENSOR.width))
    bad[7, 9] = np.nan
    with pytest.raises(EventFormatError, match="x=9 y=7"):
        emu.push(bad, 1000)
    with pytest.raises(EventFormatError, match="not after"):
        emu.push(np.zeros((SENSOR.height, SENSOR.width)), 0)
    # Nothing already produced is lost: the emulator keeps working after a rejected frame.
    assert len(emu.push(np.full((SENSOR.height, SENSOR.width), 1.0), 2000)) > 0


def test_frame_size_change_names_both_sizes():
    emu = DvsEmulator()
    emu.push(np.zeros((48, 64), np.uint8), 0)
    with pytest.raises(EventFormatError, match="128x128 differs from the emulator's sensor 64x48"):
        emu.push(np.zeros((128, 128), np.uint8), 1000)
