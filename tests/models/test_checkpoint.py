"""Checkpoints: round trip through a real file, shipped-name resolution, and every mismatch error."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional
from torch import nn

import models
from evstream.errors import ModelError
from evstream.labels import DVS_GESTURE_CLASSES
from models import checkpoint

PRE = {"sensor": (128, 128), "out_size": (32, 32), "steps": 4, "step_us": 50_000, "mode": "time"}


def trained_like(**overrides) -> nn.Module:
    torch.manual_seed(0)
    model = models.create_model("spikformer_tiny", **overrides)
    with torch.no_grad():  # non-default values everywhere, running stats included
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.weight.fill_(4.0)
                module.running_mean.uniform_(-0.2, 0.2)
    return model


def test_round_trip_restores_weights_outputs_and_metadata(tmp_path):
    model = trained_like()
    path = models.save_checkpoint(
        tmp_path / "sub" / "ck.pt",
        model,
        preprocessing=PRE,
        metrics={"top1": 0.75, "confusion": [[1, 0], [0, 1]]},
        train_args={"epochs": 3, "data": tmp_path},
    )
    assert path.is_file() and not path.with_name("ck.pt.tmp").exists()
    loaded = models.load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.name == "ck" and loaded.arch == "spikformer_tiny" and loaded.path == path
    assert loaded.class_names == DVS_GESTURE_CLASSES == loaded.model.class_names
    assert loaded.preprocessing == {**PRE, "sensor": [128, 128], "out_size": [32, 32]}
    assert loaded.metrics["top1"] == 0.75 and loaded.train_args["data"] == str(tmp_path)
    assert loaded.model.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    x = (torch.rand(4, 2, 2, 32, 32) < 0.2).float()
    model.eval()
    with torch.inference_mode():
        expected = model(x)
        got = loaded.model(x)
    functional.reset_net(model)
    assert expected.abs().sum() > 0
    assert torch.equal(expected, got)


def test_file_holds_only_plain_values_loadable_with_weights_only(tmp_path):
    path = models.save_checkpoint(tmp_path / "ck.pt", trained_like(), preprocessing=PRE)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "evstream-spikformer" and payload["model"] == "spikformer_tiny"
    assert payload["config"]["img_size"] == [32, 32]
    assert payload["class_names"] == list(DVS_GESTURE_CLASSES)
    assert "train_state" not in payload


def test_custom_class_names_and_attention_order_survive(tmp_path):
    model = models.create_model("spikformer_tiny", class_names=("left", "right"), attn_order="q_kv")
    path = models.save_checkpoint(tmp_path / "two.pt", model, preprocessing=PRE)
    loaded = models.load_checkpoint(path, num_classes=2, model="spikformer_tiny")
    assert loaded.class_names == ("left", "right") and loaded.model.config.attn_order == "q_kv"


def test_a_bare_name_resolves_to_shipped_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    models.save_checkpoint(tmp_path / "demo.pt", trained_like(), preprocessing=PRE)
    assert models.list_weights() == ["demo"]
    assert models.load_checkpoint("demo").path == tmp_path / "demo.pt"
    with pytest.raises(ModelError, match=r"'nothing'.*shipped: demo"):
        models.load_checkpoint("nothing")


def test_default_weights_name_is_set():
    assert isinstance(models.DEFAULT_WEIGHTS, str) and models.DEFAULT_WEIGHTS


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ModelError, match="absent.pt: checkpoint file not found"):
        models.load_checkpoint(tmp_path / "absent.pt")


def test_other_architecture_or_class_count_than_requested(tmp_path):
    path = models.save_checkpoint(tmp_path / "ck.pt", trained_like(), preprocessing=PRE)
    with pytest.raises(ModelError, match=r"ck.pt: field 'model' is 'spikformer_tiny', expected 'spikformer_2_256'"):
        models.load_checkpoint(path, model="spikformer_2_256")
    with pytest.raises(ModelError, match=r"num_classes' is 11, expected 10"):
        models.load_checkpoint(path, num_classes=10)


def test_unreadable_and_foreign_files(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ModelError, match="garbage.pt: unreadable checkpoint"):
        models.load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(ModelError, match="foreign.pt: not an evstream Spikformer checkpoint"):
        models.load_checkpoint(foreign)
    truncated = tmp_path / "truncated.pt"
    whole = models.save_checkpoint(tmp_path / "whole.pt", trained_like(), preprocessing=PRE).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ModelError, match="truncated.pt: unreadable checkpoint"):
        models.load_checkpoint(truncated)


def _edit(path, change):
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_missing_unexpected_and_misshapen_weights_are_named(tmp_path):
    path = models.save_checkpoint(tmp_path / "ck.pt", trained_like(), preprocessing=PRE)
    _edit(path, lambda p: p["state_dict"].pop("head.weight"))
    with pytest.raises(ModelError, match=r"missing 1 \(e.g. head.weight\)"):
        models.load_checkpoint(path)

    path = models.save_checkpoint(tmp_path / "ck2.pt", trained_like(), preprocessing=PRE)
    _edit(path, lambda p: p["state_dict"].update(extra=torch.zeros(1)))
    with pytest.raises(ModelError, match=r"unexpected 1 \(e.g. extra\)"):
        models.load_checkpoint(path)

    path = models.save_checkpoint(tmp_path / "ck3.pt", trained_like(), preprocessing=PRE)
    _edit(path, lambda p: p["config"].update(embed_dim=64))
    with pytest.raises(ModelError, match=r"ck3.pt: field 'state_dict': .*size mismatch"):
        models.load_checkpoint(path)

    path = models.save_checkpoint(tmp_path / "ck4.pt", trained_like(), preprocessing=PRE)
    _edit(path, lambda p: p.pop("config"))
    with pytest.raises(ModelError, match=r"ck4.pt: field 'config' missing"):
        models.load_checkpoint(path)

    path = models.save_checkpoint(tmp_path / "ck5.pt", trained_like(), preprocessing=PRE)
    _edit(path, lambda p: p["config"].update(num_heads=3))
    with pytest.raises(ModelError, match=r"ck5.pt: field 'config': num_heads"):
        models.load_checkpoint(path)


def test_a_fused_model_is_not_saved(tmp_path):
    model = trained_like().eval().fuse_for_inference()
    with pytest.raises(ModelError, match="BN-fused"):
        models.save_checkpoint(tmp_path / "fused.pt", model, preprocessing=PRE)
    assert not (tmp_path / "fused.pt").exists()


def test_train_state_is_kept_for_resuming(tmp_path):
    model = trained_like()
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 1, 2, 32, 32)).sum().backward()
    optimizer.step()
    path = models.save_checkpoint(
        tmp_path / "last.pt", model, preprocessing=PRE, train_state={"optimizer": optimizer.state_dict(), "epoch": 4}
    )
    loaded = models.load_checkpoint(path)
    assert loaded.train_state["epoch"] == 4
    fresh = torch.optim.AdamW(loaded.model.parameters())
    fresh.load_state_dict(loaded.train_state["optimizer"])
    assert fresh.state_dict()["state"][0]["step"] == 1


def test_shipped_default_weights_are_small_complete_and_never_saw_real_data():
    assert models.DEFAULT_WEIGHTS in models.list_weights(), f"models/weights/{models.DEFAULT_WEIGHTS}.pt missing"
    path = checkpoint.WEIGHTS_DIR / f"{models.DEFAULT_WEIGHTS}.pt"
    assert path.stat().st_size < 8 * 1024 * 1024
    assert (checkpoint.WEIGHTS_DIR / f"{models.DEFAULT_WEIGHTS}.md").is_file()
    loaded = models.load_checkpoint(models.DEFAULT_WEIGHTS)
    assert loaded.class_names == DVS_GESTURE_CLASSES and loaded.train_state == {}
    pre = loaded.preprocessing
    assert pre["mode"] == "time" and pre["step_us"] > 0 and pre["steps"] == loaded.model.config.steps
    assert pre["out_size"] == [loaded.model.config.img_size[1], loaded.model.config.img_size[0]]
    assert 0.0 <= loaded.metrics["top1"] <= 1.0
    # train writes what the folder holds (a synth folder carries SYNTHETIC.txt), not a name someone chose
    assert loaded.metrics["trained_on"].startswith("synthetic gestures only")


def test_decision_settings_travel_with_the_weights(tmp_path):
    path = models.save_checkpoint(
        tmp_path / "ck.pt", trained_like(), preprocessing=PRE, decision={"threshold": 0.3, "hysteresis": 0.05}
    )
    assert models.load_checkpoint(path).decision == {"threshold": 0.3, "hysteresis": 0.05}
    bare = models.save_checkpoint(tmp_path / "bare.pt", trained_like(), preprocessing=PRE)
    assert models.load_checkpoint(bare).decision == {}
    # The shipped weights carry the settings their online evaluation was calibrated with.
    shipped = models.load_checkpoint(models.DEFAULT_WEIGHTS).decision
    assert 0 < shipped["threshold"] < 1 and 0 <= shipped["hysteresis"] < shipped["threshold"]
