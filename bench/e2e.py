"""End to end: a replay through the whole application (threads, queues, ZeroMQ) to a subscriber.

Run from a checkout: ``python bench/e2e.py`` (about 1.5 minutes on 2 idle cores; ``--soak 600`` for
the issue's ten-minute soak). Prints:

1. throughput, replay as fast as possible: windows/s and real-time factor of the
   :class:`~evstream.pipeline.Pipeline` (FileSource → Binner → StreamingClassifier → Publisher,
   with a subscriber attached) against the **anchor**, a bare loop of the same FileSource, Binner
   and classifier with no threads, queues or sockets; runs alternate (anchor, pipeline, ...) so
   both see the same machine load; ratio pipeline / anchor;
2. latency, paced and looped replay (``--latency-speed``, default ×4, for ``--latency-seconds``,
   default 30; the model keeps up, so the queues stay empty): from the
   moment the binner closes a window to the moment a subscriber (another process;
   ``time.perf_counter``, CLOCK_MONOTONIC, on both sides) receives its prediction, p50 / p99, with the model's
   compute time (``infer_ms``) shown apart and what the pipeline adds beyond it (target: ≤ 2 ms
   at p99);
3. soak (``--soak S``, default 30 s): looped replay as fast as possible with one reading
   subscriber on every topic and one stalled subscriber (connected, never reads, on every
   topic); the process's resident memory after the first sixth of the run (the first minute for
   runs of 6 minutes and more) against the end — the high-water mark must keep the stalled
   subscriber from growing it (target: within 10 %).

The model is the shipped checkpoint when present, else an untrained ``spikformer_2_64`` (same
compute; its predictions are meaningless). Figures depend on the machine's load; compare the
ratios, which come from the same run.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evstream.binning import Binner, warmup  # noqa: E402
from evstream.pipeline import Pipeline, PipelineConfig  # noqa: E402
from evstream.protocol import TOPICS  # noqa: E402
from evstream.publish import Publisher, Subscriber  # noqa: E402
from evstream.sources.file import FileSource  # noqa: E402
from models import DEFAULT_WEIGHTS, create_model, list_weights, load_checkpoint  # noqa: E402
from models.streaming import StreamingClassifier  # noqa: E402

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
RECORDING = REPO / "recordings" / "gestures_128x128.aedat4"
ADDRESS = "tcp://127.0.0.1:{port}"


def rss_mib() -> float:
    """Resident set size of this process, MiB (Linux /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def build(name: str | None, step_ms: float | None, steps: int | None, sensor, fuse: bool | None = None):
    """(classifier factory, binner factory, label): fresh state for every run."""
    if name is None:
        name = DEFAULT_WEIGHTS if DEFAULT_WEIGHTS in list_weights() else "spikformer_2_64"
    if name in list_weights():
        loaded = load_checkpoint(name)
        model, pre, label = loaded.model, loaded.preprocessing, f"{name} (shipped weights)"
    else:
        model, pre, label = create_model(name), {}, f"{name} (untrained)"
    height, width = model.config.img_size
    t = steps or int(pre.get("steps") or model.config.steps)
    step_us = int(round(step_ms * 1000)) if step_ms else int(pre.get("step_us") or 50_000)

    def classifier() -> StreamingClassifier:
        clf = StreamingClassifier(model, device="auto", fuse=fuse)
        clf.reset()
        return clf

    def binner() -> Binner:
        return Binner(sensor, (width, height), step_us, t)

    return classifier, binner, f"{label}, {t} steps x {step_us / 1000:g} ms"


def anchor_run(path: Path, classifier, binner) -> tuple[int, float, float]:
    """Bare loop: (windows, wall s, sensor s), run on a worker thread as the pipeline's model is.

    On a loaded machine torch's CPU kernels ran an order of magnitude slower on the main thread
    than on a worker thread in this repository's measurements (OpenMP contention), so both sides
    of the ratio run their model off the main thread.
    """
    result: list = []
    worker = threading.Thread(target=lambda: result.append(_bare_loop(path, classifier, binner)))
    worker.start()
    worker.join()
    return result[0]


def _bare_loop(path: Path, classifier, binner) -> tuple[int, float, float]:
    clf, bn = classifier(), binner()
    windows = 0
    with FileSource(path, speed=None) as source:
        began = time.perf_counter()  # opened (index read) outside the timing, as for the pipeline
        first = last = None
        for chunk in source:
            first = chunk.t_start if first is None else first
            last = chunk.t_end
            for window in bn.push(chunk):
                clf.step(window)
                windows += 1
    return windows, time.perf_counter() - began, (last - first) / 1e6


# The subscriber runs in its own process, as a user's program would, so it shares no GIL with the
# pipeline. time.perf_counter is CLOCK_MONOTONIC on Linux: one clock for both processes.
_RECEIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from evstream.publish import Subscriber
sub = Subscriber(sys.argv[2], tuple(sys.argv[3].split(",")))
print("ready", flush=True)
arrivals = []
while True:
    msg = sub.recv(100)
    if msg is None:
        continue
    if msg.topic == "pred":
        arrivals.append((msg.seq, time.perf_counter(), msg.data["infer_ms"]))
    elif msg.topic == "status" and msg.data["state"] in ("ended", "error"):
        break
for seq, t, infer in arrivals:
    print(seq, repr(t), repr(infer))
print("gaps", sub.stats["pred"].gaps, flush=True)
"""


class Receiver:
    """A subscriber process that stamps every prediction's arrival (perf_counter) by seq."""

    def __init__(self, address: str, topics: tuple[str, ...]) -> None:
        topics = tuple(dict.fromkeys((*topics, "pred", "status")))
        self.process = subprocess.Popen([sys.executable, "-c", _RECEIVER, str(REPO), address, ",".join(topics)],
                                        stdout=subprocess.PIPE, text=True)
        self.process.stdout.readline()  # "ready": connected and subscribed
        self.arrivals: dict[int, tuple[float, float]] = {}
        self.gaps = 0

    def finish(self) -> None:
        """Wait for the process (it ends on the final status) and read what it saw."""
        out, _ = self.process.communicate(timeout=60)
        for line in out.splitlines():
            fields = line.split()
            if fields[0] == "gaps":
                self.gaps = int(fields[1])
            else:
                self.arrivals[int(fields[0])] = (float(fields[1]), float(fields[2]))


def pipeline_run(path: Path, classifier, binner, port: int, *, speed: float | None, loop: bool = False,
                 topics=("pred", "stats", "status"), timings: bool = True, duration_s: float | None = None,
                 stalled: bool = False, on_tick=None):
    """One pipeline run with a Receiver (and optionally a stalled subscriber).

    Returns:
        (pipeline, receiver, wall s from start to the last prediction's publication — subscriber
        connection and teardown excluded, as the anchor has neither).
    """
    address = ADDRESS.format(port=port)
    publisher = Publisher(address)
    source = FileSource(path, speed=speed, loop=loop)
    config = PipelineConfig(model_name="bench", speed=speed, loop=loop, wait_subscribers=2 if stalled else 1)
    pipeline = Pipeline(source, classifier(), binner(), publisher, config=config)
    receiver = Receiver(address, topics)
    stalled_sub = Subscriber(address, TOPICS, rcvhwm=1) if stalled else None
    publisher.wait_subscribers("pred", config.wait_subscribers, timeout_s=30)
    pipeline.keep_timings = timings  # the soak keeps none: its memory is what it measures
    began = time.perf_counter()
    pipeline.start()
    while not pipeline.finished:
        time.sleep(0.05 if on_tick is None else 1.0)
        if on_tick is not None:
            on_tick(time.perf_counter() - began)
        if duration_s is not None and time.perf_counter() - began >= duration_s:
            pipeline.stop("soak over")
    pipeline.wait()
    wall = (pipeline.timings[-1].published if pipeline.timings else time.perf_counter()) - began
    receiver.finish()
    if stalled_sub is not None:
        stalled_sub.close()
    publisher.close()
    return pipeline, receiver, wall


def pct(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if len(values) else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recording", type=Path, default=RECORDING, help="recording to replay (default: the bundled one)")
    parser.add_argument("--model", default=None, help="shipped weights or registered variant (default: shipped, else spikformer_2_64)")
    parser.add_argument("--step-ms", type=float, default=None, help="time step, ms (default: the checkpoint's, else 50)")
    parser.add_argument("--steps", type=int, default=None, help="steps per window (default: the model's)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="throughput runs of each kind, alternating (default 2)")
    parser.add_argument("--latency-speed", type=float, default=4.0, help="replay speed of the latency run (default 4)")
    parser.add_argument("--latency-seconds", type=float, default=30.0,
                        help="wall time of the (looped) latency run, s (default 30)")
    parser.add_argument("--soak", type=float, default=30.0, metavar="SECONDS", help="soak duration (default 30; 0 skips)")
    parser.add_argument("--only", choices=("throughput", "latency", "soak"), default=None, help="run one part only")
    parser.add_argument("--no-fuse", action="store_true", help="the classifier runs the model as built, not fused")
    parser.add_argument("--port", type=int, default=47300, help="first of the loopback ports used (default 47300)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    warmup()
    with FileSource(args.recording, speed=None) as probe:
        sensor = probe.sensor_size
        duration_s = probe.duration_us / 1e6
    classifier, binner, label = build(args.model, args.step_ms, args.steps, sensor, fuse=False if args.no_fuse else None)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"recording {args.recording.name}: {sensor}, {duration_s:.1f} s; model {label}; {device}, {args.threads} threads")
    anchor_run(args.recording, classifier, binner)  # warm caches, allocator and kernels

    if args.only in (None, "throughput"):
        throughput(args, classifier, binner, duration_s)
    if args.only in (None, "latency"):
        latency(args, classifier, binner)
    if args.soak > 0 and args.only in (None, "soak"):
        soak(args, classifier, binner)
    return 0


def throughput(args, classifier, binner, duration_s: float) -> None:
    print("\n1. throughput, replay as fast as possible")
    anchors, pipes = [], []
    for i in range(args.repeats):
        windows, wall, sensor_s = anchor_run(args.recording, classifier, binner)
        anchors.append((windows / wall, sensor_s / wall))
        pipeline, receiver, wall = pipeline_run(args.recording, classifier, binner, args.port + i, speed=None)
        got = len(receiver.arrivals)
        pipes.append((pipeline.windows / wall, duration_s / wall))
        print(f"   run {i + 1}: anchor {anchors[-1][0]:7.1f} windows/s (x{anchors[-1][1]:.1f} real time) | "
              f"pipeline {pipes[-1][0]:7.1f} windows/s (x{pipes[-1][1]:.1f}), {pipeline.windows} windows, "
              f"{got} predictions received, {receiver.gaps} gaps")
    a = float(np.median([w for w, _ in anchors]))
    p = float(np.median([w for w, _ in pipes]))
    print(f"   median: anchor {a:.1f} windows/s, pipeline {p:.1f} windows/s; ratio pipeline / anchor {p / a:.3f}")



def latency(args, classifier, binner) -> None:
    print(f"\n2. latency, paced replay x{args.latency_speed:g}: window closed -> prediction received")
    pipeline, receiver, _ = pipeline_run(args.recording, classifier, binner, args.port + 50, speed=args.latency_speed,
                                         loop=True, duration_s=args.latency_seconds)
    total, infer, added, queued = [], [], [], []
    for seq, timing in enumerate(pipeline.timings):
        if seq not in receiver.arrivals:
            continue
        arrived, infer_ms = receiver.arrivals[seq]
        latency_ms = (arrived - timing.closed) * 1000
        total.append(latency_ms)
        infer.append(infer_ms)
        added.append(latency_ms - infer_ms)
        queued.append((timing.started - timing.closed) * 1000)
    print(f"   {len(total)} windows: end to end p50 {pct(total, 50):.2f} ms, p99 {pct(total, 99):.2f} ms")
    print(f"   model compute (infer_ms) p50 {pct(infer, 50):.2f} ms, p99 {pct(infer, 99):.2f} ms")
    print(f"   pipeline adds (end to end - infer_ms) p50 {pct(added, 50):.2f} ms, p99 {pct(added, 99):.2f} ms "
          f"(target <= 2 ms at p99); of it, waiting in the window queue p99 {pct(queued, 99):.2f} ms")
    print(f"   ratio end to end / model compute at p50: {pct(total, 50) / pct(infer, 50):.3f}")


def soak(args, classifier, binner) -> None:
    reference_at = 60.0 if args.soak >= 360 else args.soak / 6
    samples: list[tuple[float, float]] = []

    def tick(elapsed: float) -> None:
        samples.append((elapsed, rss_mib()))

    print(f"\n3. soak {args.soak:g} s: looped replay as fast as possible, a reader on every topic and a stalled subscriber")
    pipeline, receiver, wall = pipeline_run(args.recording, classifier, binner, args.port + 100, speed=None,
                                            loop=True, topics=TOPICS, timings=False, duration_s=args.soak, stalled=True,
                                            on_tick=tick)
    ref = next((r for t, r in samples if t >= reference_at), samples[0][1] if samples else float("nan"))
    end = samples[-1][1] if samples else float("nan")
    peak = max((r for _, r in samples), default=float("nan"))
    print(f"   {pipeline.windows} windows in {wall:.0f} s ({pipeline.windows / wall:.1f} windows/s), "
          f"{len(receiver.arrivals)} predictions received, {receiver.gaps} gaps (reader)")
    print(f"   RSS at {reference_at:.0f} s {ref:.1f} MiB, at the end {end:.1f} MiB, peak {peak:.1f} MiB; "
          f"end / reference {end / ref:.3f} (target within 10 %)")


if __name__ == "__main__":
    sys.exit(main())
