"""Mutation fuzzing of every reader: AEDAT 4.0, 3.1 and 2.0, Prophesee RAW EVT 2.0 / 2.1 / 3.0 and DAT.

Base files: the real samples in ``../shared/data`` (when present: the ``.aedat4``, ``.raw``,
``.dat`` and AEDAT 2.0 ones) and small recordings written here: AEDAT 4.0 in every compression,
AEDAT 3.1, AEDAT 2.0 in the DVS128 and DAVIS layouts (APS, IMU and external words, a 32-bit
timestamp wrap), RAW EVT 2.0 / 2.1 / 3.0 (vectors, triggers, time-high wraps) and DAT v1 / v2
(a 32-bit wrap), built with the test suite's independent encoders (``tests/io``). Each case
applies one seeded mutation, writes the file to a RAM folder and reads it through four entry
points: ``open_reader(...).iter_packets()``, ``read_events`` (one preallocated read), ``info``'s
``describe`` and a replay as fast as possible (``FileSource(speed=None)`` into a ``Binner``).

Byte mutations (every format): bit flips, truncation, a burst of random bytes, inserted or
deleted bytes. AEDAT 4.0 / 3.1: an edited size/offset/id field, a swapped codec, and structural
mutations of AEDAT 4.0 files (issue 17), re-encoded so the file stays well formed around them:
``time jump`` (events after a point moved 2^20 ... 2^40 µs ahead, a packet moved back before the
first, or one event at 2^62 µs), ``sensor size`` (sizeX/sizeY in the IOHeader set to 0, -1,
2^31, 10^20, Unicode digits, 32767, 32768, ...; the FileDataTable's offsets shifted with the
header) and ``inflated counts`` (FileDataTable numElements multiplied up to 2^40 or set to
2^62). AEDAT 2.0, RAW and DAT (issue 14, "Bad input"): ``truncate`` also to zero bytes, to the
header alone and into the first word; ``edit field`` (one word or record set to a random value
of a random word type); ``header lie`` (another encoding, geometry or DAT version stated, the
``% end`` marker moved, DAT event type/size bytes, the jAER chip class, another format's
header or magic over the data, no header at all); ``time backwards`` (a time-high word, or one
or all later timestamps, stepped back by 1 ... 2^32 µs); ``off geometry`` (an event word's x or
y set beyond the declared sensor).

Outcomes: ``clean`` (read to the end; ``identical`` when the events equal the original's),
``documented error`` (EventFileError; ``with true prefix`` when the packets before it are exactly
the original's first events), and ``OTHER`` — any other exception from any entry point (or an
evstream error of more than one line or not naming the file, a truncation whose events are not
a prefix of the original's, or a replay emitting more windows than the binner's gap rule allows),
which is a bug: each is printed with its case so it can be replayed (``--replay BASE:SEED``).
A case that takes more than 300 s of CPU time is a HANG (an OTHER); so is a
batch of cases that does not finish within ``--hang-s`` wall seconds (a kernel that never returns
to Python; the cases being read are printed). Counts are printed per format and
per mutation.

Usage: ``python bench/fuzz_io.py [--cases 100000] [--workers 2]``; ``--quick`` runs every
mutation on every base file twice (the test suite's smoke run).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import collections  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402

from evstream.binning import Binner  # noqa: E402
from evstream.commands.info import describe  # noqa: E402
from evstream.errors import EventFileError, EvstreamError  # noqa: E402
from evstream.events import EVENT_DTYPE, SensorSize  # noqa: E402
from evstream.io import codec, detect_format, open_reader, read_events  # noqa: E402
from evstream.io.aedat3 import write_aedat3  # noqa: E402
from evstream.io.aedat4 import Aedat4Reader, write_aedat4  # noqa: E402
from evstream.io.flatbuf import (  # noqa: E402
    DataTableEntry,
    decode_file_data_table,
    encode_file_data_table,
    encode_io_header,
    root_table,
)
from evstream.sources.file import FileSource  # noqa: E402
from tests.io.test_aedat2 import (  # noqa: E402
    DAVIS346_CHIP,
    DVS128_CHIP,
    aedat2_header,
    davis_addresses,
    dvs128_addresses,
    records,
)
from tests.io.test_prophesee import canonical, encode_dat, encode_evt2, encode_evt3, encode_evt21, header  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MUTATIONS = ("bit flips", "truncate", "edit field", "swap codec", "random burst", "insert/delete",
             "time jump", "sensor size", "inflated counts")
STRUCTURAL = MUTATIONS[6:]
# Mutations of the word formats (AEDAT 2.0, RAW, DAT), chosen by seed like MUTATIONS.
WORD_MUTATIONS = ("bit flips", "truncate", "edit field", "header lie", "random burst", "insert/delete",
                  "time backwards", "off geometry")
FORMATS = ("aedat4", "aedat3", "aedat2", "evt2", "evt21", "evt3", "dat")
_STEP_US, _STEPS = 10_000, 4  # the replay's binner: 40 ms windows


def _events(n: int, seed: int, sensor: SensorSize) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(1_000_000, 1_500_000, n))
    ev["x"] = rng.integers(0, sensor.width, n)
    ev["y"] = rng.integers(0, sensor.height, n)
    ev["p"] = rng.integers(0, 2, n)
    return ev


def build_bases(folder: Path) -> dict[str, Path]:
    """Base recordings by name: small synthetic ones always, the real samples when present."""
    bases = {}
    sensor = SensorSize(128, 128)
    for compression in ("none", "lz4", "lz4_high", "zstd", "zstd_high"):
        path = folder / f"small_{compression}.aedat4"
        write_aedat4(path, _events(1_200, 1, sensor), sensor, compression, packet_events=300)
        bases[path.name] = path
    path = folder / "small_notable.aedat4"
    write_aedat4(path, _events(900, 2, sensor), sensor, "lz4", packet_events=200)
    data = bytearray(path.read_bytes())
    table = struct.unpack_from("<q", data, 14 + 4 + 36)[0]
    struct.pack_into("<q", data, 14 + 4 + 36, -1)  # no FileDataTable: packets are scanned
    path.write_bytes(bytes(data[:table]))
    bases[path.name] = path
    path = folder / "small.aedat"
    events = _events(1_500, 3, sensor)
    events["t"] += (2 << 31) - 1_250_000  # packets on both sides of an eventTSOverflow step
    write_aedat3(path, events, packet_events=250)
    bases[path.name] = path
    bases.update(build_word_bases(folder))
    for sample in sorted(SHARED.glob("*")):
        if sample.suffix in (".aedat4", ".raw", ".dat", ".aedat"):
            bases[sample.name] = sample
    return bases


def build_word_bases(folder: Path) -> dict[str, Path]:
    """Small AEDAT 2.0, RAW EVT 2.0 / 2.1 / 3.0 and DAT v1 / v2 recordings, written with the test
    suite's encoders (which are independent of the readers)."""
    bases = {}
    vga, hd = SensorSize(640, 480), SensorSize(1280, 720)
    runs = _events(300, 7, vga)  # rows of neighbouring events at one time: vector words
    runs["t"] = np.repeat(np.sort(runs["t"][:10]), 30)
    runs["y"] = np.repeat(runs["y"][:10], 30)
    runs["x"] = np.repeat(runs["x"][:10] % 560, 30) + np.tile(np.arange(0, 60, 2), 10)
    runs["p"] = np.repeat(runs["p"][:10], 30)
    dense = canonical(np.concatenate([_events(1_200, 8, vga), runs]))
    for encoding, line, t0 in (("evt2", "evt 2.0", (1 << 34) - 250_000), ("evt21", "evt 2.1", (1 << 34) - 250_000),
                               ("evt3", "evt 3.0", (1 << 24) - 250_000)):
        events = dense.copy()
        events["t"] += t0 - 1_000_000  # across the time-high counter's wrap
        triggers = [(int(events["t"][5]), 1, 1), (int(events["t"][700]), 1, 0)]
        path = folder / f"small_{encoding}.raw"
        words = {"evt2": encode_evt2, "evt21": encode_evt21, "evt3": encode_evt3}[encoding](events, triggers)
        path.write_bytes(header(line, "geometry 640x480", "plugin_name fuzz") + words)
        bases[path.name] = path
    for version, sensor in ((1, SensorSize(304, 240)), (2, hd)):
        events = _events(1_500, 9 + version, sensor)
        events["t"] += (1 << 32) - 1_250_000
        path = folder / f"small_v{version}.dat"
        geometry = (sensor.width, sensor.height) if version == 2 else None
        path.write_bytes(encode_dat(events, version, geometry=geometry))
        bases[path.name] = path
    events = _events(1_500, 11, SensorSize(128, 128))
    events["t"] += (1 << 32) - 1_250_000
    path = folder / "small_dvs128.aedat2"
    path.write_bytes(aedat2_header(DVS128_CHIP) + records(dvs128_addresses(events), events["t"]))
    bases[path.name] = path
    sensor = SensorSize(346, 260)
    events = _events(1_500, 12, sensor)
    addresses, stamps = list(davis_addresses(events, sensor)), list(events["t"])
    for i, a in enumerate([0x80000000 | 5 << 12 | 0x3FF, 0x80000400 | 9 << 22, 0x80000C00 | 0x12, 0x400] * 4):
        addresses.insert(50 + 90 * i, a)
        stamps.insert(50 + 90 * i, stamps[50 + 90 * i])
    path = folder / "small_davis346.aedat2"
    path.write_bytes(aedat2_header(DAVIS346_CHIP, "\n") + records(addresses, stamps))
    bases[path.name] = path
    return bases


