"""``python main.py eval``: how well a checkpoint classifies, offline (clips) or online (streams).

``--stream`` replays labelled recordings as fast as possible through the Binner and the
StreamingClassifier and scores the per-step decisions (:mod:`models.online_eval`); ``--data``
computes the offline clip accuracy of a dataset split, ``--split`` (default test;
:func:`models.train.evaluate_checkpoint`). Both are deterministic: ``--data`` scores every whole
window of every clip on either split (training draws random windows; evaluation never does), and
``--stream`` replays each recording whole, so the same command gives the same number.
``--stream ... --calibrate --out CKPT`` replays the recordings once, chooses the decision rule
and its parameters that maximise online accuracy minus false alarms
(:func:`models.online_eval.calibrate_decisions`) and writes them into a copy of the checkpoint
(its ``decision`` dict, which ``run`` and ``eval`` apply unless overridden); an IBM folder gives
its ``train`` split to calibrate on, never the test recordings.
torch is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys

from evstream.errors import ConfigError

__all__ = ["add_arguments", "add_decision_arguments", "decision_settings", "run", "EXAMPLES"]

EXAMPLES = """\
examples:
  python main.py eval --stream recordings/gestures_128x128.aedat4
  python main.py eval --stream rec.aedat4 --labels rec_gestures.csv --model runs/synth.pt --out runs/eval
  python main.py eval --stream data/synth/DvsGesture --model spikformer_synth_stream_64 --window-steps 1
  python main.py eval --stream a.aedat4 b.aedat --reset-after-quiet 500 --smoothing-ms 200
  python main.py eval --data data/synth --model runs/synth.pt
  python main.py eval --stream rec.aedat4 --decision mean --mean-steps 16 --window-steps 2
  python main.py eval --stream data/synth/DvsGesture --model runs/synth.pt --calibrate --out runs/synth_cal.pt

--stream takes .aedat4 / .aedat recordings with <stem>_labels.csv beside them (DVS128 Gesture CSV:
class,startTime_usec,endTime_usec, classes 1-based), or an IBM-layout DvsGesture folder
(trials_to_test.txt). It writes online_eval.json and online_eval.png in --out.

