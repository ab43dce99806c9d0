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


def _tensor_bytes_span(path) -> tuple[int, int]:
    """(offset, length) in the file of the largest stored tensor's raw bytes (``archive/data/N``)."""
    import struct
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        assert info.compress_type == zipfile.ZIP_STORED
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def test_shipped_weights_carry_a_checksum_that_verifies():
    assert load_checkpoint(SHIPPED).weights_verified is True


def test_a_flipped_byte_inside_a_weight_tensor_is_refused_in_one_line(tmp_path):
    # reproducer (issue 17, finding 7): a flipped byte inside the weights loaded silently
    data = bytearray(SHIPPED.read_bytes())
    offset, length = _tensor_bytes_span(SHIPPED)
    data[offset + length // 2] ^= 0x10
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(bytes(data))
    assert torch.load(damaged, weights_only=True)["state_dict"]  # torch itself reads it without complaint
    with pytest.raises(ModelError) as err:
        load_checkpoint(damaged)
    assert str(err.value) == (f"{damaged}: weights checksum mismatch: the file was modified or damaged "
                              "(its tensors' SHA-256 is not field 'weights_sha256')")


def test_an_edited_weight_or_a_bad_checksum_field_is_refused(tmp_path, payload):
    edited = copy.copy(payload)
    edited["state_dict"] = dict(payload["state_dict"])
    name = next(k for k, v in payload["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    edited["state_dict"][name] = payload["state_dict"][name].clone()
    edited["state_dict"][name].view(-1)[0] += 1e-3
    path = tmp_path / "edited.pt"
    torch.save(edited, path)
    with pytest.raises(ModelError, match="edited.pt: weights checksum mismatch"):
        load_checkpoint(path)
    for value in ("0" * 63, 12, "G" * 64):
        path = tmp_path / "bad_field.pt"
        torch.save({**payload, "weights_sha256": value}, path)
        with pytest.raises(ModelError, match=r"bad_field.pt: field 'weights_sha256': expected 64 lowercase hex"):
            load_checkpoint(path)


def test_a_checkpoint_without_checksum_loads_unverified_and_update_adds_one(tmp_path, payload):
    from models.checkpoint import update_checkpoint, weights_digest

    old = {k: v for k, v in payload.items() if k != "weights_sha256"}
    path = tmp_path / "old.pt"
    torch.save(old, path)
    loaded = load_checkpoint(path)
    assert loaded.weights_verified is False
    updated = update_checkpoint(path, tmp_path / "updated.pt", metrics={"note": 1})
    assert torch.load(updated, weights_only=True)["weights_sha256"] == weights_digest(old["state_dict"])
    assert load_checkpoint(updated).weights_verified is True


def test_digest_covers_names_dtypes_shapes_and_bytes():
    from models.checkpoint import weights_digest

    base = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(2, dtype=torch.bool)}
    digest = weights_digest(base)
    assert weights_digest({"b": base["b"], "a": base["a"]}) == digest  # order of the dict does not matter
    assert weights_digest({"a": base["a"].t().contiguous().t(), "b": base["b"]}) == digest  # layout does not
    for other in ({"a2": base["a"], "b": base["b"]}, {"a": base["a"].reshape(3, 2), "b": base["b"]},
                  {"a": base["a"].double(), "b": base["b"]}, {"a": base["a"] + 1, "b": base["b"]}):
        assert weights_digest(other) != digest
    with pytest.raises(TypeError):
        weights_digest({"a": [1.0]})


class _Scripted(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _Runs:
    def __reduce__(self):
        return (print, ("code ran",))


@pytest.mark.parametrize("kind", ["torchscript", "pickle"])
def test_a_rejected_torchscript_or_pickle_file_prints_one_stderr_line(tmp_path, kind):
    import pickle
    import subprocess
    import sys
    import warnings

    path = tmp_path / f"{kind}.pt"
    if kind == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still loadable
            torch.jit.save(torch.jit.script(_Scripted()), path)
    else:
        path.write_bytes(pickle.dumps({"state_dict": _Runs()}, protocol=4))
    root = SHIPPED.parents[2]
    run = subprocess.run([sys.executable, "main.py", "--no-gui", "--model", str(path)],
                         capture_output=True, text=True, cwd=root)
    assert run.returncode == 2
    assert "code ran" not in run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"error: {path}: unreadable checkpoint (")
    assert ("TorchScript" if kind == "torchscript" else "pickled objects") in lines[0]