def read_all(path: Path, threads: int) -> tuple[list[np.ndarray], EventFileError | None]:
    got = []
    try:
        reader = Aedat4Reader(path, threads=threads) if path.suffix == ".aedat4" else open_reader(path)
        with reader:
            for packet in reader.iter_packets():
                if packet.dtype != EVENT_DTYPE:
                    raise AssertionError(f"packet dtype {packet.dtype}")
                got.append(np.array(packet))
    except EventFileError as err:
        text = str(err)
        if "\n" in text or not text.startswith(str(path)):
            raise AssertionError(f"badly formed error message {text!r}") from err
        return got, err
    return got, None


def _fields(data: bytes, aedat4: bool) -> list[tuple[int, str]]:
    """(offset, struct format) of size/offset/id fields worth editing."""
    fields = []
    if aedat4:
        n = struct.unpack_from("<I", data, 14)[0]
        fields += [(14, "<I"), (18, "<I"), (18 + 28, "<i"), (18 + 36, "<q")]
        pos, end = 18 + n, len(data)
        table = struct.unpack_from("<q", data, 18 + 36)[0] if len(data) >= 62 else -1
        end = table if 0 <= table <= len(data) else end
        while pos + 8 <= end and len(fields) < 200:
            fields += [(pos, "<i"), (pos + 4, "<i")]
            size = struct.unpack_from("<i", data, pos + 4)[0]
            if size < 0:
                break
            pos += 8 + size
    else:
        pos = data.index(b"#!END-HEADER") + len(b"#!END-HEADER\r\n")
        while pos + 28 <= len(data) and len(fields) < 200:
            fields += [(pos + k, "<i") for k in (4, 8, 12, 16, 20)] + [(pos, "<h")]
            esize, _, _, capacity = struct.unpack_from("<iiii", data, pos + 4)
            pos += 28 + esize * capacity
    return fields


