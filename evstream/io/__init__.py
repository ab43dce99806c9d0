"""File formats: readers and writers of event recordings (AEDAT 4.0, AEDAT 3.1) and DV network framing.

``read_events(path)`` and ``open_reader(path)`` pick the format by the file's magic bytes, not
its extension: ``#!AER-DAT4.0`` (:mod:`evstream.io.aedat4`) or ``#!AER-DAT3.1``
(:mod:`evstream.io.aedat3`). Readers stream packet by packet; see each module for its damage
policy (every fault is an :class:`~evstream.errors.EventFileError` naming file and byte offset).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from evstream.errors import EventFileError
from evstream.io.aedat3 import Aedat3Reader
from evstream.io.aedat4 import Aedat4Reader, Aedat4Writer, write_aedat4

__all__ = ["read_events", "open_reader", "detect_format", "Aedat4Reader", "Aedat4Writer", "Aedat3Reader",
           "write_aedat4"]

_MAGICS = {b"#!AER-DAT4.0": "aedat4", b"#!AER-DAT3.1": "aedat3"}


def detect_format(path: str | os.PathLike) -> str:
    """``"aedat4"`` or ``"aedat3"`` from the first bytes of ``path``.

    Raises:
        EventFileError: missing path, directory, empty file or unknown magic.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as err:
        raise EventFileError.from_os_error(path, err, "open", "recording") from None
    if not head:
        raise EventFileError(path, "empty file", 0)
    for magic, name in _MAGICS.items():
        if head.startswith(magic):
            return name
    if head.startswith(b"#!AER-DAT"):
        version = head[9:12].decode("ascii", "replace")
        raise EventFileError(path, f"AEDAT {version} is not supported (AEDAT 4.0 and 3.1 are)", 0)
    raise EventFileError(path, f"unknown format (first bytes {head[:12]!r}; expected #!AER-DAT4.0 or #!AER-DAT3.1)", 0)


def open_reader(path: str | os.PathLike) -> Aedat4Reader | Aedat3Reader:
    """Reader of the right format for ``path`` (a context manager with ``sensor_size``,
    ``iter_packets()``, ``read()`` and ``close()``)."""
    if detect_format(path) == "aedat4":
        return Aedat4Reader(path)
    return Aedat3Reader(path)


def read_events(path: str | os.PathLike) -> np.ndarray:
    """Every event of the event stream of an ``.aedat4`` or AEDAT 3.1 file, in file order.

    Returns:
        ``EVENT_DTYPE`` array ``[n]`` (t in µs).

    Raises:
        EventFileError: unreadable or damaged file (names file and byte offset).
    """
    with open_reader(path) as reader:
        return reader.read()
