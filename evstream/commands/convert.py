"""``python main.py convert IN OUT``: any readable recording to AEDAT 4.0 (or AEDAT 3.1).

The input may be any format :func:`evstream.io.open_reader` reads (AEDAT 4.0 / 3.1 / 2.0,
Prophesee RAW EVT 2.0 / 2.1 / 3.0, DAT; ``--format`` and ``--sensor`` for a header-less EVT
stream). Options select and remap events on the way:

- ``--start S --end S``: keep events with ``start <= t - t_first < end`` (seconds after the
  recording's first event, as ``--replay`` counts them). Timestamps are written as stored.
- ``--roi X,Y,W,H``, ``--size WxH``, ``--fit``, ``--downsample``, ``--flip-x/--flip-y``: the binner's
  :class:`~evstream.binning.Geometry` (the same rule the model input follows): each event moves to
  ``(lut_x[x], lut_y[y])`` and events the geometry drops (outside the roi, cropped away) are not
  written. Several sensor pixels may land on one output pixel: every event is kept, none merged.

Conversion is streaming: one packet of the input is in memory at a time (plus the writer's
packet), whatever the recording's length. The output keeps the input's camera name. A damaged
input is converted up to the damage, the output finalised (readable), then the error is reported
(one line, exit 2).
"""

from __future__ import annotations

import argparse
import math
import os
import struct
import sys
import time
from pathlib import Path

import numpy as np

from evstream.errors import ConfigError, EventFileError
from evstream.events import EVENT_DTYPE, SensorSize
from evstream.io import FORMATS, open_reader

__all__ = ["add_arguments", "run", "convert", "Aedat3Writer", "EXAMPLES", "parse_size", "parse_roi", "reader_camera"]

