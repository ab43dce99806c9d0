"""Events a declared sensor cannot have produced, screened once for every reader.

A decoded event with ``x``/``y`` outside the sensor the file declares, or a polarity other than
0/1, is either dropped and counted (the default: the rest of the recording stays usable and the
damage is reported by ``info``) or, with ``strict``, an :class:`~evstream.errors.EventFileError`
naming the file and the first such event. Readers whose formats cannot encode such events (their
address fields are checked as they decode) do not need it.
"""

from __future__ import annotations

import os

import numpy as np

from evstream.errors import EventFileError
from evstream.events import SensorSize

__all__ = ["EventScreen"]


class EventScreen:
    """Drops (and counts) or rejects impossible events of one reader, in file order.

    Args:
        path: the recording (named in errors).
        sensor_size: the declared geometry.
        strict: raise at the first impossible event instead of dropping it.

    Attributes:
        seen: events screened since the last :meth:`reset`.
        off_sensor: events dropped for ``x``/``y`` outside the sensor.
        bad_polarity: events (inside the sensor) dropped for a polarity other than 0 or 1.
    """

    def __init__(self, path: str | os.PathLike, sensor_size: SensorSize, *, strict: bool = False) -> None:
        self.path = path
        self.sensor_size = sensor_size
        self.strict = bool(strict)
        self.reset()

    def reset(self) -> None:
        """Start counting again (a reader re-reading from its first packet)."""
        self.seen = 0
        self.off_sensor = 0
        self.bad_polarity = 0

    @property
    def dropped(self) -> int:
        """Events dropped so far, for any reason."""
        return self.off_sensor + self.bad_polarity

    def counts(self) -> dict[str, int]:
        """``{"off_sensor": n, "bad_polarity": n}``."""
        return {"off_sensor": self.off_sensor, "bad_polarity": self.bad_polarity}

    def __call__(self, events: np.ndarray, offset: int | None = None) -> np.ndarray:
        """``events`` without the impossible ones (the same array when all are possible).

        Args:
            events: ``EVENT_DTYPE`` array, the next events of the file in order.
            offset: byte offset of the packet they came from, for the strict error.

        Raises:
            EventFileError: with ``strict``, at the first impossible event (its index in the
                stream, t, x, y, p and why).
        """
        first = self.seen
        self.seen += len(events)
        if len(events) == 0:
            return events
        w, h = self.sensor_size.width, self.sensor_size.height
        x, y, p = events["x"], events["y"], events["p"]
        off = (x < 0) | (x >= w) | (y < 0) | (y >= h)
        bad_p = p > 1
        bad = off | bad_p
        if not bad.any():
            return events
        i = int(np.argmax(bad))
        if self.strict:
            why = f"outside the {w}x{h} sensor" if off[i] else "polarity not 0 or 1"
            raise EventFileError(self.path, f"event {first + i} (t={int(events['t'][i])} µs, x={int(x[i])}, "
                                            f"y={int(y[i])}, p={int(p[i])}) {why} (strict)", offset)
        n_off = int(np.count_nonzero(off))
        self.off_sensor += n_off
        self.bad_polarity += int(np.count_nonzero(bad)) - n_off
        return events[~bad]
