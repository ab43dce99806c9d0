"""DV network event streams (dv-processing ``NetworkWriter``, DV's network output modules).

The framing is AEDAT 4.0 without its magic line (``shared/reference/formats.md`` §1.9): a
size-prefixed IOHeader FlatBuffer (``uint32 length``, root offset, ``IOHE``; compression and the
info node naming the streams), then ``int32 streamId, int32 size`` packet headers each followed
by one (compressed) packet. :class:`DvStreamDecoder` decodes it incrementally from arbitrarily
fragmented TCP reads; :class:`DvNetworkClient` is a plain blocking TCP client around it.

Faults raise :class:`~evstream.errors.SourceError` naming the stream and the byte offset in it.
Nothing a server declares is allocated before its bytes arrive: the buffer grows with what was
received, an IOHeader may declare at most :data:`MAX_HEADER_BYTES` and a packet at most
:data:`MAX_NETWORK_PACKET_BYTES` (larger declarations are refused at once). The client gives the
header one total deadline and every packet, once its first byte has arrived, another, so a server
that drips a byte at a time cannot hold it; a stream that ends inside a packet is an error, not
the end of the stream.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import numpy as np

from evstream.errors import SourceError
from evstream.events import SensorSize
from evstream.io import codec
from evstream.io.aedat4 import StreamInfo, decode_event_payload, parse_info_node
from evstream.io.flatbuf import FlatBufferError, root_table

__all__ = ["DvStreamDecoder", "DvNetworkClient", "MAX_HEADER_BYTES", "MAX_NETWORK_PACKET_BYTES"]

_HEADER = struct.Struct("<ii")
_RECV_BYTES = 1 << 20
# An IOHeader is a few KiB of XML naming the streams.
MAX_HEADER_BYTES = 1 << 20
# Largest (compressed) packet a server may declare: 64 MiB holds 4 M uncompressed events (16 bytes
# each), about 40 ms of a DVXplorer at its 100 Mev/s peak; DV software sends packets of a few ms.
MAX_NETWORK_PACKET_BYTES = 1 << 26


class DvStreamDecoder:
    """Incremental decoder of a DV network byte stream.

    Args:
        name: how errors name the stream (``tcp://host:port``).
        max_packet_bytes: largest packet size a server may declare (refused above it, before
            anything is buffered for it).

    Attributes:
        sensor_size, camera_name, streams, event_stream_id, compression: ``None`` until the
            IOHeader has arrived (see :attr:`has_header`).
        offset: bytes consumed so far (position in the stream of the next unread byte).
    """

    def __init__(self, name: str = "DV stream", *, max_packet_bytes: int = MAX_NETWORK_PACKET_BYTES) -> None:
        self.name = name
        self.max_packet_bytes = int(max_packet_bytes)
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

    @property
    def partial_bytes(self) -> int:
        """Bytes received of the header or packet not yet complete (0 between packets)."""
        return len(self._buf) - self._pos

    def _error(self, message: str, at: int) -> SourceError:
        return SourceError(f"{self.name}: byte {at}: {message}")

    def _expected(self) -> tuple[str, int | None]:
        """What the buffered bytes begin: ``("stream header" | "packet header" | "packet", total bytes or None)``."""
        avail = self.partial_bytes
        if not self.has_header:
            n = struct.unpack_from("<I", self._buf, self._pos)[0] if avail >= 4 else None
            return "stream header", None if n is None else 4 + n
        if avail < 8:
            return "packet header", 8
        return "packet", 8 + _HEADER.unpack_from(self._buf, self._pos)[1]

    def incomplete(self) -> str | None:
        """One phrase for the incomplete header or packet buffered now, e.g.
        ``"packet at byte 312 (100 of 1,008 bytes received)"``; ``None`` between packets."""
        if not self.partial_bytes:
            return None
        what, total = self._expected()
        of = "" if total is None else f" of {total:,}"
        return f"{what} at byte {self.offset} ({self.partial_bytes:,}{of} bytes received)"

    def finish(self) -> None:
        """The stream has ended: refuse a truncated header or packet.

        Raises:
            SourceError: the stream ended inside the header or a packet (names the byte offset and
                how many of its bytes arrived).
        """
        if not self.has_header:
            raise SourceError(f"{self.name}: server closed the connection before the stream header"
                              + (f" was complete: {self.incomplete()}" if self.partial_bytes else ""))
        if self.partial_bytes:
            raise SourceError(f"{self.name}: stream ended inside the {self.incomplete()}: truncated")

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
                if n > MAX_HEADER_BYTES or n < 8:
                    raise self._error(f"IOHeader length {n} is impossible (8 ... {MAX_HEADER_BYTES} bytes)", start)
                if avail < 4 + n:
                    break
                self._parse_header(self._take(4, n), start + 4)
                self._advance(4 + n)
                continue
            if avail < 8:
                break
            stream_id, size = _HEADER.unpack_from(self._buf, self._pos)
            if size < 0:
                raise self._error(f"packet size {size} is impossible", start + 4)
            if size > self.max_packet_bytes:
                raise self._error(f"packet size {size:,} above the limit of {self.max_packet_bytes:,} bytes", start + 4)
            if avail < 8 + size:
                break
            if stream_id == self.event_stream_id:
                payload = self._take(8, size)
                try:
                    out.append(decode_event_payload(self._code, payload))
                except (codec.CompressionError, FlatBufferError) as err:
                    raise self._error(f"event packet: {err}", start + 8) from err
            self._advance(8 + size)
        if self._pos > len(self._buf) // 2:
            del self._buf[:self._pos]
            self._pos = 0
        return out

    def _take(self, skip: int, n: int) -> bytes:
        """One copy of ``n`` buffered bytes after ``skip`` (the decoded events may view it)."""
        with memoryview(self._buf) as view:
            return bytes(view[self._pos + skip:self._pos + skip + n])

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
        timeout: total seconds allowed for connecting and for the whole stream header to arrive
            (one deadline, not per read: a server dripping a byte a second times out too).
        packet_timeout: total seconds a packet may take to arrive once its first byte has
            (default: ``timeout``). Between packets the server may be silent for as long as it likes.
        max_packet_bytes: largest packet size the server may declare (see :class:`DvStreamDecoder`).

    Raises:
        SourceError: ``tcp://host:port: connection refused`` (timed out, header malformed, ...).
    """

    def __init__(self, host: str, port: int, *, timeout: float = 5.0, packet_timeout: float | None = None,
                 max_packet_bytes: int = MAX_NETWORK_PACKET_BYTES) -> None:
        self.host, self.port, self.timeout = host, int(port), float(timeout)
        self.packet_timeout = self.timeout if packet_timeout is None else float(packet_timeout)
        self.name = f"tcp://{host}:{self.port}"
        self._decoder = DvStreamDecoder(self.name, max_packet_bytes=max_packet_bytes)
        self._pending: list[np.ndarray] = []
        self._closed = threading.Event()
        deadline = time.monotonic() + self.timeout
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
                data = self._recv_header(deadline)
                if not data:
                    self._decoder.finish()
                self._pending.extend(self._decoder.feed(data))
        except BaseException:
            self._sock.close()
            raise
        self._sock.settimeout(0.25)  # wake up now and then so close() from another thread is seen

    def _recv_header(self, deadline: float) -> bytes:
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise TimeoutError
            self._sock.settimeout(remaining)
            return self._sock.recv(_RECV_BYTES)
        except TimeoutError:
            got = self._decoder.incomplete()
            raise SourceError(f"{self.name}: no complete stream header within {self.timeout:g} s: "
                              + (got or "nothing received")) from None
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
        """Event arrays, one per event packet, until the server closes the stream.

        Raises:
            SourceError: the stream ended inside a packet (truncated), a packet took longer than
                :attr:`packet_timeout` once started, a malformed packet, or the receive failed.
        """
        yield from self._pending
        self._pending = []
        # Seconds spent waiting on the socket since the incomplete packet at `started` began; time
        # the consumer holds a yielded array (a paused pipeline) is not the server's delay.
        started, waited = None, 0.0
        while not self._closed.is_set():
            t0 = time.monotonic()
            try:
                data = self._sock.recv(_RECV_BYTES)
            except TimeoutError:
                data = None
            except OSError as err:
                if self._closed.is_set():
                    return
                raise SourceError(f"{self.name}: receive failed: {err.strerror or err}") from None
            if data == b"":
                self._decoder.finish()
                return
            if started is not None:
                waited += time.monotonic() - t0
            if data:
                yield from self._decoder.feed(data)
            if not self._decoder.partial_bytes:
                started = None
            elif started != self._decoder.offset:  # a new packet has begun
                started, waited = self._decoder.offset, 0.0
            elif waited > self.packet_timeout:
                raise SourceError(f"{self.name}: {self._decoder.incomplete()} incomplete after "
                                  f"{self.packet_timeout:g} s (packet deadline)")

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
