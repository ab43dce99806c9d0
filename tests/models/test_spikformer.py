"""The Spikformer: shapes of every variant, the paper's parameter count, SSA maps, attention order,
causality (chunked == whole), batch independence of the LIF state, capture, errors."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional, neuron
from torch import nn

import models
from evstream.errors import ConfigError, ModelError
from evstream.labels import DVS_GESTURE_CLASSES
from models.spikformer import Capture, SpikformerConfig

TINY = {"img_size": (32, 32), "embed_dim": 32, "num_heads": 2}


def spiking(model: nn.Module) -> nn.Module:
    """Eval-mode model whose BN gain/offset make every layer spike (default init reaches no head)."""
    model.eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.weight.fill_(4.0)
                module.bias.fill_(0.5)
    return model


def events(t: int, b: int, size: int = 32, density: float = 0.1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(t, b, 2, size, size, generator=g) < density).float()


@pytest.mark.parametrize("name", models.list_models())
def test_every_variant_has_the_documented_shapes_at_tiny_size(name):
    torch.manual_seed(0)
    model = models.create_model(name, **TINY)
    x = events(3, 2)
    assert model(x).shape == (2, 11)
    functional.reset_net(model)
    assert model.forward_features(x).shape == (3, 2, 32)
    functional.reset_net(model)
    assert model.step_logits(x).shape == (3, 2, 11)
    assert model.num_classes == 11 and model.class_names == DVS_GESTURE_CLASSES
    assert model.config.img_size == (32, 32)


def test_registry_holds_the_paper_model_and_small_ones():
    names = models.list_models()
    assert {"spikformer_2_256", "spikformer_2_128", "spikformer_1_64", "spikformer_tiny"} <= set(names)
    assert names == sorted(names)


def test_paper_dvs_model_has_exactly_the_parameters_its_reference_forward_uses():
    # ZK-Zhou/spikformer cifar10dvs/model.py, counted by hand in spikformer.md §1.3.
    model = models.create_model("spikformer_2_256")
    assert sum(p.numel() for p in model.parameters()) == 2_566_923
    ten = models.create_model("spikformer_2_256", num_classes=10)
    assert sum(p.numel() for p in ten.parameters()) == 2_566_666
    cfg = model.config
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.scale, cfg.img_size, cfg.steps) == (
        256,
        2,
        16,
        0.25,
        (128, 128),
        16,
    )
    assert model.patch_embed.stages[0].conv.weight.shape == (32, 2, 3, 3)


def test_every_neuron_is_the_papers_lif():
    model = models.create_model("spikformer_tiny")
    lifs = [m for m in model.modules() if isinstance(m, neuron.LIFNode)]
    # 4 SPS stages + RPE + per block q, k, v, attn, proj, fc1, fc2.
    assert len(lifs) == 5 + 7 * model.config.depth
    for lif in lifs:
        assert (lif.tau, lif.v_reset, lif.detach_reset, lif.step_mode) == (2.0, 0.0, True, "m")
    thresholds = sorted(lif.v_threshold for lif in lifs)
    assert thresholds.count(0.5) == model.config.depth and thresholds[-1] == 1.0


def test_ssa_maps_are_integer_token_maps_of_the_right_shape():
    torch.manual_seed(1)
    model = spiking(models.create_model("spikformer_tiny", img_size=(64, 32), embed_dim=64, num_heads=4, depth=2))
    capture = Capture(maps=True)
    with torch.inference_mode():
        model.step_logits(events(3, 2, 64)[..., :32], capture)
    n, d_head = (64 // 16) * (32 // 16), 64 // 4
    assert len(capture.attn) == 2
    for qk in capture.attn:
        assert qk.shape == (3, 2, 4, n, n)
        assert torch.equal(qk, qk.round())
        assert qk.min() >= 0 and qk.max() <= d_head
        assert qk.max() > 0
    maps = capture.spike_maps
    assert maps["sps.0"].shape == (2, 64, 32) and maps["sps.3"].shape == (2, 8, 4)
    assert maps["rpe"].shape == (2, 4, 2)
    for key in ("blocks.0.attn", "blocks.0.mlp", "blocks.1.attn", "blocks.1.mlp"):
        assert maps[key].shape == (2, 4, 2)
    for value in maps.values():
        assert value.min() >= 0 and value.max() <= 1


def test_capture_without_maps_keeps_rates_only():
    model = spiking(models.create_model("spikformer_tiny", **TINY))
    capture = Capture(maps=False)
    x = events(4, 1)
    with torch.inference_mode():
        model.step_logits(x, capture)
    assert capture.spike_maps == {} and capture.attn == []
    assert capture.steps == 4
    assert capture.input_rate == pytest.approx(float((x != 0).float().mean()))
    for key in ("sps.0", "sps.3.pool", "rpe", "blocks.0.attn.q", "blocks.0.attn.attn_lif", "blocks.0.mlp.fc2"):
        assert 0.0 < capture.layer_rates[key] < 1.0, key


def test_qk_v_and_q_kv_orders_give_identical_outputs():
    torch.manual_seed(2)
    a = spiking(models.create_model("spikformer_tiny", img_size=(64, 64), embed_dim=64, num_heads=4, attn_order="qk_v"))
    b = models.create_model("spikformer_tiny", img_size=(64, 64), embed_dim=64, num_heads=4, attn_order="q_kv").eval()
    b.load_state_dict(a.state_dict())
    x = events(6, 2, 64)
    with torch.inference_mode():
        cap_a, cap_b = Capture(maps=True), Capture(maps=True)
        out_a, out_b = a.step_logits(x, cap_a), b.step_logits(x, cap_b)
    assert cap_a.layer_rates["blocks.0.attn.attn_lif"] > 0
    assert torch.equal(out_a, out_b)
    assert torch.equal(cap_a.attn[0], cap_b.attn[0])


def test_sixteen_single_steps_with_carried_state_equal_one_window():
    model = spiking(models.create_model("spikformer_tiny", **TINY))
    x = events(16, 2, density=0.15, seed=3)
    with torch.inference_mode():
        whole = model.step_logits(x)
        functional.reset_net(model)
        steps = torch.cat([model.step_logits(x[t : t + 1]) for t in range(16)])
        functional.reset_net(model)
        window = model(x)
    assert whole.abs().sum() > 0
    assert torch.equal(whole, steps)
    # The head is linear: the mean of the per-step logits is the window's logits.
    torch.testing.assert_close(whole.mean(dim=0), window)


def test_state_persists_across_calls_until_reset():
    model = spiking(models.create_model("spikformer_tiny", **TINY))
    x = events(2, 1, seed=4)
    with torch.inference_mode():
        first = model(x)
        carried = model(x)
        functional.reset_net(model)
        fresh = model(x)
    assert torch.equal(first, fresh)
    assert not torch.equal(first, carried)


def test_batch_elements_do_not_share_neuron_state():
    # spikformer.md §3.3: a LIF fed [T*B, ...] leaks state across the batch.
    model = spiking(models.create_model("spikformer_tiny", **TINY))
    x = events(5, 3, seed=5)
    with torch.inference_mode():
        batched = model.step_logits(x)
        singles = []
        for i in range(3):
            functional.reset_net(model)
            singles.append(model.step_logits(x[:, i : i + 1]))
    torch.testing.assert_close(batched, torch.cat(singles, dim=1), rtol=1e-5, atol=1e-5)


def test_wrong_input_shape_is_a_model_error_naming_the_expected_layout():
    model = models.create_model("spikformer_tiny")
    with pytest.raises(ModelError, match=r"expects \[T, B, 2, 32, 32\]"):
        model(torch.zeros(2, 1, 2, 64, 64))
    with pytest.raises(ModelError, match="input"):
        model(torch.zeros(1, 2, 32, 32))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"img_size": (30, 32)}, "img_size"),
        ({"embed_dim": 36}, "embed_dim"),
        ({"num_heads": 3}, "num_heads"),
        ({"depth": 0}, "depth"),
        ({"attn_order": "kq_v"}, "attn_order"),
        ({"heads": 2}, "heads"),
    ],
)
def test_invalid_configuration_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        models.create_model("spikformer_tiny", **overrides)


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(ModelError, match="spikformer_2_256"):
        models.create_model("resnet50")


def test_class_names_override_sets_the_class_count():
    model = models.create_model("spikformer_tiny", class_names=("a", "b", "c"))
    assert model.num_classes == 3 and model.class_names == ("a", "b", "c")
    assert model(events(2, 1)).shape == (1, 3)


def test_config_round_trips_through_plain_values():
    cfg = SpikformerConfig(img_size=(64, 48), embed_dim=64, num_heads=4, attn_order="q_kv")
    assert SpikformerConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="bogus"):
        SpikformerConfig.from_dict({**cfg.to_dict(), "bogus": 1})
