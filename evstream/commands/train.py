"""``python main.py train``: train a Spikformer on DVS128 Gesture or a synthetic gesture set.

Thin front of :func:`models.train.train`; torch is imported only when the command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "run", "EXAMPLES"]

EXAMPLES = """\
examples:
  python main.py synth --out data/synth --samples 8
  python main.py train --data data/synth --model spikformer_2_64 --epochs 20 --step-ms 50 --out runs/synth.pt
  python main.py train --data data/synth --out runs/synth.pt --resume runs/synth_last.pt --epochs 30
  python main.py train --data DvsGesture --model spikformer_2_256 --split-by number --steps 16 \\
      --epochs 202 --warmup-epochs 10 --cooldown-epochs 10 --mixup-off-epoch 75 --batch 16 --workers 8 \\
      --out runs/gesture_2_256.pt
  python main.py train --data data/synth --model spikformer_2_64 --recipe stream --step-ms 50 --steps 16 \\
      --burn-in 8 --epochs 30 --out runs/synth_stream.pt
  torchrun --nproc-per-node 4 main.py train --data DvsGesture --model spikformer_2_256 --split-by number ...

writes: --out PATH (best held-out top-1; stream recipe: best score), PATH_last.pt (for --resume),
PATH_confusion.png (stream recipe: over gesture steps)

--recipe stream trains for the live stream: sequences of --burn-in + --steps consecutive steps cut at
random offsets from whole recordings (IBM layout only), per-step targets (-1 = rest), the first
--burn-in steps run without gradients to warm the state, TET loss on every later step (Deng et al.,
ICLR 2022), rest steps pulled towards the uniform distribution; mixup is off. The best epoch has the
highest score = mean of the gesture-step top-1 and the fraction of rest steps left undecided.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the training options on ``parser``."""
    parser.add_argument(
        "--data", required=True, help="dataset root (IBM DvsGesture folder, synthetic set, or tonic root)"
    )
    parser.add_argument("--layout", choices=("ibm", "tonic"), default="ibm", help="dataset layout (default ibm)")
    parser.add_argument("--model", default=None,
                        help="registered variant (default: --init's, else spikformer_2_64)")
    parser.add_argument("--epochs", type=int, default=40, help="total epochs, cooldown included (default 40)")
    parser.add_argument("--batch", type=int, default=16, help="batch size per process (default 16)")
    parser.add_argument("--steps", type=int, default=None, help="time steps T per training window (default: the model's)")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument(
        "--step-ms", type=float, default=None,
        help="fixed time step in ms, as streaming bins (default: --init's, else 50)"
    )
    timing.add_argument(
        "--split-by",
        choices=("number",),
        default=None,
        help="'number': T frames of equal event count per clip (the paper's preprocessing)",
    )
    parser.add_argument("--out", default=None,
                        help="best checkpoint path (.pt; default runs/<data folder name>.pt)")
    parser.add_argument("--resume", default=None, help="continue from a PATH_last.pt checkpoint")
    parser.add_argument("--init", default=None, help="start from a checkpoint's weights (fine-tuning; new optimizer)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (default 0)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default 1e-3)")
    parser.add_argument("--weight-decay", type=float, default=0.06, help="AdamW weight decay (default 0.06)")
    parser.add_argument("--warmup-epochs", type=float, default=2.0, help="linear warm-up epochs (default 2)")
    parser.add_argument("--cooldown-epochs", type=int, default=0, help="final epochs at --min-lr (default 0)")
    parser.add_argument("--min-lr", type=float, default=1e-5, help="cosine floor (default 1e-5)")
    parser.add_argument("--mixup", type=float, default=0.5, help="mixup alpha; 0 disables (default 0.5)")
    parser.add_argument("--mixup-prob", type=float, default=0.5, help="probability a batch is mixed (default 0.5)")
    parser.add_argument(
        "--mixup-off-epoch", type=int, default=None, help="first epoch without mixup (default 75/202 of --epochs)"
    )
    parser.add_argument("--smoothing", type=float, default=0.1, help="label smoothing (default 0.1)")
    parser.add_argument("--no-augment", action="store_true", help="no geometric augmentation of training clips")
    parser.add_argument("--no-amp", action="store_true", help="full precision on CUDA")
    parser.add_argument("--seed", type=int, default=2021, help="random seed (default 2021)")
    parser.add_argument("--cache-dir", default=None, help="folder for cached binned frames")
    parser.add_argument("--eval-every", type=int, default=1, help="evaluate every N epochs (default 1)")
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


def run(args: argparse.Namespace) -> int:
    """Train; prints one line per epoch and the best held-out top-1."""
    from models.train import TrainConfig, train

    if args.out is None:
        args.out = str(Path("runs") / f"{Path(args.data).resolve().name}.pt")
        print(f"--out not given: writing {args.out}", flush=True)
    step_ms = args.step_ms if args.step_ms is not None or args.init else 50.0
    config = TrainConfig(
        data=args.data,
        out=args.out,
        layout=args.layout,
        model=args.model,
        epochs=args.epochs,
        batch=args.batch,
        steps=args.steps,
        step_ms=None if args.split_by == "number" else step_ms,
        split_by="number" if args.split_by == "number" else "time",
        resume=args.resume,
        init=args.init,
        workers=args.workers,
        device=args.device,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        min_lr=args.min_lr,
        cooldown_epochs=args.cooldown_epochs,
        mixup_alpha=args.mixup,
        mixup_prob=args.mixup_prob,
        mixup_off_epoch=args.mixup_off_epoch,
        smoothing=args.smoothing,
        augment=not args.no_augment,
        amp=not args.no_amp,
        seed=args.seed,
        cache_dir=args.cache_dir,
        eval_every=args.eval_every,
        recipe=args.recipe,
        burn_in=args.burn_in,
        tet_lambda=args.tet_lambda,
        tet_phi=args.tet_phi,
        rest_weight=args.rest_weight,
        samples_per_epoch=args.samples_per_epoch,
        rest_threshold=args.rest_threshold,
    )
    best = train(config)
    if "epoch" in best:
        what = "top-1" if best.get("recipe", "clip") == "clip" else f"score {best['score']:.4f}, gesture-step top-1"
        print(
            f"best: epoch {best['epoch'] + 1} {what} {best['top1']:.4f} ({best['correct']}/{best['samples']}) -> {args.out}"
        )
    return 0
