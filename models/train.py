"""Training and evaluation of a Spikformer on DVS128 Gesture (IBM or tonic layout) or a synthetic set.

The recipe follows the Spikformer family's DVS128 Gesture training (``zhouchenlin2096/Spikingformer``
``dvs128-gesture/train.py``, after ``ZK-Zhou/spikformer`` ``cifar10dvs/train.py``): AdamW (lr 1e-3,
weight decay 0.06), cosine schedule with linear warm-up from 1e-5 and an optional cooldown at the
minimum, mixup (alpha 0.5, probability 0.5, switched off late in training) with label smoothing 0.1,
AMP on CUDA, and :func:`spikingjelly.activation_based.functional.reset_net` after every batch (each
sample is an independent sequence). Several GPUs: launch with ``torchrun``; ``WORLD_SIZE`` in the
environment selects DistributedDataParallel with a DistributedSampler, and only rank 0 writes.

``recipe="stream"`` trains for the stream instead (``../shared/reference/spikformer.md`` §8): samples
are ``burn_in + steps`` consecutive steps cut at random offsets from whole recordings
(:class:`models.data.StreamSequenceDataset`, per-step targets, -1 on rests). Each batch runs the
first ``burn_in`` steps without gradients (state carried, no loss), then the remaining ``steps``
with gradients from that warm state (truncated BPTT), under the TET loss (:func:`tet_loss`; Deng et
al., ICLR 2022) on every step's logits; rest steps are pulled towards the uniform distribution.
Mixup is off for this recipe: mixing two sequences whose per-step labels differ (a gesture with a
rest, two boundaries at different steps) has no meaningful target. The held-out split is scored
per step (:func:`evaluate_stream`), and the best epoch is the one with the highest ``score`` =
mean of the gesture-step top-1 and the fraction of rest steps left undecided.

Checkpoints (see :mod:`models.checkpoint`): ``--out PATH`` receives the best epoch's model (by
held-out top-1), ``PATH_last.pt`` the latest with optimizer state for ``--resume``, and
``PATH_confusion.png`` the confusion matrix of the best model on the held-out split (over gesture
steps for the stream recipe). ``preprocessing`` records ``steps``, ``step_us``, ``mode`` and the
``recipe`` (and ``burn_in`` for the stream recipe).
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from evstream.errors import ConfigError, ModelError
from evstream.labels import DVS_GESTURE_CLASSES
from models.checkpoint import load_checkpoint, save_checkpoint
from models.spikformer import Spikformer, create_model

DEFAULT_VARIANT = "spikformer_2_64"  # TrainConfig.model=None without --init

__all__ = [
    "TrainConfig",
    "train",
    "train_one_epoch",
    "evaluate",
    "evaluate_stream",
    "evaluate_checkpoint",
    "inherited_decision",
    "train_stream_epoch",
    "burn_in_forward",
    "stream_soft_targets",
    "tet_loss",
    "mixup_batch",
    "smooth_targets",
    "soft_cross_entropy",
    "lr_factor",
    "save_confusion_png",
    "resolve_device",
]


@dataclass
class TrainConfig:
    """Options of :func:`train` (the ``python main.py train`` flags)."""

    data: str  # dataset root folder
    out: str  # path of the best checkpoint; PATH_last.pt and PATH_confusion.png beside it
    layout: Literal["ibm", "tonic"] = "ibm"  # IBM DvsGesture folder (also the synthetic set) or tonic's .npy copy
    model: str | None = "spikformer_2_64"  # registered variant (models.list_models()); None: --init's, else spikformer_2_64
    epochs: int = 40  # total epochs, cooldown included
    batch: int = 16  # samples per optimizer step (per process under DDP)
    steps: int | None = None  # T; default the variant's config.steps
    step_ms: float | None = 50.0  # fixed time step in ms (streaming preprocessing); None with split_by="number" or: init's
    split_by: Literal["time", "number"] = "time"  # "number": T frames of equal event count per clip (paper recipe)
    resume: str | None = None  # a PATH_last.pt to continue from
    init: str | None = None  # start from this checkpoint's weights (fresh optimizer and schedule)
    workers: int = 0  # DataLoader worker processes
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    lr: float = 1e-3  # peak AdamW learning rate
    weight_decay: float = 0.06  # AdamW weight decay
    warmup_epochs: float = 2.0  # linear warm-up from warmup_lr to lr
    warmup_lr: float = 1e-5  # learning rate at the start of the warm-up
    min_lr: float = 1e-5  # end of the cosine, and the cooldown learning rate
    cooldown_epochs: int = 0  # final epochs held at min_lr (10 in the paper recipe)
    mixup_alpha: float = 0.5  # Beta(alpha, alpha) mixing coefficient; 0 disables mixup
    mixup_prob: float = 0.5  # probability that a batch is mixed
    mixup_off_epoch: int | None = None  # first epoch without mixup; default 75/202 of the epochs (paper: 75)
    smoothing: float = 0.1  # label smoothing
    augment: bool = True  # models.data.GestureAugment on training clips
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    seed: int = 2021  # torch / numpy seed
    cache_dir: str | None = None  # cache of binned clips; default OUT's folder/frames_cache
    eval_every: int = 1  # evaluate on the held-out split every N epochs (and at the last)
    recipe: Literal["clip", "stream"] = "clip"  # "clip": one label per clip (paper); "stream": per-step TET
    burn_in: int = 8  # stream: leading steps per sequence run without gradients or loss (warm state)
    tet_lambda: float = 1e-3  # stream: TET's λ, weight of MSE(o_t, φ) (Deng et al., ICLR 2022: 1e-3)
    tet_phi: float = 0.0  # stream: TET's φ, the constant the per-step logits are pulled towards
    rest_weight: float = 1.0  # stream: weight of rest steps (target: uniform over classes) in the CE
    samples_per_epoch: int | None = None  # stream: sequences per epoch; default total train steps / steps
    rest_threshold: float = 0.5  # stream evaluation: a rest step counts as undecided when max softmax < this
    freeze_stem: int = 0  # the first K SPS stem stages keep their weights and BatchNorm statistics (fine-tuning)

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch <= 0:
            raise ConfigError(f"epochs/batch: {self.epochs}/{self.batch} must be positive")
        if self.split_by not in ("time", "number"):
            raise ConfigError(f"split_by: {self.split_by!r} is not 'time' or 'number'")
        if self.split_by == "time" and (self.step_ms is None and self.init is None
                                        or self.step_ms is not None and self.step_ms <= 0):
            raise ConfigError(f"step_ms: {self.step_ms} must be positive with fixed time steps")
        if self.layout not in ("ibm", "tonic"):
            raise ConfigError(f"layout: {self.layout!r} is not 'ibm' or 'tonic'")
        if self.recipe not in ("clip", "stream"):
            raise ConfigError(f"recipe: {self.recipe!r} is not 'clip' or 'stream'")
        if isinstance(self.burn_in, bool) or not isinstance(self.burn_in, int) or self.burn_in < 0:
            raise ConfigError(f"burn_in: {self.burn_in!r} must be an integer >= 0")
        if not 0.0 <= self.tet_lambda < 1.0:
            raise ConfigError(f"tet_lambda: {self.tet_lambda} must be in [0, 1) (loss = (1-λ)·CE + λ·MSE)")
        if not math.isfinite(self.tet_phi):
            raise ConfigError(f"tet_phi: {self.tet_phi} must be finite")
        if not (math.isfinite(self.rest_weight) and self.rest_weight >= 0.0):
            raise ConfigError(f"rest_weight: {self.rest_weight} must be >= 0")
        if isinstance(self.freeze_stem, bool) or not isinstance(self.freeze_stem, int) or self.freeze_stem < 0:
            raise ConfigError(f"freeze_stem: {self.freeze_stem!r} must be an integer >= 0")
        if self.samples_per_epoch is not None and self.samples_per_epoch <= 0:
            raise ConfigError(f"samples_per_epoch: {self.samples_per_epoch} must be positive")
        if not 0.0 < self.rest_threshold <= 1.0:
            raise ConfigError(f"rest_threshold: {self.rest_threshold} must be in (0, 1]")
        if not 0.0 <= self.smoothing < 1.0:
            raise ConfigError(f"smoothing: {self.smoothing} must be in [0, 1)")
        if self.recipe == "stream":
            if self.layout != "ibm":
                raise ConfigError(
                    f"layout: the stream recipe needs whole recordings (IBM layout); {self.layout!r} holds cut clips"
                )
            if self.split_by != "time":
                raise ConfigError("split_by: the stream recipe bins fixed time steps; 'number' is per clip")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU; ``cuda`` without a GPU raises :class:`ConfigError`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} requested but no CUDA device is available")
    return device


def lr_factor(
    step: int,
    total_steps: int,
    warmup_steps: int,
    cooldown_steps: int,
    lr: float,
    warmup_lr: float,
    min_lr: float,
) -> float:
    """Learning rate at optimizer step ``step`` divided by ``lr`` (for ``LambdaLR``).

    Linear from ``warmup_lr`` to ``lr`` over ``warmup_steps``, cosine from ``lr`` to ``min_lr`` until
    ``total_steps - cooldown_steps``, then ``min_lr``.
    """
    if step < warmup_steps:
        return (warmup_lr + (lr - warmup_lr) * step / warmup_steps) / lr
    decay_steps = max(1, total_steps - cooldown_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return (min_lr + 0.5 * (lr - min_lr) * (1.0 + math.cos(math.pi * progress))) / lr


def smooth_targets(labels: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """One-hot ``[B, classes]`` targets with ``smoothing`` spread evenly over all classes."""
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return targets.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)


def mixup_batch(
    frames: Tensor, labels: Tensor, num_classes: int, alpha: float, smoothing: float, rng: np.random.Generator
) -> tuple[Tensor, Tensor]:
    """Mixup (Zhang et al., ICLR 2018) of a batch with its own permutation, batch-wise λ ~ Beta(α, α).

    Args:
        frames: ``[T, B, C, H, W]``.
        labels: ``[B]`` class indices.
        rng: draws λ and the permutation (reproducible runs).

    Returns:
        Mixed frames ``[T, B, C, H, W]`` and soft targets ``[B, classes]`` (rows sum to 1).
    """
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(labels.shape[0])).to(labels.device)
    targets = smooth_targets(labels, num_classes, smoothing)
    mixed = frames * lam + frames[:, perm] * (1.0 - lam)
    return mixed, targets * lam + targets[perm] * (1.0 - lam)


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean over the batch of ``-Σ targets · log_softmax(logits)``; ``[B, classes]`` both."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def _to_model_layout(frames: Tensor, device: torch.device) -> Tensor:
    """DataLoader batch ``[B, T, 2, H, W]`` → model input ``[T, B, 2, H, W]`` float on ``device``."""
    return frames.to(device, non_blocking=True).float().transpose(0, 1).contiguous()


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    *,
    num_classes: int,
    mixup_alpha: float = 0.0,
    mixup_prob: float = 0.0,
    smoothing: float = 0.0,
    scaler: torch.amp.GradScaler | None = None,
    rng: np.random.Generator | None = None,
    progress: Any = None,
) -> dict[str, float]:
    """One pass over ``loader`` (batches of ``[B, T, 2, H, W]`` frames and ``[B]`` labels).

    Resets every LIF state after each batch. Returns ``loss`` (mean over samples), ``top1`` (against
    the unmixed labels), ``samples`` and ``samples_per_s``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    use_amp = scaler is not None and scaler.is_enabled()
    train_mode(model)
    total_loss, correct, seen = 0.0, 0, 0
    start = time.perf_counter()
    for frames, labels in loader:
        x = _to_model_layout(frames, device)
        y = labels.to(device, non_blocking=True).long()
        if mixup_alpha > 0 and rng.random() < mixup_prob:
            x, targets = mixup_batch(x, y, num_classes, mixup_alpha, smoothing, rng)
        else:
            targets = smooth_targets(y, num_classes, smoothing)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(x)
        loss = soft_cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        if use_amp:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        functional.reset_net(model)
        n = y.shape[0]
        total_loss += float(loss.detach()) * n
        correct += int((logits.detach().argmax(dim=1) == y).sum())
        seen += n
        if progress is not None:
            progress.update(n)
            progress.set_postfix(loss=f"{total_loss / seen:.3f}", sps=f"{seen / (time.perf_counter() - start):.1f}")
    elapsed = time.perf_counter() - start
    return {
        "loss": total_loss / max(seen, 1),
        "top1": correct / max(seen, 1),
        "samples": seen,
        "samples_per_s": seen / max(elapsed, 1e-9),
    }


