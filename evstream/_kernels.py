"""numba kernels behind :mod:`evstream.binning` and :mod:`evstream.filters`.

Every kernel is ``@njit(cache=True, nogil=True)``: compiled once per signature and cached in
``__pycache__`` (set ``NUMBA_CACHE_DIR`` when that folder is read-only), and run without the GIL
so a binning thread does not stall the model thread. Kernels take the field views of an
``EVENT_DTYPE`` array (``ev["t"], ev["x"], ev["y"], ev["p"]``: strided, possibly read-only),
which measured 1.8x faster than record access (shared/reference/environment.md §7).

Geometry reaches the kernels as three lookup tables: ``wide_x[uint16(x)] -> output column``,
``wide_y[uint16(y)] -> output row`` with 65536 entries each, so that every int16 coordinate,
negative or huge, has an entry (``-1`` = dropped by the roi / crop, ``-2`` = outside the sensor),
and ``lut_p[p] -> channel`` (256 entries, so merging polarities costs nothing). One table read
per axis replaces the bounds checks, and no coordinate can lead to a write out of bounds.

Per-step tallies are ``int64 [S, 3]``: events binned, events outside the sensor, events outside
the geometry (cropped). Kernels add to frames and tallies, which callers zero (except
:func:`bin_sorted_parallel`, which zeroes its own, one thread per step).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "threadsafe_parallel",
    "BINNED",
    "OUT_OF_SENSOR",
    "OUTSIDE_GEOMETRY",
    "NEVER",
    "CROPPED",
    "OFF_SENSOR",
    "WIDE",
    "bin_by_time",
    "bin_ranges",
    "bin_ranges_parallel",
    "bin_sorted_parallel",
    "bin_split_parallel",
    "bin_steps",
    "bin_steps_parallel",
    "is_sorted",
    "scan_order",
    "background_activity",
    "refractory",
    "pixel_mask",
    "pixel_counts",
]

BINNED = 0
OUT_OF_SENSOR = 1
OUTSIDE_GEOMETRY = 2

# "This pixel never fired": far in the past, yet t - NEVER cannot overflow int64.
NEVER = -(2**62)

# Geometry tables (``wide_x``, ``wide_y``): -1 = dropped by the geometry, -2 = outside the sensor.
CROPPED = -1
OFF_SENSOR = -2
WIDE = 65536  # one entry per int16 coordinate, read as uint16


@njit(cache=True, nogil=True, inline="always")
def _accumulate(xi, yi, pi, slot, wide_x, wide_y, lut_p, clipping, clip, frames):
    """Add one event to ``frames[slot]``; return its tally column."""
    # int16 -> uint16 indexes the 65536-entry tables: every possible x, y has an entry.
    ox = wide_x[np.uint16(xi)]
    oy = wide_y[np.uint16(yi)]
    if ox < 0 or oy < 0:
        if ox == OFF_SENSOR or oy == OFF_SENSOR:
            return OUT_OF_SENSOR
        return OUTSIDE_GEOMETRY
    c = lut_p[pi]
    if clipping:
        v = frames[slot, c, oy, ox] + 1
        if v <= clip:
            frames[slot, c, oy, ox] = v
    else:
        frames[slot, c, oy, ox] += 1
    return BINNED


@njit(cache=True, nogil=True)
def bin_by_time(t, x, y, p, t_start, step_us, slots, wide_x, wide_y, lut_p, clipping, clip, frames, tallies):
    """Bin events in any order: step = (t - t_start) // step_us, one division per event.

    Events outside ``[t_start, t_start + len(slots) * step_us)`` are skipped without a tally.
    Step ``s`` lands in ``frames[slots[s]]`` and ``tallies[slots[s]]``.
    """
    n_steps = slots.size
    for i in range(t.size):
        dt = t[i] - t_start
        if dt < 0:
            continue
        s = dt // step_us
        if s >= n_steps:
            continue
        slot = slots[s]
        tallies[slot, _accumulate(x[i], y[i], p[i], slot, wide_x, wide_y, lut_p, clipping, clip, frames)] += 1


@njit(cache=True, nogil=True, inline="always")
def _bin_range(lo, hi, slot, x, y, p, wide_x, wide_y, lut_p, clipping, clip, frames, tallies):
    outside_sensor = 0
    outside_geometry = 0
    for i in range(lo, hi):
        kind = _accumulate(x[i], y[i], p[i], slot, wide_x, wide_y, lut_p, clipping, clip, frames)
        if kind == OUT_OF_SENSOR:
            outside_sensor += 1
        elif kind == OUTSIDE_GEOMETRY:
            outside_geometry += 1
    tallies[slot, BINNED] += hi - lo - outside_sensor - outside_geometry
    tallies[slot, OUT_OF_SENSOR] += outside_sensor
    tallies[slot, OUTSIDE_GEOMETRY] += outside_geometry


@njit(cache=True, nogil=True)
def bin_ranges(x, y, p, bounds, slots, wide_x, wide_y, lut_p, clipping, clip, frames, tallies):
    """Bin events ``bounds[s]:bounds[s + 1]`` into ``frames[slots[s]]``, one step after another.

    ``bounds`` (``int64 [S + 1]``) comes from ``searchsorted`` on sorted t (time mode) or from
    fixed counts (count mode); no division per event.
    """
    for s in range(slots.size):
        _bin_range(bounds[s], bounds[s + 1], slots[s], x, y, p, wide_x, wide_y, lut_p, clipping, clip, frames, tallies)


@njit(cache=True, nogil=True, parallel=True)
def bin_ranges_parallel(x, y, p, bounds, slots, wide_x, wide_y, lut_p, clipping, clip, frames, tallies):
    """:func:`bin_ranges` with one thread per step: steps own disjoint frames, so no races.

    ``slots`` must not repeat (the callers pass distinct slots).
    """
    for s in prange(slots.size):
        _bin_range(bounds[s], bounds[s + 1], slots[s], x, y, p, wide_x, wide_y, lut_p, clipping, clip, frames, tallies)


@njit(cache=True, nogil=True, parallel=True)
def bin_sorted_parallel(t, x, y, p, t_start, step_us, bounds, wide_x, wide_y, lut_p, clipping, clip, frames, tallies):
    """One thread per step over ``searchsorted`` ranges, verifying the ranges as it goes.

    ``bounds`` (``int64 [T + 1]``, non-decreasing) should come from ``searchsorted`` of the step
    edges in t. While binning step ``s`` into ``frames[s]``, every event of its range is checked
    to lie inside the step, and the events outside all ranges are checked to lie outside
    ``[t_start, t_start + T * step_us)``. Both hold exactly when the ranges hold every event of the
    span, whatever the order elsewhere; returns False otherwise (frames then unusable). Zeroes
    ``frames`` and ``tallies`` itself, so they may be allocated with ``np.empty``. This
    replaces a separate sortedness pass: t shares its 16-byte record with x, y, p, so reading it
    here costs almost nothing.
    """
    n_steps = bounds.size - 1
    t_end = t_start + n_steps * step_us
    head = bounds[0]
    rest = bounds[n_steps]
    outside = head + t.size - rest
    blocks = 8
    bad = np.zeros(n_steps + blocks, dtype=np.bool_)
    for k in prange(n_steps + blocks):
        if k < n_steps:
            # frames may come uninitialised: each thread zeroes (and first-touches) its own step.
            frames[k] = 0
            tallies[k] = 0
            lo = bounds[k]
            hi = bounds[k + 1]
            e0 = t_start + k * step_us
            e1 = e0 + step_us
            off_sensor = 0
            off_geometry = 0
            for i in range(lo, hi):
                ti = t[i]
                if ti < e0 or ti >= e1:
                    bad[k] = True
                kind = _accumulate(x[i], y[i], p[i], k, wide_x, wide_y, lut_p, clipping, clip, frames)
                if kind == OUT_OF_SENSOR:
                    off_sensor += 1
                elif kind == OUTSIDE_GEOMETRY:
                    off_geometry += 1
            tallies[k, BINNED] += hi - lo - off_sensor - off_geometry
            tallies[k, OUT_OF_SENSOR] += off_sensor
            tallies[k, OUTSIDE_GEOMETRY] += off_geometry
        else:
            j = k - n_steps
            for q in range(outside * j // blocks, outside * (j + 1) // blocks):
                i = q if q < head else rest + (q - head)
                if t_start <= t[i] < t_end:
                    bad[k] = True
                    break
    return not bad.any()


@njit(cache=True, nogil=True, parallel=True)
def bin_split_parallel(x, y, p, lo, hi, wide_x, wide_y, lut_p, scratch, scratch_tallies):
    """Bin one step's events ``lo:hi`` split evenly over ``scratch.shape[0]`` private frames.

    For few steps with many events, where one thread per step would leave cores idle: part ``k``
    goes to ``scratch[k]`` (``[K, C, H, W]``, zeroed by the caller), whose sum is the step.
    No clipping: parts clipped separately would not sum to a clipped step.
    """
    parts = scratch.shape[0]
    n = hi - lo
    for k in prange(parts):
        a = lo + n * k // parts
        b = lo + n * (k + 1) // parts
        _bin_range(a, b, k, x, y, p, wide_x, wide_y, lut_p, False, 0.0, scratch, scratch_tallies)


@njit(cache=True, nogil=True, inline="always")
def _bin_into(lo, hi, x, y, p, wide_x, wide_y, lut_p, clipping, clip, frame):
    """Bin events ``lo:hi`` into one step's ``frame [C, H, W]``; returns (binned, outside sensor, outside geometry)."""
    outside_sensor = 0
    outside_geometry = 0
    for i in range(lo, hi):
        ox = wide_x[np.uint16(x[i])]
        oy = wide_y[np.uint16(y[i])]
        if ox < 0 or oy < 0:
            if ox == OFF_SENSOR or oy == OFF_SENSOR:
                outside_sensor += 1
            else:
                outside_geometry += 1
            continue
        c = lut_p[p[i]]
        if clipping:
            v = frame[c, oy, ox] + 1
            if v <= clip:
                frame[c, oy, ox] = v
        else:
            frame[c, oy, ox] += 1
    return hi - lo - outside_sensor - outside_geometry, outside_sensor, outside_geometry


