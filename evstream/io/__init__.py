"""File formats: readers and writers of event recordings and DV network framing.

``read_events(path)`` and ``open_reader(path)`` pick the format by the file's magic bytes and
header, not its extension: ``#!AER-DAT4.0`` (:mod:`evstream.io.aedat4`), ``#!AER-DAT3.1``
(:mod:`evstream.io.aedat3`), ``#!AER-DAT2.0`` (:mod:`evstream.io.aedat2`), or a ``%`` header
naming a Prophesee RAW encoding (EVT 2.0 / 2.1 / 3.0) or a DAT file (:mod:`evstream.io.prophesee`).
``format=`` names the format instead (a header-less EVT stream needs it, and ``sensor_size=``).
Readers stream packet by packet; see each module for its damage policy (every fault is an
:class:`~evstream.errors.EventFileError` naming file and byte offset).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from evstream.errors import EventFileError
from evstream.events import SensorSize
from evstream.io.aedat2 import Aedat2Reader
from evstream.io.aedat3 import Aedat3Reader
from evstream.io.aedat4 import Aedat4Reader, Aedat4Writer, write_aedat4
from evstream.io.prophesee import DatReader, PropheseeRawReader, RawHeader, read_header

__all__ = ["read_events", "open_reader", "detect_format", "FORMATS", "Aedat4Reader", "Aedat4Writer", "Aedat3Reader",
           "Aedat2Reader", "PropheseeRawReader", "DatReader", "write_aedat4"]

_MAGICS = {b"#!AER-DAT4.0": "aedat4", b"#!AER-DAT3.1": "aedat3", b"#!AER-DAT2.0": "aedat2"}

# Format name -> what it is, as detect_format returns it and ``format=`` accepts it.
FORMATS = {"aedat4": "AEDAT 4.0", "aedat3": "AEDAT 3.1", "aedat2": "AEDAT 2.0", "evt2": "Prophesee RAW EVT 2.0",
           "evt21": "Prophesee RAW EVT 2.1", "evt3": "Prophesee RAW EVT 3.0", "dat": "Prophesee DAT"}


def detect_format(path: str | os.PathLike) -> str:
    """A key of :data:`FORMATS` from the first bytes (and, for ``%`` headers, the header) of ``path``.

    Raises:
        EventFileError: missing path, directory, empty file, unknown magic or header.
    """
    return _detect(path)[0]


def _detect(path: str | os.PathLike) -> tuple[str, RawHeader | None]:
    """:func:`detect_format`'s answer and the ``%`` header it parsed (None for other formats)."""
    fmt, header, fd = _detect_open(path)
    os.close(fd)
    return fmt, header


def _detect_open(path: str | os.PathLike) -> tuple[str, RawHeader | None, int]:
    """:func:`_detect`'s answer and the descriptor it read through, still open (the caller's to
    close); closed when detection raises."""
    path = path if isinstance(path, Path) else Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as err:
        raise EventFileError.from_os_error(path, err, "open", "recording") from None
    try:
        return (*_detect_fd(path, fd), fd)
    except BaseException:
        os.close(fd)
        raise


def _detect_fd(path: Path, fd: int) -> tuple[str, RawHeader | None]:
    try:
        head = os.pread(fd, 16, 0)
    except OSError as err:
        raise EventFileError.from_os_error(path, err, "read", "recording") from None
    header = read_header(path, fd, os.fstat(fd).st_size) if head.startswith(b"%") else None
    if not head:
        raise EventFileError(path, "empty file", 0)
    for magic, name in _MAGICS.items():
        if head.startswith(magic):
            return name, None
    if head.startswith(b"#!AER-DAT"):
        version = head[9:12].decode("ascii", "replace")
        raise EventFileError(path, f"AEDAT {version} is not supported (AEDAT 4.0, 3.1 and 2.0 are)", 0)
    if header is not None:
        encoding = header.encoding()
        if encoding in FORMATS:
            return encoding, header
        if header.is_dat():
            return "dat", header
        what = (f"an unknown Prophesee encoding {encoding.removeprefix('unknown:')!r}" if encoding
                else "no encoding (no % evt or % format line)")
        raise EventFileError(path, f"'%' header names {what}: EVT 2.0, 2.1 and 3.0 are read (format= evt2, "
                                   "evt21 or evt3 overrides)", 0)
    if head.lstrip(b"\xef\xbb\xbf").replace(b" ", b"").lower().startswith(b"class,start"):
        raise EventFileError(path, "a DVS128 Gesture label file (class,startTime_usec,endTime_usec), not a recording: "
                                   "pass the recording it labels", 0)
    raise EventFileError(path, f"unknown format (first bytes {head[:12]!r}; expected #!AER-DAT4.0/3.1/2.0 or a "
                               "Prophesee '%' header; header-less EVT streams need format=)", 0)