--calibrate grid-searches the decision rule (ema: smoothing 25/50/100/200/300/500 ms; mean: over the
last 8/16/32 steps), threshold 0.2 ... 0.7 and hysteresis 0/0.05/0.1 on the given recordings (an IBM
folder's train split by default), maximising online accuracy (labelled steps decided right) minus
false alarms (steps between gestures that name one), then tries own thresholds (0.2 ... 0.9) for
the classes that take the most false alarms or stay most often undecided; --decision/--mean-steps/--smoothing-ms/
--threshold/--hysteresis fix that part of the grid. It writes the checkpoint copy --out (.pt) with
the chosen settings and the window length, and <out>_calibration.json beside it.
"""


def add_decision_arguments(group) -> None:
    """The decision options shared by ``run`` and ``eval`` (defaults: the checkpoint's ``decision`` dict)."""
    group.add_argument(
        "--decision",
        choices=("ema", "mean"),
        help="decision rule: ema = moving average of the per-step softmax; mean = softmax of the mean of "
        "per-step logits, the model's offline rule (default: the checkpoint's, else ema)",
    )
    group.add_argument(
        "--mean-steps",
        type=int,
        metavar="N",
        help="mean rule: the mean covers the last N steps, 0 = every step since the last reset "
        "(default: the checkpoint's, else the model's T)",
    )
    group.add_argument(
        "--window-steps",
        "--steps",
        dest="window_steps",
        type=int,
        metavar="N",
        help="time steps per window (default: the checkpoint's decision.window_steps, else min(4, the model's T) "
        "and at most 200 ms); decisions are taken every step whatever the window",
    )
    group.add_argument(
        "--smoothing-ms",
        type=float,
        metavar="MS",
        help="ema rule: smoothing time constant (default: the checkpoint's, else 300)",
    )
    group.add_argument(
        "--threshold", type=float, help="decision confidence threshold (default: the checkpoint's, else 0.5)"
    )
    group.add_argument("--hysteresis", type=float, help="decision hysteresis (default: the checkpoint's, else 0.1)")


def decision_settings(decision: dict | None, args: argparse.Namespace) -> dict:
    """A checkpoint's ``decision`` dict with the command line's overrides merged in.

    Raises:
        ConfigError: ``--mean-steps`` or ``--window-steps`` out of range (names the option).
    """
    if args.mean_steps is not None and args.mean_steps < 0:
        raise ConfigError(f"--mean-steps: must be >= 0 (0 = since the last reset), got {args.mean_steps}")
    if args.window_steps is not None and args.window_steps < 1:
        raise ConfigError(f"--window-steps: must be >= 1, got {args.window_steps}")
    settings = dict(decision or {})
    overrides = {
        "rule": args.decision,
        "smoothing_ms": args.smoothing_ms,
        "threshold": args.threshold,
        "hysteresis": args.hysteresis,
        "window_steps": args.window_steps,
    }
    settings.update({k: v for k, v in overrides.items() if v is not None})
    if args.mean_steps is not None:
        settings["mean_steps"] = args.mean_steps or None
    return settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the evaluation options on ``parser``."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--stream", nargs="+", metavar="PATH", help="labelled recordings or IBM DvsGesture folders")
    what.add_argument("--data", metavar="DIR", help="dataset root: offline clip accuracy of a split (--split)")
    parser.add_argument(
        "--model", default=None, help="checkpoint (.pt), shipped weights name, or a registered variant (untrained)"
    )
    parser.add_argument("--labels", default=None, help="label CSV of the single --stream recording")
    parser.add_argument(
        "--out",
        default=None,
        help="folder for the JSON and PNG (default eval_out); with --calibrate: the calibrated checkpoint (.pt)",
    )
    parser.add_argument("--step-ms", type=float, default=None, help="time step, ms (default: the checkpoint's)")
    parser.add_argument(
        "--split",
        choices=("test", "train"),
        default=None,
        help="split of a dataset folder (default test; train with --calibrate); --data scores every whole "
        "window of every clip on either split, so repeated runs agree",
    )
    parser.add_argument("--layout", choices=("ibm", "tonic"), default="ibm", help="--data layout (default ibm)")
    add_decision_arguments(parser.add_argument_group("decisions"))
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="--stream: choose the decision rule and parameters on these recordings and write them "
        "into a copy of the checkpoint (--out CKPT.pt)",
    )
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
    """(model, preprocessing, decision settings, checkpoint path or None) from a checkpoint, shipped
    weights or a registered variant."""
    from models import DEFAULT_WEIGHTS, create_model, list_models, load_checkpoint

    spec = spec or DEFAULT_WEIGHTS
    if spec in list_models():
        model = create_model(spec)
        print(f"warning: {spec} is an untrained variant (random weights)", file=sys.stderr)
        height, width = model.config.img_size
        pre = {"sensor": [128, 128], "out_size": [height, width], "steps": model.config.steps, "step_us": 50_000}
        return model, pre, {}, None
    loaded = load_checkpoint(spec)
    return loaded.model, loaded.preprocessing, loaded.decision, loaded.path


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run(args: argparse.Namespace) -> int:
    """Evaluate; prints a summary and writes the report files."""
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads: must be >= 1, got {args.threads}")
    if args.window_steps is not None and args.window_steps < 1:
        raise ConfigError(f"--window-steps: must be >= 1, got {args.window_steps}")
    if args.step_ms is not None and not args.step_ms > 0:
        raise ConfigError(f"--step-ms: must be > 0, got {args.step_ms}")
    if args.data is not None:
        if args.calibrate:
            raise ConfigError("--calibrate: calibrates online decisions; give --stream recordings, not --data")
        args.split = args.split or "test"
        args.out = args.out or "eval_out"
        return _offline(args)
    if args.calibrate:
        if args.out is None or not args.out.endswith(".pt"):
            raise ConfigError(
                f"--out: with --calibrate, names the calibrated checkpoint to write (.pt), got {args.out!r}"
            )
        args.split = args.split or "train"
    else:
        args.split = args.split or "test"
        args.out = args.out or "eval_out"
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
        print(f"per class ({args.split} split, correct / windows):")
        names = result.get("class_names") or []
        for i, row in enumerate(result["confusion"]):
            total = int(sum(row))
            name = names[i] if i < len(names) else f"class {i}"
            acc = "n/a" if total == 0 else f"{row[i] / total:.3f}"
            print(f"  {i:2d} {name:<28} {acc} ({int(row[i])}/{total})")
    return 0


