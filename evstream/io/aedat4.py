"""AEDAT 4.0 (``.aedat4``) event recordings: a streaming reader and a packet-wise writer.

Byte layout as in ``shared/reference/formats.md`` §1 (iniVation's AEDAT 4.0 spec): the line
``#!AER-DAT4.0\\r\\n``, a size-prefixed IOHeader FlatBuffer (compression, dataTablePosition,
infoNode XML), then ``int32 streamId, int32 size`` packet headers each followed by one
(compressed) size-prefixed FlatBuffer, and at ``dataTablePosition`` an optional FileDataTable.

Reading is streaming: only the packet being handed out and a small, bounded read-ahead are in
memory. Packets are read with ``os.pread`` and decoded in a small thread pool, one packet in
flight per thread: decompression (LZ4 through ctypes, Zstandard) and the
:class:`~evstream.io.screen.EventScreen` test (a nogil numba pass) both release the GIL and run
in the worker while the packet is in its cache. Threads are used only where they can pay: not on
a single core, not for packets under ~16 k events, and by default only on idle cores (see
:meth:`Aedat4Reader._workers`). Events come out as zero-copy ``EVENT_DTYPE`` views into the
decompressed buffer, found by following (and bounds-checking) the FlatBuffer offsets. When the
FileDataTable gives a packet's event count, NONE and LZ4 packets in the canonical layout (dv-processing's and
ours) are read or decompressed straight into their final array instead, and ``read()`` fills
one preallocated array: no intermediate buffer, no copy.

Damage policy (every fault is an :class:`~evstream.errors.EventFileError` naming the file and
byte offset):

* Header faults (wrong magic, truncated or malformed IOHeader, bad info node, no ``EVTS``
  stream, ``dataTablePosition`` inside the header) raise when the reader is opened.
* Streams of types the reader does not decode (``FRME``, ``IMUS``, ``TRIG``, and any other
  ``typeIdentifier``) are skipped; so are packets naming a stream id the info node does not
  declare (a newer writer's stream, a type we do not know): they are counted
  (:attr:`Aedat4Reader.undeclared_packets`, :meth:`Aedat4Reader.stream_summary`), never fatal.
* Packet faults (truncated header or payload, size past the end, corrupt
  LZ4/ZSTD frame, FlatBuffer offsets out of range) raise when iteration *reaches* the damaged
  packet: every whole packet before it has been yielded already, so a recording killed mid-way
  reads up to its last whole packet and then reports where it ends.
* A FileDataTable that does not decode is ignored for seeking (packets are scanned instead) and
  reported after the last packet has been yielded.
* Timestamps going backwards are kept as stored, never reordered or dropped: the reader is
  faithful to the file. ``info`` reports how many backward steps a recording has. Time-range
  reads (``read(t0, t1)``, ``iter_packets(t_start)``) select events by value, but assume packets
  are in time order to decide where to start and stop.
"""

from __future__ import annotations

import collections
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from evstream.errors import EventFileError
from evstream.events import EVENT_DTYPE, MAX_SENSOR_SIDE, SensorSize, as_events, concatenate, empty_events
from evstream.io import codec
from evstream.io._blocks import Prefault
from evstream.io.flatbuf import (
    IO_HEADER_DATA_TABLE_POSITION,
    DataTableEntry,
    FlatBufferError,
    Table,
    decode_file_data_table,
    encode_file_data_table,
    encode_io_header,
    event_packet_header,
    root_table,
    size_prefixed_root,
)
from evstream.io.screen import EventScreen

__all__ = [
    "MAGIC",
    "StreamInfo",
    "Aedat4Reader",
    "Aedat4Writer",
    "write_aedat4",
    "parse_info_node",
    "decode_event_payload",
    "encode_event_packet",
]

MAGIC = b"#!AER-DAT4.0\r\n"
_HEADER = struct.Struct("<ii")
_READ_AHEAD_PER_THREAD = 1  # packets in flight per decode thread
_AUTO_THREADS = 2  # decode threads with threads=None while a core is idle
_HEAD_SLOTS = 2  # EVENT_DTYPE slots that hold the canonical 32-byte EVTS header before the events
_INLINE_BELOW_EVENTS = 16_384
_DEFAULT_PACKET_EVENTS = 50_000
# Packet types whose elements stream_summary() counts (a frame is one element per packet).
_ELEMENT_TYPES = ("EVTS", "FRME", "IMUS", "TRIG")
# read() preallocates from the FileDataTable only up to this many event bytes per byte of file
# (LZ4/ZSTD on real event streams stay well under 10x); a table claiming more is not trusted.
_PREALLOC_BYTES_PER_FILE_BYTE = 32