@njit(cache=True, nogil=True)
def bin_steps(x, y, p, bounds, slots, block_a, block_b, wide_x, wide_y, lut_p, clipping, clip, tallies, totals):
    """The online Binner's kernel, serial: events ``bounds[s]:bounds[s + 1]`` into ring slot ``slots[s]``.

    The ring of ``2 × steps`` slots lives in two blocks of ``steps`` slots (``block_a`` holds
    slots ``0 .. steps - 1``, ``block_b`` the rest), so a block can be handed out whole as a
    window's frames. Per-step tallies go to ``tallies[slot]``, their sum to ``totals`` (``[3]``).
    Kept apart from :func:`bin_steps_parallel`: the same loop compiled inside a parallel
    function measured ~15 % slower.
    """
    half = block_a.shape[0]
    for s in range(slots.size):
        slot = slots[s]
        frame = block_a[slot] if slot < half else block_b[slot - half]
        b, o, g = _bin_into(bounds[s], bounds[s + 1], x, y, p, wide_x, wide_y, lut_p, clipping, clip, frame)
        tallies[slot, BINNED] += b
        tallies[slot, OUT_OF_SENSOR] += o
        tallies[slot, OUTSIDE_GEOMETRY] += g
        totals[BINNED] += b
        totals[OUT_OF_SENSOR] += o
        totals[OUTSIDE_GEOMETRY] += g


