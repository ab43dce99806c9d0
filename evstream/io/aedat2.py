"""AEDAT 2.0 (jAER ``.aedat``): DVS128 / eDVS and DAVIS polarity events.

Layout (formats.md §4, https://docs.inivation.com/software/software-advanced-usage/file-formats/
aedat-2.0.html): the line ``#!AER-DAT2.0``, ``#`` comment lines (CRLF or LF; ``# AEChip: <jAER
class>``, preferences XML), then big-endian ``int32 address, int32 timestamp`` pairs (1 µs tick).
The header ends at the first line that does not start with ``#``, as in jAER.

The address means what the jAER chip class says (:data:`CHIPS`, from the ``# AEChip:`` line):

* ``dvs128`` (DVS128, Tmpdiff128, eDVS): bit 0 polarity, bits 1-7 x, bits 8-14 y, bit 15 external
  (sync) event. Decoded as jAER's ``DVS128.Extractor`` does: raw polarity 0 is ON, x mirrored
  (``127 - raw``); jAER's origin is lower-left, so y is flipped to evstream's top-left. iniVation's
  format page states the opposite polarity and no x mirror; jAER, which writes and displays these
  files, is followed here.
* ``davis`` (DAVIS240/346/640/128/208 classes): bit 31 clear = DVS with x in bits 12-21, y in
  22-30, polarity bit 11 (1 = ON); bit 10 set on a DVS word = external input event; bit 31 set =
  APS sample, or IMU sample when bits 10-11 are both set. ``x = width-1-raw``, ``y = height-1-raw``
  (jAER ``DavisChip``; tonic's ``read_davis_346``).

External events, APS and IMU words are skipped and counted in :attr:`Aedat2Reader.counts`.
Records are decoded by the numba kernel of :mod:`evstream.io._aedat2_kernels`, 2 MiB at a time
through one reused buffer (``iter_packets``) or straight into one array (``read``).
Timestamps are read as unsigned 32-bit and unwrapped (a step back of more than 2**31 µs is the
counter wrapping); other steps back (timestamp resets) are kept as stored.

Damage policy: header faults raise on open (wrong magic, unknown chip without ``layout`` and
``sensor_size``, sizes outside 1..32767); a DVS address outside the sensor raises at its byte
offset, and a file ending inside an 8-byte record raises after every whole record before it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from evstream.errors import EventFileError
from evstream.events import EVENT_DTYPE, SensorSize
from evstream.io import _aedat2_kernels as kernels
from evstream.io._blocks import pread_into

__all__ = ["MAGIC", "CHIPS", "Aedat2Reader"]

MAGIC = b"#!AER-DAT2.0"
_MAX_HEADER_BYTES = 1 << 20
_BLOCK_RECORDS = 1 << 18
_MAX_SIDE = 32767

# jAER chip class (last dotted component, lower case, prefix match; longest first) -> (layout, size).
CHIPS: dict[str, tuple[str, SensorSize]] = {
    "dvs128": ("dvs128", SensorSize(128, 128)),
    "tmpdiff128": ("dvs128", SensorSize(128, 128)),
    "edvs": ("dvs128", SensorSize(128, 128)),
    "davis346": ("davis", SensorSize(346, 260)),
    "davis240": ("davis", SensorSize(240, 180)),
    "dvs240": ("davis", SensorSize(240, 180)),
    "sbret10": ("davis", SensorSize(240, 180)),
    "davis640": ("davis", SensorSize(640, 480)),
    "davisrgbw640": ("davis", SensorSize(640, 480)),
    "cdavis": ("davis", SensorSize(640, 480)),
    "davis208": ("davis", SensorSize(208, 192)),
    "davis128": ("davis", SensorSize(128, 128)),
}
LAYOUTS = ("dvs128", "davis")


def _packed(events: np.ndarray) -> np.ndarray:
    """The flat ``int64 [2 n]`` view of a contiguous ``EVENT_DTYPE`` array the kernel writes into."""
    return events.view(np.int64)


def chip_layout(chip: str) -> tuple[str, SensorSize] | None:
    """(layout, sensor size) of a jAER AEChip class name, ``None`` when it is not known."""
    name = chip.strip().rsplit(".", 1)[-1].lower()
    for key in sorted(CHIPS, key=len, reverse=True):
        if name.startswith(key):
            return CHIPS[key]
    return None


class Aedat2Reader:
    """Streaming reader of the polarity events of a jAER AEDAT 2.0 file.

    Args:
        path: the recording.
        sensor_size: geometry; overrides the chip class's (required with ``layout`` for an
            unknown chip).
        layout: ``"dvs128"`` or ``"davis"`` address layout; overrides the chip class's.

    Attributes:
        path, sensor_size, layout, source (the ``# AEChip:`` class, ``""`` when absent),
        header_lines (decoded, without ``#`` line ends), data_start, format_name, counts
        (``events``, ``special`` external events, ``aps`` and ``imu`` words, so far).

    Raises:
        EventFileError: missing or empty file, wrong magic, header over 1 MiB, unknown chip and
            no ``layout`` / ``sensor_size``, sizes outside 1..32767.
    """

    format_name = "AEDAT 2.0"

    def __init__(self, path: str | os.PathLike, *, sensor_size: SensorSize | tuple[int, int] | None = None,
                 layout: str | None = None) -> None:
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as err:
            raise EventFileError.from_os_error(self.path, err, "open", "recording") from None
        try:
            self._parse_header(sensor_size, layout)
        except BaseException:
            self.close()
            raise
        self.counts = {"events": 0, "special": 0, "aps": 0, "imu": 0}

    def _error(self, message: str, offset: int | None = None) -> EventFileError:
        return EventFileError(self.path, message, offset)

    def _parse_header(self, sensor_size, layout: str | None) -> None:
        self.file_size = os.fstat(self._fd).st_size
        if self.file_size == 0:
            raise self._error("empty file", 0)
        head = os.pread(self._fd, min(self.file_size, _MAX_HEADER_BYTES + 1), 0)
        first = head.split(b"\n", 1)[0].rstrip(b"\r")
        if first != MAGIC:
            raise self._error(f"not an AEDAT 2.0 file (first line {first[:20]!r})", 0)
        pos = head.find(b"\n") + 1 or len(head)
        lines = []
        while pos < len(head) and head[pos:pos + 1] == b"#":
            end = head.find(b"\n", pos)
            if end < 0:
                if len(head) > _MAX_HEADER_BYTES:
                    raise self._error("header longer than 1 MiB", pos)
                raise self._error("file ends inside a header line (truncated?)", pos)
            lines.append(head[pos + 1:end].rstrip(b"\r").decode("latin-1"))
            pos = end + 1
        if pos > _MAX_HEADER_BYTES:
            raise self._error("header longer than 1 MiB", 0)
        self.header_lines = lines
        self.data_start = pos
        self.source = next((ln.partition(":")[2].strip() for ln in lines if ln.strip().startswith("AEChip:")), "")
        known = chip_layout(self.source) if self.source else None
        if layout is not None and layout not in LAYOUTS:
            raise self._error(f"unknown AEDAT 2.0 address layout {layout!r} (dvs128 or davis)")
        if sensor_size is not None:
            w, h = (sensor_size.width, sensor_size.height) if isinstance(sensor_size, SensorSize) else sensor_size
            if not (1 <= int(w) <= _MAX_SIDE and 1 <= int(h) <= _MAX_SIDE):
                raise self._error(f"sensor size {w}x{h} outside 1..{_MAX_SIDE}")
            sensor_size = SensorSize(int(w), int(h))
        if known is None and (layout is None or sensor_size is None):
            raise self._error(f"unknown jAER chip {self.source or '(no # AEChip: line)'!r}: pass layout "
                              "(dvs128 or davis) and sensor_size", 0)
        self.layout = layout or known[0]
        self.sensor_size = sensor_size or known[1]
        if self.layout == "dvs128" and (self.sensor_size.width > 128 or self.sensor_size.height > 128):
            raise self._error(f"sensor size {self.sensor_size} exceeds the dvs128 layout's 7-bit addresses")

    def _decoded(self, whole: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """The events of each block of records, decoded into a new array per block or, with
        ``whole``, into its consecutive slices; raises after the block holding an off-sensor DVS
        address (its events before it handed out first) or at a truncated last record."""
        if self._fd < 0:
            raise self._error("reader is closed")
        self.counts = dict.fromkeys(self.counts, 0)
        state = kernels.new_state()
        layout = kernels.DVS128 if self.layout == "dvs128" else kernels.DAVIS
        w, h = self.sensor_size.width, self.sensor_size.height
        whole_end = self.data_start + (self.file_size - self.data_start) // 8 * 8
        pos = self.data_start
        buf = np.empty(min(8 * _BLOCK_RECORDS, whole_end - pos), np.uint8)
        done = 0
        while pos < whole_end:
            want = min(len(buf), whole_end - pos)
            if pread_into(self._fd, buf[:want], pos) < want:
                raise self._error("file shrank while reading", pos)
            records = buf[:want].view("<u4")
            size = want // 8
            out = np.empty(size, EVENT_DTYPE) if whole is None else whole[done:done + size]
            n, bad = kernels.decode_records(records, _packed(out), state, layout, w, h)
            self._tally(state)
            done += n
            if n:
                yield out[:n]
            if bad >= 0:
                a = int(records[2 * bad].byteswap())
                raise self._error(f"DVS address 0x{a:08X} outside the {self.sensor_size} sensor", pos + 8 * bad)
            pos += want
        if whole_end < self.file_size:
            raise self._error(f"file ends inside an 8-byte record ({self.file_size - whole_end} bytes left; "
                              "truncated?)", whole_end)

    def _tally(self, state: np.ndarray) -> None:
        for key, slot in (("events", kernels.EVENTS), ("special", kernels.SPECIAL), ("aps", kernels.APS),
                          ("imu", kernels.IMU)):
            self.counts[key] = int(state[slot])

    def iter_packets(self) -> Iterator[np.ndarray]:
        """Polarity events, one ``EVENT_DTYPE`` array per 2 MiB of records, in file order.

        Each call restarts from the first record (and resets :attr:`counts`).

        Raises:
            EventFileError: a DVS address outside the sensor, or a truncated last record, after
                every event before it.
        """
        return self._decoded()

    def read(self) -> np.ndarray:
        """Every polarity event as one ``EVENT_DTYPE`` array ``[n]``, decoded straight into it
        (one slot per record, trimmed in place at the end).

        Raises:
            EventFileError: as :meth:`iter_packets` (use it for the prefix).
        """
        whole = np.empty(max(0, (self.file_size - self.data_start) // 8), EVENT_DTYPE)
        n = sum(len(packet) for packet in self._decoded(whole))
        whole.resize(n, refcheck=False)
        return whole

    def close(self) -> None:
        """Close the file (idempotent)."""
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Aedat2Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
