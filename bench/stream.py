"""Streaming latency of the StreamingClassifier: binning + inference per window, capture off/on.

Run from a checkout: ``python bench/stream.py`` (about 2–3 minutes on 2 idle cores). Prints:

1. per-window latency p50 / p99 (binning + inference) and ms per time step, for 16-step and
   1-step windows, capture off and on, on ``--threads`` CPU threads, for the shipped model (when
   present) and ``spikformer_2_256`` at 128×128 — target ≤ 6 ms per step for spikformer_2_256;
2. the anchor: spikingjelly's model-zoo Spikformer of the same size (2 blocks, D 256, 16 heads,
   11 classes, 128×128; ``spikingjelly.activation_based.model.spikformer``), state carried the same
   way, timed in the same process on the same windows; ratio ours / zoo per step (reference:
   ~13 ms per step eager on 2 cores, shared/reference/spikformer.md §7.2); ours is timed as built
   and after ``fuse_for_inference`` (BN folded, channels-last stem, numba first stage and LIF
   loops), the form ``StreamingClassifier`` runs on CPU by default;
3. capture-off overhead: ``StreamingClassifier.step`` (decisions; with and without the firing
   rates and energy estimate) against the bare network call inside it, same windows — target ≤ 2 %;
4. real-time factor replaying ``recordings/gestures_128x128.aedat4`` as fast as possible at
   20 steps/s (50 ms steps) through FileSource → Binner → StreamingClassifier — target ≥ 5×;
5. with a CUDA device, the window latencies and the replay again on it.

Models without trained weights get BatchNorm gains that make spikes flow (with the default
initialisation no spike reaches the head), so capture and energy see realistic activity.
Figures depend on the machine's load: compare the ratios, which come from the same run. On a
busy 2-core machine two torch threads spin against other processes (5–10× slower than one
thread in our runs); try ``--threads 1`` there. ``--compile`` adds torch.compile timings of the
same form (cold: ~20 minutes per window length for the fused spikformer_2_256 on 2 cores, which
then ran 5.6 ms per step against 4.8 eager); ``--no-fuse`` times the classifier on the model as built.
Every model in the run, anchors included, runs with glibc keeping freed memory
(``models.streaming.retain_freed_memory``, as the classifier sets it).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evstream.binning import Binner  # noqa: E402
from evstream.events import EventChunk, SensorSize  # noqa: E402
from evstream.io import read_events  # noqa: E402
from models import DEFAULT_WEIGHTS, create_model, list_weights, load_checkpoint  # noqa: E402
from models.online_eval import replay  # noqa: E402
from models.streaming import StreamingClassifier, retain_freed_memory  # noqa: E402

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
RECORDING = REPO / "recordings" / "gestures_128x128.aedat4"
STEP_US = 50_000  # 20 steps/s


def spiking(model: torch.nn.Module) -> torch.nn.Module:
    """Untrained model with BN gain 4 and bias 0.3, so spikes reach every layer."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                module.weight.fill_(4.0)
                module.bias.fill_(0.3)
    return model.eval()


def load(name: str) -> tuple[torch.nn.Module, str]:
    if name in list_weights():
        return load_checkpoint(name).model, f"{name} (shipped weights)"
    return spiking(create_model(name)), f"{name} (untrained, BN-scaled)"


def window_slices(events: np.ndarray, steps: int, count: int) -> list[EventChunk]:
    """Consecutive chunks of ``steps × STEP_US`` from the recording's first event, skipping the first second."""
    t0 = int(events["t"][0]) + 1_000_000
    span = steps * STEP_US
    chunks = []
    for k in range(count):
        lo, hi = t0 + k * span, t0 + (k + 1) * span
        a, b = np.searchsorted(events["t"], [lo, hi])
        chunks.append(EventChunk(events[a:b], lo, hi))
    return chunks


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def latency(
    model, events, steps: int, count: int, capture: bool, threads: int, compile: bool, fuse: bool, device: str = "cpu"
) -> dict:
    """Per-window binning + inference times (ms) over ``count`` windows after 2 warm-up windows
    (each ``step`` returns host-side numbers, so CUDA work is finished when it returns)."""
    h, w = model.config.img_size
    clf = StreamingClassifier(model, device=device, threads=threads, compile=compile, fuse=fuse)
    clf.capture(capture)
    binner = Binner(SensorSize(128, 128), (w, h), step_us=STEP_US, steps=steps)
    total, infer, frames = [], [], []
    for i, chunk in enumerate(window_slices(events, steps, count + 2)):
        began = time.perf_counter()
        [window] = binner.push(chunk)
        binned = time.perf_counter()
        clf.step(window)
        done = time.perf_counter()
        if i >= 2:
            total.append((done - began) * 1000)
            infer.append((done - binned) * 1000)
        frames.append(window.frames)
    return {
        "p50": pct(total, 50),
        "p99": pct(total, 99),
        "bin_p50": pct([t - i for t, i in zip(total, infer, strict=True)], 50),
        "per_step": pct(total, 50) / steps,
        "frames": frames,
    }


