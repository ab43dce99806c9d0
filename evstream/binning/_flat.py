"""Flat-index kernels of the online Binner: one table sum per event and one add per kept event.

:mod:`evstream._kernels` maps an event through three tables (column, row, channel), checks both
coordinates and indexes a 3-D frame. Here the three tables hold *offsets into one step's flat
frame* ``[C * H * W]`` instead (column, row × W, channel × H × W), and a coordinate the geometry
drops holds a large negative sentinel, so an event's index is one sum and its fate one sign:

- every coordinate kept: ``0 <= k < M`` (``M = C × H × W``, the step's pixel count);
- cropped on one or both axes (:data:`CROP` = ``-M``): ``-2M <= k < 0``;
- outside the sensor on either axis (:data:`OFF` = ``-4M``): ``k < -2M``.

Each step is binned in two passes over blocks of :data:`_BLOCK` events: the indices first (table
reads only), each stored at the next free place of a small buffer that only a kept one advances,
so the kept indices end up packed without a branch (a crop that drops a quarter of the events,
640×480 → 128×128, costs no mispredicted branches); then the adds, one scatter over the packed
indices, used as unsigned so that numba leaves out the negative-index wrap of a signed subscript.
On a little-endian host the events are read as rows of ``uint16 [N, 8]`` (x = column 4, y =
column 5, p = low byte of column 6), whose fixed row stride numba knows at compile time. Measured
on 10 M events, 640×480 → 128×128 on 2 busy cores, CPU time (best of 7): 53 ms for
:func:`evstream._kernels.bin_steps`, 41 ms flat with field views, 33 ms flat over uint16 rows in
one pass, 21 ms in two passes over 16 k-event blocks. Best of 25 wall, interleaved, 100 steps of
10 ms: 65.6 ms when a dropped event added 0 to pixel 0 through a signed subscript, 40.7 ms packed
and unsigned.

No clipping here: a clipped add needs the pixel's value first (the Binner uses
:func:`evstream._kernels.bin_steps` then).
"""

from __future__ import annotations

import sys

import numpy as np
from numba import njit, prange

from evstream import _kernels as K
from evstream.errors import ConfigError
from evstream.events import EVENT_DTYPE

__all__ = [
    "FlatTables",
    "event_rows",
    "bin_steps_flat",
    "bin_steps_flat_rows",
    "bin_steps_flat_rows_parallel",
    "bin_step_flat_rows_halves",
    "is_sorted_serial",
]

# Events as uint16 rows: only for the canonical 16-byte record on a little-endian host.
# Events per pass: their indices (64 KiB of int32) stay in L2 between the two passes.
_BLOCK = 16_384
# Pixels of a step up to which the second half's frame is added in one thread: 2 x 128 x 128 took
# 13 us per push so against 27 us with a second parallel region for the add (100 k events: equal).
_MERGE_SERIAL = 65_536

_ROWS_OK = sys.byteorder == "little" and EVENT_DTYPE.itemsize == 16 and [
    EVENT_DTYPE.fields[name][1] for name in ("x", "y", "p")] == [8, 10, 12]


class FlatTables:
    """The three offset tables of one geometry and channel count (see the module docstring).

    Attributes:
        x: ``int32 [65536]`` column offset per int16 x read as uint16.
        y: ``int32 [65536]`` row offset (row × W) per int16 y read as uint16.
        p: ``int32 [256]`` channel offset (channel × H × W) per polarity byte.
        size: ``M = C × H × W``, the pixels of one step.
    """

    def __init__(self, wide_x: np.ndarray, wide_y: np.ndarray, lut_p: np.ndarray, channels: int, height: int,
                 width: int) -> None:
        self.size = int(channels) * int(height) * int(width)
        if 8 * self.size >= 2**31:
            raise ConfigError(f"out_size: {channels}x{height}x{width} pixels per step is too large for the kernels' int32 offsets")
        crop, off = -self.size, -4 * self.size
        self.x = _offsets(wide_x, 1, crop, off)
        self.y = _offsets(wide_y, int(width), crop, off)
        self.p = (np.asarray(lut_p, dtype=np.int64) * (int(height) * int(width))).astype(np.int32)
        self.p.setflags(write=False)


def _offsets(wide: np.ndarray, scale: int, crop: int, off: int) -> np.ndarray:
    out = np.where(wide >= 0, wide.astype(np.int64) * scale, np.where(wide == K.OFF_SENSOR, off, crop)).astype(np.int32)
    out.setflags(write=False)
    return out


