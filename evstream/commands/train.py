"""``python main.py train``: train a Spikformer on DVS128 Gesture or a synthetic gesture set.

Thin front of :func:`models.train.train`; torch is imported only when the command runs.
``--dataset dvsgesture`` first finds, verifies, unpacks (and with ``--download`` fetches) DVS128
Gesture in ``--data`` (:mod:`models.dvsgesture`), selects the paper's recipe for
``spikformer_2_256`` as the defaults of every flag left unset, and writes a model card beside the
checkpoint at the end.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run", "build_config", "calibrate_held_out", "calibrated_path", "GENERIC_DEFAULTS",
           "EXAMPLES"]

EXAMPLES = """\
examples:
  python main.py train --dataset dvsgesture --data data/gesture --download   # the paper's recipe, one command
  python main.py train --dataset dvsgesture --data data/gesture --download --prepare-only   # fetch + unpack only
  python main.py train --dataset dvsgesture --data data/gesture --recipe stream   # needs IBM's DvsGesture.tar.gz
  python main.py synth --out data/synth --samples 8
  python main.py train --data data/synth --model spikformer_2_64 --epochs 20 --step-ms 50 --out runs/synth.pt
  python main.py train --data data/synth --out runs/synth.pt --resume runs/synth_last.pt --epochs 30
  python main.py train --data DvsGesture --model spikformer_2_256 --split-by number --steps 16 \\
      --epochs 202 --warmup-epochs 10 --cooldown-epochs 10 --mixup-off-epoch 75 --batch 16 --workers 8 \\
      --out runs/gesture_2_256.pt
  python main.py train --data data/synth --model spikformer_2_64 --recipe stream --step-ms 50 --steps 16 \\
      --burn-in 8 --epochs 30 --out runs/synth_stream.pt
  torchrun --nproc-per-node 4 main.py train --dataset dvsgesture --data data/gesture --workers 4

writes: --out PATH (best held-out top-1; stream recipe: best score), PATH_last.pt (for --resume),
PATH_confusion.png (stream recipe: over gesture steps); with --dataset also PATH.md, the model card;
with --calibrate also PATH_calibrated.pt and PATH_calibrated_calibration.json

Fine-tuning on your own recordings (a Teach / collect folder), the dashboard's Fine-tune panel path:
  python main.py train --init spikformer_synth_stream_64 --data DIR --recipe stream --calibrate
PATH carries --init's decision settings (rule, smoothing, thresholds; less per-class thresholds when
the head is replaced); --calibrate chooses them for the new weights on DIR's held-out runs
(trials_to_test.txt) and writes PATH_calibrated.pt, the one to load (on the bench's out-of-range
person, 10 epochs: 0.818 online calibrated, against 0.576 for the shipped model; bench/finetune.py).

--dataset dvsgesture looks in --data DIR for IBM's release (DvsGesture.tar.gz, from
https://research.ibm.com/dvsgesture/ by hand: the paper's 1176/288 split, and the one --recipe stream
needs) or tonic's copy (ibmGestureTrain.tar.gz + ibmGestureTest.tar.gz, fetched from figshare by
--download into DIR/DVSGesture/), checks each archive's md5, unpacks it once, and trains with the
paper's recipe for spikformer_2_256: T = 16 frames of equal event count, batch 16, AdamW lr 1e-3,
weight decay 0.06, 10 warm-up epochs, 192 + 10 cooldown epochs, mixup 0.5 off from epoch 75, label
smoothing 0.1, AMP on CUDA. Any flag given overrides its part of the recipe.

