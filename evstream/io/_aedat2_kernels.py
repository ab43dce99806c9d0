"""numba record decoder behind :mod:`evstream.io.aedat2` (jAER AEDAT 2.0 polarity events).

:func:`decode_records` walks a block of big-endian ``int32 address, int32 timestamp`` records
(viewed as ``<u4 [n, 2]`` and byte-swapped here), unwraps the 32-bit µs counter, tallies the
words that are not DVS events and writes the DVS events into ``out``, an ``EVENT_DTYPE`` array
seen as flat ``int64 [2 n]`` (t, then x | y << 16 | p << 32: two 8-byte stores per event, padding
bytes zero). What must survive between blocks (wraps, last raw time, tallies) lives in ``state``
(``int64 [N_STATE]``), so a file decodes block by block exactly as if it were one block.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["DVS128", "DAVIS", "GROUP", "N_STATE", "new_state", "decode_records"]

DVS128 = 0
DAVIS = 1
GROUP = 32

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
    """Decode ``records`` (flat ``<u4 [2 n]`` view of big-endian address, timestamp pairs) into
    ``out`` (flat ``int64 [>= 2 n]``).

    DVS128 layout: bit 15 or bit 31 set = external event; else polarity ``1 - bit 0``, x bits
    1-7, y bits 8-14. DAVIS layout: bit 31 clear = DVS (bit 10 set: external event), x bits
    12-21, y bits 22-30, polarity bit 11; bit 31 set = APS, or IMU when bits 10 and 11 are set.
    Both: ``x = width - 1 - raw``, ``y = height - 1 - raw`` (jAER's lower-left origin). A step
    back of more than 2**31 µs is the counter wrapping; smaller steps are kept. Groups of
    :data:`GROUP` records that are all DVS events on the sensor without a wrap are decoded in one
    vectorised pass; a group holding anything else is redone record by record.

    Returns:
        ``(n_events, bad)``: ``bad`` is the index of the first DVS record outside the sensor
        (nothing from it on is decoded or tallied), ``-1`` when the block is clean.
    """
    wraps = state[WRAPS]
    last = state[LAST] - 1
    nr = records.shape[0] // 2
    if layout == DVS128:
        other, xs, xm, ys, ym, ps, pflip = 0x80008000, 1, 0x7F, 8, 0x7F, 0, 1
    else:
        other, xs, xm, ys, ym, ps, pflip = 0x80000400, 12, 0x3FF, 22, 0x1FF, 11, 0
    n = 0
    special = 0
    aps = 0
    imu = 0
    bad = -1
    i = 0
    while i < nr:
        if last >= 0 and i + GROUP <= nr:
            group = records[2 * i:2 * (i + GROUP)]
            dest = out[2 * n:2 * (n + GROUP)]
            high = wraps << 32
            seen = np.int64(0)
            flags = np.int64(0)
            prev = last
            for j in range(GROUP):
                a = _swap32(np.int64(group[2 * j]))
                t = _swap32(np.int64(group[2 * j + 1]))
                xr = (a >> xs) & xm
                yr = (a >> ys) & ym
                seen |= a
                # negative when off the sensor or when the step back is a wrap
                flags |= (width - 1 - xr) | (height - 1 - yr) | (t - prev + (1 << 31))
                prev = t
                dest[2 * j] = t + high
                dest[2 * j + 1] = (width - 1 - xr) | ((height - 1 - yr) << 16) | ((((a >> ps) & 1) ^ pflip) << 32)
            if (seen & other) == 0 and flags >= 0:
                last = prev
                i += GROUP
                n += GROUP
                continue
        end = min(i + GROUP, nr)
        while i < end:
            a = _swap32(np.int64(records[2 * i]))
            t = _swap32(np.int64(records[2 * i + 1]))
            dvs = (a & other) == 0
            xr = (a >> xs) & xm
            yr = (a >> ys) & ym
            if not dvs:
                if layout == DVS128 or (a & 0x80000000) == 0:
                    special += 1
                elif (a & 0xC00) == 0xC00:
                    imu += 1
                else:
                    aps += 1
            elif xr >= width or yr >= height:
                bad = i
                break
            if last >= 0 and t - last < -(1 << 31):
                wraps += 1
            last = t
            out[2 * n] = t + (wraps << 32)
            out[2 * n + 1] = (width - 1 - xr) | ((height - 1 - yr) << 16) | ((((a >> ps) & 1) ^ pflip) << 32)
            n += dvs
            i += 1
        if bad >= 0:
            break
    state[WRAPS] = wraps
    state[LAST] = last + 1
    state[EVENTS] += n
    state[SPECIAL] += special
    state[APS] += aps
    state[IMU] += imu
    return n, bad