def _online(args: argparse.Namespace) -> int:
    from models.online_eval import evaluate_online, find_recordings, write_report
    from models.streaming import (
        InactivityReset,
        PeriodicReset,
        StreamingClassifier,
        decision_options,
        default_window_steps,
    )

    recordings = find_recordings(args.stream, args.labels, args.split)
    model, pre, decision, ckpt_path = _load(args.model, args.device)
    settings = decision_settings(decision, args)
    model_steps = int(pre.get("steps") or model.config.steps)
    step_us = int(round(args.step_ms * 1000)) if args.step_ms is not None else int(pre.get("step_us") or 0)
    window_steps = default_window_steps(settings, model_steps, step_us)
    options = decision_options({k: v for k, v in settings.items() if k != "window_steps"}, model_steps=model_steps)
    policy = None
    if args.reset_after_quiet is not None:
        policy = InactivityReset(rate_below_hz=args.quiet_below, for_ms=args.reset_after_quiet)
    elif args.reset_every is not None:
        policy = PeriodicReset(every_ms=args.reset_every)
    classifier = StreamingClassifier(model, device=args.device, threads=args.threads, reset_policy=policy, **options)
    if args.calibrate:
        return _calibrate(args, recordings, classifier, pre, window_steps, step_us, model, ckpt_path)

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
        steps=window_steps,
        step_us=step_us or None,
        stable_ms=args.stable_ms,
        progress=progress,
    )
    json_path, png_path = write_report(report, args.out, timeline=first[0] if first else None)
    if args.json:
        print(json.dumps(report))
        return 0
    lat = report["latency_ms"]
    n_seg = lat["segments"]
    print(
        f"online accuracy {_fmt(report['accuracy'])}{_interval(report)} (balanced {_fmt(report['balanced_accuracy'])}) over "
        f"{report['decisions']:,} decisions inside gestures; false alarms {_fmt(report['false_alarm'])} outside them"
    )
    print(f"gestures: {n_seg} labelled; the most frequent decision is right in {report['segments_right']}/{n_seg} "
          f"({_fmt(report['segment_accuracy'])}); a correct decision that holds {lat['stable_ms']:g} ms comes in "
          f"{lat['detected']}/{n_seg}")
    print("per class (online accuracy, decisions inside its gestures):")
    names = report.get("class_names") or [f"class {i}" for i in range(len(report["per_class"]))]
    for i, acc in enumerate(report["per_class"]):
        print(f"  {i:2d} {names[i]:<28} {_fmt(acc)}")
    onset = ", ".join(f"{k} ms {_fmt(v)}" for k, v in report["vs_onset"].items())
    print(f"accuracy after onset: {onset}")
    mean = "n/a" if lat["mean"] is None else f"{lat['mean']:.0f} ms"
    median = "n/a" if lat["median"] is None else f"{lat['median']:.0f} ms"
    print(f"decision latency (onset to that decision): mean {mean}, median {median}, over the {lat['detected']} "
          "gestures it came in")
    print(f"decisions: {_describe(report['decision'])}, windows of {report['steps']} steps ({report['probs_kind']})")
    print(f"real time factor {_fmt(report['realtime_factor'])}; wrote {json_path} and {png_path}")
    return 0


def _interval(report: dict) -> str:
    """`` [lo-hi over N gestures]``: the bootstrap interval of the online accuracy, when there is one."""
    interval = report.get("accuracy_interval")
    if not interval:
        return ""
    return f" [95 % interval {interval[0]:.3f}-{interval[1]:.3f} over its {report['latency_ms']['segments']} gestures]"


