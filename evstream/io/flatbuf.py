"""Just enough FlatBuffers to read and write AEDAT 4.0 / DV network packets, every offset checked.

Reading follows the FlatBuffers binary format (https://flatbuffers.dev/internals/): a buffer
starts with a uint32 offset to the root table; a table starts with an int32 ``soffset`` back to
its vtable; the vtable holds uint16 sizes and uint16 field offsets (0 = field absent); offset
fields (strings, vectors, sub-tables) are uint32 relative to where they are stored. Every read
here is checked against the buffer length, so a damaged buffer raises :class:`FlatBufferError`
(with the byte position inside the buffer) instead of reading out of bounds or allocating by an
unchecked size.

Writing builds the exact layouts of the tables evstream writes (IOHeader, EventPacket,
FileDataTable), laid out as dv-processing lays them out, with alignment counted from the start of
the 4-byte size prefix (as the sample recordings show: the first event sits at byte 32).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = [
    "FlatBufferError",
    "Table",
    "root_table",
    "size_prefixed_root",
    "event_packet_header",
    "encode_io_header",
    "encode_file_data_table",
    "IO_HEADER_DATA_TABLE_POSITION",
    "DataTableEntry",
    "decode_file_data_table",
]

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_INFO = struct.Struct("<ii")


class FlatBufferError(ValueError):
    """A FlatBuffer is malformed; ``position`` is the byte inside the buffer where it went wrong."""

    def __init__(self, message: str, position: int) -> None:
        self.position = position
        super().__init__(message)


def _u32(buf, pos: int, what: str) -> int:
    if pos < 0 or pos + 4 > len(buf):
        raise FlatBufferError(f"{what} at {pos} outside the {len(buf)}-byte buffer", max(pos, 0))
    return _U32.unpack_from(buf, pos)[0]


class Table:
    """A FlatBuffers table at ``pos`` inside ``buf`` (bytes, bytearray or memoryview).

    ``ref`` is where the offset leading here is stored (reported when ``pos`` is out of range).

    Field accessors take the vtable slot (0-based field index in the schema).
    """

    __slots__ = ("buf", "pos", "_vt", "_vsize", "_tsize")

    def __init__(self, buf, pos: int, ref: int = 0) -> None:
        n = len(buf)
        if pos < 0 or pos + 4 > n:
            raise FlatBufferError(f"table offset at {ref} points to {pos}, outside the {n}-byte buffer", ref)
        vt = pos - _I32.unpack_from(buf, pos)[0]
        if vt < 0 or vt + 4 > n or vt % 2:
            raise FlatBufferError(f"vtable of the table at {pos} points to {vt}, outside the buffer", pos)
        vsize, tsize = struct.unpack_from("<HH", buf, vt)
        if vsize < 4 or vsize % 2 or vt + vsize > n or pos + tsize > n:
            raise FlatBufferError(f"vtable at {vt} has impossible sizes ({vsize}, {tsize})", vt)
        self.buf, self.pos, self._vt, self._vsize = buf, pos, vt, vsize
        self._tsize = tsize

    def field_pos(self, slot: int, size: int) -> int | None:
        """Absolute position of field ``slot`` (``size`` bytes, checked), or ``None`` if absent."""
        entry = 4 + 2 * slot
        if entry + 2 > self._vsize:
            return None
        off = _U16.unpack_from(self.buf, self._vt + entry)[0]
        if off == 0:
            return None
        if off + size > self._tsize:
            raise FlatBufferError(f"field {slot} of the table at {self.pos} overruns the table", self.pos)
        return self.pos + off

    def scalar(self, slot: int, fmt: str, default):
        """Scalar field (``struct`` format such as ``"<q"``), or ``default`` when absent."""
        size = struct.calcsize(fmt)
        p = self.field_pos(slot, size)
        return default if p is None else struct.unpack_from(fmt, self.buf, p)[0]

    def _target(self, slot: int) -> int | None:
        p = self.field_pos(slot, 4)
        if p is None:
            return None
        target = p + _U32.unpack_from(self.buf, p)[0]
        if target + 4 > len(self.buf):
            raise FlatBufferError(f"offset field {slot} of the table at {self.pos} points outside the buffer", p)
        return target

    def string(self, slot: int) -> str | None:
        """UTF-8 string field, or ``None`` when absent."""
        start = self._target(slot)
        if start is None:
            return None
        length = _u32(self.buf, start, "string length")
        if start + 4 + length > len(self.buf):
            raise FlatBufferError(f"string of {length} bytes at {start} overruns the buffer", start)
        try:
            return bytes(self.buf[start + 4:start + 4 + length]).decode("utf-8")
        except UnicodeDecodeError as err:
            raise FlatBufferError(f"string at {start} is not UTF-8", start) from err

    def vector(self, slot: int, element_size: int) -> tuple[int, int] | None:
        """``(data_position, count)`` of a vector field whose data fits the buffer, or ``None``."""
        start = self._target(slot)
        if start is None:
            return None
        count = _u32(self.buf, start, "vector length")
        if start + 4 + count * element_size > len(self.buf):
            raise FlatBufferError(f"vector of {count} x {element_size} bytes at {start} overruns the buffer", start)
        return start + 4, count

    def tables(self, slot: int) -> list[Table]:
        """Vector of tables (each element a uint32 offset relative to itself)."""
        vec = self.vector(slot, 4)
        if vec is None:
            return []
        data, count = vec
        return [Table(self.buf, data + 4 * i + _U32.unpack_from(self.buf, data + 4 * i)[0], data + 4 * i)
                for i in range(count)]


def root_table(buf, identifier: bytes | None = None) -> Table:
    """Root table of an un-prefixed buffer; checks the 4-byte file identifier when given."""
    root = _u32(buf, 0, "root offset")
    if identifier is not None:
        if len(buf) < 8 or bytes(buf[4:8]) != identifier:
            found = bytes(buf[4:8]) if len(buf) >= 8 else b""
            raise FlatBufferError(f"identifier {found!r}, expected {identifier!r}", 4)
    return Table(buf, root, 0)


def size_prefixed_root(buf, identifier: bytes | None = None) -> tuple[Table, bytes]:
    """Root table of a size-prefixed buffer, plus the 4-byte identifier found.

    Positions of the returned table are relative to the start of ``buf`` (prefix included), so
    vector data positions index ``buf`` directly.
    """
    size = _u32(buf, 0, "size prefix")
    if size + 4 > len(buf) or size < 8:
        raise FlatBufferError(f"size prefix {size} does not fit the {len(buf)}-byte buffer", 0)
    found = bytes(buf[8:12])
    if identifier is not None and found != identifier:
        raise FlatBufferError(f"identifier {found!r}, expected {identifier!r}", 8)
    root = 4 + _U32.unpack_from(buf, 4)[0]
    return Table(buf, root, 4), found


def event_packet_header(count: int) -> bytes:
    """The 32 bytes that precede ``count`` 16-byte events in a size-prefixed ``EVTS`` buffer.

    Layout (prefix included): size, root offset 16, ``EVTS``, 2 pad, vtable (6, 8, 4) at 10,
    table at 16 (soffset 6, vector offset 4), vector length at 28, events from 32 — exactly the
    layout of dv-processing's packets.
    """
    return struct.pack("<II4sxxHHHiII", 28 + 16 * count, 16, b"EVTS", 6, 8, 4, 6, 4, count)


# IOHeader table (identifier IOHE): slot 0 compression int32, 1 dataTablePosition int64, 2 infoNode.
# Our layout (buffer without its size prefix): root 24, IOHE, 6 pad, vtable (10, 24, 4, 12, 8) at 14,
# table at 24 (soffset 10, compression at +4, string offset at +8, dataTablePosition at +12), string
# at 48. dataTablePosition is therefore always present at buffer byte 36 = file byte 18 + 36, and
# the writer fixes it up in place.
IO_HEADER_DATA_TABLE_POSITION = 36


def encode_io_header(compression: int, info_node: str, data_table_position: int = -1) -> bytes:
    """IOHeader FlatBuffer (without its size prefix); ``len`` is a multiple of 8."""
    xml = info_node.encode("utf-8")
    head = struct.pack("<I4s6xHHHHHiiIq4x", 24, b"IOHE", 10, 24, 4, 12, 8, 10, compression, 16, data_table_position)
    body = head + _U32.pack(len(xml)) + xml + b"\0"
    return body + b"\0" * (-(len(body) + 4) % 8)


@dataclass(frozen=True)
class DataTableEntry:
    """One FileDataTable row: a packet's payload offset (after its 8-byte header) and contents."""

    byte_offset: int
    stream_id: int
    size: int
    num_elements: int
    t_start: int
    t_end: int


