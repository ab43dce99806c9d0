"""numba word decoders behind :mod:`evstream.io.prophesee` (Prophesee RAW EVT 2.0, 2.1 and 3.0).

Each decoder walks a block of words from ``pos``, writes CD events into ``out``, an
``EVENT_DTYPE`` array seen as flat ``int64 [2 n]`` (:func:`packed`: t, then x | y << 16 |
p << 32, so one event is two 8-byte stores and its padding bytes are zero), trigger events into
an ``int64 [n, 3]`` array (t, id, value), and stops at the end of the block, when either output
is full (the caller hands out what was written and calls again from the returned position), or
at the first bad word. Decoder state that must survive between blocks (time high, wrap count,
EVT3 row and vector base, tallies) lives in ``state`` (``int64 [N_STATE]``), so a file is
decoded block by block with bounded memory and exactly as if it were one block.

Status codes: ``DONE`` (block consumed), ``FULL`` (output full at ``pos``), ``BAD_TYPE`` (word
type not in the encoding), ``OFF_GEOMETRY`` (x or y outside the declared sensor),
``TIME_BACKWARDS`` (a time high smaller than the previous one by less than half its range,
which no wrap explains). For the faults, ``state[ERR_A]`` / ``state[ERR_B]`` hold the values
the message quotes and the returned position is the offending word.

Events before the first time high (and, in EVT 3.0, before the first row address) have no
defined time or row: they are dropped and tallied in ``state[DROPPED]``, as OpenEB does.
Words are read as signed int64 after a widening (EVT 2.1 as ``<i8`` views) and every field is
masked after its shift, so no unsigned/signed promotion can reach float.

Speed: EVT 2.0 decodes groups of :data:`GROUP` words that are all CD events (the common case) in
one branch-free loop that LLVM vectorises, and falls back to the word-by-word state machine for a
group holding any other word (DAT and AEDAT 2.0 do the same); EVT 3.0 ADDR_Y / ADDR_X words,
which come in no predictable order, share one branch-free path, a tight loop of its own over each
run of them (1.31x the decode speed of the same path inside the word-by-word loop on the Gen4.1
sample: 1.37 against 1.79 ms, best of 150 interleaved). Vector words write every slot of
the vector whatever the mask (EVT 3.0: the columns of the set bits from a table, EVT 2.1: each
slot, the output advanced by the mask bit), so random masks cost no mispredicted branches (the
slots past the last event are overwritten later or trimmed). A vector decoder therefore stops
with ``FULL`` when fewer than one vector's worth of slots (32 for EVT 2.1, 12 for EVT 3.0) is
left; EVT 2.0 takes its group path only where a whole group fits.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "DONE",
    "FULL",
    "BAD_TYPE",
    "OFF_GEOMETRY",
    "TIME_BACKWARDS",
    "N_STATE",
    "new_state",
    "packed",
    "decode_dat",
    "decode_evt2",
    "decode_evt21",
    "decode_evt3",
    "sync_evt3",
    "count_evt3",
    "sync_time_high",
    "count_evt2",
    "count_evt21",
]

DONE = 0
FULL = 1
BAD_TYPE = 2
OFF_GEOMETRY = 3
TIME_BACKWARDS = 4

# Slots of the state vector.
TIME_HIGH = 0
TIME_LOW = 1
LOOPS = 2
ROW = 3
X_BASE = 4
VECTOR_P = 5
HAVE_TIME = 6
HAVE_ROW = 7
DROPPED = 8
OTHERS = 9
CONTINUED = 10
TIME_HIGHS = 11
ERR_A = 12
ERR_B = 13
N_STATE = 16


GROUP = 32


def _mask_tables() -> tuple[np.ndarray, np.ndarray]:
    """For every 12-bit vector mask: the columns of its set bits in order (``int16 [4096, 12]``,
    padded with the last one) and their count (``int64 [4096]``)."""
    bits = np.zeros((4096, 12), np.int16)
    count = np.zeros(4096, np.int64)
    for mask in range(1, 4096):
        cols = [b for b in range(12) if mask >> b & 1]
        bits[mask, :len(cols)] = cols
        bits[mask, len(cols):] = cols[-1]
        count[mask] = len(cols)
    return bits, count


_MASK_BITS, _MASK_COUNT = _mask_tables()


def new_state() -> np.ndarray:
    """A fresh decoder state (``int64 [N_STATE]``, all zero: no time base yet)."""
    return np.zeros(N_STATE, dtype=np.int64)


def packed(events: np.ndarray) -> np.ndarray:
    """The flat ``int64 [2 n]`` view of a contiguous ``EVENT_DTYPE`` array the decoders write into
    (flat rather than ``[n, 2]`` so that LLVM vectorises the interleaved stores)."""
    return events.view(np.int64)


@njit(cache=True, nogil=True)
def decode_evt2(words, pos, out, trig, state, width, height):
    """EVT 2.0 (``<u4`` words): CD_OFF 0x0 / CD_ON 0x1 (6 time LSBs, 11-bit x, 11-bit y),
    TIME_HIGH 0x8 (28 time MSBs), EXT_TRIGGER 0xA, OTHERS 0xE, CONTINUED 0xF.

    Returns:
        ``(next_pos, n_events, n_triggers, status)``.
    """
    cap = out.shape[0] // 2
    tcap = trig.shape[0]
    th = state[TIME_HIGH]
    loops = state[LOOPS]
    have = state[HAVE_TIME]
    base = (loops << 34) | (th << 6)
    n = 0
    nt = 0
    status = DONE
    i = pos
    nw = words.shape[0]
    while i < nw and status == DONE:
        if have != 0 and i + GROUP <= nw and n + GROUP <= cap:
            # A group of words decoded as CD events in one branch-free pass that LLVM
            # vectorises; kept when every word was one (types 0 and 1: top three bits clear,
            # ``seen``) on the sensor (``bad`` stays >= 0), else redone by the word loop below.
            group = words[i:i + GROUP]
            dest = out[2 * n:2 * (n + GROUP)]
            seen = np.int64(0)
            bad = np.int64(0)
            for j in range(GROUP):
                w = np.int64(group[j])
                xi = (w >> 11) & 0x7FF
                yi = w & 0x7FF
                seen |= w
                bad |= (width - 1 - xi) | (height - 1 - yi)
                dest[2 * j] = base | ((w >> 22) & 0x3F)
                dest[2 * j + 1] = xi | (yi << 16) | ((w >> 28) << 32)
            if seen < 0x20000000 and bad >= 0:
                i += GROUP
                n += GROUP
                continue
            # The group's CD events before its first other (or off-sensor) word were written right:
            # keep them and go word by word from that word on (a TIME_HIGH falls in 3 groups of 10 of
            # a real recording; redoing their CD words one by one cost 9 % of the decode).
            j = 0
            while j < GROUP:
                w = np.int64(group[j])
                if w >= 0x20000000 or ((width - 1 - ((w >> 11) & 0x7FF)) | (height - 1 - (w & 0x7FF))) < 0:
                    break
                j += 1
            i += j
            n += j
        # Word by word up to and including the first word that is not a CD event (or GROUP words).
        end = min(i + GROUP, nw)
        while i < end:
            w = np.int64(words[i])
            kind = (w >> 28) & 0xF
            if kind <= 1:
                if have == 0:
                    state[DROPPED] += 1
                else:
                    if n >= cap:
                        status = FULL
                        break
                    xi = (w >> 11) & 0x7FF
                    yi = w & 0x7FF
                    if xi >= width or yi >= height:
                        state[ERR_A] = xi
                        state[ERR_B] = yi
                        status = OFF_GEOMETRY
                        break
                    out[2 * n] = base | ((w >> 22) & 0x3F)
                    out[2 * n + 1] = xi | (yi << 16) | (kind << 32)
                    n += 1
            elif kind == 0x8:
                high = w & 0xFFFFFFF
                if have != 0 and high < th:
                    if th - high > (1 << 27):
                        loops += 1
                    else:
                        state[ERR_A] = th
                        state[ERR_B] = high
                        status = TIME_BACKWARDS
                        break
                th = high
                have = 1
                base = (loops << 34) | (th << 6)
                state[TIME_HIGHS] += 1
            elif kind == 0xA:
                if have == 0:
                    state[DROPPED] += 1
                else:
                    if nt >= tcap:
                        status = FULL
                        break
                    trig[nt, 0] = base | ((w >> 22) & 0x3F)
                    trig[nt, 1] = (w >> 8) & 0x1F
                    trig[nt, 2] = w & 1
                    nt += 1
            elif kind == 0xE:
                state[OTHERS] += 1
            elif kind == 0xF:
                state[CONTINUED] += 1
            else:
                state[ERR_A] = kind
                status = BAD_TYPE
                break
            i += 1
            if kind > 1:
                break
    state[TIME_HIGH] = th
    state[LOOPS] = loops
    state[HAVE_TIME] = have
    return i, n, nt, status


@njit(cache=True, nogil=True)
def decode_evt21(words, pos, out, trig, state, width, height):
    """EVT 2.1 (64-bit words viewed as ``<i8``): EVT_NEG 0x0 / EVT_POS 0x1 (6 time LSBs, x base,
    y, 32-bit valid mask for pixels x .. x+31), TIME_HIGH 0x8, EXT_TRIGGER 0xA, OTHERS 0xE,
    CONTINUED 0xF; the type sits in bits 60-63 of the little-endian word.

    Returns:
        ``(next_pos, n_events, n_triggers, status)``.
    """
    cap = out.shape[0] // 2
    tcap = trig.shape[0]
    th = state[TIME_HIGH]
    loops = state[LOOPS]
    have = state[HAVE_TIME]
    base = (loops << 34) | (th << 6)
    n = 0
    nt = 0
    status = DONE
    i = pos
    nw = words.shape[0]
    while i < nw:
        w = words[i]
        kind = (w >> 60) & 0xF
        if kind <= 1:
            mask = w & 0xFFFFFFFF
            if have == 0:
                state[DROPPED] += 1
            elif mask != 0:
                if n + 32 > cap:
                    status = FULL
                    break
                xb = (w >> 43) & 0x7FF
                yi = (w >> 32) & 0x7FF
                if xb + 32 > width or yi >= height:
                    last = xb
                    for b in range(32):
                        if (mask >> b) & 1:
                            last = xb + b
                    if last >= width or yi >= height:
                        state[ERR_A] = last
                        state[ERR_B] = yi
                        status = OFF_GEOMETRY
                        break
                ti = base | ((w >> 54) & 0x3F)
                rest = (yi << 16) | (kind << 32)
                for b in range(32):
                    out[2 * n] = ti
                    out[2 * n + 1] = (xb + b) | rest
                    n += (mask >> b) & 1
        elif kind == 0x8:
            high = (w >> 32) & 0xFFFFFFF
            if have != 0 and high < th:
                if th - high > (1 << 27):
                    loops += 1
                else:
                    state[ERR_A] = th
                    state[ERR_B] = high
                    status = TIME_BACKWARDS
                    break
            th = high
            have = 1
            base = (loops << 34) | (th << 6)
            state[TIME_HIGHS] += 1
        elif kind == 0xA:
            if have == 0:
                state[DROPPED] += 1
            else:
                if nt >= tcap:
                    status = FULL
                    break
                trig[nt, 0] = base | ((w >> 54) & 0x3F)
                trig[nt, 1] = (w >> 40) & 0x1F
                trig[nt, 2] = (w >> 32) & 1
                nt += 1
        elif kind == 0xE:
            state[OTHERS] += 1
        elif kind == 0xF:
            state[CONTINUED] += 1
        else:
            state[ERR_A] = kind
            status = BAD_TYPE
            break
        i += 1
    state[TIME_HIGH] = th
    state[LOOPS] = loops
    state[HAVE_TIME] = have
    return i, n, nt, status


@njit(cache=True, nogil=True)
def decode_evt3(words, pos, out, trig, state, width, height):
    """EVT 3.0 (``<u2`` words): ADDR_Y 0x0, ADDR_X 0x2 (one event), VECT_BASE_X 0x3, VECT_12 0x4,
    VECT_8 0x5 (vectors of events from the base, which then advances by 12 or 8), TIME_LOW
    0x6, CONTINUED_4 0x7, TIME_HIGH 0x8, EXT_TRIGGER 0xA, OTHERS 0xE, CONTINUED_12 0xF.
    Time = wraps * 2**24 + time_high * 4096 + time_low µs.

    Returns:
        ``(next_pos, n_events, n_triggers, status)``.
    """
    cap = out.shape[0] // 2
    tcap = trig.shape[0]
    th = state[TIME_HIGH]
    tl = state[TIME_LOW]
    loops = state[LOOPS]
    row = state[ROW]
    xbase = state[X_BASE]
    vpol = state[VECTOR_P]
    have = state[HAVE_TIME]
    have_row = state[HAVE_ROW]
    ti = (loops << 24) | (th << 12) | tl
    ok = have & have_row  # 1 once both a time base and a row are known
    xlim = width - 1
    ylim = height - 1
    row_bad = ylim - row  # negative when the row is off the sensor
    dropped = 0
    n = 0
    nt = 0
    status = DONE
    i = pos
    nw = words.shape[0]
    while i < nw:
        if ok != 0:
            # A run of ADDR_Y / ADDR_X words (most words of a real recording, in no predictable
            # order) in a tight loop of its own, without a branch on which: the event slot is
            # written every time and kept only for an ADDR_X, the row updated through a mask.
            # Unsigned slot indices spare numba's negative-index wrap. The run ends at the first
            # word of another type (0xD masks both types out) or a full output.
            while i < nw and n < cap:
                w = np.int64(words[i])
                if (w >> 12) & 0xD != 0:
                    break
                is_x = (w >> 13) & 1
                xi = w & 0x7FF
                if (((xlim - xi) | row_bad) & -is_x) < 0:
                    state[ERR_A] = xi
                    state[ERR_B] = row
                    status = OFF_GEOMETRY
                    break
                slot = np.uint64(2 * n)
                out[slot] = ti
                out[slot + np.uint64(1)] = xi | (row << 16) | (((w >> 11) & 1) << 32)
                n += is_x
                keep_row = is_x - 1  # all ones for ADDR_Y
                row = (xi & keep_row) | (row & ~keep_row)
                row_bad = ylim - row
                i += 1
            if status != DONE or i >= nw:
                break
        w = np.int64(words[i])
        kind = w >> 12
        if ok != 0 and (kind == 0x0 or kind == 0x2):  # the run above stopped at a full output
            status = FULL
            break
        if kind == 0x0:
            row = w & 0x7FF
            row_bad = ylim - row
            have_row = 1
            ok = have
        elif kind == 0x2:
            dropped += 1
        elif kind == 0x4 or kind == 0x5:
            span = 12 if kind == 0x4 else 8
            mask = w & (0xFFF if kind == 0x4 else 0xFF)
            if have == 0 or have_row == 0:
                state[DROPPED] += 1
            elif mask != 0:
                if n + 12 > cap:
                    status = FULL
                    break
                count = _MASK_COUNT[mask]
                offsets = _MASK_BITS[mask]
                last = xbase + offsets[count - 1]
                if last >= width or row >= height:
                    state[ERR_A] = last
                    state[ERR_B] = row
                    status = OFF_GEOMETRY
                    break
                # twelve slots written whatever the mask (no branch, no chain through n): the
                # first ``count`` hold the vector's events, in column order
                rest = (row << 16) | (vpol << 32)
                dest = out[2 * n:2 * (n + 12)]
                for b in range(12):
                    dest[2 * b] = ti
                    dest[2 * b + 1] = (xbase + offsets[b]) | rest
                n += count
            xbase += span
        elif kind == 0x6:
            tl = w & 0xFFF
            ti = (loops << 24) | (th << 12) | tl
        elif kind == 0x3:
            xbase = w & 0x7FF
            vpol = (w >> 11) & 1
        elif kind == 0x8:
            high = w & 0xFFF
            if have != 0 and high < th:
                if th - high > 2048:
                    loops += 1
                else:
                    state[ERR_A] = th
                    state[ERR_B] = high
                    status = TIME_BACKWARDS
                    break
            th = high
            have = 1
            ok = have_row
            ti = (loops << 24) | (th << 12) | tl
            state[TIME_HIGHS] += 1
        elif kind == 0xA:
            if have == 0:
                state[DROPPED] += 1
            else:
                if nt >= tcap:
                    status = FULL
                    break
                trig[nt, 0] = ti
                trig[nt, 1] = (w >> 8) & 0xF
                trig[nt, 2] = w & 1
                nt += 1
        elif kind == 0xE:
            state[OTHERS] += 1
        elif kind == 0x7 or kind == 0xF:
            state[CONTINUED] += 1
        else:
            state[ERR_A] = kind
            status = BAD_TYPE
            break
        i += 1
    state[DROPPED] += dropped
    state[TIME_HIGH] = th
    state[TIME_LOW] = tl
    state[LOOPS] = loops
    state[ROW] = row
    state[X_BASE] = xbase
    state[VECTOR_P] = vpol
    state[HAVE_TIME] = have
    state[HAVE_ROW] = have_row
    return i, n, nt, status


@njit(cache=True, nogil=True)
def decode_dat(records, out, state, x_mask, y_shift, y_mask, p_shift, width, height):
    """DAT CD events (flat ``<u4 [2 n]``: t µs, packed address per event): the 32-bit µs counter
    unwrapped (a step back of more than 2**31 is a wrap; ``state[TIME_HIGH]`` keeps the last raw
    time + 1, 0 before the first, ``state[LOOPS]`` the wraps), x / y / p unpacked with the
    version's masks. Groups of :data:`GROUP` events without a wrap or an off-sensor event are
    decoded in one vectorised pass; a group holding either is redone event by event.

    Returns:
        ``(n_events, status)``: ``DONE``, or ``OFF_GEOMETRY`` at event ``n_events`` (x, y in
        ``state[ERR_A]`` / ``state[ERR_B]``).
    """
    last = state[TIME_HIGH] - 1
    wraps = state[LOOPS]
    nr = records.shape[0] // 2
    i = 0
    status = DONE
    while i < nr:
        if last >= 0 and i + GROUP <= nr:
            group = records[2 * i:2 * (i + GROUP)]
            dest = out[2 * i:2 * (i + GROUP)]
            high = wraps << 32
            flags = np.int64(0)
            prev = last
            for j in range(GROUP):
                t = np.int64(group[2 * j])
                d = np.int64(group[2 * j + 1])
                xi = d & x_mask
                yi = (d >> y_shift) & y_mask
                # negative when off the sensor or when the step back is a wrap
                flags |= (width - 1 - xi) | (height - 1 - yi) | (t - prev + (1 << 31))
                prev = t
                dest[2 * j] = t + high
                dest[2 * j + 1] = xi | (yi << 16) | (((d >> p_shift) & 1) << 32)
            if flags >= 0:
                last = prev
                i += GROUP
                continue
        end = min(i + GROUP, nr)
        while i < end:
            t = np.int64(records[2 * i])
            d = np.int64(records[2 * i + 1])
            if last >= 0 and t - last < -(1 << 31):
                wraps += 1
            last = t
            xi = d & x_mask
            yi = (d >> y_shift) & y_mask
            if xi >= width or yi >= height:
                state[ERR_A] = xi
                state[ERR_B] = yi
                status = OFF_GEOMETRY
                break
            out[2 * i] = t + (wraps << 32)
            out[2 * i + 1] = xi | (yi << 16) | (((d >> p_shift) & 1) << 32)
            i += 1
        if status != DONE:
            break
    state[TIME_HIGH] = last + 1
    state[LOOPS] = wraps
    return i, status


# -- EVT 3.0 on two threads ----------------------------------------------------------------------
# An EVT 3.0 word's meaning depends on five registers set by earlier words (time high, time low,
# row, vector base x and its polarity), so a second thread cannot start at an arbitrary word. It
# can from the first word after which all five are known from words it has seen itself: the
# decoder's state there is then exactly what one pass from the file's start would have, but for
# the 24-bit time counter's wraps, which only the words before can tell (:func:`count_evt3`
# counts them, with the events, so the second half starts with the right wrap count).


@njit(cache=True, nogil=True)
def sync_evt3(words, start):
    """The first position ``s > start`` after which the words ``start:s`` alone determine every
    decoder register: a TIME_HIGH, a TIME_LOW, an ADDR_Y and a VECT_BASE_X (then the vectors after
    it) have all been seen.

    Returns:
        ``(s, time_high, time_low, row, x_base, vector_p)``; ``s = -1`` when ``words`` ends first.
    """
    th = tl = row = xbase = vpol = 0
    seen = 0  # bits: 1 time high, 2 time low, 4 row, 8 vector base
    for i in range(start, words.shape[0]):
        w = np.int64(words[i])
        kind = w >> 12
        if kind == 0x8:
            th = w & 0xFFF
            seen |= 1
        elif kind == 0x6:
            tl = w & 0xFFF
            seen |= 2
        elif kind == 0x0:
            row = w & 0x7FF
            seen |= 4
        elif kind == 0x3:
            xbase = w & 0x7FF
            vpol = (w >> 11) & 1
            seen |= 8
        elif kind == 0x4:
            xbase += 12
        elif kind == 0x5:
            xbase += 8
        if seen == 15:
            return i + 1, th, tl, row, xbase, vpol
    return -1, th, tl, row, xbase, vpol


@njit(cache=True, nogil=True)
def count_evt3(words, state):
    """The number of CD events :func:`decode_evt3` writes for ``words`` from ``state`` when they
    decode without a fault (ADDR_X words and the set bits of vector masks once a time base and a
    row are known), and the time counter's wraps among them: ``state[LOOPS]``, ``state[TIME_HIGH]``,
    ``state[HAVE_TIME]`` and ``state[HAVE_ROW]`` are advanced as the decoder would. Faults are
    not looked for (the decoder finds them)."""
    th = state[TIME_HIGH]
    loops = state[LOOPS]
    have = state[HAVE_TIME]
    have_row = state[HAVE_ROW]
    nw = words.shape[0]
    n = np.int64(0)
    i = 0
    while i < nw:
        if have != 0 and have_row != 0 and i + GROUP <= nw:
            # a group counted in one branch-free pass LLVM vectorises; kept when it holds no time
            # high (the only word left that changes what is counted), else redone word by word
            group = words[i:i + GROUP]
            c = np.int64(0)
            highs = np.int64(0)
            for j in range(GROUP):
                w = np.int64(group[j])
                kind = w >> 12
                is_vec = np.int64((kind == 0x4) | (kind == 0x5))
                mask = w & (0xFF | (0xF00 * np.int64(kind == 0x4)))
                c += np.int64(kind == 0x2) + _MASK_COUNT[mask * is_vec]
                highs |= np.int64(kind == 0x8)
            if highs == 0:
                n += c
                i += GROUP
                continue
        end = min(i + GROUP, nw)
        while i < end:
            w = np.int64(words[i])
            kind = w >> 12
            ok = have != 0 and have_row != 0
            if kind == 0x8:
                high = w & 0xFFF
                if have != 0 and high < th and th - high > 2048:
                    loops += 1
                th = high
                have = 1
            elif kind == 0x0:
                have_row = 1
            elif ok and kind == 0x2:
                n += 1
            elif ok and kind == 0x4:
                n += _MASK_COUNT[w & 0xFFF]
            elif ok and kind == 0x5:
                n += _MASK_COUNT[w & 0xFF]
            i += 1
    state[TIME_HIGH] = th
    state[LOOPS] = loops
    state[HAVE_TIME] = have
    state[HAVE_ROW] = have_row
    return n


# -- EVT 2.0 and 2.1 on two threads --------------------------------------------------------------
# An EVT 2.x word depends on one register, the time high: the second half starts after the first
# TIME_HIGH word past the middle, with that time high and the first half's wrap count.


@njit(cache=True, nogil=True)
def sync_time_high(type_shift, high_shift, words, start):
    """EVT 2.0 / 2.1: the position after the first TIME_HIGH word at or after ``start``, and its
    time high (the word type in the 4 bits from ``type_shift``: 28 in EVT 2.0, 60 in EVT 2.1; the
    28-bit time high from ``high_shift``: 0 / 32).

    Returns:
        ``(s, time_high)``; ``s = -1`` when ``words`` ends first.
    """
    for i in range(start, words.shape[0]):
        w = np.int64(words[i])
        if (w >> type_shift) & 0xF == 0x8:
            return i + 1, (w >> high_shift) & 0xFFFFFFF
    return -1, 0


@njit(cache=True, nogil=True)
def count_evt2(words, state):
    """The number of CD events :func:`decode_evt2` writes for ``words`` from ``state`` when they
    decode without a fault (CD words once a time high is known), and the time counter's wraps:
    ``state[LOOPS]``, ``state[TIME_HIGH]`` and ``state[HAVE_TIME]`` are advanced as the decoder
    would. Faults are not looked for (the decoder finds them)."""
    th = state[TIME_HIGH]
    loops = state[LOOPS]
    have = state[HAVE_TIME]
    nw = words.shape[0]
    n = np.int64(0)
    i = 0
    while i < nw:
        if have != 0 and i + GROUP <= nw:
            # a group counted in one branch-free pass; kept when it holds no time high
            group = words[i:i + GROUP]
            c = np.int64(0)
            highs = np.int64(0)
            for j in range(GROUP):
                kind = (np.int64(group[j]) >> 28) & 0xF
                c += np.int64(kind <= 1)
                highs |= np.int64(kind == 0x8)
            if highs == 0:
                n += c
                i += GROUP
                continue
        end = min(i + GROUP, nw)
        while i < end:
            w = np.int64(words[i])
            kind = (w >> 28) & 0xF
            if kind == 0x8:
                high = w & 0xFFFFFFF
                if have != 0 and high < th and th - high > (1 << 27):
                    loops += 1
                th = high
                have = 1
            elif kind <= 1 and have != 0:
                n += 1
            i += 1
    state[TIME_HIGH] = th
    state[LOOPS] = loops
    state[HAVE_TIME] = have
    return n


# EVT 2.1: a CD word carries up to 32 events (its mask).


@njit(cache=True, nogil=True, inline="always")
def _popcount32(v):
    v = v - ((v >> 1) & 0x55555555)
    v = (v & 0x33333333) + ((v >> 2) & 0x33333333)
    return (((v + (v >> 4)) & 0x0F0F0F0F) * 0x01010101 >> 24) & 0xFF


@njit(cache=True, nogil=True)
def count_evt21(words, state):
    """:func:`count_evt2` for EVT 2.1: the set bits of the valid masks of CD words once a time
    high is known, and the time counter's wraps."""
    th = state[TIME_HIGH]
    loops = state[LOOPS]
    have = state[HAVE_TIME]
    n = np.int64(0)
    for i in range(words.shape[0]):
        w = words[i]
        kind = (w >> 60) & 0xF
        if kind <= 1:
            if have != 0:
                n += _popcount32(w & 0xFFFFFFFF)
        elif kind == 0x8:
            high = (w >> 32) & 0xFFFFFFF
            if have != 0 and high < th and th - high > (1 << 27):
                loops += 1
            th = high
            have = 1
    state[TIME_HIGH] = th
    state[LOOPS] = loops
    state[HAVE_TIME] = have
    return n
