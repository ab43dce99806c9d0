"""``open_source("webcam:N")``: an ordinary camera made into an event camera by the DVS emulator.

OpenCV grabs frames, which are converted to grayscale (and resized when asked) and pushed
through :class:`~evstream.sources.emulator.DvsEmulator`; each frame's timestamp is the wall clock
at capture in µs since the source started, so events are interpolated between real frame times.
The sRGB gamma is undone before the emulator; auto-exposure and noise are not, so the "log
intensity" the emulator sees is only approximately the scene's: good for demos and for exercising the live pipeline, not for
measuring. Live: the pipeline may drop windows to keep up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import numpy as np

from evstream.errors import ConfigError, SourceError
from evstream.events import EventChunk, SensorSize
from evstream.sources.base import EventSource
from evstream.sources.emulator import DvsEmulator

__all__ = ["WebcamSource"]

# 8-bit sRGB-encoded gray -> linear intensity in [0, 1] (IEC 61966-2-1 transfer curve), so the
# emulator's log sees the scene's brightness rather than the camera's gamma.
_CODE = np.arange(256) / 255.0
_LINEAR = np.where(_CODE <= 0.04045, _CODE / 12.92, ((_CODE + 0.055) / 1.055) ** 2.4).astype(np.float32)


class WebcamSource(EventSource):
    """Events from an OpenCV camera (or a video file) through the DVS emulator.

    Args:
        index: camera index (``0`` = first webcam), or a device path / video file OpenCV opens.
        sensor_size: output geometry; ``None`` keeps the camera's native size. Frames are resized
            with area interpolation.
        fps: frame rate requested from the camera, Hz (the camera may deliver another).
        clock: seconds, monotonic; frame times come from it (injectable for tests).
        emulator_options: keyword arguments of :class:`DvsEmulator` (thresholds, noise, seed).

    Raises:
        ConfigError: ``fps`` not positive.
        SourceError: no camera can be opened at ``index`` (one line, naming it).
    """

    live = True

    def __init__(
        self,
        index: int | str | os.PathLike = 0,
        *,
        sensor_size: SensorSize | None = None,
        fps: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        **emulator_options,
    ) -> None:
        import cv2

        if not 0 < float(fps) <= 1e4:
            raise ConfigError(f"fps must be in (0, 10000], got {fps}")
        self.name = f"webcam:{index if isinstance(index, int) else os.fspath(index)}"
        self._is_device = isinstance(index, int)
        self._clock = clock
        log = cv2.utils.logging
        previous = log.getLogLevel()
        log.setLogLevel(log.LOG_LEVEL_SILENT)  # OpenCV prints backend warnings for a missing device
        try:
            self._capture = cv2.VideoCapture(index if isinstance(index, int) else os.fspath(index))
        finally:
            log.setLogLevel(previous)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(f"{self.name}: cannot open camera {index!r} (no such device, busy, or no permission)")
        self._capture.set(cv2.CAP_PROP_FPS, float(fps))
        self._first: np.ndarray | None = None
        width, height = (int(self._capture.get(p)) for p in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT))
        if sensor_size is None and (width <= 0 or height <= 0):  # backend does not report it: look
            ok, self._first = self._capture.read()
            if not ok or self._first is None:
                self._capture.release()
                raise SourceError(f"{self.name}: camera opened but delivered no frame")
            height, width = self._first.shape[:2]
        self.sensor_size = sensor_size or SensorSize(width, height)
        self._emulator = DvsEmulator(self.sensor_size, **emulator_options)
        self._closed = False

    def _gray(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        if frame.ndim == 3:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if frame.shape != (self.sensor_size.height, self.sensor_size.width):
            frame = cv2.resize(frame, (self.sensor_size.width, self.sensor_size.height), interpolation=cv2.INTER_AREA)
        return _LINEAR[frame]

    def __iter__(self) -> Iterator[EventChunk]:
        """One chunk per frame, spanning ``(previous frame time, this frame time]`` in µs.

        Ends at the end of a video file; a camera that stops delivering (unplugged, taken by
        another program) raises :class:`SourceError` naming it.
        """
        t0 = None
        t_prev = 0
        frames = 0
        while not self._closed:
            if self._first is not None:
                ok, frame, self._first = True, self._first, None
            else:
                ok, frame = self._capture.read()
            now = self._clock()
            if not ok or frame is None:
                if self._is_device:
                    raise SourceError(f"{self.name}: camera stopped delivering frames after {frames} frames")
                return
            t0 = now if t0 is None else t0
            # Strictly increasing µs even when two frames arrive within the same µs tick.
            t_us = max(int((now - t0) * 1e6), t_prev + 1) if frames else 0
            events = self._emulator.push(self._gray(frame), t_us)
            if frames:
                yield EventChunk(events, t_prev + 1, t_us + 1)
            t_prev = t_us
            frames += 1

    def close(self) -> None:
        """Release the camera. Idempotent."""
        self._closed = True
        self._capture.release()