# FileDataDefinition slots: 0 ByteOffset int64, 1 PacketInfo struct {StreamID int32, Size int32},
# 2 NumElements int64, 3 TimestampStart int64, 4 TimestampEnd int64 (dv-processing's FileDataTable).
# Each row is written as a 64-byte block: 2 pad, its vtable (14 B), its table (48 B: soffset,
# PacketInfo, 4 pad, then the four int64 at +16/+24/+32/+40, 8-aligned counting the size prefix).
_ROW = struct.Struct("<xxHHHHHHHiii4xqqqq")


def encode_file_data_table(entries: list[DataTableEntry]) -> bytes:
    """Size-prefixed ``FTAB`` FlatBuffer listing ``entries``."""
    n = len(entries)
    # Positions exclude the prefix: root offset, FTAB, vtable (6, 8, 4) at 8, root table at 16
    # (soffset 8, vector offset 4), vector of n table offsets at 24, then the rows.
    head_len = 28 + 4 * n
    first = head_len + (4 - head_len) % 8
    out = bytearray(struct.pack("<I4sHHHxxiII", 16, b"FTAB", 6, 8, 4, 8, 4, n))
    for i in range(n):
        slot = 28 + 4 * i
        out += _U32.pack(first + 64 * i + 16 - slot)
    out += b"\0" * (first - len(out))
    for e in entries:
        out += _ROW.pack(14, 48, 16, 4, 24, 32, 40, 14, e.stream_id, e.size,
                         e.byte_offset, e.num_elements, e.t_start, e.t_end)
    return _U32.pack(len(out)) + bytes(out)


