"""Event binning: sensor pixels to model pixels, events to ``[T, 2, H, W]`` frames, online.

Three parts, one kernel family (:mod:`evstream._kernels`):

- :class:`Geometry` maps sensor pixels to model pixels (region of interest, centre crop or
  letterbox to the output aspect, downsample, flips) through one lookup table per axis.
- :func:`bin_events` / :func:`bin_events_by_count` bin a whole array at once.
- :class:`Binner` does the same online: ``push`` chunks as they arrive, get back every
  :class:`Window` of ``steps`` consecutive time steps that is complete, in sensor time.

Frames follow tonic's ``ToFrame`` layout: ``[T, P, H, W]`` with channel 0 = OFF, 1 = ON (DESIGN.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import numba
import numpy as np

from evstream import _kernels as K
from evstream.errors import ConfigError, EventFormatError
from evstream.events import EVENT_DTYPE, EventChunk, SensorSize, as_events

__all__ = [
    "Geometry",
    "density_scale",
    "Window",
    "BinnerStats",
    "Binner",
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
_NO_JUMP = 2**61  # a jump threshold no real stream reaches


def _sensor(size: SensorSize | tuple[int, int], name: str) -> SensorSize:
    if isinstance(size, SensorSize):
        return size
    try:
        width, height = (int(v) for v in size)
        return SensorSize(width, height)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected positive (width, height), got {size!r}") from None


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


class Geometry:
    """How sensor pixels map to model pixels; every kept event lands in exactly one output pixel.

    Order: region of interest (``roi``) → fit the output aspect (``mode``) → downsample
    (``downsample``) → flips (on the output, so a flipped frame is exactly the mirror image).

    ``mode``:
        ``"crop"``: keep the centred part of the region that has the output's aspect; events
        outside it are dropped (counted as outside the geometry). Chooses resolution over view.
        ``"letterbox"``: scale the whole region into the output, centred, with empty bands; no
        event is dropped. Chooses view over resolution.

    ``downsample``:
        ``"area"``: ``o = floor(u * S / L)`` for a region of ``L`` pixels shown on ``S`` output
        pixels: any ratio (640×480 → 128×128 crops 480×480 and maps 15 sensor pixels to 4);
        count preserving because floor maps each input pixel to one output pixel.
        ``"integer"``: ``o = floor(u / k)`` with an integer factor ``k`` — every output pixel
        sums exactly ``k × k`` sensor pixels (uniform weight), but the view is smaller or the
        bands wider: with crop ``k = min(L_w // W, L_h // H)`` (640×480 → 128×128 with k = 3
        shows the central 384×384 pixels); with letterbox ``k = ceil(max(L_w / W, L_h / H))``.

    Args:
        sensor_size: sensor pixels (``SensorSize`` or ``(width, height)``).
        out_size: model pixels ``(width, height)``; ``None`` = the sensor (or roi) size.
        mode: ``"crop"`` or ``"letterbox"``.
        downsample: ``"area"`` or ``"integer"``.
        flip_x: mirror the output left-right.
        flip_y: mirror the output top-bottom.
        roi: ``(x, y, w, h)`` sensor rectangle to use; ``None`` = whole sensor.

    Attributes:
        lut_x: ``int32 [sensor width]``: output column per sensor column, ``-1`` = dropped.
        lut_y: ``int32 [sensor height]``: output row per sensor row, ``-1`` = dropped.

    Raises:
        ConfigError: a bad size, mode, roi outside the sensor, or an integer factor below 1.
    """

    def __init__(
        self,
        sensor_size: SensorSize | tuple[int, int],
        out_size: tuple[int, int] | SensorSize | None = None,
        mode: Literal["crop", "letterbox"] = "crop",
        downsample: Literal["area", "integer"] = "area",
        flip_x: bool = False,
        flip_y: bool = False,
        roi: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.sensor_size = _sensor(sensor_size, "sensor_size")
        if mode not in ("crop", "letterbox"):
            raise ConfigError(f"mode: geometry mode is 'crop' or 'letterbox', got {mode!r}")
        if downsample not in ("area", "integer"):
            raise ConfigError(f"downsample: 'area' or 'integer', got {downsample!r}")
        if roi is None:
            roi = (0, 0, self.sensor_size.width, self.sensor_size.height)
        rx, ry, rw, rh = (int(v) for v in roi)
        if rw <= 0 or rh <= 0 or rx < 0 or ry < 0 or rx + rw > self.sensor_size.width or ry + rh > self.sensor_size.height:
            raise ConfigError(f"roi: {roi!r} is not inside the {self.sensor_size} sensor")
        self.roi = (rx, ry, rw, rh)
        self.out_size = SensorSize(rw, rh) if out_size is None else _sensor(out_size, "out_size")
        self.mode = mode
        self.downsample = downsample
        self.flip_x = bool(flip_x)
        self.flip_y = bool(flip_y)
        (sx, off_x, den_x, num_x), (sy, off_y, den_y, num_y) = self._fit(rw, rh)
        self.lut_x = self._axis(self.sensor_size.width, rx, rw, sx, off_x, den_x, num_x, self.out_size.width, self.flip_x)
        self.lut_y = self._axis(self.sensor_size.height, ry, rh, sy, off_y, den_y, num_y, self.out_size.height, self.flip_y)
        self._wide_x = self._widen(self.lut_x)
        self._wide_y = self._widen(self.lut_y)

    def _fit(self, rw: int, rh: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """Per axis ``(skip, pad, den, num)``: ``o = pad + (u - skip) * num // den`` for ``0 <= u - skip < span``.

        ``skip`` = region pixels cut off before the kept span (crop), ``pad`` = empty output
        pixels before the image (letterbox).
        """
        ow, oh = self.out_size.width, self.out_size.height
        if self.downsample == "area":
            if self.mode == "crop":
                if rw * oh >= rh * ow:  # region wider than the output: keep full height
                    cw, ch = min(rw, max(1, round(rh * ow / oh))), rh
                else:
                    cw, ch = rw, min(rh, max(1, round(rw * oh / ow)))
                return ((rw - cw) // 2, 0, cw, ow), ((rh - ch) // 2, 0, ch, oh)
            if rw * oh >= rh * ow:
                sw, sh = ow, min(oh, max(1, round(rh * ow / rw)))
            else:
                sw, sh = min(ow, max(1, round(rw * oh / rh))), oh
            return (0, (ow - sw) // 2, rw, sw), (0, (oh - sh) // 2, rh, sh)
        if self.mode == "crop":
            k = min(rw // ow, rh // oh)
            if k < 1:
                raise ConfigError(
                    f"downsample: 'integer' crop needs out_size {self.out_size} <= roi {rw}x{rh}; use 'area' or 'letterbox'"
                )
            return ((rw - ow * k) // 2, 0, k, 1), ((rh - oh * k) // 2, 0, k, 1)
        k = max(-(-rw // ow), -(-rh // oh))
        sw, sh = -(-rw // k), -(-rh // k)
        return (0, (ow - sw) // 2, k, 1), (0, (oh - sh) // 2, k, 1)

    @staticmethod
    def _axis(n: int, r0: int, span: int, skip: int, pad: int, den: int, num: int, out: int, flip: bool) -> np.ndarray:
        lut = np.full(n, K.CROPPED, dtype=np.int32)
        u = np.arange(span, dtype=np.int64) - skip
        if num == 1:  # integer factor den; kept span = out * den (crop) or all (letterbox)
            inside = (u >= 0) & (u < (out - pad) * den)
        else:
            inside = (u >= 0) & (u < den)
        o = pad + np.where(inside, u, 0) * num // den
        o = np.where(inside & (o < out), o, K.CROPPED)
        if flip:
            o = np.where(o >= 0, out - 1 - o, K.CROPPED)
        lut[r0:r0 + span] = o
        lut.setflags(write=False)
        return lut

    @staticmethod
    def _widen(lut: np.ndarray) -> np.ndarray:
        """The kernels' table: one entry per int16 coordinate read as uint16, -2 off the sensor."""
        wide = np.full(K.WIDE, K.OFF_SENSOR, dtype=np.int32)
        wide[:lut.size] = lut
        wide.setflags(write=False)
        return wide

    def map(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output ``(column, row)`` of sensor pixels ``(x, y)``; ``-1`` where dropped or outside the sensor."""
        x = np.asarray(x, dtype=np.int64)
        y = np.asarray(y, dtype=np.int64)
        okx = (x >= 0) & (x < self.sensor_size.width)
        oky = (y >= 0) & (y < self.sensor_size.height)
        ox = np.where(okx, self.lut_x[np.where(okx, x, 0)], -1)
        oy = np.where(oky, self.lut_y[np.where(oky, y, 0)], -1)
        drop = (ox < 0) | (oy < 0)
        return np.where(drop, -1, ox), np.where(drop, -1, oy)

    @property
    def pixels_per_output(self) -> float:
        """Mean number of sensor pixels summed into one model pixel (kept columns per output
        column times kept rows per output row): 4.0 for 128×128 → 64×64, 56.25 for 640×480 →
        64×64 (crop). Event counts per model pixel grow with it (see :func:`density_scale`)."""
        kx, ky = self.lut_x[self.lut_x >= 0], self.lut_y[self.lut_y >= 0]
        if not len(kx) or not len(ky):
            return 1.0
        return (len(kx) / len(np.unique(kx))) * (len(ky) / len(np.unique(ky)))

    def __repr__(self) -> str:
        return (
            f"Geometry({self.sensor_size} -> {self.out_size}, mode={self.mode!r}, downsample={self.downsample!r}, "
            f"flip_x={self.flip_x}, flip_y={self.flip_y}, roi={self.roi})"
        )


def _as_geometry(geometry: Geometry | SensorSize | tuple[int, int]) -> Geometry:
    return geometry if isinstance(geometry, Geometry) else Geometry(geometry)


def density_scale(trained: Geometry, used: Geometry) -> float:
    """Factor that makes model-pixel counts of ``used`` look like those of ``trained``.

    A moving edge, or a still pixel's noise, makes about the same events per *sensor* pixel on any
    sensor, so the count in a model pixel grows with the sensor pixels summed into it: a 640×480
    sensor cropped to 480×480 and shown on 64×64 sums 56.25 pixels per model pixel, a DVS128 on
    64×64 sums 4, so the same gesture arrives 14× denser. Multiplying the frames by
    ``trained.pixels_per_output / used.pixels_per_output`` gives the network the densities it
    was trained on.
    """
    return float(trained.pixels_per_output / used.pixels_per_output)


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


def warmup(dtypes=(np.float32,)) -> None:
    """Compile (or load from the cache) every kernel signature a stream will use, on tiny input.

    Covers serial and parallel binning for each frame dtype, writable and read-only event arrays
    (zero-copy file decoding gives read-only views), the order scans and the noise filters, so the
    first live window is not delayed by JIT compilation.
    """
    from evstream import filters

    sensor = SensorSize(4, 4)
    geometry = Geometry(sensor)
    ev = np.zeros(8, dtype=EVENT_DTYPE)
    ev["t"] = np.arange(8)
    readonly = ev.copy()
    readonly.setflags(write=False)
    for events in (ev, readonly):
        for dtype in dtypes:
            for parallel in (False, True):
                bin_events(events, 0, 2, 4, geometry, dtype=dtype, parallel=parallel)
                bin_events_by_count(events, 2, geometry, dtype=dtype, parallel=parallel)
            scratch = np.zeros((2, 2, 4, 4), dtype=_frame_dtype(dtype))
            K.bin_split_parallel(
                events["x"], events["y"], events["p"], 0, 8, geometry._wide_x, geometry._wide_y, _ON_CHANNEL,
                scratch, np.zeros((2, 3), dtype=np.int64),
            )
        K.scan_order(events["t"], 0, 1, 1)
        K.is_sorted(events["t"])
        filters.BackgroundActivityFilter(sensor)(events)
        filters.RefractoryFilter(sensor, 1)(events)
        filters.HotPixelMask.learn(events, sensor).apply(events)
