"""A source seen through an event filter (``python main.py --filter ba|refractory``).

:class:`FilteredSource` wraps any source: chunks come out with the filter's kept events and the
chunk's own time span (so the binner still closes steps in a still scene); every other attribute
(``pause``, ``seek``, ``position_us``, ...) is the wrapped source's. A seek forgets the filter's
per-pixel history, since the times it remembers belong to another part of the recording.
"""

from __future__ import annotations

from collections.abc import Iterator

from evstream.errors import ConfigError
from evstream.events import EventChunk
from evstream.filters import BackgroundActivityFilter, RefractoryFilter

__all__ = ["FilteredSource", "make_filter", "FILTERS"]

FILTERS = ("none", "ba", "refractory")


def make_filter(name: str, sensor_size, *, dt_us: int = 2000, refractory_us: int = 1000):
    """The filter ``name`` (one of :data:`FILTERS`) for ``sensor_size``; ``None`` for ``"none"``.

    ``ba``: dv-processing's background-activity filter (support ``dt_us``); ``refractory``: at most
    one event per pixel per ``refractory_us``.
    """
    if name == "none":
        return None
    if name == "ba":
        return BackgroundActivityFilter(sensor_size, dt_us=dt_us)
    if name == "refractory":
        return RefractoryFilter(sensor_size, refractory_us=refractory_us)
    raise ConfigError(f"filter: one of {', '.join(FILTERS)}, got {name!r}")


class FilteredSource:
    """``source`` with every chunk passed through ``event_filter`` (a :mod:`evstream.filters` filter)."""

    def __init__(self, source, event_filter) -> None:
        self._source = source
        self.filter = event_filter

    def __iter__(self) -> Iterator[EventChunk]:
        for chunk in self._source:
            yield EventChunk(self.filter(chunk.events), chunk.t_start, chunk.t_end)

    @property
    def seek(self):
        """The wrapped source's ``seek`` (absent when it has none), forgetting the filter's history first."""
        inner = self._source.seek  # AttributeError: this source cannot seek, and neither can we

        def seek(t_us: int) -> None:
            self.filter.reset()
            inner(t_us)

        return seek

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_source", "filter"):
            raise AttributeError(name)
        return getattr(self._source, name)

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> FilteredSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