def decode_file_data_table(buf) -> list[DataTableEntry]:
    """Rows of a size-prefixed ``FTAB`` buffer (decompressed).

    Rows usually share one vtable (FlatBuffers de-duplicates them), so each distinct vtable is
    parsed and checked once; rows are then read field by field at the offsets it gives.
    """
    root, _ = size_prefixed_root(buf, b"FTAB")
    vec = root.vector(0, 4)
    if vec is None:
        return []
    data, count = vec
    layouts: dict[int, tuple[int | None, ...]] = {}
    rows = []
    n = len(buf)
    for i in range(count):
        ref = data + 4 * i
        pos = ref + _U32.unpack_from(buf, ref)[0]
        if pos + 4 > n:
            raise FlatBufferError(f"table offset at {ref} points to {pos}, outside the {n}-byte buffer", ref)
        vt = pos - _I32.unpack_from(buf, pos)[0]
        offsets = layouts.get(vt)
        if offsets is None:
            table = Table(buf, pos, ref)
            offsets = layouts[vt] = tuple(None if (p := table.field_pos(k, 8)) is None else p - pos for k in range(5))
        # Same vtable => same table size, but this table's own start must leave room for it.
        if pos + max((o for o in offsets if o is not None), default=0) + 8 > n:
            raise FlatBufferError(f"FileDataTable row at {pos} overruns the buffer", pos)
        o_offset, o_info, o_count, o_t0, o_t1 = offsets
        sid, size = (0, 0) if o_info is None else _INFO.unpack_from(buf, pos + o_info)
        rows.append(DataTableEntry(
            byte_offset=0 if o_offset is None else _I64.unpack_from(buf, pos + o_offset)[0],
            stream_id=sid,
            size=size,
            num_elements=0 if o_count is None else _I64.unpack_from(buf, pos + o_count)[0],
            t_start=0 if o_t0 is None else _I64.unpack_from(buf, pos + o_t0)[0],
            t_end=0 if o_t1 is None else _I64.unpack_from(buf, pos + o_t1)[0],
        ))
    return rows
