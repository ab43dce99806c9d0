"""``open_source("synthetic")``: an endless stream of rendered gestures through the DVS emulator.

A stand-in camera for demos, tests and online evaluation without hardware: one person (one
:class:`~evstream.sources.gestures.GestureScene`) performs random gestures, each followed by a
rest, rendered at ``fps`` and converted to events by :class:`DvsEmulator`. The stream is paced to
the wall clock by default (``live = True``, like a camera), or produced as fast as possible.
The ground truth travels along: :meth:`SyntheticSource.current_label` and :meth:`SyntheticSource.labels`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from evstream.errors import ConfigError
from evstream.events import EventChunk, SensorSize, concatenate
from evstream.sources.base import EventSource
from evstream.sources.emulator import DvsEmulator
from evstream.sources.gestures import N_CLASSES, GestureSequence, Lighting, sensor_emulator, warm_up

__all__ = ["SyntheticSource", "DVS128"]

DVS128 = SensorSize(128, 128)


class SyntheticSource(EventSource):
    """Endless synthetic DVS128-Gesture-like events, chunked in sensor time.

    Args:
        sensor_size: geometry (default the DVS128's 128×128).
        seed: seeds the scene, the gesture order and durations, and the emulator noise.
        chunk_us: span of each yielded chunk, µs (chunks are ``[k·chunk_us, (k+1)·chunk_us)``).
        realtime: pace chunks to the wall clock (a chunk is released when the clock passes its
            end); ``False`` yields as fast as they are made.
        clock: seconds, monotonic (injectable for tests).
        sleep: waits seconds (injectable for tests).
        gesture_s: range of gesture durations, s (uniform).
        rest_s: range of the rest before each gesture, s (uniform).
        fps: render rate, Hz.
        lighting: a lighting preset name or :class:`Lighting`; ``None`` picks one by seed.
        gestures: stop after this many gestures and a final rest; ``None`` runs forever.
        emulator: the emulator (default :func:`~evstream.sources.gestures.sensor_emulator`, seeded).
        schedule: instead of random gestures, perform exactly these ``(class, t_start_us,
            t_end_us)`` (0-based renderable class 0..10, ordered, not overlapping) and end
            ``rest_s[1]`` s after the last; ``gestures`` is then ignored.

    Raises:
        ConfigError: a non-positive ``chunk_us``/``fps``, a bad duration range or schedule.
    """

    name = "synthetic"

    def __init__(
        self,
        sensor_size: SensorSize = DVS128,
        *,
        seed: int = 0,
        chunk_us: int = 10_000,
        realtime: bool = True,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        gesture_s: tuple[float, float] = (4.0, 8.0),
        rest_s: tuple[float, float] = (0.5, 1.5),
        fps: float = 100.0,
        lighting: str | Lighting | None = None,
        gestures: int | None = None,
        emulator: DvsEmulator | None = None,
        schedule: Sequence[tuple[int, int, int]] | None = None,
    ) -> None:
        if int(chunk_us) <= 0:
            raise ConfigError(f"chunk_us must be > 0, got {chunk_us}")
        if not 0 < fps <= 1e5:
            raise ConfigError(f"fps must be in (0, 100000], got {fps}")
        if not (0 < gesture_s[0] <= gesture_s[1]) or not (0 <= rest_s[0] <= rest_s[1]):
            raise ConfigError(f"gesture_s and rest_s must be ordered ranges (gesture > 0), got {gesture_s}, {rest_s}")
        if gestures is not None and gestures < 1:
            raise ConfigError(f"gestures must be >= 1 or None, got {gestures}")
        self.sensor_size = sensor_size
        self.chunk_us = int(chunk_us)
        self.live = bool(realtime)
        self.fps = float(fps)
        self.gesture_s = gesture_s
        self.rest_s = rest_s
        self.max_gestures = gestures
        self._clock = clock
        self._sleep = sleep
        self._rng = np.random.default_rng(seed)
        warm_up()  # compile the kernels before the stream starts: a live source must not stall
        self._sequence = GestureSequence(sensor_size, int(self._rng.integers(0, 2**63)), lighting)
        self._emulator = emulator or sensor_emulator(sensor_size, self._rng, self._sequence.scene.level)
        if schedule is not None:
            # Planned up front: _extend then finds every gesture planned and the stream ends after the last.
            if not len(schedule):
                raise ConfigError("schedule: at least one gesture")
            for label, t_start, t_end in schedule:
                self._sequence.add_at(int(label), int(t_start), int(t_end))
            self.max_gestures = len(schedule)
        self._order: list[int] = []
        self._emitted_us = 0
        self._closed = False

    def _extend(self, until_us: int) -> bool:
        """Plan gestures until the timeline passes ``until_us``; ``False`` once the last is planned."""
        seq = self._sequence
        while seq.t_end_us <= until_us:
            if self.max_gestures is not None and len(seq.segments) >= self.max_gestures:
                return False
            if not self._order:
                self._order = [int(c) for c in self._rng.permutation(N_CLASSES)]
            seq.add(self._order.pop(), int(self._rng.uniform(*self.gesture_s) * 1e6),
                    int(self._rng.uniform(*self.rest_s) * 1e6))
        return True

    def current_label(self, t_us: int) -> int:
        """0-based class being performed at sensor time ``t_us``, or -1 (rest: no gesture)."""
        return self._sequence.label_at(int(t_us))

    def labels(self) -> np.ndarray:
        """Labelled segments that started before the end of the last yielded chunk (``LABEL_DTYPE``)."""
        labels = self._sequence.labels()
        return labels[labels["t_start"] < self._emitted_us]

    def __iter__(self) -> Iterator[EventChunk]:
        frame_period = 1e6 / self.fps
        i = 0  # frame index
        pending: list[np.ndarray] = []
        chunk_start = 0
        wall0: float | None = None
        end_us: int | None = None
        while not self._closed:
            t_frame = round(i * frame_period)
            if end_us is None and not self._extend(t_frame + 1):
                end_us = self._sequence.t_end_us + int(self.rest_s[1] * 1e6)
            if end_us is not None and t_frame > end_us:
                break
            events = self._emulator.push(self._sequence.frame(t_frame), t_frame)
            if len(events):
                pending.append(events)
            i += 1
            # Every event before t_frame + 1 exists now: release whole chunks up to there.
            while chunk_start + self.chunk_us <= t_frame + 1:
                chunk_end = chunk_start + self.chunk_us
                merged = concatenate(pending)
                cut = int(np.searchsorted(merged["t"], chunk_end))
                pending = [merged[cut:]] if cut < len(merged) else []
                if self.live:
                    now = self._clock()
                    wall0 = now - chunk_start * 1e-6 if wall0 is None else wall0
                    wait = wall0 + chunk_end * 1e-6 - now
                    if wait > 0:
                        self._sleep(wait)
                self._emitted_us = chunk_end
                yield EventChunk(merged[:cut], chunk_start, chunk_end)
                chunk_start = chunk_end
                if self._closed:
                    return
        if not self._closed and end_us is not None and chunk_start <= end_us:
            self._emitted_us = end_us + 1
            yield EventChunk(concatenate(pending), chunk_start, end_us + 1)

    def close(self) -> None:
        """Stop the stream; a running iteration ends after its current chunk."""
        self._closed = True
