"""Event image for display: accumulation window set apart from the display rate.

The pipeline publishes one ``frame`` message per window (``counts`` uint8 [2, H, W], OFF then ON,
over ``[t0, t1)`` µs). The dashboard draws at its own rate, so it accumulates frames over a
chosen span of stream time, the habit of Metavision's frame generators (``prophesee-ai/openeb``,
``metavision_core``: accumulation time and display fps are two settings). Three views:

- ``window``: sum of the counts of the frames whose end lies within the last ``span_us``;
  choose it to see exactly what one span of events looks like (33 ms = one video frame).
  Frames are taken not to overlap in time (the pipeline counts each event in one frame), and
  a span shorter than one frame shows that frame alone.
- ``decay``: counts decayed exponentially with time constant ``span_us``; motion leaves trails,
  nothing pops in or out at a window edge.
- ``surface``: time surface (Lagorce et al., HOTS, TPAMI 2017): ``exp(-(now - t_last) / span_us)``
  at each pixel, signed by the polarity of its latest event; shows where and how recently
  things moved, whatever the event count.

The output is one uint8 [H, W] image of indices into a diverging 256-entry lookup table:
128 is "no event", above is ON, below is OFF. Thread-safe: the socket thread pushes, the GUI
thread renders.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Literal

import numpy as np

__all__ = ["EventAccumulator", "MODES", "diverging_lut"]

Mode = Literal["window", "decay", "surface"]
MODES: tuple[str, ...] = ("window", "decay", "surface")

# Window mode keeps the frames of one span to subtract them when they leave it; beyond this many
# bytes the oldest go early (a 1 s span of 1 ms windows at 640×480 would otherwise hold 600 MB).
_MAX_BYTES = 128 * 2**20


def diverging_lut() -> np.ndarray:
    """Lookup table uint8 [256, 3]: 0 = strong OFF (blue), 128 = no event (near black), 255 = strong ON (amber)."""
    lut = np.zeros((256, 3), dtype=np.float32)
    background = np.array([18, 18, 24], dtype=np.float32)
    on = np.array([255, 190, 40], dtype=np.float32)
    off = np.array([60, 150, 255], dtype=np.float32)
    ramp = np.linspace(0.0, 1.0, 128, dtype=np.float32)[:, None] ** 0.8
    lut[128:] = background + ramp * (on - background)
    lut[:128] = (background + ramp * (off - background))[::-1]
    return np.clip(lut, 0, 255).astype(np.uint8)


class EventAccumulator:
    """Accumulates ``frame`` messages into a display image.

    Args:
        mode: ``window``, ``decay`` or ``surface`` (see the module docstring for when to pick each).
        span_us: accumulation span (window), decay time constant (decay, surface), µs.
    """

    def __init__(self, mode: Mode = "window", span_us: int = 100_000) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if span_us <= 0:
            raise ValueError(f"span_us must be positive, got {span_us}")
        self._lock = threading.Lock()
        self._mode: str = mode
        self._span_us = int(span_us)
        self._shape: tuple[int, int] | None = None
        self._frames: deque[tuple[int, np.ndarray]] = deque()
        self._sum: np.ndarray | None = None  # int32 [H, W], ON minus OFF, window mode
        self._decayed: np.ndarray | None = None  # float32 [H, W], decay mode
        self._last_on: np.ndarray | None = None  # float64 [H, W] µs of the latest ON event, surface mode
        self._last_off: np.ndarray | None = None
        self._now_us: int | None = None
        self._dirty = False
        self.frames_in = 0

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def span_us(self) -> int:
        return self._span_us

    @property
    def shape(self) -> tuple[int, int] | None:
        """``(H, W)`` of the frames seen so far, or None before the first one."""
        return self._shape

    @property
    def now_us(self) -> int | None:
        """End (µs) of the latest frame pushed."""
        return self._now_us

    def configure(self, mode: Mode | None = None, span_us: int | None = None) -> None:
        """Change view or span; the image restarts from the next frame."""
        with self._lock:
            if mode is not None:
                if mode not in MODES:
                    raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
                self._mode = mode
            if span_us is not None:
                if span_us <= 0:
                    raise ValueError(f"span_us must be positive, got {span_us}")
                self._span_us = int(span_us)
            self._reset_locked(self._shape)

    def clear(self) -> None:
        """Forget every frame (e.g. after a seek)."""
        with self._lock:
            self._reset_locked(self._shape)

    def _reset_locked(self, shape: tuple[int, int] | None) -> None:
        self._shape = shape
        self._frames.clear()
        self._now_us = None
        self._dirty = True
        if shape is None:
            self._sum = self._decayed = self._last_on = self._last_off = None
            return
        self._sum = np.zeros(shape, dtype=np.int32)
        self._decayed = np.zeros(shape, dtype=np.float32)
        self._last_on = np.full(shape, -np.inf)
        self._last_off = np.full(shape, -np.inf)

    def push(self, counts: np.ndarray, t_start_us: int, t_end_us: int) -> None:
        """Add one window's counts.

        Args:
            counts: uint8 [2, H, W], OFF then ON event counts over the window.
            t_start_us: window start, µs (stream clock).
            t_end_us: window end (exclusive), µs. A frame ending before the latest one (a seek
                backwards, a restarted stream) starts the image afresh.
        """
        if counts.ndim != 3 or counts.shape[0] != 2:
            raise ValueError(f"counts must be [2, H, W], got shape {counts.shape}")
        shape = (int(counts.shape[1]), int(counts.shape[2]))
        signed = counts[1].astype(np.int16) - counts[0]
        with self._lock:
            if shape != self._shape or (self._now_us is not None and t_end_us < self._now_us):
                self._reset_locked(shape)
            previous = self._now_us
            self._now_us = int(t_end_us)
            self.frames_in += 1
            self._dirty = True
            if self._mode == "window":
                self._frames.append((int(t_end_us), signed))
                self._sum += signed
                horizon = t_end_us - self._span_us
                budget = max(1, _MAX_BYTES // signed.nbytes)
                while self._frames and (self._frames[0][0] <= horizon or len(self._frames) > budget):
                    _, old = self._frames.popleft()
                    self._sum -= old
            elif self._mode == "decay":
                elapsed = 0 if previous is None else max(0, t_end_us - previous)
                self._decayed *= np.float32(np.exp(-elapsed / self._span_us))
                self._decayed += signed
            else:
                # Events of a window are stamped at its middle: the counts carry no finer time.
                t_mid = 0.5 * (t_start_us + t_end_us)
                self._last_on[counts[1] > 0] = t_mid
                self._last_off[counts[0] > 0] = t_mid

    def take_dirty(self) -> bool:
        """True once after each change (a frame pushed, a setting changed)."""
        with self._lock:
            dirty, self._dirty = self._dirty, False
            return dirty

    def render(self) -> np.ndarray | None:
        """The display image: uint8 [H, W] indices into :func:`diverging_lut`, or None before any frame."""
        with self._lock:
            if self._shape is None:
                return None
            if self._mode == "window":
                value = self._sum.astype(np.float32)
            elif self._mode == "decay":
                value = self._decayed.copy()
            else:
                now = self._now_us if self._now_us is not None else 0
                on = np.exp((self._last_on - now) / self._span_us)
                off = np.exp((self._last_off - now) / self._span_us)
                value = np.where(on >= off, on, -off).astype(np.float32)
                return _to_index(value, 1.0)
        # Full scale follows the typical active pixel, so a short span and a long one both show contrast.
        active = np.count_nonzero(value)
        full = max(1.0, 3.0 * float(np.abs(value).sum()) / active) if active else 1.0
        return _to_index(value, full)


# Signed level in [-1, 1] quantised to 2·_STEPS + 1 steps → LUT index 128 ± 127·sqrt(|level|):
# a square-root response keeps single events visible next to bursts of hundreds.
_STEPS = 1024
_LEVEL_TO_INDEX = np.round(
    128 + 127 * np.sign(np.arange(-_STEPS, _STEPS + 1)) * np.sqrt(np.abs(np.arange(-_STEPS, _STEPS + 1)) / _STEPS)
).astype(np.uint8)


def _to_index(value: np.ndarray, full: float) -> np.ndarray:
    """Signed float32 [H, W] → uint8 LUT index: 128 ± 127·sqrt(|v| / full), clipped at full scale."""
    level = value * np.float32(_STEPS / full)
    np.clip(level, -_STEPS, _STEPS, out=level)
    level += np.float32(_STEPS + 0.5)
    return np.take(_LEVEL_TO_INDEX, level.astype(np.int32))