@torch.inference_mode()
def evaluate(model: nn.Module, loader: Any, device: torch.device, num_classes: int) -> dict[str, Any]:
    """Top-1, mean cross-entropy and the confusion matrix (rows: true class, columns: predicted)."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    total_loss, seen = 0.0, 0
    for frames, labels in loader:
        x = _to_model_layout(frames, device)
        y = labels.long()
        logits = model(x).float().cpu()
        functional.reset_net(model)
        total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
        pred = logits.argmax(dim=1)
        confusion += torch.bincount(y * num_classes + pred, minlength=num_classes * num_classes).view(
            num_classes, num_classes
        )
        seen += y.shape[0]
    correct = int(confusion.diag().sum())
    return {
        "top1": correct / max(seen, 1),
        "correct": correct,
        "samples": seen,
        "loss": total_loss / max(seen, 1),
        "confusion": confusion.tolist(),
    }


# -- the stream recipe ----------------------------------------------------------------------------


class _StepLogits(nn.Module):
    """``forward`` = the model's per-step logits ``[T, B, classes]``, so DDP syncs the stream recipe's gradients."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.step_logits(x)


def _step_logits(net: nn.Module, x: Tensor) -> Tensor:
    return net(x) if isinstance(net, (_StepLogits, nn.parallel.DistributedDataParallel)) else net.step_logits(x)


