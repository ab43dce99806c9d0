"""Replay of a recording (``.aedat4`` or AEDAT 3.1 ``.aedat``) as a paced event source.

The reader (``evstream.io.open_reader``) decodes packets as fast as it can; :class:`FileSource`
re-slices them into chunks of ``chunk_us`` sensor time on a fixed grid, so pacing is smooth however
the recorder packed its packets, and hands every chunk to a :class:`~evstream.sources.pacing.ReplayPacer`
before yielding it (real time × ``speed``, or as fast as possible with ``speed=None``).

Chunk times: inside one pass over the file the chunks tile sensor time, ``t_end`` of each chunk =
``t_start`` of the next, also across quiet periods (empty chunks), so a binner downstream closes
its time steps without gaps. Paced replay yields one empty chunk per ``chunk_us`` of a quiet
period; as fast as possible (``speed=None``) a quiet period longer than :data:`SKIP_QUIET_US`
becomes one empty chunk (still on the grid), so a timestamp jump of days costs one chunk, not
millions, and the binner's gap rule (``max_gap_us``) sees the jump whole. A seek starts a new tiling at the sought time (time may jump back:
the consumer resets what it accumulated). Looping keeps sensor time increasing: pass ``k`` is
shifted by ``k × period`` with ``period`` = the recording's duration rounded up to whole chunks plus
one chunk; the quiet stretch between the last chunk of a pass and the first chunk of the next is
yielded as one empty chunk, so a binner never sees time go backwards at a loop.

Controls (:meth:`pause`, :meth:`resume`, :meth:`seek`, :meth:`set_speed`, :meth:`set_loop`) are
thread-safe and meant to be called from another thread than the one iterating.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from evstream.errors import ConfigError, EventFileError
from evstream.events import EventChunk, concatenate, empty_events, slice_time
from evstream.sources.base import EventSource
from evstream.sources.pacing import ReplayPacer

__all__ = ["FileSource", "SKIP_QUIET_US"]

# As fast as possible, a quiet stretch longer than this is one empty chunk instead of a tiling.
SKIP_QUIET_US = 1_000_000


class FileSource(EventSource):
    """A recording replayed chunk by chunk, paced to real time × ``speed``.

    Args:
        path: ``.aedat4`` or AEDAT 3.1 ``.aedat`` file.
        speed: replay factor in [0.25, 4], or ``None`` for as fast as possible (evaluation).
        loop: start over at the end, with sensor time still increasing (see the module docstring).
        start_us: where to start, in µs from the recording's first event.
        chunk_us: sensor time covered by one chunk, µs.
        clock: monotonic wall clock in seconds, for the pacer (a fake one in tests).
        sleep: sleep function in seconds, for the pacer.

    Raises:
        EventFileError: the file cannot be opened or read (names the file and byte offset).
        ConfigError: an option out of range (names the option).
    """

    live = False

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        speed: float | None = 1.0,
        loop: bool = False,
        start_us: int = 0,
        chunk_us: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from evstream.io import open_reader

        self.path = Path(path)
        self.name = self.path.name
        if int(chunk_us) <= 0:
            raise ConfigError(f"chunk_us: must be a positive number of µs, got {chunk_us}")
        if int(start_us) < 0:
            raise ConfigError(f"start_us: must be >= 0 µs from the recording's start, got {start_us}")
        self._chunk_us = int(chunk_us)
        self._pacer = ReplayPacer(speed, clock=clock, sleep=sleep)
        self._lock = threading.Lock()
        self._loop = bool(loop)
        self._closed = False
        try:
            self._reader = open_reader(self.path)
        except OSError as err:
            raise EventFileError(self.path, err.strerror or str(err)) from None
        try:
            self.sensor_size = self._reader.sensor_size
            self._open_error: EventFileError | None = None
            self._t_first, self._t_last = self._time_range()
            if self._t_first is not None and int(start_us) > self.duration_us:
                raise ConfigError(f"start_us: {start_us} µs is past the end of {self.name} ({self.duration_us} µs long)")
        except BaseException:
            self._reader.close()
            raise
        self._seek_to: int | None = int(start_us)
        self._position_us = int(start_us)

    # -- what the recording is -------------------------------------------------------------

    def _time_range(self) -> tuple[int | None, int | None]:
        """(first, last) event time in µs; (None, None) for a recording without events.

        From the reader's ``time_range()`` when it has one (AEDAT 4: the file's data table);
        otherwise (AEDAT 3.1, damaged AEDAT 4) by decoding the readable packets once.
        """
        time_range = getattr(self._reader, "time_range", None)
        if time_range is not None:
            try:
                found = time_range()
            except EventFileError:
                pass  # damaged file: scan what is readable; iteration raises the error in order
            else:
                return (None, None) if found is None else (int(found[0]), int(found[1]))
        first = last = None
        try:
            for packet in self._reader.iter_packets():
                if len(packet):
                    first = int(packet["t"][0]) if first is None else first
                    last = int(packet["t"][-1])
        except EventFileError as err:
            self._open_error = err  # raised by iteration when nothing before the damage was readable
        return first, last

    @property
    def t_first(self) -> int | None:
        """Time of the recording's first event, µs on the sensor clock (None when it has none)."""
        return self._t_first

    @property
    def duration_us(self) -> int:
        """Last minus first event time, µs (0 for a recording without events)."""
        return 0 if self._t_first is None else self._t_last - self._t_first

    @property
    def period_us(self) -> int:
        """Sensor-time shift between two loop passes: duration rounded up to whole chunks, plus one chunk."""
        whole = -(-(self.duration_us + 1) // self._chunk_us)
        return (whole + 1) * self._chunk_us

    @property
    def position_us(self) -> int:
        """Where the replay is, µs from the recording's start: end of the last chunk released or the sought time."""
        with self._lock:
            return self._position_us

    # -- controls (any thread) -------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """Whether the replay is paused."""
        return self._pacer.paused

    @property
    def speed(self) -> float | None:
        """Replay factor, ``None`` = as fast as possible."""
        return self._pacer.speed

    @property
    def loop(self) -> bool:
        """Whether the replay starts over at the end."""
        return self._loop

    def pause(self) -> None:
        """Hold the replay; paused wall time does not count towards pacing."""
        self._pacer.pause()

    def resume(self) -> None:
        """Continue after :meth:`pause`."""
        self._pacer.resume()

    def set_speed(self, speed: float | None) -> None:
        """Change the replay factor (0.25–4, or ``None`` = as fast as possible).

        Raises:
            ConfigError: naming ``speed`` when out of range.
        """
        self._pacer.set_speed(speed)

    def set_loop(self, loop: bool) -> None:
        """Turn looping on or off; turning it off lets the current pass finish."""
        self._loop = bool(loop)

    def seek(self, t_us: int) -> None:
        """Continue the replay from ``t_us`` µs after the recording's first event (same loop pass).

        Raises:
            ConfigError: naming ``t_us`` when negative or past the end.
        """
        t_us = int(t_us)
        if not 0 <= t_us <= self.duration_us:
            raise ConfigError(f"t_us: seek target {t_us} µs is outside {self.name} (0 to {self.duration_us} µs)")
        with self._lock:
            self._seek_to = t_us
            self._position_us = t_us
        self._pacer.reanchor()

    def close(self) -> None:
        """Stop the replay (also a replay waiting for its next chunk) and close the file. Idempotent."""
        self._closed = True
        self._pacer.cancel()
        with self._lock:
            reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    # -- iteration -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[EventChunk]:
        """Yield paced chunks until the end (or forever when looping); see the module docstring.

        Raises:
            EventFileError: after yielding every readable event of a damaged file.
        """
        if self._t_first is None:
            if self._open_error is not None:
                raise self._open_error
            return
        with self._lock:
            if self._seek_to is None:
                self._seek_to = self._position_us
        pass_index = 0
        chunks: Iterator[tuple[np.ndarray, int, int]] | None = None
        while not self._closed:
            with self._lock:
                seek_to, self._seek_to = self._seek_to, None
            if seek_to is not None:
                chunks = self._file_chunks(self._t_first + seek_to)
            shift = pass_index * self.period_us
            try:
                item = next(chunks, None)
            except Exception:
                if self._closed:
                    return  # the reader was closed under us by close() from another thread
                raise
            if item is None:
                if not self._loop:
                    return
                pass_index += 1
                gap_start = self._last_end + shift
                gap_end = self._t_first + pass_index * self.period_us
                with self._lock:
                    if self._seek_to is None:
                        self._seek_to = 0
                if not self._pacer.wait(gap_start, gap_end):
                    if self._closed:
                        return
                    continue  # a seek interrupted the wait: it applies to the new pass
                yield EventChunk(empty_events(), gap_start, gap_end)
                continue
            events, t_start, t_end = item
            if not self._pacer.wait(t_start + shift, t_end + shift):
                if self._closed:
                    return
                continue  # a seek interrupted the wait: drop this chunk
            with self._lock:
                if self._seek_to is not None:
                    continue
                self._position_us = t_end - self._t_first
            if shift:
                events = events.copy()
                events["t"] += shift
            yield EventChunk(events, t_start + shift, t_end + shift)

    def _packets(self, t_start: int) -> Iterator[np.ndarray]:
        """Event packets of the reader from about ``t_start`` on (the reader's seek when it has one)."""
        reader = self._reader
        if reader is None:
            return iter(())
        if "t_start" in inspect.signature(reader.iter_packets).parameters:
            return reader.iter_packets(t_start=t_start)
        return reader.iter_packets()

    def _file_chunks(self, t_start: int) -> Iterator[tuple[np.ndarray, int, int]]:
        """Re-slice the reader's packets into ``(events, t_start, t_end)`` on a ``chunk_us`` grid from ``t_start``.

        Records the end of the last chunk in ``self._last_end``. A read error is raised after the
        chunk holding the events read before it.
        """
        step = self._chunk_us
        current = t_start
        pending: list[np.ndarray] = []
        self._last_end = t_start
        try:
            for packet in self._packets(t_start):
                packet = slice_time(packet, t_start)
                while len(packet):
                    bound = current + step
                    k = int(np.searchsorted(packet["t"], bound, side="left"))
                    quiet = int(packet["t"][0]) - current
                    if k == 0 and quiet > SKIP_QUIET_US and self._pacer.speed is None and not any(map(len, pending)):
                        # Empty sensor time as fast as possible: skip it in one chunk, on the grid.
                        bound = current + quiet // step * step
                    if k == len(packet):
                        pending.append(packet)
                        break
                    pending.append(packet[:k])
                    yield _join(pending), current, bound
                    self._last_end = current = bound
                    pending = []
                    packet = packet[k:]
        except EventFileError:
            if any(len(p) for p in pending):
                events = _join(pending)
                self._last_end = int(events["t"][-1]) + 1
                yield events, current, self._last_end
            raise
        if any(len(p) for p in pending):
            yield _join(pending), current, current + step
            self._last_end = current + step


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else concatenate(parts)
