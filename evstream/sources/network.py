"""DV's network event stream (``tcp://host:port``) as a live event source.

iniVation DV and dv-processing's ``NetworkWriter`` serve the AEDAT 4 framing over TCP without the
file's magic line (``../shared/reference/formats.md`` §1.9); ``evstream.io.dvnet.DvNetworkClient``
decodes it, this module turns its event packets into :class:`~evstream.events.EventChunk` values.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from evstream.errors import EvstreamError, SourceError
from evstream.events import EventChunk, as_events
from evstream.sources.base import EventSource

__all__ = ["NetworkSource", "parse_address"]


def parse_address(spec: str) -> tuple[str, int]:
    """``tcp://host:port`` → ``(host, port)``.

    Raises:
        SourceError: naming the spec when it is not of that form.
    """
    parts = urlsplit(spec)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "tcp" or not parts.hostname or port is None or parts.path not in ("", "/"):
        raise SourceError(f"{spec}: expected a DV network address tcp://host:port, e.g. tcp://127.0.0.1:7777")
    return parts.hostname, port


class NetworkSource(EventSource):
    """Events from a DV network stream server.

    Args:
        address: ``tcp://host:port`` of a DV ``NetworkWriter`` / DV software output.
        timeout: total seconds for connecting and receiving the stream header (one deadline).
        packet_timeout: total seconds a packet may take once its first byte has arrived (default:
            ``timeout``); see :class:`evstream.io.dvnet.DvNetworkClient`.

    Chunks cover ``[previous t_end, last event t + 1)`` µs on the camera's clock; the source ends
    when the server closes the stream.

    Raises:
        SourceError: malformed address, connection refused or timed out (names the address).
    """

    live = True

    def __init__(self, address: str, *, timeout: float = 5.0, packet_timeout: float | None = None) -> None:
        from evstream.io.dvnet import DvNetworkClient

        self.address = address
        host, port = parse_address(address)
        try:
            self._client = DvNetworkClient(host, port, timeout=timeout, packet_timeout=packet_timeout)
        except SourceError as err:
            raise SourceError(str(err) if address in str(err) else f"{address}: {err}") from None
        except (OSError, EvstreamError) as err:
            reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
            raise SourceError(f"{address}: cannot connect: {reason}") from None
        self.sensor_size = self._client.sensor_size
        self.name = f"{self._client.camera_name or 'DV stream'} @ {address}"

    def __iter__(self) -> Iterator[EventChunk]:
        """Yield one chunk per non-empty event packet until the server closes the stream.

        Raises:
            SourceError: the connection broke, a packet missed its deadline, or the stream ended
                inside a packet (names the address and the byte).
        """
        t_end: int | None = None
        try:
            for packet in self._client:
                if len(packet) == 0:
                    continue
                events = as_events(packet, name=self.address)
                t_start = int(events["t"][0]) if t_end is None else t_end
                t_end = max(t_start, int(events["t"][-1]) + 1)
                yield EventChunk(events, t_start, t_end)
        except OSError as err:
            raise SourceError(f"{self.address}: connection lost: {err.strerror or err}") from None

    def close(self) -> None:
        """Close the connection. Idempotent."""
        self._client.close()
