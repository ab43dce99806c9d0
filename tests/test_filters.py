"""Noise filters against straightforward Python references, across chunk boundaries, and the
background-activity filter against dv-processing's own on the same stream."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from evstream.errors import ConfigError, EventFormatError
from evstream.events import EVENT_DTYPE, SensorSize, concatenate, make_events
from evstream.filters import BackgroundActivityFilter, HotPixelMask, RefractoryFilter
from tests.helpers import random_events

SENSOR = SensorSize(12, 9)


def ba_reference(ev, sensor, dt_us):
    """Event by event: kept if any of the 8 neighbours fired less than dt_us ago; then record t."""
    last = {}
    keep = []
    for t, x, y in zip(ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist(), strict=True):
        if not (0 <= x < sensor.width and 0 <= y < sensor.height):
            keep.append(False)
            continue
        supported = any(
            (x + dx, y + dy) in last and t - last[(x + dx, y + dy)] < dt_us
            for dx in (-1, 0, 1)
            for dy in (-1, 0, 1)
            if (dx, dy) != (0, 0)
        )
        keep.append(supported)
        last[(x, y)] = t
    return np.array(keep, dtype=bool)


def refractory_reference(ev, sensor, period_us):
    last_kept = {}
    keep = []
    for t, x, y in zip(ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist(), strict=True):
        inside = 0 <= x < sensor.width and 0 <= y < sensor.height
        ok = inside and ((x, y) not in last_kept or t - last_kept[(x, y)] >= period_us)
        if ok:
            last_kept[(x, y)] = t
        keep.append(ok)
    return np.array(keep, dtype=bool)


def chunks(ev, cuts):
    return np.split(ev, cuts)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_background_activity_equals_reference_across_chunks(seed):
    ev = random_events(3_000, SENSOR, t0=50_000, duration_us=300_000, seed=seed)
    ev["x"][::211] = -1  # outside the sensor: dropped, counted, never indexed
    ev["y"][5::307] = SENSOR.height
    f = BackgroundActivityFilter(SENSOR, dt_us=1_500)
    parts = [f(part) for part in chunks(ev, [1, 700, 701, 2_500])]
    assert all(part.dtype == EVENT_DTYPE for part in parts)
    kept = concatenate(parts)
    expected = ba_reference(ev, SENSOR, 1_500)
    assert kept.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(kept, ev[expected])
    assert 0 < expected.sum() < len(ev)  # the stream exercises both outcomes
    outside = int(((ev["x"] < 0) | (ev["y"] >= SENSOR.height)).sum())
    assert f.stats.as_dict() == {
        "events_in": len(ev),
        "events_out": int(expected.sum()),
        "dropped": len(ev) - int(expected.sum()) - outside,
        "dropped_out_of_bounds": outside,
    }


def test_background_activity_is_not_supported_by_its_own_pixel():
    ev = make_events([100_000, 100_010, 100_020], [5, 5, 6], [5, 5, 5], [1, 1, 1])
    f = BackgroundActivityFilter(SENSOR, dt_us=2_000)
    assert f(ev)["t"].tolist() == [100_020]  # only the third one has a (neighbouring) supporter
    f.reset()
    assert len(f(ev[2:])) == 0


def test_background_activity_matches_dv_processing():
    dv = pytest.importorskip("dv_processing", reason="dv-processing not installed")
    resolution = (32, 24)
    # Start after dt: dv-processing's time map starts at 0 (ours at "never"); beyond dt both agree.
    store = dv.data.generate.uniformEventsWithinTimeRange(100_000, timedelta(milliseconds=200), resolution, 20_000, 7)
    theirs = dv.noise.BackgroundActivityNoiseFilter(resolution, backgroundActivityDuration=timedelta(microseconds=700))
    theirs.accept(store)
    expected = theirs.generateEvents().numpy()
    ours = BackgroundActivityFilter(SensorSize(*resolution), dt_us=700)
    ev = store.numpy()
    kept = concatenate([ours(part) for part in chunks(ev, [5_000, 12_345])])
    assert 0 < len(expected) < len(ev)
    np.testing.assert_array_equal(kept["t"], expected["timestamp"])
    np.testing.assert_array_equal(kept["x"], expected["x"])
    np.testing.assert_array_equal(kept["y"], expected["y"])
    np.testing.assert_array_equal(kept["p"], expected["polarity"])


def test_refractory_equals_reference_across_chunks():
    ev = random_events(4_000, SensorSize(5, 4), duration_us=200_000, seed=3)
    ev["x"][::101] = 99
    f = RefractoryFilter(SensorSize(5, 4), refractory_us=3_000)
    kept = concatenate([f(part) for part in chunks(ev, [10, 1_999, 2_000])])
    expected = refractory_reference(ev, SensorSize(5, 4), 3_000)
    np.testing.assert_array_equal(kept, ev[expected])
    assert 0 < expected.sum() < len(ev)
    # No pixel keeps two events closer than the period.
    for x in range(5):
        for y in range(4):
            t = kept["t"][(kept["x"] == x) & (kept["y"] == y)]
            assert (np.diff(t) >= 3_000).all()
    assert f.stats.dropped_out_of_bounds == len(ev[::101])


def test_refractory_continuous_pixel_passes_one_event_per_period():
    t = np.arange(0, 10_000, 100)
    ev = make_events(t, np.zeros_like(t), np.zeros_like(t), np.ones_like(t))
    kept = RefractoryFilter(SENSOR, refractory_us=1_000)(ev)
    assert kept["t"].tolist() == list(range(0, 10_000, 1_000))


def test_hot_pixel_mask_learns_and_applies():
    sensor = SensorSize(20, 15)
    background = random_events(6_000, sensor, seed=4)  # ~20 events per pixel
    hot_pixels = [(3, 4), (17, 0)]
    rng = np.random.default_rng(5)
    hot_events = make_events(
        np.sort(rng.integers(0, 1_000_000, 800)),
        [hot_pixels[i % 2][0] for i in range(800)],
        [hot_pixels[i % 2][1] for i in range(800)],
        np.ones(800),
    )
    stream = np.concatenate([background, hot_events]).astype(EVENT_DTYPE)
    stream = stream[np.argsort(stream["t"], kind="stable")]
    mask = HotPixelMask.learn(stream, sensor, sigma=5)
    assert sorted(map(tuple, mask.pixels.tolist())) == sorted(hot_pixels)
    kept = mask.apply(stream)
    on_hot = np.zeros(len(stream), dtype=bool)
    for x, y in hot_pixels:
        on_hot |= (stream["x"] == x) & (stream["y"] == y)
    np.testing.assert_array_equal(kept, stream[~on_hot])
    assert mask.stats.dropped == on_hot.sum()


def test_hot_pixel_mask_on_a_sparse_stream_marks_nothing():
    sensor = SensorSize(64, 48)
    sparse = random_events(300, sensor, seed=6)  # most pixels fire 0 times: MAD = 0
    assert len(HotPixelMask.learn(sparse, sensor).pixels) == 0


def test_filters_reject_bad_input():
    with pytest.raises(EventFormatError):
        BackgroundActivityFilter(SENSOR)(np.zeros(4))
    with pytest.raises(ConfigError, match="dt_us"):
        BackgroundActivityFilter(SENSOR, dt_us=0)
    with pytest.raises(ConfigError, match="refractory_us"):
        RefractoryFilter(SENSOR, refractory_us=-1)
    with pytest.raises(ConfigError, match="mask shape"):
        HotPixelMask(SENSOR, np.zeros((SENSOR.width, SENSOR.height), dtype=bool))
    f = RefractoryFilter(SENSOR, refractory_us=10)
    assert len(f(np.zeros(0, dtype=EVENT_DTYPE))) == 0 and f.stats.events_in == 0


def test_background_activity_matches_dv_processing_on_a_real_recording(shared_data):
    dv = pytest.importorskip("dv_processing", reason="dv-processing not installed")
    path = shared_data / "davis346_aestream_sample.aedat4"
    recording = dv.io.MonoCameraRecording(str(path))
    theirs = dv.noise.BackgroundActivityNoiseFilter(recording.getEventResolution(), timedelta(microseconds=2_000))
    ours = BackgroundActivityFilter(SensorSize(*recording.getEventResolution()), dt_us=2_000)
    kept_theirs, kept_ours = [], []
    while (batch := recording.getNextEventBatch()) is not None:  # the file's own packets as chunks
        theirs.accept(batch)
        kept_theirs.append(theirs.generateEvents().numpy())
        kept_ours.append(ours(batch.numpy()))
    expected = np.concatenate(kept_theirs)
    kept = concatenate(kept_ours)
    assert 0 < len(kept) < ours.stats.events_in
    np.testing.assert_array_equal(kept["t"], expected["timestamp"])
    np.testing.assert_array_equal(kept["x"], expected["x"])
    np.testing.assert_array_equal(kept["y"], expected["y"])
