"""How many streams of the shipped model one machine serves in real time: batched vs separate.

Real time here is the application's: 50 ms time steps, so every stream needs 20 steps/s. The
windows are the bundled recording's (``recordings/gestures_128x128.aedat4``) binned as
``python main.py`` bins them for the shipped weights (``models.DEFAULT_WEIGHTS``: its step,
its window of ``default_window_steps`` steps, its input size), so the spikes are a trained
network's on real input. For each N:

- **batched**: one :class:`models.multistream.MultiStreamClassifier` of N streams, one call per
  round (N windows, ``[T, N, 2, H, W]``), what ``python main.py --replay A --replay B ...`` runs;
- **separate** (the anchor): N :class:`models.streaming.StreamingClassifier`, one call per
  stream per round, what N pipelines in one process would cost.

Both run the fused CPU form with ``--threads`` torch and numba threads (default 1). Figures are per stream: steps/s =
rounds/s × T; a stream is served in real time at ≥ 20. Each is given per second of wall time
(what the machine gave this process while it ran) and per CPU second of this process (all its
threads): on a machine shared with other work the wall figures say little, while the CPU-time
ones say what one free core's worth of CPU time serves (a free 2-core machine gives up to two
CPU seconds per second, less what threads lose to each other). Each measurement runs ``--seconds``
seconds of wall time after 2 warm-up rounds (default 1.5 s: 4 N × 2 forms ≈ 15-25 s in all).
The load average is printed: on a machine shared with other work, the figures are lower bounds.

    nice -n 19 python bench/streams.py
    python bench/streams.py --streams 1,2,4,8,16 --seconds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from evstream.binning import Binner  # noqa: E402
from evstream.sources.file import FileSource  # noqa: E402
from models.multistream import MultiStreamClassifier  # noqa: E402
from models.streaming import StreamingClassifier, decision_options, default_window_steps  # noqa: E402

RECORDING = Path(__file__).resolve().parents[1] / "recordings" / "gestures_128x128.aedat4"
REAL_TIME_STEPS_S = 20.0  # 50 ms steps


def _windows(step_us: int, steps: int, out: tuple[int, int], limit: int) -> list:
    binner = None
    windows = []
    with FileSource(RECORDING, speed=None) as source:
        binner = Binner(source.sensor_size, out, step_us, steps)
        for chunk in source:
            windows.extend(binner.push(chunk))
            if len(windows) >= limit:
                break
    return windows[:limit]


def _rate(step_round, seconds: float) -> tuple[float, float]:
    """Rounds per wall second and per CPU second (this process, every thread) of ``step_round(k)``
    (k = the round's number), after 2 warm-up rounds."""
    step_round(0)
    step_round(1)
    rounds, began, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - began < seconds:
        step_round(rounds + 2)
        rounds += 1
    return rounds / (time.perf_counter() - began), rounds / max(time.process_time() - cpu, 1e-9)


def _batched_round(classifier: MultiStreamClassifier, windows: list):
    """One round of N streams as one batched call (stream i takes window k + i)."""
    return lambda k: classifier.step([windows[(k + i) % len(windows)] for i in range(classifier.streams)])


def _separate_round(classifiers: list[StreamingClassifier], windows: list):
    """One round of N streams as N calls of N classifiers."""

    def step_round(k: int) -> None:
        for i, classifier in enumerate(classifiers):
            classifier.step(windows[(k + i) % len(windows)])

    return step_round


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1,2,4,8", help="comma-separated N (default 1,2,4,8)")
    parser.add_argument("--seconds", type=float, default=1.5, help="wall time per measurement (default 1.5)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch and numba threads per classifier (default 1: CPU time is then work, not the "
                             "spinning of starved threads)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.streams.split(",") if n.strip()]

    loaded = models.load_checkpoint(models.DEFAULT_WEIGHTS, device="cpu")
    pre = dict(loaded.preprocessing)
    height, width = (int(v) for v in loaded.model.config.img_size)
    model_steps = int(pre.get("steps") or loaded.model.config.steps)
    decision = dict(loaded.decision)
    step_us = int(pre["step_us"])
    steps = default_window_steps(decision, model_steps, step_us)
    options = decision_options({k: v for k, v in decision.items() if k != "window_steps"}, model_steps=model_steps)
    windows = _windows(step_us, steps, (width, height), 64)
    load = os.getloadavg()
    print(f"model {loaded.name} ({width}x{height} input), windows of {steps} steps x {step_us / 1000:g} ms from "
          f"{RECORDING.name}; {args.threads} thread(s) per classifier, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.2f} / {load[1]:.2f} (1 / 5 min), nice {os.nice(0)}")
    print("per stream, steps/s of wall time (what this machine gave now) and per CPU second (what one core's worth "
          "of CPU time gives, whatever else runs)")
    print(f"{'N':>3}  {'batched wall':>12}  {'separate wall':>13}  {'batched /CPU-s':>14}  {'separate /CPU-s':>15}  "
          f"{'batched/separate (CPU)':>22}  real time (wall | 1 CPU-s/s)")
    results = []
    for n in counts:
        batched = MultiStreamClassifier(loaded.model, n, device="cpu", threads=args.threads, **options)
        wall_b, cpu_b = _rate(_batched_round(batched, windows), args.seconds)
        separate = [StreamingClassifier(loaded.model, device="cpu", threads=args.threads, **options) for _ in range(n)]
        wall_s, cpu_s = _rate(_separate_round(separate, windows), args.seconds)
        row = {"streams": n, "batched_steps_s": wall_b * steps, "separate_steps_s": wall_s * steps,
               "batched_steps_cpu_s": cpu_b * steps, "separate_steps_cpu_s": cpu_s * steps}
        results.append(row)
        ok = ["yes" if row[k] >= REAL_TIME_STEPS_S else "no" for k in ("batched_steps_s", "batched_steps_cpu_s")]
        print(f"{n:>3}  {row['batched_steps_s']:>12.1f}  {row['separate_steps_s']:>13.1f}  "
              f"{row['batched_steps_cpu_s']:>14.1f}  {row['separate_steps_cpu_s']:>15.1f}  {cpu_b / cpu_s:>22.2f}  "
              f"{ok[0]} | {ok[1]}")
    for key, what in (("batched_steps_s", "on this machine's wall clock now"),
                      ("batched_steps_cpu_s", "with one CPU second per second (one free core)")):
        served = [r["streams"] for r in results if r[key] >= REAL_TIME_STEPS_S]
        print(f"most streams in real time (>= {REAL_TIME_STEPS_S:g} steps/s each, batched) {what}: "
              f"{max(served) if served else 0} of those measured")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": loaded.name, "steps": steps, "step_us": step_us,
                                               "load_average": load, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
