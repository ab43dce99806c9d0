"""``python main.py collect SOURCE --classes a,b,c --reps 5 --seconds 3 --out DIR``: record and
label your own gestures into a dataset folder that ``train`` and ``eval --stream`` read.

The protocol is a timeline in the source's sensor time: each repetition ("run") prompts every
class once (shuffled per run, or ``--order round-robin``), each gesture preceded by a ``--rest``
(the last ``--countdown`` seconds of it counted down on stdout: ``next: <class> in 3… 2… 1… go``)
and lasting ``--seconds``. Prompts are printed when the stream reaches their time, so with a live
camera they come in real time; with ``--synthetic`` and ``--replay`` the run goes as fast as the
events can be made or read, unless ``--realtime``.

Each run is one ``.aedat4`` (the source's sensor size and camera name kept) plus a DVS128
Gesture-style ``<stem>_labels.csv`` (``class,startTime_usec,endTime_usec``, 1-based class, the
prompted segment in the recording's own sensor µs), written into ``DIR/DvsGesture/`` in IBM's
layout: ``trials_to_train.txt`` / ``trials_to_test.txt`` are rewritten after every run
(:func:`assign_split`: every ``--test-every``-th run, and the second run while no run is held out,
go to test), and ``classes.txt`` names the classes, one per line (line k = CSV class k). Running
collect again on the same folder adds runs (with the same ``--classes``; another list is refused).

With ``--synthetic`` a rendered person performs the prompted class during each segment. It can
render the 11 DVS128 Gesture classes; user class k is performed as DVS128 gesture ``k mod 11``
(printed at the start), so names beyond the 11 reuse movements.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evstream.errors import ConfigError, EvstreamError
from evstream.labels import CLASSES_FILE, DVS_GESTURE_CLASSES, read_class_names, write_class_names

__all__ = ["UserDataset", "Segment", "assign_split", "plan_protocol", "add_arguments", "run"]

EXAMPLES = """\
examples:
  python main.py collect --camera dvxplorer --classes "wave,swipe left,swipe right,no gesture" --reps 5 --out data/mine
  python main.py collect --webcam 0 --reps 5 --seconds 3 --out data/mine        the 11 DVS128 classes
  python main.py collect --synthetic --classes a,b,c --reps 5 --seconds 3 --out data/try
  python main.py train --init spikformer_synth_stream_64 --data data/try --recipe stream --epochs 5
  python main.py eval --stream data/try --model runs/try.pt
