"""numba kernels behind :mod:`evstream.binning` and :mod:`evstream.filters`.

Every kernel is ``@njit(cache=True, nogil=True)``: compiled once per signature and cached in
``__pycache__`` (set ``NUMBA_CACHE_DIR`` when that folder is read-only), and run without the GIL
so a binning thread does not stall the model thread. Kernels take the field views of an
``EVENT_DTYPE`` array (``ev["t"], ev["x"], ev["y"], ev["p"]``: strided, possibly read-only),
which measured 1.8x faster than record access (shared/reference/environment.md §7).

Geometry reaches the kernels as three lookup tables: ``lut_x[x] -> output column``,
``lut_y[y] -> output row`` (``-1`` = outside the region of interest / crop) and
``lut_p[p] -> channel`` (256 entries, so merging polarities costs nothing). A coordinate outside
the tables (outside the sensor) is counted, never written: no kernel can write out of bounds.

Per-step tallies are ``int64 [S, 3]``: events binned, events outside the sensor, events outside
the geometry (cropped). Kernels add to frames and tallies; callers zero them.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = [
    "BINNED",
    "OUT_OF_SENSOR",
    "OUTSIDE_GEOMETRY",
    "NEVER",
    "bin_by_time",
    "bin_ranges",
    "bin_ranges_parallel",
    "bin_split_parallel",
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


@njit(cache=True, nogil=True, inline="always")
def _accumulate(xi, yi, pi, slot, lut_x, lut_y, lut_p, clip, frames):
    """Add one event to ``frames[slot]``; return its tally column."""
    if xi < 0 or xi >= lut_x.size or yi < 0 or yi >= lut_y.size:
        return OUT_OF_SENSOR
    ox = lut_x[xi]
    oy = lut_y[yi]
    if ox < 0 or oy < 0:
        return OUTSIDE_GEOMETRY
    c = lut_p[pi]
    v = frames[slot, c, oy, ox] + 1
    if v <= clip:
        frames[slot, c, oy, ox] = v
    return BINNED


@njit(cache=True, nogil=True)
def bin_by_time(t, x, y, p, t_start, step_us, slots, lut_x, lut_y, lut_p, clip, frames, tallies):
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
        tallies[slot, _accumulate(x[i], y[i], p[i], slot, lut_x, lut_y, lut_p, clip, frames)] += 1


@njit(cache=True, nogil=True, inline="always")
def _bin_range(lo, hi, slot, x, y, p, lut_x, lut_y, lut_p, clip, frames, tallies):
    binned = 0
    outside_sensor = 0
    outside_geometry = 0
    for i in range(lo, hi):
        kind = _accumulate(x[i], y[i], p[i], slot, lut_x, lut_y, lut_p, clip, frames)
        if kind == BINNED:
            binned += 1
        elif kind == OUT_OF_SENSOR:
            outside_sensor += 1
        else:
            outside_geometry += 1
    tallies[slot, BINNED] += binned
    tallies[slot, OUT_OF_SENSOR] += outside_sensor
    tallies[slot, OUTSIDE_GEOMETRY] += outside_geometry


@njit(cache=True, nogil=True)
def bin_ranges(x, y, p, bounds, slots, lut_x, lut_y, lut_p, clip, frames, tallies):
    """Bin events ``bounds[s]:bounds[s + 1]`` into ``frames[slots[s]]``, one step after another.

    ``bounds`` (``int64 [S + 1]``) comes from ``searchsorted`` on sorted t (time mode) or from
    fixed counts (count mode); no division per event.
    """
    for s in range(slots.size):
        _bin_range(bounds[s], bounds[s + 1], slots[s], x, y, p, lut_x, lut_y, lut_p, clip, frames, tallies)


@njit(cache=True, nogil=True, parallel=True)
def bin_ranges_parallel(x, y, p, bounds, slots, lut_x, lut_y, lut_p, clip, frames, tallies):
    """:func:`bin_ranges` with one thread per step: steps own disjoint frames, so no races.

    ``slots`` must not repeat (the callers pass distinct slots).
    """
    for s in prange(slots.size):
        _bin_range(bounds[s], bounds[s + 1], slots[s], x, y, p, lut_x, lut_y, lut_p, clip, frames, tallies)


@njit(cache=True, nogil=True, parallel=True)
def bin_split_parallel(x, y, p, lo, hi, lut_x, lut_y, lut_p, clip, scratch, scratch_tallies):
    """Bin one step's events ``lo:hi`` split evenly over ``scratch.shape[0]`` private frames.

    For few steps with many events, where one thread per step would leave cores idle: part ``k``
    goes to ``scratch[k]`` (``[K, C, H, W]``, zeroed by the caller), whose sum is the step. With
    ``clip`` the parts are clipped separately; callers only use this without clipping.
    """
    parts = scratch.shape[0]
    n = hi - lo
    for k in prange(parts):
        a = lo + n * k // parts
        b = lo + n * (k + 1) // parts
        _bin_range(a, b, k, x, y, p, lut_x, lut_y, lut_p, clip, scratch, scratch_tallies)


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
    iniVation dv-processing). Every event then writes its t into ``last[y, x]``, kept or not.
    Neighbours beyond the border do not exist; events outside the sensor are dropped and counted.
    """
    height, width = last.shape
    outside = 0
    for i in range(t.size):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        ti = t[i]
        if xi < 0 or xi >= width or yi < 0 or yi >= height:
            keep[i] = False
            outside += 1
            continue
        supported = False
        for ny in range(max(yi - 1, 0), min(yi + 2, height)):
            for nx in range(max(xi - 1, 0), min(xi + 2, width)):
                if (nx != xi or ny != yi) and ti - last[ny, nx] < dt_us:
                    supported = True
        keep[i] = supported
        last[yi, xi] = ti
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
