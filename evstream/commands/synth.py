"""``python main.py synth``: write a miniature DVS128 Gesture dataset of rendered, emulated gestures.

Layout of the IBM release (formats.md §3), so every reader of the real dataset reads it:

    OUT/DvsGesture/userNN_<lighting>.aedat          AEDAT 3.1, one recording per user and lighting
    OUT/DvsGesture/userNN_<lighting>_labels.csv     class,startTime_usec,endTime_usec (1-based)
    OUT/DvsGesture/trials_to_train.txt              recording file names, one per line
    OUT/DvsGesture/trials_to_test.txt

Each recording holds one shuffled round of all 11 gestures with rests between them (the real
files hold ~12 gestures, each class once or twice), so ``--samples N`` (gestures per class)
makes N recordings and the classes are exactly balanced in every file and split. Recordings go
round-robin to the users; each user's recordings take distinct lighting conditions
(fluorescent, fluorescent_led, lab, led, natural), which set the rendering's light. As in the
real split (users 1–23 train, 24–29 test) the last ~20 % of users (at least one) form the test set.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from evstream.errors import ConfigError
from evstream.events import SensorSize
from evstream.sources.gestures import LIGHTINGS, N_CLASSES, balanced_classes

SYNTHETIC_MARKER = "SYNTHETIC.txt"

EXAMPLES = """\
examples:
  python main.py synth --out data/synth --samples 8
  python main.py synth --out data/synth --samples 20 --users 10 --seed 1 --workers 2
  python main.py synth --out data/synth640 --samples 2 --size 640x480 --format aedat4
"""

# AEDAT 3.1 headers carry no geometry; readers infer it from the camera named on #Source.
_AEDAT3_SOURCES = {(128, 128): "DVS128", (640, 480): "DVXplorer", (346, 260): "DAVIS346",
                   (320, 240): "DVXplorerLite"}
_LIGHTING_NAMES = tuple(LIGHTINGS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output folder (DvsGesture/ is created inside)")
    parser.add_argument("--samples", type=int, default=10,
                        help="gestures per class = number of recordings (default 10)")
    parser.add_argument("--users", type=int, default=None,
                        help="number of subjects (default: ceil(samples / 3), at least 2); "
                             "each records at most 5 files, one per lighting")
    parser.add_argument("--size", default="128x128", help="sensor WIDTHxHEIGHT (default 128x128, the DVS128)")
    parser.add_argument("--seed", type=int, default=0, help="seed; the same arguments give the same files")
    parser.add_argument("--format", choices=("ibm", "aedat4"), default="ibm",
                        help="ibm: AEDAT 3.1 .aedat like the release (default); aedat4: .aedat4 with LZ4")
    parser.add_argument("--fps", type=float, default=100.0, help="render rate, Hz (default 100)")
    parser.add_argument("--gesture-s", type=float, nargs=2, default=(4.0, 8.0), metavar=("MIN", "MAX"),
                        help="gesture duration range, s (default 4 8, as the real protocol: each gesture repeated ~6 s)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")


def parse_size(text: str) -> SensorSize:
    """``"640x480"`` → ``SensorSize(640, 480)``; raises ConfigError naming ``--size``."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"--size must be WIDTHxHEIGHT, e.g. 128x128, got {text!r}")
    return SensorSize(int(parts[0]), int(parts[1]))


