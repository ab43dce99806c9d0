"""Exception families of evstream: one per concern, each message names what failed.

The CLI turns any :class:`EvstreamError` into one line on stderr and a non-zero exit, so an
expected fault (a bad file, a missing camera, a malformed checkpoint) never reaches the user
as a traceback. Messages name the file and byte offset, the device, or the field.
"""

from __future__ import annotations

import os

__all__ = [
    "EvstreamError",
    "EventFileError",
    "EventFormatError",
    "SourceError",
    "ModelError",
    "ConfigError",
    "ProtocolError",
]


class EvstreamError(Exception):
    """Base of every expected fault; ``str(err)`` is a complete one-line message."""


class EventFileError(EvstreamError):
    """A recording cannot be read (or written): names the file and, when known, the byte offset.

    Args:
        path: the file.
        message: what is wrong, without the path.
        offset: byte offset of the damage, or ``None`` when the fault is not at a position.
    """

    def __init__(self, path: str | os.PathLike, message: str, offset: int | None = None) -> None:
        self.path = os.fspath(path)
        self.offset = offset
        self.reason = message
        where = f"{self.path}" if offset is None else f"{self.path}: byte {offset}"
        super().__init__(f"{where}: {message}")

    @classmethod
    def from_os_error(cls, path: str | os.PathLike, err: OSError, action: str = "open", what: str = "recording") -> EventFileError:
        """The one-line error for a file that cannot be opened (missing, a directory, no permission)."""
        if isinstance(err, FileNotFoundError):
            return cls(path, "no such file")
        if isinstance(err, IsADirectoryError):
            return cls(path, f"is a directory, not a {what}")
        return cls(path, f"cannot {action}: {err.strerror or err}")


class EventFormatError(EvstreamError, ValueError):
    """An in-memory event array is not usable (wrong dtype, missing field, ...)."""


class SourceError(EvstreamError):
    """An event source failed: no such camera, camera unplugged, connection refused, ..."""


class ModelError(EvstreamError):
    """A model or checkpoint does not fit: wrong architecture, class count, input shape."""


class ConfigError(EvstreamError, ValueError):
    """An option or parameter is out of range; the message names the option."""


class ProtocolError(EvstreamError):
    """A published-stream or control message is malformed; names the field."""