@dataclass(frozen=True)
class StreamInfo:
    """One stream declared in the info node.

    Attributes:
        id: stream id used in packet headers.
        type_identifier: FlatBuffer identifier of its packets (``EVTS``, ``FRME``, ``IMUS``, ``TRIG`` ...).
        name: ``originalOutputName`` (``events``, ``frames``, ...).
        sensor_size: ``sizeX`` x ``sizeY`` when declared (event and frame streams), else ``None``.
        source: camera name (``info/source``), ``""`` when absent.
    """

    id: int
    type_identifier: str
    name: str
    sensor_size: SensorSize | None
    source: str


def _dimension(text: str, field: str) -> int:
    """A declared sensor dimension: ASCII digits only, 1 ... :data:`~evstream.events.MAX_SENSOR_SIDE`
    (x and y are int16 in every event), else ValueError naming ``field``."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 5 or not 1 <= int(value) <= MAX_SENSOR_SIDE:
        raise ValueError(f"{field} {text[:40]!r} is not a sensor size (whole number 1 ... {MAX_SENSOR_SIDE})")
    return int(value)


def parse_info_node(xml_text: str) -> list[StreamInfo]:
    """Streams declared in an infoNode XML (``<dv><node name="outInfo"><node name="<id>">...``).

    Raises:
        ValueError: XML that does not parse or a stream node with a non-integer id or size.
    """
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as err:
        raise ValueError(f"info node is not valid XML ({err})") from err
    out_info = next((n for n in root.iter("node") if n.get("name") == "outInfo"), None)
    if out_info is None:
        raise ValueError("info node has no outInfo node")
    streams = []
    for node in out_info.findall("node"):
        name = node.get("name", "")
        if not (name.isascii() and name.isdigit()) or len(name) > 9:
            raise ValueError(f"stream node name {name[:40]!r} is not a stream id")
        attrs = {a.get("key"): (a.text or "") for a in node.findall("attr")}
        info = node.find("node[@name='info']")
        info_attrs = {} if info is None else {a.get("key"): (a.text or "") for a in info.findall("attr")}
        size = None
        if "sizeX" in info_attrs and "sizeY" in info_attrs:
            size = SensorSize(_dimension(info_attrs["sizeX"], f"stream {name}: sizeX"),
                              _dimension(info_attrs["sizeY"], f"stream {name}: sizeY"))
        streams.append(
            StreamInfo(
                id=int(name),
                type_identifier=attrs.get("typeIdentifier", ""),
                name=attrs.get("originalOutputName", ""),
                sensor_size=size,
                source=info_attrs.get("source", ""),
            )
        )
    return sorted(streams, key=lambda s: s.id)


def decode_event_payload(code: int, payload) -> np.ndarray:
    """Events of one ``EVTS`` packet payload: decompress, follow the FlatBuffer, view the vector.

    Args:
        code: compression enum (0 NONE ... 4 ZSTD_HIGH).
        payload: the bytes after the 8-byte packet header.

    Returns:
        A read-only, zero-copy ``EVENT_DTYPE`` view ``[n]`` into the decompressed buffer.

    Raises:
        codec.CompressionError, FlatBufferError: the payload is damaged.
    """
    buf = codec.decompress(code, payload)
    table, _ = size_prefixed_root(buf, b"EVTS")
    vec = table.vector(0, EVENT_DTYPE.itemsize)
    if vec is None:
        return empty_events()
    start, count = vec
    return np.frombuffer(buf, dtype=EVENT_DTYPE, count=count, offset=start)


def encode_event_packet(code: int, events: np.ndarray) -> bytes:
    """Compressed payload of one ``EVTS`` packet holding ``events`` (``EVENT_DTYPE``)."""
    return codec.compress(code, event_packet_header(len(events)) + events.tobytes())


@dataclass(frozen=True)
class _Packet:
    offset: int  # byte offset of the payload (after the 8-byte packet header)
    size: int
    stream_id: int
    entry: DataTableEntry | None = None


class Aedat4Reader:
    """Streaming reader of the event stream of an ``.aedat4`` file.

    The header, IOHeader and info node are parsed on open; packets are read on demand.

    Args:
        path: the recording.
        threads: decode threads (0 decodes in the calling thread; at most one per core; none on
            a single core). ``None`` (the default) uses two while a core is idle and none otherwise,
            decided afresh at each pass from the load average: see :meth:`_workers`.
        strict: an event outside the declared sensor or with a polarity other than 0/1 raises
            (default: it is dropped and counted in :attr:`counts`).

    Attributes:
        path: the file.
        sensor_size: event stream geometry.
        camera_name: ``source`` of the event stream (``""`` if not declared).
        streams: every declared stream, by id.
        event_stream_id: id of the stream read (lowest-id ``EVTS`` stream).
        compression: ``NONE``, ``LZ4``, ``LZ4_HIGH``, ``ZSTD`` or ``ZSTD_HIGH``.
        data_table: FileDataTable rows (one per packet, every stream), or ``None`` when the file
            has none (interrupted recording) or it is damaged.
        data_table_error: why a declared table could not be used, else ``None``.
        screen: the :class:`~evstream.io.screen.EventScreen` of impossible events.
        undeclared_packets: packets naming a stream id the info node does not declare, skipped
            (from the FileDataTable, else counted by the latest scan of the packet headers).

    Raises:
        EventFileError: missing file, wrong magic, damaged header, no event stream.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, strict: bool = False) -> None:
        self.path = Path(path)
        self.threads = None if threads is None else max(0, int(threads))
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._fd = _open_fd(self.path)
        try:
            self._parse_header()
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise
        self.screen = EventScreen(self.path, self.sensor_size, strict=strict)

    @property
    def counts(self) -> dict[str, int]:
        """Events dropped by the last read so far: ``off_sensor`` and ``bad_polarity``."""
        return self.screen.counts()

    # -- header ---------------------------------------------------------------------------------

    def _error(self, message: str, offset: int | None = None) -> EventFileError:
        return EventFileError(self.path, message, offset)

    def _pread(self, size: int, offset: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def _parse_header(self) -> None:
        self.file_size = os.fstat(self._fd).st_size
        if self.file_size == 0:
            raise self._error("empty file", 0)
        magic = self._pread(len(MAGIC), 0)
        if magic != MAGIC:
            if MAGIC.startswith(magic):
                raise self._error(f"file ends inside the AEDAT 4.0 magic line ({self.file_size} bytes)", self.file_size)
            raise self._error(f"not an AEDAT 4.0 file (first bytes {magic[:14]!r})", 0)
        size_bytes = self._pread(4, 14)
        if len(size_bytes) < 4:
            raise self._error("file ends inside the IOHeader size", 14)
        n = struct.unpack("<I", size_bytes)[0]
        if 18 + n > self.file_size:
            raise self._error(f"IOHeader size {n} runs past the end of the file ({self.file_size} bytes)", 14)
        header = self._pread(n, 18)
        try:
            table = root_table(header, b"IOHE")
            code = table.scalar(0, "<i", 0)
            self._data_table_position = table.scalar(1, "<q", -1)
            info_node = table.string(2)
        except FlatBufferError as err:
            raise self._error(f"IOHeader: {err}", 18 + err.position) from err
        if not 0 <= code < len(codec.COMPRESSION_NAMES):
            raise self._error(f"IOHeader: unknown compression type {code}", 18)
        self._code = code
        self.compression = codec.COMPRESSION_NAMES[code]
        if info_node is None:
            raise self._error("IOHeader has no infoNode (stream list)", 18)
        try:
            self.streams = parse_info_node(info_node)
        except ValueError as err:
            raise self._error(f"IOHeader: {err}", 18) from err
        events = [s for s in self.streams if s.type_identifier == "EVTS"]
        if not events:
            have = ", ".join(f"{s.id}:{s.type_identifier or '?'}" for s in self.streams) or "none"
            raise self._error(f"no event stream (typeIdentifier EVTS) in the info node; streams: {have}", 18)
        stream = events[0]
        if stream.sensor_size is None:
            raise self._error(f"event stream {stream.id} declares no sizeX/sizeY", 18)
        self.event_stream_id = stream.id
        self.sensor_size = stream.sensor_size
        self.camera_name = stream.source
        self._stream_ids = {s.id for s in self.streams}
        self.data_start = 18 + n
        self._load_data_table()

    def _load_data_table(self) -> None:
        """Set ``data_table`` and ``_data_end`` (where packets stop) from ``dataTablePosition``."""
        self.data_table: list[DataTableEntry] | None = None
        self.data_table_error: EventFileError | None = None
        self.undeclared_packets = 0
        self._truncated_before: int | None = None
        pos = self._data_table_position
        if pos < 0:
            self._data_end = self.file_size
            return
        if pos < self.data_start:
            raise self._error(f"IOHeader: dataTablePosition {pos} lies inside the header", 18)
        if pos > self.file_size:
            # The table was at the end and the file has been cut: read packets to EOF, then report.
            self._data_end = self.file_size
            self._truncated_before = pos
            return
        self._data_end = pos
        raw = self._pread(self.file_size - pos, pos)
        try:
            rows = decode_file_data_table(codec.decompress(self._code, raw))
        except (codec.CompressionError, FlatBufferError) as err:
            self.data_table_error = self._error(f"FileDataTable: {err}", pos)
            return
        for row in rows:
            if (row.byte_offset - 8 < self.data_start or row.size < 0
                    or row.byte_offset + row.size > self._data_end or row.num_elements < 0):
                self.data_table_error = self._error(
                    f"FileDataTable: entry for byte {row.byte_offset} (size {row.size}) lies outside the packets", pos)
                return
        self.data_table = rows
        self.undeclared_packets = sum(1 for row in rows if row.stream_id not in self._stream_ids)

    # -- packets --------------------------------------------------------------------------------

    def _scan(self) -> Iterator[_Packet]:
        """Packet headers in file order, checked; raises at the first damaged one."""
        pos, end = self.data_start, self._data_end
        undeclared = 0
        while pos < end:
            if pos + 8 > end:
                raise self._error(f"truncated packet header ({end - pos} of 8 bytes before the end of the packets)", pos)
            stream_id, size = _HEADER.unpack(self._pread(8, pos))
            if size < 0 or pos + 8 + size > end:
                if stream_id not in self._stream_ids:  # neither field makes sense: not a packet header
                    raise self._error(f"not a packet header (undeclared stream {stream_id}, size {size} past the "
                                      f"end of the packets at byte {end})", pos)
                raise self._error(f"packet size {size} runs past the end of the packets at byte {end}", pos + 4)
            if stream_id not in self._stream_ids:
                # A stream the info node does not declare (a type this reader does not know): skipped, counted.
                undeclared += 1
                self.undeclared_packets = max(self.undeclared_packets, undeclared)
            yield _Packet(pos + 8, size, stream_id)
            pos += 8 + size
        if self._truncated_before is not None:
            raise self._error(f"file ends at byte {end}, before its data table at byte {self._truncated_before} "
                              "(truncated recording)", end)
        if self.data_table_error is not None:
            raise self.data_table_error

    def _event_packets(self, t_start: int | None) -> Iterator[_Packet]:
        if self.data_table is None:
            return (p for p in self._scan() if p.stream_id == self.event_stream_id)
        rows = [r for r in self.data_table if r.stream_id == self.event_stream_id]
        if t_start is not None:
            rows = rows[next((i for i, r in enumerate(rows) if r.t_end >= t_start), len(rows)):]
        return iter([_Packet(r.byte_offset, r.size, r.stream_id, r) for r in rows])

    def _decode(self, packet: _Packet, dst: np.ndarray | None = None, exact: bool = True) -> np.ndarray:
        """Read and decode one event packet (runs in a worker thread); raises EventFileError.

        With a FileDataTable entry (so the event count is known) NONE and LZ4 packets are read or
        decompressed straight into ``dst`` (a new array when ``None``); anything unexpected falls
        back to the checked path, which follows the FlatBuffer and reports the fault. With
        ``exact``, a ``dst`` that the packet does not fill exactly raises :class:`_CountMismatch`;
        without, ``dst`` is only a place offered to the fast path (the checked path returns its
        own view).
        """
        if packet.entry is not None and (dst is not None or self._fast_count(packet) is not None):
            fast = self._fast_into(packet, dst)
            if fast is not None:
                return fast
        if packet.entry is None:
            payload = self._pread(packet.size, packet.offset)
        else:
            raw = self._pread(packet.size + 8, packet.offset - 8)
            if len(raw) < 8 or _HEADER.unpack_from(raw) != (packet.stream_id, packet.size):
                raise self._error("packet header does not match the FileDataTable entry", packet.offset - 8)
            payload = memoryview(raw)[8:]
        if len(payload) != packet.size:
            raise self._error(f"packet payload truncated ({len(payload)} of {packet.size} bytes)", packet.offset)
        try:
            events = decode_event_payload(self._code, payload)
        except codec.CompressionError as err:
            raise self._error(f"event packet: {err}", packet.offset) from err
        except FlatBufferError as err:
            raise self._error(f"event packet FlatBuffer: {err} (byte {err.position} of the decompressed payload)",
                              packet.offset) from err
        if dst is None or not exact:
            return events
        if len(events) != len(dst):
            raise _CountMismatch
        dst[:] = events
        return dst

    def _fast_count(self, packet: _Packet) -> int | None:
        """The event count of a table-listed packet that the fast path may decode, else ``None``:
        nothing is allocated for a count the payload cannot hold (LZ4 expands at most 255x)."""
        if packet.entry is None:
            return None
        n = packet.entry.num_elements
        expanded = 32 + 16 * n
        if self._code > 2 or expanded > codec.MAX_PACKET_BYTES or expanded > 255 * packet.size + 64:
            return None
        if self._code == 0 and packet.size != expanded:
            return None
        return n

    def _fast_into(self, packet: _Packet, dst: np.ndarray | None) -> np.ndarray | None:
        """Decode a table-listed NONE/LZ4 packet of the canonical layout directly into ``dst``
        (or a new array); ``None`` when this path does not apply or the packet is not as expected.

        A ``dst`` of ``n + 2`` events (a :meth:`_frame`) takes the 32-byte EVTS header in its
        first two slots and the events are returned as the view after it: the payload then
        decompresses into one contiguous target, so LZ4 writes every full block straight into
        place (into two targets, the first block went through LZ4F's own buffer and was copied:
        ~8 % of the decompression time on 50 k-event packets)."""
        n = self._fast_count(packet)
        if n is None:
            return None
        if dst is not None and len(dst) == n + _HEAD_SLOTS:
            return self._fast_framed(packet, dst, n)
        if dst is None:
            dst = np.empty(n, dtype=EVENT_DTYPE)
        elif len(dst) != n:
            return None
        head = np.empty(32, dtype=np.uint8)
        if self._code == 0:
            stamp = bytearray(8)
            got = os.preadv(self._fd, [stamp, head, dst], packet.offset - 8)
            ok = got == 8 + packet.size and _HEADER.unpack(stamp) == (packet.stream_id, packet.size)
        else:
            raw = self._pread(packet.size + 8, packet.offset - 8)
            ok = (len(raw) == packet.size + 8 and _HEADER.unpack_from(raw) == (packet.stream_id, packet.size)
                  and codec.lz4_decompress_into(raw, 8, [(head.ctypes.data, 32), (dst.ctypes.data, 16 * n)]))
        # The 32 bytes before the events must be exactly the canonical EVTS header for n events
        # (dv-processing's layout and ours); any other layout goes the FlatBuffer-following way.
        if not ok or head.tobytes() != event_packet_header(n):
            return None
        return dst

    def _frame(self, packet: _Packet) -> np.ndarray | None:
        """A new array for the EVTS header and events of a fast-path packet, else ``None``."""
        n = self._fast_count(packet)
        return None if n is None else np.empty(n + _HEAD_SLOTS, dtype=EVENT_DTYPE)

    def _fast_framed(self, packet: _Packet, frame: np.ndarray, n: int) -> np.ndarray | None:
        """:meth:`_fast_into` for a frame: header and events decoded in one piece."""
        if self._code == 0:
            stamp = bytearray(8)
            got = os.preadv(self._fd, [stamp, frame], packet.offset - 8)
            ok = got == 8 + packet.size and _HEADER.unpack(stamp) == (packet.stream_id, packet.size)
        else:
            raw = self._pread(packet.size + 8, packet.offset - 8)
            ok = (len(raw) == packet.size + 8 and _HEADER.unpack_from(raw) == (packet.stream_id, packet.size)
                  and codec.lz4_decompress_into(raw, 8, [(frame.ctypes.data, 32 + 16 * n)]))
        if not ok or frame[:_HEAD_SLOTS].tobytes() != event_packet_header(n):
            return None
        return frame[_HEAD_SLOTS:]

    def _pipeline(self, packets: Iterator[_Packet], targets=None,
                  screened: bool = False) -> Iterator[tuple[np.ndarray, bool]]:
        """Decode ``packets`` in order: ``(events, possible)`` per packet, in the pool with bounded
        read-ahead, or inline (see :meth:`_workers`).

        ``targets`` (an iterator of arrays, one per packet) makes each packet decode into its
        array. Otherwise each table-listed fast-path packet gets a new :meth:`_frame` allocated
        here, in the calling thread: allocated in the worker threads (glibc's per-thread arenas,
        which seem to hand the pages back at each free), every packet faulted its pages in afresh
        (measured on 10 M events, 160 MB: ~20 k page faults and ~40 ms of system time, against ~600
        and ~8 ms). With ``screened`` the worker also runs the
        :class:`~evstream.io.screen.EventScreen` test (``possible``: no event can be impossible)
        while the packet is in its cache; the screen's bookkeeping stays in order here. An error
        met while listing packets is raised in order, after the packets before it.
        """
        def place(packet):
            return self._frame(packet) if targets is None else next(targets)

        def job(packet, dst):
            events = self._decode(packet, dst, exact=targets is not None)
            return events, screened and self.screen.possible(events)

        workers = self._workers()
        if workers == 0:
            for packet in packets:
                yield job(packet, place(packet))
            return
        if self._pool is None or self._pool_size != workers:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="aedat4")
            self._pool_size = workers
        pending: collections.deque = collections.deque()
        limit = _READ_AHEAD_PER_THREAD * workers
        try:
            exhausted = False
            while True:
                # Read-ahead is bounded: at most `limit` packets in flight or waiting.
                while not exhausted and len(pending) < limit:
                    try:
                        packet = next(packets)
                    except EventFileError as err:
                        pending.append(err)
                        exhausted = True
                        break
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append(self._pool.submit(job, packet, place(packet)))
                if not pending:
                    return
                item = pending.popleft()
                if isinstance(item, EventFileError):
                    raise item
                yield item.result()
        finally:
            for item in pending:
                if not isinstance(item, EventFileError):
                    item.cancel()

    def _workers(self) -> int:
        """Decode threads for the next pass: none (inline decode) with a single core this process
        may run on or packets too small to be worth a thread; else ``threads``, at most one per
        core, or with ``threads=None`` :data:`_AUTO_THREADS` (at most one per core) while at least one
        core is idle (cores minus the 1-minute load average), else none. Threads only pay with a free core: on busy cores
        the hand-offs cost ~10 % more CPU and wall time than inline decode (10 M events 640x480 LZ4,
        load 5.6 on 2 cores: 43.7 ms with 2 threads against 38.8 ms inline)."""
        if self.threads == 0 or self._small_packets():
            return 0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if cores < 2:
            return 0
        if self.threads is not None:
            return min(self.threads, cores)
        # With threads=None: _AUTO_THREADS workers while a core is idle, else inline. Never one
        # worker: the caller then waits for it instead of decoding (10 M events 640x480 LZ4, load
        # 0.6 on 2 cores: 65.6 ms with one worker, 55.0 ms inline, 41.0 ms with two).
        idle = cores - os.getloadavg()[0]
        return min(_AUTO_THREADS, cores) if idle >= 1 else 0

    def _small_packets(self) -> bool:
        """Whether the table lists only event packets so small that handing them to threads costs
        more than decoding them here (measured: below ~16 k events, inline wins)."""
        if self.data_table is None:
            return False
        sizes = [r.num_elements for r in self.data_table if r.stream_id == self.event_stream_id]
        return max(sizes, default=0) < _INLINE_BELOW_EVENTS

    def iter_packets(self, t_start: int | None = None) -> Iterator[np.ndarray]:
        """Event arrays, one per event packet in file order (treat them as read-only).

        Args:
            t_start: start at the first packet that can hold events at or after this time (µs):
                found in the FileDataTable when present, otherwise by scanning (packets ending
                before ``t_start`` are decoded and skipped). Events before ``t_start`` inside that
                first packet are not removed.

        Yields:
            ``EVENT_DTYPE`` arrays ``[n]`` (``n`` may be 0).

        Raises:
            EventFileError: at the first damaged packet, after every packet before it.
        """
        self._check_open()
        self.screen.reset()
        skipping = t_start is not None and self.data_table is None
        for events, possible in self._pipeline(self._event_packets(t_start), screened=True):
            if skipping and (len(events) == 0 or events["t"][-1] < t_start):
                continue
            skipping = False
            yield self.screen(events, possible=possible)

    def read(self, t0: int | None = None, t1: int | None = None) -> np.ndarray:
        """Events with ``t0 <= t < t1`` (whole stream by default) as one ``EVENT_DTYPE`` array.

        With a FileDataTable the output is allocated once and every packet is decoded straight
        into its place.

        Raises:
            EventFileError: the first damage met (nothing is returned then).
        """
        self._check_open()
        if t0 is None and t1 is None:
            if self.data_table is not None:
                rows = [r for r in self.data_table if r.stream_id == self.event_stream_id]
                counts = [r.num_elements for r in rows]
                if self._table_counts_plausible(rows, counts):
                    out = np.empty(sum(counts), dtype=EVENT_DTYPE)
                    fault = Prefault(out)
                    bounds = np.cumsum([0] + counts).tolist()
                    slices = (out[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True))
                    try:
                        # Each slice is screened in its decode thread while hot; the whole
                        # output only when some slice may hold an impossible event.
                        possible = True
                        for _, slice_possible in self._pipeline(self._event_packets(None), slices, screened=True):
                            possible = possible and slice_possible
                        self.screen.reset()
                        return self.screen(out, possible=possible)
                    except _CountMismatch:
                        pass  # the table miscounts: decode packet by packet instead
                    finally:
                        fault.join()
            return concatenate(self.iter_packets())
        parts = []
        for events in self.iter_packets(t0):
            if t1 is not None and len(events) and events["t"][0] >= t1:
                break
            t = events["t"]
            keep = np.ones(len(events), bool) if t0 is None else t >= t0
            if t1 is not None:
                keep &= t < t1
            parts.append(events[keep])
        return concatenate(parts)

    def _table_counts_plausible(self, rows: list[DataTableEntry], counts: list[int]) -> bool:
        """Whether the table's event counts are small enough to preallocate ``read()``'s output.

        The counts come from the file and are checked before anything is allocated: each packet
        must be able to hold its count (NONE: its payload, LZ4: 255x, any: the decoder's per-packet
        limit), and the total may not exceed :data:`_PREALLOC_BYTES_PER_FILE_BYTE` event bytes per
        file byte. A table that claims more is not trusted for sizing: the packets are decoded one
        by one (each bounded) and joined, so memory follows what the file really holds.
        """
        size = EVENT_DTYPE.itemsize
        for row, n in zip(rows, counts, strict=True):
            room = codec.MAX_PACKET_BYTES
            if self._code == 0:
                room = min(room, row.size)
            elif self._code <= 2:
                room = min(room, 255 * row.size + 64)
            if n * size > room:
                return False
        return sum(counts) * size <= _PREALLOC_BYTES_PER_FILE_BYTE * self.file_size

    def time_range(self) -> tuple[int, int] | None:
        """``(first_t, last_t)`` in µs of the event stream (first and last event in file order).

        From the FileDataTable when present (no packet decoded), else by scanning headers and
        decoding the first and last non-empty event packets. ``None`` when there are no events.
        """
        self._check_open()
        if self.data_table is not None:
            rows = [r for r in self.data_table if r.stream_id == self.event_stream_id and r.num_elements > 0]
            return (rows[0].t_start, rows[-1].t_end) if rows else None
        packets = list(self._event_packets(None))
        first = next((e for e in map(self._decode, packets) if len(e)), None)
        if first is None:
            return None
        last = next(e for e in map(self._decode, reversed(packets)) if len(e))
        return int(first["t"][0]), int(last["t"][-1])

    def packet_counts(self) -> dict[int, int]:
        """Number of packets per stream id (whole file, headers only)."""
        counts: dict[int, int] = collections.Counter()
        rows = self.data_table if self.data_table is not None else self._scan()
        for row in rows:
            counts[row.stream_id] += 1
        return dict(counts)

    def stream_summary(self) -> list[dict]:
        """Every stream of the file with its packets, elements and time range.

        One dict per stream id met (declared in the info node or only in packet headers):
        ``id``, ``type`` (typeIdentifier, ``"?"`` when undeclared), ``name``, ``declared``,
        ``packets``, ``elements`` (events, frames, IMU samples, triggers; ``None`` for a type
        whose elements are not known), ``t_first``/``t_last`` (µs, ``None`` without elements).
        From the FileDataTable when present; otherwise every packet header is scanned and the
        packets of other streams are decoded for their counts and times (``EVTS``, ``FRME``,
        ``IMUS``, ``TRIG``).

        Raises:
            EventFileError: a damaged packet met while scanning (the table-less path).
        """
        self._check_open()
        declared = {s.id: s for s in self.streams}
        found: dict[int, dict] = {}

        def entry(stream_id: int) -> dict:
            if stream_id not in found:
                s = declared.get(stream_id)
                found[stream_id] = {"id": stream_id, "type": s.type_identifier if s else "?",
                                    "name": s.name if s else "", "declared": s is not None, "packets": 0,
                                    "elements": 0 if s and s.type_identifier in _ELEMENT_TYPES else None,
                                    "t_first": None, "t_last": None}
            return found[stream_id]

        def add(e: dict, n: int | None, t0: int | None, t1: int | None) -> None:
            e["packets"] += 1
            if e["elements"] is not None and n:
                e["elements"] += n
                e["t_first"] = t0 if e["t_first"] is None else min(e["t_first"], t0)
                e["t_last"] = t1 if e["t_last"] is None else max(e["t_last"], t1)

        for s in self.streams:
            entry(s.id)
        if self.data_table is not None:
            for row in self.data_table:
                add(entry(row.stream_id), row.num_elements, row.t_start, row.t_end)
        else:
            for packet in self._scan():
                e = entry(packet.stream_id)
                if e["elements"] is None:
                    add(e, None, None, None)
                    continue
                add(e, *self._packet_elements(packet, e["type"]))
        return [found[k] for k in sorted(found)]

    def _packet_elements(self, packet: _Packet, kind: str) -> tuple[int, int | None, int | None]:
        """(elements, first t, last t) of one packet of a known type, decoded."""
        if kind == "EVTS":
            events = self._decode(packet)
            return (len(events), int(events["t"].min()), int(events["t"].max())) if len(events) else (0, None, None)
        payload = self._pread(packet.size, packet.offset)
        try:
            buf = codec.decompress(self._code, payload)
            table, _ = size_prefixed_root(buf, kind.encode("ascii"))
            if kind == "FRME":
                t = table.scalar(0, "<q", 0)
                return 1, t, t
            vec = table.vector(0, 4)
            if vec is None or vec[1] == 0:
                return 0, None, None
            start, count = vec
            # IMU samples and triggers are tables (a vector of offsets), timestamp first: read the ends.
            times = []
            for ref in (start, start + 4 * (count - 1)):
                times.append(Table(buf, ref + struct.unpack_from("<I", buf, ref)[0], ref).scalar(0, "<q", 0))
        except (codec.CompressionError, FlatBufferError, struct.error) as err:
            raise self._error(f"{kind} packet: {err}", packet.offset) from err
        return count, min(times), max(times)

    def _check_open(self) -> None:
        if self._fd < 0:
            raise self._error("reader is closed")

    def close(self) -> None:
        """Release the file and the decompression threads (idempotent)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Aedat4Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()


def _open_fd(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except OSError as err:
        raise EventFileError.from_os_error(path, err, "open", "recording") from None


class _CountMismatch(Exception):
    """A packet holds another number of events than its FileDataTable entry says."""


_INFO_NODE = """<dv version="2.0">
    <node name="outInfo" path="/outInfo/">
        <node name="{id}" path="/outInfo/{id}/">
            <attr key="compression" type="string">{compression}</attr>
            <attr key="originalModuleName" type="string">evstream</attr>
            <attr key="originalOutputName" type="string">events</attr>
            <attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>
            <attr key="typeIdentifier" type="string">EVTS</attr>
            <node name="info" path="/outInfo/{id}/info/">
                <attr key="sizeX" type="int">{width}</attr>
                <attr key="sizeY" type="int">{height}</attr>
                <attr key="source" type="string">{source}</attr>
                <attr key="tsOffset" type="long">{ts_offset}</attr>
            </node>
        </node>
    </node>
