"""The GPU check in one prepared command: exactness, latency, training throughput, streams, memory.

Run from a checkout: ``python bench/gpu.py --out gpu.json`` (one GPU; sized to finish in well
under 8 minutes on an H200) or ``python bench/gpu.py --device cpu --small --out cpu.json`` (the CI
form: small models, few iterations, well under a minute). Prints one table and writes the figures
as JSON to ``--out`` after every section, so a run cut short keeps what it measured.

Sections (``--sections``, default all):

1. ``exactness``: the classifier on the device (the path CUDA runs: the model as built, no numba
   kernels) against the CPU paths users run (the fused default, and the model as built), fed the
   same stream of windows with the state carried: largest per-step logit difference and the
   agreement of per-step argmax, window argmax (of the mean logits, the offline clip decision)
   and the filtered decisions (``Prediction.label`` per window, ``step_labels`` per step).
   Target on CUDA: window decisions agree with CPU fp32 on >= 99.5 % of windows.
2. ``windows``: windows of 1, 4 and 16 steps against one pass over the same steps, on the device
   (state carried across windows). Target: logits within 1e-4 in fp32.
3. ``latency``: ``StreamingClassifier.step`` at batch 1 (the default path: energy estimate on;
   also with it off), per-step ms p50 / p99 for windows of T = 1 and T = 16 (``--compile`` adds
   ``compile=True``). Target: T = 1, spikformer_2_256 p50 <= 1 ms on CUDA.
4. ``training``: ``models.train.train_one_epoch`` (the loop ``python main.py train`` runs) on
   random frames, ``spikformer_2_256`` at T = 16, 128×128, batch 16 and 64, AMP off and on
   (AMP is CUDA-only in models/train.py: skipped on CPU); samples/s and the projected wall time
   of the paper's 200 epochs over DVS128 Gesture's 1,176 training clips (training passes only,
   no evaluation, no data loading). Target: >= 1,000 samples/s at batch 64 with AMP.
5. ``streams``: :class:`models.multistream.MultiStreamClassifier` serving N streams of 4-step
   windows of 50 ms (20 steps/s: one batched round must take <= 200 ms), N doubling from 1 until a
   round falls behind, then bisected; the anchor: N separate StreamingClassifiers stepped one
   after another in the same run (up to N = 64), and the ratio; also N batched streams against N
   separate classifiers on the device (largest logit difference). Model only: the frames are
   made beforehand (no binning, no publishing). Target: >= 256 streams of spikformer_2_256 on
   one GPU.
6. peak GPU memory (``torch.cuda.max_memory_allocated``) per section and overall.

The JSON records whether cuDNN may use TF32 for convolutions (PyTorch's default: yes, which is
what the classifier runs with); ``--no-tf32`` measures strict fp32 instead.

Untrained models get BatchNorm gain 4 / bias 0.3 and a head of std 0.5 so that spikes reach every
layer and the logits spread (as bench/stream.py); ``--streams-model`` also takes a checkpoint
(e.g. ``spikformer_synth_stream_64``, the shipped model), whose weights are used as trained.
Inputs are random event counts (``--density`` of the pixels active per step, 1-3 events each).

Imports: torch, numpy, numba, spikingjelly and the project's packages only. The GPU machine has
no network and no spikingjelly: bring it and loguru (the one dependency spikingjelly needs at
import; checked by blocking each of its other requirements) as wheels, fetched where the package
index is reachable with ``pip download --no-deps spikingjelly==2.0.0 loguru -d wheels/``, then run
``pip install --no-deps wheels/*.whl && PYTHONPATH=. python bench/gpu.py --out $OUT/gpu.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evstream.binning import Window  # noqa: E402
from models import create_model, list_weights, load_checkpoint  # noqa: E402
from models.multistream import MultiStreamClassifier  # noqa: E402
from models.streaming import StreamingClassifier  # noqa: E402

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

STEP_US = 50_000  # 20 steps/s
TRAIN_CLIPS = 1_176  # DVS128 Gesture training clips
EPOCHS = 200  # the paper's recipe
SECTIONS = ("exactness", "windows", "latency", "training", "streams")

FULL = {
    "model": "spikformer_2_256",
    "exact_streams": 4, "exact_windows": 12, "exact_steps": 16,
    "one_pass_steps": 32, "window_sizes": (1, 4, 16),
    "latency_steps": (1, 16), "latency_iters": {1: 300, 16: 60}, "latency_warm": 10,
    "train_model": "spikformer_2_256", "train_steps": 16, "train_batches": (16, 64), "train_iters": 8, "train_warm": 2,
    "streams_model": "spikformer_2_256", "stream_rounds": 5, "max_streams": 4096, "separate_streams": 4,
    "anchor_max": 64,
}
SMALL = {
    "model": "spikformer_tiny",
    "exact_streams": 2, "exact_windows": 3, "exact_steps": 4,
    "one_pass_steps": 8, "window_sizes": (1, 2, 4),
    "latency_steps": (1, 4), "latency_iters": {1: 20, 4: 8}, "latency_warm": 3,
    "train_model": "spikformer_2_64", "train_steps": 4, "train_batches": (2, 4), "train_iters": 2, "train_warm": 1,
    "streams_model": "spikformer_tiny", "stream_rounds": 3, "max_streams": 16, "separate_streams": 2,
    "anchor_max": 4,
}


def active(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """An untrained model whose spikes reach the head (BN gain 4, bias 0.3) with spread logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d | torch.nn.BatchNorm2d):
                module.weight.fill_(4.0)
                module.bias.fill_(0.3)
        model.head.weight.copy_(torch.randn(model.head.weight.shape, generator=gen) * 0.5)
    return model.eval()


