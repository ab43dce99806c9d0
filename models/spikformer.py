"""Spikformer for event frames: the DVS variant of Zhou et al., "Spikformer: When Spiking Neural
Network Meets Transformer", ICLR 2023, https://arxiv.org/abs/2209.15425.

Follows the official DVS model (``ZK-Zhou/spikformer`` ``cifar10dvs/model.py``): a spiking patch
splitting stem (SPS, four conv → BN → LIF → max-pool stages and a relative position embedding),
encoder blocks of spiking self-attention (SSA, no softmax) and a spiking MLP with residuals added
after the neurons, and a head that averages tokens, then time steps, then applies a Linear layer.
The modules the reference constructs but never calls (LayerNorms, ``pos_embed``, DropPath) are
left out, so the 2-256 model with 11 classes has exactly the 2,566,923 parameters its forward uses.

Every tensor that reaches a LIF neuron keeps the layout ``[T, B, ...]`` (time first, batch second);
convolutions, BN and pooling act per time step on the flattened ``[T * B, ...]`` view. The network
is causal in time: the LIF membranes persist between calls (spikingjelly memories), so sixteen
``T = 1`` calls give the spikes and features of one ``T = 16`` call (the logits agree to 1e-5: the
head's matrix product may sum in another order for another batch shape), and
:func:`spikingjelly.activation_based.functional.reset_net` starts a fresh sequence. The fused
inference form (:meth:`Spikformer.fuse_for_inference`) lives in :mod:`models.fused`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from spikingjelly.activation_based import neuron, surrogate
from torch import Tensor, nn

from evstream.errors import ConfigError, ModelError
from evstream.labels import DVS_GESTURE_CLASSES

# The fused inference path lives in models/fused.py (which imports nothing from here at run
# time); its kernels and helpers stay importable from this module under their old names.
from models import fused as _fused
from models.fused import _LIF_BLOCK as _LIF_BLOCK
from models.fused import _LIF_SERIAL_BELOW as _LIF_SERIAL_BELOW
from models.fused import _first_stage_kernel as _first_stage_kernel
from models.fused import _fused_kernels_apply as _fused_kernels_apply
from models.fused import _fused_lif_forward as _fused_lif_forward
from models.fused import _lif_block as _lif_block
from models.fused import _lif_inference_kernel as _lif_inference_kernel
from models.fused import _lif_inference_serial as _lif_inference_serial
from models.fused import _memory_order as _memory_order
from models.fused import _plain_lif as _plain_lif
from models.fused import warm_up_kernels as warm_up_kernels

# spikingjelly's first LIF call logs "Triton not available" twice on CPU machines.
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

__all__ = [
    "Capture",
    "SpikingPatchSplitting",
    "SpikingSelfAttention",
    "SpikingMLP",
    "SpikformerBlock",
    "Spikformer",
    "SpikformerConfig",
    "register_model",
    "create_model",
    "list_models",
    "spikformer_2_256",
    "spikformer_2_128",
    "spikformer_2_64",
    "spikformer_1_64",
    "spikformer_tiny",
]


@dataclass
class Capture:
    """What a forward pass recorded, filled in place when passed to :meth:`Spikformer.forward_features`.

    The caller creates it (``Capture(maps=True)`` or ``Capture(maps=False)``) and reads it after
    the call; every call overwrites the entries it records. Rates are means over everything in the
    call (time steps, batch, channels, positions).

    Attributes:
        maps: also keep the spatial spike maps and the SSA token maps (costs memory and copies).
        layer_rates: mean firing rate (spikes per neuron per step) of every LIF layer's output,
            keyed ``sps.0`` … ``sps.3``, ``rpe``, ``blocks.i.attn.{q,k,v,attn_lif,proj}``,
            ``blocks.i.mlp.{fc1,fc2}``; also the rate after each stem max-pool (``sps.i.pool``),
            and, for the integer-valued inputs, the fraction of non-zero entries: ``input``
            (the event frames), ``blocks.i.attn.in`` and ``blocks.i.mlp.in`` (the residual stream).
        spike_maps: with ``maps``, firing rate over time steps and channels, ``[B, h, w]``, for
            ``sps.0`` … ``sps.3`` (at their conv resolution), ``rpe``, ``blocks.i.attn`` and
            ``blocks.i.mlp`` (on the token grid ``H/16 × W/16``).
        attn: with ``maps``, per block the SSA map Q·Kᵀ, ``[T, B, heads, N, N]``, integers
            ``0 … d_head`` (formed for the capture even when the model computes Q·(KᵀV)).
        input_rate: fraction of non-zero input pixels (same as ``layer_rates["input"]``).
        steps: number of time steps of the recorded call.
    """

    maps: bool = False
    layer_rates: dict[str, float] = field(default_factory=dict)
    spike_maps: dict[str, Tensor] = field(default_factory=dict)
    attn: list[Tensor] = field(default_factory=list)
    input_rate: float | None = None
    steps: int = 0

    def clear(self) -> None:
        """Forget everything recorded so far (the ``maps`` choice stays)."""
        self.layer_rates.clear()
        self.spike_maps.clear()
        self.attn.clear()
        self.input_rate = None
        self.steps = 0

    def record_rate(self, name: str, spikes: Tensor) -> None:
        """Store the mean of a binary spike tensor as the firing rate of ``name``."""
        self.layer_rates[name] = float(spikes.detach().float().mean())

    def record_nonzero(self, name: str, values: Tensor) -> None:
        """Store the fraction of non-zero entries of an integer-valued tensor under ``name``."""
        self.layer_rates[name] = int(torch.count_nonzero(values.detach())) / max(values.numel(), 1)

    def record_spikes(self, name: str, spikes: Tensor, node: nn.Module) -> None:
        """Firing rate of the LIF layer ``node`` whose output is ``spikes``: the spike count its
        fused kernel kept for this very output when there is one, else :meth:`record_rate`."""
        fired = getattr(node, "fired", None)
        if fired is not None and fired[0]() is spikes:
            self.layer_rates[name] = fired[1] / spikes.numel()
        else:
            self.record_rate(name, spikes)


def _time_batch(x: Tensor) -> Tensor:
    """``[T, B, ...]`` → ``[T·B, ...]`` as a view. With T = 1 the step itself: flattening two
    size-1 dims gives the merged dim a stride (C) that PyTorch's layout test reads as not
    channels-last, and max-pool would then write NCHW (~10x slower, and every later op follows)."""
    return x[0] if x.shape[0] == 1 else x.flatten(0, 1)


def _lif(config: SpikformerConfig, v_threshold: float) -> neuron.LIFNode:
    """The Spikformer neuron: τ 2, hard reset to 0, detached reset, sigmoid surrogate (α 4)."""
    return neuron.LIFNode(
        tau=config.tau,
        v_threshold=v_threshold,
        v_reset=0.0,
        detach_reset=True,
        surrogate_function=surrogate.Sigmoid(alpha=config.surrogate_alpha),
        step_mode="m",
    )


class _ConvBNLIF(nn.Module):
    """Conv (applied per time step) → BatchNorm → multi-step LIF.

    Takes ``[T, B, C_in, *spatial]`` and returns spikes ``[T, B, C_out, *spatial]``; the
    convolution and BN see the ``[T * B, ...]`` view, the LIF sees ``[T, B, ...]``.
    """

    def __init__(self, conv: nn.Conv1d | nn.Conv2d, lif: neuron.LIFNode) -> None:
        super().__init__()
        self.conv = conv
        bn_type = nn.BatchNorm2d if isinstance(conv, nn.Conv2d) else nn.BatchNorm1d
        self.bn: nn.Module = bn_type(conv.out_channels)
        self.lif = lif

    pointwise = False  # set by fuse(): a k = 1 Conv1d, run as a matrix product over tokens

    def forward(self, x: Tensor) -> Tensor:
        t, b = x.shape[:2]
        if self.pointwise:
            # [T·B, D, N] → tokens × D @ Wᵀ: a plain GEMM whatever T·B (small batches of k = 1
            # Conv1d take PyTorch's slow im2col path), and no copy when the input is token-major.
            weight = self.conv.weight[:, :, 0]
            y = nn.functional.linear(_time_batch(x).transpose(1, 2), weight, self.conv.bias).transpose(1, 2)
        else:
            y = self.bn(self.conv(_time_batch(x)))
        return self.lif(y.reshape(t, b, *y.shape[1:]))

    def fuse(self) -> None:
        """Fold BN into the convolution (eval mode only); BN becomes the identity
        (:func:`models.fused.fold_batchnorm`)."""
        _fused.fold_batchnorm(self)


class SpikingPatchSplitting(nn.Module):
    """SPS stem and relative position embedding: ``[T, B, C_in, H, W]`` → tokens ``[T, B, D, N]``.

    Four stages of conv 3×3 (bias-free) → BN → LIF → MaxPool(3, 2, 1) with channels
    ``C_in → D/8 → D/4 → D/2 → D``, so the token grid is ``H/16 × W/16``; then the RPE
    (conv 3×3 → BN → LIF) is added to the stage-3 spikes (values in {0, 1, 2}).
    """

    def __init__(self, config: SpikformerConfig) -> None:
        super().__init__()
        d = config.embed_dim
        chans = [config.in_channels, d // 8, d // 4, d // 2, d]
        self.stages = nn.ModuleList(
            _ConvBNLIF(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), _lif(config, config.v_threshold))
            for cin, cout in zip(chans[:-1], chans[1:], strict=True)
        )
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.rpe = _ConvBNLIF(nn.Conv2d(d, d, 3, 1, 1, bias=False), _lif(config, config.v_threshold))

    fused_first_stage = False  # set by Spikformer.fuse_for_inference

    def forward(self, x: Tensor, capture: Capture | None = None) -> Tensor:
        t, b = x.shape[:2]
        first = 0
        if self.fused_first_stage and _fused_kernels_apply(x):
            x = self._first_stage(x, capture)
            first = 1
        for i, stage in enumerate(self.stages[first:], start=first):
            s = stage(x)
            x = self.pool(_time_batch(s))
            x = x.reshape(t, b, *x.shape[1:])
            if capture is not None:
                capture.record_spikes(f"sps.{i}", s, stage.lif)
                capture.record_rate(f"sps.{i}.pool", x)
                if capture.maps:
                    capture.spike_maps[f"sps.{i}"] = s.detach().float().mean(dim=(0, 2))
        r = self.rpe(x)
        if capture is not None:
            capture.record_spikes("rpe", r, self.rpe.lif)
            if capture.maps:
                capture.spike_maps["rpe"] = r.detach().float().mean(dim=(0, 2))
        x = x + r
        return x.flatten(3)

    def _first_stage(self, x: Tensor, capture: Capture | None) -> Tensor:
        """Stage 0 (conv → BN folded → LIF → max-pool) as one numba pass; channels-last spikes out
        (:func:`models.fused.first_stage`)."""
        return _fused.first_stage(self.stages[0], x, capture)


class SpikingSelfAttention(nn.Module):
    """SSA: Q, K, V spikes, ``(Q·Kᵀ)·V × scale`` without softmax, LIF (threshold 0.5), projection.

    ``[T, B, D, N]`` → spikes ``[T, B, D, N]``. Q, K and V are each a bias-free conv1d (k = 1)
    → BN → LIF, split into ``heads`` of ``d_head = D / heads`` channels; Q·Kᵀ is an integer token
    map in ``0 … d_head``. ``attn_order="q_kv"`` computes the same product as Q·(KᵀV) (the paper's
    Fig. 1 linear-complexity order); all intermediate values are integers below 2²⁴ times a power
    of two, exact in fp32, so both orders give identical outputs.
    """

    def __init__(self, config: SpikformerConfig) -> None:
        super().__init__()
        d = config.embed_dim
        self.num_heads = config.num_heads
        self.scale = config.scale
        self.attn_order = config.attn_order
        self.q = _ConvBNLIF(nn.Conv1d(d, d, 1, bias=False), _lif(config, config.v_threshold))
        self.k = _ConvBNLIF(nn.Conv1d(d, d, 1, bias=False), _lif(config, config.v_threshold))
        self.v = _ConvBNLIF(nn.Conv1d(d, d, 1, bias=False), _lif(config, config.v_threshold))
        self.attn_lif = _lif(config, config.attn_v_threshold)
        self.proj = _ConvBNLIF(nn.Conv1d(d, d, 1, bias=True), _lif(config, config.v_threshold))

    def forward(self, x: Tensor, capture: Capture | None = None, name: str = "attn") -> Tensor:
        t, b, d, n = x.shape
        h = self.num_heads
        q, k, v = self.q(x), self.k(x), self.v(x)

        def split(s: Tensor) -> Tensor:  # [T, B, D, N] -> [T, B, heads, N, d_head]
            return s.reshape(t, b, h, d // h, n).transpose(-1, -2)

        qh, kh, vh = split(q), split(k), split(v)
        qk = None
        if self.attn_order == "qk_v":
            qk = qh @ kh.transpose(-2, -1)
            y = qk @ vh
        else:
            y = qh @ (kh.transpose(-2, -1) @ vh)
        y = (y * self.scale).transpose(-1, -2).reshape(t, b, d, n)
        a = self.attn_lif(y)
        out = self.proj(a)
        if capture is not None:
            capture.record_nonzero(f"{name}.in", x)
            nodes = (self.q.lif, self.k.lif, self.v.lif, self.attn_lif, self.proj.lif)
            for key, s, node in zip(("q", "k", "v", "attn_lif", "proj"), (q, k, v, a, out), nodes, strict=True):
                capture.record_spikes(f"{name}.{key}", s, node)
            if capture.maps:
                if qk is None:
                    qk = qh @ kh.transpose(-2, -1)
                capture.attn.append(qk.detach())
        return out


class SpikingMLP(nn.Module):
    """Spiking MLP: conv1d (bias) → BN → LIF, twice, ``D → ratio·D → D``; ``[T, B, D, N]`` in and out."""

    def __init__(self, config: SpikformerConfig) -> None:
        super().__init__()
        d = config.embed_dim
        hidden = int(d * config.mlp_ratio)
        self.fc1 = _ConvBNLIF(nn.Conv1d(d, hidden, 1, bias=True), _lif(config, config.v_threshold))
        self.fc2 = _ConvBNLIF(nn.Conv1d(hidden, d, 1, bias=True), _lif(config, config.v_threshold))

    def forward(self, x: Tensor, capture: Capture | None = None, name: str = "mlp") -> Tensor:
        h = self.fc1(x)
        out = self.fc2(h)
        if capture is not None:
            capture.record_nonzero(f"{name}.in", x)
            capture.record_spikes(f"{name}.fc1", h, self.fc1.lif)
            capture.record_spikes(f"{name}.fc2", out, self.fc2.lif)
        return out


class SpikformerBlock(nn.Module):
    """Encoder block with SEW-style residuals after the neurons: ``x + SSA(x)``, then ``x + MLP(x)``.

    ``[T, B, D, N]`` in and out; the residual stream holds small non-negative integers.
    """

    def __init__(self, config: SpikformerConfig) -> None:
        super().__init__()
        self.attn = SpikingSelfAttention(config)
        self.mlp = SpikingMLP(config)

    def forward(self, x: Tensor, capture: Capture | None = None, name: str = "blocks.0") -> Tensor:
        a = self.attn(x, capture, f"{name}.attn")
        x = x + a
        m = self.mlp(x, capture, f"{name}.mlp")
        x = x + m
        if capture is not None and capture.maps:
            grid = capture.spike_maps["rpe"].shape[1:]
            capture.spike_maps[f"{name}.attn"] = a.detach().float().mean(dim=(0, 2)).reshape(-1, *grid)
            capture.spike_maps[f"{name}.mlp"] = m.detach().float().mean(dim=(0, 2)).reshape(-1, *grid)
        return x


class Spikformer(nn.Module):
    """Spikformer on event frames ``[T, B, C_in, H, W]`` (time first; channel 0 OFF, 1 ON).

    Args:
        config: the architecture (see :class:`SpikformerConfig`).
        class_names: one name per class; default the DVS128 Gesture names when there are 11
            classes, else ``"class i"``.
        name: the registered variant this model was built as (kept in checkpoints).

    Attributes:
        config, num_classes, class_names, name.
    """

    def __init__(
        self,
        config: SpikformerConfig,
        class_names: tuple[str, ...] | list[str] | None = None,
        name: str = "spikformer",
    ) -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.num_classes = config.num_classes
        if class_names is None:
            class_names = (
                DVS_GESTURE_CLASSES
                if config.num_classes == len(DVS_GESTURE_CLASSES)
                else tuple(f"class {i}" for i in range(config.num_classes))
            )
        if len(class_names) != config.num_classes:
            raise ConfigError(f"class_names: {len(class_names)} names for num_classes={config.num_classes}")
        self.class_names = tuple(class_names)
        self.patch_embed = SpikingPatchSplitting(config)
        self.blocks = nn.ModuleList(SpikformerBlock(config) for _ in range(config.depth))
        self.head = nn.Linear(config.embed_dim, config.num_classes)
        # As the reference: truncated normal (std 0.02) for Linear layers, PyTorch defaults for convs.
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def _check_input(self, x: Tensor) -> None:
        want = (self.config.in_channels, *self.config.img_size)
        if x.dim() != 5 or tuple(x.shape[2:]) != want:
            raise ModelError(
                f"input: shape {tuple(x.shape)}, model {self.name} expects [T, B, {want[0]}, {want[1]}, {want[2]}]"
            )

    def forward_features(self, x: Tensor, capture: Capture | None = None) -> Tensor:
        """Per-step features: event frames ``[T, B, C_in, H, W]`` → token means ``[T, B, D]``.

        Args:
            x: frames (event counts or binary spikes), float.
            capture: when given, filled with firing rates (and maps if ``capture.maps``).
        """
        self._check_input(x)
        if capture is not None:
            capture.clear()
            capture.steps = x.shape[0]
            capture.record_nonzero("input", x)
            capture.input_rate = capture.layer_rates["input"]
        tokens = self.patch_embed(x, capture)
        for i, block in enumerate(self.blocks):
            tokens = block(tokens, capture, f"blocks.{i}")
        return tokens.mean(dim=3)

    def forward_head(self, features: Tensor) -> Tensor:
        """Class scores of a window: features ``[T, B, D]`` → mean over T → Linear → ``[B, classes]``."""
        return self.head(features.mean(dim=0))

    def step_logits(self, x: Tensor, capture: Capture | None = None) -> Tensor:
        """Class scores per time step, ``[T, B, classes]``; their mean over T equals :meth:`forward`."""
        return self.head(self.forward_features(x, capture))

    def forward(self, x: Tensor) -> Tensor:
        """Class scores of a window ``[T, B, C_in, H, W]`` → ``[B, classes]`` (logits)."""
        return self.forward_head(self.forward_features(x))

    def fuse_for_inference(self) -> Spikformer:
        """Fold every BatchNorm into its convolution and fuse each LIF's T-step loop, in place.

        The form the streaming classifier runs on CPU (:func:`models.fused.fuse_for_inference`,
        whose module docstring states what was measured): windows of any length equal one pass
        to 1e-5; against the unfused model the per-step logits are close, not bit-identical (at
        ``spikformer_2_256`` a few tenths of a percent of the spikes flip, decisions almost always
        agree). Only in eval mode; fuse after loading weights, never before saving them.
        Returns ``self``.
        """
        return _fused.fuse_for_inference(self)


# Bounds of SpikformerConfig fields (inclusive): far above any model this project trains, far below
# what would allocate gigabytes or run for minutes before failing.
_INT_BOUNDS = {"in_channels": (1, 64), "embed_dim": (8, 4096), "depth": (1, 64), "num_heads": (1, 4096),
               "num_classes": (1, 10_000), "steps": (1, 1024)}
_FLOAT_BOUNDS = {"mlp_ratio": (0.125, 16.0), "scale": (1e-6, 1e3), "tau": (1e-3, 1e6), "v_threshold": (1e-6, 1e6),
                 "attn_v_threshold": (1e-6, 1e6), "surrogate_alpha": (1e-6, 1e6)}


def _excerpt(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class SpikformerConfig:
    """Architecture of a :class:`Spikformer` (defaults: the paper's DVS model, 2-256, 16 heads)."""

    img_size: tuple[int, int] = (128, 128)  # input H, W in pixels; multiples of 16 (token grid H/16 × W/16)
    in_channels: int = 2  # polarity channels of the event frames (OFF, ON)
    embed_dim: int = 256  # D: token width; stem widths D/8, D/4, D/2, D
    depth: int = 2  # number of encoder blocks
    num_heads: int = 16  # SSA heads; d_head = D / heads
    mlp_ratio: float = 4.0  # MLP hidden width = ratio × D
    num_classes: int = 11  # outputs of the Linear head
    steps: int = 16  # T of one training window (the model itself accepts any T)
    scale: float = 0.25  # SSA scaling of (Q·Kᵀ)·V: 0.25 in the DVS model, 0.125 for CIFAR/ImageNet
    tau: float = 2.0  # LIF membrane time constant, in steps
    v_threshold: float = 1.0  # LIF threshold of every neuron but the attention one
    attn_v_threshold: float = 0.5  # threshold of the LIF after (Q·Kᵀ)·V
    surrogate_alpha: float = 4.0  # steepness of the sigmoid surrogate gradient
    attn_order: Literal["qk_v", "q_kv"] = "qk_v"  # (Q·Kᵀ)·V forms the N×N map; Q·(KᵀV) is linear in N

    def __post_init__(self) -> None:
        # Types and bounds first, field by field, so a hostile config never sizes a module.
        size = self.img_size
        if (not isinstance(size, list | tuple) or len(size) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) for v in size)):
            raise ConfigError(f"img_size: expected two integers, got {_excerpt(size)}")
        object.__setattr__(self, "img_size", (int(size[0]), int(size[1])))
        for name, (lo, hi) in _INT_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name}: expected an integer, got {_excerpt(value)}")
            if not lo <= value <= hi:
                raise ConfigError(f"{name}: {value} outside {lo} ... {hi}")
        for name, (lo, hi) in _FLOAT_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{name}: expected a finite number, got {_excerpt(value)}")
            if not lo <= value <= hi:
                raise ConfigError(f"{name}: {value} outside {lo} ... {hi}")
        if not isinstance(self.attn_order, str):
            raise ConfigError(f"attn_order: expected 'qk_v' or 'q_kv', got {_excerpt(self.attn_order)}")
        h, w = self.img_size
        if not (16 <= h <= 1024 and 16 <= w <= 1024):
            raise ConfigError(f"img_size: {self.img_size} outside 16 ... 1024")
        if h <= 0 or w <= 0 or h % 16 or w % 16:
            raise ConfigError(f"img_size: {self.img_size} must be positive multiples of 16")
        if self.embed_dim <= 0 or self.embed_dim % 8:
            raise ConfigError(f"embed_dim: {self.embed_dim} must be a positive multiple of 8")
        if self.num_heads <= 0 or self.embed_dim % self.num_heads:
            raise ConfigError(f"num_heads: {self.num_heads} must divide embed_dim {self.embed_dim}")
        for name in ("in_channels", "depth", "num_classes", "steps"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name}: {getattr(self, name)} must be positive")
        if self.attn_order not in ("qk_v", "q_kv"):
            raise ConfigError(f"attn_order: {self.attn_order!r} is not 'qk_v' or 'q_kv'")

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists, not tuples) for checkpoints."""
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size)
        return d

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SpikformerConfig:
        """Inverse of :meth:`to_dict`; unknown fields raise :class:`ConfigError`."""
        if not isinstance(values, dict):
            raise ConfigError(f"SpikformerConfig: expected a dict of fields, got {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"SpikformerConfig: unknown field(s) {', '.join(unknown)}")
        values = dict(values)
        if isinstance(values.get("img_size"), list):
            values["img_size"] = tuple(values["img_size"])
        return cls(**values)


_REGISTRY: dict[str, Callable[..., Spikformer]] = {}


def register_model(factory: Callable[..., Spikformer]) -> Callable[..., Spikformer]:
    """Add a factory to the registry under its function name."""
    _REGISTRY[factory.__name__] = factory
    return factory


def list_models() -> list[str]:
    """Names of the registered variants, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **overrides: Any) -> Spikformer:
    """Build a registered variant; ``overrides`` replace config fields (and may set ``class_names``).

    Raises:
        ModelError: unknown name.
        ConfigError: unknown or invalid override.
    """
    if name not in _REGISTRY:
        raise ModelError(f"model: unknown name {name!r}; registered: {', '.join(list_models())}")
    return _REGISTRY[name](**overrides)