</dv>
"""


class Aedat4Writer:
    """Write an event stream as an ``.aedat4`` file that dv-processing and DV read.

    Every :meth:`write` appends whole packets and flushes them, so a recording killed mid-way is
    readable up to its last whole packet; :meth:`close` appends the FileDataTable and patches
    ``dataTablePosition`` in place (the IOHeader always carries that field).

    Args:
        path: file to create (overwritten).
        sensor_size: event geometry (``sizeX``/``sizeY`` of the info node).
        compression: ``none``, ``lz4``, ``lz4_high``, ``zstd`` or ``zstd_high``.
        camera_name: ``source`` of the stream.
        packet_events: events per packet at most (larger arrays are split).
        ts_offset: ``tsOffset`` of the info node (µs; DV's offset of its clock, informative).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sensor_size: SensorSize | tuple[int, int],
        *,
        compression: str = "lz4",
        camera_name: str = "evstream",
        packet_events: int = _DEFAULT_PACKET_EVENTS,
        ts_offset: int = 0,
    ) -> None:
        self.path = Path(path)
        self.sensor_size = sensor_size if isinstance(sensor_size, SensorSize) else SensorSize(*sensor_size)
        try:
            self._code = codec.compression_code(compression)
        except ValueError as err:
            raise EventFileError(self.path, str(err)) from None
        if packet_events < 1:
            raise EventFileError(self.path, f"packet_events must be >= 1, got {packet_events}")
        self.packet_events = int(packet_events)
        self.compression = codec.COMPRESSION_NAMES[self._code]
        self._entries: list[DataTableEntry] = []
        xml = _INFO_NODE.format(id=0, compression=self.compression, width=self.sensor_size.width,
                                height=self.sensor_size.height, source=escape(camera_name), ts_offset=int(ts_offset))
        header = encode_io_header(self._code, xml)
        try:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as err:
            raise EventFileError(self.path, f"cannot create: {err.strerror}") from None
        self._file.write(MAGIC + struct.pack("<I", len(header)) + header)
        self._file.flush()
        self._pos = self._file.tell()

    def write(self, events: np.ndarray) -> None:
        """Append ``events`` (``EVENT_DTYPE`` or convertible) as whole packets, flushed."""
        if self._file is None:
            raise EventFileError(self.path, "writer is closed")
        events = as_events(events)
        for i in range(0, len(events), self.packet_events):
            part = np.ascontiguousarray(events[i:i + self.packet_events])
            payload = encode_event_packet(self._code, part)
            self._file.write(_HEADER.pack(0, len(payload)) + payload)
            t = part["t"]
            self._entries.append(DataTableEntry(self._pos + 8, 0, len(payload), len(part), int(t.min()), int(t.max())))
            self._pos += 8 + len(payload)
        self._file.flush()

    def close(self) -> None:
        """Append the FileDataTable, patch ``dataTablePosition``, close (idempotent)."""
        if self._file is None:
            return
        f, self._file = self._file, None
        with f:
            table_at = self._pos
            f.write(codec.compress(self._code, encode_file_data_table(self._entries)))
            f.seek(len(MAGIC) + 4 + IO_HEADER_DATA_TABLE_POSITION)
            f.write(struct.pack("<q", table_at))

    def __enter__(self) -> Aedat4Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_aedat4(
    path: str | os.PathLike,
    events: np.ndarray,
    sensor_size: SensorSize | tuple[int, int],
    compression: str = "lz4",
    **options,
) -> None:
    """Write ``events`` to a new ``.aedat4`` file (see :class:`Aedat4Writer` for ``options``)."""
    with Aedat4Writer(path, sensor_size, compression=compression, **options) as writer:
        writer.write(events)
