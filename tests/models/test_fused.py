"""The fused inference path (models/fused.py): each kernel against spikingjelly and PyTorch, the
fused model against the plain one at tiny size and at full ``spikformer_2_256`` size with
trained-looking weights, window-length invariance, and the names models.spikformer re-exports."""

from __future__ import annotations

import copy
import math
import types

import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from torch import nn

import models
from evstream.errors import ModelError
from models.fused import _fused_lif_forward
from models.spikformer import Capture, SpikformerConfig
from tests.models.test_spikformer import TINY, events, spiking


def _plain_lif_node(threshold: float = 1.0) -> neuron.LIFNode:
    """The Spikformer's own neuron (τ 2, hard reset to 0), as the model builds it."""
    from models.spikformer import _lif

    return _lif(SpikformerConfig(), threshold)


def moving_edge_frames(t: int, b: int, size: int, seed: int) -> torch.Tensor:
    """Event counts ``[T, B, 2, size, size]`` of a disk circling the frame, as a DVS sees a moving
    hand: ON events (channel 1) on the leading edge, OFF (channel 0) on the trailing one, 1-3
    events per pixel, 80 % of edge pixels firing, plus 0.5 % background noise per channel."""
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(b, generator=g) * 2 * math.pi
    speed = 0.15 + 0.2 * torch.rand(b, generator=g)  # radians per step
    radius = size * (0.08 + 0.08 * torch.rand(b, generator=g))
    angle = phase + speed * torch.arange(t + 1)[:, None]  # [T + 1, B]
    cx, cy = size / 2 + size / 4 * angle.cos(), size / 2 + size / 4 * angle.sin()
    grid = torch.arange(size, dtype=torch.float32)
    inside = ((grid[None, None, None, :] - cx[..., None, None]) ** 2
              + (grid[None, None, :, None] - cy[..., None, None]) ** 2) < radius[None, :, None, None] ** 2
    on, off = inside[1:] & ~inside[:-1], inside[:-1] & ~inside[1:]  # [T, B, H, W]
    edges = torch.stack([off, on], dim=2).float()
    fires = torch.rand(edges.shape, generator=g) < 0.8
    counts = torch.randint(1, 4, edges.shape, generator=g).float()
    noise = (torch.rand(edges.shape, generator=g) < 0.005).float()
    return edges * fires * counts + noise


def trained_like_2_256(seed: int = 0) -> nn.Module:
    """``spikformer_2_256`` with random weights that behave like trained ones: BN gains and offsets
    drawn at random, then BN running statistics measured (cumulative average) over three batches
    of moving-edge frames in train mode, so each layer sees inputs normalised by its own statistics
    and fires at realistic rates; a head with logit scale ~5, so decisions are not all one class."""
    torch.manual_seed(seed)
    model = models.create_model("spikformer_2_256")
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.momentum = None  # cumulative moving average over the calibration batches
                module.weight.uniform_(1.0, 2.5)
                module.bias.uniform_(-0.3, 0.5)
        nn.init.normal_(model.head.weight, std=0.1)
        model.train()
        for i in range(3):
            functional.reset_net(model)
            model(moving_edge_frames(4, 2, 128, seed=100 + i))
    functional.reset_net(model)
    return model.eval()


@pytest.fixture(scope="module")
def plain_2_256() -> nn.Module:
    """One calibrated ``spikformer_2_256`` for the module (its calibration costs ~1-2 s of CPU)."""
    return trained_like_2_256()


class SpikeRecorder:
    """Keeps the output of every LIF (and the pooled stage-0 spikes that enter stage 1) per call."""

    def __init__(self, model: nn.Module) -> None:
        self.spikes: dict[str, torch.Tensor] = {}
        for name, module in model.named_modules():
            if isinstance(module, neuron.LIFNode):
                module.register_forward_hook(self._keep(name))
        model.patch_embed.stages[1].register_forward_pre_hook(
            lambda module, args: self.spikes.__setitem__("sps.0.pooled", args[0].contiguous())
        )

    def _keep(self, name: str):
        def hook(module, args, out):
            self.spikes[name] = out.contiguous()

        return hook


