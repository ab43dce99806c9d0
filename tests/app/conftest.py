"""Fixtures of the application tests: free loopback ports, a small real recording, a tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

from evstream.events import SensorSize
from tests.helpers import free_port, random_events

SENSOR = SensorSize(64, 48)
DURATION_US = 2_000_000


@pytest.fixture
def port() -> int:
    return free_port(pair=True)


@pytest.fixture(scope="session")
def recording(tmp_path_factory) -> Path:
    """A 2 s, 64x48 .aedat4 recording of random events, written with evstream's writer."""
    from evstream.io.aedat4 import write_aedat4

    path = tmp_path_factory.mktemp("rec") / "random.aedat4"
    write_aedat4(path, random_events(60_000, SENSOR, t0=1_000_000, duration_us=DURATION_US, seed=3), SENSOR,
                 packet_events=2000)
    return path