--recipe stream trains for the live stream: sequences of --burn-in + --steps consecutive steps cut at
random offsets from whole recordings (IBM layout only), per-step targets (-1 = rest), the first
--burn-in steps run without gradients to warm the state, TET loss on every later step (Deng et al.,
ICLR 2022), rest steps pulled towards the uniform distribution; mixup is off. The best epoch has the
highest score = mean of the gesture-step top-1 and the fraction of rest steps left undecided.
"""

# TrainConfig field -> the default of a flag left unset without --dataset (with it, the recipe's
# value of models.dvsgesture.recipe_defaults comes first). Unset flags parse as None.
GENERIC_DEFAULTS: dict[str, Any] = {
    "layout": "ibm",
    "epochs": 40,
    "batch": 16,
    "steps": None,  # the model's
    "lr": 1e-3,
    "weight_decay": 0.06,
    "warmup_epochs": 2.0,
    "min_lr": 1e-5,
    "cooldown_epochs": 0,
    "mixup_alpha": 0.5,
    "mixup_prob": 0.5,
    "mixup_off_epoch": None,  # 75/202 of the epochs
    "smoothing": 0.1,
    "seed": 2021,
}
_FLAG_OF = {"mixup_alpha": "mixup"}  # TrainConfig field -> argparse dest, where they differ


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the training options on ``parser``."""
    parser.add_argument(
        "--data", required=True,
        help="dataset root (IBM DvsGesture folder, synthetic set, or tonic root; with --dataset: the folder holding "
        "or receiving the archives)",
    )
    dataset = parser.add_argument_group("DVS128 Gesture in one command (--dataset dvsgesture)")
    dataset.add_argument(
        "--dataset", choices=("dvsgesture",), default=None,
        help="find, verify (md5) and unpack DVS128 Gesture in --data, then train with the paper's recipe for "
        "spikformer_2_256 (every flag given still overrides it)",
    )
    dataset.add_argument(
        "--download", action="store_true",
        help="with --dataset: fetch tonic's copy (ibmGestureTrain/Test.tar.gz, figshare) when --data holds no release",
    )
    dataset.add_argument(
        "--mirror", default=None,
        help="with --download: a URL (http, https, file) or folder holding the archives under their own names, "
        "used instead of figshare",
    )
    dataset.add_argument(
        "--prepare-only", action="store_true", help="with --dataset: verify, download and unpack, then exit"
    )
    parser.add_argument("--layout", choices=("ibm", "tonic"), default=None,
                        help="dataset layout (default ibm; with --dataset: the release found)")
    parser.add_argument("--model", default=None,
                        help="registered variant (default: --init's, else spikformer_2_64; --dataset: spikformer_2_256)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="total epochs, cooldown included (default 40; --dataset: 202)")
    parser.add_argument("--batch", type=int, default=None, help="batch size per process (default 16)")
    parser.add_argument("--steps", type=int, default=None,
                        help="time steps T per training window (default: the model's; --dataset: 16)")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument(
        "--step-ms", type=float, default=None,
        help="fixed time step in ms, as streaming bins (default: --init's, else 50)"
    )
    timing.add_argument(
        "--split-by",
        choices=("number",),
        default=None,
        help="'number': T frames of equal event count per clip (the paper's preprocessing; --dataset's default "
        "for --recipe clip)",
    )
    parser.add_argument("--out", default=None,
                        help="best checkpoint path (.pt; default runs/<data folder name>.pt; --dataset: "
                        "runs/dvsgesture_<model>[_stream].pt)")
    parser.add_argument("--resume", default=None, help="continue from a PATH_last.pt checkpoint")
    parser.add_argument("--init", default=None, help="start from a checkpoint's weights (fine-tuning; new optimizer)")
    parser.add_argument(
        "--freeze-stem", type=int, default=0, metavar="K",
        help="keep the first K of the 4 SPS stem stages fixed (weights and BatchNorm statistics; fine-tuning with "
        "--init: faster steps, fewer weights to fit from few examples; default 0)",
    )
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--lr", type=float, default=None, help="peak AdamW learning rate (default 1e-3)")
    parser.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay (default 0.06)")
    parser.add_argument("--warmup-epochs", type=float, default=None,
                        help="linear warm-up epochs (default 2; --dataset: 10)")
    parser.add_argument("--cooldown-epochs", type=int, default=None,
                        help="final epochs at --min-lr (default 0; --dataset: 10)")
    parser.add_argument("--min-lr", type=float, default=None, help="cosine floor (default 1e-5)")
    parser.add_argument("--mixup", type=float, default=None, help="mixup alpha; 0 disables (default 0.5)")
    parser.add_argument("--mixup-prob", type=float, default=None, help="probability a batch is mixed (default 0.5)")
    parser.add_argument(
        "--mixup-off-epoch", type=int, default=None,
        help="first epoch without mixup (default 75/202 of --epochs; --dataset: 75)",
    )
    parser.add_argument("--smoothing", type=float, default=None, help="label smoothing (default 0.1)")
    parser.add_argument("--no-augment", action="store_true", help="no geometric augmentation of training clips")
    parser.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default 2021)")
    parser.add_argument("--cache-dir", default=None, help="folder for cached binned frames")
    parser.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (default 1)")
    parser.add_argument(
        "--calibrate", action="store_true",
        help="at the end, choose the online-decision settings on the data's held-out (test) recordings, as "
        "'eval --stream DATA --split test --calibrate' does, and write them into PATH_calibrated.pt (IBM layout); "
        "without it the checkpoints carry --init's decision settings",
    )
    parser.add_argument(
        "--recipe",
        choices=("clip", "stream"),
        default="clip",
        help="clip: one label per gesture clip (the paper's recipe, default); "
        "stream: per-step labels on sequences cut from whole recordings, TET loss, warm state",
    )
    stream = parser.add_argument_group("stream recipe (--recipe stream)")
    stream.add_argument(
        "--burn-in", type=int, default=8, help="steps run without gradients or loss before --steps (default 8)"
    )
    stream.add_argument(
        "--tet-lambda", type=float, default=1e-3, help="TET λ: loss (1-λ)·CE + λ·MSE(logits, phi) (default 1e-3)"
    )
    stream.add_argument("--tet-phi", type=float, default=0.0, help="TET constant phi for the logits (default 0)")
    stream.add_argument(
        "--rest-weight", type=float, default=1.0, help="weight of rest steps (target: uniform) in the loss (default 1)"
    )
    stream.add_argument(
        "--samples-per-epoch",
        type=int,
        default=None,
        help="training sequences per epoch (default: total training steps / --steps)",
    )
    stream.add_argument(
        "--rest-threshold",
        type=float,
        default=0.5,
        help="evaluation: a rest step is undecided when its max softmax is below this (default 0.5)",
    )


