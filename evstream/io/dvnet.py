"""DV network event streams (dv-processing ``NetworkWriter``, DV's network output modules).

The framing is AEDAT 4.0 without its magic line (``shared/reference/formats.md`` §1.9): a
size-prefixed IOHeader FlatBuffer (``uint32 length``, root offset, ``IOHE``; compression and the
info node naming the streams), then ``int32 streamId, int32 size`` packet headers each followed
by one (compressed) packet. :class:`DvStreamDecoder` decodes it incrementally from arbitrarily
fragmented TCP reads; :class:`DvNetworkClient` is a plain blocking TCP client around it.

Faults raise :class:`~evstream.errors.SourceError` naming the stream and the byte offset in it.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator

import numpy as np

from evstream.errors import SourceError
from evstream.events import SensorSize
from evstream.io import codec
from evstream.io.aedat4 import StreamInfo, decode_event_payload, parse_info_node
from evstream.io.flatbuf import FlatBufferError, root_table

__all__ = ["DvStreamDecoder", "DvNetworkClient"]

_HEADER = struct.Struct("<ii")
_RECV_BYTES = 1 << 20


class DvStreamDecoder:
    """Incremental decoder of a DV network byte stream.

    Args:
        name: how errors name the stream (``tcp://host:port``).

    Attributes:
        sensor_size, camera_name, streams, event_stream_id, compression: ``None`` until the
            IOHeader has arrived (see :attr:`has_header`).
        offset: bytes consumed so far (position in the stream of the next unread byte).
    """

    def __init__(self, name: str = "DV stream") -> None:
        self.name = name
        self.sensor_size: SensorSize | None = None
        self.camera_name: str | None = None
        self.streams: list[StreamInfo] | None = None
        self.event_stream_id: int | None = None
        self.compression: str | None = None
        self.offset = 0
        self._code = 0
        self._buf = bytearray()
        self._pos = 0  # read position inside _buf

    @property
    def has_header(self) -> bool:
        """Whether the IOHeader has been decoded."""
        return self.streams is not None

    def _error(self, message: str, at: int) -> SourceError:
        return SourceError(f"{self.name}: byte {at}: {message}")

    def feed(self, data: bytes) -> list[np.ndarray]:
        """Add received bytes; return the event arrays of every packet completed by them.

        Non-event packets are consumed and skipped. Arrays are ``EVENT_DTYPE`` ``[n]`` (read-only).

        Raises:
            SourceError: malformed header or packet (names the byte offset in the stream).
        """
        self._buf += data
        out = []
        while True:
            avail = len(self._buf) - self._pos
            start = self.offset
            if not self.has_header:
                if avail < 4:
                    break
                n = struct.unpack_from("<I", self._buf, self._pos)[0]
                if n > codec.MAX_PACKET_BYTES or n < 8:
                    raise self._error(f"IOHeader length {n} is impossible", start)
                if avail < 4 + n:
                    break
                self._parse_header(bytes(self._buf[self._pos + 4:self._pos + 4 + n]), start + 4)
                self._advance(4 + n)
                continue
            if avail < 8:
                break
            stream_id, size = _HEADER.unpack_from(self._buf, self._pos)
            if size < 0 or size > codec.MAX_PACKET_BYTES:
                raise self._error(f"packet size {size} is impossible", start + 4)
            if avail < 8 + size:
                break
            if stream_id == self.event_stream_id:
                payload = bytes(self._buf[self._pos + 8:self._pos + 8 + size])
                try:
                    out.append(decode_event_payload(self._code, payload))
                except (codec.CompressionError, FlatBufferError) as err:
                    raise self._error(f"event packet: {err}", start + 8) from err
            self._advance(8 + size)
        if self._pos > len(self._buf) // 2:
            del self._buf[:self._pos]
            self._pos = 0
        return out

    def _advance(self, n: int) -> None:
        self._pos += n
        self.offset += n

    def _parse_header(self, header: bytes, at: int) -> None:
        try:
            table = root_table(header, b"IOHE")
            code = table.scalar(0, "<i", 0)
            xml = table.string(2)
        except FlatBufferError as err:
            raise self._error(f"IOHeader: {err}", at + err.position) from err
        if not 0 <= code < len(codec.COMPRESSION_NAMES):
            raise self._error(f"IOHeader: unknown compression type {code}", at)
        try:
            streams = parse_info_node(xml or "")
        except ValueError as err:
            raise self._error(f"IOHeader: {err}", at) from err
        events = [s for s in streams if s.type_identifier == "EVTS"]
        if not events or events[0].sensor_size is None:
            raise self._error("no event stream (typeIdentifier EVTS with sizeX/sizeY) in the IOHeader", at)
        self._code = code
        self.compression = codec.COMPRESSION_NAMES[code]
        self.event_stream_id = events[0].id
        self.sensor_size = events[0].sensor_size
        self.camera_name = events[0].source
        self.streams = streams


class DvNetworkClient:
    """Blocking TCP client of a DV network event stream.

    The constructor connects and waits for the stream header, so :attr:`sensor_size` and
    :attr:`camera_name` are known when it returns. Iterating yields event arrays until the server
    closes the connection or :meth:`close` is called (from any thread).

    Args:
        host: server address.
        port: server TCP port.
        timeout: seconds allowed for connecting and for the header to arrive.

    Raises:
        SourceError: ``tcp://host:port: connection refused`` (timed out, header malformed, ...).
    """

    def __init__(self, host: str, port: int, *, timeout: float = 5.0) -> None:
        self.host, self.port, self.timeout = host, int(port), float(timeout)
        self.name = f"tcp://{host}:{self.port}"
        self._decoder = DvStreamDecoder(self.name)
        self._pending: list[np.ndarray] = []
        self._closed = threading.Event()
        try:
            self._sock = socket.create_connection((host, self.port), timeout=self.timeout)
        except ConnectionRefusedError:
            raise SourceError(f"{self.name}: connection refused") from None
        except TimeoutError:
            raise SourceError(f"{self.name}: connection timed out after {self.timeout:g} s") from None
        except OSError as err:
            raise SourceError(f"{self.name}: cannot connect: {err.strerror or err}") from None
        try:
            while not self._decoder.has_header:
                data = self._recv()
                if not data:
                    raise SourceError(f"{self.name}: server closed the connection before the stream header")
                self._pending.extend(self._decoder.feed(data))
        except BaseException:
            self._sock.close()
            raise
        self._sock.settimeout(0.25)  # wake up now and then so close() from another thread is seen

    def _recv(self) -> bytes:
        try:
            return self._sock.recv(_RECV_BYTES)
        except TimeoutError:
            raise SourceError(f"{self.name}: no stream header within {self.timeout:g} s") from None
        except OSError as err:
            raise SourceError(f"{self.name}: receive failed: {err.strerror or err}") from None

    @property
    def sensor_size(self) -> SensorSize:
        return self._decoder.sensor_size

    @property
    def camera_name(self) -> str:
        return self._decoder.camera_name

    @property
    def compression(self) -> str:
        return self._decoder.compression

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from self._pending
        self._pending = []
        while not self._closed.is_set():
            try:
                data = self._sock.recv(_RECV_BYTES)
            except TimeoutError:
                continue
            except OSError as err:
                if self._closed.is_set():
                    return
                raise SourceError(f"{self.name}: receive failed: {err.strerror or err}") from None
            if not data:
                return
            yield from self._decoder.feed(data)

    def close(self) -> None:
        """Disconnect (idempotent; safe from another thread while iterating)."""
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self) -> DvNetworkClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
