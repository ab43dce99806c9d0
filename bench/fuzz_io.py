"""Mutation fuzzing of the AEDAT 4.0 and AEDAT 3.1 readers: every outcome counted, any crash shown.

Base files: the real ``.aedat4`` samples in ``../shared/data`` (when present) and small
recordings written here (AEDAT 4.0 in every compression, AEDAT 3.1). Each case applies one
seeded mutation, writes the file to a RAM folder and reads it through four entry points:
``open_reader(...).iter_packets()``, ``read_events`` (one preallocated read), ``info``'s
``describe`` and a replay as fast as possible (``FileSource(speed=None)`` into a ``Binner``).

Byte mutations: bit flips, truncation, an edited size/offset/id field, a swapped codec, a burst
of random bytes, inserted or deleted bytes. Structural mutations of AEDAT 4.0 files (issue 17),
re-encoded so the file stays well formed around them: ``time jump`` (events after a point moved
2^20 ... 2^40 µs ahead, a packet moved back before the first, or one event at 2^62 µs),
``sensor size`` (sizeX/sizeY in the IOHeader set to 0, -1, 2^31, 10^20, Unicode digits, 32767,
32768, ...; the FileDataTable's offsets shifted with the header) and ``inflated counts``
(FileDataTable numElements multiplied up to 2^40 or set to 2^62).

Outcomes: ``clean`` (read to the end; ``identical`` when the events equal the original's),
``documented error`` (EventFileError; ``with true prefix`` when the packets before it are exactly
the original's first events), and ``OTHER`` — any other exception from any entry point (or an
evstream error of more than one line, or a replay emitting more windows than the binner's gap
rule allows), which is a bug: each is printed with its case so it can be replayed
(``--replay BASE:SEED``). A batch of cases that does not finish within 120 s is a HANG.

Usage: ``python bench/fuzz_io.py [--cases 100000] [--workers 2]``
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
import struct  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402

from evstream.binning import Binner  # noqa: E402
from evstream.commands.info import describe  # noqa: E402
from evstream.errors import EventFileError, EvstreamError  # noqa: E402
from evstream.events import EVENT_DTYPE, SensorSize  # noqa: E402
from evstream.io import codec, open_reader, read_events  # noqa: E402
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

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MUTATIONS = ("bit flips", "truncate", "edit field", "swap codec", "random burst", "insert/delete",
             "time jump", "sensor size", "inflated counts")
STRUCTURAL = MUTATIONS[6:]
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
    for sample in sorted(SHARED.glob("*.aedat4")):
        bases[sample.name] = sample
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


def mutate(data: bytes, name: str, seed: int, truth: np.ndarray | None = None) -> tuple[bytes, str]:
    rng = np.random.default_rng(seed)
    kind = MUTATIONS[seed % len(MUTATIONS)]
    aedat4 = name.endswith(".aedat4")
    out = bytearray(data)
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


_STATE: dict = {}


def _init(bases: dict[str, str], folder: str) -> None:
    _STATE["bases"] = {}
    for name, path in bases.items():
        data = Path(path).read_bytes()
        got, err = read_all(Path(path), 0)
        assert err is None, err
        truth = np.concatenate(got) if got else np.zeros(0, EVENT_DTYPE)
        _STATE["bases"][name] = (data, truth)
    _STATE["names"] = sorted(_STATE["bases"])
    _STATE["folder"] = folder


def _other_entry_points(path: Path, refused: collections.Counter) -> str | None:
    """``read_events``, ``describe`` and a replay as fast as possible into a Binner; a bug found, else
    None. Counts the entry points that refused the file with a documented error in ``refused``."""
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


def run_case(seed: int) -> tuple[str, str, str | None, str]:
    names = _STATE["names"]
    name = names[seed % len(names)]
    data, truth = _STATE["bases"][name]
    mutated, kind = mutate(data, name, seed // len(names), truth)
    family = next((m for m in MUTATIONS if kind.startswith(m.split(" ")[0])), kind)
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
    if err is None:
        return ("clean, identical" if prefix and len(events) == len(truth) else "clean, altered"), case, None, family
    if kind == "truncate" and not prefix:
        return "OTHER", case, f"{kind}: truncation gave events that are not a prefix ({err})", family
    return ("documented error, with true prefix" if prefix and len(events) else "documented error"), case, None, family


_BATCH = 200


def run_batch(seeds: range) -> tuple[list[tuple[str, str, str | None, str]], collections.Counter]:
    _STATE["refused"] = collections.Counter()
    return [run_case(seed) for seed in seeds], _STATE["refused"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000, help="mutated files to read")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--seed", type=int, default=0, help="first case seed")
    parser.add_argument("--replay", help="BASE:SEED of one case to rerun with its traceback")
    parser.add_argument("--readers-only", action="store_true", help="iter_packets only (no read_events/info/replay)")
    args = parser.parse_args()
    _STATE["entry_points"] = not args.readers_only
    ram = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(dir=ram) as tmp:
        bases = {k: str(v) for k, v in build_bases(Path(tmp)).items()}
        if args.replay:
            _init(bases, tmp)
            print(run_case(int(args.replay.rsplit(":", 1)[1])))
            return 0
        print(f"{args.cases:,} cases over {len(bases)} base files ({', '.join(sorted(bases))}), "
              f"{args.workers} workers")
        counts: collections.Counter = collections.Counter()
        by_kind: collections.Counter = collections.Counter()
        refused: collections.Counter = collections.Counter()
        others = []
        t0 = time.perf_counter()
        end = args.seed + args.cases
        batches = [range(lo, min(lo + _BATCH, end)) for lo in range(args.seed, end, _BATCH)]
        with multiprocessing.get_context("fork").Pool(args.workers, _init, (bases, tmp)) as pool:
            results = pool.imap_unordered(run_batch, batches)
            for _ in batches:
                try:
                    batch, batch_refused = results.next(timeout=120)
                except multiprocessing.TimeoutError:
                    print(f"HANG: no batch of {_BATCH} cases finished within 120 s")
                    pool.terminate()
                    return 1
                refused.update(batch_refused)
                for outcome, case, detail, family in batch:
                    counts[outcome] += 1
                    by_kind[family, outcome] += 1
                    if outcome == "OTHER":
                        others.append((case, detail))
        seconds = time.perf_counter() - t0
    print(f"done in {seconds:.1f} s ({args.cases / seconds:,.0f} cases/s)")
    for outcome in ("clean, identical", "clean, altered", "documented error, with true prefix", "documented error",
                    "OTHER"):
        print(f"  {outcome:<36} {counts[outcome]:>8,}")
    outcomes = ("clean, identical", "clean, altered", "documented error, with true prefix", "documented error", "OTHER")
    print(f"\n  {'mutation':<16}" + "".join(f"{o.replace('documented error', 'error'):>24}" for o in outcomes))
    for family in sorted({f for f, _ in by_kind}):
        print(f"  {family:<16}" + "".join(f"{by_kind[family, o]:>24,}" for o in outcomes))
    if _STATE["entry_points"]:
        print("  (outcomes of iter_packets; documented errors of the other entry points: "
              + ", ".join(f"{k} {refused[k]:,}" for k in ("read_events", "info", "replay")) + ")")
    for case, detail in others[:20]:
        print(f"\nOTHER {case}\n{detail}")
    print(f"\nother exceptions: {counts['OTHER']} (must be 0)")
    return 1 if counts["OTHER"] else 0


if __name__ == "__main__":
    sys.exit(main())