def bench_model(name: str, seed: int = 0) -> tuple[torch.nn.Module, str]:
    """A registered variant made active, or a checkpoint (path or shipped name) as trained."""
    if name.endswith(".pt") or name in list_weights():
        return load_checkpoint(name).model.eval(), "trained checkpoint"
    torch.manual_seed(seed)
    return active(create_model(name), seed), "untrained, BN gain 4 / bias 0.3"


def event_windows(rng: np.random.Generator, count: int, steps: int, size: tuple[int, int], density: float,
                  t0: int = 0) -> list[Window]:
    """``count`` consecutive windows of random event counts ``[steps, 2, H, W]``."""
    h, w = size
    out = []
    for k in range(count):
        frames = ((rng.random((steps, 2, h, w)) < density) * rng.integers(1, 4, (steps, 2, h, w))).astype(np.float32)
        start = t0 + k * steps * STEP_US
        out.append(Window(frames=frames, t_start=start, t_end=start + steps * STEP_US, step_us=STEP_US,
                          counts=frames.sum(axis=(1, 2, 3)).astype(np.int64), index=k))
    return out


def img_size(model: torch.nn.Module) -> tuple[int, int]:
    return tuple(model.config.img_size)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


# ---- 1. device against CPU ------------------------------------------------------------------

def section_exactness(device: torch.device, cfg: dict, args: argparse.Namespace) -> dict[str, Any]:
    model, weights = bench_model(cfg["model"])
    opts = {"threshold": 0.3, "hysteresis": 0.05}
    runs = {"device": {"device": device, "fuse": False}, "cpu_fused": {"device": "cpu"}}
    if device.type != "cpu":
        runs["cpu_plain"] = {"device": "cpu", "fuse": False}
    outs: dict[str, list] = {name: [] for name in runs}
    rng = np.random.default_rng(1)
    for _ in range(cfg["exact_streams"]):
        windows = event_windows(rng, cfg["exact_windows"], cfg["exact_steps"], img_size(model), args.density)
        for name, kw in runs.items():
            clf = StreamingClassifier(copy.deepcopy(model), **kw, **opts)
            outs[name].append([clf.step(w) for w in windows])
    flat = {name: [p for stream in preds for p in stream] for name, preds in outs.items()}
    result: dict[str, Any] = {"model": cfg["model"], "weights": weights, "windows": len(flat["device"]),
                              "steps_per_window": cfg["exact_steps"]}
    dev = flat["device"]
    for ref in [n for n in runs if n != "device"]:
        other = flat[ref]
        d_logits = np.concatenate([a.logits for a in dev]), np.concatenate([b.logits for b in other])
        result[f"vs_{ref}"] = {
            "max_abs_logit_diff": float(np.abs(d_logits[0] - d_logits[1]).max()),
            "step_argmax_agree": int((d_logits[0].argmax(1) == d_logits[1].argmax(1)).sum()),
            "steps": int(len(d_logits[0])),
            "window_argmax_agree": sum(int(a.logits.mean(0).argmax() == b.logits.mean(0).argmax()) for a, b in zip(dev, other, strict=True)),
            "window_decision_agree": sum(int(a.label == b.label) for a, b in zip(dev, other, strict=True)),
            "step_decision_agree": int(sum((a.step_labels == b.step_labels).sum() for a, b in zip(dev, other, strict=True))),
        }
    result["decided_windows"] = sum(int(p.label >= 0) for p in dev)
    result["logit_std"] = float(np.concatenate([p.logits for p in dev]).std())
    return result