def _split_aedat4(data: bytes) -> tuple[int, str, int, bytes, list[DataTableEntry] | None]:
    """(compression code, info XML, dataTablePosition, packet bytes, table rows or None) of a file."""
    n = struct.unpack_from("<I", data, 14)[0]
    header = root_table(data[18:18 + n], b"IOHE")
    code, position, xml = header.scalar(0, "<i", 0), header.scalar(1, "<q", -1), header.string(2)
    end = position if position >= 0 else len(data)
    rows = decode_file_data_table(codec.decompress(code, data[position:])) if position >= 0 else None
    return code, xml, position, data[18 + n:end], rows


def _join_aedat4(code: int, xml: str, packets: bytes, rows: list[DataTableEntry] | None) -> bytes:
    """A file from its parts; table offsets are given relative to the first packet byte."""
    head = encode_io_header(code, xml, -1)  # its length does not depend on the position
    head = encode_io_header(code, xml, -1 if rows is None else 18 + len(head) + len(packets))
    start = 18 + len(head)
    out = b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(head)) + head + packets
    if rows is not None:
        shifted = [DataTableEntry(r.byte_offset + start, r.stream_id, r.size, r.num_elements, r.t_start, r.t_end)
                   for r in rows]
        out += codec.compress(code, encode_file_data_table(shifted))
    return out


_SIZES = ["0", "-1", "1", "32767", "32768", "65536", "2147483648", "4294967296", "100000000000000000000",
          "\u0661\u0662\u0668", " 128", "12a", "", "1e3"]