def event_rows(ev: np.ndarray) -> np.ndarray | None:
    """``ev`` as ``uint16 [N, 8]`` rows sharing its memory, or ``None`` when that view does not exist."""
    if not _ROWS_OK or ev.dtype != EVENT_DTYPE or not ev.flags.c_contiguous:
        return None
    return ev.view(np.uint16).reshape(len(ev), 8)


@njit(cache=True, nogil=True, inline="always")
def _tally(s_lo, s_hi, dropped, off_sensor, slot, tallies, totals):
    binned = s_hi - s_lo - dropped
    tallies[slot, K.BINNED] += binned
    tallies[slot, K.OUT_OF_SENSOR] += off_sensor
    tallies[slot, K.OUTSIDE_GEOMETRY] += dropped - off_sensor
    totals[K.BINNED] += binned
    totals[K.OUT_OF_SENSOR] += off_sensor
    totals[K.OUTSIDE_GEOMETRY] += dropped - off_sensor


@njit(cache=True, nogil=True, inline="always")
def _scatter(m, index, frame):
    """Add 1 at each of the first ``m`` flat indices of ``index`` (all kept: ``0 <= k < M``).

    The indices are used as unsigned: numba then skips the negative-index wrap it adds to every
    signed subscript, which here cost more than the add itself."""
    one = frame.dtype.type(1)
    for j in range(m):
        frame[np.uint64(index[np.uint64(j)])] += one


@njit(cache=True, nogil=True, inline="always")
def _keep(k, index, m, off_below):
    """Store flat index ``k`` at ``index[m]`` and return ``(m + kept, outside sensor)``: a dropped
    index is overwritten by the next one, so the kept ones end up packed without a branch."""
    index[np.uint64(m)] = k
    return m + (k >= 0), k < off_below


@njit(cache=True, nogil=True, inline="always")
def _bin_rows(rows, lo, hi, fx, fy, fp, size, frame, index):
    """Events ``lo:hi`` of ``rows`` into one step's flat ``frame``, ``index.size`` events at a time:
    the kept flat indices packed into ``index``, then added. Returns (dropped, outside sensor)."""
    off_below = -2 * size
    dropped = 0
    off_sensor = 0
    for a in range(lo, hi, index.size):
        n = min(index.size, hi - a)
        m = 0
        for j in range(n):
            i = a + j
            m, off = _keep(fx[rows[i, 4]] + fy[rows[i, 5]] + fp[rows[i, 6] & 0xFF], index, m, off_below)
            off_sensor += off
        dropped += n - m
        _scatter(m, index, frame)
    return dropped, off_sensor


@njit(cache=True, nogil=True, inline="always")
def _bin_fields(x, y, p, lo, hi, fx, fy, fp, size, frame, index):
    """:func:`_bin_rows` over field views."""
    off_below = -2 * size
    dropped = 0
    off_sensor = 0
    for a in range(lo, hi, index.size):
        n = min(index.size, hi - a)
        m = 0
        for j in range(n):
            i = a + j
            m, off = _keep(fx[np.uint16(x[i])] + fy[np.uint16(y[i])] + fp[p[i]], index, m, off_below)
            off_sensor += off
        dropped += n - m
        _scatter(m, index, frame)
    return dropped, off_sensor


@njit(cache=True, nogil=True)
def bin_steps_flat_rows(rows, bounds, slots, block_a, block_b, fx, fy, fp, size, tallies, totals):
    """Events ``bounds[s]:bounds[s + 1]`` of ``rows`` (``uint16 [N, 8]``) into ring slot ``slots[s]``.

    The blocks are the Binner's two halves of its ring, flat: ``[steps, M]`` each (``block_a``
    holds slots ``0 .. steps - 1``). Tallies as :func:`evstream._kernels.bin_steps`.
    """
    half = block_a.shape[0]
    index = np.empty(_BLOCK, dtype=np.int32)
    for s in range(slots.size):
        slot = slots[s]
        frame = block_a[slot] if slot < half else block_b[slot - half]
        dropped, off_sensor = _bin_rows(rows, bounds[s], bounds[s + 1], fx, fy, fp, size, frame, index)
        _tally(bounds[s], bounds[s + 1], dropped, off_sensor, slot, tallies, totals)


