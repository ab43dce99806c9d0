"""Events as data: the one event dtype, sensor geometry and the chunk that travels between parts.

``EVENT_DTYPE`` is byte-identical to an AEDAT 4.0 event (int64 t, int16 x, int16 y, uint8 on,
3 bytes padding; 16 bytes), so decoding a packet is a zero-copy ``np.frombuffer``. Field names
follow tonic (``x, y, t, p``). Time is int64 microseconds on the sensor clock everywhere inside
the pipeline; ``p`` is 1 for ON (brightness increase) and 0 for OFF.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from evstream.errors import EventFormatError

__all__ = [
    "EVENT_DTYPE",
    "MAX_SENSOR_SIDE",
    "SensorSize",
    "EventChunk",
    "empty_events",
    "make_events",
    "as_events",
    "concatenate",
    "slice_time",
]

EVENT_DTYPE = np.dtype(
    {
        "names": ["t", "x", "y", "p"],
        "formats": ["<i8", "<i2", "<i2", "u1"],
        "offsets": [0, 8, 10, 12],
        "itemsize": 16,
    }
)

# Widest and tallest sensor: x and y are int16 in EVENT_DTYPE (and in an AEDAT 4 event).
MAX_SENSOR_SIDE = 32767


@dataclass(frozen=True)
class SensorSize:
    """Pixel geometry of an event sensor (x in ``[0, width)``, y in ``[0, height)``, origin top-left)."""

    width: int
    height: int

    def __post_init__(self) -> None:
        if not (1 <= int(self.width) <= MAX_SENSOR_SIDE and 1 <= int(self.height) <= MAX_SENSOR_SIDE):
            raise EventFormatError(f"sensor size must be 1 ... {MAX_SENSOR_SIDE} per side (x, y are int16), "
                                   f"got {self.width}x{self.height}")

    @property
    def tonic(self) -> tuple[int, int, int]:
        """tonic's ``sensor_size`` tuple ``(width, height, 2)``."""
        return (self.width, self.height, 2)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class EventChunk:
    """A batch of time-ordered events covering sensor time ``[t_start, t_end)`` in µs.

    ``t_end`` may lie past the last event: a chunk can say "nothing happened until t_end", which
    lets the binner close time steps in a still scene.
    """

    events: np.ndarray
    t_start: int
    t_end: int

    def __len__(self) -> int:
        return len(self.events)

    @classmethod
    def from_events(cls, events: np.ndarray) -> EventChunk:
        """Chunk spanning exactly its events (``t_end`` = last t + 1); empty input spans nothing."""
        if len(events) == 0:
            return cls(events, 0, 0)
        return cls(events, int(events["t"][0]), int(events["t"][-1]) + 1)


def empty_events(n: int = 0) -> np.ndarray:
    """A zeroed event array of length ``n``."""
    return np.zeros(n, dtype=EVENT_DTYPE)


def make_events(t, x, y, p) -> np.ndarray:
    """Build an ``EVENT_DTYPE`` array from four equally long sequences."""
    t = np.asarray(t)
    out = np.empty(len(t), dtype=EVENT_DTYPE)
    out["t"] = t
    out["x"] = x
    out["y"] = y
    out["p"] = p
    return out


def as_events(array: np.ndarray, *, name: str = "events") -> np.ndarray:
    """Return ``array`` as ``EVENT_DTYPE`` (zero-copy when it already is), or raise.

    Accepts any structured array with integer fields ``t, x, y`` and ``p`` (or ``on``/``polarity``,
    as dv-processing and ``aedat`` name it); every field is checked, not just one.

    Raises:
        EventFormatError: naming the missing or non-integer field.
    """
    if not isinstance(array, np.ndarray):
        raise EventFormatError(f"{name}: expected a numpy structured array, got {type(array).__name__}")
    if array.dtype == EVENT_DTYPE:
        return array
    names = array.dtype.names
    if names is None:
        raise EventFormatError(f"{name}: expected a structured array with fields t, x, y, p; got dtype {array.dtype}")
    aliases = {"t": ("t", "timestamp"), "x": ("x",), "y": ("y",), "p": ("p", "on", "polarity")}
    out = np.empty(len(array), dtype=EVENT_DTYPE)
    for field, candidates in aliases.items():
        source = next((c for c in candidates if c in names), None)
        if source is None:
            raise EventFormatError(f"{name}: missing field {field!r} (have {', '.join(names)})")
        kind = array.dtype[source].kind
        if kind not in "iub":
            raise EventFormatError(f"{name}: field {source!r} must be integer, got {array.dtype[source]}")
        out[field] = array[source]
    return out


def concatenate(parts: Iterable[np.ndarray | EventChunk]) -> np.ndarray:
    """Concatenate event arrays or chunks into one ``EVENT_DTYPE`` array (one copy)."""
    arrays = [p.events if isinstance(p, EventChunk) else as_events(p) for p in parts]
    # np.concatenate would canonicalise the dtype and drop the 3 padding bytes; fill one zeroed
    # buffer (zeroed so that equal events are equal bytes, as in an AEDAT4 packet).
    out = np.zeros(sum(len(a) for a in arrays), dtype=EVENT_DTYPE)
    pos = 0
    for a in arrays:
        out[pos:pos + len(a)] = a
        pos += len(a)
    return out


def slice_time(events: np.ndarray, t0: int | None = None, t1: int | None = None) -> np.ndarray:
    """Events with ``t0 <= t < t1`` from a time-sorted array, as a view (binary search, no copy)."""
    t = events["t"]
    lo = 0 if t0 is None else int(np.searchsorted(t, t0, side="left"))
    hi = len(events) if t1 is None else int(np.searchsorted(t, t1, side="left"))
    return events[lo:max(lo, hi)]