def mutate_structure(data: bytes, name: str, kind: str, truth: np.ndarray, rng) -> tuple[bytes, str]:
    """A structural mutation (time jump, sensor size, inflated counts) of an AEDAT 4.0 file."""
    code, xml, position, packets, rows = _split_aedat4(data)
    first = 18 + struct.unpack_from("<I", data, 14)[0]
    relative = None if rows is None else [
        DataTableEntry(r.byte_offset - first, r.stream_id, r.size, r.num_elements, r.t_start, r.t_end) for r in rows]
    if kind == "sensor size":
        axis = "sizeX" if rng.random() < 0.5 else "sizeY"
        value = _SIZES[int(rng.integers(0, len(_SIZES)))]
        new_xml, n = re.subn(rf'(key="{axis}" type="int">)[^<]*(<)', rf"\g<1>{value}\g<2>", xml, count=1)
        return _join_aedat4(code, new_xml if n else xml, packets, relative), f"sensor size {axis}={value!r}"
    if kind == "inflated counts":
        if not relative:
            return data, "inflated counts (no table)"
        factor = [2**10, 2**20, 2**30, 2**40][int(rng.integers(0, 4))]
        hit = rng.random(len(relative)) < 0.5
        hit[int(rng.integers(0, len(relative)))] = True
        inflated = [DataTableEntry(r.byte_offset, r.stream_id, r.size,
                                   (2**62 if factor == 2**40 and k % 2 else r.num_elements * factor) if h else r.num_elements,
                                   r.t_start, r.t_end) for k, (r, h) in enumerate(zip(relative, hit, strict=True))]
        return _join_aedat4(code, xml, packets, inflated), f"inflated counts x{factor}"
    # time jump: rewrite the events with evstream's writer in the file's compression
    events = truth.copy()
    sensor = SensorSize(int(events["x"].max(initial=0)) + 1, int(events["y"].max(initial=0)) + 1)
    size_match = [int(v) for v in re.findall(r'"size[XY]" type="int">(\d+)<', xml)[:2]]
    if len(size_match) == 2:
        sensor = SensorSize(*size_match)
    packet_events = max(1, len(events) // 8)
    variant = int(rng.integers(0, 3))
    if variant == 0 and len(events) > 1:
        at = int(rng.integers(1, len(events)))
        jump = 1 << int(rng.integers(20, 41))
        events["t"][at:] += jump
        label = f"time jump +2^{jump.bit_length() - 1} us at event {at}"
    elif variant == 1 and len(events) > 2 * packet_events:
        back = events["t"][-packet_events:]
        events["t"][-packet_events:] = int(events["t"][0]) - 1 - int(back[-1] - back[0]) + (back - back[0])
        label = "time jump: last packet before the first"
    else:
        events["t"][-1] = 1 << 62
        label = "time jump: last event at 2^62 us"
    compression = codec.COMPRESSION_NAMES[code].lower()
    folder = Path(_STATE.get("folder", tempfile.gettempdir()))
    path = folder / f"jump_{os.getpid()}.aedat4"
    write_aedat4(path, events, sensor, compression, packet_events=packet_events)
    return path.read_bytes(), label


def mutate(data: bytes, name: str, seed: int, truth: np.ndarray | None = None,
           meta: dict | None = None) -> tuple[bytes, str]:
    """One seeded mutation of a base file; ``meta`` (from :func:`word_meta`) for AEDAT 2.0, RAW and DAT."""
    rng = np.random.default_rng(seed)
    if meta is not None:
        kind = WORD_MUTATIONS[seed % len(WORD_MUTATIONS)]
        if kind not in ("bit flips", "random burst", "insert/delete"):
            return mutate_words(data, meta, kind, rng)
    else:
        kind = MUTATIONS[seed % len(MUTATIONS)]
    aedat4 = name.endswith(".aedat4")
    out = bytearray(data)
    if not out:
        return data, kind
    if kind in STRUCTURAL:
        if aedat4 and truth is not None:
            return mutate_structure(data, name, kind, truth, rng)
        kind = "edit field"
    if kind == "swap codec" and not aedat4:
        kind = "edit field"
    if kind == "bit flips":
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(0, len(out)))
            out[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == "truncate":
        out = out[:int(rng.integers(0, len(out)))]
    elif kind == "edit field":
        at, fmt = _fields(data, aedat4)[int(rng.integers(0, len(_fields(data, aedat4))))]
        lo, hi = {"<I": (0, 2**32 - 1), "<i": (-(2**31), 2**31 - 1), "<h": (-(2**15), 2**15 - 1),
                  "<q": (-(2**63), 2**63 - 1)}[fmt]
        special = [lo, hi, 0, -1 if lo < 0 else 1, 1, 8, 28, 16, len(data), len(data) + 1]
        value = special[int(rng.integers(0, len(special)))] if rng.random() < 0.5 else int(rng.integers(lo, hi))
        struct.pack_into(fmt, out, at, max(lo, min(hi, value)))
        kind = f"edit field @{at}={value}"
    elif kind == "swap codec":
        code = int(rng.integers(-2, 7))
        struct.pack_into("<i", out, 18 + 28, code)
        kind = f"swap codec -> {code}"
    elif kind == "random burst":
        i = int(rng.integers(0, len(out)))
        burst = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        out[i:i + len(burst)] = burst
    else:
        i = int(rng.integers(0, len(out)))
        if rng.random() < 0.5:
            del out[i:i + int(rng.integers(1, 32))]
        else:
            out[i:i] = rng.integers(0, 256, int(rng.integers(1, 32)), dtype=np.uint8).tobytes()
    return bytes(out), kind


# -- AEDAT 2.0, RAW and DAT ---------------------------------------------------------------------

# Word layouts: numpy dtype of one word (or record), and per encoding the word-type field and the
# types of time highs and of events with (x or base) and y fields as (shift, bits).
_WORD = {"evt2": "<u4", "evt21": "<u8", "evt3": "<u2", "dat": "<u4", "aedat2": ">u4"}
_TYPE_SHIFT = {"evt2": 28, "evt21": 60, "evt3": 12}
_TIME_HIGH = {"evt2": (0x8, 0, 28), "evt21": (0x8, 32, 28), "evt3": (0x8, 0, 12)}
_ADDRESS = {"evt2": {0: ((11, 11), (0, 11)), 1: ((11, 11), (0, 11))},
            "evt21": {0: ((43, 11), (32, 11)), 1: ((43, 11), (32, 11))},
            "evt3": {0: (None, (0, 11)), 2: ((0, 11), None), 3: ((0, 11), None)}}
_LIED_HEADERS = {
    "evt2": header("evt 2.0", "geometry 640x480"), "evt21": header("evt 2.1", "geometry 640x480"),
    "evt3": header("evt 3.0", "geometry 1280x720"), "metavision": header("format EVT3;height=720;width=1280", "end"),
    "dat v2": header("Data file containing EventCD events.", "Version 2", "Height 720", "Width 1280") + bytes([12, 8]),
    "dat v1": header("Data file containing Event2d events.", "Version 1") + bytes([0, 8]),
    "aedat2 dvs128": aedat2_header(DVS128_CHIP), "aedat2 davis": aedat2_header(DAVIS346_CHIP),
    "aedat4 magic": b"#!AER-DAT4.0\r\n", "aedat3 magic": b"#!AER-DAT3.1\r\n", "aedat 2.1 magic": b"#!AER-DAT2.1\r\n",
    "none": b"",
}
_UTF8 = ("utf-8", "surrogateescape")
_GEOMETRIES = ["0x0", "1x1", "-1x5", "32767x32767", "32768x10", "2049x10", "10x2049", "65536x65536", "abc",
               "640x", "99999999999999999999x1", "\u0664\u0668\u0660x640"]


def word_meta(path: Path) -> dict:
    """What the word mutations need of a base file: format, data start, sensor, layout."""
    fmt = detect_format(path)
    with open_reader(path) as reader:
        meta = {"format": fmt, "data_start": reader.data_start, "sensor": reader.sensor_size}
        meta["layout"] = getattr(reader, "layout", None)
        meta["version"] = getattr(reader, "version", None)
    meta["word"] = np.dtype(_WORD[fmt]).itemsize
    meta["record"] = 8 if fmt in ("dat", "aedat2") else meta["word"]
    return meta


def _lie_about_header(data: bytes, meta: dict, rng) -> tuple[bytes, str]:
    fmt, start = meta["format"], meta["data_start"]
    head, body = data[:start], data[start:]
    choice = int(rng.integers(0, 6))
    text = head.decode(*_UTF8)  # and back: the file's bytes kept as they were, new text (digits) in UTF-8
    if choice == 0 or (fmt == "aedat2" and choice < 4):
        name = list(_LIED_HEADERS)[int(rng.integers(0, len(_LIED_HEADERS)))]
        return _LIED_HEADERS[name] + body, f"header lie: {name} header over {fmt} data"
    if fmt == "aedat2":
        chips = ["ch.unizh.ini.jaer.chip.retina.DVS128", "eu.seebetter.ini.chips.davis.Davis346B",
                 "eu.seebetter.ini.chips.davis.DAVIS240C", "eu.seebetter.ini.chips.davis.Davis640", "no.such.Chip", ""]
        chip = chips[int(rng.integers(0, len(chips)))]
        lied, n = re.subn(r"# AEChip: [^\r\n]*", f"# AEChip: {chip}" if chip else "#", text, count=1)
        if choice == 5:
            lied = text.replace("\n#", "\n", 1)  # a header line without its '#'
            return lied.encode(*_UTF8) + body, "header lie: a header line without '#'"
        return (lied if n else text + f"# AEChip: {chip}\r\n").encode(*_UTF8) + body, f"header lie: chip {chip!r}"
    if fmt == "dat" and choice in (1, 2):
        if choice == 1 and len(head) >= 2:
            value = [0, 12, 1, 8, 255][int(rng.integers(0, 5))]
            at = len(head) - 2 + int(rng.integers(0, 2))
            out = bytearray(data)
            out[at] = value
            return bytes(out), f"header lie: DAT {'type' if at == len(head) - 2 else 'size'} byte {value}"
        version = ["0", "1", "2", "3", "-1", "x"][int(rng.integers(0, 6))]
        lied, n = re.subn(r"% Version [^\n]*", f"% Version {version}", text, count=1)
        return (lied if n else f"% Version {version}\n" + text).encode(*_UTF8) + body, f"header lie: Version {version}"
    if choice == 1:
        names = ["evt 2.0", "evt 2.1", "evt 3.0", "evt 4.0", "evt 1.0", "evt", "format EVT21;height=480;width=640"]
        line = names[int(rng.integers(0, len(names)))]
        lied, n = re.subn(r"% (evt|format) [^\n]*", f"% {line}", text, count=1)
        return (lied if n else f"% {line}\n" + text).encode(*_UTF8) + body, f"header lie: % {line}"
    if choice in (2, 3):
        size = _GEOMETRIES[int(rng.integers(0, len(_GEOMETRIES)))]
        sensor = meta["sensor"]
        if rng.random() < 0.4:  # a plausible geometry smaller than the data's
            size = f"{max(1, sensor.width // 2)}x{max(1, sensor.height // 2)}"
        if fmt == "dat":
            w, _, h = size.partition("x")
            lied = re.sub(r"% (Height|Width) [^\n]*\n", "", text)
            return f"% Height {h}\n% Width {w}\n{lied}".encode(*_UTF8) + body, f"header lie: DAT {size}"
        lied, n = re.subn(r"% geometry [^\n]*", f"% geometry {size}", text, count=1)
        return (lied if n else f"% geometry {size}\n" + text).encode(*_UTF8) + body, f"header lie: geometry {size}"
    if choice == 4:
        lines = text.splitlines(keepends=True)
        at = int(rng.integers(0, len(lines) + 1))
        return "".join(lines[:at] + ["% end\n"] + lines[at:]).encode(*_UTF8) + body, f"header lie: % end at line {at}"
    return body, "header lie: header removed"


def _word_indices(words: np.ndarray, fmt: str, types) -> np.ndarray:
    kinds = (words >> np.array(_TYPE_SHIFT[fmt], words.dtype)).astype(np.int64)
    return np.flatnonzero(np.isin(kinds, list(types)))


def mutate_words(data: bytes, meta: dict, kind: str, rng) -> tuple[bytes, str]:
    """A mutation of an AEDAT 2.0, RAW or DAT file that knows its words (see WORD_MUTATIONS)."""
    fmt, start, record = meta["format"], meta["data_start"], meta["record"]
    n_records = (len(data) - start) // record
    out = bytearray(data)
    if kind == "truncate":
        r = rng.random()
        if r < 0.1:
            return b"", "truncate to zero bytes"
        if r < 0.2:
            return data[:start], "truncate to the header"
        if r < 0.3 and n_records:
            cut = start + record * int(rng.integers(0, n_records)) + int(rng.integers(1, record))
            return data[:cut], f"truncate inside the record at {cut}"
        return data[:int(rng.integers(0, len(data)))], "truncate"
    if kind == "header lie":
        return _lie_about_header(data, meta, rng)
    if not n_records:
        return data[:int(rng.integers(0, len(data)))], "truncate (no records)"
    body = np.frombuffer(out, _WORD[fmt], count=n_records * record // meta["word"], offset=start).copy()
    sensor = meta["sensor"]
    if kind == "edit field":
        i = int(rng.integers(0, len(body)))
        bits = 8 * meta["word"]
        if fmt in _TYPE_SHIFT:
            shift = _TYPE_SHIFT[fmt]
            value = int(rng.integers(0, 16)) << shift | int(rng.integers(0, 1 << min(shift, 62)))
        else:
            value = [0, (1 << bits) - 1, 1 << (bits - 1), int(rng.integers(0, 1 << bits))][int(rng.integers(0, 4))]
        body[i] = value
        label = f"edit field: word {i} = 0x{value:X}"
    elif kind == "time backwards":
        if fmt in _TIME_HIGH:
            typ, shift, nbits = _TIME_HIGH[fmt]
            highs = _word_indices(body, fmt, [typ])
            if not len(highs):
                return data, "time backwards (no time-high word)"
            i = int(highs[int(rng.integers(min(1, len(highs) - 1), len(highs)))])
            old = (int(body[i]) >> shift) & ((1 << nbits) - 1)
            new = max(0, old - (1 << int(rng.integers(0, nbits))))
            body[i] = (int(body[i]) & ~(((1 << nbits) - 1) << shift)) | new << shift
            label = f"time backwards: time high {old} -> {new} at word {i}"
        else:
            stamps = body[1::2] if fmt == "aedat2" else body[0::2]
            i = int(rng.integers(0, len(stamps)))
            back = 1 << int(rng.integers(0, 33))
            every = rng.random() < 0.5
            sl = slice(i, None) if every else slice(i, i + 1)
            stamps[sl] = (stamps[sl].astype(np.int64) - back) & 0xFFFFFFFF
            label = f"time backwards: {'records from' if every else 'record'} {i} -{back} us"
    else:  # off geometry
        w, h = sensor.width, sensor.height
        if fmt in _ADDRESS:
            events = _word_indices(body, fmt, _ADDRESS[fmt])
            if not len(events):
                return data, "off geometry (no event word)"
            i = int(events[int(rng.integers(0, len(events)))])
            typ = (int(body[i]) >> _TYPE_SHIFT[fmt]) & 0xF
            fields = [f for f in _ADDRESS[fmt][typ] if f is not None]
            axis = int(rng.integers(0, len(fields)))
            (shift, nbits), limit = fields[axis], (w if _ADDRESS[fmt][typ][0] == fields[axis] else h)
            if limit >= 1 << nbits:
                return data, "off geometry (field cannot exceed the sensor)"
            value = int(rng.integers(limit, 1 << nbits))
            body[i] = (int(body[i]) & ~(((1 << nbits) - 1) << shift)) | value << shift
            label = f"off geometry: word {i} {'xy'[axis] if fmt != 'evt3' else 'xy'[typ == 0]}={value}"
        elif fmt == "dat":
            x_bits, y_shift, y_bits = (14, 14, 14) if meta["version"] == 2 else (9, 9, 8)
            i = int(rng.integers(0, len(body) // 2))
            word = int(body[2 * i + 1])
            if rng.random() < 0.5 and w < 1 << x_bits:
                word = (word & ~((1 << x_bits) - 1)) | int(rng.integers(w, 1 << x_bits))
                label = f"off geometry: record {i} x"
            elif h < 1 << y_bits:
                word = (word & ~(((1 << y_bits) - 1) << y_shift)) | int(rng.integers(h, 1 << y_bits)) << y_shift
                label = f"off geometry: record {i} y"
            else:
                return data, "off geometry (field cannot exceed the sensor)"
            body[2 * i + 1] = word
        else:  # AEDAT 2.0: raw addresses count from the far edge, so a raw value >= the size is off
            if meta["layout"] != "davis":
                return data, "off geometry (dvs128 addresses cannot exceed 128x128)"
            dvs = np.flatnonzero((body[0::2] & 0x80000400) == 0)
            if not len(dvs):
                return data, "off geometry (no DVS record)"
            i = int(dvs[int(rng.integers(0, len(dvs)))])
            word = int(body[2 * i])
            if rng.random() < 0.5:
                word = (word & ~(0x3FF << 12)) | int(rng.integers(w, 1 << 10)) << 12
            else:
                word = (word & ~(0x1FF << 22)) | int(rng.integers(h, 1 << 9)) << 22
            body[2 * i] = word
            label = f"off geometry: record {i}"
    out[start:start + body.nbytes] = body.tobytes()
    return bytes(out), label


_STATE: dict = {}


def _init(bases: dict[str, str], folder: str) -> None:
    _STATE["bases"] = {}
    for name, path in bases.items():
        data = Path(path).read_bytes()
        got, err = read_all(Path(path), 0)
        assert err is None, err
        truth = np.concatenate(got) if got else np.zeros(0, EVENT_DTYPE)
        fmt = detect_format(path)
        meta = None if fmt in ("aedat4", "aedat3") else word_meta(Path(path))
        _STATE["bases"][name] = (data, truth, fmt, meta)
    _STATE["names"] = sorted(_STATE["bases"])
    signal.signal(signal.SIGPROF, _over_cpu_budget)
    _STATE["folder"] = folder


def _raw_halves(path: Path) -> str | None:
    """With ``--raw-halves``: a RAW file's ``read()`` on two threads (forced whatever its size) against
    one thread: the same events, tallies and triggers, or the same error at the same offset."""
    from evstream.io import prophesee

    results, default = [], prophesee._PARALLEL_RAW_BYTES
    for threshold in (1 << 60, 0):
        prophesee._PARALLEL_RAW_BYTES = threshold
        try:
            with open_reader(path) as reader:
                if not isinstance(reader, prophesee.PropheseeRawReader):
                    return None
                events = reader.read()
                results.append((events.tobytes(), dict(reader.counts), reader.triggers.tobytes()))
        except EvstreamError as err:
            results.append((str(err), getattr(err, "offset", None)))
        finally:
            prophesee._PARALLEL_RAW_BYTES = default
    if results[0] != results[1]:
        one, two = (r[0][:80] if isinstance(r[0], str) else f"{len(r[0]) // 16} events" for r in results)
        return f"two-thread read differs from one thread: {two} vs {one}"
    return None


def _other_entry_points(path: Path, refused: collections.Counter) -> str | None:
    """``read_events``, ``describe`` and a replay as fast as possible into a Binner; a bug found, else
    None. Counts the entry points that refused the file with a documented error in ``refused``."""
    if _STATE.get("raw_halves"):
        problem = _raw_halves(path)
        if problem:
            return problem
    for what, call in (("read_events", lambda: read_events(path)), ("info", lambda: describe(path)),
                       ("replay", lambda: _replay(path))):
        try:
            problem = call() if what == "replay" else (call(), None)[1]
        except EvstreamError as err:
            text = str(err)
            if "\n" in text or str(path) not in text:
                return f"{what}: badly formed error message {text!r}"
            refused[what] += 1
            continue
        except Exception:  # noqa: BLE001 - this is what the fuzzer looks for
            return f"{what}: {traceback.format_exc(limit=6)}"
        if problem:
            return f"{what}: {problem}"
    return None


def _replay(path: Path) -> str | None:
    """Replay as fast as possible; a problem when it emits more windows than the sensor time of its
    events and of its chunks allows under the binner's gap rule (a jump ahead over ``max_gap_us``
    is not tiled with windows, one back over ``reset_us`` starts afresh): what a timestamp jump
    tiled with empty chunks or windows would break."""
    with FileSource(path, speed=None) as source:
        binner = Binner(source.sensor_size, (32, 32), _STEP_US, _STEPS)
        windows = chunks = spans_us = 0
        times = []
        for chunk in source:
            chunks += 1
            windows += len(binner.push(chunk))
            spans_us += min(max(0, chunk.t_end - chunk.t_start), binner.max_gap_us)
            if len(chunk.events):
                times.append(chunk.events["t"].astype(np.int64))
            if chunks > 1_000_000:
                return f"more than 1,000,000 chunks (last {chunk.t_start} ... {chunk.t_end} us)"
    busy_us = restarts = 0
    t = np.concatenate(times) if times else np.zeros(0, np.int64)
    while len(t):
        high = np.maximum.accumulate(t)
        back = np.flatnonzero(t[1:] < high[:-1] - binner.reset_us)
        cut = int(back[0]) + 1 if len(back) else len(t)
        busy_us += int(np.minimum(np.diff(high[:cut].astype(np.float64)), binner.max_gap_us).sum())
        restarts += 1
        t = t[cut:]
    # An event before its chunk's start (a flipped timestamp inside a packet) can make the binner
    # cover a stretch twice: windows up to the jump, a reset, the stretch again; hence the 2.
    allowed = 2 * (busy_us + spans_us) // (_STEP_US * _STEPS) + 2 * restarts + chunks + 16
    if windows > allowed:
        return (f"{windows:,} windows for {busy_us:,} us of sensor time near events and {spans_us:,} us "
                f"of chunks ({allowed:,} allowed)")
    return None


class _CaseTimeout(BaseException):
    """A case used more than CASE_CPU_S of CPU time (a BaseException: no reader swallows it)."""


# CPU seconds a case may take; more is a HANG. Most cases take milliseconds; the slowest legitimate
# one seen, EVT 2.0 words under an AEDAT 2.0 DVS128 header (random timestamps over ~4.3 h), makes
# the replay's binner close ~390 k windows: 10-30 s.
CASE_CPU_S = 300


def _over_cpu_budget(signum, frame) -> None:
    raise _CaseTimeout


def run_case(seed: int) -> tuple[str, str, str | None, str, str]:
    """(outcome, case, detail of a bug or None, mutation family, format of the base) of one case.

    A case that uses more than :data:`CASE_CPU_S` of this process's CPU time (not wall time, which
    a loaded machine stretches) is a HANG, reported as OTHER."""
    names = _STATE["names"]
    name = names[seed % len(names)]
    data, truth, fmt, meta = _STATE["bases"][name]
    signal.setitimer(signal.ITIMER_PROF, CASE_CPU_S)
    try:
        outcome, case, detail, family = _run_case(seed, name, data, truth, meta)
    except _CaseTimeout:
        outcome, case, detail, family = "OTHER", f"{name}:{seed}", f"HANG: more than {CASE_CPU_S} s of CPU", "hang"
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    return outcome, case, detail, family, fmt


def _run_case(seed: int, name: str, data: bytes, truth: np.ndarray, meta: dict | None) -> tuple[str, str, str | None, str]:
    mutated, kind = mutate(data, name, seed // len(_STATE["names"]), truth, meta)
    # What this worker is reading now, for the HANG report.
    Path(_STATE["folder"], f"now_{os.getpid()}.txt").write_text(f"{name}:{seed} ({kind})")
    family = next((m for m in MUTATIONS + WORD_MUTATIONS if kind.startswith(m)), kind)
    path = Path(_STATE["folder"]) / f"case_{os.getpid()}{Path(name).suffix}"
    path.write_bytes(mutated)
    case = f"{name}:{seed}"
    try:
        got, err = read_all(path, 2 if seed % 10 == 0 else 0)
    except Exception:  # noqa: BLE001 - this is what the fuzzer looks for
        return "OTHER", case, f"{kind}: {traceback.format_exc(limit=6)}", family
    refused = _STATE.setdefault("refused", collections.Counter())
    problem = _other_entry_points(path, refused) if _STATE.get("entry_points", True) else None
    if problem:
        return "OTHER", case, f"{kind}: {problem}", family
    events = np.concatenate(got) if got else np.zeros(0, EVENT_DTYPE)
    prefix = len(events) <= len(truth) and np.array_equal(events, truth[:len(events)])
    if family == "truncate" and not prefix:
        return "OTHER", case, f"{kind}: truncation gave events that are not a prefix ({err})", family
    if err is None:
        return ("clean, identical" if prefix and len(events) == len(truth) else "clean, altered"), case, None, family
    return ("documented error, with true prefix" if prefix and len(events) else "documented error"), case, None, family


_BATCH = 200


def run_batch(seeds: range) -> tuple[list[tuple[str, str, str | None, str, str]], collections.Counter]:
    _STATE["refused"] = collections.Counter()
    return [run_case(seed) for seed in seeds], _STATE["refused"]


OUTCOMES = ("clean, identical", "clean, altered", "documented error, with true prefix", "documented error", "OTHER")


def _table(title: str, counts: collections.Counter, rows) -> None:
    print(f"\n  {title:<16}" + "".join(f"{o.replace('documented error', 'error'):>24}" for o in OUTCOMES)
          + f"{'cases':>10}")
    for row in rows:
        print(f"  {row:<16}" + "".join(f"{counts[row, o]:>24,}" for o in OUTCOMES)
              + f"{sum(counts[row, o] for o in OUTCOMES):>10,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000, help="mutated files to read")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--seed", type=int, default=0, help="first case seed")
    parser.add_argument("--quick", action="store_true",
                        help="every mutation on every base file twice (overrides --cases)")
    parser.add_argument("--replay", help="BASE:SEED of one case to rerun with its traceback")
    parser.add_argument("--hang-s", type=float, default=1800,
                        help="wall seconds without a finished batch that count as a hang (each case "
                             f"also stops at {CASE_CPU_S} s of CPU time)")
    parser.add_argument("--readers-only", action="store_true", help="iter_packets only (no read_events/info/replay)")
    parser.add_argument("--raw-halves", action="store_true",
                        help="RAW files: read() also on two threads whatever the size, which must equal one thread")
    args = parser.parse_args(argv)
    _STATE["entry_points"] = not args.readers_only
    _STATE["raw_halves"] = args.raw_halves
    ram = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=ram) as tmp:
        bases = {k: str(v) for k, v in build_bases(Path(tmp)).items()}
        if args.replay:
            _init(bases, tmp)
            print(run_case(int(args.replay.rsplit(":", 1)[1])))
            return 0
        if args.quick:
            args.cases = 2 * len(bases) * max(len(MUTATIONS), len(WORD_MUTATIONS))
        print(f"{args.cases:,} cases over {len(bases)} base files ({', '.join(sorted(bases))}), "
              f"{args.workers} workers")
        counts: collections.Counter = collections.Counter()
        by_kind: collections.Counter = collections.Counter()
        by_format: collections.Counter = collections.Counter()
        refused: collections.Counter = collections.Counter()
        others = []
        t0 = time.perf_counter()
        end = args.seed + args.cases
        batches = [range(lo, min(lo + _BATCH, end)) for lo in range(args.seed, end, _BATCH)]
        with multiprocessing.get_context("fork").Pool(args.workers, _init, (bases, tmp)) as pool:
            results = pool.imap_unordered(run_batch, batches)
            for _ in batches:
                try:
                    batch, batch_refused = results.next(timeout=args.hang_s)
                except multiprocessing.TimeoutError:
                    print(f"HANG: no batch of {_BATCH} cases finished within {args.hang_s} s; cases being read:")
                    for now in sorted(Path(tmp).glob("now_*.txt")):
                        print(f"  {now.read_text()}")
                    pool.terminate()
                    return 1
                refused.update(batch_refused)
                for outcome, case, detail, family, fmt in batch:
                    counts[outcome] += 1
                    by_kind[family, outcome] += 1
                    by_format[fmt, outcome] += 1
                    if outcome == "OTHER":
                        others.append((case, detail))
                        print(f"OTHER {case}: {detail.splitlines()[0] if detail else ''}", flush=True)
                done = sum(counts.values())
                if done // 10_000 > (done - len(batch)) // 10_000:
                    print(f"  ... {done:,} cases in {time.perf_counter() - t0:.0f} s, OTHER {counts['OTHER']}", flush=True)
        seconds = time.perf_counter() - t0
    print(f"done in {seconds:.1f} s ({args.cases / seconds:,.0f} cases/s)")
    for outcome in OUTCOMES:
        print(f"  {outcome:<36} {counts[outcome]:>8,}")
    _table("format", by_format, [f for f in FORMATS if any(by_format[f, o] for o in OUTCOMES)])
    _table("mutation", by_kind, sorted({f for f, _ in by_kind}))
    if _STATE["entry_points"]:
        print("  (outcomes of iter_packets; documented errors of the other entry points: "
              + ", ".join(f"{k} {refused[k]:,}" for k in ("read_events", "info", "replay")) + ")")
    for case, detail in others[:20]:
        print(f"\nOTHER {case}\n{detail}")
    print(f"\nother exceptions: {counts['OTHER']} (must be 0)")
    return 1 if counts["OTHER"] else 0


if __name__ == "__main__":
    sys.exit(main())
