"""The one interface every event source implements.

An :class:`EventSource` iterates :class:`~evstream.events.EventChunk` values in sensor time,
declares its ``sensor_size``, and releases what it holds in ``close()`` (also as a context
manager). ``live`` tells the pipeline whether it may drop windows to keep up (camera, webcam,
network) or must block and lose nothing (file replay as fast as possible).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from evstream.events import EventChunk, SensorSize

__all__ = ["EventSource"]


class EventSource(ABC):
    """Base class of sources. Subclasses set ``sensor_size`` and ``name`` in ``__init__``."""

    sensor_size: SensorSize
    name: str = "source"
    live: bool = False

    @abstractmethod
    def __iter__(self) -> Iterator[EventChunk]:
        """Yield chunks in non-decreasing sensor time until the source ends."""

    def close(self) -> None:  # noqa: B027 - sources without resources need no close
        """Release files, sockets or devices. Idempotent."""

    def __enter__(self) -> EventSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
