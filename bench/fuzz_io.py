"""Mutation fuzzing of the AEDAT 4.0 and AEDAT 3.1 readers: every outcome counted, any crash shown.

Base files: the real ``.aedat4`` samples in ``../shared/data`` (when present) and small
recordings written here (AEDAT 4.0 in every compression, AEDAT 3.1). Each case applies one
seeded mutation (bit flips, truncation, an edited size/offset/id field, a swapped codec, a burst
of random bytes, inserted or deleted bytes), writes the file to a RAM folder and reads it whole
through ``evstream.io.open_reader(...).iter_packets()``.

Outcomes: ``clean`` (read to the end; ``identical`` when the events equal the original's),
``documented error`` (EventFileError; ``with true prefix`` when the packets before it are exactly
the original's first events), and ``OTHER`` — any other exception, which is a bug: each is
printed with its case so it can be replayed (``--replay BASE:SEED``).

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
import struct  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402

import numpy as np  # noqa: E402

from evstream.errors import EventFileError  # noqa: E402
from evstream.events import EVENT_DTYPE, SensorSize  # noqa: E402
from evstream.io import open_reader  # noqa: E402
from evstream.io.aedat3 import write_aedat3  # noqa: E402
from evstream.io.aedat4 import Aedat4Reader, write_aedat4  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MUTATIONS = ("bit flips", "truncate", "edit field", "swap codec", "random burst", "insert/delete")


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
    for codec in ("none", "lz4", "lz4_high", "zstd", "zstd_high"):
        path = folder / f"small_{codec}.aedat4"
        write_aedat4(path, _events(1_200, 1, sensor), sensor, codec, packet_events=300)
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


def mutate(data: bytes, name: str, seed: int) -> tuple[bytes, str]:
    rng = np.random.default_rng(seed)
    kind = MUTATIONS[seed % len(MUTATIONS)]
    aedat4 = name.endswith(".aedat4")
    out = bytearray(data)
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


def run_case(seed: int) -> tuple[str, str, str | None]:
    names = _STATE["names"]
    name = names[seed % len(names)]
    data, truth = _STATE["bases"][name]
    mutated, kind = mutate(data, name, seed // len(names))
    path = Path(_STATE["folder"]) / f"case_{os.getpid()}{Path(name).suffix}"
    path.write_bytes(mutated)
    case = f"{name}:{seed}"
    try:
        got, err = read_all(path, 2 if seed % 10 == 0 else 0)
    except Exception:  # noqa: BLE001 - this is what the fuzzer looks for
        return "OTHER", case, f"{kind}: {traceback.format_exc(limit=6)}"
    events = np.concatenate(got) if got else np.zeros(0, EVENT_DTYPE)
    prefix = len(events) <= len(truth) and np.array_equal(events, truth[:len(events)])
    if err is None:
        return ("clean, identical" if prefix and len(events) == len(truth) else "clean, altered"), case, None
    if kind == "truncate" and not prefix:
        return "OTHER", case, f"{kind}: truncation gave events that are not a prefix ({err})"
    return ("documented error, with true prefix" if prefix and len(events) else "documented error"), case, None


_BATCH = 200


def run_batch(seeds: range) -> list[tuple[str, str, str | None]]:
    return [run_case(seed) for seed in seeds]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=100_000, help="mutated files to read")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--seed", type=int, default=0, help="first case seed")
    parser.add_argument("--replay", help="BASE:SEED of one case to rerun with its traceback")
    args = parser.parse_args()
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
        others = []
        t0 = time.perf_counter()
        end = args.seed + args.cases
        batches = [range(lo, min(lo + _BATCH, end)) for lo in range(args.seed, end, _BATCH)]
        with multiprocessing.get_context("fork").Pool(args.workers, _init, (bases, tmp)) as pool:
            results = pool.imap_unordered(run_batch, batches)
            for _ in batches:
                try:
                    batch = results.next(timeout=120)
                except multiprocessing.TimeoutError:
                    print(f"HANG: no batch of {_BATCH} cases finished within 120 s")
                    pool.terminate()
                    return 1
                for outcome, case, detail in batch:
                    counts[outcome] += 1
                    if outcome == "OTHER":
                        others.append((case, detail))
        seconds = time.perf_counter() - t0
    print(f"done in {seconds:.1f} s ({args.cases / seconds:,.0f} cases/s)")
    for outcome in ("clean, identical", "clean, altered", "documented error, with true prefix", "documented error",
                    "OTHER"):
        print(f"  {outcome:<36} {counts[outcome]:>8,}")
    for case, detail in others[:20]:
        print(f"\nOTHER {case}\n{detail}")
    print(f"\nother exceptions: {counts['OTHER']} (must be 0)")
    return 1 if counts["OTHER"] else 0


if __name__ == "__main__":
    sys.exit(main())