def _build(name: str, config: SpikformerConfig, **overrides: Any) -> Spikformer:
    class_names = overrides.pop("class_names", None)
    if class_names is not None and "num_classes" not in overrides:
        overrides["num_classes"] = len(class_names)
    if "img_size" in overrides:
        size = overrides["img_size"]
        overrides["img_size"] = (int(size), int(size)) if isinstance(size, int) else tuple(int(v) for v in size)
    known = {f.name for f in dataclasses.fields(SpikformerConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"{name}: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return Spikformer(dataclasses.replace(config, **overrides), class_names=class_names, name=name)


@register_model
def spikformer_2_256(**overrides: Any) -> Spikformer:
    """The paper's DVS model: 128×128, D 256, 2 blocks, 16 heads, scale 0.25, T 16 (2.57 M parameters)."""
    return _build("spikformer_2_256", SpikformerConfig(), **overrides)


@register_model
def spikformer_2_128(**overrides: Any) -> Spikformer:
    """Half width: 128×128, D 128, 2 blocks, 8 heads (d_head 16), T 16."""
    return _build("spikformer_2_128", SpikformerConfig(embed_dim=128, num_heads=8), **overrides)


@register_model
def spikformer_2_64(**overrides: Any) -> Spikformer:
    """CPU demo model: 64×64 input (4×4 tokens), D 64, 2 blocks, 4 heads (d_head 16), T 16."""
    config = SpikformerConfig(img_size=(64, 64), embed_dim=64, num_heads=4)
    return _build("spikformer_2_64", config, **overrides)


@register_model
def spikformer_1_64(**overrides: Any) -> Spikformer:
    """Smallest demo model: 64×64 input, D 64, 1 block, 4 heads (d_head 16), T 16."""
    config = SpikformerConfig(img_size=(64, 64), embed_dim=64, depth=1, num_heads=4)
    return _build("spikformer_1_64", config, **overrides)


@register_model
def spikformer_tiny(**overrides: Any) -> Spikformer:
    """For tests: 32×32 input (2×2 tokens), D 32, 1 block, 2 heads, T 4."""
    config = SpikformerConfig(img_size=(32, 32), embed_dim=32, depth=1, num_heads=2, steps=4)
    return _build("spikformer_tiny", config, **overrides)
