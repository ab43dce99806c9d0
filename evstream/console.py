"""Console sink of the pipeline: one line per label change, a periodic summary, errors on stderr.

What ``python main.py --no-gui`` prints. Lines carry the sensor time of the window's end
(seconds from the stream's first window), the decided class and its smoothed confidence;
the summary line carries the counters of the ``stats`` topic.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["ConsoleSink", "format_change", "format_summary", "truth_name"]


def truth_name(truth: int | None, class_names) -> str | None:
    """The name of a ground-truth class (``-1``: ``"no gesture"``); None when unknown."""
    if truth is None:
        return None
    truth = int(truth)
    if truth < 0:
        return "no gesture"
    return str(class_names[truth]) if class_names is not None and truth < len(class_names) else f"class {truth}"


def format_change(prediction: Any, origin_us: int = 0, class_names=None) -> str:
    """The line for a label change, e.g. ``"    3.250 s  right hand wave             conf 0.91"``.

    When the source knows the ground truth (``prediction.truth``: synthetic, or a recording with
    ``<stem>_labels.csv``), the true class follows: ``... conf 0.91  truth right hand wave``.

    Args:
        prediction: a ``models.streaming.Prediction`` (``t_end`` µs, ``name``, ``confidence``).
        origin_us: sensor time shown as 0 s, µs.
        class_names: names of the classes, for the truth.
    """
    seconds = (int(prediction.t_end) - origin_us) / 1e6
    line = f"{seconds:9.3f} s  {prediction.name:<27} conf {float(prediction.confidence):.2f}"
    truth = truth_name(getattr(prediction, "truth", None), class_names)
    return line if truth is None else f"{line}  truth {truth}"


def format_summary(stats: dict) -> str:
    """The periodic summary line from a ``stats`` map (see :mod:`evstream.protocol`)."""
    return (
        f"windows {stats.get('windows', 0)}  dropped {stats.get('dropped_windows', 0)}  "
        f"resets {stats.get('resets', 0)}  infer {stats.get('infer_ms', 0.0):.1f} ms  "
        f"lag {stats.get('lag_ms', 0.0):.1f} ms  {stats.get('event_rate', 0.0) / 1e3:.1f} kev/s  "
        f"x{stats.get('realtime_factor', 0.0):.2f} real time"
    )


class ConsoleSink:
    """Print label changes and a summary every ``summary_every_s`` seconds of wall time.

    Args:
        stream: where the lines go (default stdout); flushed after each line.
        errors: where errors go (default stderr).
        summary_every_s: period of the summary line; None for none.
        quiet: print only errors.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        errors: TextIO | None = None,
        summary_every_s: float | None = 5.0,
        quiet: bool = False,
        class_names=None,
    ) -> None:
        self.stream = stream or sys.stdout
        self.errors = errors or sys.stderr
        self.summary_every_s = summary_every_s
        self.quiet = quiet
        self.class_names = None if class_names is None else list(class_names)
        self.truth_windows = 0  # windows whose truth was known
        self.truth_agree = 0  # ... and whose decision equalled it
        self._origin: int | None = None
        self._last_summary = time.monotonic()
        self._stats: dict = {}
        self._closed = False

    def _line(self, text: str, stream: TextIO | None = None) -> None:
        out = stream or self.stream
        out.write(text + "\n")
        out.flush()

    def on_prediction(self, prediction: Any, stats: dict) -> None:
        """Print the change line (if the label changed) and, when due, the summary."""
        if self._origin is None:
            self._origin = int(prediction.t_start)
        self._stats = stats
        truth = getattr(prediction, "truth", None)
        if truth is not None:
            self.truth_windows += 1
            self.truth_agree += int(int(prediction.label) == int(truth))
        if self.quiet:
            return
        if prediction.changed:
            self._line(format_change(prediction, self._origin, self.class_names))
        now = time.monotonic()
        if self.summary_every_s is not None and now - self._last_summary >= self.summary_every_s:
            self._last_summary = now
            self._line(format_summary(stats))

    def on_state(self, state: str, message: str) -> None:
        """Errors always go to ``errors``; other states are printed unless quiet."""
        if state == "error":
            self._line(f"error: {message}", self.errors)
        elif not self.quiet and state in ("paused", "ended"):
            self._line(f"[{state}] {message}".rstrip())

    def close(self) -> None:
        """Print the final summary (unless quiet). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if not self.quiet and self._stats:
            self._line(format_summary(self._stats))
        if not self.quiet and self.truth_windows:
            self._line(f"decision equals the truth in {self.truth_agree}/{self.truth_windows} windows "
                       f"({self.truth_agree / self.truth_windows:.3f}; no gesture counts as a class; "
                       "python main.py eval --stream scores gestures and latency)")
