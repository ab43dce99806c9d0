"""The fused inference path of the Spikformer: numba kernels and :func:`fuse_for_inference`.

:func:`fuse_for_inference` turns an eval-mode :class:`~models.spikformer.Spikformer` into the
form the :class:`~models.streaming.StreamingClassifier` runs on CPU: every BatchNorm folded into
its convolution, the stem channels-last (oneDNN's native layout; PyTorch's CPU max-pool is
~7-25x faster there), the first stem stage (conv → LIF → max-pool on the event frames) as one
numba pass that only visits non-zero pixels, every other LIF's T-step loop as one numba pass
that also counts the spikes, and the k = 1 convolutions as GEMMs. The kernels run only on CPU
float32 without autograd and outside ``torch.compile``; elsewhere the model's own ops run.

What holds (tests/models/test_fused.py, tests/models/test_spikformer.py):

- Each fused LIF gives spikingjelly's spikes and membranes bit for bit (same float32 arithmetic).
- Windows of any length equal one pass: the fused model's per-step logits over sixteen T = 1
  calls equal one T = 16 call to within 1e-5 (at ``spikformer_2_256`` the spikes and the
  per-step features agree exactly; the head's matrix product over ``[1, B, D]`` and
  ``[16, B, D]`` sums in another order, up to 3e-6 apart), as for the unfused model.
- Against the unfused model the fused one is close, not bit-identical. Folding BN, the
  channels-last convolutions, the numba first-stage sums and the GEMMs each sum in another
  order, so pre-activations change in their last bits; a membrane within an ulp of its threshold
  then fires on one side and not the other, and the flip carries on through that membrane and
  the layers after it. Measured at ``spikformer_2_256`` (128×128) with random trained-looking
  weights (BN statistics from forward passes on synthetic event frames; most LIF layers fire
  10-15 % of the time), 48 windows of 16 steps from two weight draws: 0.32 % of all spikes
  differ (2.28 M of 717 M; 28 windows had no difference at all), 0 of 48 window decisions
  differ, 10 of 768 per-step decisions (1.3 %) differ, and per-step logits move by up to 0.70
  (logit scale ~5). Keeping the plain ops instead (no folding, NCHW convolutions, only the
  LIF loops in numba) is exact but cost 1.9× the fused time per step (10.2 against 5.3 ms in
  16-step windows, 2 threads), so the fused form keeps its sums.
"""

from __future__ import annotations

import types
import weakref
from typing import TYPE_CHECKING

import numba
import numpy as np
import torch
from spikingjelly.activation_based import neuron
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from evstream.errors import ModelError

if TYPE_CHECKING:  # annotations only: models.spikformer imports this module
    from models.spikformer import Capture, Spikformer

__all__ = ["fuse_for_inference", "warm_up_kernels", "fold_batchnorm", "first_stage", "first_stage_applies"]


_LIF_BLOCK = 4096  # neurons per task: their membranes stay in L1/L2 while the T steps stream by
_LIF_SERIAL_BELOW = 1 << 18  # smaller layers (T × N updates) run on one thread: waking a pool costs more


@numba.njit(cache=True, nogil=True, inline="always")
def _lif_block(x: np.ndarray, v: np.ndarray, out: np.ndarray, lo: int, hi: int, tau: np.float32, v_th: np.float32) -> int:
    zero = np.float32(0.0)
    one = np.float32(1.0)
    count = 0
    for t in range(x.shape[0]):
        for i in range(lo, hi):
            vi = v[i]
            h = vi + (x[t, i] - vi) / tau
            fired = h >= v_th
            out[t, i] = one if fired else zero
            v[i] = zero if fired else h
            count += 1 if fired else 0
    return count