@njit(cache=True, nogil=True)
def bin_steps_flat(x, y, p, bounds, slots, block_a, block_b, fx, fy, fp, size, tallies, totals):
    """:func:`bin_steps_flat_rows` over field views ``ev["x"], ev["y"], ev["p"]`` (any layout)."""
    half = block_a.shape[0]
    index = np.empty(_BLOCK, dtype=np.int32)
    for s in range(slots.size):
        slot = slots[s]
        frame = block_a[slot] if slot < half else block_b[slot - half]
        dropped, off_sensor = _bin_fields(x, y, p, bounds[s], bounds[s + 1], fx, fy, fp, size, frame, index)
        _tally(bounds[s], bounds[s + 1], dropped, off_sensor, slot, tallies, totals)


@njit(cache=True, nogil=True, parallel=True)
def bin_steps_flat_rows_parallel(rows, bounds, slots, block_a, block_b, fx, fy, fp, size, tallies, totals):
    """:func:`bin_steps_flat_rows` with one thread per step (many steps: slots are distinct, so no races)."""
    half = block_a.shape[0]
    n_steps = slots.size
    for s in range(n_steps):
        for j in range(3):
            totals[j] -= tallies[slots[s], j]
    for s in prange(n_steps):
        slot = slots[s]
        index = np.empty(_BLOCK, dtype=np.int32)
        lo, hi = bounds[s], bounds[s + 1]
        if slot < half:
            dropped, off_sensor = _bin_rows(rows, lo, hi, fx, fy, fp, size, block_a[slot], index)
        else:
            dropped, off_sensor = _bin_rows(rows, lo, hi, fx, fy, fp, size, block_b[slot - half], index)
        tallies[slot, K.BINNED] += hi - lo - dropped
        tallies[slot, K.OUT_OF_SENSOR] += off_sensor
        tallies[slot, K.OUTSIDE_GEOMETRY] += dropped - off_sensor
    for s in range(n_steps):
        for j in range(3):
            totals[j] += tallies[slots[s], j]


@njit(cache=True, nogil=True, parallel=True)
def bin_step_flat_rows_halves(rows, lo, hi, slot, block_a, block_b, fx, fy, fp, size, scratch, tallies, totals):
    """Events ``lo:hi`` of ``rows`` into ring slot ``slot``, in two halves on two threads (one dense step).

    The first half goes straight into the step's frame, the second into ``scratch`` (flat ``[M]``,
    zero on entry), which is then added to the frame and zeroed again (by both threads, each over
    half the pixels, when the frame has more than ``_MERGE_SERIAL``). The counts are integers, so the sum is exact: float32 up to 2^24 per pixel, integer
    dtypes wrap as serial adds would. Tallies as :func:`bin_steps_flat_rows`.
    """
    half = block_a.shape[0]
    frame = block_a[slot] if slot < half else block_b[slot - half]
    mid = lo + (hi - lo) // 2
    parts = np.zeros((2, 2), dtype=np.int64)  # (dropped, outside sensor) per half
    for part in prange(2):
        index = np.empty(_BLOCK, dtype=np.int32)
        if part == 0:
            dropped, off_sensor = _bin_rows(rows, lo, mid, fx, fy, fp, size, frame, index)
        else:
            dropped, off_sensor = _bin_rows(rows, mid, hi, fx, fy, fp, size, scratch, index)
        parts[part, 0] = dropped
        parts[part, 1] = off_sensor
    zero = scratch.dtype.type(0)
    if size <= _MERGE_SERIAL:  # a small frame: adding it here costs less than a second parallel region
        for k in range(size):
            frame[k] += scratch[k]
            scratch[k] = zero
    else:
        split = size // 2
        for part in prange(2):
            a = 0 if part == 0 else split
            b = split if part == 0 else size
            for k in range(a, b):
                frame[k] += scratch[k]
                scratch[k] = zero
    _tally(lo, hi, parts[0, 0] + parts[1, 0], parts[0, 1] + parts[1, 1], slot, tallies, totals)


@njit(cache=True, nogil=True)
def is_sorted_serial(t):
    """True when ``t`` never decreases, in this thread.

    The Binner checks chunk-sized arrays (a live chunk holds 10 ms of events); a parallel region
    for those costs more than the scan, and on busy cores it waits milliseconds for its threads.
    """
    for i in range(t.size - 1):
        if t[i + 1] < t[i]:
            return False
    return True
