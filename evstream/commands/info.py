"""``python main.py info FILE [--json]``: describe a recording without loading it whole.

Prints the format, every stream (AEDAT 4.0: its packets, elements — events, frames, IMU samples,
triggers — and time range; streams of unknown types and packets of undeclared streams are listed,
not fatal), sensor, camera, duration, event count, mean and peak event rate
(peak over 10 ms bins), ON fraction and how often timestamps step backwards. The file is read
packet by packet. A damaged recording is described up to the damage, then the error is raised
(one line on stderr, exit code 2).
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import numpy as np

from evstream.errors import EventFileError
from evstream.io import FORMATS, detect_format, open_reader
from evstream.io.aedat4 import Aedat4Reader

__all__ = ["add_arguments", "run", "describe", "EXAMPLES", "PEAK_BIN_US"]

EXAMPLES = """\
examples:
  python main.py info recording.aedat4
  python main.py info user01_natural.aedat --json
"""

PEAK_BIN_US = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a recording: AEDAT 4.0, 3.1 or 2.0, Prophesee RAW (EVT 2.0, 2.1, 3.0) or DAT "
                                     "(a DVS128 Gesture _labels.csv is described as such)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


class _Stats:
    """Running statistics over event packets (nothing proportional to the recording is kept
    except one counter per non-empty 10 ms bin)."""

    def __init__(self) -> None:
        self.count = 0
        self.on = 0
        self.first: int | None = None
        self.last: int | None = None
        self.t_min: int | None = None
        self.t_max: int | None = None
        self.backward_steps = 0
        self.bins: dict[int, int] = {}

    def add(self, events: np.ndarray) -> None:
        if len(events) == 0:
            return
        t = events["t"]
        if self.last is not None and t[0] < self.last:
            self.backward_steps += 1
        self.backward_steps += int(np.count_nonzero(t[1:] < t[:-1]))
        self.first = int(t[0]) if self.first is None else self.first
        self.last = int(t[-1])
        lo, hi = int(t.min()), int(t.max())
        self.t_min = lo if self.t_min is None else min(self.t_min, lo)
        self.t_max = hi if self.t_max is None else max(self.t_max, hi)
        self.count += len(events)
        self.on += int(np.count_nonzero(events["p"]))
        # Sorting the packet's bins costs its length, whatever time it spans (a bincount over
        # the span asked for PiB when a packet's timestamps jump).
        bins, counts = np.unique(t // PEAK_BIN_US, return_counts=True)
        for b, n in zip(bins.tolist(), counts.tolist(), strict=True):
            self.bins[b] = self.bins.get(b, 0) + n


def describe(path: str) -> tuple[dict, EventFileError | None]:
    """Facts about a recording, and the error that stopped reading (``None`` if it read whole).

    Raises:
        EventFileError: the file cannot be opened at all.
    """
    fmt = detect_format(path)
    stats = _Stats()
    error = None
    with open_reader(path) as reader:
        facts: dict = {"file": str(path), "format": FORMATS.get(fmt, fmt),
                       "sensor": [reader.sensor_size.width, reader.sensor_size.height]}
        if isinstance(reader, Aedat4Reader):
            facts["camera"] = reader.camera_name
            facts["compression"] = reader.compression
            facts["data_table"] = reader.data_table is not None
            declared = {s.id: s for s in reader.streams}
            try:
                summary = reader.stream_summary()
            except EventFileError:  # damaged: the streams as declared; iteration below reports the damage
                summary = [{"id": s.id, "type": s.type_identifier, "name": s.name, "declared": True, "packets": None,
                            "elements": None, "t_first": None, "t_last": None} for s in reader.streams]
            facts["streams"] = []
            for row in summary:
                s = declared.get(row["id"])
                facts["streams"].append({**row, "size": None if s is None or s.sensor_size is None else
                                         [s.sensor_size.width, s.sensor_size.height], "source": s.source if s else ""})
            facts["skipped_packets"] = sum(row["packets"] or 0 for row in summary if row["id"] != reader.event_stream_id)
        else:
            facts["camera"] = reader.source
            facts["streams"] = [{"id": 1, "type": "polarity", "name": "events", "size": facts["sensor"],
                                 "source": reader.source}]
        packets = 0
        try:
            for events in reader.iter_packets():
                packets += 1
                stats.add(events)
        except EventFileError as err:
            error = err
        if not isinstance(reader, Aedat4Reader):
            facts["streams"][0].update({"packets": packets, "elements": stats.count, "t_first": stats.t_min,
                                        "t_last": stats.t_max})
    duration = 0 if stats.count == 0 else stats.t_max - stats.t_min
    facts.update({
        "events": stats.count,
        "first_t_us": stats.first,
        "last_t_us": stats.last,
        "duration_s": duration / 1e6,
        "mean_rate_ev_s": stats.count / (duration / 1e6) if duration > 0 else None,
        "peak_rate_ev_s": max(stats.bins.values()) * 1e6 / PEAK_BIN_US if stats.bins else None,
        "on_fraction": stats.on / stats.count if stats.count else None,
        "backward_steps": stats.backward_steps,
        "dropped": reader.screen.counts() if hasattr(reader, "screen") else None,
        "complete": error is None,
    })
    return facts, error


def _text(facts: dict) -> str:
    def rate(v):
        return "-" if v is None else f"{v / 1e6:.3f} Mev/s"

    lines = [
        f"file         {facts['file']}",
        f"format       {facts['format']}" + (f", {facts['compression']}" if "compression" in facts else ""),
        f"camera       {facts['camera'] or '-'}",
        f"sensor       {facts['sensor'][0]}x{facts['sensor'][1]}",
        "streams      " + f"\n{'':13}".join(_stream_line(s) for s in facts["streams"]),
        f"events       {facts['events']:,}",
        f"first t      {facts['first_t_us'] if facts['first_t_us'] is not None else '-'} µs",
        f"duration     {facts['duration_s']:.6f} s",
        f"mean rate    {rate(facts['mean_rate_ev_s'])}",
        f"peak rate    {rate(facts['peak_rate_ev_s'])} (10 ms bins)",
        "ON fraction  " + ("-" if facts["on_fraction"] is None else f"{facts['on_fraction']:.3f}"),
        f"backwards    {facts['backward_steps']} timestamp steps back (kept as stored)",
    ]
    if facts.get("dropped") is not None:
        d = facts["dropped"]
        lines.append(f"dropped      {d['off_sensor']:,} outside the sensor, {d['bad_polarity']:,} with polarity "
                     "not 0/1 (not counted above)")
    if "data_table" in facts:
        lines.append(f"data table   {'yes' if facts['data_table'] else 'no (packets scanned)'}")
    if not facts["complete"]:
        lines.append("incomplete   damaged: figures cover the readable part only")
    return "\n".join(lines)


_ELEMENT_NAMES = {"EVTS": "events", "FRME": "frames", "IMUS": "IMU samples", "TRIG": "triggers", "polarity": "events"}


def _stream_line(s: dict) -> str:
    """``id type name [WxH]: packets, elements, time range`` of one stream."""
    text = f"{s['id']} {s['type']} {s['name'] or '-'}" + (f" {s['size'][0]}x{s['size'][1]}" if s.get("size") else "")
    if not s.get("declared", True):
        text += " (not declared in the info node: skipped)"
    if s.get("packets") is None:
        return text
    text += f": {s['packets']:,} packets"
    if s.get("elements") is None:
        return text + (" (unknown type: skipped)" if s.get("declared", True) else "")
    text += f", {s['elements']:,} {_ELEMENT_NAMES.get(s['type'], 'elements')}"
    if s.get("t_first") is not None:
        text += f", {s['t_first']} .. {s['t_last']} µs ({(s['t_last'] - s['t_first']) / 1e6:.6f} s)"
    return text


def is_label_file(path: str) -> bool:
    """True when ``path`` starts like a DVS128 Gesture ``_labels.csv`` (header ``class,startTime_usec,...``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return False
    return head.lstrip(b"\xef\xbb\xbf").replace(b" ", b"").lower().startswith(b"class,start")


def describe_labels(path: str) -> dict:
    """Facts about a label file: segments, classes, span, and which recording beside it it labels."""
    from evstream.io.aedat3 import read_labels
    from evstream.labels import DVS_GESTURE_CLASSES

    labels = read_labels(path)
    p = Path(path)
    stem = p.name[: -len("_labels.csv")] if p.name.endswith("_labels.csv") else p.stem
    beside = [str(q) for q in sorted(p.parent.glob(f"{glob.escape(stem)}.*")) if q.suffix in (".aedat4", ".aedat")]
    return {
        "file": str(path),
        "format": "DVS128 Gesture label file",
        "segments": len(labels),
        "classes": sorted({DVS_GESTURE_CLASSES[int(c)] for c in labels["label"]}),
        "first_t_us": int(labels["t_start"].min()) if len(labels) else None,
        "last_t_us": int(labels["t_end"].max()) if len(labels) else None,
        "recordings": beside,
    }


def run(args: argparse.Namespace) -> int:
    if is_label_file(args.file):
        facts = describe_labels(args.file)
        if args.json:
            print(json.dumps(facts), flush=True)
        else:
            span = "-" if facts["first_t_us"] is None else f"{facts['first_t_us']} .. {facts['last_t_us']} µs"
            rec = ", ".join(facts["recordings"]) or "none beside it"
            print(f"file         {facts['file']}\n"
                  f"format       {facts['format']}: labels, not events - pass the recording it labels\n"
                  f"segments     {facts['segments']} ({', '.join(facts['classes'])})\n"
                  f"span         {span}\n"
                  f"recording    {rec}", flush=True)
        return 0
    try:
        facts, error = describe(args.file)
    except (MemoryError, OverflowError) as err:  # a hostile header the readers did not bound: one line, exit 2
        raise EventFileError(args.file, f"cannot be described ({type(err).__name__})") from None
    print(json.dumps(facts) if args.json else _text(facts), flush=True)
    if error is not None:
        raise error
    return 0