@njit(cache=True, nogil=True, inline="always")
def _bin_block(lo, hi, index, slot, x, y, p, wide_x, wide_y, lut_p, clipping, clip, block, tallies):
    """Events ``lo:hi`` into ``block[index]``, tallied in ``tallies[slot]``."""
    outside_sensor = 0
    outside_geometry = 0
    for i in range(lo, hi):
        kind = _accumulate(x[i], y[i], p[i], index, wide_x, wide_y, lut_p, clipping, clip, block)
        if kind == OUT_OF_SENSOR:
            outside_sensor += 1
        elif kind == OUTSIDE_GEOMETRY:
            outside_geometry += 1
    tallies[slot, BINNED] += hi - lo - outside_sensor - outside_geometry
    tallies[slot, OUT_OF_SENSOR] += outside_sensor
    tallies[slot, OUTSIDE_GEOMETRY] += outside_geometry


@njit(cache=True, nogil=True, parallel=True)
def bin_steps_parallel(x, y, p, bounds, slots, block_a, block_b, wide_x, wide_y, lut_p, clipping, clip, tallies, totals):
    """:func:`bin_steps` with one thread per step (many steps: slots are distinct, so no races).

    Written like :func:`bin_ranges_parallel` (4-D block indexing, tallies in place): picking a
    3-D step view per thread measured ~25 % slower in a parallel loop.
    """
    half = block_a.shape[0]
    n_steps = slots.size
    for s in range(n_steps):
        for j in range(3):
            totals[j] -= tallies[slots[s], j]
    for s in prange(n_steps):
        slot = slots[s]
        if slot < half:
            _bin_block(bounds[s], bounds[s + 1], slot, slot, x, y, p, wide_x, wide_y, lut_p, clipping, clip, block_a,
                       tallies)
        else:
            _bin_block(bounds[s], bounds[s + 1], slot - half, slot, x, y, p, wide_x, wide_y, lut_p, clipping, clip,
                       block_b, tallies)
    for s in range(n_steps):
        for j in range(3):
            totals[j] += tallies[slots[s], j]


@njit(cache=True, nogil=True, parallel=True)
def is_sorted(t):
    """True when ``t`` never decreases (checked in parallel blocks)."""
    n = t.size
    if n < 2:
        return True
    blocks = 64
    bad = np.zeros(blocks, dtype=np.bool_)
    for k in prange(blocks):
        a = (n - 1) * k // blocks
        b = (n - 1) * (k + 1) // blocks
        for i in range(a, b):
            if t[i + 1] < t[i]:
                bad[k] = True
                break
    return not bad.any()