def build_config(args: argparse.Namespace, location: Any = None) -> Any:
    """The :class:`models.train.TrainConfig` of parsed flags; ``location`` (a prepared
    :class:`models.dvsgesture.DatasetLocation`) selects the paper's recipe as the defaults.

    A flag given always wins; an unset one takes the recipe's value under ``--dataset``, else
    :data:`GENERIC_DEFAULTS`.
    """
    from evstream.errors import ConfigError
    from models.train import TrainConfig

    preset: dict[str, Any] = {}
    data, layout = args.data, args.layout
    if location is not None:
        from models.dvsgesture import recipe_defaults

        preset = recipe_defaults(args.recipe)
        if layout is not None and layout != location.layout:
            raise ConfigError(f"--layout: {layout!r}, but {args.data} holds the {location.layout} layout "
                              f"({location.release})")
        data, layout = str(location.data), location.layout
    values: dict[str, Any] = {}
    for field, generic in GENERIC_DEFAULTS.items():
        given = getattr(args, _FLAG_OF.get(field, field))
        values[field] = given if given is not None else preset.get(field, generic)
    values["layout"] = layout or GENERIC_DEFAULTS["layout"]
    model = args.model if args.model is not None else (None if args.init else preset.get("model"))
    if args.split_by == "number" or (args.split_by is None and args.step_ms is None
                                     and preset.get("split_by") == "number"):
        split_by, step_ms = "number", None
    else:
        split_by, step_ms = "time", args.step_ms if args.step_ms is not None or args.init else 50.0
    return TrainConfig(
        data=data,
        out=args.out,
        model=model,
        step_ms=step_ms,
        split_by=split_by,
        resume=args.resume,
        init=args.init,
        workers=args.workers,
        device=args.device,
        augment=not args.no_augment,
        amp=not args.no_amp,
        cache_dir=args.cache_dir,
        eval_every=args.eval_every,
        recipe=args.recipe,
        burn_in=args.burn_in,
        tet_lambda=args.tet_lambda,
        tet_phi=args.tet_phi,
        rest_weight=args.rest_weight,
        samples_per_epoch=args.samples_per_epoch,
        rest_threshold=args.rest_threshold,
        freeze_stem=args.freeze_stem,
        **values,
    )