def burn_in_forward(net: nn.Module, x: Tensor, burn_in: int) -> Tensor:
    """Per-step logits ``[T - burn_in, B, classes]`` of ``x`` ``[T, B, 2, H, W]`` after a warm-up.

    The first ``burn_in`` steps run under ``torch.no_grad()``: the LIF membranes (spikingjelly
    memories, kept between multi-step calls until ``reset_net``) carry their state on, but no
    autograd graph is built, so the loss steps start from a warm state with the graph cut there
    (truncated BPTT). ``functional.detach_net`` makes the cut explicit (a no-op after no_grad).
    The state is not reset between the two calls; the caller resets after the batch.

    Args:
        net: a Spikformer (``step_logits``), or one wrapped for DDP.
        x: frames ``[burn_in + steps, B, 2, H, W]``.
        burn_in: warm-up steps, ``0 <= burn_in < T``.
    """
    if not 0 <= burn_in < x.shape[0]:
        raise ConfigError(f"burn_in: {burn_in} must be in [0, {x.shape[0]}) for sequences of {x.shape[0]} steps")
    if burn_in:
        with torch.no_grad():
            _step_logits(net, x[:burn_in])
        functional.detach_net(net)
    return _step_logits(net, x[burn_in:])


def stream_soft_targets(targets: Tensor, num_classes: int, smoothing: float) -> Tensor:
    """Soft targets ``[..., classes]`` of per-step targets ``[...]``.

    Gesture steps: one-hot with label ``smoothing`` (as :func:`smooth_targets`); rest steps
    (target -1): the uniform distribution, so the model learns to be undecided between gestures
    when no gesture is under way.
    """
    flat = targets.reshape(-1)
    rest = flat < 0
    soft = smooth_targets(flat.clamp(min=0), num_classes, smoothing)
    soft[rest] = 1.0 / num_classes
    return soft.reshape(*targets.shape, num_classes)


def tet_loss(
    logits: Tensor,
    targets: Tensor,
    *,
    smoothing: float = 0.0,
    tet_lambda: float = 1e-3,
    phi: float = 0.0,
    rest_weight: float = 1.0,
) -> Tensor:
    """TET loss on per-step logits (Deng et al., "Temporal Efficient Training of Spiking Neural
    Network via Gradient Re-weighting", ICLR 2022, https://arxiv.org/abs/2202.11946).

    The paper's total loss (Eq. 10-12; official ``Gus-Lab/temporal_efficient_training`` ``TET_loss``):
    ``L = (1 - λ) · (1/T) Σ_t CE(o_t, y) + λ · (1/T) Σ_t MSE(o_t, φ)``, with λ = 1e-3 there (the
    official code pulls towards φ = 1.0; here φ defaults to 0: the logits of a Linear head, whose
    softmax ignores a common shift, so only the magnitude is regularised). The MSE is the mean over
    every step, sample and class. Per-step labels generalise the paper's single label: the CE of a
    step is taken against :func:`stream_soft_targets` (smoothed one-hot for gestures, uniform for
    rests), and the CE average is a weighted mean over steps and samples with weight
    ``rest_weight`` on rest steps and 1 on gesture steps.

    Args:
        logits: ``[T, B, classes]``.
        targets: ``[T, B]`` int64, 0-based class or -1 (rest).
    """
    logits = logits.float()
    num_classes = logits.shape[-1]
    soft = stream_soft_targets(targets, num_classes, smoothing)
    ce = torch.sum(-soft * F.log_softmax(logits, dim=-1), dim=-1)  # [T, B]
    weight = torch.where(targets < 0, torch.full_like(ce, rest_weight), torch.ones_like(ce))
    ce_mean = (ce * weight).sum() / weight.sum().clamp(min=1e-12)
    if tet_lambda == 0:
        return ce_mean
    mse = F.mse_loss(logits, torch.full_like(logits, phi))
    return (1.0 - tet_lambda) * ce_mean + tet_lambda * mse


