"""Event-stream statistics of a recording, to hold a synthetic stream up against a real one.

What a DVS camera's output looks like at the level of counts, without any network: how many events
per second and per 100 ms, the ON share, how noisy the background is when nothing moves, how
noisy the still part of the picture is while something moves, and how the intervals between two
events of one pixel are distributed. :func:`event_statistics` computes all of it in one call;
``bench/realism.py`` prints it side by side for real and synthetic recordings.

Definitions (times in µs on the recording's clock; bins are consecutive ``bin_us`` = 100 ms
intervals from the first event; only whole bins count):

- **mean rate**: events / (last t - first t + 1 µs), ev/s.
- **per-bin counts**: p10 / p50 / p90 / max of the events in each whole bin.
- **quiet background** (the definition of ``../shared/reference/spikformer.md`` §8 for the real
  DVS128 chip): take the quietest ``quiet_fraction`` = 10 % of the bins (fewest events; at least
  one bin), count each pixel's events in them and divide by their total time: a rate per pixel
  in Hz. Reported: its mean over all pixels of the sensor, its 99th percentile over pixels and
  the number of pixels above 10 Hz (hot pixels).
- **still region during activity**: the *active* bins are those with at least the median count.
  They are split alternately (in time order) into a selection half and a measurement half. The
  still region is the pixels whose count in the selection half is at most the ``still_fraction``
  = 25 % quantile of those counts (ties included); its rate is the mean over those pixels of the
  measurement half's count divided by the measurement half's time. Selecting on one half and
  measuring on the other keeps the figure unbiased (selecting the pixels with the lowest counts
  and reporting those same counts would read low). With a single active bin both halves are that
  bin (then it reads low; ``still_split`` says so).
- **inter-event intervals**: per pixel (both polarities), the differences between consecutive
  event times, pooled over all pixels. Histogram on ``IEI_EDGES_US`` (log-spaced, 10 bins per
  decade, 1 µs .. 10 s; shorter intervals, including 0, fall in the first bin and longer ones in
  the last), normalised to sum 1; quantiles p10 / p50 / p90 from the intervals themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from evstream.errors import ConfigError
from evstream.events import SensorSize, as_events

__all__ = [
    "IEI_EDGES_US",
    "EventStatistics",
    "event_statistics",
    "bin_counts",
    "quiet_pixel_rates",
    "still_region_rate",
    "iei_histogram",
]

IEI_EDGES_US = np.logspace(0, 7, 71)
"""Inter-event-interval bin edges, µs: 1 µs .. 10 s, 10 bins per decade (71 edges, 70 bins)."""

HOT_PIXEL_HZ = 10.0
"""Quiet-time rate above which a pixel counts as hot (spikformer.md §8: "no pixel above 10 Hz")."""


@dataclass(frozen=True)
class EventStatistics:
    """Statistics of one recording (see the module docstring for every definition)."""

    sensor: str  # "WxH"
    n_events: int
    duration_s: float  # last t - first t + 1 µs
    mean_rate_hz: float  # events per second, whole sensor
    bin_us: int
    n_bins: int  # whole bins
    count_p10: float  # events per bin
    count_p50: float
    count_p90: float
    count_max: int
    on_fraction: float
    quiet_bins: int  # bins that make the quiet time
    quiet_rate_hz: float  # mean over pixels, Hz per pixel
    quiet_rate_p99_hz: float  # 99th percentile over pixels, Hz
    quiet_hot_pixels: int  # pixels above HOT_PIXEL_HZ in the quiet time
    still_pixels: int  # pixels in the still region
    still_rate_hz: float  # mean over still pixels in the measurement half of the active bins, Hz
    still_split: bool  # False when one active bin served as both halves
    iei_p10_us: float
    iei_p50_us: float
    iei_p90_us: float
    iei_zero_fraction: float  # share of intervals of 0 µs (same timestamp at one pixel)
    iei_peak_us: float  # geometric centre of the fullest histogram bin
    iei_histogram: np.ndarray = field(repr=False)  # [70] float64, sums to 1 (0 when no interval)

    @property
    def mean_rate_per_pixel_hz(self) -> float:
        """Mean rate divided by the sensor's pixel count, Hz per pixel."""
        width, height = (int(v) for v in self.sensor.split("x"))
        return self.mean_rate_hz / (width * height)

    def as_dict(self, histogram: bool = True) -> dict:
        """Plain-Python dict of every field (the histogram as a list, with its edges, when asked)."""
        out = {name: getattr(self, name) for name in self.__dataclass_fields__ if name != "iei_histogram"}
        out["mean_rate_per_pixel_hz"] = self.mean_rate_per_pixel_hz
        if histogram:
            out["iei_histogram"] = self.iei_histogram.tolist()
            out["iei_edges_us"] = IEI_EDGES_US.tolist()
        return out