@njit(cache=True, nogil=True)
def scan_order(t, top, back_us, ahead_us):
    """Find where time goes backwards or jumps, against the running maximum of t.

    The running maximum starts at ``top`` (the maximum of earlier chunks). Returns
    ``(first_disorder, first_jump)``: the first index older than the running maximum, and the
    first index more than ``back_us`` older or more than ``ahead_us`` newer than it (the scan
    stops there); ``-1`` when none.
    """
    first_disorder = -1
    for i in range(t.size):
        ti = t[i]
        if ti < top:
            if first_disorder < 0:
                first_disorder = i
            if ti < top - back_us:
                return first_disorder, i
        elif ti > top + ahead_us:
            return first_disorder, i
        else:
            top = ti
    return first_disorder, -1


@njit(cache=True, nogil=True)
def background_activity(t, x, y, last, dt_us, keep):
    """dv-processing's background-activity test, event by event; returns events outside the sensor.

    An event is kept when one of its 8 neighbours (not the pixel itself) fired less than
    ``dt_us`` before it: ``t - last[ny, nx] < dt_us`` (``dv::noise::BackgroundActivityNoiseFilter``,
    iniVation dv-processing). Every event then writes its t into its own pixel, kept or not.
    ``last`` is ``[H + 2, W + 2]`` with a border that stays at ``NEVER``: pixel (x, y) is
    ``last[y + 1, x + 1]``, so border pixels need no special case. Events outside the sensor are
    dropped and counted.
    """
    height = last.shape[0] - 2
    stride = last.shape[1]
    width = stride - 2
    flat = last.reshape(-1)
    outside = 0
    for i in range(t.size):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        ti = t[i]
        if xi < 0 or xi >= width or yi < 0 or yi >= height:
            keep[i] = False
            outside += 1
            continue
        horizon = ti - dt_us  # supported by a neighbour whose t > horizon
        c = (yi + 1) * stride + xi + 1
        a = c - stride
        b = c + stride
        # Bitwise | on purpose: all 8 reads without branches measured 1.6x faster than `or`.
        keep[i] = (
            (flat[c - 1] > horizon) | (flat[c + 1] > horizon)
            | (flat[a - 1] > horizon) | (flat[a] > horizon) | (flat[a + 1] > horizon)
            | (flat[b - 1] > horizon) | (flat[b] > horizon) | (flat[b + 1] > horizon)
        )
        flat[c] = ti
    return outside


@njit(cache=True, nogil=True)
def refractory(t, x, y, last_kept, period_us, keep):
    """Keep an event when its pixel's previous *kept* event is at least ``period_us`` older.

    ``last_kept [H, W]`` is updated by kept events only, so a pixel firing continuously still
    passes one event per period. Returns the number of events outside the sensor (dropped).
    """
    height, width = last_kept.shape
    outside = 0
    for i in range(t.size):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        if xi < 0 or xi >= width or yi < 0 or yi >= height:
            keep[i] = False
            outside += 1
            continue
        if t[i] - last_kept[yi, xi] >= period_us:
            keep[i] = True
            last_kept[yi, xi] = t[i]
        else:
            keep[i] = False
    return outside


@njit(cache=True, nogil=True)
def pixel_mask(x, y, allowed, keep):
    """``keep[i] = allowed[y[i], x[i]]``; events outside the sensor are dropped. Returns their count."""
    height, width = allowed.shape
    outside = 0
    for i in range(x.size):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        if xi < 0 or xi >= width or yi < 0 or yi >= height:
            keep[i] = False
            outside += 1
        else:
            keep[i] = allowed[yi, xi]
    return outside


@njit(cache=True, nogil=True)
def pixel_counts(x, y, counts):
    """Add one to ``counts[y, x]`` per event inside the sensor; returns events outside it."""
    height, width = counts.shape
    outside = 0
    for i in range(x.size):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        if xi < 0 or xi >= width or yi < 0 or yi >= height:
            outside += 1
        else:
            counts[yi, xi] += 1
    return outside


@njit(cache=True, parallel=True)
def _start_threads(a):
    """A trivial parallel kernel: its first call starts numba's threading layer."""
    for i in prange(a.size):
        a[i] = i


_THREADSAFE: bool | None = None


def threadsafe_parallel() -> bool:
    """Whether two Python threads may run numba ``parallel=True`` kernels at the same time.

    True with the tbb and omp threading layers; False with workqueue (numba's fallback where
    neither is installed, e.g. macOS without libomp), which aborts the whole process on a
    concurrent launch ("Concurrent access has been detected"). The pipeline's binner thread and
    its model thread (the fused inference kernels) would launch concurrently, so the online Binner
    bins serially on such a machine. Starts the threading layer on the first call.
    """
    global _THREADSAFE
    if _THREADSAFE is None:
        import numba

        _start_threads(np.zeros(2, dtype=np.int64))
        _THREADSAFE = numba.threading_layer() != "workqueue"
    return _THREADSAFE
