"""What a published stream tells its viewers beyond the decisions: ground truth, time origin, geometry.

The pipeline asks this module three things about its parts, so that a dashboard (which knows
only the wire messages, :mod:`evstream.protocol`) can show truth beside each decision, times
relative to the recording's start and the part of the sensor the model sees:

- :func:`truth_for`: a function ``t_us -> class`` (0-based, -1 = no gesture) when the source
  knows the label: the synthetic source (``current_label``), or a recording with a DVS128 Gesture
  ``<stem>_labels.csv`` beside it (:func:`evstream.io.aedat3.read_labels`); else None.
- :func:`origin_for`: the sensor time relative times count from.
- :func:`geometry_info`: the sensor rectangle the model sees and the model input size.

A window's truth is taken as online evaluation scores a decision stamped ``t`` = the window's
end (``models/online_eval.py``): the class of the labelled segment with ``t_start < t <= t_end``,
i.e. the label in force at the window's last microsecond ``t - 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from evstream.labels import NO_GESTURE

__all__ = ["truth_for", "origin_for", "geometry_info", "SegmentTruth"]


class SegmentTruth:
    """Label in force at a sensor time, from labelled segments (``LABEL_DTYPE``: label, t_start, t_end µs).

    Args:
        segments: the segments (later ones win where two overlap, as in ``models.data.step_targets``).
        t_first: sensor time of the recording's first event, µs (for a looping replay).
        period_us: a looping replay shifts sensor time by this much per pass (``FileSource.period_us``);
            None: no loop folding.
    """

    def __init__(self, segments: np.ndarray, t_first: int | None = None, period_us: int | None = None) -> None:
        self.segments = np.asarray(segments)
        self.t_first = t_first
        self.period_us = period_us if period_us and period_us > 0 else None

    def __call__(self, t_us: int) -> int:
        t = int(t_us)
        if self.period_us is not None and self.t_first is not None and t >= self.t_first + self.period_us:
            t = self.t_first + (t - self.t_first) % self.period_us
        label = NO_GESTURE
        for seg in self.segments:
            if int(seg["t_start"]) <= t < int(seg["t_end"]):
                label = int(seg["label"])
        return label


def truth_for(source: Any) -> Callable[[int], int] | None:
    """The source's ground truth as ``label_at(t_us)`` (label in force at sensor time ``t_us``), or None.

    Raises:
        EventFileError: a ``<stem>_labels.csv`` beside the recording that does not parse (names
            the file and line).
    """
    current = getattr(source, "current_label", None)
    if callable(current):
        return lambda t_us: int(current(int(t_us)))
    path = getattr(source, "path", None)
    if path is None:
        return None
    labels_path = Path(path).with_name(f"{Path(path).stem}_labels.csv")
    if not labels_path.is_file():
        return None
    from evstream.io.aedat3 import read_labels

    period = getattr(source, "period_us", None)
    return SegmentTruth(read_labels(labels_path), getattr(source, "t_first", None),
                        int(period) if isinstance(period, (int, np.integer)) else None)


def origin_for(source: Any, first_seen_us: int | None) -> int | None:
    """Sensor µs that relative times count from: a recording's first event, 0 for the synthetic
    source (its clock starts at 0), else the first event the pipeline saw (None before it)."""
    t_first = getattr(source, "t_first", None)
    if isinstance(t_first, (int, np.integer)):
        return int(t_first)
    if getattr(source, "current_label", None) is not None:
        return 0
    return first_seen_us


def geometry_info(geometry: Any) -> dict | None:
    """``{"mode", "input": [w, h], "view": [x, y, w, h]}``: the sensor rectangle whose events reach the
    model (the crop, or the whole region for a letterbox), in sensor pixels; None without a geometry."""
    if geometry is None or not hasattr(geometry, "lut_x"):
        return None
    kx = np.flatnonzero(np.asarray(geometry.lut_x) >= 0)
    ky = np.flatnonzero(np.asarray(geometry.lut_y) >= 0)
    view = [0, 0, 0, 0] if not len(kx) or not len(ky) else \
        [int(kx[0]), int(ky[0]), int(kx[-1] - kx[0] + 1), int(ky[-1] - ky[0] + 1)]
    out = geometry.out_size
    return {"mode": str(geometry.mode), "input": [int(out.width), int(out.height)], "view": view}