"""

_US = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("source (one of)")
    which = src.add_mutually_exclusive_group(required=True)
    which.add_argument("--camera", metavar="{dvxplorer,davis346,dvs128,SERIAL,prophesee}", help="live camera")
    which.add_argument("--webcam", type=int, metavar="N", help="OpenCV camera N through the DVS emulator")
    which.add_argument("--network", metavar="HOST:PORT", help="DV network event stream")
    which.add_argument("--synthetic", action="store_true",
                       help="a rendered person performs each prompted class (no camera needed)")
    which.add_argument("--replay", metavar="FILE", help="a recording, looped, labelled by the protocol (for tests)")
    src.add_argument("--realtime", action="store_true",
                     help="--synthetic/--replay: pace to the wall clock (default: as fast as possible)")
    proto = parser.add_argument_group("protocol")
    proto.add_argument("--classes", default=None,
                       help="comma-separated class names (default: the 11 DVS128 Gesture classes)")
    proto.add_argument("--reps", type=int, default=5, help="repetitions (runs; one recording each) (default 5)")
    proto.add_argument("--seconds", type=float, default=3.0, help="length of each gesture, s (default 3)")
    proto.add_argument("--rest", type=float, default=3.0, help="rest before each gesture, s (default 3)")
    proto.add_argument("--countdown", type=int, default=3, help="seconds counted down before each gesture (default 3)")
    proto.add_argument("--order", choices=("shuffle", "round-robin"), default="shuffle",
                       help="class order within a run (default shuffle, new per run)")
    proto.add_argument("--seed", type=int, default=0, help="seeds the shuffle and the synthetic person (default 0)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", required=True, type=Path, help="dataset folder (DvsGesture/ is created inside)")
    out.add_argument("--test-every", type=int, default=DEFAULT_TEST_EVERY,
                     help=f"every N-th run goes to trials_to_test.txt (default {DEFAULT_TEST_EVERY}; "
                          "the 2nd too while none is)")


# -- the dataset folder -----------------------------------------------------------------------


DEFAULT_TEST_EVERY = 6
"""Runs held out by default: the 2nd, then every 6th (6, 12, 18 ...): one run of five, two of ten,
about a sixth of a longer collection. With five runs of the 11 classes (the Teach protocol) that
leaves four to train on instead of three: online accuracy after fine-tuning 0.846 and 0.811 on the
held-out sessions of two synthetic people (``bench/finetune.py --seed 95001`` / ``95101``),
against 0.820-0.831 and 0.797 with every 5th run (two of five) held out."""


def assign_split(n_train: int, n_test: int, test_every: int) -> str:
    """Where the next run goes: ``"test"`` when it is the ``test_every``-th (10th, ...) run, or
    when at least one run is in train and none is held out yet; else ``"train"``."""
    n = n_train + n_test + 1
    if n % test_every == 0 or (n_test == 0 and n_train >= 1):
        return "test"
    return "train"


@dataclass(frozen=True)
class Segment:
    """One labelled gesture: 0-based ``label`` into the folder's classes, sensor µs ``[t_start, t_end)``."""

    label: int
    t_start: int
    t_end: int


class UserDataset:
    """A user's dataset folder in IBM's DvsGesture layout, written run by run.

    Args:
        folder: the ``DvsGesture`` folder itself (created with its parents).
        class_names: the classes; a folder that already names others in ``classes.txt`` is refused.
        test_every: see :func:`assign_split`.

    Raises:
        ConfigError: a folder that cannot be created or written (read-only, full), other class
            names than the folder's, ``test_every`` < 2 (one line naming the path).
    """

    def __init__(self, folder: str | os.PathLike, class_names: tuple[str, ...] | list[str],
                 test_every: int = DEFAULT_TEST_EVERY) -> None:
        if test_every < 2:
            raise ConfigError(f"--test-every: must be >= 2 (every run in test leaves nothing to train on), got {test_every}")
        self.folder = Path(folder)
        self.class_names = tuple(class_names)
        self.test_every = int(test_every)
        self.session = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            existing = read_class_names(self.folder)
        except OSError as err:
            raise ConfigError(f"{self.folder}: cannot create the dataset folder ({err.strerror}); nothing recorded") from None
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if existing is not None and existing != self.class_names:
            raise ConfigError(f"{self.folder / CLASSES_FILE}: the folder's classes ({', '.join(existing)[:120]}) differ "
                              "from these; give the same --classes or another --out")
        if not os.access(self.folder, os.W_OK):
            raise ConfigError(f"{self.folder}: not writable (read-only folder?); nothing recorded")
        if existing is None:
            self._write(lambda: write_class_names(self.folder, self.class_names), CLASSES_FILE)

    def _write(self, action, name: str):
        try:
            return action()
        except OSError as err:
            raise ConfigError(f"{self.folder / name}: cannot write ({err.strerror})") from None

    def trials(self, split: str) -> list[str]:
        """Recording names listed in ``trials_to_<split>.txt`` (empty without the file)."""
        path = self.folder / f"trials_to_{split}.txt"
        if not path.is_file():
            return []
        return [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]

    def new_stem(self, prefix: str) -> str:
        """A recording stem no file of the folder uses: ``<prefix>_<session>_<k>``, the session being
        when this object was made (``YYYYmmddTHHMMSS``) and k counting from 01.

        The time makes stems unique across folders too, so binned-frame caches (keyed by stem)
        of two datasets never mix.
        """
        stamp = self.session
        k = 1
        while any((self.folder / f"{prefix}_{stamp}_{k:02d}{suffix}").exists() for suffix in (".aedat4", "_labels.csv")):
            k += 1
        return f"{prefix}_{stamp}_{k:02d}"

    def write_labels(self, stem: str, segments: list[Segment]) -> Path:
        """Write ``<stem>_labels.csv`` (1-based classes, sensor µs); rewritten whole each call."""
        from evstream.io.aedat3 import LABEL_DTYPE, write_labels

        for s in segments:
            if not 0 <= s.label < len(self.class_names):
                raise ConfigError(f"segment class {s.label + 1} outside 1..{len(self.class_names)}")
            if s.t_end <= s.t_start:
                raise ConfigError(f"segment of {self.class_names[s.label]!r}: ends ({s.t_end} µs) before it starts ({s.t_start} µs)")
        rows = np.array([(s.label, s.t_start, s.t_end) for s in segments], dtype=LABEL_DTYPE)
        path = self.folder / f"{stem}_labels.csv"
        self._write(lambda: _atomic(path, lambda tmp: write_labels(tmp, rows)), path.name)
        return path

    def add_trial(self, recording: str) -> str:
        """List ``recording`` (a file name in the folder) in the split :func:`assign_split` picks; returns it."""
        train, test = self.trials("train"), self.trials("test")
        if recording in train or recording in test:
            return "train" if recording in train else "test"
        split = assign_split(len(train), len(test), self.test_every)
        (train if split == "train" else test).append(recording)
        for name, items in (("train", train), ("test", test)):
            path = self.folder / f"trials_to_{name}.txt"
            text = "".join(f"{item}\n" for item in items)
            self._write(lambda p=path, t=text: _atomic(p, lambda tmp: tmp.write_text(t)), path.name)
        return split


