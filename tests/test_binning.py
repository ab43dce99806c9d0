"""Binning: frames against independent references (np.add.at, tonic ToFrame, spikingjelly's
count split), chunking invariance of the online Binner, geometry, and every documented time fault."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from evstream.binning import (
    Binner,
    Geometry,
    Window,
    bin_events,
    bin_events_by_count,
    warmup,
)
from evstream.errors import ConfigError, EventFormatError
from evstream.events import EVENT_DTYPE, EventChunk, SensorSize, make_events
from tests.helpers import random_events

SENSOR = SensorSize(40, 30)


def reference_frames(ev, t_start, step_us, steps, sensor, merge=False):
    """Plain numpy binning: np.add.at over the events inside the sensor and the time span."""
    frames = np.zeros((steps, 1 if merge else 2, sensor.height, sensor.width), dtype=np.int64)
    t = ev["t"].astype(np.int64)
    x = ev["x"].astype(np.int64)
    y = ev["y"].astype(np.int64)
    keep = (t >= t_start) & (t < t_start + steps * step_us) & (x >= 0) & (x < sensor.width) & (y >= 0) & (y < sensor.height)
    s = (t[keep] - t_start) // step_us
    c = np.zeros(keep.sum(), dtype=np.int64) if merge else (ev["p"][keep] != 0).astype(np.int64)
    np.add.at(frames, (s, c, y[keep], x[keep]), 1)
    return frames


def push_all(binner, parts):
    windows = []
    for part in parts:
        windows += binner.push(part)
    return windows


def split_at(ev, cuts):
    cuts = sorted(set(int(c) for c in cuts))
    return np.split(ev, cuts)


# --- one-shot binning -----------------------------------------------------------------------


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("sort", [True, False])
def test_bin_events_equals_add_at(parallel, sort):
    ev = random_events(20_000, SENSOR, t0=500, duration_us=100_000, seed=3, sort=sort)
    got = bin_events(ev, 1_000, 7_000, 12, Geometry(SENSOR), parallel=parallel)
    assert got.shape == (12, 2, 30, 40) and got.dtype == np.float32
    np.testing.assert_array_equal(got, reference_frames(ev, 1_000, 7_000, 12, SENSOR))


def test_bin_events_parallel_large_input_paths():
    """Above the parallel threshold: one thread per step, and a single huge step split over threads."""
    sensor = SensorSize(64, 48)
    ev = random_events(300_000, sensor, duration_us=100_000, seed=4)
    many = bin_events(ev, 0, 10_000, 10, sensor)
    np.testing.assert_array_equal(many, reference_frames(ev, 0, 10_000, 10, sensor))
    one = bin_events(ev, 0, 100_000, 1, sensor, parallel=True)
    np.testing.assert_array_equal(one, reference_frames(ev, 0, 100_000, 1, sensor))
    np.testing.assert_array_equal(one, bin_events(ev, 0, 100_000, 1, sensor, parallel=False))


@pytest.mark.parametrize("where", [0, -1, 150_000])
def test_parallel_binning_detects_an_event_out_of_place(where):
    """One in-span event moved before the span, after it, or into another step: still exact."""
    sensor = SensorSize(16, 8)
    ev = random_events(300_000, sensor, duration_us=300_000, seed=21)
    ev["t"][where] = 150_123 if where != 150_000 else 250_000
    got = bin_events(ev, 100_000, 1_000, 100, sensor, parallel=True)
    np.testing.assert_array_equal(got, reference_frames(ev, 100_000, 1_000, 100, sensor))


def test_bin_events_matches_tonic_to_frame():
    tonic = pytest.importorskip("tonic")
    ev = random_events(30_000, SENSOR, t0=12_345, duration_us=200_000, seed=5)
    t0 = int(ev["t"][0])
    # Same edges: tonic slices from start_time; with end_time = t0 + T * step it makes exactly T frames.
    to_frame = tonic.transforms.ToFrame(sensor_size=SENSOR.tonic, time_window=10_000, start_time=t0, end_time=t0 + 15 * 10_000)
    expected = to_frame(ev.copy())
    got = bin_events(ev, t0, 10_000, 15, SENSOR, dtype=np.int16)
    assert expected.shape == got.shape
    np.testing.assert_array_equal(got, expected)


def test_binner_matches_tonic_anchored_at_first_event():
    """tonic anchors bins at the first event and keeps only complete windows: so does the Binner by default."""
    tonic = pytest.importorskip("tonic")
    ev = random_events(30_000, SENSOR, t0=7_000, duration_us=250_000, seed=6)
    expected = tonic.transforms.ToFrame(sensor_size=SENSOR.tonic, time_window=10_000)(ev.copy())
    binner = Binner(SENSOR, step_us=10_000, steps=1, dtype=np.int16)
    windows = push_all(binner, split_at(ev, [1_000, 1_001, 17_000]))
    got = np.concatenate([w.frames for w in windows])
    np.testing.assert_array_equal(got, expected)


def test_merge_polarity_and_clip():
    ev = random_events(5_000, SensorSize(6, 5), duration_us=40_000, seed=7)
    merged = bin_events(ev, 0, 10_000, 4, SensorSize(6, 5), merge_polarity=True)
    assert merged.shape == (4, 1, 5, 6)
    np.testing.assert_array_equal(merged, reference_frames(ev, 0, 10_000, 4, SensorSize(6, 5), merge=True))
    clipped = bin_events(ev, 0, 10_000, 4, SensorSize(6, 5), dtype=np.uint8, clip=3)
    assert clipped.dtype == np.uint8
    np.testing.assert_array_equal(clipped, np.minimum(reference_frames(ev, 0, 10_000, 4, SensorSize(6, 5)), 3))
    # Saturating: 300 events on one pixel in uint8 with clip 255 stay at 255 instead of wrapping to 44.
    hot = make_events(np.arange(300), np.zeros(300), np.zeros(300), np.ones(300))
    assert bin_events(hot, 0, 1_000, 1, SensorSize(6, 5), dtype=np.uint8, clip=255)[0, 1, 0, 0] == 255


def test_bin_events_by_count_equals_spikingjelly_split():
    ev = random_events(10_007, SENSOR, seed=8)
    steps = 16
    got = bin_events_by_count(ev, steps, SENSOR)
    # spikingjelly split_by='number': j_l = j * (N // T), j_r = j_l + N // T, last j_r = N.
    n = len(ev)
    expected = np.zeros_like(got, dtype=np.int64)
    for j in range(steps):
        lo = j * (n // steps)
        hi = n if j == steps - 1 else lo + n // steps
        part = ev[lo:hi]
        np.add.at(expected[j], ((part["p"] != 0).astype(int), part["y"].astype(int), part["x"].astype(int)), 1)
    np.testing.assert_array_equal(got, expected)
    assert got[:-1].sum(axis=(1, 2, 3)).tolist() == [n // steps] * (steps - 1)
    assert got[-1].sum() == n - (steps - 1) * (n // steps)


# --- geometry -------------------------------------------------------------------------------


def full_sensor_image(sensor):
    """One ON event per sensor pixel."""
    yy, xx = np.mgrid[0:sensor.height, 0:sensor.width]
    n = xx.size
    return make_events(np.zeros(n, np.int64), xx.ravel(), yy.ravel(), np.ones(n))


def test_geometry_area_crop_vga_to_128():
    sensor = SensorSize(640, 480)
    geometry = Geometry(sensor, (128, 128))
    frame = bin_events(full_sensor_image(sensor), 0, 1, 1, geometry)[0, 1]
    # Centre 480 x 480 kept: 80 columns cut on each side, every kept pixel counted exactly once.
    assert frame.sum() == 480 * 480
    assert (geometry.lut_x[:80] == -1).all() and (geometry.lut_x[560:] == -1).all() and (geometry.lut_x[80:560] >= 0).all()
    # 480 pixels on 128: each output pixel gathers 3 or 4 sensor pixels per axis.
    assert set(np.unique(frame).tolist()) <= {9.0, 12.0, 16.0}
    assert np.all(np.diff(geometry.lut_x[80:560]) >= 0)


def test_geometry_integer_crop_and_letterbox():
    sensor = SensorSize(640, 480)
    crop = Geometry(sensor, (128, 128), downsample="integer")
    frame = bin_events(full_sensor_image(sensor), 0, 1, 1, crop)[0, 1]
    assert (frame == 9).all()  # k = 3: every output pixel sums exactly 3 x 3 sensor pixels
    box = Geometry(sensor, (128, 128), mode="letterbox", downsample="integer")
    frame = bin_events(full_sensor_image(sensor), 0, 1, 1, box)[0, 1]
    assert frame.sum() == 640 * 480  # letterbox keeps everything
    assert (frame[16:112] == 25).all() and (frame[:16] == 0).all() and (frame[112:] == 0).all()


@pytest.mark.parametrize("out", [(128, 128), (100, 30), (30, 100), (640, 480), (700, 500)])
def test_geometry_area_letterbox_keeps_every_event(out):
    sensor = SensorSize(640, 480)
    geometry = Geometry(sensor, out, mode="letterbox")
    assert geometry.out_size == SensorSize(*out)
    assert (geometry.lut_x >= 0).all() and (geometry.lut_y >= 0).all()
    assert geometry.lut_x.max() < out[0] and geometry.lut_y.max() < out[1]
    frame = bin_events(full_sensor_image(sensor), 0, 1, 1, geometry)[0, 1]
    assert frame.sum() == 640 * 480


@settings(max_examples=60, deadline=None)
@given(
    sw=st.integers(1, 700), sh=st.integers(1, 500), ow=st.integers(1, 300), oh=st.integers(1, 300),
    mode=st.sampled_from(["crop", "letterbox"]), downsample=st.sampled_from(["area", "integer"]),
)
def test_geometry_tables_are_monotonic_in_range_and_centred(sw, sh, ow, oh, mode, downsample):
    if downsample == "integer" and mode == "crop" and (sw < ow or sh < oh):
        with pytest.raises(ConfigError):
            Geometry(SensorSize(sw, sh), (ow, oh), mode=mode, downsample=downsample)
        return
    g = Geometry(SensorSize(sw, sh), (ow, oh), mode=mode, downsample=downsample)
    for lut, n_out in ((g.lut_x, ow), (g.lut_y, oh)):
        kept = lut[lut >= 0]
        assert len(kept) > 0 and kept.max() < n_out
        assert np.all(np.diff(kept) >= 0)  # order preserved: no pixel lands left of its left neighbour
        first, last = np.flatnonzero(lut >= 0)[[0, -1]]
        assert np.all(lut[first:last + 1] >= 0)  # the kept span is one contiguous block
        assert abs(first - (len(lut) - 1 - last)) <= 1  # centred on the sensor (crop)
        if ow <= sw and oh <= sh:  # (upsampling by floor leaves holes, the last one at the end)
            assert abs(kept.min() - (n_out - 1 - kept.max())) <= 1  # centred in the output (letterbox bands)
    if mode == "letterbox":
        assert (g.lut_x >= 0).all() and (g.lut_y >= 0).all()
    elif ow <= sw and oh <= sh:  # a downsampling crop fills the whole output
        assert g.lut_x.max() == ow - 1 and g.lut_y.max() == oh - 1


def test_geometry_flips_mirror_the_output():
    ev = random_events(3_000, SensorSize(64, 48), seed=9)
    base = bin_events(ev, 0, 100_000, 10, Geometry(SensorSize(64, 48), (20, 16)))
    fx = bin_events(ev, 0, 100_000, 10, Geometry(SensorSize(64, 48), (20, 16), flip_x=True))
    fxy = bin_events(ev, 0, 100_000, 10, Geometry(SensorSize(64, 48), (20, 16), flip_x=True, flip_y=True))
    np.testing.assert_array_equal(fx, base[..., ::-1])
    np.testing.assert_array_equal(fxy, base[..., ::-1, ::-1])


def test_geometry_roi_equals_shifted_subsensor():
    sensor = SensorSize(64, 48)
    ev = random_events(5_000, sensor, seed=10)
    got = bin_events(ev, 0, 1_000_000, 1, Geometry(sensor, roi=(10, 5, 30, 20)))
    assert got.shape == (1, 2, 20, 30)
    inside = (ev["x"] >= 10) & (ev["x"] < 40) & (ev["y"] >= 5) & (ev["y"] < 25)
    shifted = ev[inside].copy()
    shifted["x"] -= 10
    shifted["y"] -= 5
    np.testing.assert_array_equal(got, reference_frames(shifted, 0, 1_000_000, 1, SensorSize(30, 20)))


def test_geometry_rejects_bad_options():
    with pytest.raises(ConfigError, match="roi"):
        Geometry(SENSOR, roi=(30, 0, 20, 10))
    with pytest.raises(ConfigError, match="integer"):
        Geometry(SENSOR, (80, 80), downsample="integer")
    with pytest.raises(ConfigError, match="mode"):
        Geometry(SENSOR, mode="stretch")
    with pytest.raises(ConfigError, match="fit="):
        Binner(SENSOR, mode="letterbox")
    with pytest.raises(ConfigError, match="out_size"):
        Geometry(SENSOR, (0, 10))
    with pytest.raises(ConfigError, match="dtype"):
        bin_events(random_events(5, SENSOR), 0, 1, 1, SENSOR, dtype=np.float16)
    with pytest.raises(ConfigError, match="events_per_step"):
        Binner(SENSOR, mode="count")


# --- the online Binner ----------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 3_000),
    seed=st.integers(0, 2**16),
    step_us=st.integers(300, 5_000),  # at most 200 steps over the 60 ms stream: small references
    steps=st.integers(1, 6),
    hop=st.integers(1, 6),
    cuts=st.lists(st.integers(0, 3_000), max_size=8),
)
def test_chunking_never_changes_windows(n, seed, step_us, steps, hop, cuts):
    ev = random_events(n, SENSOR, t0=1_000, duration_us=60_000, seed=seed)
    binner = Binner(SENSOR, step_us=step_us, steps=steps, hop_steps=hop)
    windows = push_all(binner, split_at(ev, [c for c in cuts if c <= n]))
    if n == 0:
        assert windows == [] and binner.t0 is None
        return
    t0 = int(ev["t"][0])
    complete_steps = (int(ev["t"][-1]) - t0) // step_us
    expected_count = 0 if complete_steps < steps else (complete_steps - steps) // hop + 1
    assert len(windows) == expected_count
    reference = reference_frames(ev, t0, step_us, max(complete_steps, 1), SENSOR)
    for k, w in enumerate(windows):
        assert w.index == k
        assert w.t_start == t0 + k * hop * step_us and w.t_end == w.t_start + steps * step_us
        assert w.frames.flags.c_contiguous and w.frames.shape == (steps, 2, 30, 40)
        np.testing.assert_array_equal(w.frames, reference[k * hop:k * hop + steps])
        np.testing.assert_array_equal(w.counts, reference[k * hop:k * hop + steps].sum(axis=(1, 2, 3)))
    assert binner.stats.events_in == n and binner.stats.windows == len(windows)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 2_000), seed=st.integers(0, 2**16), cuts=st.lists(st.integers(1, 2_000), max_size=6))
def test_chunks_with_t_end_and_final_flush_close_every_step(n, seed, cuts):
    ev = random_events(n, SENSOR, t0=3_000, duration_us=50_000, seed=seed)
    parts = split_at(ev, [c for c in cuts if c < n])
    binner = Binner(SENSOR, step_us=1_000, steps=3, hop_steps=2)
    windows = []
    for i, part in enumerate(parts):
        t_start = int(part["t"][0]) if len(part) else int(ev["t"][0])
        later = [p for p in parts[i + 1:] if len(p)]
        t_end = int(later[0]["t"][0]) if later else int(ev["t"][-1]) + 1
        windows += binner.push(EventChunk(part, t_start, t_end))
    t0 = int(ev["t"][0])
    now = int(ev["t"][-1]) + 7_000
    windows += binner.flush(now)
    closed = (now - t0) // 1_000
    assert len(windows) == (closed - 3) // 2 + 1
    reference = reference_frames(ev, t0, 1_000, closed, SENSOR)
    for k, w in enumerate(windows):
        np.testing.assert_array_equal(w.frames, reference[2 * k:2 * k + 3])
    assert sum(int(w.counts[:2].sum()) for w in windows) + int(windows[-1].counts[2]) == n


def test_windows_own_their_memory_and_tensor_is_zero_copy():
    torch = pytest.importorskip("torch")
    ev = random_events(2_000, SENSOR, duration_us=100_000, seed=11)
    windows = Binner(SENSOR, step_us=5_000, steps=4, hop_steps=2).push(ev)
    assert len(windows) >= 2
    a, b = windows[0], windows[1]
    before = b.frames.copy()
    a.frames[2:] = -1  # overlapping steps must not be shared between windows
    np.testing.assert_array_equal(b.frames, before)
    tensor = b.tensor()
    assert isinstance(b, Window) and tensor.shape == (4, 2, 30, 40) and tensor.dtype == torch.float32
    tensor[0, 0, 0, 0] = 123.0
    assert b.frames[0, 0, 0, 0] == 123.0


def test_flush_on_a_still_scene_emits_empty_windows_with_times():
    binner = Binner(SENSOR, step_us=10_000, steps=2)
    ev = make_events([1_000, 5_000, 12_000], [1, 2, 3], [1, 1, 1], [1, 0, 1])
    assert binner.push(ev) == []
    first = binner.flush(21_000)  # step 1 ends at 21_000: window 0 complete
    assert [(w.t_start, w.t_end) for w in first] == [(1_000, 21_000)]
    assert first[0].counts.tolist() == [2, 1]
    assert binner.flush(21_000) == []
    later = binner.flush(101_000)
    assert [(w.t_start, w.t_end, w.index) for w in later] == [(21_000 + 20_000 * k, 41_000 + 20_000 * k, k + 1) for k in range(4)]
    assert all(w.frames.sum() == 0 and w.counts.sum() == 0 for w in later)


def test_chunk_t_start_anchors_and_t_end_closes_steps():
    binner = Binner(SENSOR, step_us=10_000, steps=1)
    ev = make_events([15_000, 25_000], [0, 0], [0, 0], [1, 1])
    windows = binner.push(EventChunk(ev, 10_000, 40_000))
    assert binner.t0 == 10_000
    assert [(w.t_start, int(w.frames.sum())) for w in windows] == [(10_000, 1), (20_000, 1), (30_000, 0)]
    windows = binner.push(EventChunk(ev[:0], 40_000, 60_000))
    assert [w.t_start for w in windows] == [40_000, 50_000]


def test_explicit_t0_and_events_before_it_are_late():
    binner = Binner(SENSOR, step_us=1_000, steps=1, t0=10_000)
    windows = binner.push(make_events([9_000, 10_500, 11_200], [0, 0, 0], [0, 0, 0], [1, 1, 1]))
    assert binner.stats.dropped_late == 1
    assert [(w.t_start, int(w.frames.sum())) for w in windows] == [(10_000, 1)]


@pytest.mark.parametrize("hop", [3, 4, 6])
def test_count_mode_steps_hold_fixed_event_counts_across_chunks(hop):
    n_steps = 2 * hop + 4  # exactly three windows
    ev = random_events(300 * n_steps, SENSOR, seed=12)
    binner = Binner(SENSOR, steps=4, mode="count", events_per_step=300, hop_steps=hop)
    windows = push_all(binner, split_at(ev, [7, 299, 300, 1_234, 3_000]))
    assert len(windows) == 3
    for k, w in enumerate(windows):
        first = k * hop * 300
        part = ev[first:first + 4 * 300]
        assert w.step_us == 0 and w.counts.tolist() == [300] * 4
        assert (w.t_start, w.t_end) == (int(part["t"][0]), int(part["t"][-1]) + 1)
        expected = bin_events_by_count(part, 4, SENSOR)
        np.testing.assert_array_equal(w.frames, expected)
    covered = {k * hop + j for k in range(3) for j in range(4)}
    stats = binner.stats
    assert stats.dropped_between_windows == 300 * (n_steps - len(covered))  # hop > steps leaves gaps
    assert stats.events_binned == 300 * len(covered)
    assert stats.events_in == stats.events_binned + stats.dropped_between_windows


def test_disorder_sort_drop_raise():
    ev = random_events(3_000, SENSOR, duration_us=100_000, seed=13)
    rng = np.random.default_rng(0)
    shuffled = ev.copy()
    shuffled[1_000:2_000] = shuffled[1_000:2_000][rng.permutation(1_000)]

    sorting = Binner(SENSOR, step_us=5_000, steps=2)
    expected = np.concatenate([w.frames for w in Binner(SENSOR, step_us=5_000, steps=2).push(ev)])
    got = np.concatenate([w.frames for w in sorting.push(shuffled)])
    np.testing.assert_array_equal(got, expected)
    assert sorting.stats.sorted_chunks == 1

    dropping = Binner(SENSOR, step_us=5_000, steps=2, on_disorder="drop")
    dropping.push(shuffled)
    t = shuffled["t"]
    assert dropping.stats.dropped_disorder == int((t < np.maximum.accumulate(t)).sum()) > 0

    raising = Binner(SENSOR, step_us=5_000, steps=2, on_disorder="raise")
    done = raising.push(ev[:1_000])
    with pytest.raises(EventFormatError, match="'t' goes backwards at index"):
        raising.push(shuffled[1_000:])
    assert raising.stats.dropped_late == 0 and raising.stats.dropped_disorder == len(shuffled) - 1_000
    # Nothing completed before the fault is lost, and the stream goes on.
    more = raising.push(ev[2_000:])
    assert [w.index for w in done + more] == list(range(len(done) + len(more)))


def test_late_events_across_chunks_are_dropped_and_counted():
    binner = Binner(SENSOR, step_us=1_000, steps=1)
    binner.push(make_events([0, 3_500], [0, 0], [0, 0], [1, 1]))  # steps 0..2 closed, step 3 open
    windows = binner.push(make_events([2_999, 3_100, 3_400, 4_200], [1, 2, 3, 4], [0, 0, 0, 0], [1, 1, 1, 1]))
    assert binner.stats.dropped_late == 1
    assert [int(w.frames.sum()) for w in windows] == [3]  # step 3: the 3 500 event and two older ones of the open step


def test_backwards_jump_is_a_timestamp_reset():
    binner = Binner(SENSOR, step_us=10_000, steps=1)
    binner.push(make_events([5_000_000, 5_015_000], [0, 0], [0, 0], [1, 1]))
    windows = binner.push(make_events([100, 20_200], [1, 1], [1, 1], [0, 0]))
    assert binner.stats.time_resets == 1 and binner.t0 == 100
    assert [(w.t_start, int(w.frames.sum())) for w in windows] == [(100, 1), (10_100, 0)]


def test_forward_gap_beyond_max_gap_re_anchors_instead_of_flooding():
    binner = Binner(SENSOR, step_us=1_000, steps=4, max_gap_us=50_000)
    windows = binner.push(make_events([0, 1_000, 10_000_000, 10_001_500], [0] * 4, [0] * 4, [1] * 4))
    assert binner.stats.time_resets == 1 and binner.t0 == 10_000_000
    assert windows == []
    assert len(binner.flush(10_004_000)) == 1
    assert len(binner.flush(10_000_000_000)) == 0 and binner.stats.time_resets == 2


def test_out_of_sensor_events_are_counted_never_written():
    sensor = SensorSize(8, 6)
    ev = make_events([0, 1, 2, 3, 4, 5], [-1, 8, 3, 3, 32767, 7], [0, 0, -5, 6, 0, 5], [1, 1, 0, 0, 1, 1])
    binner = Binner(sensor, step_us=10, steps=1)
    windows = binner.push(ev) + binner.flush(10)
    assert binner.stats.dropped_out_of_bounds == 5 and binner.stats.events_binned == 1
    assert windows[0].frames[0, 1, 5, 7] == 1 and windows[0].frames.sum() == 1
    frames = bin_events(ev, 0, 10, 1, sensor)
    assert frames.sum() == 1


def test_cropped_events_are_counted():
    sensor = SensorSize(60, 30)
    binner = Binner(sensor, (30, 30), step_us=100, steps=1)  # crop keeps columns 15..44
    ev = make_events([0, 1, 2, 3], [0, 14, 15, 44], [0, 0, 0, 29], [1, 1, 1, 1])
    windows = binner.push(ev) + binner.flush(100)
    assert binner.stats.dropped_outside_geometry == 2 and binner.stats.events_binned == 2
    assert windows[0].counts.tolist() == [2]


@pytest.mark.parametrize("hop", [None, 2, 7])
def test_every_event_is_accounted_for(hop):
    ev = random_events(20_000, SensorSize(64, 48), duration_us=300_000, seed=14)
    ev["x"][::97] = 100  # outside the sensor
    binner = Binner(SensorSize(64, 48), (32, 32), step_us=3_000, steps=5, hop_steps=hop)
    windows = push_all(binner, split_at(ev, [5_000, 12_000]))
    windows += binner.flush(int(ev["t"][-1]) + 50 * 3_000)  # past the last event's window
    s = binner.stats
    step_counts = {w.index * (hop or 5) + j: int(c) for w in windows for j, c in enumerate(w.counts)}
    assert sum(step_counts.values()) == s.events_binned
    assert s.events_in == (
        s.events_binned + s.dropped_out_of_bounds + s.dropped_outside_geometry + s.dropped_late + s.dropped_between_windows
    )
    assert s.dropped_out_of_bounds == len(ev[::97])
    assert (s.dropped_between_windows > 0) == (hop == 7)


def test_wrong_dtype_raises_event_format_error_and_changes_nothing():
    binner = Binner(SENSOR)
    with pytest.raises(EventFormatError):
        binner.push(np.zeros((10, 4)))
    bad = np.zeros(3, dtype=[("t", "f8"), ("x", "i2"), ("y", "i2"), ("p", "u1")])
    with pytest.raises(EventFormatError, match="'t'"):
        binner.push(bad)
    with pytest.raises(EventFormatError, match="'p'"):
        bin_events(np.zeros(3, dtype=[("t", "i8"), ("x", "i2"), ("y", "i2")]), 0, 1, 1, SENSOR)
    assert binner.stats.events_in == 0 and binner.t0 is None
    # Other integer layouts (dv-processing's names) are converted, not rejected.
    dv_like = np.zeros(2, dtype=[("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1")])
    dv_like["timestamp"] = [0, 10_000]
    assert len(Binner(SENSOR, steps=1).push(dv_like)) == 1


def test_parallel_binner_equals_serial():
    sensor = SensorSize(64, 48)
    ev = random_events(400_000, sensor, duration_us=200_000, seed=15)
    parts = split_at(ev, [250_000])
    serial = push_all(Binner(sensor, step_us=10_000, steps=4, parallel=False), parts)
    par = push_all(Binner(sensor, step_us=10_000, steps=4, parallel=True), parts)
    auto = push_all(Binner(sensor, step_us=10_000, steps=4), parts)
    assert len(serial) == len(par) == len(auto) == 4
    for a, b, c in zip(serial, par, auto, strict=True):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.frames, c.frames)


def _halves_available(binner) -> bool:
    return binner._scratch.size > 0


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
@pytest.mark.parametrize("parallel", [None, True])
def test_a_dense_chunk_binned_in_halves_equals_the_reference(parallel, dtype, monkeypatch):
    """One 10 ms step per push with more events than SPLIT_MIN_EVENTS, binned in two halves on two
    threads (the second half into a scratch frame, then added): frames, counts and tallies equal
    the reference; integer frames wrap as serial adds do; the scratch frame is zero again after."""
    from evstream.binning import _flat, online
    from evstream.binning.online import SPLIT_MIN_EVENTS

    calls = []
    halves = _flat.bin_step_flat_rows_halves
    monkeypatch.setattr(_flat, "bin_step_flat_rows_halves", lambda *a: calls.append(a[1]) or halves(*a))
    if parallel is None:
        monkeypatch.setattr(online.Binner, "_split_pays", lambda self: True)
    sensor = SensorSize(64, 48)
    ev = random_events(3 * (SPLIT_MIN_EVENTS + 10_000), sensor, duration_us=30_000, seed=17)
    ev["x"][::97] = 200  # some outside the sensor
    binner = Binner(sensor, step_us=10_000, steps=1, dtype=dtype, parallel=parallel, t0=0)
    if not _halves_available(binner):
        pytest.skip("one core or one numba thread: dense steps are never split")
    bounds = np.searchsorted(ev["t"], [0, 10_000, 20_000, 30_000])
    windows = push_all(binner, [EventChunk(ev[a:b], t, t + 10_000) for a, b, t in zip(
        bounds[:-1], bounds[1:], (0, 10_000, 20_000), strict=True)])
    reference = reference_frames(ev, 0, 10_000, 3, sensor)
    assert len(windows) == 3 and len(calls) == 3  # every step went in halves
    for k, w in enumerate(windows):
        np.testing.assert_array_equal(w.frames, reference[k:k + 1].astype(dtype))
        assert w.counts[0] == reference[k].sum()
    assert binner.stats.events_binned == reference.sum()
    assert binner.stats.dropped_out_of_bounds == len(ev[::97])
    assert not binner._scratch.any()


@pytest.mark.parametrize("halves_cost", [10.0, 0.1])
def test_dense_pushes_go_the_way_that_measured_faster(halves_cost, monkeypatch):
    """With parallel=None the Binner times both ways of binning a dense step and keeps to the
    faster: when halves are 10x slower (a second core busy), 300 dense pushes try them only 4
    times (the 2nd push, then 8, 32 and 128 pushes after each losing try); when 10x faster,
    nearly every push uses them. A fake clock stands in for the machine's load; the frames are exact either way."""
    from evstream.binning import _flat, online

    clock = [0.0]
    monkeypatch.setattr(online.time, "perf_counter", lambda: clock[0])
    calls = {"halves": 0, "serial": 0}
    halves, serial = _flat.bin_step_flat_rows_halves, _flat.bin_steps_flat_rows

    def timed(kind, kernel, cost):
        def run(*args):
            calls[kind] += 1
            clock[0] += cost
            return kernel(*args)
        return run

    monkeypatch.setattr(_flat, "bin_step_flat_rows_halves", timed("halves", halves, halves_cost))
    monkeypatch.setattr(_flat, "bin_steps_flat_rows", timed("serial", serial, 1.0))
    sensor = SensorSize(32, 24)
    binner = Binner(sensor, step_us=1_000, steps=1, t0=0)
    if not _halves_available(binner):
        pytest.skip("one core or one numba thread: dense steps are never split")
    binner._split_min = 500  # tiny dense steps keep the test quick
    ev = random_events(300 * 600, sensor, duration_us=300_000, seed=3)
    bounds = np.searchsorted(ev["t"], np.arange(0, 300_001, 1_000))
    windows = push_all(binner, [EventChunk(ev[a:b], t, t + 1_000) for a, b, t in zip(
        bounds[:-1], bounds[1:], range(0, 300_000, 1_000), strict=True)])
    assert len(windows) == 300
    if halves_cost > 1:
        assert calls["halves"] == 4  # pushes 2, 10, 42 and 170
    else:
        assert calls["halves"] >= 295 and calls["serial"] <= 5  # pushes 1, 4, 12, 44 and 172
    reference = reference_frames(ev, 0, 1_000, 300, sensor)
    np.testing.assert_array_equal(np.concatenate([w.frames for w in windows]), reference.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
@pytest.mark.parametrize("merge", [False, True])
@pytest.mark.parametrize("layout", ["rows", "strided", "one chunk"])
def test_flat_index_kernels_equal_the_mapped_reference(layout, merge, dtype):
    """The Binner's flat-index kernels (events as uint16 rows, field views of a strided chunk, one
    thread per step for a big push) bin exactly what Geometry.map says, count every event outside
    the sensor or the crop in its own bucket, and treat every polarity byte but 0 as ON."""
    sensor = SensorSize(64, 48)
    # Columns outside the roi and rows outside the 2:1 centre crop are dropped: some events on both axes.
    geometry = Geometry(sensor, SensorSize(24, 12), roi=(2, 0, 60, 48), flip_y=True)
    rng = np.random.default_rng(31)
    n = 240_000
    ev = np.zeros(2 * n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 80_000, size=2 * n))
    ev["x"] = rng.integers(-3, 70, size=2 * n)  # some off the sensor on either side
    ev["y"] = rng.integers(-2, 52, size=2 * n)
    ev["x"][::1009] = 32767
    ev["p"] = rng.integers(0, 256, size=2 * n)
    if layout == "strided":
        ev = ev[::2]  # not contiguous: the field-view kernel
        assert not ev.flags.c_contiguous
    else:
        ev = ev[:n].copy() if layout == "rows" else ev
    ox, oy = geometry.map(ev["x"], ev["y"])
    off = (ev["x"] < 0) | (ev["x"] >= 64) | (ev["y"] < 0) | (ev["y"] >= 48)
    kept = (ox >= 0) & (oy >= 0)
    assert ((ox < 0) & (oy < 0) & ~off).any()
    reference = np.zeros((8, 1 if merge else 2, 12, 24), dtype=np.int64)
    channel = np.zeros(kept.sum(), dtype=np.int64) if merge else (ev["p"][kept] != 0).astype(np.int64)
    np.add.at(reference, (ev["t"][kept] // 10_000, channel, oy[kept], ox[kept]), 1)
    binner = Binner(sensor, geometry=geometry, step_us=10_000, steps=4, dtype=dtype, merge_polarity=merge, t0=0,
                    parallel=True if layout == "one chunk" else False)
    if layout == "one chunk":
        windows = binner.push(EventChunk(ev, 0, 80_000))
    else:
        windows = push_all(binner, [EventChunk(ev[a:b], t, t + 5_000) for a, b, t in zip(
            np.searchsorted(ev["t"], np.arange(0, 80_000, 5_000)),
            np.searchsorted(ev["t"], np.arange(5_000, 80_001, 5_000)), range(0, 80_000, 5_000), strict=True)])
    assert len(windows) == 2
    np.testing.assert_array_equal(np.concatenate([w.frames for w in windows]), reference.astype(dtype))
    assert binner.stats.dropped_out_of_bounds == int(off.sum()) > 0
    assert binner.stats.dropped_outside_geometry == int((~kept & ~off).sum()) > 0
    assert binner.stats.events_binned == int(kept.sum())
    assert [int(c) for w in windows for c in w.counts] == reference.sum(axis=(1, 2, 3)).tolist()


@pytest.mark.parametrize("hop", [None, 2])
def test_reused_window_buffers_are_never_overwritten_while_a_consumer_holds_them(hop):
    """Window buffers come from a small pool: dropped windows' buffers are reused, but a Window,
    a view of its frames or a tensor sharing them keeps its buffer out of reuse."""
    torch = pytest.importorskip("torch")
    ev = random_events(30_000, SENSOR, t0=0, duration_us=600_000, seed=18)
    binner = Binner(SENSOR, step_us=1_000, steps=4, hop_steps=hop, t0=0)
    step = hop or 4
    reference = reference_frames(ev, 0, 1_000, 600, SENSOR).astype(np.float32)
    held = []  # (what keeps the buffer, the frames it must still show)
    emitted = 0
    for part in split_at(ev, range(500, 30_000, 500)):
        for w in binner.push(part):
            want = reference[w.index * step:w.index * step + 4]
            np.testing.assert_array_equal(w.frames, want)  # a reused buffer holds only this window
            if w.index % 5 == 0:
                held.append((w, want))
            elif w.index % 7 == 0:
                held.append((w.frames[1:3], want[1:3]))  # a view keeps its base
            elif w.index % 11 == 0:
                held.append((w.tensor(), want))  # torch keeps the array
            emitted += 1
            del w
    assert emitted > 100 and len(held) > 20
    for kept, want in held:
        got = kept.numpy() if isinstance(kept, torch.Tensor) else kept.frames if isinstance(kept, Window) else kept
        np.testing.assert_array_equal(got, want)
    # buffers were reused: at most a quarter of the windows let go of needed a new buffer
    assert binner.frame_buffers - len(held) < (emitted - len(held)) // 4


def test_readonly_events_and_warmup():
    ev = random_events(1_000, SENSOR, seed=16)
    view = np.frombuffer(ev.tobytes(), dtype=EVENT_DTYPE)  # zero-copy decode gives read-only arrays
    assert not view.flags.writeable
    warmup((np.float32, np.int16))
    got = push_all(Binner(SENSOR, step_us=50_000, steps=2, dtype=np.int16), [view])
    np.testing.assert_array_equal(np.concatenate([w.frames for w in got]), reference_frames(ev, int(ev["t"][0]), 50_000, 2 * len(got), SENSOR))



def test_binner_beside_a_parallel_model_thread_under_the_workqueue_layer():
    """numba's workqueue threading layer aborts the process when two threads launch parallel
    kernels at once. A dense-chunk Binner in one thread beside another thread's parallel kernels
    (as the pipeline's model thread runs the fused inference) must then bin serially: the process
    lives and the frames are exact."""
    import subprocess
    import sys

    code = """
import threading, numpy as np
from evstream import _kernels as K
from evstream.binning import Binner, bin_events, Geometry
from evstream.events import SensorSize
from tests.helpers import random_events
assert not K.threadsafe_parallel()
sensor = SensorSize(64, 48)
ev = random_events(600_000, sensor, duration_us=100_000, seed=5)
stop = threading.Event()
def other():
    a = np.zeros(1_000_000, dtype=np.int64)
    while not stop.is_set():
        K._start_threads(a)
worker = threading.Thread(target=other); worker.start()
try:
    binner = Binner(sensor, step_us=10_000, steps=1, t0=0, parallel=True)
    edges = np.searchsorted(ev["t"], np.arange(0, 100_001, 10_000))
    frames = [w.frames for a, b in zip(edges[:-1], edges[1:]) for w in binner.push(ev[a:b])]
    frames += [w.frames for w in binner.finish()]
finally:
    stop.set(); worker.join()
np.testing.assert_array_equal(np.concatenate(frames), bin_events(ev, 0, 10_000, 10, Geometry(sensor), parallel=False))
print("ok")
"""
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_warmup_compiles_every_kernel_a_live_binner_calls():
    """In a fresh process (nothing compiled yet), warmup leaves the live Binner's kernels compiled for
    the frame dtype asked, so the first dense push of a stream is not delayed by the JIT."""
    import subprocess
    import sys

    code = ("import numpy as np; from evstream.binning import warmup, _flat; warmup((np.float32,)); "
            "print([sorted({str(s[4].dtype) for s in k.signatures}) for k in (_flat.bin_steps_flat_rows, "
            "_flat.bin_steps_flat_rows_parallel, _flat.bin_step_flat_rows_halves)])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([["float32"]] * 3)


def test_real_recording_online_equals_one_shot_and_tonic(shared_data):
    """A real DVXplorer recording (0.59 s, 320x240), fed in 3 ms chunks with t_end, mapped to 128x128."""
    tonic = pytest.importorskip("tonic")
    from evstream import read_events

    ev = read_events(shared_data / "dvxplorer_320x240_tonic_sample.aedat4")
    sensor = SensorSize(320, 240)
    t0 = int(ev["t"][0])
    edges = np.arange(t0, int(ev["t"][-1]) + 3_000, 3_000)
    bounds = np.searchsorted(ev["t"], edges)
    binner = Binner(sensor, (128, 128), step_us=10_000, steps=16, hop_steps=8, dtype=np.int16)
    windows = []
    for k in range(len(edges) - 1):
        windows += binner.push(EventChunk(ev[bounds[k]:bounds[k + 1]], int(edges[k]), int(edges[k + 1])))
    assert len(windows) == (((int(edges[-1]) - t0) // 10_000) - 16) // 8 + 1
    geometry = Geometry(sensor, (128, 128))
    for w in windows:
        np.testing.assert_array_equal(w.frames, bin_events(ev, w.t_start, 10_000, 16, geometry, dtype=np.int16))
    # Same frames as tonic at sensor resolution: Binner anchored at the first event, as tonic is.
    plain = Binner(sensor, step_us=10_000, steps=1, dtype=np.int16)
    ours = np.concatenate([w.frames for w in plain.push(ev)])
    np.testing.assert_array_equal(ours, tonic.transforms.ToFrame(sensor_size=sensor.tonic, time_window=10_000)(ev.copy()))


@pytest.mark.parametrize("out", [(64, 64), None])
def test_real_dense_recording_in_halves_equals_one_shot(shared_data, out, monkeypatch):
    """The real Gen3 EVT 2.0 sample (5.4 Mev/s, 640x480) in 10 ms chunks: 52 k events per step,
    each step binned in two halves on two threads; frames equal one-shot binning, every event counted."""
    from evstream import read_events
    from evstream.binning import _flat

    ev = read_events(shared_data / "prophesee_gen3_evt2_faery_sample.raw")
    sensor = SensorSize(640, 480)
    calls = []
    halves = _flat.bin_step_flat_rows_halves
    monkeypatch.setattr(_flat, "bin_step_flat_rows_halves", lambda *a: calls.append(1) or halves(*a))
    t0 = int(ev["t"][0])
    binner = Binner(sensor, out, step_us=10_000, steps=1, t0=t0, parallel=True)
    if not _halves_available(binner):
        pytest.skip("one core or one numba thread: dense steps are never split")
    edges = np.searchsorted(ev["t"], t0 + np.arange(0, 100_001, 10_000))
    windows = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        windows += binner.push(ev[a:b])
    windows += binner.finish()
    got = np.concatenate([w.frames for w in windows])
    assert len(got) == 10 and len(calls) >= 10
    np.testing.assert_array_equal(got, bin_events(ev, t0, 10_000, 10, Geometry(sensor, out)))
    assert binner.stats.events_binned == got.sum()


def test_pixels_per_output_and_density_scale():
    from evstream.binning import density_scale

    dvs128 = Geometry(SensorSize(128, 128), (64, 64))
    dvxplorer = Geometry(SensorSize(640, 480), (64, 64))
    assert dvs128.pixels_per_output == 4.0
    assert dvxplorer.pixels_per_output == pytest.approx(56.25)  # 480x480 crop on 64x64
    assert density_scale(dvs128, dvxplorer) == pytest.approx(4 / 56.25)
    # The same moving bar makes the same events per sensor pixel: after the match, the two
    # sensors give the same total count per model frame.
    rng = np.random.default_rng(0)
    for geometry in (dvs128, dvxplorer):
        w, h = geometry.sensor_size.width, geometry.sensor_size.height
        ys, xs = np.mgrid[0:h, 0:w]
        keep = (geometry.lut_x[xs] >= 0) & (geometry.lut_y[ys] >= 0) & (rng.random((h, w)) < 0.1)
        count = keep.sum() * density_scale(dvs128, geometry) / (64 * 64)
        assert count == pytest.approx(0.4, rel=0.05)


# --- end of stream ------------------------------------------------------------------------------

def test_finish_hands_out_the_tail_as_a_shorter_window_equal_to_one_shot_binning():
    from tests.helpers import random_events

    sensor = SensorSize(32, 32)
    ev = random_events(6000, sensor, t0=1_000_000, duration_us=130_000, seed=4)
    binner = Binner(sensor, (16, 16), 20_000, 4)
    whole = binner.push(ev)
    assert len(whole) == 1  # 130 ms: one whole 80 ms window, ~50 ms left over in 3 steps
    [tail] = binner.finish()
    t0 = whole[0].t_end
    k = (int(ev["t"][-1]) - int(ev["t"][0])) // 20_000 + 1 - 4  # steps holding the rest, the last one partly
    assert k == 3 and tail.t_start == t0 and tail.frames.shape == (k, 2, 16, 16)
    assert tail.t_end == t0 + k * 20_000 and tail.index == whole[0].index + 1
    ref = bin_events(ev, t0, 20_000, k, binner.geometry, dtype=np.float32)
    assert np.array_equal(tail.frames, ref)
    assert tail.counts.tolist() == [int(ref[i].sum()) for i in range(k)]
    assert sum(int(w.counts.sum()) for w in (*whole, tail)) == len(ev)  # nothing of the recording is lost
    assert binner.finish() == [] and binner.t0 is None  # it starts over


def test_a_stream_shorter_than_one_window_still_gives_a_window_and_a_boundary_gives_none():
    from tests.helpers import random_events

    sensor = SensorSize(16, 16)
    short = random_events(300, sensor, t0=0, duration_us=30_000, seed=2)
    binner = Binner(sensor, None, 20_000, 8)
    assert binner.push(short) == []
    [only] = binner.finish()
    assert only.frames.shape[0] == 2 and int(only.counts.sum()) == len(short)
    exact = Binner(sensor, None, 10_000, 2)
    out = exact.push(EventChunk(short[:0], 0, 40_000))  # time only, up to a window boundary
    assert len(out) == 2 and exact.finish() == []