def zoo_model() -> torch.nn.Module:
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.model.spikformer import Spikformer as ZooSpikformer

    zoo = ZooSpikformer(
        T=16, in_channels=2, img_size_h=128, img_size_w=128, patch_size=16, num_classes=11,
        embed_dims=256, num_heads=16, mlp_ratio=4.0, depths=2,
    )  # fmt: skip
    functional.set_step_mode(zoo, "m")
    return spiking(zoo)


def timed_calls(fn, inputs: list[torch.Tensor]) -> list[float]:
    out = []
    with torch.inference_mode():
        for x in inputs:
            began = time.perf_counter()
            fn(x)
            out.append((time.perf_counter() - began) * 1000)
    return out


def anchor(name: str, frames: list[np.ndarray], steps: int) -> tuple[float, float, float]:
    """Median ms per step of bare models on the same windows, interleaved: ours after
    ``fuse_for_inference`` (BN folded, channels-last stem, numba kernels), ours as built, and the zoo's."""
    from spikingjelly.activation_based import functional

    fast, _ = load(name)
    fast.fuse_for_inference()
    plain, _ = load(name)
    zoo = zoo_model()
    inputs = [torch.from_numpy(f).unsqueeze(1) for f in frames]
    times: dict[str, list[float]] = {"fast": [], "plain": [], "zoo": []}
    calls = {"fast": fast.step_logits, "plain": plain.step_logits, "zoo": zoo}
    for net in (fast, plain, zoo):
        functional.reset_net(net)
    for i, x in enumerate(inputs):
        for key, fn in calls.items():
            took = timed_calls(fn, [x])
            if i >= 2:
                times[key] += took
    fast_ms, plain_ms, zoo_ms = (pct(times[k], 50) / steps for k in ("fast", "plain", "zoo"))
    return fast_ms, plain_ms, zoo_ms


