"""Event-stream statistics (evstream.realism) on streams with known answers, and on a real sample."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evstream.errors import ConfigError
from evstream.events import EVENT_DTYPE, SensorSize, concatenate, make_events
from evstream.io import open_reader
from evstream.realism import IEI_EDGES_US, event_statistics, iei_histogram

SMALL = SensorSize(32, 32)


def poisson_noise(sensor: SensorSize, rate_hz: float, duration_us: int, seed: int = 0, on_share: float = 0.5,
                  pixels: np.ndarray | None = None) -> np.ndarray:
    """Independent Poisson events at ``rate_hz`` on every pixel (or on the flat ``pixels`` given)."""
    rng = np.random.default_rng(seed)
    pixels = np.arange(sensor.width * sensor.height) if pixels is None else np.asarray(pixels)
    counts = rng.poisson(rate_hz * duration_us * 1e-6, size=len(pixels))
    flat = np.repeat(pixels, counts)
    t = rng.integers(0, duration_us, size=len(flat))
    order = np.argsort(t, kind="stable")
    return make_events(t[order], flat[order] % sensor.width, flat[order] // sensor.width,
                       (rng.random(len(flat)) < on_share)[order])


def merged(*parts: np.ndarray) -> np.ndarray:
    ev = concatenate(parts)
    return ev[np.argsort(ev["t"], kind="stable")]


def test_uniform_poisson_noise_rates():
    rate = 2.0
    stats = event_statistics(poisson_noise(SMALL, rate, 20_000_000), SMALL)
    assert stats.n_bins in (199, 200)  # whole bins from the first event
    assert stats.quiet_bins == stats.n_bins // 10
    assert stats.mean_rate_per_pixel_hz == pytest.approx(rate, rel=0.03)
    # The quiet bins are the 10 % with the fewest events: on pure noise they read a few % low.
    assert stats.quiet_rate_hz == pytest.approx(rate, rel=0.12)
    assert stats.quiet_rate_hz <= stats.mean_rate_per_pixel_hz
    # Selection and measurement on distinct bins: no bias from picking the quietest pixels.
    assert stats.still_split
    assert stats.still_rate_hz == pytest.approx(rate, rel=0.1)
    assert stats.quiet_hot_pixels == 0
    assert stats.count_p10 <= stats.count_p50 <= stats.count_p90 <= stats.count_max
    assert stats.count_p50 == pytest.approx(rate * 0.1 * 1024, rel=0.1)


def test_quiet_and_still_rates_see_the_background_behind_a_busy_patch():
    noise_hz, busy_hz = 0.5, 200.0
    duration = 20_000_000
    background = poisson_noise(SMALL, noise_hz, duration, seed=1)
    patch = np.array([y * SMALL.width + x for y in range(8, 16) for x in range(8, 16)])  # 64 pixels
    bursts = [poisson_noise(SMALL, busy_hz, 500_000, seed=10 + k, pixels=patch) for k in range(20)]
    for k, burst in enumerate(bursts):  # busy for 0.5 s of every second
        burst["t"] += k * 1_000_000
    stats = event_statistics(merged(background, *bursts), SMALL)
    assert stats.mean_rate_per_pixel_hz > 5 * noise_hz
    assert stats.quiet_rate_hz == pytest.approx(noise_hz, rel=0.3)
    assert stats.still_rate_hz == pytest.approx(noise_hz, rel=0.15)
    assert stats.still_pixels <= SMALL.width * SMALL.height - len(patch)
    assert stats.quiet_hot_pixels == 0


def test_hot_pixels_are_counted_in_the_quiet_time():
    background = poisson_noise(SMALL, 0.2, 10_000_000, seed=2)
    hot = poisson_noise(SMALL, 50.0, 10_000_000, seed=3, pixels=[5, 77, 300])
    stats = event_statistics(merged(background, hot), SMALL)
    assert stats.quiet_hot_pixels == 3
    assert stats.quiet_rate_p99_hz < 10.0  # 3 of 1024 pixels lie above the 99th percentile


def test_on_fraction():
    stats = event_statistics(poisson_noise(SMALL, 1.0, 5_000_000, seed=4, on_share=0.3), SMALL)
    assert stats.on_fraction == pytest.approx(0.3, abs=0.02)
    ev = poisson_noise(SMALL, 1.0, 5_000_000, seed=4)
    ev["p"] = np.arange(len(ev)) % 4 == 0
    assert event_statistics(ev, SMALL).on_fraction == pytest.approx(np.mean(ev["p"] != 0))


def test_iei_histogram_of_a_periodic_pixel_peaks_at_the_period():
    period = 5_000
    t = np.arange(0, 2_000_000, period)
    ev = make_events(t, np.full(len(t), 3), np.full(len(t), 4), np.ones(len(t)))
    stats = event_statistics(ev, SMALL)
    k = int(np.searchsorted(IEI_EDGES_US, period, side="right")) - 1
    assert IEI_EDGES_US[k] <= stats.iei_peak_us < IEI_EDGES_US[k + 1]
    assert stats.iei_histogram[k] == pytest.approx(1.0)
    assert stats.iei_histogram.sum() == pytest.approx(1.0)
    assert stats.iei_p10_us == stats.iei_p50_us == stats.iei_p90_us == period
    assert stats.iei_zero_fraction == 0


def test_iei_is_per_pixel_not_between_pixels():
    # Two pixels at 10 ms period, offset by 1 ms: pooled intervals are all 10 ms, never 1 ms or 9 ms.
    t = np.arange(0, 1_000_000, 10_000)
    a = make_events(t, np.zeros(len(t)), np.zeros(len(t)), np.zeros(len(t)))
    b = make_events(t + 1_000, np.ones(len(t)), np.zeros(len(t)), np.zeros(len(t)))
    ev = merged(a, b)
    pixel = ev["y"].astype(np.int64) * SMALL.width + ev["x"]
    intervals, hist = iei_histogram(ev["t"], pixel)
    assert len(intervals) == 2 * (len(t) - 1)
    assert np.all(intervals == 10_000)
    # Out-of-range intervals land in the end bins: 0 µs in the first, 100 s in the last.
    _, hist = iei_histogram(np.array([0, 0, 100_000_000]), np.zeros(3, dtype=np.int64))
    assert hist[0] == pytest.approx(0.5) and hist[-1] == pytest.approx(0.5)


def test_unsorted_input_gives_the_same_statistics():
    ev = poisson_noise(SMALL, 3.0, 3_000_000, seed=5)
    shuffled = ev[np.random.default_rng(0).permutation(len(ev))]
    a, b = event_statistics(ev, SMALL).as_dict(), event_statistics(shuffled, SMALL).as_dict()
    assert a == b


def test_as_dict_is_plain_python():
    stats = event_statistics(poisson_noise(SMALL, 3.0, 1_000_000, seed=6), SMALL)
    d = stats.as_dict()
    assert d["sensor"] == "32x32" and d["n_events"] == stats.n_events
    assert len(d["iei_histogram"]) == len(d["iei_edges_us"]) - 1 == 70
    assert "iei_histogram" not in stats.as_dict(histogram=False)
    assert all(isinstance(v, int | float | str | bool) for k, v in stats.as_dict(histogram=False).items())


@pytest.mark.parametrize("n", [0, 1])
def test_empty_and_single_event_are_refused(n):
    with pytest.raises(ConfigError, match="at least 2 events"):
        event_statistics(np.zeros(n, dtype=EVENT_DTYPE), SMALL)


def test_short_outside_and_bad_parameters_are_refused():
    ev = make_events([0, 50_000], [0, 1], [0, 1], [0, 1])
    with pytest.raises(ConfigError, match="shorter than one"):
        event_statistics(ev, SMALL)
    far = make_events([0, 500_000], [0, 40], [0, 1], [0, 1])
    with pytest.raises(ConfigError, match="outside the 32x32 sensor"):
        event_statistics(far, SMALL)
    ok = make_events([0, 500_000], [0, 1], [0, 1], [0, 1])
    with pytest.raises(ConfigError, match="bin_us"):
        event_statistics(ok, SMALL, bin_us=0)
    with pytest.raises(ConfigError, match="quiet_fraction"):
        event_statistics(ok, SMALL, quiet_fraction=0)
    with pytest.raises(ConfigError, match="SensorSize"):
        event_statistics(ok, (32, 32))


def test_real_dvxplorer_sample(shared_data):
    path = shared_data / "dvxplorer_320x240_tonic_sample.aedat4"
    if not path.is_file():
        pytest.skip(f"{path.name} not in {shared_data}")
    with open_reader(path) as reader:
        events, size = reader.read(), reader.sensor_size
    stats = event_statistics(events, size)
    # PROVENANCE.md: 111,954 events over 0.589917 s, ON fraction 0.491 (three decoders agree).
    assert stats.sensor == "320x240"
    assert stats.n_events == 111_954
    assert stats.duration_s == pytest.approx(0.589918, abs=1e-6)
    assert stats.on_fraction == pytest.approx(0.491, abs=0.001)
    assert stats.n_bins == 5 and stats.quiet_bins == 1
    assert stats.count_max <= stats.n_events
    assert math.isfinite(stats.iei_p50_us) and stats.iei_p50_us < 589_918
