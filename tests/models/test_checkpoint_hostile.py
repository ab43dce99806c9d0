"""Hostile checkpoint contents: every field checked with bounds before any module is built."""

from __future__ import annotations

import copy

import pytest
import torch

from evstream.errors import ModelError
from models.checkpoint import WEIGHTS_DIR, load_checkpoint

SHIPPED = WEIGHTS_DIR / "spikformer_synth_stream_64.pt"


@pytest.fixture(scope="module")
def payload():
    return torch.load(SHIPPED, map_location="cpu", weights_only=True)


def _write(tmp_path, payload, where, value):
    """Copy of the shipped checkpoint with ``payload[where[0]][where[1]] = value`` (config etc.)."""
    bad = copy.copy(payload)
    section, key = where
    bad[section] = dict(payload[section])
    bad[section][key] = value
    path = tmp_path / "hostile.pt"
    torch.save(bad, path)
    return path


# reproducers (issue 17, finding 7): embed_dim 16384 allocated 4.8 GB, depth 100,000 ran 42 s and
# ran out of memory; wrong types gave tracebacks
@pytest.mark.parametrize(("key", "value", "match"), [
    ("embed_dim", 16384, "embed_dim: 16384 outside"),
    ("depth", 100_000, "depth: 100000 outside"),
    ("num_heads", 7, "num_heads: 7 must divide"),
    ("img_size", [64, 2048], r"img_size: \(64, 2048\) outside"),
    ("img_size", [64, 40], "multiples of 16"),
    ("img_size", ["64", "64"], "img_size: expected two integers"),
    ("img_size", 64, "img_size: expected two integers"),
    ("steps", 5000, "steps: 5000 outside"),
    ("num_classes", 10**6, "num_classes: 1000000 outside"),
    ("embed_dim", "64", "embed_dim: expected an integer"),
    ("depth", 2.0, "depth: expected an integer"),
    ("depth", True, "depth: expected an integer"),
    ("mlp_ratio", float("nan"), "mlp_ratio: expected a finite number"),
    ("mlp_ratio", 1e6, "mlp_ratio: 1000000.0 outside"),
    ("attn_order", ["qk_v"], "attn_order: expected"),
    ("bogus", 1, "unknown field"),
])
def test_hostile_config_is_one_line_naming_file_and_field(tmp_path, payload, key, value, match, monkeypatch):
    import models.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "Spikformer", lambda *a, **k: pytest.fail("a module was built"))
    path = _write(tmp_path, payload, ("config", key), value)
    with pytest.raises(ModelError, match=match) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: field 'config'") and "\n" not in str(err.value)


@pytest.mark.parametrize(("section", "key", "value", "match"), [
    ("decision", "bogus", 1, "decision.bogus: unknown decision setting"),
    ("decision", "rule", "max", "decision.rule: must be one of"),
    ("decision", "threshold", "high", "decision.threshold: expected a number"),
    ("decision", "window_steps", 10**9, "decision.window_steps"),
    ("preprocessing", "sensor", [10**9, 5], "preprocessing.sensor"),
    ("preprocessing", "out_size", "64", "preprocessing.out_size"),
    ("preprocessing", "step_us", -5, "preprocessing.step_us"),
    ("preprocessing", "steps", None, "preprocessing.steps"),
    ("preprocessing", "mode", 3, "preprocessing.mode"),
])
def test_hostile_decision_and_preprocessing_are_rejected(tmp_path, payload, section, key, value, match):
    path = _write(tmp_path, payload, (section, key), value)
    with pytest.raises(ModelError, match=match) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: field ") and "\n" not in str(err.value)


def test_shipped_checkpoint_still_loads(payload, tmp_path):
    path = tmp_path / "copy.pt"
    torch.save(payload, path)
    loaded = load_checkpoint(path)
    assert loaded.model.config.embed_dim == 64 and loaded.decision == payload["decision"]