def _stream_batch(frames: Tensor, targets: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """DataLoader batch ``[B, T, 2, H, W]``, ``[B, T]`` → ``[T, B, 2, H, W]`` float, ``[T, B]`` int64."""
    return _to_model_layout(frames, device), targets.to(device, non_blocking=True).long().transpose(0, 1)


def freeze_stem(model: nn.Module, stages: int) -> int:
    """Keep the first ``stages`` SPS stem stages of a Spikformer fixed; returns their parameter count.

    Their weights get no gradient and their BatchNorms keep the running statistics they have
    (:func:`train_mode` leaves them in eval mode). No input or parameter before the first trainable
    layer needs a gradient then, so autograd records nothing there: the stem's high-resolution
    stages, most of a step's compute, are not back-propagated. Few-shot fine-tuning keeps generic
    low-level features and adapts the rest (Yosinski et al., NeurIPS 2014, on transferring lower
    layers). Raises ConfigError when the model has fewer stages.
    """
    embed = getattr(model, "patch_embed", None)
    available = len(embed.stages) if embed is not None else 0
    if not 0 <= stages <= available:
        raise ConfigError(f"freeze_stem: {stages} stages, the model's stem has {available}")
    count = 0
    for stage in embed.stages[:stages] if stages else ():
        for p in stage.parameters():
            p.requires_grad_(False)
            count += p.numel()
    return count


def train_mode(net: nn.Module) -> None:
    """``net.train()``, except that a BatchNorm whose parameters are all frozen stays in eval mode
    (its running statistics are part of what was frozen)."""
    net.train()
    for module in net.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()


def train_stream_epoch(
    net: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    device: torch.device,
    *,
    burn_in: int,
    smoothing: float = 0.1,
    tet_lambda: float = 1e-3,
    tet_phi: float = 0.0,
    rest_weight: float = 1.0,
    scaler: torch.amp.GradScaler | None = None,
    progress: Any = None,
) -> dict[str, float]:
    """One pass of the stream recipe over ``loader`` (``[B, T, 2, H, W]`` frames, ``[B, T]`` targets).

    Per batch: :func:`burn_in_forward` (no loss on the first ``burn_in`` steps), :func:`tet_loss`
    on the rest, one optimizer step, then ``reset_net`` (each sequence is independent). No mixup.
    Returns ``loss`` (mean over batches weighted by sequences), ``top1`` (per-step accuracy on
    gesture loss steps), ``samples`` (sequences) and ``samples_per_s``.
    """
    use_amp = scaler is not None and scaler.is_enabled()
    train_mode(net)
    total_loss, correct, gesture_steps, seen = 0.0, 0, 0, 0
    start = time.perf_counter()
    for frames, targets in loader:
        x, y = _stream_batch(frames, targets, device)
        y = y[burn_in:]
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = burn_in_forward(net, x, burn_in)
        loss = tet_loss(
            logits, y, smoothing=smoothing, tet_lambda=tet_lambda, phi=tet_phi, rest_weight=rest_weight
        )
        optimizer.zero_grad(set_to_none=True)
        if use_amp:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        functional.reset_net(net)
        n = y.shape[1]
        total_loss += float(loss.detach()) * n
        gesture = y >= 0
        correct += int((logits.detach().argmax(dim=-1) == y)[gesture].sum())
        gesture_steps += int(gesture.sum())
        seen += n
        if progress is not None:
            progress.update(n)
            progress.set_postfix(loss=f"{total_loss / seen:.3f}", sps=f"{seen / (time.perf_counter() - start):.1f}")
    elapsed = time.perf_counter() - start
    return {
        "loss": total_loss / max(seen, 1),
        "top1": correct / max(gesture_steps, 1),
        "samples": seen,
        "samples_per_s": seen / max(elapsed, 1e-9),
    }


@torch.inference_mode()
def evaluate_stream(
    model: nn.Module,
    loader: Any,
    device: torch.device,
    num_classes: int,
    *,
    burn_in: int,
    rest_threshold: float = 0.5,
    tet_lambda: float = 1e-3,
    tet_phi: float = 0.0,
) -> dict[str, Any]:
    """Per-step scores of the stream recipe on sequences (``[B, T, 2, H, W]``, ``[B, T]`` targets).

    Each sequence runs from a reset state through its ``burn_in`` steps (not scored), then every
    later step is scored:

    - ``step_top1``: argmax accuracy on gesture steps (``correct`` of ``samples`` gesture steps;
      ``top1`` is the same number, for the clip recipe's readers);
    - ``rest_undecided``: fraction of rest steps (target -1) whose max softmax is below
      ``rest_threshold``, i.e. where the network does not claim a gesture;
    - ``clip_top1``: clip-equivalent accuracy: every run of consecutive steps of one gesture within
      a sequence is one decision, the argmax of its mean logits (what :meth:`Spikformer.forward`
      reads from a window), over ``clip_runs`` runs;
    - ``score`` (the best-checkpoint metric): mean of ``step_top1`` and ``rest_undecided``
      (``step_top1`` alone when there is no rest step);
    - ``loss`` (TET, no smoothing) and ``confusion`` over gesture steps (rows: true class).
    """
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    rest_steps = rest_low = runs = runs_correct = 0
    total_loss, batches = 0.0, 0
    for frames, targets in loader:
        x, y = _stream_batch(frames, targets, device)
        y = y[burn_in:].cpu()
        logits = burn_in_forward(model, x, burn_in).float().cpu()
        functional.reset_net(model)
        total_loss += float(tet_loss(logits, y, tet_lambda=tet_lambda, phi=tet_phi)) * y.shape[1]
        batches += y.shape[1]
        pred = logits.argmax(dim=-1)
        gesture = y >= 0
        confusion += torch.bincount(
            y[gesture] * num_classes + pred[gesture], minlength=num_classes * num_classes
        ).view(num_classes, num_classes)
        rest = ~gesture
        rest_steps += int(rest.sum())
        rest_low += int((logits.softmax(dim=-1).amax(dim=-1) < rest_threshold)[rest].sum())
        # runs of one target per sequence: flatten sequence-major, a run also starts at each sequence
        steps = y.shape[0]
        flat_y = y.transpose(0, 1).reshape(-1)
        flat_logits = logits.transpose(0, 1).reshape(-1, num_classes)
        starts = torch.ones_like(flat_y, dtype=torch.bool)
        starts[1:] = flat_y[1:] != flat_y[:-1]
        starts[::steps] = True
        run_id = starts.cumsum(0) - 1
        sums = torch.zeros(int(run_id[-1]) + 1, num_classes).index_add_(0, run_id, flat_logits)
        run_label = flat_y[starts]
        keep = run_label >= 0
        runs += int(keep.sum())
        runs_correct += int((sums.argmax(dim=1) == run_label)[keep].sum())
    correct = int(confusion.diag().sum())
    gesture_steps = int(confusion.sum())
    step_top1 = correct / max(gesture_steps, 1)
    rest_undecided = rest_low / rest_steps if rest_steps else float("nan")
    return {
        "top1": step_top1,
        "step_top1": step_top1,
        "correct": correct,
        "samples": gesture_steps,
        "rest_undecided": rest_undecided,
        "rest_steps": rest_steps,
        "rest_threshold": rest_threshold,
        "clip_top1": runs_correct / max(runs, 1),
        "clip_runs": runs,
        "score": 0.5 * (step_top1 + rest_undecided) if rest_steps else step_top1,
        "sequences": batches,
        "loss": total_loss / max(batches, 1),
        "confusion": confusion.tolist(),
    }


def save_confusion_png(
    confusion: list[list[int]], class_names: tuple[str, ...] | list[str], path: Path, title: str
) -> Path:
    """Draw a confusion matrix (counts, rows = true class) to a PNG with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    n = matrix.shape[0]
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * n, 0.8 + 0.6 * n), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(n), labels=list(class_names), rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(n), labels=list(class_names), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    peak = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                color = "white" if matrix[i, j] > peak / 2 else "black"
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _preprocessing(
    model: Spikformer, steps: int, split_by: str, step_ms: float | None, recipe: str = "clip", burn_in: int = 0
) -> dict[str, Any]:
    pre = {
        "sensor": [128, 128],
        "out_size": [model.config.img_size[1], model.config.img_size[0]],
        "steps": steps,  # training T (the loss steps of the stream recipe)
        "mode": "count" if split_by == "number" else "time",
        "channels": ["off", "on"],
        "recipe": recipe,
    }
    if split_by != "number":  # equal-count frames have no time step (a None here fails the checkpoint's check)
        pre["step_us"] = int(round(step_ms * 1000))
    if recipe == "stream":
        pre["burn_in"] = burn_in
    return pre


def describe_training_data(root: str | os.PathLike, layout: str) -> str:
    """What a dataset folder holds, in words, for the checkpoint's ``metrics["trained_on"]``.

    A set written by ``python main.py synth`` carries ``DvsGesture/SYNTHETIC.txt``; anything else
    in the IBM layout is taken for the real DVS128 Gesture release.
    """
    root = Path(root)
    synthetic = any(m.is_file() for m in (root / "DvsGesture" / "SYNTHETIC.txt", root / "SYNTHETIC.txt"))
    if layout == "ibm" and any((f / "classes.txt").is_file() for f in (root, root / "DvsGesture")):
        from models.data import dataset_class_names

        names = dataset_class_names(root)
        who = "a synthetic person (collect --synthetic)" if synthetic else "the user's own camera"
        return f"{len(names)} user classes recorded from {who} (evstream collect / Teach): {_clip(', '.join(names), 80)}"
    if synthetic:
        return "synthetic gestures only (evstream synth: rendered people, DVS emulator)"
    return "DVS128 Gesture (IBM layout)" if layout == "ibm" else "DVS128 Gesture (tonic layout)"


def make_dataset(
    data: str | os.PathLike,
    layout: str,
    split: str,
    *,
    steps: int,
    step_us: int | None,
    out_size: tuple[int, int],
    augment: bool = False,
    cache_dir: str | None = None,
    windows: str | None = None,
) -> Dataset:
    """The dataset of ``models.data`` for a layout: frames ``[T, 2, H, W]`` float32 and a label.

    ``out_size`` is ``(width, height)`` (evstream's convention, like ``preprocessing["out_size"]``);
    ``step_us=None`` bins each clip into ``steps`` frames of equal event count (``split_by='number'``).
    ``windows``: time steps only, ``"random"`` or ``"fixed"`` (``None``: random for train, fixed for test).
    """
    from models import data as gesture_data

    kind = {"ibm": gesture_data.IBMGestureDataset, "tonic": gesture_data.TonicGestureDataset}[layout]
    transform = gesture_data.GestureAugment() if augment else None
    timing: dict[str, Any] = {"mode": "count"} if step_us is None else {"step_us": step_us}
    return kind(
        data, split, steps=steps, out_size=tuple(out_size), transform=transform, cache_dir=cache_dir, windows=windows,
        **timing,
    )


def make_stream_dataset(
    data: str | os.PathLike,
    split: str,
    *,
    steps: int,
    step_us: int,
    burn_in: int,
    out_size: tuple[int, int],
    samples_per_epoch: int | None = None,
    augment: bool = False,
    cache_dir: str | None = None,
) -> Dataset:
    """:class:`models.data.StreamSequenceDataset` (IBM layout): ``burn_in + steps`` steps per sample."""
    from models import data as gesture_data

    return gesture_data.StreamSequenceDataset(
        data,
        split,
        steps=steps,
        step_us=step_us,
        burn_in=burn_in,
        samples_per_epoch=samples_per_epoch if split == "train" else None,
        out_size=tuple(out_size),
        transform=gesture_data.GestureAugment(gain=0.5) if augment else None,
        cache_dir=cache_dir,
    )


def _data_class_names(config: TrainConfig) -> tuple[str, ...]:
    """The classes the data names: an IBM-layout folder's ``classes.txt``, else DVS128 Gesture's 11."""
    from models.data import dataset_class_names

    return dataset_class_names(config.data) if config.layout == "ibm" else DVS_GESTURE_CLASSES


def _initial_model(config: TrainConfig, class_names: tuple[str, ...], start: Any, announce: bool) -> Spikformer:
    """The model training starts from: a fresh variant, or ``--init``'s weights (``start``).

    Fine-tuning (``start`` given) keeps the checkpoint's architecture and input size; when the data
    names other classes than the checkpoint (``classes.txt`` of a user's own recordings), the
    backbone is kept and the head is re-initialised with one output per new class (one printed line).
    """
    if start is None:
        overrides: dict[str, Any] = {"class_names": class_names}
        if config.steps:
            overrides["steps"] = config.steps
        return create_model(config.model or DEFAULT_VARIANT, **overrides)
    base = start.model.config
    model_config = dataclasses.replace(base, num_classes=len(class_names), steps=config.steps or base.steps)
    model = Spikformer(model_config, class_names=class_names, name=start.arch)
    weights = start.model.state_dict()
    if tuple(start.class_names) == tuple(class_names):
        model.load_state_dict(weights)
        if announce:
            print(f"init: {start.path.name}: every weight loaded ({len(class_names)} classes, the same names)",
                  flush=True)
        return model
    result = model.load_state_dict({k: v for k, v in weights.items() if not k.startswith("head.")}, strict=False)
    if result.unexpected_keys or any(not k.startswith("head.") for k in result.missing_keys):
        raise ModelError(f"{start.path}: weights outside the head do not fit {start.arch}")
    if announce:
        old, new = ", ".join(start.class_names), ", ".join(class_names)
        print(f"init: {start.path.name}: backbone kept, head re-initialised: the data's {len(class_names)} classes "
              f"({_clip(new)}) differ from the checkpoint's {len(start.class_names)} ({_clip(old)})", flush=True)
    return model


def inherited_decision(start: Any, class_names: tuple[str, ...], step_us: int | None) -> tuple[dict[str, Any], str]:
    """The online-decision settings a fine-tune's checkpoints carry until they are calibrated.

    The ``--init`` checkpoint's ``decision`` dict (its rule, smoothing, thresholds: chosen for
    weights the fine-tune starts from, closer to the new ones than the classifier's defaults),
    less what no longer fits: its per-class thresholds when the head was replaced (they name the
    old head's outputs) and its ``window_steps`` when the time step changed. ``train --calibrate``
    (or ``eval --stream DIR --split test --calibrate``) then chooses them for the new weights.

    Args:
        start: the loaded ``--init`` checkpoint (:class:`models.checkpoint.Checkpoint`), or None.
        class_names: the trained model's classes.
        step_us: the trained model's time step, µs (None: equal-count frames).

    Returns:
        ``(decision, line)``: the settings (empty: the classifier's defaults) and one line saying where
        they come from.
    """
    if start is None:
        return {}, ""
    decision = dict(start.decision or {})
    if not decision:
        return {}, (f"decisions: {start.path.name} carries none: the classifier's defaults until calibrated "
                    "(train --calibrate chooses them on the held-out runs)")
    dropped = []
    own = decision.pop("class_thresholds", None)
    if own and tuple(start.class_names) == tuple(class_names):
        decision["class_thresholds"] = own
    elif own:
        dropped.append("its per-class thresholds (the head was replaced)")
    if "window_steps" in decision and step_us != start.preprocessing.get("step_us"):
        decision.pop("window_steps")
        dropped.append("its window length (another time step)")
    kept = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in decision.items()
                     if k != "class_thresholds")
    if "class_thresholds" in decision:
        kept += f", own thresholds for {len(decision['class_thresholds'])} class(es)"
    less = f", less {' and '.join(dropped)}" if dropped else ""
    return decision, (f"decisions: {start.path.name}'s ({kept}){less}, not calibrated for the new weights "
                      "(train --calibrate chooses them on the held-out runs)")


def _clip(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _distributed() -> tuple[bool, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return False, 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return True, dist.get_rank(), world


def train(config: TrainConfig) -> dict[str, Any]:
    """Train a model as ``config`` says; returns the best held-out metrics.

    Raises:
        ConfigError: invalid option or device.
        ModelError: the resume checkpoint does not fit the requested model.
    """
    distributed, rank, world = _distributed()
    is_main = rank == 0
    device = resolve_device(config.device)
    if distributed and device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    torch.manual_seed(config.seed + rank)
    np.random.seed(config.seed + rank)

    class_names = _data_class_names(config)
    start = load_checkpoint(config.init, model=config.model) if config.init else None
    model = _initial_model(config, class_names, start, announce=is_main)
    steps = model.config.steps
    stream = config.recipe == "stream"
    step_ms = config.step_ms
    if step_ms is None and config.split_by == "time":  # fine-tuning keeps the checkpoint's time step
        step_ms = (start.preprocessing.get("step_us") or 50_000) / 1000 if start is not None else 50.0
    preprocessing = _preprocessing(model, steps, config.split_by, step_ms, config.recipe, config.burn_in)
    decision, decision_line = inherited_decision(start, class_names, preprocessing.get("step_us"))
    if is_main and decision_line:
        print(decision_line, flush=True)
    cache_dir = config.cache_dir or str(Path(config.out).parent / "frames_cache")
    data_kwargs = {
        "steps": steps,
        "step_us": preprocessing.get("step_us"),
        "out_size": tuple(preprocessing["out_size"]),
        "cache_dir": cache_dir,
    }
    if is_main:
        binning = f"{steps} frames of equal event count per clip" if "step_us" not in preprocessing else \
            f"{preprocessing['step_us'] / 1000:g} ms steps"
        print(f"data: {config.data} ({config.layout} layout): {describe_training_data(config.data, config.layout)}; "
              f"binning into {binning}, {preprocessing['out_size'][0]}x"
              f"{preprocessing['out_size'][1]}, cached in {cache_dir} (the first run bins every recording)", flush=True)
    if stream:
        stream_kwargs = {**data_kwargs, "burn_in": config.burn_in, "samples_per_epoch": config.samples_per_epoch}
        train_set = make_stream_dataset(config.data, "train", augment=config.augment, **stream_kwargs)
        test_set = make_stream_dataset(config.data, "test", **stream_kwargs)
    else:
        train_set = make_dataset(config.data, config.layout, "train", augment=config.augment, **data_kwargs)
        test_set = make_dataset(config.data, config.layout, "test", **data_kwargs)
    if len(train_set) == 0 or len(test_set) == 0:
        raise ConfigError(f"data: {config.data} has {len(train_set)} training and {len(test_set)} test samples")
    if is_main and stream:
        print(
            f"stream recipe: train {len(train_set.recordings)} recordings, {len(train_set)} sequences/epoch of "
            f"{config.burn_in} burn-in + {steps} loss steps cut at random offsets; test {len(test_set.recordings)} "
            f"recordings, {len(test_set)} sequences; {model.num_classes} classes; mixup off (per-step labels of two "
            "sequences do not mix)",
            flush=True,
        )
    elif is_main:
        what = "one clip of T equal-count frames per gesture" if preprocessing.get("mode") == "count" else \
            f"training: one window of {steps} steps at a random place in each gesture clip per epoch; " \
            "test: every whole window"
        print(
            f"clip recipe: train {len(train_set.clips)} gesture clips -> {len(train_set)} samples/epoch, "
            f"test {len(test_set.clips)} clips -> {len(test_set)} samples; {model.num_classes} classes ({what})",
            flush=True,
        )

    sampler = None
    if distributed:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    pin = device.type == "cuda"
    train_loader = DataLoader(
        train_set,
        batch_size=config.batch,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=config.workers,
        pin_memory=pin,
        drop_last=len(train_set) > config.batch * world,
        persistent_workers=config.workers > 0,
    )
    test_loader = DataLoader(test_set, batch_size=config.batch, num_workers=config.workers, pin_memory=pin)

    if config.freeze_stem:
        frozen = freeze_stem(model, config.freeze_stem)
        if is_main:
            print(f"frozen: the first {config.freeze_stem} SPS stem stage(s), {frozen:,} parameters (weights and "
                  "BatchNorm statistics kept; no gradient flows through them)", flush=True)
    model.to(device)
    net: nn.Module = _StepLogits(model) if stream else model
    if distributed:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay, eps=1e-8)
    per_epoch = max(1, len(train_loader))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: lr_factor(
            s,
            config.epochs * per_epoch,
            int(config.warmup_epochs * per_epoch),
            config.cooldown_epochs * per_epoch,
            config.lr,
            config.warmup_lr,
            config.min_lr,
        ),
    )
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda")
    mixup_off = config.mixup_off_epoch if config.mixup_off_epoch is not None else round(config.epochs * 75 / 202)

    start_epoch, best = 0, {"top1": -1.0, "score": -1.0}
    select = "score" if stream else "top1"  # the metric that picks the best checkpoint
    train_args = dataclasses.asdict(config)
    train_args.update(model=model.name, step_ms=step_ms)
    if config.resume:
        state = load_checkpoint(config.resume, model=model.name, num_classes=model.num_classes)
        if not state.train_state:
            raise ModelError(f"{state.path}: no optimizer state to resume from (use the *_last.pt checkpoint)")
        model.load_state_dict(state.model.state_dict())
        try:
            optimizer.load_state_dict(state.train_state["optimizer"])
        except ValueError as err:  # another --freeze-stem: the optimizer holds other parameters
            raise ModelError(f"{state.path}: its optimizer state does not fit this run ({err}); resume with the "
                             "--freeze-stem it was trained with") from None
        scheduler.load_state_dict(state.train_state["scheduler"])
        scaler.load_state_dict(state.train_state.get("scaler", {}) or scaler.state_dict())
        start_epoch = int(state.train_state["epoch"]) + 1
        best = dict(state.train_state.get("best", best))

    out = Path(config.out)
    last_path = out.with_name(f"{out.stem}_last.pt")
    rng = np.random.default_rng(config.seed + rank)
    history: list[dict[str, Any]] = []
    for epoch in range(start_epoch, config.epochs):
        if sampler is not None:
            sampler.set_epoch(epoch)
        use_mixup = config.mixup_alpha > 0 and epoch < mixup_off
        progress = _progress(len(train_loader.dataset) // world, f"epoch {epoch + 1}/{config.epochs}", is_main)
        epoch_start = time.perf_counter()
        if stream:
            stats = train_stream_epoch(
                net,
                train_loader,
                optimizer,
                scheduler,
                device,
                burn_in=config.burn_in,
                smoothing=config.smoothing,
                tet_lambda=config.tet_lambda,
                tet_phi=config.tet_phi,
                rest_weight=config.rest_weight,
                scaler=scaler,
                progress=progress,
            )
        else:
            stats = train_one_epoch(
                net,
                train_loader,
                optimizer,
                scheduler,
                device,
                num_classes=model.num_classes,
                mixup_alpha=config.mixup_alpha if use_mixup else 0.0,
                mixup_prob=config.mixup_prob,
                smoothing=config.smoothing,
                scaler=scaler,
                rng=rng,
                progress=progress,
            )
        if progress is not None:
            progress.close()
        record: dict[str, Any] = {"epoch": epoch, "train_loss": stats["loss"], "train_top1": stats["top1"]}
        if is_main and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
            if stream:
                result = evaluate_stream(
                    model,
                    test_loader,
                    device,
                    model.num_classes,
                    burn_in=config.burn_in,
                    rest_threshold=config.rest_threshold,
                    tet_lambda=config.tet_lambda,
                    tet_phi=config.tet_phi,
                )
                record.update(
                    test_top1=result["top1"],
                    test_loss=result["loss"],
                    test_rest_undecided=result["rest_undecided"],
                    test_clip_top1=result["clip_top1"],
                    test_score=result["score"],
                )
            else:
                result = evaluate(model, test_loader, device, model.num_classes)
                record.update(test_top1=result["top1"], test_loss=result["loss"])
            if result[select] > best.get(select, best["top1"]):
                best = {
                    "top1": result["top1"],
                    "correct": result["correct"],
                    "samples": result["samples"],
                    "test_loss": result["loss"],
                    "epoch": epoch,
                    "confusion": result["confusion"],
                    "split": "test",
                    "recipe": config.recipe,
                    "select": select,
                    "trained_on": describe_training_data(config.data, config.layout),
                }
                if stream:
                    keys = ("step_top1", "rest_undecided", "rest_steps", "rest_threshold", "clip_top1", "clip_runs")
                    best.update({k: result[k] for k in keys}, score=result["score"], sequences=result["sequences"])
                save_checkpoint(out, model, preprocessing=preprocessing, metrics=best, train_args=train_args,
                                decision=decision)
        history.append(record)
        if is_main:
            lr_now = optimizer.param_groups[0]["lr"]
            test = f" test top1 {record['test_top1']:.4f}" if "test_top1" in record else ""
            if "test_score" in record:
                test += (
                    f" rest-undecided {record['test_rest_undecided']:.4f} clip top1 {record['test_clip_top1']:.4f}"
                    f" score {record['test_score']:.4f}"
                )
            print(
                f"epoch {epoch + 1}/{config.epochs} loss {stats['loss']:.4f} train top1 {stats['top1']:.4f}"
                f"{test} lr {lr_now:.2e} {stats['samples_per_s']:.1f} samples/s"
                f" {time.perf_counter() - epoch_start:.1f}s",
                flush=True,
            )
            save_checkpoint(
                last_path,
                model,
                preprocessing=preprocessing,
                metrics={"epoch": epoch, **{k: v for k, v in record.items() if k != "epoch"}},
                train_args=train_args,
                decision=decision,
                train_state={
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "epoch": epoch,
                    "best": best,
                },
            )
    if is_main and best["top1"] >= 0:
        png = out.with_name(f"{out.stem}_confusion.png")
        what = "per-step top-1 on gesture steps" if stream else "top-1"
        title = f"{model.name} on {Path(config.data).name} ({config.layout}, test): {what} {best['top1']:.3f}"
        save_confusion_png(best["confusion"], model.class_names, png, title)
        best["confusion_png"] = str(png)
    if distributed:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    best["history"] = history
    return best


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="sample", leave=False)


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_dir: str | os.PathLike,
    layout: str = "ibm",
    split: str = "test",
    *,
    batch: int = 16,
    workers: int = 0,
    device: str = "auto",
    confusion_png: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Offline clip accuracy of a checkpoint on a dataset split, binned as the checkpoint says.

    Deterministic on every split: with fixed time steps every whole window of every clip is a
    sample, back to back from the clip's start (``windows="fixed"``, the test split's default, also
    for ``split="train"``, whose training default draws random windows); with equal event counts
    each clip is one sample. The same call gives the same figures.

    Args:
        checkpoint: a ``.pt`` file or the name of shipped weights.
        data_dir: dataset root.
        layout: ``"ibm"`` (IBM DvsGesture folder, also the synthetic set) or ``"tonic"``.
        split: ``"train"`` or ``"test"``.
        confusion_png: when given, the confusion matrix is drawn there.
        cache_dir: folder for binned clips (``None``: bin every sample from its recording).

    Returns:
        ``top1``, ``correct``, ``samples``, ``loss``, ``confusion`` (rows: true class), ``checkpoint``,
        ``class_names``, ``preprocessing``.
    """
    loaded = load_checkpoint(checkpoint)
    dev = resolve_device(device)
    model = loaded.model.to(dev)
    pre = loaded.preprocessing
    steps = int(pre.get("steps", model.config.steps))
    dataset = make_dataset(
        data_dir,
        layout,
        split,
        steps=steps,
        step_us=None if pre.get("mode") == "count" else int(pre["step_us"]),
        out_size=(model.config.img_size[1], model.config.img_size[0]),
        cache_dir=cache_dir,
        windows="fixed",
    )
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers)
    result = evaluate(model, loader, dev, model.num_classes)
    result.update(checkpoint=str(loaded.path), class_names=list(loaded.class_names), preprocessing=pre)
    if confusion_png is not None:
        title = f"{loaded.name} on {Path(data_dir).name} ({layout}, {split}): top-1 {result['top1']:.3f}"
        result["confusion_png"] = str(
            save_confusion_png(result["confusion"], loaded.class_names, Path(confusion_png), title)
        )
    return result
