"""Decode speed of evstream's AEDAT 4.0 reader and replay source against dv-processing and ``aedat``.

Default run: a 10-million-event 640x480 LZ4 recording written by dv-processing in 50k-event
packets (generated once, cached under ``bench/out/``), then the real sample recordings. Each
decoder runs ``--repeat`` times, interleaved; the best time counts. Figures are Mev/s, ratios are
against dv-processing two ways: reading the whole file into one array
(``MonoCameraRecording.getNextEventBatch`` + concatenation, formats.md §7.3), and its packet loop
(``getNextEventBatch`` + ``numpy()``, nothing kept), the anchor of the streaming paths: our
reader's ``iter_packets`` (default threads: two while a core is idle, else inline; and forced inline / 2 threads)
and ``open_source(path, speed=None)``, the replay source that ``main.py --replay --speed max``
and ``eval --stream`` read through (issue 18, item 1: target >= 1.5x dv-processing's packet
loop). Beside each wall time, the best process CPU time (all threads), which machine load moves
less, and its ratio to the packet loop's; the load average is printed with each file.

``--memory`` instead streams a ~1 GB recording written by evstream through ``iter_packets`` and
prints the peak resident memory against the file size.

Usage: ``python bench/io.py [--repeat 5] [--events 10000000] [--memory [--memory-gb 1.0]]``
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import datetime  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from evstream.events import SensorSize  # noqa: E402
from evstream.io import read_events  # noqa: E402
from evstream.io.aedat4 import Aedat4Reader, Aedat4Writer  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PACKET = 50_000


def dv_recording(n_events: int) -> Path:
    """The cached dv-processing-written LZ4 recording (created on first use)."""
    import dv_processing as dv

    path = OUT / f"dv_lz4_{n_events // 1_000_000}M_640x480.aedat4"
    if path.exists():
        return path
    OUT.mkdir(exist_ok=True)
    print(f"generating {path.name} with dv-processing ...", flush=True)
    tmp = path.with_name(path.stem + ".partial.aedat4")  # dv-processing aborts on other extensions
    config = dv.io.MonoCameraWriter.EventOnlyConfig("DVXplorer_bench", (640, 480), dv.CompressionType.LZ4)
    writer = dv.io.MonoCameraWriter(str(tmp), config)
    # One 50k-event packet per writeEventPacket; writeEvents would cut 10k-event packets.
    for k in range(n_events // PACKET):
        store = dv.data.generate.uniformEventsWithinTimeRange(
            1_700_000_000_000_000 + 5_000 * k, datetime.timedelta(microseconds=5_000), (640, 480), PACKET, k)
        writer.writeEventPacket(store.toPacket())
    del writer
    tmp.rename(path)
    return path


def ours_read(path: Path) -> int:
    return len(read_events(path))


def ours_stream(path: Path, threads: int | None = None) -> int:
    with Aedat4Reader(path, threads=threads) as reader:
        return sum(len(p) for p in reader.iter_packets())


def ours_stream_inline(path: Path) -> int:
    return ours_stream(path, threads=0)


def ours_stream_threads(path: Path) -> int:
    return ours_stream(path, threads=2)


def ours_source(path: Path) -> int:
    from evstream.sources import open_source

    with open_source(path, speed=None) as source:
        return sum(len(chunk.events) for chunk in source)


def dv_read(path: Path) -> int:
    import dv_processing as dv

    rec = dv.io.MonoCameraRecording(str(path))
    parts = []
    while (batch := rec.getNextEventBatch()) is not None:
        parts.append(batch.numpy())
    return len(np.concatenate(parts))


def dv_stream(path: Path) -> int:
    import dv_processing as dv

    rec = dv.io.MonoCameraRecording(str(path))
    n = 0
    while (batch := rec.getNextEventBatch()) is not None:
        n += len(batch.numpy())
    return n


def aedat_read(path: Path) -> int:
    import aedat

    return len(np.concatenate([p["events"] for p in aedat.Decoder(str(path)) if "events" in p]))


DECODERS = {
    "evstream read_events": ours_read,
    "evstream iter_packets (streaming)": ours_stream,
    "evstream iter_packets threads=0": ours_stream_inline,
    "evstream iter_packets threads=2": ours_stream_threads,
    "evstream open_source(speed=None)": ours_source,
    "dv-processing (+concatenate)": dv_read,
    "dv-processing (streaming)": dv_stream,
    "aedat (+concatenate)": aedat_read,
}
ANCHOR = "dv-processing (+concatenate)"
STREAM_ANCHOR = "dv-processing (streaming)"


def available() -> dict:
    out = {}
    for name, fn in DECODERS.items():
        module = "dv_processing" if name.startswith("dv") else "aedat" if name.startswith("aedat") else None
        if module:
            try:
                __import__(module)
            except ImportError:
                print(f"({name}: {module} not installed, skipped)")
                continue
        out[name] = fn
    return out


def race(path: Path, repeat: int) -> None:
    decoders = available()
    best = {name: float("inf") for name in decoders}
    cpu = dict(best)
    counts = {}
    load = os.getloadavg()[0]
    for _ in range(repeat):
        for name, fn in decoders.items():
            t0, c0 = time.perf_counter(), time.process_time()
            counts[name] = fn(path)
            best[name] = min(best[name], time.perf_counter() - t0)
            cpu[name] = min(cpu[name], time.process_time() - c0)  # every thread of the process
    n = counts[next(iter(counts))]
    assert all(c == n for c in counts.values()), counts
    size = path.stat().st_size
    print(f"\n{path.name}: {n:,} events, {size / 1e6:.1f} MB, best of {repeat}; load average "
          f"{load:.2f} -> {os.getloadavg()[0]:.2f} on {len(os.sched_getaffinity(0))} cores")
    anchors = [(a, best[a]) for a in (ANCHOR, STREAM_ANCHOR) if a in best]
    for name, seconds in best.items():
        ratios = "  ".join(f"{anchor / seconds:5.2f}x {a}" for a, anchor in anchors)
        cpu_ratio = f"  CPU {cpu[name] * 1e3:7.1f} ms" + (
            f" ({cpu[STREAM_ANCHOR] / cpu[name]:4.2f}x)" if STREAM_ANCHOR in cpu else "")
        print(f"  {name:<36} {seconds * 1e3:8.1f} ms  {n / seconds / 1e6:7.1f} Mev/s  {ratios}{cpu_ratio}")
    source, packets = best.get("evstream open_source(speed=None)"), best.get("evstream iter_packets (streaming)")
    if source and packets and STREAM_ANCHOR in best:
        cpu_source = cpu[STREAM_ANCHOR] / cpu["evstream open_source(speed=None)"]
        cpu_packets = cpu[STREAM_ANCHOR] / cpu["evstream iter_packets (streaming)"]
        # Where the replay source's time goes: its own cost over the reader's packets, and the reader's.
        print(f"  replay: open_source(speed=None) {best[STREAM_ANCHOR] / source:.2f}x dv-processing's packet loop "
              f"(target >= 1.5x) = source {packets / source:.2f}x of iter_packets x iter_packets "
              f"{best[STREAM_ANCHOR] / packets:.2f}x dv-processing; in CPU time source {cpu_source:.2f}x, "
              f"iter_packets {cpu_packets:.2f}x dv-processing")


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(gigabytes: float, compression: str) -> None:
    OUT.mkdir(exist_ok=True)
    path = OUT / f"big_{compression}_{gigabytes:g}GB.aedat4"
    n_packets = int(gigabytes * 1e9 / 16 / PACKET)
    if not path.exists():
        print(f"writing {path.name} ({n_packets * PACKET:,} events) ...", flush=True)
        rng = np.random.default_rng(0)
        from evstream.events import empty_events

        chunk = empty_events(PACKET)
        chunk["x"] = rng.integers(0, 640, PACKET)
        chunk["y"] = rng.integers(0, 480, PACKET)
        chunk["p"] = rng.integers(0, 2, PACKET)
        with Aedat4Writer(path.with_suffix(".tmp"), SensorSize(640, 480), compression=compression) as writer:
            for k in range(n_packets):
                chunk["t"] = np.arange(k * PACKET, (k + 1) * PACKET)
                writer.write(chunk)
        path.with_suffix(".tmp").rename(path)
    before = peak_rss_mb()
    t0 = time.perf_counter()
    n = ours_stream(path)
    seconds = time.perf_counter() - t0
    size = path.stat().st_size
    print(f"\n{path.name}: {size / 1e6:.0f} MB, {n:,} events streamed in {seconds:.2f} s "
          f"({n / seconds / 1e6:.0f} Mev/s)")
    print(f"  peak RSS before {before:.0f} MB, after {peak_rss_mb():.0f} MB "
          f"= {peak_rss_mb() / (size / 2**20):.3f} x file size")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5, help="runs per decoder (best counts)")
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the generated recording")
    parser.add_argument("--memory", action="store_true", help="stream a big file and report peak RSS instead")
    parser.add_argument("--memory-gb", type=float, default=1.0, help="size of the --memory recording")
    parser.add_argument("--memory-compression", default="none", help="codec of the --memory recording")
    args = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, numpy {np.__version__}")
    if args.memory:
        memory(args.memory_gb, args.memory_compression)
        return
    race(dv_recording(args.events), args.repeat)
    for sample in sorted(SHARED.glob("*.aedat4")):
        race(sample, args.repeat)


if __name__ == "__main__":
    main()
