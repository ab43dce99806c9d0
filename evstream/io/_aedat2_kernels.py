"""numba record decoder behind :mod:`evstream.io.aedat2` (jAER AEDAT 2.0 polarity events).

:func:`decode_records` walks a block of big-endian ``int32 address, int32 timestamp`` records
(viewed as ``<u4 [n, 2]`` and byte-swapped here), unwraps the 32-bit µs counter, tallies the
words that are not DVS events and writes the DVS events into ``out``, an ``EVENT_DTYPE`` array
seen as ``int64 [n, 2]`` (t, then x | y << 16 | p << 32: two 8-byte stores per event, padding
bytes zero). What must survive between blocks (wraps, last raw time, tallies) lives in ``state``
(``int64 [N_STATE]``), so a file decodes block by block exactly as if it were one block.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["DVS128", "DAVIS", "N_STATE", "new_state", "decode_records"]

DVS128 = 0
DAVIS = 1

# Slots of the state vector.
WRAPS = 0
LAST = 1  # last raw timestamp + 1; 0 before the first record
EVENTS = 2
SPECIAL = 3
APS = 4
IMU = 5
N_STATE = 8


def new_state() -> np.ndarray:
    """A fresh decoder state (``int64 [N_STATE]``: no record seen, nothing counted)."""
    return np.zeros(N_STATE, dtype=np.int64)


@njit(cache=True, nogil=True, inline="always")
def _swap32(v):
    return ((v >> 24) & 0xFF) | ((v >> 8) & 0xFF00) | ((v << 8) & 0xFF0000) | ((v << 24) & 0xFF000000)


@njit(cache=True, nogil=True)
def decode_records(records, out, state, layout, width, height):
    """Decode ``records`` (``<u4 [n, 2]`` views of big-endian words) into ``out`` (``int64 [>= n, 2]``).

    DVS128 layout: bit 15 or bit 31 set = external event; else polarity ``1 - bit 0``, x bits
    1-7, y bits 8-14. DAVIS layout: bit 31 clear = DVS (bit 10 set: external event), x bits
    12-21, y bits 22-30, polarity bit 11; bit 31 set = APS, or IMU when bits 10 and 11 are set.
    Both: ``x = width - 1 - raw``, ``y = height - 1 - raw`` (jAER's lower-left origin). A step
    back of more than 2**31 µs is the counter wrapping; smaller steps are kept.

    Returns:
        ``(n_events, bad)``: ``bad`` is the index of the first DVS record outside the sensor
        (nothing from it on is decoded or tallied), ``-1`` when the block is clean.
    """
    wraps = state[WRAPS]
    last = state[LAST] - 1
    n = 0
    special = 0
    aps = 0
    imu = 0
    bad = -1
    for i in range(records.shape[0]):
        a = _swap32(np.int64(records[i, 0]))
        t = _swap32(np.int64(records[i, 1]))
        if layout == DVS128:
            dvs = (a & 0x80008000) == 0
            xr = (a >> 1) & 0x7F
            yr = (a >> 8) & 0x7F
            pol = 1 - (a & 1)
            if not dvs:
                special += 1
        else:
            dvs = (a & 0x80000400) == 0
            xr = (a >> 12) & 0x3FF
            yr = (a >> 22) & 0x1FF
            pol = (a >> 11) & 1
            if not dvs:
                if (a & 0x80000000) == 0:
                    special += 1
                elif (a & 0xC00) == 0xC00:
                    imu += 1
                else:
                    aps += 1
        if dvs and (xr >= width or yr >= height):
            bad = i
            break
        if last >= 0 and t - last < -(1 << 31):
            wraps += 1
        last = t
        out[n, 0] = t + (wraps << 32)
        out[n, 1] = (width - 1 - xr) | ((height - 1 - yr) << 16) | (pol << 32)
        n += dvs
    state[WRAPS] = wraps
    state[LAST] = last + 1
    state[EVENTS] += n
    state[SPECIAL] += special
    state[APS] += aps
    state[IMU] += imu
    return n, bad
