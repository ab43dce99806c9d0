"""Replay of a recording (``.aedat4`` or AEDAT 3.1 ``.aedat``) as a paced event source.

The reader (``evstream.io.open_reader``) decodes packets as fast as it can; :class:`FileSource`
hands them on as :class:`~evstream.events.EventChunk` s, each released by a
:class:`~evstream.sources.pacing.ReplayPacer` (real time × ``speed``, or as fast as possible with
``speed=None``).

How chunks are cut depends on the speed, read afresh at every chunk:

- **As fast as possible** (``speed=None``): one chunk per packet of the file, the packet's own
  array (no copy, no re-slicing), from the end of the previous chunk to just after the packet's
  last event. Nothing finer is needed: the Binner downstream cuts time steps itself. A quiet
  stretch between packets lies at the start of the next chunk, so a timestamp jump of days costs
  no extra chunk and the binner's gap rule (``max_gap_us``) sees the jump whole. At the end of a
  pass one empty chunk carries time on to the ``chunk_us`` grid (as a paced pass ends).
- **Paced**: packets are re-sliced into chunks of ``chunk_us`` sensor time on a grid, so pacing
  is smooth however the recorder packed its packets; a quiet period yields one empty chunk per
  ``chunk_us``.

Either way the chunks of one pass tile sensor time: ``t_end`` of each chunk = ``t_start`` of the
next, so a binner downstream closes its time steps without gaps. A seek starts a new tiling at the
sought time (time may jump back: the consumer resets what it accumulated). Looping keeps sensor
time increasing: pass ``k`` is shifted by ``k × period`` with ``period`` = the recording's duration
rounded up to whole chunks plus one chunk; the quiet stretch between the last chunk of a pass and
the first chunk of the next is yielded as one empty chunk, so a binner never sees time go
backwards at a loop.

A recording whose event packets go back in time (a packet starting before the previous one ends)
cannot be replayed in order: it is refused with an :class:`~evstream.errors.EventFileError` that
names the file, the packet and both times, at open when the file's packet table (or the scan of
a table-less file) shows it, otherwise when iteration reaches that packet (after every chunk
before it).

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

# Kept for imports: as fast as possible, chunks follow the packets, so no quiet stretch is tiled
# (the paced tiling waits out quiet time in real time). Quiet stretches longer than this were one
# empty chunk when speed=None chunks were cut on the grid.
SKIP_QUIET_US = 1_000_000


_BACKWARDS = "time goes backwards"


class FileSource(EventSource):
    """A recording replayed chunk by chunk, paced to real time × ``speed``.

    Args:
        path: ``.aedat4`` or AEDAT 3.1 ``.aedat`` file.
        speed: replay factor in [0.1, 100], or ``None`` for as fast as possible (evaluation).
        loop: start over at the end, with sensor time still increasing (see the module docstring).
        start_us: where to start, in µs from the recording's first event (a loop starts every
            pass there too).
        end_us: where every pass ends, in µs from the recording's first event (exclusive; events
            at or after it are not replayed); ``None`` = the recording's end.
        chunk_us: sensor time covered by one chunk of a paced replay, µs (as fast as possible,
            chunks are the file's packets; see the module docstring).
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
        end_us: int | None = None,
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
        if end_us is not None and int(end_us) <= int(start_us):
            raise ConfigError(f"end_us: must be after start_us ({start_us} µs), got {end_us}")
        self._start_us = int(start_us)
        self._end_us = None if end_us is None else int(end_us)
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
            # The camera that made the recording (AEDAT 4 ``source``, AEDAT 2/3 and Prophesee headers).
            self.camera_name = str(getattr(self._reader, "camera_name", None) or getattr(self._reader, "source", "") or "")
            self._open_error: EventFileError | None = None
            self._t_first, self._t_last = self._time_range()
            if self._t_first is not None and self._t_last < self._t_first:
                raise EventFileError(self.path, f"the last event ({self._t_last} µs) is before the first ({self._t_first} µs): "
                                                "time goes backwards, so the recording cannot be replayed in order")
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

        From the reader's ``time_range()`` when it has one (AEDAT 4: the file's data table, whose
        packet times are checked for order); otherwise (AEDAT 3.1, damaged AEDAT 4) by decoding
        the readable packets once, checking their order on the way.

        Raises:
            EventFileError: an event packet starts before the previous one ends (names both).
        """
        time_range = getattr(self._reader, "time_range", None)
        if time_range is not None:
            try:
                found = time_range()
            except EventFileError:
                pass  # damaged file: scan what is readable; iteration raises the error in order
            else:
                self._check_table_order()
                return (None, None) if found is None else (int(found[0]), int(found[1]))
        first = last = None
        try:
            for index, packet in enumerate(self._reader.iter_packets()):
                if len(packet):
                    if last is not None:
                        self._check_order(index, int(packet["t"][0]), last)
                    first = int(packet["t"][0]) if first is None else first
                    last = int(packet["t"][-1])
        except EventFileError as err:
            if err.reason.startswith(_BACKWARDS):
                raise
            self._open_error = err  # raised by iteration when nothing before the damage was readable
        return first, last

    def _check_table_order(self) -> None:
        """Refuse a file whose packet table lists an event packet going back in time."""
        table = getattr(self._reader, "data_table", None)
        stream = getattr(self._reader, "event_stream_id", None)
        if not table:
            return
        rows = [r for r in table if r.stream_id == stream]
        last = None
        for index, row in enumerate(rows):
            if row.num_elements <= 0:
                continue
            if row.t_end < row.t_start:
                raise EventFileError(
                    self.path, f"{_BACKWARDS}: event packet {index} ends at {row.t_end} µs, before it starts "
                               f"({row.t_start} µs, per the file's packet table)", row.byte_offset)
            if last is not None:
                self._check_order(index, row.t_start, last, row.byte_offset)
            last = row.t_end

    def _check_order(self, index: int, t_start: int, previous_end: int, offset: int | None = None,
                     after: str = "") -> None:
        if t_start < previous_end:
            raise EventFileError(
                self.path, f"{_BACKWARDS}: event packet {index}{after} starts at {t_start} µs, before the previous "
                           f"packet's last event at {previous_end} µs; the recording cannot be replayed in order",
                offset)

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
    def quiet_skips(self) -> int:
        """Paced replay: quiet stretches cut short after ``MAX_QUIET_WAIT_S`` of waiting (see pacing)."""
        return self._pacer.quiet_skips

    @property
    def skipped_us(self) -> int:
        """Paced replay: sensor µs of quiet stretches skipped in all."""
        return self._pacer.skipped_us

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
        """Change the replay factor (0.1–100, or ``None`` = as fast as possible).

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
            EventFileError: after yielding every readable event of a damaged file, or at an event
                packet that goes back in time.
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
                    if self._grid_end <= self._last_end:
                        return
                    # The pass ended off the chunk grid (as fast as possible): one empty chunk
                    # carries time on to it, so the last steps close as in a paced replay.
                    item = (empty_events(), self._last_end, self._grid_end)
                    self._last_end = self._grid_end
                else:
                    pass_index += 1
                    gap_start = self._last_end + shift
                    gap_end = self._t_first + self._start_us + pass_index * self.period_us
                    with self._lock:
                        if self._seek_to is None:
                            self._seek_to = self._start_us
                    if not self._pacer.wait(gap_start, gap_end):
                        if self._closed:
                            return
                        continue  # a seek interrupted the wait: it applies to the new pass
                    yield EventChunk(empty_events(), gap_start, gap_end)
                    continue
            events, t_start, t_end = item
            if self._end_us is not None and t_end > self._t_first + self._end_us:
                end = self._t_first + self._end_us
                if t_start >= end:  # the pass ends at end_us: the rest of the file is not read
                    self._last_end = self._grid_end = max(t_start, self._last_end)
                    chunks = iter(())
                    continue
                events, t_end = slice_time(events, t_start, end), end
                self._last_end = self._grid_end = end
                chunks = iter(())  # after this chunk the pass is over
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
        """The reader's packets from ``t_start`` as ``(events, t_start, t_end)`` chunks tiling time.

        As fast as possible each packet is one chunk (its own array, up to just after its last
        event); when the next packet starts at that very µs, the events of that µs from both
        packets become one small chunk of their own, so no chunk holds events of another's time.
        Paced, packets are re-sliced on a ``chunk_us`` grid from ``t_start``. The speed is read at
        every chunk, so a speed change applies from the next one. Records the end of the last
        chunk in ``self._last_end`` and the next ``chunk_us`` grid point at or after it in
        ``self._grid_end``. A read error is raised after the chunks holding the events read before it.

        Raises:
            EventFileError: a damaged packet, or a packet starting before the previous one's last event.
        """
        step = self._chunk_us
        packets = iter(self._packets(t_start))
        after = "" if t_start == self._t_first else f" (counted from the seek to {t_start - self._t_first} µs)"
        index = -1
        previous = None  # last event time of the previous non-empty packet

        def fetch() -> np.ndarray | None:
            """The next non-empty packet, order-checked; None at the end."""
            nonlocal index, previous
            for packet in packets:
                index += 1
                if not len(packet):
                    continue
                if previous is None:
                    packet = slice_time(packet, t_start)  # the first packets may begin before t_start
                    if not len(packet):
                        continue
                else:
                    self._check_order(index, int(packet["t"][0]), previous, after=after)
                previous = int(packet["t"][-1])
                return packet
            return None

        current = t_start
        quiet_from = t_start  # paced: end of the last chunk that held events
        pending: list[np.ndarray] = []  # paced: events of the grid chunk being filled
        self._last_end = self._grid_end = t_start
        try:
            packet = fetch()
            while packet is not None:
                if not pending and self._pacer.speed is None:
                    # As fast as possible: the whole packet, no copy; time runs to its last event.
                    last = int(packet["t"][-1])
                    try:
                        following = fetch()
                    except EventFileError:
                        pending.append(packet)
                        raise
                    if following is None or int(following["t"][0]) > last:
                        yield packet, current, last + 1
                        self._last_end = current = last + 1
                        packet = following
                        continue
                    # The next packet starts in the same µs: that µs becomes its own small chunk.
                    k = int(np.searchsorted(packet["t"], last, side="left"))
                    h = int(np.searchsorted(following["t"], last, side="right"))
                    if k:
                        yield packet[:k], current, last
                        self._last_end = current = last
                    if h == len(following):  # all of it in that µs: look further
                        packet = concatenate([packet[k:], following])
                        continue
                    yield concatenate([packet[k:], following[:h]]), current, last + 1
                    self._last_end = current = last + 1
                    packet = following[h:]
                    continue
                if not pending and len(packet):
                    # Paced through a quiet stretch: once MAX_QUIET_WAIT_S of wall time (at this
                    # speed) has been waited out, the rest up to the next event's grid point is one
                    # chunk, due at once (ReplayPacer.skip; counted for status).
                    limit = self._pacer.quiet_limit_us()
                    first = int(packet["t"][0])
                    if limit is not None and current - quiet_from >= limit and first - current >= step:
                        target = current + (first - current) // step * step
                        self._pacer.skip(target - current)
                        yield empty_events(), current, target
                        self._last_end = current = target
                bound = current + step
                k = int(np.searchsorted(packet["t"], bound, side="left"))
                if k == len(packet):
                    pending.append(packet)
                    packet = fetch()
                    continue
                pending.append(packet[:k])
                joined = _join(pending)
                yield joined, current, bound
                if len(joined):
                    quiet_from = bound
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
        self._grid_end = t_start + -(-(self._last_end - t_start) // step) * step


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else concatenate(parts)
