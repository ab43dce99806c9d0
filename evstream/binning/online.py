"""The online Binner: chunks in as they arrive, complete windows of ``steps`` time steps out.

:class:`Binner` keeps the open steps of the next window, closes them on sensor time (or on
``flush``), applies the time-fault rules (disorder, late events, resets, gaps) and hands out each
:class:`Window` as soon as its last step closes; :class:`BinnerStats` accounts for every event.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np

from evstream import _kernels as K
from evstream.binning.frames import _bin_ranges, _clip_value, _new_frames, _use_parallel
from evstream.binning.geometry import Geometry, _sensor
from evstream.errors import ConfigError, EventFormatError
from evstream.events import EventChunk, SensorSize, as_events

__all__ = ["Window", "BinnerStats", "Binner"]

_NO_JUMP = 2**61  # a jump threshold no real stream reaches


@dataclass
class Window:
    """``steps`` consecutive time steps of binned events: what the model takes in one call.

    Attributes:
        frames: ``[T, 2, H, W]`` (``[T, 1, H, W]`` with merged polarity), own C-contiguous memory;
            channel 0 = OFF, 1 = ON.
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
        parallel: ``None`` = parallel kernels from ``PARALLEL_MIN_EVENTS`` events per call.
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
        self._pending, self._lut_p, _ = _new_frames(self._cap, geometry, dtype, merge_polarity, clip)
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
        self._pending.fill(0)
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
            if not K.is_sorted(t):
                self.stats.dropped_disorder += len(piece) + unprocessed
                i = int(np.flatnonzero(np.diff(t) < 0)[0]) + 1
                raise EventFormatError(f"events: field 't' goes backwards at index {i} ({int(t[i - 1])} -> {int(t[i])} µs)")
            return piece
        if self.on_disorder == "drop":
            keep = t >= np.maximum.accumulate(np.maximum(t, top))
            self.stats.dropped_disorder += int(len(piece) - keep.sum())
            return piece[keep]
        if K.is_sorted(t):  # only older than earlier chunks: the late rule decides
            return piece
        self.stats.sorted_chunks += 1
        return piece[np.argsort(t, kind="stable")]

    def _bin_time(self, ev: np.ndarray, out: list[Window]) -> None:
        step = self.step_us
        t = ev["t"]
        late = int(np.searchsorted(t, self._t0 + self._closed * step, side="left"))
        self.stats.dropped_late += late
        ev, t = ev[late:], t[late:]
        while len(ev):
            limit = self._t0 + (self._base + self._cap) * step
            k = int(np.searchsorted(t, limit, side="left"))
            if k:
                first = (int(t[0]) - self._t0) // step
                last = (int(t[k - 1]) - self._t0) // step
                edges = self._t0 + np.arange(first, last + 2, dtype=np.int64) * step
                bounds = np.searchsorted(t[:k], edges, side="left").astype(np.int64)
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
        skip = int(np.searchsorted(abs_steps, self._base, side="left"))
        if skip:
            self.stats.dropped_between_windows += int(bounds[skip] - bounds[0])
            abs_steps, bounds = abs_steps[skip:], bounds[skip:]
            if not abs_steps.size:
                return
        before = self._tallies.sum(axis=0)
        _bin_ranges(
            ev, bounds, abs_steps % self._cap, self.geometry, self._lut_p, self._clip, self._pending, self._tallies,
            _use_parallel(self.parallel, len(ev)),
        )
        binned, outside_sensor, outside_geometry = (int(v) for v in self._tallies.sum(axis=0) - before)
        self.stats.events_binned += binned
        self.stats.dropped_out_of_bounds += outside_sensor
        self.stats.dropped_outside_geometry += outside_geometry

    def _close(self, closed: int, out: list[Window]) -> None:
        """Mark steps below ``closed`` final and emit every window they complete."""
        if closed <= self._closed:
            return
        self._closed = closed
        while self._win_first + self.steps <= self._closed:
            out.append(self._window(self._win_first))
            self._win_first += self.hop_steps
        if self._win_first > self._base:
            # Steps before the next window are no longer needed: clear their slots for reuse. Those
            # past the last window emitted (hop_steps > steps) were binned but are in no window.
            covered = self._win_first - self.hop_steps + self.steps
            for s in range(self._base, min(self._win_first, self._base + self._cap)):
                slot = s % self._cap
                if s >= covered:
                    skipped = int(self._tallies[slot, K.BINNED])
                    self.stats.events_binned -= skipped
                    self.stats.dropped_between_windows += skipped
                self._pending[slot] = 0
                self._tallies[slot] = 0
            self._base = self._win_first

    def _window(self, first: int) -> Window:
        frames = np.empty((self.steps, *self._pending.shape[1:]), dtype=self._pending.dtype)
        counts = np.zeros(self.steps, dtype=np.int64)
        for j in range(self.steps):  # one copy per step, straight from its slot
            step = first + j
            if step < self._base + self._cap:
                frames[j] = self._pending[step % self._cap]
                counts[j] = self._tallies[step % self._cap, K.BINNED]
            else:  # past the buffer: never written, empty
                frames[j] = 0
        if self.mode == "count":
            first_slot, last_slot = first % self._cap, (first + self.steps - 1) % self._cap
            t_start, t_end, step_us = int(self._first_t[first_slot]), int(self._last_t[last_slot]) + 1, 0
        else:
            t_start = self._t0 + first * self.step_us
            t_end, step_us = t_start + self.steps * self.step_us, self.step_us
        window = Window(frames, t_start, t_end, step_us, counts, self._index)
        self._index += 1
        self.stats.windows += 1
        return window
