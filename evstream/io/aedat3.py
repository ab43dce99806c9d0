"""AEDAT 3.1 (``.aedat``, cAER; the DVS128 Gesture dataset) polarity events and gesture label files.

Layout as in ``shared/reference/formats.md`` §2 (iniVation's AEDAT 3.1 spec): ``#`` header
lines (CRLF, LF accepted) ending with ``#!END-HEADER``, then packets of a 28-byte header
(eventType, eventSource, eventSize, eventTSOffset, eventTSOverflow, eventCapacity, eventNumber,
eventValid) and ``eventCapacity x eventSize`` bytes. Polarity events (type 1) are 8 bytes:
``uint32 data`` (bit 0 valid, bit 1 polarity, bits 2-16 y, bits 17-31 x) and ``int32`` µs
timestamp; the full time is ``(eventTSOverflow << 31) | timestamp``. Events with the validity
bit clear are dropped; packets of other types are skipped.

Damage policy: header faults raise on open; a packet whose header or payload is truncated, or
whose sizes are impossible, raises :class:`~evstream.errors.EventFileError` (file and byte offset)
when iteration reaches it, after every whole packet before it has been yielded. Timestamps going
backwards are kept as stored.

Labels: DVS128 Gesture ``userNN_<lighting>_labels.csv`` (``class,startTime_usec,endTime_usec``,
1-based classes, formats.md §3) read to 0-based labels.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from evstream.errors import EventFileError
from evstream.events import SensorSize, as_events, concatenate, empty_events
from evstream.io.screen import EventScreen
from evstream.labels import DVS_GESTURE_CLASSES

__all__ = [
    "MAGIC",
    "SOURCE_SIZES",
    "LABEL_DTYPE",
    "Aedat3Reader",
    "write_aedat3",
    "read_labels",
    "write_labels",
]

MAGIC = b"#!AER-DAT3.1"
_END_HEADER = b"#!END-HEADER"
_MAX_HEADER_BYTES = 1 << 20
_PACKET = struct.Struct("<hhiiiiii")
_POLARITY = 1
_DEFAULT_PACKET_EVENTS = 8192

# Sensor geometry by the camera named on the `#Source <id>: <name>` line (cAER device names).
SOURCE_SIZES: dict[str, SensorSize] = {
    "DVS128": SensorSize(128, 128),
    "DAVIS128": SensorSize(128, 128),
    "DAVIS208": SensorSize(208, 192),
    "DAVIS240": SensorSize(240, 180),
    "DAVIS240A": SensorSize(240, 180),
    "DAVIS240B": SensorSize(240, 180),
    "DAVIS240C": SensorSize(240, 180),
    "DAVIS346": SensorSize(346, 260),
    "DAVIS346B": SensorSize(346, 260),
    "DAVIS346RED": SensorSize(346, 260),
    "DAVIS640": SensorSize(640, 480),
    "DVXPLORER": SensorSize(640, 480),
    "DVXPLORERLITE": SensorSize(320, 240),
}

LABEL_DTYPE = np.dtype([("label", "<i8"), ("t_start", "<i8"), ("t_end", "<i8")])


def _source_size(name: str) -> SensorSize | None:
    key = name.strip().upper().replace(" ", "").replace("_", "").replace("-", "")
    for model in sorted(SOURCE_SIZES, key=len, reverse=True):
        if key.startswith(model):
            return SOURCE_SIZES[model]
    return None


class Aedat3Reader:
    """Streaming reader of the polarity events of an AEDAT 3.1 file.

    Args:
        path: the recording.
        sensor_size: geometry to use when the ``#Source`` camera is not one of
            :data:`SOURCE_SIZES` (otherwise ignored).
        strict: an event outside the sensor raises (default: it is dropped and counted).

    Attributes:
        path, sensor_size, source (camera name from ``#Source``), header_lines (decoded, without
        line ends), data_start (byte offset of the first packet), screen (the
        :class:`~evstream.io.screen.EventScreen`), counts (events dropped: ``off_sensor``,
        ``bad_polarity``).

    Raises:
        EventFileError: missing file, wrong magic, header without ``#!END-HEADER``, unknown camera
            and no ``sensor_size`` given.
    """

    def __init__(self, path: str | os.PathLike, *, sensor_size: SensorSize | None = None,
                 strict: bool = False) -> None:
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as err:
            raise EventFileError.from_os_error(self.path, err, "open", "recording") from None
        try:
            self._parse_header(sensor_size)
        except BaseException:
            self._file.close()
            raise
        self.screen = EventScreen(self.path, self.sensor_size, strict=strict)

    @property
    def counts(self) -> dict[str, int]:
        """Events dropped by the last read so far: ``off_sensor`` and ``bad_polarity``."""
        return self.screen.counts()

    def _parse_header(self, sensor_size: SensorSize | None) -> None:
        f = self._file
        self.file_size = os.fstat(f.fileno()).st_size
        if self.file_size == 0:
            raise EventFileError(self.path, "empty file", 0)
        first = f.readline(64)
        if not first.startswith(MAGIC) or first.rstrip(b"\r\n") != MAGIC:
            raise EventFileError(self.path, f"not an AEDAT 3.1 file (first line {first[:20]!r})", 0)
        lines: list[str] = []
        self.source = ""
        while True:
            start = f.tell()
            line = f.readline(_MAX_HEADER_BYTES)
            if not line or (not line.endswith(b"\n") and f.tell() == self.file_size):
                raise EventFileError(self.path, "header has no #!END-HEADER line (truncated?)", start)
            if not line.startswith(b"#") or not line.endswith(b"\n") or start > _MAX_HEADER_BYTES:
                raise EventFileError(self.path, "header line does not start with '#' or has no end", start)
            text = line.rstrip(b"\r\n").decode("latin-1")
            if line.startswith(_END_HEADER):
                break
            lines.append(text)
            if text.startswith("#Source") and not self.source:
                self.source = text.partition(":")[2].strip()
        self.header_lines = lines
        self.data_start = f.tell()
        size = _source_size(self.source) if self.source else None
        if size is None:
            if sensor_size is None:
                raise EventFileError(self.path, f"unknown camera {self.source or '(no #Source line)'!r}: "
                                                "pass sensor_size", 0)
            size = sensor_size
        self.sensor_size = size

    def iter_packets(self) -> Iterator[np.ndarray]:
        """Valid polarity events, one ``EVENT_DTYPE`` array per polarity packet, in file order.

        Raises:
            EventFileError: at the first damaged packet, after every packet before it.
        """
        f = self._file
        if f.closed:
            raise EventFileError(self.path, "reader is closed")
        pos = self.data_start
        self.screen.reset()
        while pos < self.file_size:
            f.seek(pos)
            head = f.read(_PACKET.size)
            if len(head) < _PACKET.size:
                raise EventFileError(self.path, f"truncated packet header ({len(head)} of 28 bytes)", pos)
            etype, _source, esize, ts_offset, overflow, capacity, number, _valid = _PACKET.unpack(head)
            if esize <= 0 or capacity < 0 or not 0 <= number <= capacity:
                raise EventFileError(self.path, f"impossible packet sizes (eventSize {esize}, capacity {capacity}, "
                                                f"number {number})", pos)
            length = esize * capacity
            if pos + 28 + length > self.file_size:
                raise EventFileError(self.path, f"packet of {length} bytes runs past the end of the file "
                                                f"({self.file_size - pos - 28} left; truncated?)", pos)
            if etype == _POLARITY:
                if esize != 8 or ts_offset != 4 or overflow < 0:
                    raise EventFileError(self.path, f"polarity packet with eventSize {esize}, eventTSOffset "
                                                    f"{ts_offset}, eventTSOverflow {overflow}", pos)
                raw = np.frombuffer(f.read(8 * number), dtype="<u4").reshape(-1, 2)
                yield self.screen(_decode_polarity(raw, overflow), pos)
            pos += 28 + length

    def read(self) -> np.ndarray:
        """Every valid polarity event as one ``EVENT_DTYPE`` array."""
        return concatenate(self.iter_packets())

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._file.close()

    def __enter__(self) -> Aedat3Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _decode_polarity(raw: np.ndarray, overflow: int) -> np.ndarray:
    """``[n, 2]`` uint32 (data, timestamp) words of one packet to valid events."""
    data = raw[:, 0]
    raw = raw[(data & 1) == 1]
    data = raw[:, 0]
    out = empty_events(len(raw))
    out["t"] = (np.int64(overflow) << 31) | (raw[:, 1] & 0x7FFFFFFF).astype(np.int64)
    out["x"] = (data >> 17) & 0x7FFF
    out["y"] = (data >> 2) & 0x7FFF
    out["p"] = (data >> 1) & 1
    return out


def write_aedat3(
    path: str | os.PathLike,
    events: np.ndarray,
    *,
    source: str = "DVS128",
    packet_events: int = _DEFAULT_PACKET_EVENTS,
    newline: str = "\r\n",
) -> None:
    """Write polarity events as an AEDAT 3.1 file in cAER's layout (all events valid).

    Packets hold at most ``packet_events`` events and never straddle a change of
    ``eventTSOverflow`` (``t >> 31``).

    Args:
        path: file to create.
        events: ``EVENT_DTYPE`` (or convertible) with ``t >= 0`` µs and ``0 <= x, y < 32768``.
        source: camera named on the ``#Source 1:`` line.
        packet_events: events per packet at most.
        newline: header line end (cAER writes CRLF).

    Raises:
        EventFileError: events that AEDAT 3.1 cannot represent, or a file that cannot be created.
    """
    path = Path(path)
    events = as_events(events)
    if packet_events < 1:
        raise EventFileError(path, f"packet_events must be >= 1, got {packet_events}")
    if len(events):
        if events["t"].min() < 0:
            raise EventFileError(path, "AEDAT 3.1 cannot store negative timestamps")
        for field in ("x", "y"):
            if events[field].min() < 0:
                raise EventFileError(path, f"AEDAT 3.1 cannot store negative {field}")
    stamp = time.strftime("%Y-%m-%d %H:%M:%S (TZ%z)")
    header = [MAGIC.decode(), "#Format: RAW", f"#Source 1: {source}", f"#Start-Time: {stamp}", _END_HEADER.decode()]
    overflow = events["t"] >> 31
    # Packet boundaries: every packet_events events and wherever the overflow counter changes.
    cuts = set(range(0, len(events), packet_events)) | set((np.flatnonzero(np.diff(overflow)) + 1).tolist())
    bounds = sorted(cuts) + [len(events)]
    try:
        with open(path, "wb") as f:
            f.write("".join(line + newline for line in header).encode("ascii"))
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
                part = events[lo:hi]
                n = len(part)
                f.write(_PACKET.pack(_POLARITY, 1, 8, 4, int(overflow[lo]), n, n, n))
                words = np.empty((n, 2), dtype="<u4")
                words[:, 0] = (1 | (part["p"].astype(np.uint32) & 1) << 1 | (part["y"].astype(np.uint32) & 0x7FFF) << 2
                               | (part["x"].astype(np.uint32) & 0x7FFF) << 17)
                words[:, 1] = part["t"] & 0x7FFFFFFF
                f.write(words.tobytes())
    except OSError as err:
        raise EventFileError(path, f"cannot write: {err.strerror}") from None


_LABEL_HEADER = "class,startTime_usec,endTime_usec"


def read_labels(path: str | os.PathLike, n_classes: int | None = None) -> np.ndarray:
    """Gesture segments of a DVS128 Gesture ``_labels.csv`` file.

    Args:
        path: the CSV.
        n_classes: classes 1..n_classes are valid; default the count of ``classes.txt`` beside
            the file (a user's own dataset, :func:`evstream.labels.read_class_names`), else 11.

    Returns:
        ``LABEL_DTYPE`` array ``[n]``: ``label`` 0-based class (CSV class - 1, index into
        ``DVS_GESTURE_CLASSES`` or the folder's ``classes.txt``), ``t_start`` and ``t_end`` in µs, in file order.

    Raises:
        EventFileError: naming the file, byte offset and line of a malformed row, an out-of-range
            class or an end before its start.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise EventFileError.from_os_error(path, err, "read", "label file") from None
    if n_classes is None:
        from evstream.labels import read_class_names

        try:
            names = read_class_names(path.parent)
        except ValueError as err:
            raise EventFileError(path.parent / "classes.txt", str(err).split(": ", 1)[-1]) from None
        n_classes = len(DVS_GESTURE_CLASSES) if names is None else len(names)
    rows = []
    offset = 0
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        line = raw.decode("utf-8", errors="replace").strip()
        where = offset
        offset += len(raw)
        if number == 1:
            if line.replace(" ", "") != _LABEL_HEADER:
                raise EventFileError(path, f"line 1: expected header {_LABEL_HEADER!r}, got {line[:60]!r}", where)
            continue
        if not line:
            continue
        fields = line.split(",")
        try:
            if len(fields) != 3:
                raise ValueError
            cls, t0, t1 = (int(v) for v in fields)
        except ValueError:
            raise EventFileError(path, f"line {number}: expected 'class,startTime_usec,endTime_usec' integers, "
                                       f"got {line[:60]!r}", where) from None
        if not 1 <= cls <= n_classes:
            raise EventFileError(path, f"line {number}: class {cls} outside 1..{n_classes}", where)
        if t1 < t0:
            raise EventFileError(path, f"line {number}: endTime_usec {t1} before startTime_usec {t0}", where)
        rows.append((cls - 1, t0, t1))
    if not data:
        raise EventFileError(path, "empty file", 0)
    return np.array(rows, dtype=LABEL_DTYPE)


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """Write ``LABEL_DTYPE`` segments as a DVS128 Gesture ``_labels.csv`` (1-based classes, CRLF-free)."""
    lines = [_LABEL_HEADER] + [f"{int(r['label']) + 1},{int(r['t_start'])},{int(r['t_end'])}" for r in labels]
    Path(path).write_text("\n".join(lines) + "\n")