Reader = Aedat4Reader | Aedat3Reader | Aedat2Reader | PropheseeRawReader | DatReader


def open_reader(path: str | os.PathLike, *, format: str | None = None,
                sensor_size: SensorSize | tuple[int, int] | None = None, strict: bool = False) -> Reader:
    """Reader of the right format for ``path`` (a context manager with ``sensor_size``, ``source``,
    ``iter_packets()``, ``read()`` and ``close()``).

    Args:
        path: the recording.
        format: a key of :data:`FORMATS` instead of detection (required for header-less EVT streams).
        sensor_size: geometry overriding (RAW, DAT, AEDAT 2.0) or completing (AEDAT 3.1) the
            file's; AEDAT 4.0 files always state theirs.
        strict: an event outside the declared sensor or with a polarity other than 0/1 raises
            instead of being dropped and counted in the reader's ``counts`` (AEDAT 4.0 and 3.1,
            through :class:`~evstream.io.screen.EventScreen`; the AEDAT 2.0 and Prophesee
            readers check addresses as they decode and always raise at an off-sensor event).

    Raises:
        EventFileError: unreadable file, unknown format, or a ``sensor_size`` AEDAT 4.0 cannot take.
    """
    path = path if isinstance(path, Path) else Path(path)  # once: pathlib's parse is a good part of opening a small file
    if format is not None:
        fmt, header, fd = format, None, None
    else:  # a Prophesee reader goes on with detection's descriptor and header (one open, one parse)
        fmt, header, fd = _detect_open(path)
        if fmt not in ("evt2", "evt21", "evt3", "dat"):
            os.close(fd)
            fd = None
    if fmt in ("evt2", "evt21", "evt3"):
        return PropheseeRawReader(path, encoding=fmt, sensor_size=sensor_size, header=header, fd=fd)
    if fmt == "dat":
        return DatReader(path, sensor_size=sensor_size, header=header, fd=fd)
    if fmt == "aedat2":
        return Aedat2Reader(path, sensor_size=sensor_size)
    if fmt == "aedat3":
        return Aedat3Reader(path, sensor_size=None if sensor_size is None else SensorSize(*tuple(sensor_size)),
                            strict=strict)
    if fmt != "aedat4":
        raise EventFileError(path, f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    if sensor_size is not None:
        raise EventFileError(path, "AEDAT 4.0 files state their sensor size; sensor_size cannot override it")
    return Aedat4Reader(path, strict=strict)


def read_events(path: str | os.PathLike, *, format: str | None = None,
                sensor_size: SensorSize | tuple[int, int] | None = None, strict: bool = False) -> np.ndarray:
    """Every event of the event stream of a recording in any format of :data:`FORMATS`, in file order.

    Events outside the declared sensor or with a polarity other than 0/1 are dropped (see
    :func:`open_reader`); ``strict=True`` makes the first of them an error naming file and event.

    Returns:
        ``EVENT_DTYPE`` array ``[n]`` (t in µs).

    Raises:
        EventFileError: unreadable or damaged file (names file and byte offset).
    """
    with open_reader(path, format=format, sensor_size=sensor_size, strict=strict) as reader:
        return reader.read()
