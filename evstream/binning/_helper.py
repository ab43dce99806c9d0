"""An opportunistic second binning thread: it takes parts of a dense step when a core is free.

Splitting a step over numba's parallel threads makes the caller wait, at the end of the parallel
region, until every thread has run its share. On a loaded machine, or beside a model busy on every
core, a helper thread may not get a core for milliseconds, and a push that bins in 1 ms then takes
tens (measured on 2 busy cores: 10 ms chunks of a 10 Mev/s stream fell from 73 to 12 Mev/s).
Here the parts of a step are claimed one at a time, by the caller and by one helper thread; the
caller never waits for a part that nobody has started, only for one the helper is running, so a
push costs about what serial binning costs when no core is free, and less when one is.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

__all__ = ["SplitStep", "HELPER"]


class SplitStep:
    """The parts ``0 .. n_parts - 1`` of one step, each binned once, by the caller or the helper.

    Args:
        n_parts: number of parts.
        run: ``run(part, by_helper)`` bins one part (the helper's parts go to its own frame).
    """

    def __init__(self, n_parts: int, run: Callable[[int, bool], None]) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._next = 0
        self._n = n_parts
        self._closed = False
        self._helper_in = False
        self._done = threading.Event()
        self.helped = 0  # parts the helper binned
        self.error: BaseException | None = None

    def claim(self) -> int | None:
        """The next part nobody has taken, or ``None`` when all are taken."""
        with self._lock:
            if self._next >= self._n:
                return None
            self._next += 1
            return self._next - 1

    def help(self) -> None:
        """Helper thread: take parts until none are left (nothing once the caller has finished)."""
        with self._lock:
            if self._closed:
                return
            self._helper_in = True
        try:
            while (part := self.claim()) is not None:
                self._run(part, True)
                self.helped += 1
        except BaseException as err:  # handed to the caller, which raises it
            self.error = err
        finally:
            self._done.set()

    def run_all(self) -> None:
        """Caller: bin parts until none are left, then wait only for a part the helper is running.

        Raises:
            BaseException: whatever the helper's binning raised.
        """
        while (part := self.claim()) is not None:
            self._run(part, False)
        with self._lock:
            self._closed = True
            inside = self._helper_in
        if inside:
            self._done.wait()
        if self.error is not None:
            raise self.error


class _Helper:
    """One daemon thread, started on first use, that helps with every offered :class:`SplitStep`."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[SplitStep] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def offer(self, task: SplitStep) -> None:
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="evstream-binning-helper", daemon=True)
                    self._thread.start()
        self._queue.put(task)

    def _loop(self) -> None:
        while True:
            self._queue.get().help()


HELPER = _Helper()
