"""The online Binner: chunks in as they arrive, complete windows of ``steps`` time steps out.

:class:`Binner` keeps the open steps of the next window, closes them on sensor time (or on
``flush``), applies the time-fault rules (disorder, late events, resets, gaps) and hands out each
:class:`Window` as soon as its last step closes; :class:`BinnerStats` accounts for every event.

Per push the cost is the kernel's (:mod:`evstream.binning._flat`: one table sum and one add per
event, ~2-3 ns on a busy core at 640×480 → 128×128). The open steps live in two window-sized
blocks, so with back-to-back windows (``hop_steps == steps``, the default) a finished window is
its block handed out whole, no copy, and binning goes on in a free buffer from a small pool (a
buffer is free once nothing refers to it, see :class:`Window`); no Python loop runs per step.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal

import numba
import numpy as np

from evstream import _kernels as K
from evstream.binning import _flat as F
from evstream.binning._flat import event_rows
from evstream.binning.frames import PARALLEL_MIN_EVENTS, _clip_value, _new_frames
from evstream.binning.geometry import Geometry, _sensor
from evstream.errors import ConfigError, EventFormatError
from evstream.events import EventChunk, SensorSize, as_events

__all__ = ["Window", "BinnerStats", "Binner"]

_NO_JUMP = 2**61  # a jump threshold no real stream reaches

SPLIT_MIN_EVENTS = 50_000
"""With ``parallel=None``, a step with this many events in one push (and at least a frame's pixel
count, so adding the second half's frame stays cheap) may be binned in two halves on two threads
(:func:`evstream.binning._flat.bin_step_flat_rows_halves`), when that measured faster lately.
A 10 ms step of a 10 Mev/s stream (100 k events, 640×480 → 128×128) took 0.37-0.40 ms serially
and 0.27 ms in halves on two idle cores; beside a process busy on both cores a split push took
16-35 ms when the second thread found no core, against 0.66 ms serially (median). So each
dense push goes the way whose last few pushes were faster (see :meth:`Binner._split_pays`)."""

_PROBE_EVERY = 8  # dense pushes between tries of the way that was slower lately ...
_PROBE_MAX = 1024  # ... four times more up to this while the tries keep losing
_RECENT = 8  # pushes per way whose trimmed mean decides (see _cost)
_POOL_BYTES = 64 * 2**20  # spare window buffers kept: as many as fit here, 2 to 6


def _cost(samples) -> float:
    """Mean seconds per event of a way's latest dense pushes, leaving out the slowest of three or more.

    A mean, because throughput is what counts: beside a busy model, halves were fast on most
    pushes and took 4-8 ms on one in ten or so (waiting for the second core), which a median
    hides (it chose halves and lost ~40 % against serial). Without its slowest push, because any
    push is now and then preempted for milliseconds, and one such push should not flip the choice.
    """
    values = sorted(samples)
    if len(values) >= 3:
        values = values[:-1]
    return sum(values) / len(values)


def _references(buffers: list, i: int) -> int:
    return sys.getrefcount(buffers[i])


# References to a pooled buffer that only the pool's list holds, counted through the same call.
_FREE = _references([np.empty(0)], 0)


class _FramePool:
    """Window buffers ``[steps, C, H, W]``: handed out as ``Window.frames``, reused once free.

    A buffer is free when nothing but this pool refers to it (CPython's reference count): a
    Window, a view of its frames (numpy views keep their base) or a tensor from
    ``Window.tensor()`` (torch keeps the array) all keep it from reuse, so no frames are ever
    overwritten while a consumer can still read them. When every pooled buffer is held, a new
    one is allocated; the pool tracks the ``limit`` most recent buffers and lets go of the oldest
    one a consumer still holds (it is then the consumer's alone and freed with it).
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype, limit: int) -> None:
        self.shape = shape
        self.dtype = dtype
        self.limit = limit
        self.allocated = 0
        self._buffers: list[np.ndarray] = []

    def take(self, zero: bool, busy: tuple[np.ndarray, ...] = ()) -> np.ndarray:
        """A free buffer (zeroed when asked); ``busy`` are buffers the owner still uses (never let go)."""
        buffers = self._buffers
        for i in range(len(buffers)):
            if _references(buffers, i) <= _FREE:
                buffer = buffers[i]
                if zero:
                    buffer.fill(0)
                return buffer
        buffer = np.zeros(self.shape, self.dtype) if zero else np.empty(self.shape, self.dtype)
        self.allocated += 1
        if len(buffers) >= self.limit:
            oldest = next((i for i, b in enumerate(buffers) if not any(b is u for u in busy)), None)
            if oldest is None:
                return buffer
            del buffers[oldest]
        buffers.append(buffer)
        return buffer


@dataclass
class Window:
    """``steps`` consecutive time steps of binned events: what the model takes in one call.

    Attributes:
        frames: ``[T, 2, H, W]`` (``[T, 1, H, W]`` with merged polarity), own C-contiguous memory;
            channel 0 = OFF, 1 = ON. The Binner takes it from a small pool of window buffers and
            reuses it for a later window only once nothing refers to it any more: while you hold
            the Window, its frames, a view of them or ``tensor()``, they are never overwritten.
        t_start: sensor time of the first step's start, µs.
        t_end: end of the last step, µs, exclusive. Count mode: first event's t and last event's
            t + 1.
        step_us: step length, µs; 0 in count mode (steps hold a fixed number of events).
        counts: ``int64 [T]`` events binned into each step (events dropped by the geometry or
            outside the sensor are not counted).
        index: running window number of the Binner, from 0.
    """

    frames: np.ndarray
    t_start: int
    t_end: int
    step_us: int
    counts: np.ndarray
    index: int

    def tensor(self):
        """``frames`` as a torch tensor sharing the memory (zero copy), ``[T, 2, H, W]``."""
        import torch  # evstream core stays importable without torch

        return torch.from_numpy(self.frames)


@dataclass
class BinnerStats:
    """Running counters of a :class:`Binner`; every event pushed ends up in exactly one bucket.

    ``events_in = events_binned + dropped_out_of_bounds + dropped_outside_geometry + dropped_late
    + dropped_disorder + dropped_between_windows + events pending in open steps``, except that a time
    reset discards the open window, whose events were already counted as binned.
    """

    events_in: int = 0
    events_binned: int = 0
    dropped_out_of_bounds: int = 0  # x or y outside the sensor
    dropped_outside_geometry: int = 0  # outside roi / crop
    dropped_late: int = 0  # time mode: older than a step already closed
    dropped_disorder: int = 0  # on_disorder="drop": older than an earlier event
    dropped_between_windows: int = 0  # in steps no window covers (hop_steps > steps)
    sorted_chunks: int = 0  # on_disorder="sort": chunks that needed a stable sort
    time_resets: int = 0  # re-anchors after a jump back > reset_us or ahead > max_gap_us
    windows: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Binner:
    """Online binning of an event stream into :class:`Window` s of ``steps`` time steps.

    Time mode: step ``s`` covers sensor time ``[t0 + s * step_us, t0 + (s + 1) * step_us)``.
    The anchor ``t0`` is the ``t0`` argument, else the first chunk's ``t_start`` (for an
    :class:`EventChunk`) or its first event's t (for a bare array). tonic's
    ``ToFrame(time_window=...)`` anchors at the first event of each whole recording instead;
    both agree when ``t0`` is that first event (``start_time`` in tonic). Window ``k`` holds
    steps ``[k * hop_steps, k * hop_steps + steps)``: back to back by default, overlapping (steps
    reused) when ``hop_steps < steps``.

    A step closes once sensor time has passed its end: an event at t or later, a chunk whose
    ``t_end`` is past it, or ``flush(now_us)`` in a still scene. Closed steps are final, empty ones
    included; a window is emitted as soon as its last step closes.

    Time faults, all counted in :attr:`stats`:
        - disorder inside a chunk: ``on_disorder="sort"`` sorts it (stable), ``"drop"`` drops
          every event older than an earlier one, ``"raise"`` raises :class:`EventFormatError`
          and drops the chunk from the faulty stretch on (counted in ``dropped_disorder``;
          windows completed earlier in that push are returned by the next call);
        - an event older than an already closed step is dropped (``dropped_late``);
        - t jumping back more than ``reset_us`` (a camera timestamp reset) or ahead more than
          ``max_gap_us`` re-anchors at that event: the open, incomplete window is discarded, the
          window index keeps counting (``time_resets``).

    Count mode (``mode="count"``): each step holds ``events_per_step`` events in arrival order
    (chunks are ordered by ``on_disorder``; nothing is late), ``Window.step_us`` is 0 and the
    window times are those of its first and last events.

    Args:
        sensor_size: sensor pixels.
        out_size: model pixels ``(width, height)``; ``None`` = sensor (or roi) size.
        step_us: step length, µs (time mode).
        steps: steps per window T.
        hop_steps: steps between window starts; ``None`` = ``steps``.
        mode: ``"time"`` or ``"count"``.
        events_per_step: events per step in count mode.
        dtype: frame dtype (``FRAME_DTYPES``).
        clip: saturate pixel counts at this value.
        merge_polarity: one channel: ``[T, 1, H, W]``.
        fit: geometry mode, ``"crop"`` or ``"letterbox"`` (named ``mode`` in :class:`Geometry`).
        downsample, flip_x, flip_y, roi: see :class:`Geometry`.
        geometry: a ready :class:`Geometry` (then out_size and the geometry options must be left out).
        on_disorder: ``"sort"``, ``"drop"`` or ``"raise"``.
        parallel: ``None`` = one thread per step from ``PARALLEL_MIN_EVENTS`` events per push
            over several steps, and a step holding ``SPLIT_MIN_EVENTS`` events or more (a dense
            chunk) split over threads; ``True`` = always parallel; ``False`` = serial. Serial
            whatever this says when numba's threading layer is workqueue (see
            :func:`evstream._kernels.threadsafe_parallel`).
        t0: anchor of step 0, µs; ``None`` = from the first push.
        reset_us: a jump back larger than this is a timestamp reset (time mode).
        max_gap_us: a jump ahead larger than this re-anchors instead of emitting empty windows.

    Raises:
        ConfigError: an option out of range (named in the message).
    """

    def __init__(
        self,
        sensor_size: SensorSize | tuple[int, int],
        out_size: tuple[int, int] | SensorSize | None = None,
        step_us: int = 10_000,
        steps: int = 16,
        *,
        hop_steps: int | None = None,
        mode: Literal["time", "count"] = "time",
        events_per_step: int | None = None,
        dtype=np.float32,
        clip: float | None = None,
        merge_polarity: bool = False,
        fit: Literal["crop", "letterbox"] = "crop",
        downsample: Literal["area", "integer"] = "area",
        flip_x: bool = False,
        flip_y: bool = False,
        roi: tuple[int, int, int, int] | None = None,
        geometry: Geometry | None = None,
        on_disorder: Literal["sort", "drop", "raise"] = "sort",
        parallel: bool | None = None,
        t0: int | None = None,
        reset_us: int = 1_000_000,
        max_gap_us: int = 10_000_000,
    ) -> None:
        if mode in ("crop", "letterbox"):
            raise ConfigError(f"mode: the Binner's mode is 'time' or 'count'; for the geometry use fit={mode!r}")
        if mode not in ("time", "count"):
            raise ConfigError(f"mode: 'time' or 'count', got {mode!r}")
        if on_disorder not in ("sort", "drop", "raise"):
            raise ConfigError(f"on_disorder: 'sort', 'drop' or 'raise', got {on_disorder!r}")
        self.steps = int(steps)
        self.hop_steps = self.steps if hop_steps is None else int(hop_steps)
        self.step_us = int(step_us)
        if self.steps <= 0 or self.hop_steps <= 0 or self.step_us <= 0:
            raise ConfigError(f"steps, hop_steps and step_us must be positive, got {self.steps}, {self.hop_steps}, {self.step_us}")
        if mode == "count":
            if events_per_step is None or int(events_per_step) <= 0:
                raise ConfigError(f"events_per_step: count mode needs a positive number, got {events_per_step!r}")
            self.events_per_step = int(events_per_step)
        else:
            self.events_per_step = None
        if geometry is None:
            geometry = Geometry(sensor_size, out_size, mode=fit, downsample=downsample, flip_x=flip_x, flip_y=flip_y, roi=roi)
        elif out_size is not None or roi is not None or flip_x or flip_y:
            raise ConfigError("geometry: give either geometry= or out_size/roi/flip options, not both")
        elif geometry.sensor_size != _sensor(sensor_size, "sensor_size"):
            raise ConfigError(f"geometry: built for a {geometry.sensor_size} sensor, binner sensor is {sensor_size}")
        self.geometry = geometry
        self.sensor_size = geometry.sensor_size
        self.out_size = geometry.out_size
        self.mode = mode
        self.on_disorder = on_disorder
        self.parallel = parallel
        self.reset_us = int(reset_us)
        self.max_gap_us = int(max_gap_us)
        if self.reset_us <= 0 or self.max_gap_us <= 0:
            raise ConfigError(f"reset_us and max_gap_us must be positive, got {self.reset_us}, {self.max_gap_us}")
        self.merge_polarity = bool(merge_polarity)
        self._clip = _clip_value(clip)
        self._cap = 2 * self.steps  # the next window plus room to bin ahead; steps between windows are skipped
        template, self._lut_p, _ = _new_frames(self.steps, geometry, dtype, merge_polarity, clip, zeroed=False)
        # The geometry as flat-index offset tables, computed once (the kernels add one sum per event).
        self._flat = F.FlatTables(geometry._wide_x, geometry._wide_y, self._lut_p, *template.shape[1:])
        spare = min(6, max(2, _POOL_BYTES // max(template.nbytes, 1)))
        self._pool = _FramePool(template.shape, template.dtype, limit=2 + spare)
        # The ring of cap slots as two blocks of `steps` slots: with hop_steps == steps a window
        # is exactly one block, handed out whole (no copy) and replaced by a free pooled buffer.
        self._blocks = [self._pool.take(zero=True), self._pool.take(zero=True)]
        # Threads for parallel kernels: one when numba's threading layer cannot take launches from
        # two threads at once (workqueue), since the pipeline's model thread launches its own.
        self._threads = numba.get_num_threads() if K.threadsafe_parallel() else 1
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        halves = cores > 1 and self._threads > 1 and self._clip == math.inf
        # The second half's frame of a split step, flat (zero between pushes).
        self._scratch = np.zeros(template[0].size if halves else 0, dtype=template.dtype)
        self._totals = np.zeros(3, dtype=np.int64)
        self._dense = 0  # dense pushes so far
        # Seconds per event of the latest dense pushes, split in halves and serial.
        self._recent: tuple[deque, deque] = (deque(maxlen=_RECENT), deque(maxlen=_RECENT))
        self._probe_every = _PROBE_EVERY // 4  # so a first try that loses sets _PROBE_EVERY
        self._probe_at = 0  # the dense push that next tries the slower way (set by the first try)
        self._probing = False
        if parallel is None:
            self._split_min = max(SPLIT_MIN_EVENTS, template[0].size)
        else:
            self._split_min = 2
        self._tallies = np.zeros((self._cap, 3), dtype=np.int64)
        self._first_t = np.zeros(self._cap, dtype=np.int64)  # count mode: t of each step's first event
        self._last_t = np.zeros(self._cap, dtype=np.int64)  # and its last
        self._index = 0
        self.stats = BinnerStats()
        self._held: list[Window] = []
        self._restart(None if t0 is None else int(t0))

    @property
    def t0(self) -> int | None:
        """Anchor of step 0 in sensor time, µs (``None`` until the first push)."""
        return self._t0

    def reset(self, t0: int | None = None) -> None:
        """Forget every open step and the anchor (e.g. after a seek); counters and index keep going."""
        self._restart(t0)

    def _restart(self, t0: int | None) -> None:
        self._t0 = t0
        self._tmax = K.NEVER if t0 is None else t0
        self._base = 0  # absolute step held by slot base % cap; steps base .. base + cap - 1 are in the buffer
        self._closed = 0  # steps below this are final
        self._win_first = 0  # first step of the next window
        self._consumed = 0  # count mode: events assigned to steps since the anchor
        for block in self._blocks:
            block.fill(0)
        self._tallies.fill(0)

    def push(self, data: np.ndarray | EventChunk) -> list[Window]:
        """Add events (an array or an :class:`EventChunk`); return the windows they complete, oldest first.

        Raises:
            EventFormatError: wrong dtype (nothing changes), or disorder with ``on_disorder="raise"``.
        """
        t_end = None
        if isinstance(data, EventChunk):
            ev = as_events(data.events, name="chunk.events")
            t_end = int(data.t_end)
            if self._t0 is None and self.mode == "time":
                start = int(data.t_start) if len(ev) == 0 else min(int(data.t_start), int(ev["t"].min()))
                self._restart(start)
        else:
            ev = as_events(data)
        out, self._held = self._held, []
        self.stats.events_in += len(ev)
        try:
            if self.mode == "count":
                self._push_count(ev, out)
            else:
                self._push_time(ev, out)
                if t_end is not None and self._t0 is not None:
                    self._advance(t_end, out)
        except EventFormatError:
            self._held = out
            raise
        return out

    def flush(self, now_us: int) -> list[Window]:
        """Close every step that ends at or before ``now_us`` (sensor time, µs); return completed windows.

        For a still scene in live mode: call it on a timer with the sensor time now, and windows
        keep coming (empty ones) with no events. Count mode has no time steps: returns nothing new.
        """
        out, self._held = self._held, []
        if self.mode == "time" and self._t0 is not None:
            self._advance(int(now_us), out)
        return out

    def finish(self) -> list[Window]:
        """End of stream: the windows still held, then the open steps of the next window as one
        shorter window (``T' < steps`` steps, the last possibly only partly covered in time), so the
        tail of a recording — or all of a recording shorter than one window — is classified too.
        A classifier that carries its state takes it exactly as it would have taken the first
        ``T'`` steps of a whole window. The binner then starts over (as after :meth:`reset`).
        Count mode: the held windows only (a partly filled count step is not a step).
        """
        out, self._held = self._held, []
        if self.mode != "time" or self._t0 is None or self._tmax < self._t0:
            return out
        end = (self._tmax - self._t0) // self.step_us + 1  # steps with events or covered time
        end = max(end, self._closed)
        self._close(end, out)  # whole windows first (only with overlapping windows can one be due here)
        k = min(end - self._win_first, self.steps)
        if k > 0:
            whole = self._window(self._win_first)
            out.append(Window(whole.frames[:k], whole.t_start, whole.t_start + k * self.step_us, self.step_us,
                              whole.counts[:k].copy(), whole.index))
        self._restart(None)
        return out

    # time mode -------------------------------------------------------------------------------

    def _push_time(self, ev: np.ndarray, out: list[Window]) -> None:
        while len(ev):
            if self._t0 is None:
                self._restart(int(ev["t"][0]))
            top = max(self._tmax, self._t0 + self._closed * self.step_us)
            disorder, jump = K.scan_order(ev["t"], top, self.reset_us, self.max_gap_us)
            cut = len(ev) if jump < 0 else jump
            piece, ev = ev[:cut], ev[cut:]
            if len(piece):
                if 0 <= disorder < cut:
                    piece = self._order(piece, self._tmax, unprocessed=len(ev))
                self._bin_time(piece, out)
            if len(ev):
                self.stats.time_resets += 1
                self._restart(int(ev["t"][0]))

    def _order(self, piece: np.ndarray, top: int, unprocessed: int = 0) -> np.ndarray:
        """Apply ``on_disorder`` to a chunk whose t is not monotonic; ``top`` = newest t seen before it.

        On "raise", the piece and the ``unprocessed`` events after it are dropped and counted.
        """
        t = piece["t"]
        if self.on_disorder == "raise":
            if not F.is_sorted_serial(t):
                self.stats.dropped_disorder += len(piece) + unprocessed
                i = int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
                raise EventFormatError(f"events: field 't' goes backwards at index {i} ({int(t[i - 1])} -> {int(t[i])} µs)")
            return piece
        if self.on_disorder == "drop":
            keep = t >= np.maximum.accumulate(np.maximum(t, top))
            self.stats.dropped_disorder += int(len(piece) - keep.sum())
            return piece[keep]
        if F.is_sorted_serial(t):  # only older than earlier chunks: the late rule decides
            return piece
        self.stats.sorted_chunks += 1
        return piece[np.argsort(t, kind="stable")]

    def _bin_time(self, ev: np.ndarray, out: list[Window]) -> None:
        step = self.step_us
        t = ev["t"]
        late = int(t.searchsorted(self._t0 + self._closed * step, side="left"))
        self.stats.dropped_late += late
        ev, t = ev[late:], t[late:]
        while len(ev):
            limit = self._t0 + (self._base + self._cap) * step
            k = int(t.searchsorted(limit, side="left"))
            if k:
                first = (int(t[0]) - self._t0) // step
                last = (int(t[k - 1]) - self._t0) // step
                edges = self._t0 + np.arange(first, last + 2, dtype=np.int64) * step
                bounds = t[:k].searchsorted(edges, side="left").astype(np.int64)
                self._bin(ev[:k], bounds, np.arange(first, last + 1, dtype=np.int64))
            self._tmax = max(self._tmax, int(t[k - 1] if k == len(ev) else t[k]))
            self._close((self._tmax - self._t0) // step, out)
            ev, t = ev[k:], t[k:]

    def _advance(self, now_us: int, out: list[Window]) -> None:
        if now_us - (self._t0 + self._closed * self.step_us) > self.max_gap_us:
            self.stats.time_resets += 1
            self._restart(now_us)
            return
        self._close((now_us - self._t0) // self.step_us, out)

    # count mode ------------------------------------------------------------------------------

    def _push_count(self, ev: np.ndarray, out: list[Window]) -> None:
        if not len(ev):
            return
        t0 = int(ev["t"][0])
        disorder, _ = K.scan_order(ev["t"], t0, _NO_JUMP, _NO_JUMP)  # within the chunk only
        if disorder >= 0:
            ev = self._order(ev, K.NEVER)
        if self._t0 is None:
            self._restart(int(ev["t"][0]))
        n = self.events_per_step
        while len(ev):
            room = (self._base + self._cap) * n - self._consumed
            part, ev = ev[:room], ev[room:]
            first = self._consumed // n
            last = (self._consumed + len(part) - 1) // n
            abs_steps = np.arange(first, last + 1, dtype=np.int64)
            bounds = np.clip(np.append(abs_steps, last + 1) * n - self._consumed, 0, len(part)).astype(np.int64)
            self._bin(part, bounds, abs_steps)
            t = part["t"]
            slots = abs_steps % self._cap
            starts, ends = bounds[:-1], bounds[1:]
            fresh = (abs_steps * n >= self._consumed) & (abs_steps >= self._base)  # first event in this part
            self._first_t[slots[fresh]] = t[starts[fresh]]
            live = abs_steps >= self._base
            self._last_t[slots[live]] = t[ends[live] - 1]
            self._consumed += len(part)
            self._close(self._consumed // n, out)

    # shared ----------------------------------------------------------------------------------

    def _bin(self, ev: np.ndarray, bounds: np.ndarray, abs_steps: np.ndarray) -> None:
        """Bin ``ev`` split by ``bounds`` into the buffered absolute steps ``abs_steps``; tally.

        Steps before ``_base`` belong to no window (``hop_steps > steps`` leaves gaps): their
        events are skipped and counted.
        """
        skip = int(abs_steps.searchsorted(self._base, side="left"))
        if skip:
            self.stats.dropped_between_windows += int(bounds[skip] - bounds[0])
            abs_steps, bounds = abs_steps[skip:], bounds[skip:]
            if not abs_steps.size:
                return
        slots = abs_steps % self._cap
        sizes = bounds[1:] - bounds[:-1]  # events per step
        totals = self._totals
        totals.fill(0)
        rows = event_rows(ev) if self._clip == math.inf else None
        threads = self._threads > 1 and self.parallel is not False
        if threads and slots.size >= self._threads and (self.parallel or len(ev) >= PARALLEL_MIN_EVENTS):
            self._kernel(ev, rows, bounds, slots, parallel=True)  # many steps: one thread per step
        elif (self.parallel is False or rows is None or not len(self._scratch)
              or int(sizes.max()) < self._split_min):
            self._kernel(ev, rows, bounds, slots)
        elif self.parallel is None and not self._split_pays():
            started = time.perf_counter()
            self._kernel(ev, rows, bounds, slots)
            self._clocked(False, started, len(ev))
        else:
            # A dense step (e.g. a 10 ms chunk of a fast stream): bin it in two halves on two threads.
            started = time.perf_counter()
            start = 0
            a, b = self._blocks
            fa, fb, flat = a.reshape(len(a), -1), b.reshape(len(b), -1), self._flat
            for s in np.flatnonzero(sizes >= self._split_min).tolist():
                if s > start:
                    self._kernel(ev, rows, bounds[start:s + 1], slots[start:s])
                F.bin_step_flat_rows_halves(rows, bounds[s], bounds[s + 1], slots[s], fa, fb, flat.x, flat.y, flat.p,
                                            flat.size, self._scratch, self._tallies, totals)
                start = s + 1
            if start < slots.size:
                self._kernel(ev, rows, bounds[start:], slots[start:])
            self._clocked(True, started, len(ev))
        binned, outside_sensor, outside_geometry = totals.tolist()
        self.stats.events_binned += binned
        self.stats.dropped_out_of_bounds += outside_sensor
        self.stats.dropped_outside_geometry += outside_geometry

    def _split_pays(self) -> bool:
        """Whether this dense push should bin its dense steps in halves on two threads.

        Halves only help when a second core is free; beside a model busy on every core a split
        push waits milliseconds for its second thread. So both ways are timed (seconds per event,
        :meth:`_clocked`) and the one whose last ``_RECENT`` pushes cost less per event
        (:func:`_cost`) is taken: serial first, then one split push, then whichever is faster. Every
        ``_probe_every``-th dense push tries the slower way afresh (its history cleared, so one
        push decides), in case the load changed; while such tries keep losing, they come four
        times rarer (8, 32, 128, 512, then every 1024 dense pushes; a win switches ways and
        leaves the interval: under load a try now and then wins by luck, and the next push of
        that way, slow again, switches back), so a lasting load costs one slow push per ~10 s of
        a 10 ms-chunk stream and about five in its first 10 s, and a first try that was unlucky
        is tried again 80 ms later.
        """
        self._dense += 1
        split, serial = self._recent
        if not serial:
            return False
        if not split:
            self._probing = True
            return True
        faster = _cost(split) <= _cost(serial)
        if self._dense < self._probe_at:
            return faster
        self._probing = True
        self._recent[1 if faster else 0].clear()
        return not faster

    def _clocked(self, split: bool, started: float, n: int) -> None:
        """Record one dense push's seconds per event; after a try of the slower way, set the next."""
        per_event = (time.perf_counter() - started) / max(n, 1)
        self._recent[0 if split else 1].append(per_event)
        if self._probing:
            self._probing = False
            other = self._recent[1 if split else 0]
            lost = bool(other) and per_event > _cost(other)
            if lost:
                self._probe_every = min(4 * self._probe_every, _PROBE_MAX)
            self._probe_at = self._dense + self._probe_every

    def _kernel(self, ev: np.ndarray, rows: np.ndarray | None, bounds: np.ndarray, slots: np.ndarray,
                parallel: bool = False) -> None:
        """Bin ``bounds[s]:bounds[s + 1]`` into ring slots ``slots[s]`` of the open steps' blocks.

        Without clipping through the flat-index kernels (:mod:`evstream.binning._flat`), over
        ``rows`` (the events as ``uint16`` rows, see ``event_rows``) when given; clipped with
        :mod:`evstream._kernels`' kernels, which read each pixel before adding.
        """
        a, b = self._blocks
        tallies, totals, flat = self._tallies, self._totals, self._flat
        if self._clip == math.inf and (rows is not None or not parallel):
            fa, fb = a.reshape(len(a), flat.size), b.reshape(len(b), flat.size)
            if rows is None:
                F.bin_steps_flat(ev["x"], ev["y"], ev["p"], bounds, slots, fa, fb, flat.x, flat.y, flat.p, flat.size,
                                 tallies, totals)
            else:
                kernel = F.bin_steps_flat_rows_parallel if parallel else F.bin_steps_flat_rows
                kernel(rows, bounds, slots, fa, fb, flat.x, flat.y, flat.p, flat.size, tallies, totals)
            return
        kernel = K.bin_steps_parallel if parallel else K.bin_steps
        kernel(ev["x"], ev["y"], ev["p"], bounds, slots, a, b, self.geometry._wide_x, self.geometry._wide_y,
               self._lut_p, self._clip != math.inf, self._clip, tallies, totals)

    def _close(self, closed: int, out: list[Window]) -> None:
        """Mark steps below ``closed`` final and emit every window they complete."""
        if closed <= self._closed:
            return
        self._closed = closed
        self._handed = [False, False]  # blocks handed out whole (and replaced) in this call
        while self._win_first + self.steps <= self._closed:
            out.append(self._window(self._win_first))
            self._win_first += self.hop_steps
        if self._win_first > self._base:
            # Steps before the next window are no longer needed: clear their slots for reuse. Those
            # past the last window emitted (hop_steps > steps) were binned but are in no window.
            covered = self._win_first - self.hop_steps + self.steps
            freed = np.arange(self._base, min(self._win_first, self._base + self._cap), dtype=np.int64)
            slots = freed % self._cap
            skipped = int(self._tallies[slots[freed >= covered], K.BINNED].sum())
            self.stats.events_binned -= skipped
            self.stats.dropped_between_windows += skipped
            self._tallies[slots] = 0
            for b, block in enumerate(self._blocks):
                if not self._handed[b]:
                    local = slots[slots // self.steps == b] - b * self.steps
                    if local.size == self.steps:
                        block.fill(0)
                    elif local.size:
                        block[local] = 0
            self._base = self._win_first

    def _window(self, first: int) -> Window:
        steps, cap = self.steps, self._cap
        inside = max(0, min(steps, self._base + cap - first))  # steps of this window in the buffer
        slots = np.arange(first, first + inside, dtype=np.int64) % cap
        counts = np.zeros(steps, dtype=np.int64)
        counts[:inside] = self._tallies[slots, K.BINNED]
        if inside == steps and self.hop_steps == steps:
            # Back-to-back windows sit exactly on a block: hand it out, bin on in a free buffer.
            b = (first % cap) // steps
            frames = self._blocks[b]
            self._blocks[b] = self._pool.take(zero=True, busy=tuple(self._blocks))
            self._handed[b] = True
        else:
            frames = self._pool.take(zero=inside < steps, busy=tuple(self._blocks))
            j = 0
            while j < inside:  # at most three runs of consecutive slots
                b, local = divmod(int(slots[j]), steps)
                length = min(inside - j, steps - local)
                frames[j:j + length] = self._blocks[b][local:local + length]
                j += length
        if self.mode == "count":
            first_slot, last_slot = first % cap, (first + steps - 1) % cap
            t_start, t_end, step_us = int(self._first_t[first_slot]), int(self._last_t[last_slot]) + 1, 0
        else:
            t_start = self._t0 + first * self.step_us
            t_end, step_us = t_start + steps * self.step_us, self.step_us
        window = Window(frames, t_start, t_end, step_us, counts, self._index)
        self._index += 1
        self.stats.windows += 1
        return window

    @property
    def frame_buffers(self) -> int:
        """Window buffers allocated so far (two for the open steps, then one whenever every pooled
        buffer is still held by a consumer); flat while consumers let go of the windows they had."""
        return self._pool.allocated