@numba.njit(parallel=True, cache=True, nogil=True)
def _lif_inference_kernel(x: np.ndarray, v: np.ndarray, out: np.ndarray, tau: np.float32, v_th: np.float32) -> int:
    """Hard-reset LIF over ``x`` ``[T, N]`` float32 from membrane ``v`` ``[N]`` (updated in place).

    Same float32 arithmetic as spikingjelly's reference: H = V + (X − V) / τ, S = H ≥ V_th,
    V = 0 where S else H. Blocks of neurons run in parallel; within a block, time steps run in
    order over contiguous, branch-free (vectorisable) rows, instead of ~10 tensor passes per step.
    Returns the number of spikes (the layer's firing rate for the energy estimate, without
    another pass over the output).
    """
    n = x.shape[1]
    fired = 0
    for block in numba.prange((n + _LIF_BLOCK - 1) // _LIF_BLOCK):
        lo = block * _LIF_BLOCK
        fired += _lif_block(x, v, out, lo, min(lo + _LIF_BLOCK, n), tau, v_th)
    return fired


@numba.njit(cache=True, nogil=True)
def _lif_inference_serial(x: np.ndarray, v: np.ndarray, out: np.ndarray, tau: np.float32, v_th: np.float32) -> int:
    """:func:`_lif_inference_kernel` on the calling thread (same blocks, same arithmetic)."""
    n = x.shape[1]
    fired = 0
    for lo in range(0, n, _LIF_BLOCK):
        fired += _lif_block(x, v, out, lo, min(lo + _LIF_BLOCK, n), tau, v_th)
    return fired


def _memory_order(t: Tensor) -> list[int] | None:
    """Dims of a dense tensor from outermost to innermost in memory (so ``t.permute(order)`` is
    contiguous), or None when ``t`` is not dense (overlapping or with gaps)."""
    order = sorted(range(t.dim()), key=lambda d: (t.shape[d] != 1, -t.stride(d)))  # size-1 dims outermost
    return order if t.permute(order).is_contiguous() else None


def _fused_lif_forward(node: neuron.LIFNode, x_seq: Tensor) -> Tensor:
    """``multi_step_forward`` of a hard-reset LIF at inference: one numba pass, same spikes and state.

    Works in the memory layout the input comes in (channels-last from the fused stem, plain
    contiguous elsewhere): spikes and the membrane are laid out in the same dim order, so no
    layout conversion is paid. Falls back to spikingjelly's own forward with gradients, off
    the CPU, for other dtypes and under ``torch.compile``. The membrane stays spikingjelly's memory
    ``v``, so ``functional.reset_net`` and state save/restore work unchanged.
    """
    if not _fused_kernels_apply(x_seq):
        return neuron.LIFNode.multi_step_forward(node, x_seq)
    time_outermost = x_seq.shape[0] == 1 or x_seq.stride(0) == x_seq[0].numel()
    order = _memory_order(x_seq[0]) if time_outermost else None
    if order is None:
        x_seq = x_seq.contiguous()
        order = list(range(x_seq.dim() - 1))
    time_first = [0, *(d + 1 for d in order)]
    back = sorted(range(len(time_first)), key=time_first.__getitem__)
    # Spikes in the input's layout, with canonical strides (a size-1 batch keeps the layout
    # recognisable to the next convolution and max-pool).
    out = torch.empty([x_seq.shape[d] for d in time_first]).permute(back)
    v = node.v
    if not (isinstance(v, Tensor) and v.dtype == torch.float32 and v.shape == out.shape[1:] and v.stride() == out[0].stride()):
        # First step after a reset (v is the float reset value) or a state from elsewhere: a
        # membrane with the strides of one step. Otherwise the kernel updates the membrane this
        # node made last time in place (state() hands out copies, never it).
        fresh = torch.empty_like(out[0])
        if isinstance(v, Tensor) and v.shape == fresh.shape:
            fresh.copy_(v)
        else:
            fresh.fill_(float(v))
        v = fresh
    steps = x_seq.shape[0]
    kernel = _lif_inference_serial if x_seq.numel() < _LIF_SERIAL_BELOW else _lif_inference_kernel
    fired = kernel(
        x_seq.permute(time_first).reshape(steps, -1).numpy(),
        v.permute(order).reshape(-1).numpy(),
        out.permute(time_first).reshape(steps, -1).numpy(),
        np.float32(node.tau),
        np.float32(node.v_threshold),
    )
    node.v = v
    node.fired = (weakref.ref(out), int(fired))  # read by Capture.record_spikes
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _first_stage_kernel(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    v: np.ndarray,
    out: np.ndarray,
    totals: np.ndarray,
    counts: np.ndarray,
    tau: np.float32,
    v_th: np.float32,
) -> None:
    """SPS stage 0 at inference in one pass: conv 3×3 (stride 1, pad 1, BN folded) → LIF → max-pool 3/2/1.

    Args:
        x: event frames ``[T, B, C_in, H, W]`` float32 (mostly zeros: only non-zero pixels are visited).
        weight: ``[3, 3, C_in, C]`` (taps, then input channel, output channels innermost).
        bias: ``[C]``.
        v: membranes ``[B, H, W * C]`` (channels last), updated in place.
        out: pooled spikes ``[T, B, H/2, W/2 * C]`` (channels last).
        totals: ``[2, B, H]`` int64: the spikes of each conv row are added to ``totals[0]``, those
            of each pooled row (the first ``H/2``) to ``totals[1]``.
        counts: ``[B, H, W * C]`` float32, each neuron's spikes are added here; pass ``[1, 1, 1]``
            to skip (they cost a pass over the membranes per step).

    The conv rows never leave the cache; the LIF arithmetic is spikingjelly's (as
    :func:`_lif_inference_kernel`); each step's sums are formed in the same order whatever the
    window length, so windows of any size give the same spikes as one long pass.
    """
    steps, batch, c_in, height, width = x.shape
    c_out = weight.shape[3]
    out_h, out_w = out.shape[2], out.shape[3] // c_out
    row = width * c_out
    per_neuron = counts.shape[2] == row
    spikes = np.empty((height, row), dtype=np.float32)
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for t in range(steps):
        for b in range(batch):
            for y in numba.prange(height):
                acc = np.empty(row, dtype=np.float32)
                for xx in range(width):
                    for c in range(c_out):
                        acc[xx * c_out + c] = bias[c]
                for ky in range(3):
                    iy = y + ky - 1
                    if iy < 0 or iy >= height:
                        continue
                    for ci in range(c_in):
                        frame_row = x[t, b, ci, iy]
                        for ix in range(width):
                            value = frame_row[ix]
                            if value == zero:
                                continue
                            for kx in range(3):
                                ox = ix - kx + 1
                                if ox < 0 or ox >= width:
                                    continue
                                base = ox * c_out
                                for c in range(c_out):
                                    acc[base + c] += value * weight[ky, kx, ci, c]
                vrow = v[b, y]
                srow = spikes[y]
                fired_in_row = 0
                for i in range(row):
                    vi = vrow[i]
                    h = vi + (acc[i] - vi) / tau
                    fired = h >= v_th
                    srow[i] = one if fired else zero
                    vrow[i] = zero if fired else h
                    fired_in_row += 1 if fired else 0
                totals[0, b, y] += fired_in_row
                if per_neuron:
                    crow = counts[b, y]
                    for i in range(row):
                        crow[i] += srow[i]
            for oy in numba.prange(out_h):
                # Max over the (up to) three rows, then over three columns: contiguous, vectorisable rows.
                y0, y1 = max(2 * oy - 1, 0), min(2 * oy + 2, height)
                rows = spikes[y0].copy()
                for yy in range(y0 + 1, y1):
                    other = spikes[yy]
                    for i in range(row):
                        rows[i] = max(rows[i], other[i])
                orow = out[t, b, oy]
                for ox in range(out_w):
                    base, src = ox * c_out, 2 * ox * c_out
                    for c in range(c_out):
                        orow[base + c] = max(rows[src + c], rows[src + c_out + c])
                    if ox > 0:
                        for c in range(c_out):
                            orow[base + c] = max(orow[base + c], rows[src - c_out + c])
                pooled_in_row = 0
                for i in range(out_w * c_out):
                    pooled_in_row += 1 if orow[i] != zero else 0
                totals[1, b, oy] += pooled_in_row

def warm_up_kernels() -> None:
    """Compile the fused inference kernels, or load them from numba's cache, on tiny inputs.

    About 5 s on a fresh install (0.3 s from the cache); :meth:`Spikformer.fuse_for_inference`
    calls this so that the cost falls on setup, not on the first live window.
    """
    tau, v_th = np.float32(2.0), np.float32(1.0)
    x, v, out = np.zeros((1, 8), np.float32), np.zeros(8, np.float32), np.zeros((1, 8), np.float32)
    _lif_inference_kernel(x, v, out, tau, v_th)
    _lif_inference_serial(x, v, out, tau, v_th)
    _first_stage_kernel(
        np.zeros((1, 1, 1, 2, 2), np.float32),
        np.zeros((3, 3, 1, 1), np.float32),
        np.zeros(1, np.float32),
        np.zeros((1, 2, 2), np.float32),
        np.zeros((1, 1, 1, 1), np.float32),
        np.zeros((2, 1, 2), np.int64),
        np.zeros((1, 1, 1), np.float32),
        tau,
        v_th,
    )


def _plain_lif(node: neuron.LIFNode) -> bool:
    """A hard-reset-to-0 LIF with the input decayed (the Spikformer neuron): what the fused kernels compute."""
    return type(node) is neuron.LIFNode and node.v_reset == 0.0 and node.decay_input


def _fused_kernels_apply(x: Tensor) -> bool:
    """Whether the numba inference kernels may run on ``x``: CPU float32, no autograd, not compiling."""
    return not (
        torch.is_grad_enabled()
        or x.device.type != "cpu"
        or x.dtype != torch.float32
        or torch.compiler.is_compiling()
    )



def fold_batchnorm(block: nn.Module) -> None:
    """Fold the BN of a conv → BN → LIF block into its convolution (eval mode); BN becomes the identity.

    ``block`` holds ``conv`` and ``bn`` (:class:`models.spikformer._ConvBNLIF`); a k = 1
    ``Conv1d`` also gets ``block.pointwise = True`` so that its forward runs as a matrix product.
    """
    if isinstance(block.bn, nn.Identity):
        return
    block.conv = fuse_conv_bn_eval(block.conv, block.bn)
    block.bn = nn.Identity()
    conv = block.conv
    block.pointwise = isinstance(conv, nn.Conv1d) and (
        conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups
    ) == ((1,), (1,), (0,), (1,), 1)


def _holds_conv_bn(module: nn.Module) -> bool:
    return isinstance(getattr(module, "conv", None), nn.Conv1d | nn.Conv2d) and isinstance(
        getattr(module, "bn", None), nn.BatchNorm1d | nn.BatchNorm2d
    )


def first_stage_applies(stem: nn.Module) -> bool:
    """Whether :func:`first_stage` computes stem stage 0 of ``stem`` (a
    :class:`~models.spikformer.SpikingPatchSplitting`): plain LIF, conv 3×3/1/1, max-pool 3/2/1."""
    stage = stem.stages[0]
    conv = stage.conv
    return (
        _plain_lif(stage.lif)
        and isinstance(conv, nn.Conv2d)
        and (conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.groups) == ((3, 3), (1, 1), (1, 1), (1, 1), 1)
        and (stem.pool.kernel_size, stem.pool.stride, stem.pool.padding) == (3, 2, 1)
    )


def first_stage(stage: nn.Module, x: Tensor, capture: Capture | None) -> Tensor:
    """Stem stage 0 (conv → BN folded → LIF → max-pool) as one numba pass; channels-last spikes out.

    Args:
        stage: the stem's first conv → BN → LIF block, BN already folded (its ``conv`` and ``lif``).
        x: event frames ``[T, B, C_in, H, W]``, CPU float32.
        capture: when given, ``sps.0`` and ``sps.0.pool`` rates (and the ``sps.0`` map with
            ``capture.maps``) are recorded as the unfused stem records them.

    Returns:
        pooled spikes ``[T, B, C, H/2, W/2]`` (a channels-last view); the LIF membrane is
        carried in ``stage.lif.v`` as spikingjelly's ``[B, C, H, W]`` view.
    """
    lif = stage.lif
    t, b, _, h, w = x.shape
    weight = stage.conv.weight.detach()
    c = weight.shape[0]
    bias = stage.conv.bias.detach() if stage.conv.bias is not None else torch.zeros(c)
    v = lif.v.permute(0, 2, 3, 1) if isinstance(lif.v, Tensor) else None  # the view this function stored
    if v is None or v.dtype != torch.float32 or v.shape != (b, h, w, c) or not v.is_contiguous():
        fresh = torch.empty(b, h, w, c)  # channels last; spikingjelly sees the [B, C, H, W] view
        if isinstance(lif.v, Tensor) and lif.v.shape == (b, c, h, w):
            fresh.permute(0, 3, 1, 2).copy_(lif.v)
        else:
            fresh.fill_(float(lif.v))
        v = fresh
    out = torch.empty(t, b, h // 2, w // 2, c)
    totals = torch.zeros(2, b, h, dtype=torch.int64)
    maps = capture is not None and capture.maps
    counts = torch.zeros(b, h, w, c) if maps else torch.zeros(1, 1, 1, 1)
    _first_stage_kernel(
        x.contiguous().numpy(),
        weight.permute(2, 3, 1, 0).contiguous().numpy(),
        bias.contiguous().numpy(),
        v.view(b, h, w * c).numpy(),
        out.view(t, b, h // 2, w // 2 * c).numpy(),
        totals.numpy(),
        counts.flatten(2).numpy(),
        np.float32(lif.tau),
        np.float32(lif.v_threshold),
    )
    lif.v = v.permute(0, 3, 1, 2)
    pooled = out.permute(0, 1, 4, 2, 3)
    if capture is not None:
        if getattr(capture, "per_row", False):  # models.streaming.RowCapture: a rate per batch row
            per_row = totals.sum(dim=2).float()  # [2, B]: spikes, pooled spikes
            capture.layer_rates["sps.0"] = per_row[0] / (t * c * h * w)
            capture.layer_rates["sps.0.pool"] = per_row[1] / (pooled.numel() // b)
        else:
            fired, fired_pooled = totals.sum(dim=(1, 2)).tolist()
            capture.layer_rates["sps.0"] = fired / (t * b * c * h * w)
            capture.layer_rates["sps.0.pool"] = fired_pooled / pooled.numel()
        if maps:
            capture.spike_maps["sps.0"] = counts.sum(dim=3) / (t * c)  # [B, H, W], as the unfused stem's
    return pooled


def fuse_for_inference(model: Spikformer) -> Spikformer:
    """Fold every BatchNorm into its convolution and fuse each LIF's T-step loop, in place.

    At inference without gradients on CPU each LIF then runs as one numba pass (spikingjelly's
    spikes and membranes bit for bit for the same input; the LIF is ~80 % of eager CPU time
    otherwise, bench/model.py). The folded BN and the other summation orders make the network
    close to the unfused one, not bit-identical: see this module's docstring for what was measured.

    Only in eval mode (BN uses its running statistics); the state dict changes shape, so fuse
    after loading weights, never before saving them. Returns ``model``.

    Raises:
        ModelError: the model is in training mode.
    """
    if model.training:
        raise ModelError(f"fuse_for_inference: model {model.name} is in training mode; call .eval() first")
    for module in model.modules():
        if _holds_conv_bn(module):
            fold_batchnorm(module)
        if isinstance(module, neuron.LIFNode) and _plain_lif(module):
            module.multi_step_forward = types.MethodType(_fused_lif_forward, module)
    stem = model.patch_embed
    stem.fused_first_stage = first_stage_applies(stem)
    warm_up_kernels()
    # The stem's convolutions and max-pools run channels-last: oneDNN's native layout, and
    # PyTorch's CPU max-pool is ~7-25x faster there than on NCHW (bench/model.py).
    model.to(memory_format=torch.channels_last)
    return model
