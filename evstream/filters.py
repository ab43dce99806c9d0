"""Noise filters for event streams: background activity, refractory period, hot pixels.

Each filter is stateful across chunks (per-pixel time maps live in the filter), takes an
``EVENT_DTYPE`` array in time order and returns the events it keeps (a copy, same dtype), and
counts what it saw in ``stats``. Events outside the sensor are dropped and counted, never
indexed. The per-event work runs in numba kernels (:mod:`evstream._kernels`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from evstream import _kernels as K
from evstream.errors import ConfigError
from evstream.events import EventChunk, SensorSize, as_events

__all__ = ["FilterStats", "BackgroundActivityFilter", "RefractoryFilter", "HotPixelMask"]


@dataclass
class FilterStats:
    """Counters of one filter: ``events_in = events_out + dropped + dropped_out_of_bounds``."""

    events_in: int = 0
    events_out: int = 0
    dropped: int = 0  # removed by the filter's rule
    dropped_out_of_bounds: int = 0  # x or y outside the sensor

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _sensor(size: SensorSize | tuple[int, int]) -> SensorSize:
    return size if isinstance(size, SensorSize) else SensorSize(*(int(v) for v in size))


class _Filter:
    """Shared plumbing: validate, run the kernel into a keep mask, count, return kept events."""

    def __init__(self, sensor_size: SensorSize | tuple[int, int]) -> None:
        self.sensor_size = _sensor(sensor_size)
        self.stats = FilterStats()

    def __call__(self, events: np.ndarray | EventChunk) -> np.ndarray:
        """Filter one chunk of events (time-ordered); returns the kept events, same dtype.

        Raises:
            EventFormatError: the input is not an event array (nothing changes).
        """
        ev = as_events(events.events if isinstance(events, EventChunk) else events)
        keep = np.empty(len(ev), dtype=np.bool_)
        outside = self._mark(ev, keep)
        kept = np.compress(keep, ev)  # 3x faster than ev[keep] on a padded structured dtype, same dtype
        self.stats.events_in += len(ev)
        self.stats.events_out += len(kept)
        self.stats.dropped_out_of_bounds += outside
        self.stats.dropped += len(ev) - len(kept) - outside
        return kept

    def _mark(self, ev: np.ndarray, keep: np.ndarray) -> int:
        raise NotImplementedError


class BackgroundActivityFilter(_Filter):
    """Drop events with no recent neighbour: dv-processing's background-activity noise filter.

    An event is kept when one of its 8 neighbouring pixels (not the pixel itself) had an event
    less than ``dt_us`` earlier (``t - t_neighbour < dt_us``); every event, kept or not, then
    records its t for its pixel. Same rule and update order as
    ``dv::noise::BackgroundActivityNoiseFilter`` (iniVation dv-processing), except that the time
    map starts at "never" instead of 0, so a stream starting near t = 0 is not let through whole
    for its first ``dt_us``. Polarity is ignored.

    Args:
        sensor_size: sensor pixels.
        dt_us: support window, µs (dv-processing's ``backgroundActivityDuration``, default 2000).
    """

    def __init__(self, sensor_size: SensorSize | tuple[int, int], dt_us: int = 2000) -> None:
        super().__init__(sensor_size)
        if int(dt_us) <= 0:
            raise ConfigError(f"dt_us: must be positive, got {dt_us}")
        self.dt_us = int(dt_us)
        # One pixel of border that never fires: the kernel reads 8 neighbours without bounds checks.
        self._last = np.full((self.sensor_size.height + 2, self.sensor_size.width + 2), K.NEVER, dtype=np.int64)

    def reset(self) -> None:
        """Forget every pixel's last event (after a seek or a timestamp reset)."""
        self._last.fill(K.NEVER)

    def _mark(self, ev: np.ndarray, keep: np.ndarray) -> int:
        return K.background_activity(ev["t"], ev["x"], ev["y"], self._last, self.dt_us, keep)


class RefractoryFilter(_Filter):
    """At most one event per pixel per ``refractory_us``: drop events too soon after the last kept one.

    The period restarts only at a kept event (as a neuron's refractory period restarts at a
    spike), so a pixel firing continuously still passes one event every ``refractory_us``.
    Polarity is ignored: ON and OFF share the pixel's period.

    Args:
        sensor_size: sensor pixels.
        refractory_us: minimum time between kept events of one pixel, µs.
    """

    def __init__(self, sensor_size: SensorSize | tuple[int, int], refractory_us: int) -> None:
        super().__init__(sensor_size)
        if int(refractory_us) <= 0:
            raise ConfigError(f"refractory_us: must be positive, got {refractory_us}")
        self.refractory_us = int(refractory_us)
        self._last_kept = np.full((self.sensor_size.height, self.sensor_size.width), K.NEVER, dtype=np.int64)

    def reset(self) -> None:
        """Forget every pixel's last kept event."""
        self._last_kept.fill(K.NEVER)

    def _mark(self, ev: np.ndarray, keep: np.ndarray) -> int:
        return K.refractory(ev["t"], ev["x"], ev["y"], self._last_kept, self.refractory_us, keep)


class HotPixelMask(_Filter):
    """Drop every event of pixels learned to fire far above the typical pixel.

    :meth:`learn` counts events per pixel over a stretch of recording (ideally a still scene)
    and marks as hot each pixel whose count exceeds ``median + sigma * scale``, where ``scale``
    is the robust spread ``1.4826 * MAD`` of the counts, but at least the Poisson spread
    ``sqrt(max(median, 1))`` (most pixels of a sparse stream fire 0 times, so the MAD alone
    would be 0 and mark every active pixel hot).

    Args:
        sensor_size: sensor pixels.
        hot: ``bool [H, W]``, True = hot pixel.
    """

    def __init__(self, sensor_size: SensorSize | tuple[int, int], hot: np.ndarray) -> None:
        super().__init__(sensor_size)
        hot = np.asarray(hot, dtype=np.bool_)
        if hot.shape != (self.sensor_size.height, self.sensor_size.width):
            raise ConfigError(f"hot: mask shape {hot.shape} does not match the {self.sensor_size} sensor (H, W)")
        self.hot = hot
        self._allowed = ~hot

    @classmethod
    def learn(cls, events: np.ndarray, sensor_size: SensorSize | tuple[int, int], sigma: float = 5.0) -> HotPixelMask:
        """Learn the hot pixels of ``events`` (see the class docstring); events outside the sensor are ignored."""
        sensor = _sensor(sensor_size)
        if not sigma > 0:
            raise ConfigError(f"sigma: must be positive, got {sigma}")
        ev = as_events(events)
        counts = np.zeros((sensor.height, sensor.width), dtype=np.int64)
        K.pixel_counts(ev["x"], ev["y"], counts)
        median = float(np.median(counts))
        mad = float(np.median(np.abs(counts - median)))
        scale = max(1.4826 * mad, float(np.sqrt(max(median, 1.0))))
        return cls(sensor, counts > median + sigma * scale)

    @property
    def pixels(self) -> np.ndarray:
        """Hot pixels as ``int64 [N, 2]`` rows of ``(x, y)``."""
        y, x = np.nonzero(self.hot)
        return np.stack([x, y], axis=1)

    def apply(self, events: np.ndarray | EventChunk) -> np.ndarray:
        """The events not on a hot pixel (same as calling the mask)."""
        return self(events)

    def _mark(self, ev: np.ndarray, keep: np.ndarray) -> int:
        return K.pixel_mask(ev["x"], ev["y"], self._allowed, keep)