def test_fused_2_256_with_trained_like_weights_flips_few_spikes_and_keeps_decisions(plain_2_256, one_torch_thread):
    # The fused form folds BN and sums in other orders, so it is close to the plain model, not
    # bit-identical (models/fused.py states what was measured). Bound what users see; the bounds
    # leave room for other CPUs' BLAS and oneDNN kernels, which round differently.
    plain = copy.deepcopy(plain_2_256)
    fused = copy.deepcopy(plain_2_256).fuse_for_inference()
    windows, steps = 5, 8  # the plain model costs ~50-100 ms per step on one CPU thread
    recorded_plain, recorded_fused = SpikeRecorder(plain), SpikeRecorder(fused)
    flipped = compared = 0
    window_agree = step_agree = 0
    plain_decisions = []
    with torch.inference_mode():
        capture = Capture()
        for w in range(windows):
            x = moving_edge_frames(steps, 1, 128, seed=1000 + w)
            functional.reset_net(plain)
            functional.reset_net(fused)
            expected = plain.step_logits(x, capture if w == 0 else None)
            got = fused.step_logits(x)
            if w == 0:  # the comparison means something only if the network spikes as trained ones do
                lif_rates = {k: r for k, r in capture.layer_rates.items() if k != "input" and not k.endswith((".in", ".pool"))}
                assert 0.005 < capture.input_rate < 0.1
                assert all(0.01 < r < 0.6 for r in lif_rates.values()), lif_rates
                assert 0.05 < sum(lif_rates.values()) / len(lif_rates) < 0.3
            for name, spikes in recorded_fused.spikes.items():
                if name in recorded_plain.spikes:
                    reference = recorded_plain.spikes[name]
                    flipped += int((spikes.reshape(reference.shape) != reference).sum())
                    compared += reference.numel()
            plain_decisions.append(int(expected.mean(0).argmax()))
            window_agree += int(expected.mean(0).argmax() == got.mean(0).argmax())
            step_agree += int((expected.argmax(-1) == got.argmax(-1)).sum())
            assert float((expected - got).abs().max()) < 0.25 * float(expected.abs().max())  # measured <= 0.10
    assert compared > 30_000_000  # all LIF outputs (stage 0 as its pooled spikes): 40 steps × ~0.93 M
    assert len(set(plain_decisions)) >= 2  # the decisions are not one constant class
    # Measured here: 0.60 % of spikes, 0 / 5 windows, 4 / 40 steps (early steps, small logits);
    # over 48 windows of 16 steps: 0.32 %, 0 / 48 windows, 10 / 768 steps.
    assert flipped / compared < 0.02
    assert window_agree >= windows - 1
    assert step_agree >= 0.8 * windows * steps


def test_fused_2_256_windows_of_any_length_equal_one_pass(plain_2_256, one_torch_thread):
    model = copy.deepcopy(plain_2_256).fuse_for_inference()
    x = moving_edge_frames(8, 1, 128, seed=7)
    with torch.inference_mode():
        whole = model.forward_features(x)
        functional.reset_net(model)
        steps = torch.cat([model.forward_features(x[i : i + 1]) for i in range(8)])
        functional.reset_net(model)
        logits = torch.cat([model.step_logits(x[i : i + 1]) for i in range(8)])
        window_logits = model.head(whole)
    assert whole.abs().sum() > 0
    assert torch.equal(whole, steps)  # same spikes, same features
    torch.testing.assert_close(logits, window_logits, rtol=0, atol=1e-5)


def test_old_names_still_import_from_models_spikformer():
    import models.fused as fused
    import models.spikformer as spikformer

    for name in ("_fused_lif_forward", "_first_stage_kernel", "_lif_inference_kernel", "_lif_inference_serial",
                 "_lif_block", "_memory_order", "_plain_lif", "_fused_kernels_apply", "warm_up_kernels",
                 "_LIF_BLOCK", "_LIF_SERIAL_BELOW"):
        assert getattr(spikformer, name) is getattr(fused, name), name
    model = models.create_model("spikformer_tiny").eval()
    assert model.fuse_for_inference() is model and model.patch_embed.fused_first_stage


