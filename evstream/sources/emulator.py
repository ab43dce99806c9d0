"""Frames → DVS events: a per-pixel log-intensity change detector with noise.

The model follows the published frame-based DVS emulators:

- ESIM (Rebecq et al., "ESIM: an Open Event Camera Simulator", CoRL 2018): every pixel keeps a
  reference log intensity; an event fires each time the log intensity moves one contrast threshold
  away from it, and the brightness between two frames is taken as linear in time, so each event's
  timestamp is interpolated between the two frame times instead of all events of a frame landing
  on the frame time.
- v2e (Hu, Liu, Delbruck, "v2e: From Video Frames to Realistic DVS Events", CVPR-W 2021,
  arXiv 2006.07722): per-pixel threshold mismatch (Gaussian, sigma 0.03 around 0.2), a refractory
  period, leak events (the reference slowly drifts down, so a still pixel emits ON events at about
  ``leak_rate_hz``) and shot-noise background events (Poisson per pixel). The defaults here are
  v2e's ``EventEmulator`` defaults where v2e has one (thresholds 0.2, sigma 0.03, leak 0.1 Hz).

Not modelled: v2e's photoreceptor low-pass filter (intensity-dependent bandwidth), its
lin-log curve below 20 DN (replaced by ``log(I + eps)``), and the dependence of shot-noise rate
on brightness. Noise events do not move the reference.

All per-pixel work runs in numba kernels (``nogil``), so a 640×480 frame takes a few ms.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
from numba import njit

from evstream.errors import ConfigError, EventFormatError
from evstream.events import EVENT_DTYPE, SensorSize, empty_events

__all__ = ["DvsEmulator", "emulate_video"]

# Thresholds below this are clipped (v2e clips mismatched thresholds at 0.01 as well).
_MIN_THRESHOLD = 0.01


@njit(cache=True, nogil=True)
def _grow(buf: np.ndarray, n: int) -> np.ndarray:
    out = np.empty(max(2 * len(buf), n + 1024), dtype=buf.dtype)
    out[: len(buf)] = buf
    return out


@njit(cache=True, nogil=True)
def _change_events(
    frame, scale, eps, t0, t1, prev_value, prev_log, ref, theta_on, theta_off, leak_per_us, last_t, refractory_us,
    capacity,
):
    """Threshold-crossing events of one frame interval ``(t0, t1]``; updates the pixel state.

    Returns ``(n, t, x, y, p)`` with the unsorted events in the first ``n`` slots.
    """
    height, width = frame.shape
    dt = t1 - t0
    ts = np.empty(capacity, dtype=np.int64)
    xs = np.empty(capacity, dtype=np.int16)
    ys = np.empty(capacity, dtype=np.int16)
    ps = np.empty(capacity, dtype=np.uint8)
    n = 0
    for y in range(height):
        for x in range(width):
            value = max(frame[y, x] * scale, 0.0)
            log0 = prev_log[y, x]
            if value == prev_value[y, x]:
                log1 = log0  # unchanged pixel (most of a still scene): skip the log
            else:
                log1 = np.log(value + eps)
                prev_value[y, x] = value
                prev_log[y, x] = log1
            base = ref[y, x] - leak_per_us[y, x] * dt  # the leak drifts the reference down linearly
            d0 = log0 - ref[y, x]
            d1 = log1 - base
            if d1 >= theta_on[y, x]:
                theta = theta_on[y, x]
                count = int(d1 / theta)
                polarity = 1
                sign = 1.0
            elif d1 <= -theta_off[y, x]:
                theta = theta_off[y, x]
                count = int(-d1 / theta)
                polarity = 0
                sign = -1.0
            else:
                ref[y, x] = base
                continue
            emitted = 0
            for k in range(1, count + 1):
                level = k * theta
                a = sign * d0
                b = sign * d1
                # Linear crossing time of level k in (0, 1]; a level already passed at t0 (pending
                # from a refractory period) fires at once.
                s = 0.0 if a >= level else (level - a) / (b - a)
                t = t0 + int(s * dt + 0.5)
                if t <= t0:
                    t = t0 + 1
                earliest = last_t[y, x] + refractory_us
                if t < earliest:
                    t = earliest
                if t > t1:
                    break  # still refractory at t1: the change stays pending for the next frame
                if n == len(ts):
                    ts = _grow(ts, n)
                    xs = _grow(xs, n)
                    ys = _grow(ys, n)
                    ps = _grow(ps, n)
                ts[n] = t
                xs[n] = x
                ys[n] = y
                ps[n] = polarity
                n += 1
                last_t[y, x] = t
                emitted += 1
            ref[y, x] = base + sign * emitted * theta
    return n, ts, xs, ys, ps


@njit(cache=True, nogil=True)
def _counting_sort(t, x, y, p, t0, span, out_t, out_x, out_y, out_p):
    """Stable sort of events with ``t0 < t <= t0 + span`` by time, O(n + span)."""
    counts = np.zeros(span + 2, dtype=np.int64)
    for i in range(len(t)):
        counts[t[i] - t0 + 1] += 1
    for i in range(1, span + 2):
        counts[i] += counts[i - 1]
    for i in range(len(t)):
        j = counts[t[i] - t0]
        counts[t[i] - t0] += 1
        out_t[j] = t[i]
        out_x[j] = x[i]
        out_y[j] = y[i]
        out_p[j] = p[i]


def _check_threshold(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ConfigError(f"{name} must be a positive log-intensity contrast, got {value}")
    return value


def _check_rate(name: str, value: float) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be >= 0, got {value}")
    return value


class DvsEmulator:
    """Stateful frames → events converter for one sensor (ESIM / v2e pixel model, see module doc).

    Push frames in time order; each push returns the events of the interval since the previous
    frame, time-sorted, with timestamps in ``(t_prev, t]`` µs. The first frame only sets the
    reference and returns no events.

    Args:
        sensor_size: pixel geometry; ``None`` takes it from the first frame. Every frame must be
            ``[height, width]``.
        pos_threshold: ON contrast threshold in log-intensity units (v2e default 0.2 ≈ 22 %).
        neg_threshold: OFF contrast threshold (v2e default 0.2).
        threshold_sigma: standard deviation of the per-pixel Gaussian threshold mismatch
            (v2e default 0.03); 0 gives every pixel the nominal thresholds.
        refractory_us: per-pixel dead time after an event, µs (default 100, our choice); a
            crossing inside it fires when it ends (within the frame interval) or stays pending.
            0 disables it.
        leak_rate_hz: leak-event rate per pixel, Hz (v2e default 0.1): the reference drifts down by
            ``leak_rate_hz * pos_threshold`` per second, so a still pixel fires ON events at that
            rate. Each pixel starts at a random leak phase so leak events do not come in waves.
        shot_noise_rate_hz: shot-noise background events per pixel per second (half ON, half OFF),
            Poisson in time and uniform over pixels (default 0.1 Hz, our choice).
        hot_pixels: number of hot pixels, placed at random (default 0): each fires Poisson events
            of one polarity at ``hot_pixel_rate_hz`` whatever the scene does, as stuck or leaky
            pixels of a real sensor do.
        hot_pixel_rate_hz: event rate of each hot pixel, Hz (default 5).
        log_eps: offset of ``log(I + eps)`` with I in [0, 1] full scale; limits the gain in the
            dark (ESIM adds a similar small constant).
        seed: seeds the threshold mismatch, leak phase and shot noise (deterministic output).

    Raises:
        ConfigError: a threshold <= 0, a negative rate, sigma or refractory period.
    """

    def __init__(
        self,
        sensor_size: SensorSize | None = None,
        *,
        pos_threshold: float = 0.2,
        neg_threshold: float = 0.2,
        threshold_sigma: float = 0.03,
        refractory_us: int = 100,
        leak_rate_hz: float = 0.1,
        shot_noise_rate_hz: float = 0.1,
        hot_pixels: int = 0,
        hot_pixel_rate_hz: float = 5.0,
        log_eps: float = 0.01,
        seed: int = 0,
    ) -> None:
        self.pos_threshold = _check_threshold("pos_threshold", pos_threshold)
        self.neg_threshold = _check_threshold("neg_threshold", neg_threshold)
        self.threshold_sigma = _check_rate("threshold_sigma", threshold_sigma)
        self.leak_rate_hz = _check_rate("leak_rate_hz", leak_rate_hz)
        self.shot_noise_rate_hz = _check_rate("shot_noise_rate_hz", shot_noise_rate_hz)
        self.log_eps = _check_threshold("log_eps", log_eps)
        self.hot_pixel_rate_hz = _check_rate("hot_pixel_rate_hz", hot_pixel_rate_hz)
        if int(hot_pixels) < 0:
            raise ConfigError(f"hot_pixels must be >= 0, got {hot_pixels}")
        self.hot_pixels = int(hot_pixels)
        if int(refractory_us) < 0:
            raise ConfigError(f"refractory_us must be >= 0, got {refractory_us}")
        self.refractory_us = int(refractory_us)
        self.sensor_size = sensor_size
        self._rng = np.random.default_rng(seed)
        self._t_last: int | None = None
        self._prev_log: np.ndarray | None = None

    @property
    def t_last(self) -> int | None:
        """Time of the last frame pushed, µs (``None`` before the first)."""
        return self._t_last

    def reset(self) -> None:
        """Forget the pixel state; the next frame starts a fresh reference (the sensor is kept)."""
        self._t_last = None
        self._prev_log = None

    def _init_state(self, shape: tuple[int, int]) -> None:
        rng = self._rng
        mismatch_on = rng.normal(0.0, self.threshold_sigma, shape) if self.threshold_sigma else 0.0
        mismatch_off = rng.normal(0.0, self.threshold_sigma, shape) if self.threshold_sigma else 0.0
        self._theta_on = np.maximum(self.pos_threshold + mismatch_on, _MIN_THRESHOLD) * np.ones(shape)
        self._theta_off = np.maximum(self.neg_threshold + mismatch_off, _MIN_THRESHOLD) * np.ones(shape)
        # Reference drift of leak_rate_hz thresholds per second, per µs (v2e's leak model).
        self._leak_per_us = self._theta_on * (self.leak_rate_hz * 1e-6)
        self._last_t = np.full(shape, np.iinfo(np.int64).min // 2, dtype=np.int64)
        count = min(self.hot_pixels, shape[0] * shape[1])
        self._hot = rng.choice(shape[0] * shape[1], count, replace=False) if count else np.zeros(0, np.int64)
        self._hot_polarity = rng.integers(0, 2, count).astype(np.uint8)

    def _as_frame(self, frame: np.ndarray) -> tuple[np.ndarray, float]:
        if not isinstance(frame, np.ndarray):
            raise EventFormatError(f"frame: expected a 2-D numpy array, got {type(frame).__name__}")
        if frame.ndim != 2:
            raise EventFormatError(f"frame: expected a 2-D [height, width] grayscale array, got shape {frame.shape}")
        kind = frame.dtype.kind
        if frame.dtype == np.uint8:
            scale = 1.0 / 255.0
        elif frame.dtype == np.uint16:
            scale = 1.0 / 65535.0
        elif kind == "f":
            scale = 1.0
        else:
            raise EventFormatError(f"frame: dtype {frame.dtype} not supported (uint8, uint16 or float in [0, 1])")
        height, width = frame.shape
        if self.sensor_size is None:
            self.sensor_size = SensorSize(width, height)
        elif (width, height) != (self.sensor_size.width, self.sensor_size.height):
            raise EventFormatError(f"frame: size {width}x{height} differs from the emulator's sensor {self.sensor_size}")
        if kind == "f":
            bad = np.flatnonzero(~np.isfinite(frame))
            if len(bad):
                raise EventFormatError(f"frame: pixel x={bad[0] % width} y={bad[0] // width} is NaN or infinite")
        return frame, scale

    def push(self, frame: np.ndarray, t_us: int) -> np.ndarray:
        """Take the frame seen at ``t_us`` and return the events since the previous frame.

        Args:
            frame: ``[height, width]`` grayscale intensity: uint8 (0–255), uint16, or float with
                1.0 = full scale. Linear intensity, not gamma-corrected.
            t_us: frame time, µs; must increase from push to push.

        Returns:
            ``EVENT_DTYPE`` events, time-sorted, timestamps in ``(t_prev, t_us]``.

        Raises:
            EventFormatError: not a 2-D array, unsupported dtype, NaN/inf pixel, a size other than
                the sensor's, or a ``t_us`` not after the previous frame.
        """
        frame, scale = self._as_frame(frame)
        t_us = int(t_us)
        if self._prev_log is None:
            self._init_state(frame.shape)
            self._prev_value = np.maximum(frame.astype(np.float64) * scale, 0.0)
            log = np.log(self._prev_value + self.log_eps)
            self._prev_log = log
            # Random leak phase: each reference starts somewhere within one threshold below.
            phase = self._rng.random(frame.shape) if self.leak_rate_hz > 0 else 0.0
            self._ref = log - phase * self._theta_on
            self._t_last = t_us
            return empty_events()
        if t_us <= self._t_last:
            raise EventFormatError(f"frame: t_us {t_us} is not after the previous frame's {self._t_last}")
        t0 = self._t_last
        span = t_us - t0
        n, ts, xs, ys, ps = _change_events(
            frame, scale, self.log_eps, t0, t_us, self._prev_value, self._prev_log, self._ref, self._theta_on, self._theta_off,
            self._leak_per_us, self._last_t, self.refractory_us, 4096,
        )
        self._t_last = t_us
        ts, xs, ys, ps = ts[:n], xs[:n], ys[:n], ps[:n]
        n_noise = self._rng.poisson(self.shot_noise_rate_hz * frame.size * span * 1e-6) if self.shot_noise_rate_hz else 0
        if n_noise:
            rng = self._rng
            pixel = rng.integers(0, frame.size, n_noise)
            ts = np.concatenate([ts, rng.integers(t0 + 1, t_us + 1, n_noise)])
            xs = np.concatenate([xs, (pixel % frame.shape[1]).astype(np.int16)])
            ys = np.concatenate([ys, (pixel // frame.shape[1]).astype(np.int16)])
            ps = np.concatenate([ps, rng.integers(0, 2, n_noise).astype(np.uint8)])
        if len(self._hot) and self.hot_pixel_rate_hz:
            rng = self._rng
            counts = rng.poisson(self.hot_pixel_rate_hz * span * 1e-6, len(self._hot))
            if counts.any():
                pixel = np.repeat(self._hot, counts)
                ts = np.concatenate([ts, rng.integers(t0 + 1, t_us + 1, len(pixel))])
                xs = np.concatenate([xs, (pixel % frame.shape[1]).astype(np.int16)])
                ys = np.concatenate([ys, (pixel // frame.shape[1]).astype(np.int16)])
                ps = np.concatenate([ps, np.repeat(self._hot_polarity, counts)])
        out = np.zeros(len(ts), dtype=EVENT_DTYPE)  # zeroed padding: files written from it are reproducible
        if span <= 4 * len(ts) + 65536:
            _counting_sort(ts, xs, ys, ps, t0, span, out["t"], out["x"], out["y"], out["p"])
        else:  # a long gap (stalled camera) with few events: a comparison sort is cheaper
            order = np.argsort(ts, kind="stable")
            out["t"], out["x"], out["y"], out["p"] = ts[order], xs[order], ys[order], ps[order]
        return out


def emulate_video(
    frames: Iterable[np.ndarray], fps: float, emulator: DvsEmulator | None = None, t0_us: int = 0
) -> Iterator[np.ndarray]:
    """Events of a frame sequence sampled at ``fps``, one array per frame interval.

    Args:
        frames: ``[height, width]`` frames in time order (see :meth:`DvsEmulator.push`).
        fps: frame rate, Hz; frame ``i`` is taken at ``t0_us + round(i * 1e6 / fps)`` µs.
        emulator: the emulator to use (default: a fresh one with default parameters).
        t0_us: time of the first frame, µs.

    Raises:
        ConfigError: ``fps`` not positive or above 1 MHz (frames would share a µs).
    """
    fps = float(fps)
    if not np.isfinite(fps) or fps <= 0 or fps > 1e6:
        raise ConfigError(f"fps must be in (0, 1e6], got {fps}")
    emulator = DvsEmulator() if emulator is None else emulator
    for i, frame in enumerate(frames):
        yield emulator.push(frame, t0_us + round(i * 1e6 / fps))
