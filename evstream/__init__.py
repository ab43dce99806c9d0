"""evstream: online gesture recognition from event cameras with a stateful Spikformer.

The stream side (events, file formats, sources, binning, filters, protocol) lives here and
imports no torch and no Qt; the network side lives in the top-level ``models`` package.

Public contract (see DESIGN.md): ``EVENT_DTYPE``, ``SensorSize``, ``read_events``,
``write_aedat4``, ``open_source``, ``Binner``.
"""

from __future__ import annotations

from evstream.errors import (
    ConfigError,
    EventFileError,
    EventFormatError,
    EvstreamError,
    ModelError,
    ProtocolError,
    SourceError,
)
from evstream.events import EVENT_DTYPE, EventChunk, SensorSize

__version__ = "0.1.0"

__all__ = [
    "EVENT_DTYPE",
    "SensorSize",
    "EventChunk",
    "read_events",
    "write_aedat4",
    "open_source",
    "Binner",
    "Window",
    "EvstreamError",
    "EventFileError",
    "EventFormatError",
    "SourceError",
    "ModelError",
    "ConfigError",
    "ProtocolError",
]


def __getattr__(name: str):
    # Lazy so that `import evstream` stays cheap (no numba compile, no lz4) until a part is used.
    if name == "read_events":
        from evstream.io import read_events

        return read_events
    if name == "write_aedat4":
        from evstream.io.aedat4 import write_aedat4

        return write_aedat4
    if name == "open_source":
        from evstream.sources import open_source

        return open_source
    if name in ("Binner", "Window"):
        from evstream import binning

        return getattr(binning, name)
    raise AttributeError(f"module 'evstream' has no attribute {name!r}")