def _atomic(path: Path, write) -> None:
    """Write through a temporary file and rename, so a full disk never leaves half a list behind."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# -- the protocol ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """A line (or part of one) to print once the stream reaches ``t_us`` (relative µs)."""

    t_us: int
    text: str
    newline: bool


def plan_protocol(n_classes: int, reps: int, seconds: float, rest: float, countdown: int, order: str,
                  rng: np.random.Generator) -> tuple[list[list[Segment]], int, int]:
    """The segments of every run, relative to the stream's start (µs), the run length and the tail.

    Run r spans ``[r · run_us, (r + 1) · run_us)``: per class a rest of ``rest`` s then the
    gesture of ``seconds`` s, then a tail rest of ``min(rest, 1 s)``.
    """
    gesture_us, rest_us = int(round(seconds * _US)), int(round(rest * _US))
    tail_us = min(rest_us, _US)
    run_us = n_classes * (rest_us + gesture_us) + tail_us
    runs = []
    for r in range(reps):
        if order == "shuffle":
            classes = [int(c) for c in rng.permutation(n_classes)]
        else:
            classes = [(r + k) % n_classes for k in range(n_classes)]
        t = r * run_us
        segments = []
        for c in classes:
            t += rest_us
            segments.append(Segment(c, t, t + gesture_us))
            t += gesture_us
        runs.append(segments)
    return runs, run_us, tail_us


def _prompts(runs: list[list[Segment]], names: tuple[str, ...], countdown: int, rest: float) -> list[Prompt]:
    out = []
    count = max(0, min(int(countdown), int(rest)))
    for segments in runs:
        for s in segments:
            for k in range(count, 0, -1):
                first = k == count
                out.append(Prompt(s.t_start - k * _US, (f"next: {names[s.label]} in " if first else " ") + f"{k}…", False))
            if not count:
                out.append(Prompt(s.t_start, f"next: {names[s.label]}", False))
            out.append(Prompt(s.t_start, f" go ({(s.t_end - s.t_start) / _US:g} s)", True))
    out.sort(key=lambda p: p.t_us)
    return out


# -- the command -------------------------------------------------------------------------------


def _class_names(text: str | None) -> tuple[str, ...]:
    if text is None:
        return DVS_GESTURE_CLASSES
    names = tuple(n.strip() for n in text.split(","))
    if not names or any(not n for n in names):
        raise ConfigError(f"--classes: expected comma-separated non-empty names, got {text[:60]!r}")
    if len(set(names)) != len(names):
        raise ConfigError("--classes: a name is given twice")
    if any("\n" in n or len(n) > 256 for n in names):
        raise ConfigError("--classes: a name is longer than 256 characters or holds a line break")
    return names


def _open(args: argparse.Namespace, runs: list[list[Segment]], tail_us: int):
    """The source, and the sensor µs the protocol's time 0 is at (None: the first chunk's start)."""
    if args.synthetic:
        from evstream.sources.synthetic import SyntheticSource

        schedule = [(s.label % len(DVS_GESTURE_CLASSES), s.t_start, s.t_end) for run in runs for s in run]
        tail_s = tail_us / _US
        source = SyntheticSource(seed=args.seed, realtime=args.realtime, schedule=schedule, rest_s=(tail_s, tail_s))
        source.camera_name = "evstream synthetic (rendered person, DVS emulator)"
        return source, 0
    from evstream.commands.run import _open_source

    ns = argparse.Namespace(camera=args.camera, network=args.network, synthetic=False, webcam=args.webcam,
                            replay=args.replay, start=None, end=None, loop=args.replay is not None)
    return _open_source(ns, 1.0 if args.realtime else None), None


def run(args: argparse.Namespace) -> int:
    names = _class_names(args.classes)
    for name in ("seconds", "rest"):
        value = getattr(args, name)
        if not np.isfinite(value) or value < (0 if name == "rest" else 0.05):
            raise ConfigError(f"--{name}: {value:g} s out of range (gesture >= 0.05 s, rest >= 0)")
    if args.reps < 1:
        raise ConfigError(f"--reps: must be >= 1, got {args.reps}")
    if args.countdown < 0:
        raise ConfigError(f"--countdown: must be >= 0, got {args.countdown}")
    dataset = UserDataset(args.out / "DvsGesture", names, args.test_every)
    rng = np.random.default_rng(args.seed)
    runs, run_us, tail_us = plan_protocol(len(names), args.reps, args.seconds, args.rest, args.countdown, args.order, rng)
    if args.synthetic:
        shown = ", ".join(f"{n} = {DVS_GESTURE_CLASSES[k % len(DVS_GESTURE_CLASSES)]}" for k, n in enumerate(names))
        extra = " (classes beyond the 11 renderable ones reuse gesture k mod 11)" if len(names) > 11 else ""
        print(f"synthetic person performs: {shown}{extra}", flush=True)
    if args.synthetic:  # so a model trained on the folder says what it saw (models.train.describe_training_data)
        marker = dataset.folder / "SYNTHETIC.txt"
        if not marker.exists():
            dataset._write(lambda: marker.write_text(
                "synthetic gestures: evstream collect --synthetic (a rendered person through a DVS emulator); "
                "no real recording\n"), marker.name)
    source, origin = _open(args, runs, tail_us)
    try:
        return _collect(args, source, origin, dataset, runs, run_us, names)
    finally:
        source.close()


def _collect(args, source, origin: int | None, dataset: UserDataset, runs, run_us: int, names) -> int:
    from evstream.io.aedat4 import Aedat4Writer

    camera = str(getattr(source, "camera_name", "") or "") or str(getattr(source, "name", "") or "evstream")
    sensor = source.sensor_size
    total = len(runs) * run_us
    print(f"collecting {len(runs)} runs x {len(names)} classes x {args.seconds:g} s from {getattr(source, 'name', camera)} "
          f"({sensor.width}x{sensor.height}) into {dataset.folder}; {total / _US:.0f} s of stream", flush=True)
    prompts = _prompts(runs, names, args.countdown, args.rest)
    next_prompt = 0
    writer = stem = None
    events_in: list[int] = []
    written = {"train": 0, "test": 0}
    base = origin

    def finish_run(r: int) -> None:
        nonlocal writer
        writer.close()
        writer = None
        segments = [Segment(s.label, s.t_start + base, s.t_end + base) for s in runs[r]]
        dataset.write_labels(stem, segments)
        split = dataset.add_trial(f"{stem}.aedat4")
        written[split] += 1
        empty = [names[s.label] for s, n in zip(runs[r], events_in, strict=True) if n == 0]
        print(f"[{r + 1}/{len(runs)}] {stem}.aedat4 -> {split}: {len(segments)} segments, "
              f"{sum(events_in):,} events in them", flush=True)
        if empty:
            print(f"warning: {stem}: no events during {', '.join(empty)} (camera covered or nobody moving?); "
                  "kept, check before training", file=sys.stderr)

    current = 0
    last_rel = 0
    try:
        for chunk in source:
            if base is None:
                base = int(chunk.t_start)
            rel_end = int(chunk.t_end) - base
            while next_prompt < len(prompts) and prompts[next_prompt].t_us < rel_end:
                p = prompts[next_prompt]
                print(p.text, end="\n" if p.newline else "", flush=True)
                next_prompt += 1
            events = chunk.events
            t = events["t"].astype(np.int64) - base
            while current < len(runs):
                if writer is None:
                    stem = dataset.new_stem("run")
                    try:
                        writer = Aedat4Writer(dataset.folder / f"{stem}.aedat4", sensor, camera_name=camera)
                    except EvstreamError as err:
                        raise ConfigError(f"{err}; the {sum(written.values())} runs written before are kept") from None
                    events_in = [0] * len(runs[current])
                end = (current + 1) * run_us
                cut = int(np.searchsorted(t, end))
                if cut:
                    for i, s in enumerate(runs[current]):
                        events_in[i] += int(np.count_nonzero((t[:cut] >= s.t_start) & (t[:cut] < s.t_end)))
                    try:
                        writer.write(events[:cut])
                    except OSError as err:
                        raise ConfigError(f"{writer.path}: cannot write ({err.strerror}); the recording up to its last "
                                          f"whole packet and the {sum(written.values())} runs before are kept") from None
                if rel_end < end:
                    break
                finish_run(current)
                events, t = events[cut:], t[cut:]
                current += 1
            last_rel = rel_end  # every event before it is written
            if current >= len(runs):
                break
    finally:
        if writer is not None:  # interrupted, a write fault or the stream ended: keep what was recorded, labelled
            writer.close()
            done = [Segment(s.label, s.t_start + base, s.t_end + base) for s in runs[current] if s.t_end <= last_rel]
            try:
                if done:
                    dataset.write_labels(stem, done)
            finally:
                print(f"\nnote: run {current + 1} incomplete: {stem}.aedat4 kept with {len(done)} labelled segments "
                      "(not in the trial lists)", file=sys.stderr)
    if current < len(runs):
        print(f"note: the source ended after {last_rel / _US:.1f} s of the protocol's {total / _US:.1f} s", file=sys.stderr)
    n = sum(written.values())
    print(f"wrote {dataset.folder}: {n} recordings ({written['train']} train, {written['test']} test; "
          f"lists now {len(dataset.trials('train'))} train, {len(dataset.trials('test'))} test), {len(names)} classes in "
          f"{CLASSES_FILE}", flush=True)
    if not dataset.trials("test"):
        print("note: no recording is held out yet (trials_to_test.txt is empty): collect at least 2 runs before training",
              file=sys.stderr)
    else:
        print(f"next: python main.py train --init spikformer_synth_stream_64 --data {args.out} --recipe stream", flush=True)
    return 0 if n == len(runs) else 2

