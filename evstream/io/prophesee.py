"""Prophesee recordings: RAW files in EVT 2.0, 2.1 and 3.0, and DAT files of CD events.

Both start with ``% key value`` text lines (formats.md §5; https://docs.prophesee.ai/stable/data/
encoding_formats/). RAW headers name the encoding (``% evt 3.0``, or ``% format EVT3;height=720;
width=1280`` in Metavision 4+), sometimes the geometry (``% geometry 1280x720``), the camera
(``% plugin_name hal_plugin_gen41_evk3``, integrator names, ``% sensor_generation``), and end with
``% end`` in newer files; the little-endian words follow. The sensor size comes from, in order:
the caller's ``sensor_size``, ``% format`` / ``% geometry``, the sensor named by the plugin or
generation (:data:`SENSOR_SIZES`: Gen3 640x480, Gen4.1 / IMX636 1280x720, GenX320 320x320, ATIS
304x240). A word stream without any header (how GenX320 boards stream) reads when the caller
names the encoding and the sensor.

Words are decoded by the numba kernels of :mod:`evstream.io._prophesee_kernels`, block by block
with bounded memory: time high / time low reconstruction across blocks, the 34-bit (EVT 2.x) and
24-bit (EVT 3.0) time counters unwrapped, EVT 2.1 and EVT 3.0 vectors expanded. External
trigger events do not mix with CD events: they are kept apart in :attr:`PropheseeRawReader.triggers`
(``TRIGGER_DTYPE``) and counted in :attr:`~PropheseeRawReader.counts`.

DAT files (``% Data file containing ... Event2d/EventCD events``, ``% Version 2``, ``% Height``,
``% Width``): after the header one byte of event type (0 Event2d, 12 EventCD) and one of event
size (8), then ``uint32 t`` (µs) + ``uint32 data`` per event; version 2 packs x in bits 0-13, y in
14-27, p in 28; version 1 (older ATIS files) x in 0-8, y in 9-16, p in 17. Without geometry lines
the sensor is the ATIS 304x240 unless the caller gives one. The 32-bit µs counter is unwrapped
(kernel :func:`~evstream.io._prophesee_kernels.decode_dat`).

Damage policy (every fault an :class:`~evstream.errors.EventFileError` naming file and byte offset):
header faults (no encoding, no geometry, sizes outside 1..32767, unknown DAT event type) raise on
open; a word of a type the encoding does not have, an event outside the declared geometry, a
time high that goes backwards without wrapping, or a file ending inside a word or event raise
when iteration reaches them, after every event before them has been yielded.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from evstream.errors import EventFileError
from evstream.events import EVENT_DTYPE, SensorSize
from evstream.io import _prophesee_kernels as k
from evstream.io._blocks import Prefault, pread_into

__all__ = [
    "ENCODINGS",
    "SENSOR_SIZES",
    "TRIGGER_DTYPE",
    "RawHeader",
    "read_header",
    "PropheseeRawReader",
    "DatReader",
]

# Encoding name -> (word dtype, bytes per word, kernel, human name).
ENCODINGS = {
    "evt2": ("<u4", 4, k.decode_evt2, "EVT 2.0"),
    "evt21": ("<i8", 8, k.decode_evt21, "EVT 2.1"),
    "evt3": ("<u2", 2, k.decode_evt3, "EVT 3.0"),
}
# The encodings read() may decode on two threads: (sync, count) kernels (see _read_halves).
# EVT 2.x sync on a TIME_HIGH word: (bit of the word type, bit of the time high) as sync_time_high takes them.
_HALVES = {"evt2": (functools.partial(k.sync_time_high, 28, 0), k.count_evt2),
           "evt21": (functools.partial(k.sync_time_high, 60, 32), k.count_evt21),
           "evt3": (k.sync_evt3, k.count_evt3)}

# Sensor geometry by a lower-case fragment of the plugin name, sensor name or generation; the
# first match wins, so the more specific fragments come first.
SENSOR_SIZES: list[tuple[str, SensorSize]] = [
    ("genx320", SensorSize(320, 320)),
    ("imx636", SensorSize(1280, 720)),
    ("imx646", SensorSize(1280, 720)),
    ("gen41", SensorSize(1280, 720)),
    ("gen4.1", SensorSize(1280, 720)),
    ("gen4", SensorSize(1280, 720)),
    ("evk4", SensorSize(1280, 720)),
    ("gen31", SensorSize(640, 480)),
    ("gen3.1", SensorSize(640, 480)),
    ("gen3", SensorSize(640, 480)),
    ("atis", SensorSize(304, 240)),
]

TRIGGER_DTYPE = np.dtype([("t", "<i8"), ("id", "u1"), ("value", "u1")])

_MAX_HEADER_BYTES = 1 << 20
_FIRST_HEADER_READ = 1 << 14
_MAX_SIDE = 32767
_BLOCK_BYTES = 1 << 21
# DAT read() decodes on two threads from this output size (below it a thread costs more than it saves).
_PARALLEL_DAT_BYTES = 16 << 20
_TRIGGER_BLOCK = 4096
# RAW read() decodes on two threads from this many bytes of words; the second half starts
# within this many words after the middle (a recording has every register's word far more often).
_PARALLEL_RAW_BYTES = 4 << 20
_SYNC_WORDS = 1 << 20
# Slots a vector kernel wants free before it writes a vector (EVT 2.1: 32, EVT 3.0: 12), with margin.
_SPARE = 64
_ATIS = SensorSize(304, 240)
_PRINTABLE = re.compile(rb"% [\x20-\x7e\t]*\r?\n")


class RawHeader:
    """The ``% key value`` lines at the start of a Prophesee file.

    Attributes:
        lines: decoded lines without ``% `` and line end, in order.
        fields: ``{key: value}`` (first occurrence of each key).
        data_start: byte offset of the first binary byte.
    """

    def __init__(self, lines: list[str], data_start: int) -> None:
        self.lines = lines
        self.data_start = data_start
        self.fields: dict[str, str] = {}
        for line in lines:
            key, _, value = line.strip().partition(" ")
            self.fields.setdefault(key, value.strip())

    def encoding(self) -> str | None:
        """``evt2`` / ``evt21`` / ``evt3`` from ``% evt`` or ``% format``, ``None`` when neither says."""
        evt = self.fields.get("evt", "").strip()
        fmt = self.fields.get("format", "").split(";")[0].strip().upper()
        names = {"2.0": "evt2", "2.1": "evt21", "3.0": "evt3", "EVT2": "evt2", "EVT21": "evt21", "EVT3": "evt3"}
        return names.get(evt) or names.get(fmt) or (f"unknown:{evt or fmt}" if evt or fmt else None)

    def is_dat(self) -> bool:
        """True for a DAT header (``Data file containing``, ``Version``, ``Height``/``Width``, no encoding)."""
        return self.encoding() is None and (any(line.startswith("Data file") for line in self.lines)
                                            or "Version" in self.fields or "Height" in self.fields)

    def geometry(self) -> tuple[int, int] | None:
        """(width, height) stated by ``% format ...;width=W;height=H``, ``% geometry WxH`` or
        ``% Width`` / ``% Height``; ``None`` when the header states none. Values are unchecked."""
        opts = dict(part.split("=", 1) for part in self.fields.get("format", "").split(";")[1:] if "=" in part)
        for w, h in ((opts.get("width"), opts.get("height")), (self.fields.get("Width"), self.fields.get("Height"))):
            if w is not None and h is not None:
                return _int(w), _int(h)
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", self.fields.get("geometry", ""))
        return (int(m.group(1)), int(m.group(2))) if m else None

    def camera(self) -> str:
        """The camera as the header names it (plugin name, else sensor or integrator name)."""
        for key in ("plugin_name", "sensor_name", "camera_integrator_name", "integrator_name", "sensor_generation"):
            if self.fields.get(key):
                return self.fields[key]
        return ""

    def named_sensor(self) -> SensorSize | None:
        """Geometry implied by the plugin, sensor name or generation, if any is known."""
        for key in ("plugin_name", "sensor_name", "sensor_generation"):
            name = self.fields.get(key, "").lower().replace("_", "").replace(" ", "")
            if key == "sensor_generation" and name:
                name = "gen" + name
            for fragment, size in SENSOR_SIZES:
                if name and fragment.replace("_", "") in name:
                    return size
        return None


def _int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        return -1


def read_header(path: Path, fd: int, size: int) -> RawHeader:
    """Parse the ``% `` lines at the start of an open file (``fd``, ``size`` bytes).

    A line counts as header only when it is printable text ending in a newline, so a binary word
    that happens to start with ``%`` is not swallowed; ``% end`` closes the header explicitly.

    Raises:
        EventFileError: a header longer than 1 MiB.
    """
    limit = min(size, _MAX_HEADER_BYTES + 1)
    want = min(limit, _FIRST_HEADER_READ)
    while True:
        # Parse what one read gave; read more (up to the limit) only when the header may run
        # past it: it fills the read, or its last line has no newline inside it.
        head = os.pread(fd, want, 0)
        pos = 0
        lines = []
        ended = False
        while pos < len(head) and head[pos:pos + 1] == b"%":
            m = _PRINTABLE.match(head, pos)
            if m is None:
                break
            line = m.group(0)[2:].rstrip(b"\r\n").decode("ascii")
            pos = m.end()
            if pos > _MAX_HEADER_BYTES:
                raise EventFileError(path, "text header longer than 1 MiB", 0)
            if line.strip() == "end":
                ended = True
                break
            lines.append(line)
        cut = pos >= len(head) or (head[pos:pos + 1] == b"%" and head.find(b"\n", pos) < 0)
        if cut and not ended and len(head) > _MAX_HEADER_BYTES:
            raise EventFileError(path, "text header longer than 1 MiB", 0)
        if ended or not cut or len(head) >= limit:
            return RawHeader(lines, pos)
        want = min(limit, want * 16)


def _checked_size(path: Path, size: SensorSize | tuple[int, int] | None, what: str) -> SensorSize | None:
    if size is None:
        return None
    w, h = (size.width, size.height) if isinstance(size, SensorSize) else (int(size[0]), int(size[1]))
    if not (1 <= w <= _MAX_SIDE and 1 <= h <= _MAX_SIDE):
        raise EventFileError(path, f"{what} {w}x{h} outside 1..{_MAX_SIDE}", 0)
    return SensorSize(w, h)


class _PropheseeFile:
    """Open file, header and the reader protocol shared by the RAW and DAT readers."""

    format_name = "Prophesee"

    def __init__(self, path: str | os.PathLike, fd: int | None = None) -> None:
        self.path = path if isinstance(path, Path) else Path(path)
        if fd is None:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except OSError as err:
                raise EventFileError.from_os_error(self.path, err, "open", "recording") from None
        self._fd = fd
        try:
            self.file_size = os.fstat(fd).st_size
        except OSError as err:
            self.close()
            raise EventFileError.from_os_error(self.path, err, "read", "recording") from None

    def _error(self, message: str, offset: int | None = None) -> EventFileError:
        return EventFileError(self.path, message, offset)

    def _blocks(self, item: int, start: int | None = None, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(offset, uint8 view) blocks of whole ``item``-byte units from ``start`` (default
        ``data_start``), read into one reused buffer (each view is valid until the next block is
        asked for); up to byte ``stop`` when given, else to the file's end, raising at a trailing
        partial unit after the last whole block."""
        if self._fd < 0:
            raise self._error("reader is closed")
        block = max(item, _BLOCK_BYTES // item * item)
        pos = self.data_start if start is None else start
        whole_end = self.data_start + (self.file_size - self.data_start) // item * item
        if stop is not None:
            whole_end = min(whole_end, stop)
        buf = np.empty(min(block, max(0, whole_end - pos)), np.uint8)
        while pos < whole_end:
            want = min(block, whole_end - pos)
            got = pread_into(self._fd, buf[:want], pos)
            if got < want:
                raise self._error("file shrank while reading", pos + got)
            yield pos, buf[:want]
            pos += want
        if stop is None and whole_end < self.file_size:
            raise self._error(f"file ends inside a {item}-byte {self._unit} ({self.file_size - whole_end} bytes "
                              "left; truncated?)", whole_end)

    @staticmethod
    def _both(work, errors: list) -> None:
        """``work(1)`` on a helper thread beside ``work(0)`` on this one; then the first fault, in file order."""
        helper = threading.Thread(target=work, args=(1,), name="evstream-decode", daemon=True)
        helper.start()
        work(0)
        helper.join()
        for error in errors:
            if error is not None:
                raise error

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            self.close()


class PropheseeRawReader(_PropheseeFile):
    """Streaming reader of the CD events of a Prophesee RAW file (EVT 2.0, 2.1 or 3.0).

    Args:
        path: the recording (with or without a ``%`` header).
        encoding: ``"evt2"``, ``"evt21"`` or ``"evt3"``; overrides the header's, required when
            the file has no header or the header names none.
        sensor_size: geometry; overrides the header's, required when neither the header nor the
            named sensor gives one.
        header: this file's header as :func:`read_header` parsed it already (``open_reader``
            passes detection's), so it is not read twice.
        fd: a descriptor of ``path`` open for reading (``open_reader`` passes detection's), so
            the file is not opened twice; the reader owns it from then on and closes it.

    Attributes:
        path, encoding, sensor_size, source (camera as named by the header, ``""`` when none),
        header (:class:`RawHeader`), data_start (byte offset of the first word),
        format_name (``"Prophesee RAW EVT 3.0"`` ...), counts (tallies of the words decoded so
        far: ``events``, ``triggers``, ``time_highs``, ``others``, ``continued``, ``dropped``
        = events before the first time base).

    Raises:
        EventFileError: missing or empty file, unknown or missing encoding, missing geometry,
            sizes outside 1..32767.
    """

    _unit = "word"

    def __init__(self, path: str | os.PathLike, *, encoding: str | None = None,
                 sensor_size: SensorSize | tuple[int, int] | None = None, header: RawHeader | None = None,
                 fd: int | None = None) -> None:
        super().__init__(path, fd)
        try:
            self._parse_header(encoding, sensor_size, header)
        except BaseException:
            self.close()
            raise
        self._triggers: list[np.ndarray] = []
        self._state = k.new_state()
        self.counts = {"events": 0, "triggers": 0, "time_highs": 0, "others": 0, "continued": 0, "dropped": 0}

    def _parse_header(self, encoding: str | None, sensor_size, header: RawHeader | None) -> None:
        if self.file_size == 0:
            raise self._error("empty file", 0)
        self.header = header if header is not None else read_header(self.path, self._fd, self.file_size)
        self.data_start = self.header.data_start
        stated = self.header.encoding()
        if encoding is None:
            if stated is None:
                raise self._error("header names no encoding (no '% evt' or '% format' line): pass the encoding "
                                  "(evt2, evt21, evt3)", 0)
            encoding = stated
        if encoding not in ENCODINGS:
            raise self._error(f"unknown Prophesee encoding {encoding.removeprefix('unknown:')!r} (EVT 2.0, 2.1 and "
                              "3.0 are read)", 0)
        self.encoding = encoding
        self.format_name = f"Prophesee RAW {ENCODINGS[encoding][3]}"
        self.source = self.header.camera()
        size = _checked_size(self.path, sensor_size, "sensor size")
        if size is None:
            size = _checked_size(self.path, self.header.geometry(), "header geometry") or self.header.named_sensor()
        if size is None:
            raise self._error("header states no geometry and names no known sensor: pass sensor_size", 0)
        if encoding == "evt3" and (size.width > 2048 or size.height > 2048):
            raise self._error(f"sensor size {size} exceeds EVT 3.0's 11-bit addresses", 0)
        self.sensor_size = size

    @property
    def triggers(self) -> np.ndarray:
        """External trigger events met so far (``TRIGGER_DTYPE [n]``: t µs, id, value)."""
        if not self._triggers:
            return np.empty(0, TRIGGER_DTYPE)
        return np.concatenate(self._triggers)

    def iter_packets(self) -> Iterator[np.ndarray]:
        """CD events, one ``EVENT_DTYPE`` array per decoded block (about 2 MiB of words), in file order.

        Each call restarts from the first word with a fresh decoder state and trigger list.

        Raises:
            EventFileError: at the first bad word, after every event before it.
        """
        dtype, size, kernel, name = ENCODINGS[self.encoding]
        state = self._restart()
        width, height = self.sensor_size.width, self.sensor_size.height
        # One output slot per word: EVT 2.0 never fills it; the vectorised encodings stop when
        # full and resume at the same word, so memory stays bounded by the block.
        for offset, data in self._blocks(size):
            words = data.view(dtype)
            pos = 0
            while True:
                out = np.empty(max(64, len(words)), EVENT_DTYPE)
                trig = np.empty((_TRIGGER_BLOCK, 3), np.int64)
                pos, n, nt, status = kernel(words, pos, k.packed(out), trig, state, width, height)
                self._tally(state, n, nt, trig)
                if n:
                    yield out[:n]
                if status == k.DONE:
                    break
                if status != k.FULL:
                    raise self._word_error(status, state, offset + pos * size, name)

    def read(self) -> np.ndarray:
        """Every CD event as one ``EVENT_DTYPE`` array ``[n]``, decoded straight into it (grown at
        the observed events-per-word rate when vectors need more; trimmed in place at the end).

        Files of 4 MB of words or more on a machine with two or more cores are
        decoded on two threads (:meth:`_read_halves`): the words are then read into memory whole
        (the file's size, beside the output's 16 bytes per event) and the output is allocated at
        its exact size. The result is the same either way (events, triggers, ``counts``, faults).

        Raises:
            EventFileError: at the first bad word (use :meth:`iter_packets` for the prefix).
        """
        dtype, size, kernel, name = ENCODINGS[self.encoding]
        state = self._restart()
        width, height = self.sensor_size.width, self.sensor_size.height
        total = (self.file_size - self.data_start) // size
        if self.encoding in _HALVES and total * size >= _PARALLEL_RAW_BYTES and (os.cpu_count() or 1) >= 2:
            events = self._read_halves(total)
            if events is not None:
                return events
            state = self._restart()
        evt2 = self.encoding == "evt2"
        # EVT 2.0 carries at most one event per word: one slot per word. EVT 2.1 / 3.0 vector words
        # carry up to 32 / 12: the first block is decoded into 1.5 slots per word of it, then the
        # array is sized for the rest of the file at the rate that block showed (_grown), so a
        # vector-dense file is copied once, by a block's worth, and trimmed in place at the end.
        out = np.empty(max(64, total if evt2 else min(total, _BLOCK_BYTES // size) * 3 // 2), EVENT_DTYPE)
        fault = Prefault(out)
        n = 0
        try:
            for offset, data in self._blocks(size):
                words = data.view(dtype)
                pos = 0
                while True:
                    if len(out) - n < 64:
                        out, fault = _grown(out, n, total, (offset - self.data_start) // size + pos, fault)
                    trig = np.empty((_TRIGGER_BLOCK, 3), np.int64)
                    pos, m, nt, status = kernel(words, pos, k.packed(out[n:]), trig, state, width, height)
                    self._tally(state, m, nt, trig)
                    n += m
                    if status == k.DONE:
                        break
                    if status == k.FULL and nt < _TRIGGER_BLOCK:
                        out, fault = _grown(out, n, total, (offset - self.data_start) // size + pos, fault)
                    elif status != k.FULL:
                        raise self._word_error(status, state, offset + pos * size, name)
                if not evt2 and offset == self.data_start and len(words) < total:
                    out, fault = _grown(out, n, total, len(words), fault, floor=0.0)  # at the first block's rate
        finally:
            fault.join()
        out.resize(n, refcheck=False)
        return out

    def _read_halves(self, total: int) -> np.ndarray | None:
        """:meth:`read` of an EVT 2.0, 2.1 or 3.0 file on two threads; None where no word near the
        middle makes a second start possible (the caller then reads on one).

        The second half starts at the first word after the middle from which its own words fix
        every register of the decoder (EVT 2.x: a TIME_HIGH; EVT 3.0: a TIME_HIGH, a TIME_LOW, an
        ADDR_Y and a VECT_BASE_X, :func:`~evstream.io._prophesee_kernels.sync_evt3`), so it
        decodes as one pass from the file's start would. Each thread reads its half into memory
        and counts its events (``count_evt2`` / ``count_evt21`` / ``count_evt3``, which also count the first
        half's time wraps, the one thing the second half cannot see), then the output is
        allocated at the exact size and each thread decodes its half into its own slice, mapping
        (first-touching) the pages it writes. Faults are raised in file order, the first half's first.
        """
        dtype, size, kernel, name = ENCODINGS[self.encoding]
        sync, count = _HALVES[self.encoding]
        width, height = self.sensor_size.width, self.sensor_size.height
        mid = total // 2
        probe = np.empty(min(total - mid, _SYNC_WORDS) * size, np.uint8)
        got = pread_into(self._fd, probe, self.data_start + size * mid) // size * size  # short if it shrank
        found = sync(probe[:got].view(dtype), 0)
        if found[0] < 0 or mid + found[0] >= total:
            return None
        split = mid + found[0]
        head, tail = k.new_state(), k.new_state()
        if self.encoding != "evt3":
            tail[k.TIME_HIGH] = found[1]
        else:
            tail[k.TIME_HIGH], tail[k.TIME_LOW], tail[k.ROW], tail[k.X_BASE], tail[k.VECTOR_P] = found[1:]
            tail[k.HAVE_ROW] = 1
        tail[k.HAVE_TIME] = 1
        spans = ((0, split, head), (split, total, tail))
        words: list[np.ndarray | None] = [None, None]
        counts = [0, 0]
        errors: list[BaseException | None] = [None, None]

        def load(index: int) -> None:
            try:
                first, stop, state = spans[index]
                data = np.empty(size * (stop - first), np.uint8)
                got = pread_into(self._fd, data, self.data_start + size * first)
                if got < len(data):
                    raise self._error("file shrank while reading", self.data_start + size * first + got)
                words[index] = data.view(dtype)
                counts[index] = int(count(words[index], state.copy() if index else state))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, in file order
                errors[index] = exc

        self._both(load, errors)
        tail[k.LOOPS] = head[k.LOOPS]  # the wraps before the second half (count ran head on)
        head[:] = k.new_state()
        out = np.empty(counts[0] + counts[1] + _SPARE, EVENT_DTYPE)  # slack: a vector's spare slots
        starts = (0, counts[0])
        triggers: list[list[np.ndarray]] = [[], []]

        def decode(index: int) -> None:
            try:
                first, _, state = spans[index]
                stop = starts[index] + counts[index]
                view = out[starts[index]:stop] if index == 0 else out[starts[index]:]
                pos, n = 0, 0
                data = words[index]
                while True:
                    trig = np.empty((_TRIGGER_BLOCK, 3), np.int64)
                    # the last vectors (a kernel stops short of a vector's slots): through a scratch buffer
                    spare = len(view) - n < _SPARE
                    dest = np.empty(2 * _SPARE, EVENT_DTYPE) if spare else view[n:]
                    pos, m, nt, status = kernel(data, pos, k.packed(dest), trig, state, width, height)
                    if nt:
                        triggers[index].append(_trigger_rows(trig, nt))
                    if spare and m:
                        if n + m > len(view):
                            raise RuntimeError(f"{self.path}: {name} event count disagrees with the decoder")
                        view[n:n + m].view(np.uint8)[:] = dest[:m].view(np.uint8)  # padding too
                    n += m
                    if status == k.DONE:
                        break
                    if status != k.FULL:
                        raise self._word_error(status, state, self.data_start + size * (first + pos), name)
                if starts[index] + n != stop:
                    raise RuntimeError(f"{self.path}: {name} event count disagrees with the decoder")
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, in file order
                errors[index] = exc

        self._both(decode, errors)
        if size * total < self.file_size - self.data_start:  # as _blocks says it, after every whole word
            raise self._error(f"file ends inside a {size}-byte word ({(self.file_size - self.data_start) % size} "
                              "bytes left; truncated?)", self.data_start + size * total)
        out.resize(counts[0] + counts[1], refcheck=False)
        self._triggers = triggers[0] + triggers[1]
        self.counts["events"] = len(out)
        self.counts["triggers"] = sum(len(t) for t in self._triggers)
        for key, slot in (("time_highs", k.TIME_HIGHS), ("others", k.OTHERS), ("continued", k.CONTINUED),
                          ("dropped", k.DROPPED)):
            self.counts[key] = int(head[slot] + tail[slot])
        self._state = tail
        return out

    def _restart(self) -> np.ndarray:
        self._state = k.new_state()
        self._triggers = []
        self.counts = dict.fromkeys(self.counts, 0)
        return self._state

    def _tally(self, state: np.ndarray, n: int, nt: int, trig: np.ndarray) -> None:
        self.counts["events"] += n
        self.counts["triggers"] += nt
        self.counts["time_highs"] = int(state[k.TIME_HIGHS])
        self.counts["others"] = int(state[k.OTHERS])
        self.counts["continued"] = int(state[k.CONTINUED])
        self.counts["dropped"] = int(state[k.DROPPED])
        if nt:
            self._triggers.append(_trigger_rows(trig, nt))

    def _word_error(self, status: int, state: np.ndarray, offset: int, name: str) -> EventFileError:
        a, b = int(state[k.ERR_A]), int(state[k.ERR_B])
        if status == k.BAD_TYPE:
            return self._error(f"word type 0x{a:X} does not exist in {name} (wrong encoding or damaged data)", offset)
        if status == k.OFF_GEOMETRY:
            return self._error(f"event at x={a}, y={b} outside the {self.sensor_size} sensor", offset)
        return self._error(f"time high goes backwards from {a} to {b} without wrapping", offset)


def _trigger_rows(trig: np.ndarray, nt: int) -> np.ndarray:
    """The first ``nt`` rows of a kernel's trigger block (``int64 [n, 3]``) as ``TRIGGER_DTYPE``."""
    rows = np.empty(nt, TRIGGER_DTYPE)
    rows["t"], rows["id"], rows["value"] = trig[:nt, 0], trig[:nt, 1], trig[:nt, 2]
    return rows


def _grown(out: np.ndarray, n: int, total_words: int, words_done: int, fault: Prefault,
           floor: float = 1.0) -> tuple[np.ndarray, Prefault]:
    """``out`` with its first ``n`` events, resized to what the rest of the file will need at the
    events-per-word rate seen so far (at least ``floor``; plus 10 %), so a vector-dense file is
    copied about once; and the :class:`Prefault` of the new array (``fault``, that of ``out``,
    joined first). The first block's sizing passes ``floor=0``: a sparse file (time and row words
    between few events) then gets no more slots than it needs, since every slot's page is mapped."""
    rate = max(floor, n / max(1, words_done))
    capacity = n + int((total_words - words_done) * rate * 1.1) + 4096
    fault.join()
    grown = np.empty(max(capacity, n + 4096), EVENT_DTYPE)
    fault = Prefault(grown)
    grown[:n].view(np.uint8)[:] = out[:n].view(np.uint8)  # bytes, so the zero padding comes along
    return grown, fault


class DatReader(_PropheseeFile):
    """Streaming reader of a Prophesee DAT file of CD events (``Event2d`` / ``EventCD``, v1 or v2).

    Args:
        path: the recording.
        sensor_size: geometry; overrides ``% Width`` / ``% Height`` (default ATIS 304x240 when
            the header states none).
        header, fd: this file's parsed header and an open descriptor of it (as for the RAW reader).

    Attributes:
        path, sensor_size, version (1 or 2), event_type (0 or 12), source (the ``Data file
        containing`` line), header (:class:`RawHeader`), data_start, format_name.

    Raises:
        EventFileError: missing or empty file, event type not CD, event size not 8, sizes
            outside 1..32767.
    """

    _unit = "event"

    def __init__(self, path: str | os.PathLike, *, sensor_size: SensorSize | tuple[int, int] | None = None,
                 header: RawHeader | None = None, fd: int | None = None) -> None:
        super().__init__(path, fd)
        try:
            self._parse_header(sensor_size, header)
        except BaseException:
            self.close()
            raise

    def _parse_header(self, sensor_size, header: RawHeader | None) -> None:
        if self.file_size == 0:
            raise self._error("empty file", 0)
        self.header = header if header is not None else read_header(self.path, self._fd, self.file_size)
        start = self.header.data_start
        if self.header.lines:
            kind = os.pread(self._fd, 2, start)
            if len(kind) < 2:
                raise self._error("file ends before the DAT event type and size bytes", start)
            self.event_type, event_size = kind[0], kind[1]
            start += 2
        else:
            self.event_type, event_size = 0, 8
        if self.event_type not in (0, 12):
            raise self._error(f"DAT event type {self.event_type} is not CD events (Event2d 0, EventCD 12)",
                              start - 2)
        if event_size != 8:
            raise self._error(f"DAT event size {event_size}, expected 8", start - 1)
        self.data_start = start
        geometry = self.header.geometry()
        version = _int(self.header.fields.get("Version", "-1"))
        self.version = version if version in (1, 2) else (2 if geometry or version > 2 else 1)
        self.format_name = f"Prophesee DAT v{self.version}"
        self.source = next((line for line in self.header.lines if line.startswith("Data file")), "")
        size = _checked_size(self.path, sensor_size, "sensor size")
        if size is None:
            size = _checked_size(self.path, geometry, "header geometry") or _ATIS
        self.sensor_size = size

    def _layout(self) -> tuple[int, int, int, int]:
        """(x mask, y shift, y mask, p shift) of the address word of this version."""
        return (0x3FFF, 14, 0x3FFF, 28) if self.version >= 2 else (0x1FF, 9, 0xFF, 17)

    def _decoded(self, whole: np.ndarray | None = None, first: int = 0, stop: int | None = None,
                 state: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """The events of each block of records ``first:stop`` (default all), decoded into a new
        array per block or, with ``whole``, into its consecutive slices; raises after the block
        holding an event outside the sensor, whose events before that one are handed out first.
        ``state``: the decoder's clock to continue (default a fresh one)."""
        state = k.new_state() if state is None else state
        width, height = self.sensor_size.width, self.sensor_size.height
        done = 0
        start = self.data_start + 8 * first
        for offset, data in self._blocks(8, start, None if stop is None else self.data_start + 8 * stop):
            records = data.view("<u4")
            size = len(records) // 2
            out = np.empty(size, EVENT_DTYPE) if whole is None else whole[done:done + size]
            n, status = k.decode_dat(records, k.packed(out), state, *self._layout(), width, height)
            done += n
            if n:
                yield out[:n]
            if status != k.DONE:
                raise self._error(f"event at x={int(state[k.ERR_A])}, y={int(state[k.ERR_B])} outside the "
                                  f"{self.sensor_size} sensor", offset + 8 * n)

    def iter_packets(self) -> Iterator[np.ndarray]:
        """CD events, one ``EVENT_DTYPE`` array per 2 MiB block, in file order. The 32-bit µs
        counter wraps every 71.6 minutes: a step back of more than half its range is a wrap,
        smaller steps are kept as stored.

        Raises:
            EventFileError: an event outside the sensor or a truncated last event, after every
                event before it.
        """
        return self._decoded()

    def read(self) -> np.ndarray:
        """Every CD event as one ``EVENT_DTYPE`` array ``[n]``, decoded straight into it.

        Raises:
            EventFileError: as :meth:`iter_packets` (use it for the prefix).
        """
        n = (self.file_size - self.data_start) // 8
        whole = np.empty(n, EVENT_DTYPE)
        if n * EVENT_DTYPE.itemsize < _PARALLEL_DAT_BYTES or (os.cpu_count() or 1) < 2:
            fault = Prefault(whole)
            try:
                for _ in self._decoded(whole):
                    pass
            finally:
                fault.join()
            return whole
        # Two halves on two threads (the kernel and pread release the GIL), each writing, and so
        # first-touching, its own half of the output. Records are independent but for the 32-bit
        # clock: the second half continues from the first half's last raw time with no wraps
        # counted, and gets the first half's wraps added afterwards (files > 71.6 min only).
        mid = n // 2
        raw = np.zeros(8, np.uint8)
        pread_into(self._fd, raw, self.data_start + 8 * (mid - 1))
        head, tail = k.new_state(), k.new_state()
        tail[k.TIME_HIGH] = int(raw.view("<u4")[0]) + 1
        errors: list[BaseException | None] = [None, None]

        halves = ((whole[:mid], 0, mid, head), (whole[mid:], mid, None, tail))

        def decode(index: int) -> None:
            try:
                for _ in self._decoded(*halves[index]):
                    pass
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, in file order
                errors[index] = exc

        self._both(decode, errors)
        if head[k.LOOPS]:
            whole["t"][mid:] += int(head[k.LOOPS]) << 32
        return whole
