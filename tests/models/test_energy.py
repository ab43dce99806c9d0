"""Energy accounting: MACs from the config (checked by hand on a toy network and against the
reference counts of the paper model), SOPs from firing rates, strict and paper accountings, the
first conv charged dense or by the event pixels it touches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import models
from evstream.errors import ConfigError, ModelError
from models.energy import estimate_energy, layer_ops
from models.spikformer import Capture, SpikformerConfig

# 16×16 input, D 8 (stem widths 1, 2, 4, 8), 1 block, 2 heads (d_head 4), hidden 16, 3 classes, 1 token.
TOY = SpikformerConfig(img_size=(16, 16), embed_dim=8, depth=1, num_heads=2, mlp_ratio=2.0, num_classes=3, steps=2)

RATES = {
    "input": 0.5,
    "sps.0.pool": 0.5,
    "sps.1.pool": 0.25,
    "sps.2.pool": 0.125,
    "sps.3.pool": 0.5,
    "blocks.0.attn.in": 0.75,
    "blocks.0.attn.q": 0.5,
    "blocks.0.attn.k": 0.25,
    "blocks.0.attn.v": 0.5,
    "blocks.0.attn.attn_lif": 0.25,
    "blocks.0.mlp.in": 0.5,
    "blocks.0.mlp.fc1": 0.25,
}


def test_toy_network_macs_by_hand():
    macs = {layer.name: layer.macs for layer in layer_ops(TOY)}
    assert macs == {
        "sps.0.conv": 16 * 16 * 9 * 2 * 1,  # 4608
        "sps.1.conv": 8 * 8 * 9 * 1 * 2,  # 1152
        "sps.2.conv": 4 * 4 * 9 * 2 * 4,  # 1152
        "sps.3.conv": 2 * 2 * 9 * 4 * 8,  # 1152
        "rpe.conv": 1 * 9 * 8 * 8,  # 576
        "blocks.0.attn.q.conv": 64,
        "blocks.0.attn.k.conv": 64,
        "blocks.0.attn.v.conv": 64,
        "blocks.0.attn.qk": 8,  # N·N·D
        "blocks.0.attn.qk_v": 8,
        "blocks.0.attn.proj.conv": 64,
        "blocks.0.mlp.fc1.conv": 128,
        "blocks.0.mlp.fc2.conv": 128,
        "head": 24,
    }


def test_toy_network_strict_energy_by_hand():
    report = estimate_energy(TOY, RATES, steps=2, first_layer="dense")
    # MAC layers (non-binary input): first conv, q/k/v, fc1 per step, head once per window.
    assert report.mac_ops == (4608 + 3 * 64 + 128) * 2 + 24 == 9880
    # AC layers: SOP = rate × MACs × T.
    sops = 1152 * 0.5 * 2 + 1152 * 0.25 * 2 + 1152 * 0.125 * 2 + 576 * 0.5 * 2
    sops += 8 * 0.25 * 2 + 8 * 0.5 * 2 + 64 * 0.25 * 2 + 128 * 0.25 * 2
    assert sops == 2700
    assert report.sops == pytest.approx(sops)
    assert report.total_uj == pytest.approx((9880 * 4.6 + 2700 * 0.9) * 1e-6)
    assert report.per_sample_uj == report.total_uj and report.per_step_uj == pytest.approx(report.total_uj / 2)
    assert report.dense_macs == 9168 * 2 + 24
    assert report.ann_energy_uj == pytest.approx((9168 * 2 + 24) * 4.6e-6)
    assert report.per_layer["blocks.0.attn.qk"] == pytest.approx((16, 0.25, 4, 4 * 0.9))
    assert report.op_type["blocks.0.attn.q.conv"] == "MAC" and report.op_type["rpe.conv"] == "AC"
    macs, rate, ops, energy = report.per_layer["sps.0.conv"]
    assert (macs, rate, ops) == (9216, 1.0, 9216) and energy == pytest.approx(9216 * 4.6)


def test_toy_network_paper_accounting_charges_only_the_first_conv_as_mac():
    report = estimate_energy(TOY, RATES, steps=2, accounting="paper")
    assert report.mac_ops == 4608 * 2
    # Additional ACs: q/k/v at the residual stream's non-zero fraction, fc1 likewise, head dense.
    assert report.sops == pytest.approx(2700 + 3 * 64 * 0.75 * 2 + 128 * 0.5 * 2 + 24)
    assert report.total_uj == pytest.approx((9216 * 4.6 + 3140 * 0.9) * 1e-6)
    assert report.total_uj < estimate_energy(TOY, RATES, steps=2, first_layer="dense").total_uj
    assert report.first_layer == "dense" and report.name == "paper, first conv dense (MAC)"


def test_batch_scales_the_window_and_presets_change_the_unit_costs():
    one = estimate_energy(TOY, RATES, steps=2)
    two = estimate_energy(TOY, RATES, steps=2, batch=2)
    assert two.total_uj == pytest.approx(2 * one.total_uj) and two.per_sample_uj == pytest.approx(one.total_uj)
    int8 = estimate_energy(TOY, RATES, steps=2, preset="int8_45nm", first_layer="dense")
    assert int8.total_uj == pytest.approx((9880 * 0.23 + 2700 * 0.03) * 1e-6)
    custom = estimate_energy(TOY, RATES, steps=2, e_mac_pj=1.0, e_ac_pj=0.0, first_layer="dense")
    assert custom.total_uj == pytest.approx(9880e-6)


def test_linear_attention_order_counts_d_head_products():
    config = SpikformerConfig(**{**TOY.to_dict(), "img_size": (16, 16), "attn_order": "q_kv"})
    macs = {layer.name: layer.macs for layer in layer_ops(config)}
    assert macs["blocks.0.attn.kv"] == 1 * 8 * 4 and macs["blocks.0.attn.q_kv"] == 32
    report = estimate_energy(config, RATES, steps=1)
    assert report.per_layer["blocks.0.attn.kv"].rate == 0.25  # min(fr_K, fr_V)
    assert report.per_layer["blocks.0.attn.q_kv"].rate == 0.5  # fr_Q


def test_paper_model_macs_match_the_reference_hand_count():
    # spikformer.md §1.3: first conv 9.44 M, SPS + RPE 273.7 M, each block 52.4 M, 378.5 M per step.
    layers = layer_ops(models.create_model("spikformer_2_256").config)
    per_step = {layer.name: layer.macs for layer in layers if layer.per_step}
    assert per_step["sps.0.conv"] == 9_437_184
    stem = sum(v for k, v in per_step.items() if k.startswith(("sps.", "rpe.")))
    assert round(stem / 1e6, 1) == 273.7
    block = sum(v for k, v in per_step.items() if k.startswith("blocks.0."))
    assert round(block / 1e6, 1) == 52.4
    assert round(sum(per_step.values()) / 1e6, 1) == 378.5


def test_rates_from_a_real_forward_give_a_report():
    torch.manual_seed(0)
    model = models.create_model("spikformer_tiny").eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.weight.fill_(4.0)
                module.bias.fill_(0.5)
    capture = Capture()
    with torch.inference_mode():
        model.step_logits((torch.rand(3, 1, 2, 32, 32) < 0.1).float(), capture)
    report = estimate_energy(model, capture, steps=3)
    assert report.sops > 0
    assert report.total_uj == pytest.approx(estimate_energy(model.config, dict(capture.layer_rates), steps=3).total_uj)
    assert report.total_uj < report.ann_energy_uj
    # Fewer spikes, less energy: silence the stem's pooled rates.
    quiet = {**capture.layer_rates, "sps.0.pool": 0.0, "sps.1.pool": 0.0}
    assert estimate_energy(model, quiet, steps=3).total_uj < report.total_uj


def test_missing_rates_and_bad_options_are_named():
    with pytest.raises(ModelError, match="'sps.1.pool' missing"):
        estimate_energy(TOY, {k: v for k, v in RATES.items() if k != "sps.1.pool"}, steps=2)
    with pytest.raises(ConfigError, match="preset"):
        estimate_energy(TOY, RATES, steps=2, preset="fp64")
    with pytest.raises(ConfigError, match="accounting"):
        estimate_energy(TOY, RATES, steps=2, accounting="optimistic")
    with pytest.raises(ConfigError, match="steps"):
        estimate_energy(TOY, RATES, steps=0)
    with pytest.raises(ConfigError, match="first_layer"):
        estimate_energy(TOY, RATES, steps=2, first_layer="sparse")
    with pytest.raises(ModelError, match="'input' missing"):  # counting by events needs the input's rate
        estimate_energy(TOY, {k: v for k, v in RATES.items() if k != "input"}, steps=2)
    assert estimate_energy(TOY, {k: v for k, v in RATES.items() if k != "input"}, steps=2, first_layer="dense")


def test_toy_first_conv_by_events_is_the_input_rate_times_its_dense_macs():
    strict = estimate_energy(TOY, RATES, steps=2)  # default: strict, first conv by events
    dense = estimate_energy(TOY, RATES, steps=2, first_layer="dense")
    assert strict.first_layer == "events" and strict.name == "strict, first conv by events (MAC)"
    macs, rate, ops, energy = strict.per_layer["sps.0.conv"]
    assert (macs, rate, ops) == (9216, 0.5, 4608) and energy == pytest.approx(4608 * 4.6)
    assert strict.op_type["sps.0.conv"] == "MAC" and strict.mac_ops == 9880 - 4608
    # Every other layer is charged as before.
    assert {k: v for k, v in strict.per_layer.items() if k != "sps.0.conv"} == {
        k: v for k, v in dense.per_layer.items() if k != "sps.0.conv"
    }
    assert dense.total_uj - strict.total_uj == pytest.approx(4608 * 4.6e-6)
    binary = estimate_energy(TOY, RATES, steps=2, input_binary=True)
    assert binary.op_type["sps.0.conv"] == "AC" and binary.per_layer["sps.0.conv"].energy_pj == pytest.approx(4608 * 0.9)
    assert binary.sops == pytest.approx(2700 + 4608) and binary.name == "strict, first conv by events (AC)"
    paper_events = estimate_energy(TOY, RATES, steps=2, accounting="paper", first_layer="events")
    paper = estimate_energy(TOY, RATES, steps=2, accounting="paper")
    assert paper.total_uj - paper_events.total_uj == pytest.approx(4608 * 4.6e-6)


def _event_frames(steps: int, pixels: list[tuple[int, int, int, int, float]], size: int = 32) -> torch.Tensor:
    """Frames ``[T, 1, 2, size, size]``, zero but for ``(t, polarity, y, x, count)`` entries."""
    x = torch.zeros(steps, 1, 2, size, size)
    for t, p, y, xx, count in pixels:
        x[t, 0, p, y, xx] = count
    return x


@pytest.mark.parametrize("fused", [False, True])
def test_first_conv_by_events_equals_a_hand_count_of_a_real_forward(fused, one_torch_thread):
    # Three non-zero interior pixels (counts 1, 2 and 5), spread over steps and polarities: each
    # touches 3·3 kernel taps × C_out output channels, so 3·9·C_out MACs, whatever the counts.
    torch.manual_seed(0)
    model = models.create_model("spikformer_tiny").eval()
    if fused:
        model = model.fuse_for_inference()
    c_out = model.config.embed_dim // 8
    x = _event_frames(3, [(0, 0, 5, 7, 1.0), (1, 1, 20, 9, 2.0), (2, 1, 11, 30, 5.0)])
    capture = Capture()
    with torch.inference_mode():
        model.step_logits(x, capture)
    report = estimate_energy(model, capture, steps=3)
    first = report.per_layer["sps.0.conv"]
    assert first.ops == pytest.approx(3 * 3 * 3 * c_out, rel=1e-12)
    assert first.energy_pj == pytest.approx(3 * 9 * c_out * 4.6, rel=1e-12)
    dense = estimate_energy(model, capture, steps=3, first_layer="dense").per_layer["sps.0.conv"]
    assert dense.ops == 3 * 32 * 32 * 9 * 2 * c_out  # T · H · W · k² · C_in · C_out, unchanged


def test_zero_input_costs_no_first_layer_energy(one_torch_thread):
    model = models.create_model("spikformer_tiny").eval()
    capture = Capture()
    with torch.inference_mode():
        model.step_logits(torch.zeros(2, 1, 2, 32, 32), capture)
    for accounting in ("strict", "paper"):
        report = estimate_energy(model, capture, steps=2, accounting=accounting, first_layer="events")
        assert report.per_layer["sps.0.conv"].ops == 0 and report.per_layer["sps.0.conv"].energy_pj == 0
    dense = estimate_energy(model, capture, steps=2, accounting="paper")
    assert dense.per_layer["sps.0.conv"].ops == 2 * 32 * 32 * 9 * 2 * (model.config.embed_dim // 8)
