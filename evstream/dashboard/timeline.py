"""The run's record in sensor time: one row per window (decision, truth, events) and the stream figures.

The socket thread pushes every ``pred`` and ``stats`` message here (not only the latest one the
draw timer takes), so the decision ribbon, the ground-truth ribbon, the online accuracy and the
event-rate plot hold the whole run however fast it is replayed. Time is the sensor's, relative
to the recording's start (``status.origin_us``; before a status says it, the first window's
start): a pause freezes the record, the end of a replay leaves it whole to scroll back through.

A seek backwards (a window starting before the newest one ends) replaces the record from the
seek point on, so the record stays in time order and shows the latest pass over each moment.
Thread-safe: the socket thread pushes, the GUI thread reads.
"""

from __future__ import annotations

import threading

import numpy as np

from evstream.labels import NO_GESTURE
from evstream.protocol import Message

__all__ = ["Timeline", "UNKNOWN", "MAX_ROWS"]

UNKNOWN = -2  # truth of a window whose source does not know the label
MAX_ROWS = 2_000_000  # windows kept (over 100 h of 200 ms windows); beyond, the oldest half goes


class _Columns:
    """Growable parallel arrays (amortised O(1) append, cut at a time for a seek back)."""

    def __init__(self, **dtypes: type) -> None:
        self._data = {name: np.zeros(1024, dtype) for name, dtype in dtypes.items()}
        self.n = 0

    def append(self, **values) -> None:
        if self.n == len(self._data["t0"]):
            if self.n >= MAX_ROWS:
                keep = self.n // 2
                for array in self._data.values():
                    array[:keep] = array[self.n - keep:self.n]
                self.n = keep
            else:
                self._data = {k: np.concatenate([v, np.zeros_like(v)]) for k, v in self._data.items()}
        for name, value in values.items():
            self._data[name][self.n] = value
        self.n += 1

    def cut_from(self, t_us: int) -> None:
        """Drop the rows that end after ``t_us``."""
        self.n = int(np.searchsorted(self._data["t1"][:self.n], t_us, side="right"))

    def last_t1(self) -> int | None:
        return int(self._data["t1"][self.n - 1]) if self.n else None

    def copy(self, lo: int = 0, hi: int | None = None) -> dict[str, np.ndarray]:
        hi = self.n if hi is None else hi
        return {name: array[lo:hi].copy() for name, array in self._data.items()}

    def clear(self) -> None:
        self.n = 0