# ---- 2. windows of any length equal one pass --------------------------------------------------

def section_windows(device: torch.device, cfg: dict, args: argparse.Namespace) -> dict[str, Any]:
    model, weights = bench_model(cfg["model"])
    rng = np.random.default_rng(2)
    steps = cfg["one_pass_steps"]
    whole = event_windows(rng, 1, steps, img_size(model), args.density)[0]
    one = StreamingClassifier(copy.deepcopy(model), device=device, energy=False).step(whole)
    result: dict[str, Any] = {"model": cfg["model"], "weights": weights, "steps": steps, "by_window": {}}
    for size in cfg["window_sizes"]:
        clf = StreamingClassifier(copy.deepcopy(model), device=device, energy=False)
        logits, labels = [], []
        for start in range(0, steps, size):
            part = Window(frames=np.ascontiguousarray(whole.frames[start:start + size]), t_start=start * STEP_US,
                          t_end=(start + size) * STEP_US, step_us=STEP_US, counts=whole.counts[start:start + size], index=0)
            pred = clf.step(part)
            logits.append(pred.logits)
            labels.append(pred.step_labels)
        logits_all = np.concatenate(logits)
        result["by_window"][str(size)] = {
            "max_abs_logit_diff": float(np.abs(logits_all - one.logits).max()),
            "step_labels_equal": bool((np.concatenate(labels) == one.step_labels).all()),
        }
    result["worst"] = max(v["max_abs_logit_diff"] for v in result["by_window"].values())
    return result


# ---- 3. batch-1 latency ----------------------------------------------------------------------

def section_latency(device: torch.device, cfg: dict, args: argparse.Namespace) -> dict[str, Any]:
    model, weights = bench_model(cfg["model"])
    rng = np.random.default_rng(3)
    variants = {"eager": {}, "eager_no_energy": {"energy": False}}
    if args.compile:
        variants["compiled"] = {"compile": True}
    result: dict[str, Any] = {"model": cfg["model"], "weights": weights}
    for steps in cfg["latency_steps"]:
        iters, warm = cfg["latency_iters"][steps], cfg["latency_warm"]
        windows = event_windows(rng, iters + warm, steps, img_size(model), args.density)
        for name, kw in variants.items():
            clf = StreamingClassifier(copy.deepcopy(model), device=device, threads=args.threads, **kw)
            began = time.perf_counter()
            for w in windows[:warm]:
                clf.step(w)
            warm_s = time.perf_counter() - began
            per_step = []
            for w in windows[warm:]:
                t = time.perf_counter()
                clf.step(w)  # returns numpy: synchronised
                per_step.append((time.perf_counter() - t) * 1000.0 / steps)
            result[f"T{steps}_{name}"] = {
                "p50_ms_per_step": percentile(per_step, 50), "p99_ms_per_step": percentile(per_step, 99),
                "windows": iters, "warm_up_s": warm_s,
            }
    return result


# ---- 4. training throughput -----------------------------------------------------------------

