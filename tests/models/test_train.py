"""Training: schedule, targets, mixup, a few steps that learn, and the train command end to end
on a small synthetic dataset written in the IBM layout (with resume and evaluate_checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from evstream.cli import main as cli_main
from evstream.errors import ConfigError
from models.train import (
    TrainConfig,
    evaluate_checkpoint,
    lr_factor,
    mixup_batch,
    smooth_targets,
    soft_cross_entropy,
    train_one_epoch,
)


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_the_floor_and_cools_down():
    lr, lo, floor = 1e-3, 1e-5, 2e-5
    at = [lr * lr_factor(s, 100, 10, 20, lr, lo, floor) for s in range(101)]
    assert at[0] == pytest.approx(lo)
    assert at[5] == pytest.approx((lo + lr) / 2)
    assert at[10] == pytest.approx(lr)
    assert at[45] == pytest.approx((lr + floor) / 2)  # halfway through the 70 cosine steps
    assert all(a >= b for a, b in zip(at[10:81], at[11:81], strict=False))
    assert at[80] == pytest.approx(floor) and at[100] == pytest.approx(floor)


def test_smoothed_targets_keep_the_label_and_sum_to_one():
    targets = smooth_targets(torch.tensor([2, 0]), 4, 0.1)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(2))
    assert targets[0, 2] == pytest.approx(0.9 + 0.025) and targets[0, 1] == pytest.approx(0.025)


def test_mixup_mixes_frames_and_targets_with_the_same_weight():
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    # Each sample's frames hold its own label value, so a mixed frame reveals its mixing weights.
    frames = labels.float().view(1, 6, 1, 1, 1).expand(2, 6, 2, 4, 4).clone()
    rng = np.random.default_rng(3)
    mixed, targets = mixup_batch(frames, labels, 6, alpha=0.5, smoothing=0.0, rng=rng)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(6))
    expected = targets @ torch.arange(6.0)
    torch.testing.assert_close(mixed[0, :, 0, 0, 0], expected)
    torch.testing.assert_close(mixed[1], mixed[0])
    assert not torch.equal(mixed, frames)


def test_soft_cross_entropy_equals_cross_entropy_on_one_hot_targets():
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 2, 1, 1, 0])
    torch.testing.assert_close(
        soft_cross_entropy(logits, smooth_targets(labels, 3, 0.0)), torch.nn.functional.cross_entropy(logits, labels)
    )


def _separable_batches(n_batches: int, batch: int, seed: int):
    """Class 0: events in the left half; class 1: right half. ``[B, T, 2, 32, 32]`` like a DataLoader."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        labels = torch.randint(0, 2, (batch,), generator=g)
        frames = torch.zeros(batch, 4, 2, 32, 32)
        noise = (torch.rand(batch, 4, 2, 32, 16, generator=g) < 0.3).float()
        for i, y in enumerate(labels):
            if y == 0:
                frames[i, ..., :16] = noise[i]
            else:
                frames[i, ..., 16:] = noise[i]
        out.append((frames, labels))
    return out


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    model = models.create_model("spikformer_tiny", class_names=("left", "right"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    data = _separable_batches(1, 8, seed=1) * 5
    first = train_one_epoch(model, data[:1], optimizer, None, torch.device("cpu"), num_classes=2)
    later = train_one_epoch(model, data[1:], optimizer, None, torch.device("cpu"), num_classes=2)
    final = train_one_epoch(model, data[:1], optimizer, None, torch.device("cpu"), num_classes=2)
    assert first["samples"] == 8 and later["samples"] == 32
    assert final["loss"] < 0.8 * first["loss"]
    # reset_net after every batch: no neuron carries a tensor state out of the epoch.
    assert all(not torch.is_tensor(m.v) for m in model.modules() if hasattr(m, "v"))


def test_train_config_names_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="step_ms"):
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "x.pt"), step_ms=0)
    with pytest.raises(ConfigError, match="layout"):
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "x.pt"), layout="folder")


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    code = cli_main(["synth", "--out", str(root), "--samples", "2", "--gesture-s", "0.6", "0.8", "--workers", "1"])
    assert code == 0
    return root


@pytest.mark.slow
def test_train_command_writes_checkpoints_resumes_and_evaluates(synth_data, tmp_path, capsys):
    out = tmp_path / "run" / "tiny.pt"
    common = ["train", "--data", str(synth_data), "--model", "spikformer_tiny", "--batch", "4", "--steps", "4"]
    common += ["--step-ms", "40", "--out", str(out), "--warmup-epochs", "0.5", "--eval-every", "1"]
    assert cli_main([*common, "--epochs", "1"]) == 0
    last = out.with_name("tiny_last.pt")
    png = out.with_name("tiny_confusion.png")
    assert out.is_file() and last.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = models.load_checkpoint(out)
    assert best.preprocessing == {
        "sensor": [128, 128],
        "out_size": [32, 32],
        "steps": 4,
        "step_us": 40_000,
        "mode": "time",
        "channels": ["off", "on"],
    }
    assert best.model.config.steps == 4 and best.train_state == {}
    confusion = np.array(best.metrics["confusion"])
    assert confusion.shape == (11, 11) and confusion.sum() == best.metrics["samples"] > 0
    assert best.metrics["top1"] == pytest.approx(np.trace(confusion) / confusion.sum())

    assert models.load_checkpoint(last).train_state["epoch"] == 0
    assert cli_main([*common, "--epochs", "2", "--resume", str(last)]) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1 " in printed and "epoch 2/2 " in printed and "epoch 1/2 " not in printed
    assert models.load_checkpoint(last).train_state["epoch"] == 1

    tuned = tmp_path / "tuned.pt"
    init = ["train", "--data", str(synth_data), "--model", "spikformer_tiny", "--steps", "4", "--step-ms", "40"]
    init += ["--out", str(tuned), "--init", str(out), "--epochs", "1", "--lr", "1e-12", "--min-lr", "1e-12"]
    assert cli_main([*init, "--warmup-epochs", "0", "--no-augment"]) == 0
    start, after = models.load_checkpoint(out).model, models.load_checkpoint(tuned).model
    torch.testing.assert_close(after.head.weight, start.head.weight)
    torch.testing.assert_close(after.patch_embed.stages[0].conv.weight, start.patch_embed.stages[0].conv.weight)

    result = evaluate_checkpoint(out, synth_data, "ibm", "test", confusion_png=tmp_path / "eval.png")
    again = models.load_checkpoint(out).metrics
    assert result["samples"] == again["samples"]
    assert result["top1"] == pytest.approx(again["top1"]) and result["confusion"] == again["confusion"]
    assert (tmp_path / "eval.png").is_file()


def test_train_command_reports_a_missing_dataset_in_one_line(tmp_path, capsys):
    code = cli_main(
        ["train", "--data", str(tmp_path / "nowhere"), "--model", "spikformer_tiny", "--out", str(tmp_path / "x.pt")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "nowhere" in err and len(err.strip().splitlines()) == 1


def test_resume_with_another_model_is_refused(synth_data, tmp_path, capsys):
    ck = models.save_checkpoint(
        tmp_path / "other_last.pt",
        models.create_model("spikformer_1_64"),
        preprocessing={},
        train_state={"epoch": 0},
    )
    code = cli_main(
        [
            "train",
            "--data",
            str(synth_data),
            "--model",
            "spikformer_tiny",
            "--out",
            str(tmp_path / "x.pt"),
            "--resume",
            str(ck),
        ]
    )
    assert code == 2 and "expected 'spikformer_tiny'" in capsys.readouterr().err
