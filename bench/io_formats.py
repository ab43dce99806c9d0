"""Decode speed of evstream's Prophesee RAW / DAT and AEDAT 2.0 readers against the packages people use.

Files: the real samples in ``../shared/data`` (Gen3 EVT 2.0, Gen4.1 EVT 3.0, N-CARS DAT) and
generated 1280x720 recordings of ``--events`` events (default 10 M) in EVT 3.0 (rows of events
sharing a time stamp, written with VECT_12 vectors and lone ADDR_X words, as an IMX636 emits
them), EVT 2.0, DAT v2 and AEDAT 2.0 (DAVIS346 layout), cached under ``bench/out/``.

Anchors, each only when importable: expelliarmus (``Wizard(encoding=...).read``), faery
(``faery.events_stream_from_file(...).to_array()``), evlib (``evlib.load_events``), tonic
(AEDAT 2.0 via ``tonic.io.read_davis_346``). Each decoder runs ``--repeat`` times, interleaved;
the best time counts. Figures are Mev/s of ``read()`` (the whole file into one ``EVENT_DTYPE``
array) and of streaming ``iter_packets()``; ratios are against the fastest anchor on the same file,
by best wall time and by best CPU (process) time, which a machine loaded by other work distorts
less. Every anchor decodes on one thread, and so does evstream's streaming path; evstream's
``read()`` of a large DAT file (16 MB of output) or RAW file (EVT 2.0 / 2.1 / 3.0, 4 MB of words) decodes its
two halves on two threads, and of smaller RAW and of AEDAT 4 files has the kernel map the output array's
pages on a second one (``evstream.io._blocks.Prefault``): both
shorten the wall time and add to the CPU time, so the two ratios differ there.

Usage: ``python bench/io_formats.py [--repeat 5] [--events 10000000]``
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import importlib  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from evstream.io import open_reader, read_events  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
WIDTH, HEIGHT = 1280, 720


def _rows(n_events: int, seed: int = 0):
    """Sorted rows (t, y, p, xs[:, 8]) of ``n_events`` events: 8 distinct columns within 24
    pixels per (t, y, p), about 5 events per µs."""
    rng = np.random.default_rng(seed)
    n_rows = n_events // 8
    t = np.sort(rng.integers(0, n_events // 5, n_rows)).astype(np.int64)
    y = rng.integers(0, HEIGHT, n_rows)
    p = rng.integers(0, 2, n_rows)
    x0 = rng.integers(0, WIDTH - 24, n_rows)
    offsets = np.sort(rng.random((n_rows, 24), dtype=np.float32).argsort(axis=1)[:, :8], axis=1)
    return t, y, p, x0[:, None] + offsets


def evt3_file(n_events: int) -> Path:
    """The cached EVT 3.0 recording: per row TIME_HIGH / TIME_LOW when they change, ADDR_Y, then
    VECT_BASE_X + two VECT_12 words (every other row: eight lone ADDR_X words instead)."""
    path = OUT / f"evt3_{n_events // 1_000_000}M_1280x720.raw"
    if path.exists():
        return path
    OUT.mkdir(exist_ok=True)
    t, y, p, xs = _rows(n_events)
    n = len(t)
    th, tl = (t >> 12) & 0xFFF, t & 0xFFF
    new_th = np.r_[True, th[1:] != th[:-1]]
    new_tl = np.r_[True, tl[1:] != tl[:-1]] | new_th
    vector = np.arange(n) % 2 == 0
    rel = xs - xs[:, :1]
    mask0 = np.where(rel < 12, 1 << np.minimum(rel, 11), 0).sum(axis=1)
    mask1 = np.where(rel >= 12, 1 << np.maximum(rel - 12, 0), 0).sum(axis=1)
    count = new_th.astype(np.int64) + new_tl + 1 + np.where(vector, 3, 8)
    start = np.cumsum(count) - count
    words = np.empty(int(count.sum()), "<u2")
    pos = start.copy()
    words[pos[new_th]] = 0x8000 | th[new_th]
    pos += new_th
    words[pos[new_tl]] = 0x6000 | tl[new_tl]
    pos += new_tl
    words[pos] = y
    pos += 1
    v, s = np.flatnonzero(vector), np.flatnonzero(~vector)
    words[pos[v]] = 0x3000 | p[v] << 11 | xs[v, 0]
    words[pos[v] + 1] = 0x4000 | mask0[v]
    words[pos[v] + 2] = 0x4000 | mask1[v]
    for j in range(8):
        words[pos[s] + j] = 0x2000 | p[s] << 11 | xs[s, j]
    head = f"% evt 3.0\n% format EVT3;height={HEIGHT};width={WIDTH}\n% plugin_name bench\n% end\n".encode()
    path.write_bytes(head + words.tobytes())
    return path


def _flat_events(n_events: int):
    t, y, p, xs = _rows(n_events)
    k = xs.shape[1]
    return np.repeat(t, k), np.repeat(y, k), np.repeat(p, k), xs.ravel()


def evt2_file(n_events: int) -> Path:
    """The cached EVT 2.0 recording of the same events (one TIME_HIGH per 64 µs step)."""
    path = OUT / f"evt2_{n_events // 1_000_000}M_1280x720.raw"
    if path.exists():
        return path
    OUT.mkdir(exist_ok=True)
    t, y, p, x = _flat_events(n_events)
    high = t >> 6
    new = np.r_[True, high[1:] != high[:-1]]
    words = np.empty(len(t) + int(new.sum()), "<u4")
    slot = np.arange(len(t)) + np.cumsum(new)
    words[slot] = (p << 28 | (t & 63) << 22 | x << 11 | y).astype(np.uint32)
    words[slot[new] - 1] = (0x8 << 28 | (high[new] & 0xFFFFFFF)).astype(np.uint32)
    path.write_bytes(f"% evt 2.0\n% geometry {WIDTH}x{HEIGHT}\n% plugin_name bench\n".encode() + words.tobytes())
    return path


def dat_file(n_events: int) -> Path:
    """The cached DAT v2 (EventCD) recording of the same events: ``% Height`` / ``% Width`` lines,
    event type 12 and size 8, then ``<u4`` t + ``<u4`` (x | y << 14 | p << 28) per event."""
    path = OUT / f"dat_{n_events // 1_000_000}M_1280x720.dat"
    if path.exists():
        return path
    OUT.mkdir(exist_ok=True)
    t, y, p, x = _flat_events(n_events)
    rec = np.empty((len(t), 2), "<u4")
    rec[:, 0] = t
    rec[:, 1] = x | y << 14 | p << 28
    head = (f"% Data file containing EventCD events.\n% Version 2\n% Height {HEIGHT}\n% Width {WIDTH}\n"
            ).encode() + bytes([12, 8])
    path.write_bytes(head + rec.tobytes())
    return path


def aedat2_file(n_events: int) -> Path:
    """The cached AEDAT 2.0 (DAVIS346 layout) recording of the events that fit a 346x260 sensor."""
    path = OUT / f"aedat2_{n_events // 1_000_000}M_davis346.aedat"
    if path.exists():
        return path
    OUT.mkdir(exist_ok=True)
    t, y, p, x = _flat_events(n_events)
    x, y = x % 346, y % 260
    rec = np.empty((len(t), 2), ">u4")
    rec[:, 0] = (259 - y) << 22 | (345 - x) << 12 | p << 11
    rec[:, 1] = t & 0xFFFFFFFF
    head = b"#!AER-DAT2.0\r\n# AEChip: eu.seebetter.ini.chips.davis.Davis346B\r\n"
    path.write_bytes(head + rec.tobytes())
    return path


# -- decoders --------------------------------------------------------------------------------------


def ours_read(path: Path) -> int:
    return len(read_events(path))


def ours_stream(path: Path) -> int:
    with open_reader(path) as reader:
        return sum(len(p) for p in reader.iter_packets())


def _encoding(path: Path) -> str:
    from evstream.io import detect_format

    return detect_format(path)


def expelliarmus_read(path: Path) -> int:
    from expelliarmus import Wizard

    enc = _encoding(path)
    if enc not in ("evt2", "evt3", "dat"):
        raise NotImplementedError
    return len(Wizard(encoding=enc).read(str(path)))


def faery_read(path: Path) -> int:
    import faery

    return len(faery.events_stream_from_file(path).to_array())


def evlib_read(path: Path) -> int:
    import evlib

    return len(evlib.load_events(str(path)).collect())


def tonic_read(path: Path) -> int:
    import tonic

    if _encoding(path) != "aedat2":
        raise NotImplementedError
    return len(tonic.io.read_davis_346(str(path))[-1])


ANCHORS = {"expelliarmus": expelliarmus_read, "faery": faery_read, "evlib": evlib_read, "tonic": tonic_read}


def available_anchors() -> dict:
    out = {}
    for name, fn in ANCHORS.items():
        try:
            importlib.import_module(name)
        except ImportError:
            print(f"  ({name} not installed: skipped)")
            continue
        out[name] = fn
    return out


def bench_file(path: Path, anchors: dict, repeat: int) -> None:
    """Best wall and best CPU (process) time of each decoder on ``path``, interleaved; ratios are
    against the fastest anchor by each measure (CPU time is what a loaded machine distorts least)."""
    decoders = {"evstream read": ours_read, "evstream stream": ours_stream, **anchors}
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name, fn in list(decoders.items()):  # warm-up (numba cache load, imports); drop what refuses
        try:
            counts[name] = fn(path)
        except Exception as err:  # noqa: BLE001 - an anchor refusing a format is reported, not fatal
            print(f"  {name:18s} refuses {path.name}: {type(err).__name__}: {str(err)[:80]}")
            decoders.pop(name)
    for _ in range(repeat):
        for name, fn in decoders.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn(path)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            best[name] = min(best.get(name, dt), dt)
            best_cpu[name] = min(best_cpu.get(name, dc), dc)
    anchor_best = max((counts[a] / best[a] for a in anchors if a in best), default=None)
    anchor_cpu = max((counts[a] / max(best_cpu[a], 1e-6) for a in anchors if a in best_cpu), default=None)
    print(f"{path.name}  ({path.stat().st_size / 1e6:.1f} MB)")
    for name in decoders:
        rate = counts[name] / best[name] / 1e6
        ratio = "" if anchor_best is None else f"  {rate * 1e6 / anchor_best:5.2f}x fastest anchor"
        cpu = "" if anchor_cpu is None else (f"  cpu {best_cpu[name] * 1e3:7.1f} ms "
                                             f"{counts[name] / max(best_cpu[name], 1e-6) / anchor_cpu:5.2f}x")
        print(f"  {name:18s} {counts[name]:>11,} ev  {best[name] * 1e3:8.1f} ms  {rate:7.1f} Mev/s{ratio}{cpu}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--no-generated", action="store_true", help="only the real samples")
    args = ap.parse_args(argv)
    anchors = available_anchors()
    files = [SHARED / name for name in ("prophesee_gen3_evt2_faery_sample.raw",
                                        "prophesee_gen41_evt3_expelliarmus_sample.raw",
                                        "prophesee_atis_ncars_tonic_sample.dat") if (SHARED / name).exists()]
    if not args.no_generated:
        for make in (evt3_file, evt2_file, dat_file, aedat2_file):
            t0 = time.perf_counter()
            files.append(make(args.events))
            print(f"  {files[-1].name} ready ({time.perf_counter() - t0:.1f} s)")
    for path in files:
        bench_file(path, anchors, args.repeat)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