def _command_line(args: argparse.Namespace, config: Any) -> str:
    """The shortest command that repeats this run: --dataset, --data, and each setting off the recipe's."""
    import dataclasses

    from models.dvsgesture import recipe_defaults
    from models.train import TrainConfig

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flag_of = {a.dest: a.option_strings[-1] for a in parser._actions if a.option_strings}
    reference = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    reference.update(GENERIC_DEFAULTS, **recipe_defaults(config.recipe), step_ms=50.0)
    words = ["python", "main.py", "train", "--dataset", args.dataset, "--data", args.data]
    if config.recipe != "clip":
        words += ["--recipe", config.recipe]
    if config.split_by == "time" and reference.get("split_by") == "number":
        words += ["--step-ms", f"{config.step_ms:g}"]
    skip = {"data", "out", "layout", "recipe", "split_by", "device", "workers", "cache_dir", "augment", "amp"}
    for field in dataclasses.fields(TrainConfig):
        value = getattr(config, field.name)
        flag = flag_of.get(_FLAG_OF.get(field.name, field.name))
        if field.name in skip or flag is None or value is None or value == reference.get(field.name):
            continue
        if field.name == "step_ms" and "--step-ms" in words:
            continue
        words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    for flag, on in (("--no-augment", not config.augment), ("--no-amp", not config.amp)):
        if on:
            words.append(flag)
    words += ["--out", config.out]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    """Train; prints one line per epoch and the best held-out top-1 (with --dataset, first the data's state)."""
    from evstream.errors import ConfigError

    location = None
    if args.dataset is None:
        for flag, given in (("--download", args.download), ("--mirror", args.mirror),
                            ("--prepare-only", args.prepare_only)):
            if given:
                raise ConfigError(f"{flag}: only with --dataset dvsgesture")
    else:
        from models.dvsgesture import prepare_dvsgesture

        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        location = prepare_dvsgesture(
            args.data, download=args.download, mirror=args.mirror, recipe=args.recipe, unpack=not distributed
        )
        print(f"dataset: {location.release}: {location.data} ({location.layout} layout)", flush=True)
        if args.prepare_only:
            return 0
    if args.out is None:
        if location is not None:
            model = args.model or ("spikformer_2_256" if not args.init else Path(args.init).stem)
            args.out = str(Path("runs") / f"dvsgesture_{model}{'_stream' if args.recipe == 'stream' else ''}.pt")
        else:
            args.out = str(Path("runs") / f"{Path(args.data).resolve().name}.pt")
        print(f"--out not given: writing {args.out}", flush=True)
    config = build_config(args, location)
    if args.calibrate and config.layout != "ibm":
        raise ConfigError(f"--calibrate: replays whole labelled recordings (IBM layout); {config.data} is read "
                          f"in the {config.layout} layout")

    from models.train import train

    started = time.perf_counter()
    best = train(config)
    wall_s = time.perf_counter() - started
    if location is not None and "confusion_png" in best:
        from models.dvsgesture import write_model_card

        card = write_model_card(
            Path(config.out).with_suffix(".md"), checkpoint=config.out, best=best, config=config,
            location=location, command=_command_line(args, config), wall_s=wall_s,
        )
        print(f"model card: {card}", flush=True)
    if "epoch" in best:
        what = "top-1" if best.get("recipe", "clip") == "clip" else f"score {best['score']:.4f}, gesture-step top-1"
        print(
            f"best: epoch {best['epoch'] + 1} {what} {best['top1']:.4f} ({best['correct']}/{best['samples']}) -> {args.out}"
        )
    if args.calibrate and int(os.environ.get("RANK", "0")) == 0:
        return calibrate_held_out(config.out, config.data, args.device)
    return 0


def calibrated_path(checkpoint: str | os.PathLike) -> Path:
    """Where ``--calibrate`` writes the calibrated copy of ``checkpoint``: ``PATH_calibrated.pt`` beside it."""
    path = Path(checkpoint)
    return path.with_name(f"{path.stem}_calibrated.pt")


def calibrate_held_out(checkpoint: str, data: str, device: str = "auto") -> int:
    """``python main.py eval --stream DATA --split test --calibrate --model CKPT --out PATH_calibrated.pt``,
    run in this process (the same code, the same result).

    Returns:
        0 when the calibrated copy was written; 1 (one ``error:`` line saying the trained checkpoint
        stays usable) when the calibration failed.
    """
    import sys

    from evstream.commands import eval as eval_command
    from evstream.errors import EvstreamError

    out = calibrated_path(checkpoint)
    parser = argparse.ArgumentParser(prog="eval")
    eval_command.add_arguments(parser)
    args = parser.parse_args(["--stream", str(data), "--split", "test", "--calibrate", "--model", str(checkpoint),
                              "--out", str(out), "--device", device])
    print(f"calibrating the decisions on the held-out runs of {data} (trials_to_test.txt) -> {out}", flush=True)
    try:
        eval_command.run(args)
    except EvstreamError as err:
        print(f"error: calibration failed: {err}; the trained checkpoint {checkpoint} stays usable (decisions "
              "not calibrated)", file=sys.stderr)
        return 1
    print(f"calibrated: load {out}", flush=True)
    return 0