def test_fused_batchnorm_gives_the_same_logits():
    torch.manual_seed(6)
    model = spiking(models.create_model("spikformer_tiny", **TINY))
    x = events(4, 2, seed=6)
    with torch.inference_mode():
        plain = model.step_logits(x)
        functional.reset_net(model)
        model.fuse_for_inference()
        fused = model.step_logits(x)
    assert not any(isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(plain, fused, rtol=1e-4, atol=1e-4)


def test_fuse_refuses_training_mode():
    with pytest.raises(ModelError, match="training mode"):
        models.create_model("spikformer_tiny").fuse_for_inference()


@pytest.mark.parametrize("threshold", [1.0, 0.5])
def test_fused_lif_gives_spikingjelly_spikes_and_state_bit_for_bit(threshold):
    plain, fused = _plain_lif_node(threshold), _plain_lif_node(threshold)
    fused.multi_step_forward = types.MethodType(_fused_lif_forward, fused)
    x = torch.randn(6, 2, 3, 5, 7, generator=torch.Generator().manual_seed(7)) * 2
    with torch.inference_mode():
        for chunk in (x[:4], x[4:5], x[5:]):  # carried state across calls of different T
            expected, got = plain(chunk), fused(chunk)
            assert torch.equal(expected, got) and torch.equal(plain.v, fused.v)
        assert 0 < float(got.mean()) < 1
    functional.reset_net(fused)
    assert fused.v == 0.0
    y = fused(x.clone().requires_grad_(True))  # with autograd: spikingjelly's own path
    assert y.requires_grad


def test_fused_lif_keeps_a_channels_last_layout_and_spikingjelly_values():
    plain, fused = _plain_lif_node(), _plain_lif_node()
    fused.multi_step_forward = types.MethodType(_fused_lif_forward, fused)
    x = torch.randn(5 * 2, 8, 6, 7, generator=torch.Generator().manual_seed(8)) * 2
    x = x.contiguous(memory_format=torch.channels_last).unflatten(0, (5, 2))  # as the fused stem's convs give
    with torch.inference_mode():
        for chunk in (x[:3], x[3:]):
            expected, got = plain(chunk), fused(chunk)
            assert torch.equal(expected, got) and torch.equal(plain.v, fused.v)
            assert got.stride() == chunk.stride()  # no conversion back to NCHW
        assert 0 < float(got.mean()) < 1


def test_fused_first_stem_stage_equals_conv_lif_maxpool_bit_for_bit():
    # Dyadic weights and integer inputs make every sum exact in float32 whatever the order, so
    # the numba pass must reproduce conv → LIF → max-pool exactly, state carried across calls.
    torch.manual_seed(9)
    model = models.create_model("spikformer_2_64").eval().fuse_for_inference()
    stem = model.patch_embed
    assert stem.fused_first_stage
    conv = stem.stages[0].conv
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-8, 9, conv.weight.shape) / 8.0)
        conv.bias.copy_(torch.randint(-4, 5, conv.bias.shape) / 8.0)
    reference_lif = _plain_lif_node()
    x = (torch.rand(7, 2, 2, 64, 64) < 0.15) * torch.randint(1, 4, (7, 2, 2, 64, 64))
    x = x.float()
    with torch.inference_mode():
        for chunk in (x[:4], x[4:5], x[5:]):
            t, b = chunk.shape[:2]
            cap = Capture(maps=True)
            got = stem._first_stage(chunk, cap)
            spikes = reference_lif(conv(chunk.flatten(0, 1)).unflatten(0, (t, b)))
            expected = stem.pool(spikes.flatten(0, 1)).unflatten(0, (t, b))
            assert torch.equal(got, expected)
            assert torch.equal(stem.stages[0].lif.v, reference_lif.v)
            assert cap.layer_rates["sps.0"] == pytest.approx(float(spikes.mean()), abs=1e-6)
            assert cap.layer_rates["sps.0.pool"] == pytest.approx(float(expected.mean()), abs=1e-6)
            torch.testing.assert_close(cap.spike_maps["sps.0"], spikes.mean(dim=(0, 2)))
        assert 0.05 < float(got.mean()) < 0.95  # neither silent nor saturated: the comparison means something


def test_fused_model_matches_the_plain_one_and_stays_exact_across_windows():
    torch.manual_seed(10)
    plain = spiking(models.create_model("spikformer_2_64"))
    fused = spiking(models.create_model("spikformer_2_64"))
    fused.load_state_dict(plain.state_dict())
    fused.fuse_for_inference()
    assert any(m.pointwise for m in fused.modules() if hasattr(m, "pointwise"))
    x = events(6, 1, size=64, density=0.2, seed=11) * 2
    with torch.inference_mode():
        expected = plain.step_logits(x)
        whole = fused.step_logits(x)
        functional.reset_net(fused)
        pieces = torch.cat([fused.step_logits(x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(whole, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(pieces, whole) or float((pieces - whole).abs().max()) <= 1e-5
