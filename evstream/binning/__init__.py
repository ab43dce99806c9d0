"""Event binning: sensor pixels to model pixels, events to ``[T, 2, H, W]`` frames, online.

Three rooms, one kernel family (:mod:`evstream._kernels`; the online Binner's flat-index kernels in
:mod:`evstream.binning._flat`):

- :mod:`evstream.binning.geometry`: :class:`Geometry` maps sensor pixels to model pixels
  (region of interest, centre crop or letterbox to the output aspect, downsample, flips) through
  one lookup table per axis; :func:`density_scale`.
- :mod:`evstream.binning.frames`: :func:`bin_events` / :func:`bin_events_by_count` bin a whole
  array at once; :func:`warmup` compiles the kernels.
- :mod:`evstream.binning.online`: :class:`Binner` does the same online: ``push`` chunks as they
  arrive, get back every :class:`Window` of ``steps`` consecutive time steps that is complete,
  in sensor time.

Every public name is importable from ``evstream.binning`` itself.
Frames follow tonic's ``ToFrame`` layout: ``[T, P, H, W]`` with channel 0 = OFF, 1 = ON (DESIGN.md).
"""

from __future__ import annotations

from evstream.binning.frames import (
    FRAME_DTYPES,
    PARALLEL_MIN_EVENTS,
    bin_events,
    bin_events_by_count,
    count_bounds,
    warmup,
)
from evstream.binning.geometry import Geometry, density_scale
from evstream.binning.online import Binner, BinnerStats, Window

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