def plan(samples: int, users: int | None, seed: int) -> list[tuple[str, int, str, bool]]:
    """Recordings to make: ``(stem, seed, lighting, is_test)``, one per sample round.

    Raises:
        ConfigError: ``samples < 1``, fewer than 2 users, or more than 5 recordings per user.
    """
    if samples < 1:
        raise ConfigError(f"--samples must be >= 1, got {samples}")
    users = max(2, math.ceil(samples / 3)) if users is None else users
    if users < 2:
        raise ConfigError(f"--users must be >= 2 (train and test subjects), got {users}")
    if samples > len(_LIGHTING_NAMES) * users:
        raise ConfigError(f"--users {users} too few for --samples {samples}: a user records at most "
                          f"{len(_LIGHTING_NAMES)} files (one per lighting); use --users {math.ceil(samples / 5)} or more")
    n_test = max(1, round(users * 6 / 29))
    out = []
    for k in range(samples):
        user = k % users + 1
        lighting = _LIGHTING_NAMES[(k // users + user) % len(_LIGHTING_NAMES)]
        out.append((f"user{user:02d}_{lighting}", seed * 1_000_003 + k, lighting, user > users - n_test))
    return out


def _make(job: tuple) -> tuple[str, int, int, int]:
    """Write one recording and its labels; returns (stem, events, bytes, duration µs)."""
    from evstream.io.aedat3 import write_aedat3, write_labels
    from evstream.sources.gestures import synthesize_recording

    folder, stem, seed, lighting, size, fmt, fps, gesture_s = job
    # Class order per recording from its own seed: shuffled, each class once.
    classes = balanced_classes(N_CLASSES, np.random.default_rng(seed))
    events, labels = synthesize_recording(size, classes, seed=seed, fps=fps, lighting=lighting, gesture_s=gesture_s)
    if fmt == "ibm":
        path = folder / f"{stem}.aedat"
        write_aedat3(path, events, source=_AEDAT3_SOURCES[(size.width, size.height)])
    else:
        from evstream.io.aedat4 import write_aedat4

        path = folder / f"{stem}.aedat4"
        write_aedat4(path, events, size, compression="lz4")
    write_labels(folder / f"{stem}_labels.csv", labels)
    return stem, len(events), path.stat().st_size, int(events["t"][-1]) if len(events) else 0


def run(args: argparse.Namespace) -> int:
    size = parse_size(args.size)
    if args.format == "ibm" and (size.width, size.height) not in _AEDAT3_SOURCES:
        raise ConfigError(f"--size {size}: an AEDAT 3.1 file names its camera, not its size; use one of "
                          f"{', '.join(f'{w}x{h}' for w, h in _AEDAT3_SOURCES)} or --format aedat4")
    if args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if not 0 < args.gesture_s[0] <= args.gesture_s[1]:
        raise ConfigError(f"--gesture-s must be 0 < MIN <= MAX, got {args.gesture_s[0]} {args.gesture_s[1]}")
    if not 0 < args.fps <= 10_000:
        raise ConfigError(f"--fps must be in (0, 10000], got {args.fps}")
    recordings = plan(args.samples, args.users, args.seed)
    folder = args.out / "DvsGesture"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"--out {args.out}: cannot create folder: {err.strerror}") from None
    ext = ".aedat" if args.format == "ibm" else ".aedat4"
    jobs = [(folder, stem, seed, lighting, size, args.format, args.fps, tuple(args.gesture_s))
            for stem, seed, lighting, _ in recordings]
    started = time.perf_counter()
    total_events = total_bytes = 0
    workers = min(args.workers, len(jobs), os.cpu_count() or 1)
    with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        results = pool.map(_make, jobs) if pool else map(_make, jobs)
        for i, (stem, n_events, n_bytes, duration) in enumerate(results, start=1):
            total_events += n_events
            total_bytes += n_bytes
            print(f"[{i}/{len(jobs)}] {stem}{ext}: {n_events:,} events, {duration / 1e6:.1f} s, "
                  f"{n_bytes / 1e6:.1f} MB", flush=True)
    for name, test in (("trials_to_train.txt", False), ("trials_to_test.txt", True)):
        stems = [stem + ext for stem, _, _, is_test in recordings if is_test == test]
        (folder / name).write_text("".join(s + "\n" for s in stems))
    # Marks the set as synthetic, so a model trained on it says so (models.train.describe_training_data).
    (folder / SYNTHETIC_MARKER).write_text(
        f"synthetic gestures: evstream synth, seed {args.seed}, {len(jobs)} recordings, {size.width}x{size.height}, "
        "rendered people through a DVS emulator; no real recording\n")
    n_test = sum(r[3] for r in recordings)
    print(f"wrote {folder}: {len(jobs)} recordings ({len(jobs) - n_test} train, {n_test} test), "
          f"{len(jobs) * N_CLASSES} gestures ({len(jobs)} per class), {total_events:,} events, "
          f"{total_bytes / 1e6:.1f} MB in {time.perf_counter() - started:.1f} s")
    return 0