def _checked(events: np.ndarray, sensor_size: SensorSize) -> tuple[np.ndarray, np.ndarray]:
    """Events as EVENT_DTYPE sorted by time, and their flat pixel index; raises ConfigError."""
    if not isinstance(sensor_size, SensorSize):
        raise ConfigError(f"sensor_size: expected an evstream.SensorSize, got {type(sensor_size).__name__}")
    ev = as_events(events)
    if len(ev) < 2:
        raise ConfigError(f"event statistics need at least 2 events, got {len(ev)}")
    x, y = ev["x"].astype(np.int64), ev["y"].astype(np.int64)
    outside = (x < 0) | (x >= sensor_size.width) | (y < 0) | (y >= sensor_size.height)
    if outside.any():
        i = int(np.argmax(outside))
        raise ConfigError(f"event {i} at ({x[i]}, {y[i]}) lies outside the {sensor_size} sensor")
    t = ev["t"]
    if np.any(t[1:] < t[:-1]):
        order = np.argsort(t, kind="stable")
        ev, x, y = ev[order], x[order], y[order]
    return ev, y * sensor_size.width + x


def bin_counts(t_us: np.ndarray, bin_us: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """Events per whole ``bin_us`` bin from the first event, and each event's bin (``-1`` = partial bin).

    Args:
        t_us: event times, µs, sorted.
        bin_us: bin length, µs.

    Returns:
        ``(counts [n_bins] int64, bin_of_event [n] int64)``.

    Raises:
        ConfigError: ``bin_us`` <= 0, or the recording is shorter than one bin.
    """
    bin_us = int(bin_us)
    if bin_us <= 0:
        raise ConfigError(f"bin_us must be positive, got {bin_us}")
    t0 = int(t_us[0])
    duration = int(t_us[-1]) - t0 + 1
    n_bins = duration // bin_us
    if n_bins == 0:
        raise ConfigError(f"the recording lasts {duration} µs, shorter than one {bin_us} µs bin")
    index = (t_us - t0) // bin_us
    index[index >= n_bins] = -1
    counts = np.bincount(index[index >= 0], minlength=n_bins)
    return counts, index


def quiet_pixel_rates(
    pixel: np.ndarray, bin_of_event: np.ndarray, counts: np.ndarray, n_pixels: int, bin_us: int,
    quiet_fraction: float = 0.1,
) -> tuple[np.ndarray, int]:
    """Per-pixel event rate (Hz) over the quietest ``quiet_fraction`` of the bins.

    Args:
        pixel: flat pixel index per event, ``y * width + x``.
        bin_of_event: bin per event from :func:`bin_counts`.
        counts: events per bin.
        n_pixels: pixels of the sensor.
        bin_us: bin length, µs.
        quiet_fraction: share of the bins (fewest events first) that make the quiet time.

    Returns:
        ``(rates [n_pixels] float64 Hz, number of quiet bins)``.
    """
    if not 0 < quiet_fraction <= 1:
        raise ConfigError(f"quiet_fraction must be in (0, 1], got {quiet_fraction}")
    n_quiet = max(1, int(math.floor(quiet_fraction * len(counts))))
    quiet = np.zeros(len(counts) + 1, dtype=bool)  # last slot: the partial bin (index -1)
    quiet[np.argsort(counts, kind="stable")[:n_quiet]] = True
    hits = np.bincount(pixel[quiet[bin_of_event]], minlength=n_pixels)
    return hits / (n_quiet * bin_us * 1e-6), n_quiet


def still_region_rate(
    pixel: np.ndarray, bin_of_event: np.ndarray, counts: np.ndarray, n_pixels: int, bin_us: int,
    still_fraction: float = 0.25,
) -> tuple[float, int, bool]:
    """Rate (Hz per pixel) of the least active pixels while the scene is active.

    Active bins: count >= the median bin count, split alternately into a selection half and a
    measurement half; still pixels: selection-half count <= its ``still_fraction`` quantile.

    Returns:
        ``(mean rate of the still pixels in the measurement half, Hz; number of still pixels;
        whether the halves were distinct bins)``.
    """
    if not 0 < still_fraction <= 1:
        raise ConfigError(f"still_fraction must be in (0, 1], got {still_fraction}")
    active = np.flatnonzero(counts >= np.median(counts))
    split = len(active) >= 2
    select_bins, measure_bins = (active[0::2], active[1::2]) if split else (active, active)
    select = np.zeros(len(counts) + 1, dtype=bool)
    measure = np.zeros(len(counts) + 1, dtype=bool)
    select[select_bins] = True
    measure[measure_bins] = True
    select_counts = np.bincount(pixel[select[bin_of_event]], minlength=n_pixels)
    measure_counts = np.bincount(pixel[measure[bin_of_event]], minlength=n_pixels)
    still = select_counts <= np.quantile(select_counts, still_fraction)
    rate = float(measure_counts[still].mean()) / (len(measure_bins) * bin_us * 1e-6)
    return rate, int(still.sum()), split


def iei_histogram(t_us: np.ndarray, pixel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inter-event intervals per pixel, pooled, and their normalised histogram on :data:`IEI_EDGES_US`.

    Args:
        t_us: event times, µs, sorted.
        pixel: flat pixel index per event.

    Returns:
        ``(intervals [m] int64 µs, histogram [70] float64 summing to 1, or zeros when m = 0)``.
    """
    order = np.argsort(pixel, kind="stable")  # stable: time order kept within each pixel
    t_sorted, p_sorted = t_us[order], pixel[order]
    same = p_sorted[1:] == p_sorted[:-1]
    intervals = (t_sorted[1:] - t_sorted[:-1])[same]
    clipped = np.clip(intervals.astype(np.float64), IEI_EDGES_US[0], IEI_EDGES_US[-1] * 0.999)
    hist = np.histogram(clipped, bins=IEI_EDGES_US)[0].astype(np.float64)
    if hist.sum() > 0:
        hist /= hist.sum()
    return intervals, hist


def event_statistics(
    events: np.ndarray,
    sensor_size: SensorSize,
    *,
    bin_us: int = 100_000,
    quiet_fraction: float = 0.1,
    still_fraction: float = 0.25,
) -> EventStatistics:
    """All statistics of the module docstring for one recording.

    Args:
        events: ``EVENT_DTYPE`` array (t int64 µs, x, y, p); sorted here when it is not.
        sensor_size: the sensor's pixel geometry (rates per pixel count every pixel of it).
        bin_us: bin length for counts, quiet time and active time, µs (100 ms as in §8).
        quiet_fraction: share of the bins, fewest events first, that make the quiet time.
        still_fraction: quantile of the active-time pixel counts that bounds the still region.

    Returns:
        :class:`EventStatistics`.

    Raises:
        ConfigError: fewer than 2 events, an event outside the sensor, a recording shorter than
            one bin, or a bad parameter.
        EventFormatError: ``events`` is not an event array.
    """
    ev, pixel = _checked(events, sensor_size)
    n_pixels = sensor_size.width * sensor_size.height
    t = ev["t"]
    counts, bin_of_event = bin_counts(t, bin_us)
    quiet_rates, n_quiet = quiet_pixel_rates(pixel, bin_of_event, counts, n_pixels, bin_us, quiet_fraction)
    still_rate, still_pixels, split = still_region_rate(pixel, bin_of_event, counts, n_pixels, bin_us,
                                                        still_fraction)
    intervals, hist = iei_histogram(t, pixel)
    if len(intervals):
        q10, q50, q90 = (float(v) for v in np.quantile(intervals, [0.1, 0.5, 0.9]))
        zero = float(np.mean(intervals == 0))
        k = int(np.argmax(hist))
        peak = float(math.sqrt(IEI_EDGES_US[k] * IEI_EDGES_US[k + 1]))
    else:
        q10 = q50 = q90 = zero = peak = math.nan
    duration_s = (int(t[-1]) - int(t[0]) + 1) * 1e-6
    p10, p50, p90 = (float(v) for v in np.quantile(counts, [0.1, 0.5, 0.9]))
    return EventStatistics(
        sensor=str(sensor_size),
        n_events=len(ev),
        duration_s=duration_s,
        mean_rate_hz=len(ev) / duration_s,
        bin_us=int(bin_us),
        n_bins=len(counts),
        count_p10=p10,
        count_p50=p50,
        count_p90=p90,
        count_max=int(counts.max()),
        on_fraction=float(np.mean(ev["p"] != 0)),
        quiet_bins=n_quiet,
        quiet_rate_hz=float(quiet_rates.mean()),
        quiet_rate_p99_hz=float(np.quantile(quiet_rates, 0.99)),
        quiet_hot_pixels=int(np.sum(quiet_rates > HOT_PIXEL_HZ)),
        still_pixels=still_pixels,
        still_rate_hz=still_rate,
        still_split=split,
        iei_p10_us=q10,
        iei_p50_us=q50,
        iei_p90_us=q90,
        iei_zero_fraction=zero,
        iei_peak_us=peak,
        iei_histogram=hist,
    )
