"""Event sources behind one interface: ``open_source(spec)``.

Specs:

- a path to ``.aedat4`` or ``.aedat`` (AEDAT 3.1): file replay (paced or as fast as possible)
- ``camera:dvxplorer``, ``camera:davis346``, ``camera:dvs128`` or ``camera:<serial>``: live iniVation camera
- ``camera:prophesee`` or ``camera:prophesee:<serial>``: live Prophesee camera (OpenEB's Python bindings)
- ``tcp://host:port``: DV's network event stream
- ``synthetic``: endless rendered gestures through the DVS emulator
- ``webcam:N``: OpenCV camera N through the DVS emulator

Each kind lives in its own module, imported only when asked for, so a missing optional
dependency (dv-processing, a camera) only matters to the spec that needs it.
"""

from __future__ import annotations

import os

from evstream.errors import SourceError
from evstream.sources.base import EventSource

__all__ = ["EventSource", "open_source"]


def open_source(spec: str | os.PathLike, **options) -> EventSource:
    """Open an event source from a spec string (see the module docstring).

    Args:
        spec: file path, ``camera:...``, ``tcp://host:port``, ``synthetic`` or ``webcam:N``.
        **options: passed to the source's constructor (e.g. ``speed``, ``loop`` for files).

    Raises:
        SourceError: unknown spec, or the source cannot be opened (message names it).
        EventFileError: a file that cannot be read.
    """
    text = os.fspath(spec)
    if text.startswith("camera:"):
        from evstream.sources.camera import open_camera

        return open_camera(text.split(":", 1)[1], **options)
    if text.startswith("tcp://"):
        from evstream.sources.network import NetworkSource

        return NetworkSource(text, **options)
    if text == "synthetic" or text.startswith("synthetic:"):
        from evstream.sources.synthetic import SyntheticSource

        return SyntheticSource(**options)
    if text.startswith("webcam:"):
        from evstream.sources.webcam import WebcamSource

        index = text.split(":", 1)[1]
        if not index.isdigit():
            raise SourceError(f"{text}: webcam index must be a number, e.g. webcam:0")
        return WebcamSource(int(index), **options)
    from evstream.sources.file import FileSource

    return FileSource(text, **options)