def random_batches(n: int, shape: tuple[int, ...], classes: int, density: float,
                   gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``n`` loader batches as the DataLoader gives them: frames ``[B, T, 2, H, W]`` on the host, labels ``[B]``."""
    return [((torch.rand(shape, generator=gen) < density).float(), torch.randint(0, classes, (shape[0],), generator=gen))
            for _ in range(n)]


def section_training(device: torch.device, cfg: dict, args: argparse.Namespace) -> dict[str, Any]:
    from models.train import train_one_epoch

    steps = cfg["train_steps"]
    result: dict[str, Any] = {"model": cfg["train_model"], "steps": steps, "runs": {}}
    for batch in cfg["train_batches"]:
        for amp in (False, True):
            key = f"batch{batch}_amp_{'on' if amp else 'off'}"
            if amp and device.type != "cuda":
                result["runs"][key] = {"skipped": "AMP runs on CUDA only (models/train.py)"}
                continue
            reset_peak(device)
            try:
                torch.manual_seed(0)
                model = create_model(cfg["train_model"], steps=steps).to(device)
                h, w = img_size(model)
                optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.06, eps=1e-8)
                scaler = torch.amp.GradScaler("cuda", enabled=amp) if device.type == "cuda" else None
                gen = torch.Generator().manual_seed(batch)
                shape, classes = (batch, steps, 2, h, w), model.num_classes
                common = {"num_classes": classes, "smoothing": 0.1, "scaler": scaler}
                warm = random_batches(cfg["train_warm"], shape, classes, args.density, gen)
                train_one_epoch(model, warm, optimizer, None, device, **common)
                sync(device)
                timed = random_batches(cfg["train_iters"], shape, classes, args.density, gen)
                stats = train_one_epoch(model, timed, optimizer, None, device, **common)
                sync(device)
                sps = stats["samples_per_s"]
                result["runs"][key] = {
                    "samples_per_s": sps, "iters": cfg["train_iters"],
                    "projected_200_epochs_s": EPOCHS * TRAIN_CLIPS / sps,
                    "peak_gpu_mb": peak_mb(device),
                }
                del model, optimizer
            except torch.cuda.OutOfMemoryError as err:
                result["runs"][key] = {"error": f"out of memory: {str(err).splitlines()[0]}"}
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return result


# ---- 5. concurrent streams -------------------------------------------------------------------

def _round_ms(model: torch.nn.Module, n: int, device: torch.device, pool: list[Window], rounds: int,
              threads: int | None) -> float:
    """Median ms of one batched round of ``n`` streams (after two warm-up rounds)."""
    clf = MultiStreamClassifier(model, n, device=device, threads=threads, energy=False)
    times = []
    for r in range(rounds + 2):
        windows = [pool[(i + r) % len(pool)] for i in range(n)]
        t = time.perf_counter()
        clf.step(windows)  # returns numpy: synchronised
        if r >= 2:
            times.append((time.perf_counter() - t) * 1000.0)
    return float(np.median(times))


def _separate_round_ms(model: torch.nn.Module, n: int, device: torch.device, pool: list[Window], rounds: int,
                       threads: int | None) -> float:
    """The anchor: median ms of ``n`` separate StreamingClassifiers stepped one after another
    (energy off, as in the batched classifier), the same windows as :func:`_round_ms`."""
    classifiers = [StreamingClassifier(copy.deepcopy(model), device=device, threads=threads, energy=False)
                   for _ in range(n)]
    times = []
    for r in range(rounds + 2):
        t = time.perf_counter()
        for i, clf in enumerate(classifiers):
            clf.step(pool[(i + r) % len(pool)])
        if r >= 2:
            times.append((time.perf_counter() - t) * 1000.0)
    return float(np.median(times))


def section_streams(device: torch.device, cfg: dict, args: argparse.Namespace) -> dict[str, Any]:
    name = args.streams_model or cfg["streams_model"]
    model, weights = bench_model(name)
    steps = args.streams_steps
    budget_ms = steps * STEP_US / 1000.0
    rng = np.random.default_rng(5)
    pool = event_windows(rng, 16, steps, img_size(model), args.density)
    result: dict[str, Any] = {"model": name, "weights": weights, "window_steps": steps, "budget_ms": budget_ms,
                              "by_n": {}}

    # N batched streams against N separate classifiers on this device.
    n_sep = cfg["separate_streams"]
    multi = MultiStreamClassifier(copy.deepcopy(model), n_sep, device=device, energy=False)
    singles = [StreamingClassifier(copy.deepcopy(model), device=device, energy=False) for _ in range(n_sep)]
    worst, labels_equal = 0.0, True
    for k in range(3):
        windows = [pool[(i * 3 + k) % len(pool)] for i in range(n_sep)]
        for pb, clf, w in zip(multi.step(windows), singles, windows, strict=True):
            ps = clf.step(w)
            worst = max(worst, float(np.abs(pb.logits - ps.logits).max()))
            labels_equal &= bool((pb.step_labels == ps.step_labels).all())
    result["batched_vs_separate"] = {"streams": n_sep, "windows": 3, "max_abs_logit_diff": worst,
                                     "step_labels_equal": labels_equal}
    del multi, singles

    def measure(n: int) -> bool:
        reset_peak(device)
        try:
            ms = _round_ms(model, n, device, pool, cfg["stream_rounds"], args.threads)
        except (torch.cuda.OutOfMemoryError, MemoryError) as err:
            result["by_n"][str(n)] = {"error": f"out of memory: {str(err).splitlines()[0] if str(err) else 'MemoryError'}"}
            return False
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        entry = {"round_ms": ms, "real_time": ms <= budget_ms, "realtime_factor": budget_ms / ms,
                 "peak_gpu_mb": peak_mb(device)}
        if n <= cfg["anchor_max"]:
            entry["separate_round_ms"] = _separate_round_ms(model, n, device, pool, cfg["stream_rounds"], args.threads)
            entry["speedup_vs_separate"] = entry["separate_round_ms"] / ms
        result["by_n"][str(n)] = entry
        print(f"  streams: N={n}: {ms:.1f} ms per round of {budget_ms:.0f} ms", flush=True)
        return ms <= budget_ms

    if args.streams_n:
        for n in args.streams_n:
            measure(n)
        passing = [int(n) for n, v in result["by_n"].items() if v.get("real_time")]
        result["max_real_time_streams"] = max(passing, default=0)
        return result
    best, n, fail = 0, 1, None
    while n <= cfg["max_streams"]:
        if not measure(n):
            fail = n
            break
        best, n = n, n * 2
    if fail is not None and best > 0:
        for _ in range(3):  # bisect between the last N that kept up and the first that did not
            mid = (best + fail) // 2
            if mid in (best, fail):
                break
            if measure(mid):
                best = mid
            else:
                fail = mid
    result["max_real_time_streams"] = best
    result["capped"] = fail is None  # every N up to max_streams kept up
    return result


RUNNERS = {
    "exactness": section_exactness,
    "windows": section_windows,
    "latency": section_latency,
    "training": section_training,
    "streams": section_streams,
}


def table(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """Rows (figure, value, target) of the printed table."""
    rows: list[tuple[str, str, str]] = []
    cuda = results["device"].startswith("cuda")
    ex = results.get("exactness")
    if isinstance(ex, dict) and "windows" in ex:
        for ref in ("cpu_fused", "cpu_plain"):
            r = ex.get(f"vs_{ref}")
            if r:
                rows.append((f"{ex['model']} {results['device']} vs {ref}: max |Δ logit|", f"{r['max_abs_logit_diff']:.2e}", ""))
                rows.append((f"  window decisions agree ({ex['decided_windows']} decided)",
                             f"{r['window_decision_agree']}/{ex['windows']}", ">= 99.5 %" if cuda else ""))
                rows.append(("  window argmax agree", f"{r['window_argmax_agree']}/{ex['windows']}", ""))
                rows.append(("  step argmax agree", f"{r['step_argmax_agree']}/{r['steps']}", ""))
    wi = results.get("windows")
    if isinstance(wi, dict) and "by_window" in wi:
        for size, r in wi["by_window"].items():
            rows.append((f"{wi['model']} windows of {size} vs one {wi['steps']}-step pass: max |Δ logit|",
                         f"{r['max_abs_logit_diff']:.2e} (labels {'equal' if r['step_labels_equal'] else 'DIFFER'})", "<= 1e-4"))
    la = results.get("latency")
    if isinstance(la, dict):
        for key, r in la.items():
            if isinstance(r, dict) and "p50_ms_per_step" in r:
                target = "<= 1 ms p50" if key == "T1_eager" and cuda and la["model"] == "spikformer_2_256" else ""
                rows.append((f"{la['model']} batch 1 {key}: ms per step p50 / p99",
                             f"{r['p50_ms_per_step']:.3f} / {r['p99_ms_per_step']:.3f}", target))
    tr = results.get("training")
    if isinstance(tr, dict) and "runs" in tr:
        for key, r in tr["runs"].items():
            label = f"{tr['model']} T={tr['steps']} train {key}"
            if "samples_per_s" in r:
                target = ">= 1000/s" if key == "batch64_amp_on" else ""
                rows.append((label + ": samples/s (200 epochs)",
                             f"{r['samples_per_s']:.1f} ({r['projected_200_epochs_s'] / 60:.1f} min)", target))
            else:
                rows.append((label, r.get("skipped") or r.get("error", "?"), ""))
    st = results.get("streams")
    if isinstance(st, dict) and "by_n" in st:
        r = st["batched_vs_separate"]
        rows.append((f"{st['model']} {r['streams']} batched vs separate streams: max |Δ logit|",
                     f"{r['max_abs_logit_diff']:.2e} (labels {'equal' if r['step_labels_equal'] else 'DIFFER'})", ""))
        for n, v in st["by_n"].items():
            value = f"{v['round_ms']:.1f} ms of {st['budget_ms']:.0f}" if "round_ms" in v else v["error"]
            if "separate_round_ms" in v:
                value += f"; {n} separate: {v['separate_round_ms']:.1f} ms ({v['speedup_vs_separate']:.2f}x)"
            rows.append((f"  N={n} streams: one round", value, ""))
        most = f">= {st['max_real_time_streams']} (every N tried kept up)" if st.get("capped") else str(st["max_real_time_streams"])
        rows.append((f"{st['model']} streams in real time at 20 steps/s", most,
                     ">= 256" if cuda and st["model"] == "spikformer_2_256" else ""))
    if results.get("peak_gpu_mb") is not None:
        rows.append(("peak GPU memory (MiB)", f"{results['peak_gpu_mb']:.0f}", ""))
    for name, err in results.get("errors", {}).items():
        rows.append((f"{name}: FAILED", err, ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:N or cpu")
    ap.add_argument("--small", action="store_true", help="small models and few iterations (the CI check)")
    ap.add_argument("--out", default="bench_out/gpu.json", help="JSON file written after every section")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--compile", action="store_true", help="latency also with torch.compile (minutes to compile)")
    ap.add_argument("--density", type=float, default=0.05, help="fraction of pixels with events per step")
    ap.add_argument("--streams-model", default=None, help="model or checkpoint of the streams section")
    ap.add_argument("--streams-steps", type=int, default=4, help="steps per window in the streams section")
    ap.add_argument("--streams-n", type=lambda s: [int(v) for v in s.split(",")], default=None,
                    help="measure exactly these N (e.g. 1,2,4,8) instead of searching for the most")
    ap.add_argument("--no-tf32", action="store_true",
                    help="CUDA convolutions in strict fp32 (PyTorch lets cuDNN use TF32 by default)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of torch and the numba kernels")
    args = ap.parse_args(argv)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        print(f"bench/gpu.py: --sections: unknown section {unknown[0]!r} (known: {', '.join(SECTIONS)})", file=sys.stderr)
        return 2
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            print(f"bench/gpu.py: --device {args.device}: CUDA is not available", file=sys.stderr)
            return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    cfg = SMALL if args.small else FULL
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "small": args.small,
        "density": args.density,
        "sections": sections,
        "errors": {},
        "section_s": {},
    }
    began = time.perf_counter()
    peaks = []
    for name in sections:
        print(f"bench/gpu.py: {name} ...", flush=True)
        reset_peak(device)
        t = time.perf_counter()
        try:
            results[name] = RUNNERS[name](device, cfg, args)
        except Exception as err:  # one failed section must not lose the others' figures
            results["errors"][name] = f"{type(err).__name__}: {err}"
            traceback.print_exc()
        results["section_s"][name] = time.perf_counter() - t
        if device.type == "cuda":
            peaks.append(peak_mb(device))
            results.setdefault("peak_gpu_mb_by_section", {})[name] = peaks[-1]
        results["peak_gpu_mb"] = max(peaks) if peaks else None
        results["wall_s"] = time.perf_counter() - began
        out.write_text(json.dumps(results, indent=2, default=str))
    rows = table(results)
    width = max(len(r[0]) for r in rows) if rows else 10
    vwidth = max(len(r[1]) for r in rows) if rows else 10
    print(f"\n{'figure':<{width}}  {'value':<{vwidth}}  target")
    for figure, value, target in rows:
        print(f"{figure:<{width}}  {value:<{vwidth}}  {target}")
    print(f"\n{results['device']} ({results['device_name']}), torch {results['torch']}, "
          f"{math.ceil(results['wall_s'])} s; figures in {out}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
