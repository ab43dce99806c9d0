"""Synthetic event streams for tests, built in code (tonic's habit)."""

from __future__ import annotations

import socket

import numpy as np

from evstream.events import EVENT_DTYPE, SensorSize

DVS128 = SensorSize(128, 128)


def random_events(
    n: int,
    sensor: SensorSize = DVS128,
    t0: int = 0,
    duration_us: int = 1_000_000,
    seed: int = 0,
    sort: bool = True,
) -> np.ndarray:
    """``n`` uniformly random events on ``sensor`` within ``[t0, t0 + duration_us)``."""
    rng = np.random.default_rng(seed)
    ev = np.empty(n, dtype=EVENT_DTYPE)
    t = rng.integers(t0, t0 + duration_us, size=n, dtype=np.int64)
    ev["t"] = np.sort(t) if sort else t
    ev["x"] = rng.integers(0, sensor.width, size=n)
    ev["y"] = rng.integers(0, sensor.height, size=n)
    ev["p"] = rng.integers(0, 2, size=n)
    return ev


class FakeClock:
    """A wall clock that only moves when the pacer sleeps; ``at`` schedules actions at given times."""

    def __init__(self, start: float = 100.0) -> None:
        self.now = start
        self.slept = 0.0
        self.actions: list[tuple[float, object]] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds
        self.slept += seconds
        due = [a for a in self.actions if a[0] <= self.now + 1e-12]
        self.actions = [a for a in self.actions if a[0] > self.now + 1e-12]
        for _, action in due:
            action()

    def at(self, when: float, action) -> None:
        self.actions.append((when, action))


def free_port(pair: bool = False) -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now; with ``pair``, port + 1 is free too
    (the pipeline's control socket defaults to publish port + 1)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if not pair:
                return port
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free pair of loopback ports")
