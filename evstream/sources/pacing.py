"""Real-time pacing of a recorded stream, kept apart from the file reader.

A file reader yields chunks as fast as it can decode them; :class:`ReplayPacer` holds each chunk
back until its sensor time has come on the wall clock, scaled by a speed factor. Keeping the pacer
separate from the reader follows the Metavision SDK's habit (``prophesee-ai/openeb``,
``metavision_core/event_io/``: the real-time replay is a wrapper around the event iterator, not a
flag inside it), so the same reader serves both paced replay and evaluation as fast as possible.

Model: the first chunk after a (re-)anchoring fixes an anchor pair (sensor time ``t_anchor`` µs,
wall time ``w_anchor`` s). A chunk ending at sensor time ``t_end`` is released once
``(t_end - t_anchor) / speed`` µs of wall time have passed since ``w_anchor``. Paused wall time
does not count (the anchor moves forward by it); a seek or a switch to "as fast as possible" drops
the anchor; a change between two speeds re-anchors at the current sensor position, so the replay
continues from where it is at the new rate. A consumer that falls behind receives the following
chunks without waiting until it has caught up.

Quiet time is waited out only up to a bound: a source that sees a quiet stretch (no events)
longer than :meth:`ReplayPacer.quiet_limit_us` (``max_quiet_s`` of wall time at the current
speed, :data:`MAX_QUIET_WAIT_S` by default) waits out that much, then calls
:meth:`ReplayPacer.skip` with the rest and yields it as one chunk, due at once. The skipped stretches
are counted (:attr:`ReplayPacer.quiet_skips`, :attr:`ReplayPacer.skipped_us`) for ``status``.

The clock and the sleep are parameters, so tests drive the pacer with a fake clock and assert
release times exactly, without any real waiting.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from evstream.errors import ConfigError

__all__ = ["ReplayPacer", "MIN_SPEED", "MAX_SPEED", "MAX_QUIET_WAIT_S", "check_speed"]

MIN_SPEED = 0.1
MAX_SPEED = 100.0
# Longest quiet stretch (no events) waited out in real time, in wall seconds at any speed; a
# recording paused for 12 days is not replayed for 12 days. Longer stretches are skipped.
MAX_QUIET_WAIT_S = 5.0

# Longest single sleep (s): pause, seek, speed change and close take effect within this time.
_SLEEP_SLICE_S = 0.02
# Release times closer than this (s) count as reached: float sums of the remaining time may miss
# the exact release instant by an ulp, and sleeping for an ulp would never advance a float clock.
_TOLERANCE_S = 1e-9


def check_speed(speed: float | None, option: str = "speed") -> float | None:
    """Validate a replay speed: ``None`` (as fast as possible) or a factor in [0.1, 100].

    Raises:
        ConfigError: naming ``option`` when the value is not a number in range.
    """
    if speed is None:
        return None
    try:
        value = float(speed)
    except (TypeError, ValueError):
        raise ConfigError(f"{option}: expected a number in [{MIN_SPEED}, {MAX_SPEED}] or None, got {speed!r}") from None
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise ConfigError(f"{option}: {value:g} is outside [{MIN_SPEED}, {MAX_SPEED}] (None = as fast as possible)")
    return value


class ReplayPacer:
    """Releases chunks of a recording at ``speed`` × real time; thread-safe controls.

    Args:
        speed: replay factor in [0.1, 100], or ``None`` for as fast as possible.
        clock: monotonic wall clock in seconds (``time.monotonic``; a fake one in tests).
        sleep: sleeps for the given seconds (``time.sleep``; a fake one advancing the fake clock).
        max_quiet_s: wall seconds of a quiet stretch waited out before the rest is skipped (see
            :meth:`quiet_limit_us`).

    Raises:
        ConfigError: ``speed`` out of range, or ``max_quiet_s`` not a positive number.
    """

    def __init__(
        self,
        speed: float | None = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_quiet_s: float = MAX_QUIET_WAIT_S,
    ) -> None:
        if isinstance(max_quiet_s, bool) or not isinstance(max_quiet_s, int | float) or not 0 < max_quiet_s < float("inf"):
            raise ConfigError(f"max_quiet_s: expected a positive number of seconds, got {max_quiet_s!r}")
        self.max_quiet_s = float(max_quiet_s)
        self.quiet_skips = 0  # quiet stretches cut short by skip()
        self.skipped_us = 0  # sensor µs they skipped in all
        self._speed = check_speed(speed)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._anchor: tuple[int, float] | None = None  # (sensor µs, wall s)
        self._paused_at: float | None = None
        self._cancelled = False
        self._epoch = 0  # bumped by reanchor(): a wait in progress gives up its chunk

    @property
    def speed(self) -> float | None:
        """Current replay factor, ``None`` = as fast as possible."""
        return self._speed

    @property
    def paused(self) -> bool:
        """Whether :meth:`wait` is currently held back by :meth:`pause`."""
        return self._paused_at is not None

    def set_speed(self, speed: float | None) -> None:
        """Change the speed; the replay continues from its current sensor position at the new rate.

        Raises:
            ConfigError: ``speed`` out of range.
        """
        speed = check_speed(speed)
        with self._lock:
            if self._anchor is not None and self._speed is not None and speed is not None:
                now = self._paused_at if self._paused_at is not None else self._clock()
                t_anchor, w_anchor = self._anchor
                position = t_anchor + (now - w_anchor) * self._speed * 1e6
                self._anchor = (round(position), now)
            else:
                self._anchor = None
            self._speed = speed

    def pause(self) -> None:
        """Hold back every release until :meth:`resume`; the paused wall time does not count."""
        with self._lock:
            if self._paused_at is None:
                self._paused_at = self._clock()

    def resume(self) -> None:
        """Undo :meth:`pause`; the anchor moves forward by the time spent paused."""
        with self._lock:
            if self._paused_at is None:
                return
            if self._anchor is not None:
                t_anchor, w_anchor = self._anchor
                self._anchor = (t_anchor, w_anchor + self._clock() - self._paused_at)
            self._paused_at = None

    def reanchor(self) -> None:
        """Forget the anchor: the next chunk is timed from its own start (after a seek).

        A :meth:`wait` in progress returns ``False``: the chunk it holds belongs to the old position.
        """
        with self._lock:
            self._anchor = None
            self._epoch += 1

    def cancel(self) -> None:
        """Make any current and future :meth:`wait` return ``False`` at once (source closed)."""
        with self._lock:
            self._cancelled = True

    def quiet_limit_us(self) -> int | None:
        """Sensor µs of a quiet stretch to wait out at the current speed before skipping the rest
        (``max_quiet_s × speed``); ``None`` as fast as possible, where nothing is waited out."""
        with self._lock:
            return None if self._speed is None else round(self.max_quiet_s * self._speed * 1e6)

    def skip(self, duration_us: int) -> None:
        """Skip ``duration_us`` of quiet sensor time: chunks after it are due as if it were not there.

        The source calls it once it has waited out :meth:`quiet_limit_us` of a longer quiet
        stretch, then yields the rest of the stretch as one chunk. Counted in :attr:`quiet_skips`
        and :attr:`skipped_us`.
        """
        duration_us = int(duration_us)
        if duration_us <= 0:
            return
        with self._lock:
            if self._anchor is not None:
                t_anchor, w_anchor = self._anchor
                self._anchor = (t_anchor + duration_us, w_anchor)
            self.quiet_skips += 1
            self.skipped_us += duration_us

    def release_time(self, t_end: int) -> float | None:
        """Wall time (s) at which a chunk ending at sensor time ``t_end`` µs is due, if anchored."""
        with self._lock:
            if self._anchor is None or self._speed is None:
                return None
            t_anchor, w_anchor = self._anchor
            return w_anchor + (t_end - t_anchor) / (self._speed * 1e6)

    def wait(self, t_start: int, t_end: int) -> bool:
        """Block until the chunk covering sensor time ``[t_start, t_end)`` µs is due.

        Anchors at ``t_start`` when no anchor is set. Blocks while paused, also at speed ``None``.

        Returns:
            ``True`` when the chunk is due; ``False`` when the pacer was cancelled or re-anchored
            during the wait (drop the chunk).
        """
        with self._lock:
            epoch = self._epoch
        while True:
            with self._lock:
                if self._cancelled or self._epoch != epoch:
                    return False
                if self._paused_at is not None:
                    delay = _SLEEP_SLICE_S
                elif self._speed is None:
                    return True
                else:
                    now = self._clock()
                    if self._anchor is None:
                        self._anchor = (int(t_start), now)
                    t_anchor, w_anchor = self._anchor
                    remaining = w_anchor + (int(t_end) - t_anchor) / (self._speed * 1e6) - now
                    if remaining <= _TOLERANCE_S:
                        return True
                    delay = min(remaining, _SLEEP_SLICE_S)
            self._sleep(delay)
