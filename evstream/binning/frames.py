"""Binning a whole event array at once into ``[T, 2, H, W]`` frames, by time or by event count.

The helpers here (frame allocation, the choice between serial and parallel kernels) are shared
with the online :class:`~evstream.binning.Binner`, so one-shot and online binning run the same
kernels (:mod:`evstream._kernels`) and give the same frames.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from evstream import _kernels as K
from evstream.binning import _flat
from evstream.binning.geometry import Geometry, _as_geometry
from evstream.errors import ConfigError
from evstream.events import EVENT_DTYPE, SensorSize, as_events

__all__ = [
    "bin_events",
    "bin_events_by_count",
    "count_bounds",
    "warmup",
    "PARALLEL_MIN_EVENTS",
    "FRAME_DTYPES",
]

PARALLEL_MIN_EVENTS = 200_000
"""With ``parallel=None``, kernels go parallel from this many events in one call."""

FRAME_DTYPES = (np.float32, np.float64, np.int16, np.int32, np.uint8, np.uint16)
"""Frame dtypes the kernels accept. Integer frames wrap on overflow unless ``clip`` bounds them."""

_ON_CHANNEL = np.array([0] + [1] * 255, dtype=np.int32)  # p != 0 is ON (channel 1), as tonic
_ONE_CHANNEL = np.zeros(256, dtype=np.int32)


def _frame_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in [np.dtype(d) for d in FRAME_DTYPES]:
        names = ", ".join(np.dtype(d).name for d in FRAME_DTYPES)
        raise ConfigError(f"dtype: frames can be {names}; got {dt}")
    return dt


def _clip_value(clip: float | None) -> float:
    if clip is None:
        return math.inf
    if not clip > 0:
        raise ConfigError(f"clip: must be positive, got {clip}")
    return float(clip)


def _use_parallel(parallel: bool | None, n_events: int) -> bool:
    if parallel is None:
        return n_events >= PARALLEL_MIN_EVENTS and numba.get_num_threads() > 1
    return bool(parallel)


def _bin_ranges(ev, bounds, slots, geometry, lut_p, clip, frames, tallies, parallel: bool) -> None:
    """Bin ``ev[bounds[s]:bounds[s+1]]`` into ``frames[slots[s]]`` with the fitting kernel."""
    x, y, p = ev["x"], ev["y"], ev["p"]
    wide_x, wide_y, clipping = geometry._wide_x, geometry._wide_y, clip != math.inf
    if not parallel:
        K.bin_ranges(x, y, p, bounds, slots, wide_x, wide_y, lut_p, clipping, clip, frames, tallies)
        return
    threads = numba.get_num_threads()
    busiest = int(np.diff(bounds).max()) if len(bounds) > 1 else 0
    if slots.size < threads and not clipping and busiest >= PARALLEL_MIN_EVENTS:
        # Too few steps to keep every thread busy: split each step over private frames and sum.
        scratch = np.zeros((threads, *frames.shape[1:]), dtype=frames.dtype)
        scratch_tallies = np.zeros((threads, 3), dtype=np.int64)
        for s, slot in enumerate(slots):
            if s:
                scratch.fill(0)
                scratch_tallies.fill(0)
            K.bin_split_parallel(x, y, p, bounds[s], bounds[s + 1], wide_x, wide_y, lut_p, scratch, scratch_tallies)
            frames[slot] += scratch.sum(axis=0, dtype=frames.dtype)
            tallies[slot] += scratch_tallies.sum(axis=0)
        return
    K.bin_ranges_parallel(x, y, p, bounds, slots, wide_x, wide_y, lut_p, clipping, clip, frames, tallies)


def bin_events(
    events: np.ndarray,
    t_start: int,
    step_us: int,
    steps: int,
    geometry: Geometry | SensorSize,
    *,
    dtype=np.float32,
    clip: float | None = None,
    merge_polarity: bool = False,
    parallel: bool | None = None,
) -> np.ndarray:
    """Bin events into ``steps`` steps of ``step_us`` µs from ``t_start``: ``[T, 2, H, W]``.

    Events outside ``[t_start, t_start + steps * step_us)``, outside the sensor or dropped by
    the geometry are ignored. Events may be in any order; sorted input with ``parallel`` uses
    one thread per step (``searchsorted`` on t gives each step's range, so no write races).

    Args:
        events: ``EVENT_DTYPE`` (or convertible) array.
        t_start: start of step 0, µs.
        step_us: step length, µs.
        steps: number of steps T.
        geometry: sensor → model pixel map (a bare sensor size means identity).
        dtype: frame dtype (see ``FRAME_DTYPES``).
        clip: cap each pixel's count at this value (saturating, so small integer dtypes do not wrap).
        merge_polarity: one channel counting both polarities: ``[T, 1, H, W]``.
        parallel: ``None`` = parallel from ``PARALLEL_MIN_EVENTS`` events.

    Returns:
        ``[T, 2, H, W]`` counts (``[T, 1, H, W]`` merged), channel 0 = OFF, 1 = ON.

    Raises:
        EventFormatError: the events are not an event array.
        ConfigError: a non-positive ``step_us``/``steps``, an unsupported dtype or clip.
    """
    ev = as_events(events)
    geometry = _as_geometry(geometry)
    step_us, steps = int(step_us), int(steps)
    if step_us <= 0 or steps <= 0:
        raise ConfigError(f"step_us and steps must be positive, got step_us={step_us}, steps={steps}")
    use_parallel = _use_parallel(parallel, len(ev))
    # The parallel kernel zeroes frames itself, one thread per step: faster than np.zeros' page faults.
    frames, lut_p, clip_v = _new_frames(steps, geometry, dtype, merge_polarity, clip, zeroed=not use_parallel)
    tallies = np.zeros((steps, 3), dtype=np.int64)
    slots = np.arange(steps, dtype=np.int64)
    t = ev["t"]
    t_start = int(t_start)
    if use_parallel and _bin_sorted(ev, t_start, step_us, geometry, lut_p, clip_v, frames, tallies):
        return frames
    K.bin_by_time(
        t, ev["x"], ev["y"], ev["p"], t_start, step_us, slots, geometry._wide_x, geometry._wide_y, lut_p,
        clip_v != math.inf, clip_v, frames, tallies,
    )
    return frames


def _bin_sorted(ev, t_start: int, step_us: int, geometry: Geometry, lut_p, clip: float, frames, tallies) -> bool:
    """Parallel binning assuming sorted t; False (frames and tallies zeroed) when t is not in order."""
    steps = frames.shape[0]
    edges = t_start + np.arange(steps + 1, dtype=np.int64) * step_us
    bounds = np.searchsorted(ev["t"], edges, side="left").astype(np.int64)
    if steps < numba.get_num_threads() and clip == math.inf and K.is_sorted(ev["t"]):
        frames.fill(0)
        _bin_ranges(ev, bounds, np.arange(steps, dtype=np.int64), geometry, lut_p, clip, frames, tallies, parallel=True)
        return True
    if np.all(bounds[1:] >= bounds[:-1]) and K.bin_sorted_parallel(
        ev["t"], ev["x"], ev["y"], ev["p"], t_start, step_us, bounds, geometry._wide_x, geometry._wide_y, lut_p,
        clip != math.inf, clip, frames, tallies,
    ):
        return True
    frames.fill(0)
    tallies.fill(0)
    return False


def _new_frames(steps: int, geometry: Geometry, dtype, merge_polarity: bool, clip: float | None, zeroed: bool = True):
    channels = 1 if merge_polarity else 2
    out = geometry.out_size
    shape = (steps, channels, out.height, out.width)
    frames = np.zeros(shape, dtype=_frame_dtype(dtype)) if zeroed else np.empty(shape, dtype=_frame_dtype(dtype))
    return frames, (_ONE_CHANNEL if merge_polarity else _ON_CHANNEL), _clip_value(clip)


def count_bounds(n_events: int, steps: int) -> np.ndarray:
    """spikingjelly's ``split_by='number'`` split points: ``int64 [steps + 1]``.

    Step ``j`` holds events ``j * (N // T)`` up to ``(j + 1) * (N // T)``; the last step also
    takes the remainder (``cal_fixed_frames_number_segment_index`` in
    ``spikingjelly/datasets/utils.py``, spikingjelly 2.0.0). With ``N < T`` only the last step
    has events.
    """
    di = n_events // steps
    bounds = np.arange(steps + 1, dtype=np.int64) * di
    bounds[-1] = n_events
    return bounds


def bin_events_by_count(
    events: np.ndarray,
    steps: int,
    geometry: Geometry | SensorSize,
    *,
    dtype=np.float32,
    clip: float | None = None,
    merge_polarity: bool = False,
    parallel: bool | None = None,
) -> np.ndarray:
    """Split events into ``steps`` steps of equal event count, in array order: ``[T, 2, H, W]``.

    The split points are spikingjelly's ``split_by='number'`` (see :func:`count_bounds`), which
    DVS128 Gesture models trained with ``integrate_events_by_fixed_frames_number`` expect.
    spikingjelly.datasets cannot be imported here (it imports a broken torchvision), so the rule
    is reimplemented. Arguments as :func:`bin_events`.
    """
    ev = as_events(events)
    geometry = _as_geometry(geometry)
    steps = int(steps)
    if steps <= 0:
        raise ConfigError(f"steps: must be positive, got {steps}")
    frames, lut_p, clip_v = _new_frames(steps, geometry, dtype, merge_polarity, clip)
    tallies = np.zeros((steps, 3), dtype=np.int64)
    slots = np.arange(steps, dtype=np.int64)
    _bin_ranges(ev, count_bounds(len(ev), steps), slots, geometry, lut_p, clip_v, frames, tallies, _use_parallel(parallel, len(ev)))
    return frames


def warmup(dtypes=(np.float32,), arrays=("writable", "readonly")) -> None:
    """Compile (or load from the cache) every kernel signature a stream will use, on tiny input.

    Covers serial and parallel binning for each frame dtype, writable and read-only event arrays
    (zero-copy file decoding gives read-only views; ``arrays`` picks which), the order scans and the
    noise filters, so the first live window is not delayed by JIT compilation.
    """
    from evstream import filters

    sensor = SensorSize(4, 4)
    geometry = Geometry(sensor)
    ev = np.zeros(8, dtype=EVENT_DTYPE)
    ev["t"] = np.arange(8)
    readonly = ev.copy()
    readonly.setflags(write=False)
    for events in [{"writable": ev, "readonly": readonly}[kind] for kind in arrays]:
        for dtype in dtypes:
            for parallel in (False, True):
                bin_events(events, 0, 2, 4, geometry, dtype=dtype, parallel=parallel)
                bin_events_by_count(events, 2, geometry, dtype=dtype, parallel=parallel)
            scratch = np.zeros((2, 2, 4, 4), dtype=_frame_dtype(dtype))
            blocks = np.zeros((2, 2, 2, 4, 4), dtype=_frame_dtype(dtype))
            tallies = np.zeros((4, 3), dtype=np.int64)
            bounds, slots = np.array([0, 4, 8], dtype=np.int64), np.array([1, 2], dtype=np.int64)
            totals = np.zeros(3, dtype=np.int64)
            K.bin_steps(  # the online Binner's kernels
                events["x"], events["y"], events["p"], bounds, slots, blocks[0], blocks[1], geometry._wide_x,
                geometry._wide_y, _ON_CHANNEL, False, math.inf, tallies, totals,
            )
            K.bin_steps_parallel(
                events["x"], events["y"], events["p"], bounds, slots, blocks[0], blocks[1], geometry._wide_x,
                geometry._wide_y, _ON_CHANNEL, False, math.inf, tallies, totals,
            )
            K.bin_split_parallel(
                events["x"], events["y"], events["p"], 0, 8, geometry._wide_x, geometry._wide_y, _ON_CHANNEL,
                scratch, np.zeros((2, 3), dtype=np.int64),
            )
            flat = _flat.FlatTables(geometry._wide_x, geometry._wide_y, _ON_CHANNEL, 2, 4, 4)
            fa, fb = blocks[0].reshape(2, -1), blocks[1].reshape(2, -1)
            tables = (fa, fb, flat.x, flat.y, flat.p, flat.size, tallies, totals)
            _flat.bin_steps_flat(events["x"], events["y"], events["p"], bounds, slots, *tables)
            rows = _flat.event_rows(events)
            if rows is not None:
                _flat.bin_steps_flat_rows(rows, bounds, slots, *tables)
                _flat.bin_steps_flat_rows_parallel(rows, bounds, slots, *tables)
                half = np.zeros(flat.size, dtype=fa.dtype)  # a dense step in two halves
                _flat.bin_step_flat_rows_halves(rows, bounds[0], bounds[-1], slots[0], fa, fb, flat.x, flat.y, flat.p,
                                                flat.size, half, tallies, totals)
        K.scan_order(events["t"], 0, 1, 1)
        K.threadsafe_parallel()  # starts numba's threading layer (every Binner asks)
        K.is_sorted(events["t"])
        _flat.is_sorted_serial(events["t"])
        filters.BackgroundActivityFilter(sensor)(events)
        filters.RefractoryFilter(sensor, 1)(events)
        filters.HotPixelMask.learn(events, sensor).apply(events)