class Timeline:
    """Per-window decisions and truth, and the stream's event rates, in sensor µs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows = _Columns(t0=np.int64, t1=np.int64, label=np.int16, truth=np.int16, events=np.int64)
        self._rates = _Columns(t0=np.int64, t1=np.int64, on=np.float32, off=np.float32)
        self._origin: int | None = None  # announced by status
        self._first: int | None = None  # the first window's start (fallback origin)
        self.version = 0  # bumps on every change (the panels redraw only then)

    # -- written by the socket thread -------------------------------------------------------

    def set_origin(self, origin_us: int | None) -> None:
        """The sensor µs relative times count from (``status.origin_us``); None keeps the fallback."""
        if isinstance(origin_us, bool) or not isinstance(origin_us, int):
            return
        with self._lock:
            if origin_us != self._origin:
                self._origin = origin_us
                self.version += 1

    def push(self, message: Message) -> None:
        """Take one ``pred`` (a window's decision and truth) or ``stats`` message (the ON/OFF rates).

        Messages without sensor times (an older publisher's ``stats``) are ignored.
        """
        t0, t1 = message.t_start, message.t_end
        if not isinstance(t0, int) or not isinstance(t1, int) or t1 < t0:
            return
        data = message.data
        with self._lock:
            if message.topic == "pred":
                label = data.get("label", NO_GESTURE)
                truth = data.get("truth")
                events = data.get("events", 0)
                label = int(label) if isinstance(label, int) and not isinstance(label, bool) else NO_GESTURE
                truth = int(truth) if isinstance(truth, int) and not isinstance(truth, bool) else UNKNOWN
                self._cut_if_earlier(self._windows, t0)
                self._windows.append(t0=t0, t1=t1, label=label, truth=truth,
                                     events=int(events) if isinstance(events, (int, float)) else 0)
                if self._first is None:
                    self._first = t0
            elif message.topic == "stats":
                rate = data.get("event_rate", 0.0)
                on, off = data.get("events_on", 0), data.get("events_off", 0)
                if not all(isinstance(v, (int, float)) for v in (rate, on, off)):
                    raise TypeError("stats: event_rate, events_on and events_off must be numbers")
                share = on / (on + off) if on + off > 0 else 0.5
                self._cut_if_earlier(self._rates, t0)
                self._rates.append(t0=t0, t1=t1, on=rate * share, off=rate * (1 - share))
            else:
                return
            self.version += 1

    @staticmethod
    def _cut_if_earlier(columns: _Columns, t0: int) -> None:
        last = columns.last_t1()
        if last is not None and t0 < last:
            columns.cut_from(t0)

    def clear(self) -> None:
        """Forget the record (the origin stays)."""
        with self._lock:
            self._windows.clear()
            self._rates.clear()
            self._first = None
            self.version += 1

    # -- read by the GUI thread ---------------------------------------------------------------

    @property
    def origin_us(self) -> int | None:
        """Sensor µs of relative time 0: the announced origin, else the first window's start."""
        with self._lock:
            return self._origin if self._origin is not None else self._first

    def relative_s(self, t_us: int) -> float | None:
        """``t_us`` as seconds since the origin (None before any origin is known)."""
        origin = self.origin_us
        return None if origin is None else (int(t_us) - origin) / 1e6

    def windows(self, start_s: float | None = None, end_s: float | None = None) -> dict[str, np.ndarray]:
        """Copies: ``t0``/``t1`` (s since the origin, float64), ``label``, ``truth`` (``UNKNOWN`` = -2),
        ``events``; with ``start_s``/``end_s`` only the windows that overlap that range."""
        with self._lock:
            origin = self._origin if self._origin is not None else self._first
            base = 0 if origin is None else origin
            lo, hi = 0, self._windows.n
            if start_s is not None:
                lo = int(np.searchsorted(self._windows._data["t1"][:hi], base + start_s * 1e6, side="right"))
            if end_s is not None:
                hi = int(np.searchsorted(self._windows._data["t0"][:hi], base + end_s * 1e6, side="left"))
            out = self._windows.copy(lo, max(lo, hi))
        return _relative(out, origin)

    def span(self) -> tuple[float, float] | None:
        """(start of the first window, end of the newest) in s since the origin, or None before any."""
        with self._lock:
            n = self._windows.n
            if not n:
                return None
            origin = self._origin if self._origin is not None else self._first
            data = self._windows._data
            return (int(data["t0"][0]) - origin) / 1e6, (int(data["t1"][n - 1]) - origin) / 1e6

    def rates(self) -> dict[str, np.ndarray]:
        """Copies: ``t0``/``t1`` (s since the origin), ``on``/``off`` event rates (ev/s)."""
        with self._lock:
            out = self._rates.copy()
            origin = self._origin if self._origin is not None else self._first
        return _relative(out, origin)

    def accuracy(self) -> dict:
        """Online figures over the windows whose truth is known, scored as ``models/online_eval.py``
        scores decisions: ``accuracy`` = right / windows inside a gesture (``truth >= 0``),
        ``false_alarm`` = windows at rest (``truth == -1``) that name a gesture / windows at rest."""
        with self._lock:
            n = self._windows.n
            label = self._windows._data["label"][:n]
            truth = self._windows._data["truth"][:n]
            inside = truth >= 0
            rest = truth == NO_GESTURE
            right = int(np.count_nonzero(label[inside] == truth[inside]))
            alarms = int(np.count_nonzero(label[rest] != NO_GESTURE))
        gestures, resting = int(inside.sum()), int(rest.sum())
        return {
            "known": gestures + resting,
            "gesture_windows": gestures,
            "right": right,
            "accuracy": right / gestures if gestures else None,
            "rest_windows": resting,
            "false_alarms": alarms,
            "false_alarm": alarms / resting if resting else None,
        }


def _relative(columns: dict[str, np.ndarray], origin: int | None) -> dict[str, np.ndarray]:
    base = 0 if origin is None else origin
    for key in ("t0", "t1"):
        columns[key] = (columns[key] - base) / 1e6
    return columns