def _describe(settings: dict) -> str:
    parts = [f"rule {settings.get('rule', 'ema')}"]
    for key in ("smoothing_ms", "mean_steps", "threshold", "hysteresis", "window_steps"):
        if key in settings:
            value = settings[key]
            parts.append(f"{key} {'since reset' if key == 'mean_steps' and value is None else f'{value:g}'}")
        if key == "threshold" and settings.get("class_thresholds"):
            own = ", ".join(f"{k}: {float(v):g}" for k, v in sorted(settings["class_thresholds"].items(), key=lambda kv: int(kv[0])))
            parts.append(f"own thresholds {{{own}}}")
    return ", ".join(parts)


def _grid(args: argparse.Namespace) -> dict:
    """The calibration grid, with the parts the command line fixes."""
    from models.online_eval import CALIBRATION_GRID

    rules = {rule: dict(params) for rule, params in CALIBRATION_GRID["rules"].items()}
    if args.decision is not None:
        rules = {args.decision: rules[args.decision]}
    if args.smoothing_ms is not None and "ema" in rules:
        rules["ema"] = {"smoothing_ms": (args.smoothing_ms,)}
    if args.mean_steps is not None and "mean" in rules:
        rules["mean"] = {"mean_steps": (args.mean_steps or None,)}
    grid = {"rules": rules, "threshold": CALIBRATION_GRID["threshold"], "hysteresis": CALIBRATION_GRID["hysteresis"],
            "class_threshold": CALIBRATION_GRID["class_threshold"]}
    if args.threshold is not None:
        grid["threshold"] = (args.threshold,)
    if args.hysteresis is not None:
        grid["hysteresis"] = (args.hysteresis,)
    return grid


def _calibrate(args, recordings, classifier, pre, window_steps, step_us, model, ckpt_path) -> int:
    """Replay once, grid-search the decision settings on the stored logits, write the checkpoint copy."""
    from pathlib import Path

    from evstream.errors import EventFileError
    from models.checkpoint import save_checkpoint, update_checkpoint
    from models.online_eval import calibrate_decisions, redecide, replay, score_decisions

    runs = []
    for rec in recordings:
        dec = replay(rec, classifier, pre, steps=window_steps, step_us=step_us or None)
        runs.append((dec, rec.labels))
        if not args.json:
            print(f"{rec.path.name}: {dec.duration_s:.1f} s replayed in {dec.wall_s:.1f} s, {len(dec.t_us)} steps")
    num_classes = classifier.num_classes
    result = calibrate_decisions(runs, num_classes, grid=_grid(args))
    best = result["best"] | {"window_steps": window_steps}
    report = score_decisions(
        [(dec.t_us, redecide(dec, num_classes, best), segs) for dec, segs in runs],
        num_classes,
        stable_ms=args.stable_ms,
    )
    record = {
        "objective": result["objective"],
        "score": result["score"],
        "accuracy": result["accuracy"],
        "false_alarm": result["false_alarm"],
        "recordings": [str(rec.path) for rec in recordings],
        "decisions": result["decisions"],
    }
    out = Path(args.out)
    if ckpt_path is None:  # an untrained registered variant: a new checkpoint of it
        save_checkpoint(out, model, preprocessing=pre, decision=best, metrics={"online_calibration": record})
    else:
        update_checkpoint(ckpt_path, out, decision=best, metrics={"online_calibration": record})
    summary = {**record, "decision": best, "report": report, "candidates": result["candidates"]}
    json_path = out.with_name(f"{out.stem}_calibration.json")
    try:
        json_path.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
    except OSError as err:
        raise EventFileError(json_path, f"cannot write the calibration report: {err.strerror or err}") from None
    if args.json:
        print(json.dumps(summary))
        return 0
    print(
        f"calibrated on {len(recordings)} recording(s), {result['decisions']} labelled steps: {_describe(best)}; "
        f"online accuracy {_fmt(result['accuracy'])}, false alarms {_fmt(result['false_alarm'])} "
        f"(score {result['score']:.3f} = accuracy - false alarms)"
    )
    print(f"wrote {out} and {json_path}")
    return 0
