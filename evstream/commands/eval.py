"""``python main.py eval``: how well a checkpoint classifies, offline (clips) or online (streams).

``--stream`` replays labelled recordings as fast as possible through the Binner and the
StreamingClassifier and scores the per-step decisions (:mod:`models.online_eval`); ``--data``
computes the offline clip accuracy of the dataset's test split (:func:`models.train.evaluate_checkpoint`).
torch is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys

from evstream.errors import ConfigError

__all__ = ["add_arguments", "run", "EXAMPLES"]

EXAMPLES = """\
examples:
  python main.py eval --stream recordings/gestures_128x128.aedat4
  python main.py eval --stream rec.aedat4 --labels rec_gestures.csv --model runs/synth.pt --out runs/eval
  python main.py eval --stream data/synth/DvsGesture --model spikformer_synth_64 --steps 1
  python main.py eval --stream a.aedat4 b.aedat --reset-after-quiet 500 --smoothing-ms 200
  python main.py eval --data data/synth --model runs/synth.pt

--stream takes .aedat4 / .aedat recordings with <stem>_labels.csv beside them (DVS128 Gesture CSV:
class,startTime_usec,endTime_usec, classes 1-based), or an IBM-layout DvsGesture folder
(trials_to_test.txt). It writes online_eval.json and online_eval.png in --out.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the evaluation options on ``parser``."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--stream", nargs="+", metavar="PATH", help="labelled recordings or IBM DvsGesture folders")
    what.add_argument("--data", metavar="DIR", help="dataset root: offline clip accuracy of its test split")
    parser.add_argument(
        "--model", default=None, help="checkpoint (.pt), shipped weights name, or a registered variant (untrained)"
    )
    parser.add_argument("--labels", default=None, help="label CSV of the single --stream recording")
    parser.add_argument("--out", default="eval_out", help="folder for the JSON and PNG (default eval_out)")
    parser.add_argument("--step-ms", type=float, default=None, help="time step, ms (default: the checkpoint's)")
    parser.add_argument("--steps", type=int, default=None, help="time steps per window (default: the checkpoint's)")
    parser.add_argument("--split", choices=("test", "train"), default="test", help="split of a dataset folder")
    parser.add_argument("--layout", choices=("ibm", "tonic"), default="ibm", help="--data layout (default ibm)")
    parser.add_argument("--smoothing-ms", type=float, help="decision smoothing, ms (default: the checkpoint's, else 300)")
    parser.add_argument("--threshold", type=float, help="decision confidence threshold (default: the checkpoint's, else 0.5)")
    parser.add_argument("--hysteresis", type=float, help="decision hysteresis (default: the checkpoint's, else 0.1)")
    parser.add_argument(
        "--stable-ms",
        type=float,
        default=250.0,
        help="a correct decision must hold this long to count for the latency (default 250)",
    )
    resets = parser.add_mutually_exclusive_group()
    resets.add_argument("--reset-after-quiet", type=float, metavar="MS", help="reset the state after MS ms of quiet")
    resets.add_argument("--reset-every", type=float, metavar="MS", help="reset the state every MS ms")
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=1000.0,
        help="event rate (ev/s) under which the scene is quiet (default 1000)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")


def _load(spec: str | None, device: str):
    """(model, preprocessing, decision settings) from a checkpoint, shipped weights or a registered variant."""
    from models import DEFAULT_WEIGHTS, create_model, list_models, load_checkpoint

    spec = spec or DEFAULT_WEIGHTS
    if spec in list_models():
        model = create_model(spec)
        print(f"warning: {spec} is an untrained variant (random weights)", file=sys.stderr)
        height, width = model.config.img_size
        pre = {"sensor": [128, 128], "out_size": [height, width], "steps": model.config.steps, "step_us": 50_000}
        return model, pre, {}
    loaded = load_checkpoint(spec)
    return loaded.model, loaded.preprocessing, loaded.decision


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    """Evaluate; prints a summary and writes the report files."""
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: must be >= 1, got {args.threads}")
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps: must be >= 1, got {args.steps}")
    if args.step_ms is not None and not args.step_ms > 0:
        raise ConfigError(f"--step-ms: must be > 0, got {args.step_ms}")
    if args.data is not None:
        return _offline(args)
    return _online(args)


def _offline(args: argparse.Namespace) -> int:
    from pathlib import Path

    from models import DEFAULT_WEIGHTS
    from models.train import evaluate_checkpoint

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = evaluate_checkpoint(
        args.model or DEFAULT_WEIGHTS,
        args.data,
        args.layout,
        args.split,
        device=args.device,
        confusion_png=out / "offline_confusion.png",
    )
    (out / "offline_eval.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(f"offline clip accuracy {result['top1']:.4f} ({result['correct']}/{result['samples']}) -> {out}")
    return 0


def _online(args: argparse.Namespace) -> int:
    from models.online_eval import evaluate_online, find_recordings, write_report
    from models.streaming import InactivityReset, PeriodicReset, StreamingClassifier

    recordings = find_recordings(args.stream, args.labels, args.split)
    model, pre, decision = _load(args.model, args.device)
    defaults = {"smoothing_ms": 300.0, "threshold": 0.5, "hysteresis": 0.1} | decision
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    policy = None
    if args.reset_after_quiet is not None:
        policy = InactivityReset(rate_below_hz=args.quiet_below, for_ms=args.reset_after_quiet)
    elif args.reset_every is not None:
        policy = PeriodicReset(every_ms=args.reset_every)
    classifier = StreamingClassifier(
        model,
        device=args.device,
        threads=args.threads,
        smoothing_ms=args.smoothing_ms,
        threshold=args.threshold,
        hysteresis=args.hysteresis,
        reset_policy=policy,
    )

    first: list = []

    def progress(rec, dec) -> None:
        if not first:
            first.append((rec, dec))
        if not args.json:
            rate = dec.duration_s / dec.wall_s if dec.wall_s > 0 else float("inf")
            print(
                f"{rec.path.name}: {dec.duration_s:.1f} s in {dec.wall_s:.1f} s ({rate:.1f}x real time), {dec.windows} windows"
            )

    report = evaluate_online(
        recordings,
        classifier,
        pre,
        steps=args.steps,
        step_us=None if args.step_ms is None else int(round(args.step_ms * 1000)),
        stable_ms=args.stable_ms,
        progress=progress,
    )
    json_path, png_path = write_report(report, args.out, timeline=first[0] if first else None)
    if args.json:
        print(json.dumps(report))
        return 0
    lat = report["latency_ms"]
    print(
        f"online accuracy {_fmt(report['accuracy'])} (balanced {_fmt(report['balanced_accuracy'])}), "
        f"segments right {_fmt(report['segment_accuracy'])}, false alarms {_fmt(report['false_alarm'])}"
    )
    onset = ", ".join(f"{k} ms {_fmt(v)}" for k, v in report["vs_onset"].items())
    print(f"accuracy after onset: {onset}")
    mean = "n/a" if lat["mean"] is None else f"{lat['mean']:.0f} ms"
    print(f"decision latency: mean {mean}, {lat['detected']}/{lat['segments']} segments decided correctly")
    print(f"real time factor {_fmt(report['realtime_factor'])}; wrote {json_path} and {png_path}")
    return 0