EXAMPLES = """\
examples:
  python main.py convert recording.raw recording.aedat4
  python main.py convert rec.aedat4 part.aedat4 --start 2 --end 5.5
  python main.py convert rec.aedat4 small.aedat4 --roi 80,0,480,480 --size 128x128
  python main.py convert user01_natural.aedat4 user01.aedat        (AEDAT 3.1, by the extension)
  python main.py convert board.bin out.aedat4 --format evt2 --sensor 320x320
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a recording: AEDAT 4.0, 3.1 or 2.0, Prophesee RAW (EVT 2.0, 2.1, 3.0) or DAT")
    parser.add_argument("output", help="file to write (.aedat4, or .aedat for AEDAT 3.1)")
    parser.add_argument("--to", choices=("aedat4", "aedat3"),
                        help="output format (default: aedat3 for a .aedat name, else aedat4)")
    add_input_arguments(parser)
    parser.add_argument("--roi", metavar="X,Y,W,H", help="keep only this sensor rectangle (pixels)")
    parser.add_argument("--size", metavar="WxH", help="output sensor size: downsample the roi (or sensor) to it")
    parser.add_argument("--fit", choices=("crop", "letterbox"), default="crop",
                        help="a roi of another aspect than --size: crop its centre (default) or letterbox it")
    parser.add_argument("--downsample", choices=("area", "integer"), default="area",
                        help="area: any ratio (default); integer: a whole factor, k x k sensor pixels per output pixel")
    parser.add_argument("--flip-x", action="store_true", help="mirror left-right")
    parser.add_argument("--flip-y", action="store_true", help="mirror top-bottom")
    parser.add_argument("--compression", default="lz4", choices=("none", "lz4", "lz4_high", "zstd", "zstd_high"),
                        help="AEDAT 4.0 packet compression (default lz4)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """``--format``, ``--sensor``, ``--start``, ``--end``: shared with ``render``."""
    parser.add_argument("--format", choices=tuple(FORMATS), help="input format instead of detection "
                                                                 "(a header-less EVT stream needs it)")
    parser.add_argument("--sensor", metavar="WxH", help="input sensor size (RAW, DAT, AEDAT 2.0/3.1; "
                                                        "a header-less EVT stream needs it)")
    parser.add_argument("--start", type=float, metavar="S", help="from S seconds after the first event")
    parser.add_argument("--end", type=float, metavar="S", help="up to S seconds after the first event (exclusive)")


def parse_size(text: str | None, option: str) -> SensorSize | None:
    """``WxH`` -> SensorSize; ConfigError naming ``option`` otherwise."""
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and 0 < int(p) <= 32767 for p in parts):
        raise ConfigError(f"{option}: expected WxH in pixels (1 ... 32767), got {text[:40]!r}")
    return SensorSize(int(parts[0]), int(parts[1]))


def parse_roi(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    parts = text.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--roi: expected X,Y,W,H in pixels, got {text[:40]!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def trim_bounds(start: float | None, end: float | None) -> tuple[int, int | None]:
    """(start_us, end_us or None) from seconds; ConfigError for a bad pair."""
    for name, value in (("--start", start), ("--end", end)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise ConfigError(f"{name}: expected seconds >= 0 from the recording's start, got {value:g}")
    start_us = 0 if start is None else int(round(start * 1e6))
    end_us = None if end is None else int(round(end * 1e6))
    if end_us is not None and end_us <= start_us:
        raise ConfigError(f"--end: {end:g} s is not after --start ({start or 0:g} s)")
    return start_us, end_us


def reader_camera(reader) -> str:
    """The camera name a reader found in its file (``""`` when none)."""
    return str(getattr(reader, "camera_name", None) or getattr(reader, "source", "") or "")


class Aedat3Writer:
    """Streaming AEDAT 3.1 polarity writer in cAER's layout (the layout of
    :func:`evstream.io.aedat3.write_aedat3`, appended packet by packet).

    AEDAT 3.1 states no sensor size: readers take it from the camera named on ``#Source``. When
    ``source`` names no camera of that size, a camera of ``sensor_size`` from
    :data:`~evstream.io.aedat3.SOURCE_SIZES` is named instead; with none, ``source`` is kept and
    :attr:`needs_sensor` says a reader must be given the size (``--sensor WxH``).
    """

    def __init__(self, path: str | os.PathLike, sensor_size: SensorSize, source: str = "", packet_events: int = 8192):
        from evstream.io.aedat3 import _END_HEADER, _PACKET, MAGIC, SOURCE_SIZES, _source_size

        self.path = Path(path)
        self._packet = _PACKET
        self.packet_events = int(packet_events)
        if _source_size(source) != sensor_size:
            source = next((name for name, size in SOURCE_SIZES.items() if size == sensor_size), source or "evstream")
        self.source = source
        self.needs_sensor = _source_size(source) != sensor_size
        stamp = time.strftime("%Y-%m-%d %H:%M:%S (TZ%z)")
        header = [MAGIC.decode(), "#Format: RAW", f"#Source 1: {source}", f"#Start-Time: {stamp}", _END_HEADER.decode()]
        try:
            self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as err:
            raise EventFileError(self.path, f"cannot create: {err.strerror}") from None
        self._file.write("".join(line + "\r\n" for line in header).encode("ascii"))

    def write(self, events: np.ndarray) -> None:
        if not len(events):
            return
        if int(events["t"].min()) < 0:
            raise EventFileError(self.path, "AEDAT 3.1 cannot store negative timestamps")
        overflow = events["t"] >> 31
        cuts = set(range(0, len(events), self.packet_events)) | set((np.flatnonzero(np.diff(overflow)) + 1).tolist())
        bounds = sorted(cuts) + [len(events)]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            part = events[lo:hi]
            n = len(part)
            words = np.empty((n, 2), dtype="<u4")
            words[:, 0] = (1 | (part["p"].astype(np.uint32) & 1) << 1 | (part["y"].astype(np.uint32) & 0x7FFF) << 2
                           | (part["x"].astype(np.uint32) & 0x7FFF) << 17)
            words[:, 1] = part["t"] & 0x7FFFFFFF
            self._file.write(self._packet.pack(1, 1, 8, 4, int(overflow[lo]), n, n, n) + words.tobytes())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    to: str | None = None,
    format: str | None = None,
    sensor_size: SensorSize | None = None,
    start_us: int = 0,
    end_us: int | None = None,
    roi: tuple[int, int, int, int] | None = None,
    out_size: SensorSize | tuple[int, int] | None = None,
    fit: str = "crop",
    downsample: str = "area",
    flip_x: bool = False,
    flip_y: bool = False,
    compression: str = "lz4",
) -> tuple[dict, EventFileError | None]:
    """Convert ``src`` to ``dst`` packet by packet (see the module docstring).

    Returns:
        (summary, error): ``events_in`` (read), ``events_out`` (written), ``sensor`` (output
        ``[W, H]``), ``camera``, ``format``; and the input's damage met while reading (the
        output holds everything before it), else ``None``.

    Raises:
        EventFileError: unreadable input, output that cannot be created.
        ConfigError: a bad geometry or trim.
    """
    from evstream.io.aedat4 import Aedat4Writer

    src, dst = Path(src), Path(dst)
    if to is None:
        to = "aedat3" if dst.suffix.lower() == ".aedat" else "aedat4"
    if dst.exists() and src.exists() and os.path.samefile(src, dst):
        raise ConfigError(f"{dst}: output is the input file")
    error = None
    events_in = events_out = 0
    with open_reader(src, format=format, sensor_size=sensor_size) as reader:
        sensor = reader.sensor_size
        lut_x = lut_y = None
        out_sensor = sensor
        if roi is not None or out_size is not None or flip_x or flip_y:
            from evstream.binning import Geometry

            geometry = Geometry(sensor, out_size, mode=fit, downsample=downsample, flip_x=flip_x, flip_y=flip_y, roi=roi)
            lut_x, lut_y = geometry.lut_x, geometry.lut_y
            out_sensor = geometry.out_size
        camera = reader_camera(reader)
        if to == "aedat3":
            writer = Aedat3Writer(dst, out_sensor, camera)
        else:
            writer = Aedat4Writer(dst, out_sensor, compression=compression, camera_name=camera or "evstream")
        try:
            t_first = None
            for events in reader.iter_packets():
                if not len(events):
                    continue
                events_in += len(events)
                t = events["t"]
                if t_first is None:
                    t_first = int(t[0])
                lo, hi = t_first + start_us, None if end_us is None else t_first + end_us
                if hi is not None and int(t.min()) >= hi:
                    break  # recordings are in time order: nothing later is wanted
                keep = t >= lo
                if hi is not None:
                    keep &= t < hi
                if lut_x is not None:
                    nx = lut_x[events["x"]]
                    ny = lut_y[events["y"]]
                    keep &= (nx >= 0) & (ny >= 0)
                if not keep.any():
                    continue
                out = events[keep]
                if lut_x is not None:
                    out = np.ascontiguousarray(out, dtype=EVENT_DTYPE)
                    out["x"] = nx[keep]
                    out["y"] = ny[keep]
                writer.write(out)
                events_out += len(out)
        except EventFileError as err:
            error = err
        finally:
            writer.close()
    summary = {"input": str(src), "output": str(dst), "format": to, "events_in": events_in, "events_out": events_out,
               "sensor": [out_sensor.width, out_sensor.height], "camera": camera}
    if to == "aedat3" and writer.needs_sensor:
        summary["note"] = (f"AEDAT 3.1 names no sensor size; no cAER camera is {out_sensor.width}x{out_sensor.height}: "
                           f"read it back with --sensor {out_sensor.width}x{out_sensor.height}")
    return summary, error


def run(args: argparse.Namespace) -> int:
    start_us, end_us = trim_bounds(args.start, args.end)
    out = Path(args.output)
    if out.exists() and not args.force:
        raise ConfigError(f"{out}: exists (pass --force to replace it)")
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder")
    try:
        summary, error = convert(
            args.input, out, to=args.to, format=args.format, sensor_size=parse_size(args.sensor, "--sensor"),
            start_us=start_us, end_us=end_us, roi=parse_roi(args.roi), out_size=parse_size(args.size, "--size"),
            fit=args.fit, downsample=args.downsample, flip_x=args.flip_x, flip_y=args.flip_y,
            compression=args.compression)
    except (MemoryError, OverflowError, struct.error) as err:
        raise EventFileError(args.input, f"cannot be converted ({type(err).__name__})") from None
    print(f"{summary['output']}: {summary['events_out']:,} of {summary['events_in']:,} events read, "
          f"{summary['sensor'][0]}x{summary['sensor'][1]}, {FORMATS[summary['format']]}"
          + (f", camera {summary['camera']}" if summary["camera"] else ""), flush=True)
    if "note" in summary:
        print(f"note: {summary['note']}", file=sys.stderr)
    if error is not None:
        raise error
    return 0