def overhead(model, frames: list[np.ndarray], threads: int, fuse: bool) -> tuple[float, float, float]:
    """Median ms of the bare network call, of ``StreamingClassifier.step`` with capture off and
    energy off, and of it with energy on (per-layer rates and the energy estimate).

    One classifier, so one copy of the network and its caches: the windows alternate between
    energy off and on (``clf.energy``), and the bare figure is the network call inside the
    energy-off steps (timed around ``clf._forward``). Each window is fed three times over, so
    the medians see 3× as many windows as the latency."""
    clf = StreamingClassifier(model, device="cpu", threads=threads, fuse=fuse)
    forward, inside = clf._forward, []

    def timed_forward(*args, **kwargs):
        began = time.perf_counter()
        out = forward(*args, **kwargs)
        inside.append((time.perf_counter() - began) * 1000)
        return out

    clf._forward = timed_forward
    bare, light, energy = [], [], []
    inputs = [torch.from_numpy(f) for f in frames]
    for k, x in enumerate(inputs * 3):
        clf.energy = k % 2 == 1
        began = time.perf_counter()
        clf.step(x, t_start=k * STEP_US * len(x))
        took = (time.perf_counter() - began) * 1000
        if k >= 2:
            (energy if clf.energy else light).append(took)
            if not clf.energy:
                bare.append(inside[-1])
    return pct(bare, 50), pct(energy, 50), pct(light, 50)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--window-steps", type=int, nargs="+", default=[16, 1], help="window lengths (default 16 1)")
    parser.add_argument("--windows16", type=int, default=8, help="multi-step windows timed per case (default 8)")
    parser.add_argument("--windows1", type=int, default=40, help="1-step windows timed per case (default 40)")
    parser.add_argument(
        "--models", nargs="*", default=None, help="default: shipped weights (if any) and spikformer_2_256"
    )
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (minutes of compilation)")
    parser.add_argument("--no-fuse", action="store_true", help="classifiers run the model as built, not fused")
    parser.add_argument("--no-replay", action="store_true", help="skip the real-time replay")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    allocator = "glibc keeps freed memory" if retain_freed_memory() else "default allocator"
    fuse = not args.no_fuse
    events = read_events(RECORDING)
    names = args.models or ([DEFAULT_WEIGHTS] if DEFAULT_WEIGHTS in list_weights() else []) + ["spikformer_2_256"]
    print(
        f"torch {torch.__version__}, {args.threads} threads, {allocator}, classifier "
        f"{'fused' if fuse else 'unfused'}, recording {RECORDING.name}: {len(events)} events"
    )
    print(f"steps of {STEP_US // 1000} ms (20 steps/s); latency = binning + StreamingClassifier.step, per window")
    modes = [False, True] if args.compile else [False]
    for name in names:
        model, label = load(name)
        print(f"\n== {label}, input {model.config.img_size[1]}x{model.config.img_size[0]}")
        for steps in args.window_steps:
            count = args.windows16 if steps > 1 else args.windows1
            per_step = {}
            for compiled in modes:
                for capture in (False, True):
                    r = latency(model, events, steps, count, capture, args.threads, compiled, fuse)
                    per_step[compiled, capture] = r["per_step"]
                    tag = f"T={steps:<2} capture {'on ' if capture else 'off'}{' compiled' if compiled else ''}"
                    print(
                        f"  {tag}: window p50 {r['p50']:8.2f} ms  p99 {r['p99']:8.2f} ms  "
                        f"(binning p50 {r['bin_p50']:.2f} ms)  = {r['per_step']:.2f} ms/step"
                    )
            if args.compile:
                ratio = per_step[True, False] / per_step[False, False]
                print(f"  T={steps:<2} compiled / eager (capture off): {ratio:.2f}")
            bare, wrapped, light = overhead(model, r["frames"], args.threads, fuse)
            print(
                f"  T={steps:<2} capture-off overhead: bare network {bare:.2f} ms, StreamingClassifier.step "
                f"{light:.2f} ms with energy=False ({100 * (light / bare - 1):+.1f} %, target <= 2 %), "
                f"{wrapped:.2f} ms with the energy estimate ({100 * (wrapped / bare - 1):+.1f} %)"
            )
            if name == "spikformer_2_256":
                fast, plain, zoo = anchor(name, r["frames"], steps)
                print(
                    f"  T={steps:<2} anchor, bare models: ours fused {fast:.2f} ms/step (as built: "
                    f"{plain:.2f}, ratio {fast / plain:.2f}), spikingjelly zoo Spikformer-2-256 {zoo:.2f} ms/step "
                    f"-> ratio ours/zoo {fast / zoo:.2f} (target: <= 6 ms/step)"
                )
    devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    if "cuda" in devices:
        print(f"\n== CUDA ({torch.cuda.get_device_name()}), the same windows, eager")
        for name in names:
            model, label = load(name)
            for steps in args.window_steps:
                count = args.windows16 if steps > 1 else args.windows1
                for capture in (False, True):
                    r = latency(model, events, steps, count, capture, args.threads, False, False, "cuda")
                    print(
                        f"  {label} T={steps:<2} capture {'on ' if capture else 'off'}: window p50 {r['p50']:8.2f} ms  "
                        f"p99 {r['p99']:8.2f} ms  = {r['per_step']:.2f} ms/step"
                    )
    else:
        print("\nno CUDA device: the GPU figures are not measured")
    if not args.no_replay:
        print("\n== real-time replay, as fast as possible (FileSource -> Binner -> StreamingClassifier)")
        for device in devices:
            for name in names:
                model, label = load(name)
                clf = StreamingClassifier(model, device=device, threads=args.threads, fuse=fuse and device == "cpu")
                h, w = model.config.img_size
                pre = {"out_size": [h, w], "steps": 16, "step_us": STEP_US}
                dec = replay(RECORDING, clf, pre)
                rtf = dec.duration_s / dec.wall_s
                print(
                    f"  {device} {label}: {dec.duration_s:.1f} s of recording in {dec.wall_s:.1f} s -> {rtf:.1f}x "
                    f"real time (target >= 5x), {dec.windows} windows"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
