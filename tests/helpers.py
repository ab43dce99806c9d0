"""Synthetic event streams for tests, built in code (tonic's habit)."""

from __future__ import annotations

import numpy as np

from evstream.events import EVENT_DTYPE, SensorSize


def random_events(
    n: int,
    sensor: SensorSize = SensorSize(128, 128),
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
