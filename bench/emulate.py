"""Benchmark of the DVS emulation path: ``python bench/emulate.py [--frames N] [--seconds S]``.

Each figure is given by wall clock and by this process's CPU time: on a shared machine the CPU
figure is what the code costs, the wall figure what a user saw during this run.

Figures:

- emulator frames/s sustained on rendered gesture frames at 128×128 and 640×480 (frames
  rendered beforehand, so only the emulator is timed), its events/s, and the real-time factor
  at 30 fps (target: ≥ 4× real time at 640×480, i.e. ≥ 120 frames/s);
- renderer frames/s (the person model alone);
- end to end: synthetic gesture events generated per second of wall time
  (``synthesize_recording`` at 128×128, 100 fps render) and the stream's real-time factor.

Anchor, run side by side on the same frames: a plain vectorised numpy implementation of the same
per-pixel threshold rule (log intensity, reference, ON/OFF counts, reference update) without
timestamp interpolation, mismatch, refractory period or noise — every event of a frame gets the
frame time. The ratio says what the numba kernel costs or saves while doing more.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from evstream.events import EVENT_DTYPE, SensorSize  # noqa: E402
from evstream.sources.emulator import DvsEmulator  # noqa: E402
from evstream.sources.gestures import GestureSequence, synthesize_recording  # noqa: E402


class NumpyThresholdEmulator:
    """Anchor: the bare threshold rule, vectorised numpy, all events of a frame at the frame time."""

    def __init__(self, threshold: float = 0.2, eps: float = 0.01) -> None:
        self.threshold = threshold
        self.eps = eps
        self.ref: np.ndarray | None = None

    def push(self, frame: np.ndarray, t_us: int) -> np.ndarray:
        log = np.log(frame.astype(np.float64) + self.eps)
        if self.ref is None:
            self.ref = log
            return np.zeros(0, dtype=EVENT_DTYPE)
        diff = log - self.ref
        n_on = np.floor(np.maximum(diff, 0.0) / self.threshold).astype(np.int64)
        n_off = np.floor(np.maximum(-diff, 0.0) / self.threshold).astype(np.int64)
        self.ref += (n_on - n_off) * self.threshold
        width = frame.shape[1]
        pixels_on = np.repeat(np.arange(frame.size), n_on.ravel())
        pixels_off = np.repeat(np.arange(frame.size), n_off.ravel())
        out = np.zeros(len(pixels_on) + len(pixels_off), dtype=EVENT_DTYPE)
        pixels = np.concatenate([pixels_on, pixels_off])
        out["t"] = t_us
        out["x"] = pixels % width
        out["y"] = pixels // width
        out["p"][: len(pixels_on)] = 1
        return out


def rendered_frames(size: SensorSize, n: int, fps: float) -> list[np.ndarray]:
    seq = GestureSequence(size, seed=1, lighting="natural")
    seq.add(3, int(n / fps * 1e6) + 1)  # right arm circles: large, fast motion
    return [frame for _, frame in seq.frames(fps, 0, int((n - 1) / fps * 1e6))]


def time_emulator(emulator, frames: list[np.ndarray], fps: float) -> tuple[float, float, int]:
    """(wall s, CPU s of this process, events) for pushing ``frames[1:]``."""
    emulator.push(frames[0], 0)
    events = 0
    wall, cpu = time.perf_counter(), time.process_time()
    for i, frame in enumerate(frames[1:], start=1):
        events += len(emulator.push(frame, round(i * 1e6 / fps)))
    return time.perf_counter() - wall, time.process_time() - cpu, events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=150, help="frames per size (default 150)")
    parser.add_argument("--seconds", type=float, default=20.0, help="end-to-end recording length, s (default 20)")
    args = parser.parse_args()
    fps = 30.0
    print(f"evstream emulation benchmark: {args.frames} frames per size at {fps:.0f} fps content, "
          f"numpy {np.__version__}")
    # Warm-up compiles the numba kernels (or loads them from the cache) outside the timings.
    warm = rendered_frames(SensorSize(32, 24), 3, fps)
    time_emulator(DvsEmulator(SensorSize(32, 24)), warm, fps)

    for size in (SensorSize(128, 128), SensorSize(640, 480)):
        start = time.perf_counter()
        frames = rendered_frames(size, args.frames, fps)
        render_s = time.perf_counter() - start
        numba_wall, numba_cpu, numba_events = time_emulator(DvsEmulator(size, seed=0), frames, fps)
        numpy_wall, numpy_cpu, numpy_events = time_emulator(NumpyThresholdEmulator(), frames, fps)
        n = len(frames) - 1
        print(f"\n{size}:  (frames/s by wall clock | by this process's CPU time)")
        print(f"  renderer            {len(frames) / render_s:9.1f} frames/s")
        for name, wall, cpu, count in (("DvsEmulator (numba)", numba_wall, numba_cpu, numba_events),
                                       ("numpy anchor       ", numpy_wall, numpy_cpu, numpy_events)):
            print(f"  {name} {n / wall:8.1f} | {n / cpu:8.1f} frames/s  {count / cpu / 1e6:6.2f} Mev/s (CPU)  "
                  f"{count / n:8.0f} ev/frame  {n / wall / fps:5.1f}x | {n / cpu / fps:5.1f}x real time at {fps:.0f} fps")
        print(f"  ratio numba / numpy anchor, frames/s: {numpy_wall / numba_wall:.2f}x wall, "
              f"{numpy_cpu / numba_cpu:.2f}x CPU")

    size = SensorSize(128, 128)
    n_gestures = max(1, round(args.seconds / 3.0))
    start, cpu = time.perf_counter(), time.process_time()
    events, labels = synthesize_recording(size, n_gestures, seed=0, fps=100.0, gesture_s=(1.5, 3.0), rest_s=(0.5, 1.0))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    stream_s = (int(events["t"][-1]) + 1) / 1e6
    print(f"\nend to end, synthesize_recording {size}, 100 fps render, {len(labels)} gestures:")
    print(f"  {len(events):,} events over {stream_s:.1f} s of stream in {wall:.2f} s wall ({cpu:.2f} s CPU): "
          f"{len(events) / wall / 1e6:.2f} Mev/s generated, {stream_s / wall:.1f}x real time "
          f"(stream rate {len(events) / stream_s / 1e3:.0f} kev/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
