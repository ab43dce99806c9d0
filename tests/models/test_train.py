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
    burn_in_forward,
    evaluate_checkpoint,
    evaluate_stream,
    lr_factor,
    mixup_batch,
    smooth_targets,
    soft_cross_entropy,
    stream_soft_targets,
    tet_loss,
    train_one_epoch,
    train_stream_epoch,
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
        "recipe": "clip",
    }
    assert best.model.config.steps == 4 and best.train_state == {}
    confusion = np.array(best.metrics["confusion"])
    assert confusion.shape == (11, 11) and confusion.sum() == best.metrics["samples"] > 0
    assert best.metrics["top1"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert best.metrics["trained_on"].startswith("synthetic gestures only")
    printed = capsys.readouterr().out  # the data summary comes before any training
    summary = printed.index("clip recipe: train ")
    assert printed.index("data: ") < summary < printed.index("epoch 1/1 ")
    assert "synthetic gestures only" in printed and "11 classes" in printed[summary:]

    assert models.load_checkpoint(last).train_state["epoch"] == 0
    assert cli_main([*common, "--epochs", "2", "--resume", str(last)]) == 0
    printed = capsys.readouterr().out
    assert "epoch 2/2 " in printed and "epoch 1/2 " not in printed  # resumed after epoch 1
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


# -- the stream recipe ------------------------------------------------------------------------


def test_tet_loss_equals_a_hand_computation():
    # T = 2 steps, B = 2 sequences, 3 classes; targets: a gesture, a rest, two gestures.
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]], [[0.0, 1.0, 0.0], [1.0, -2.0, 3.0]]])
    targets = torch.tensor([[0, -1], [1, 2]])
    lam, phi, eps, w = 0.1, 0.5, 0.3, 0.25

    def log_softmax(row):
        row = [float(v) for v in row]
        top = np.log(sum(np.exp(v) for v in row))
        return [v - top for v in row]

    ces, weights = [], []
    for t in range(2):
        for b in range(2):
            ls = log_softmax(logits[t, b])
            y = int(targets[t, b])
            if y < 0:  # rest: uniform target
                ces.append(-sum(ls) / 3)
                weights.append(w)
            else:  # smoothed one-hot: 1 - eps + eps/3 on the label, eps/3 elsewhere
                ces.append(-sum((1 - eps + eps / 3 if k == y else eps / 3) * ls[k] for k in range(3)))
                weights.append(1.0)
    ce = sum(c * v for c, v in zip(ces, weights, strict=True)) / sum(weights)
    mse = float(((logits - phi) ** 2).mean())
    expected = (1 - lam) * ce + lam * mse
    got = tet_loss(logits, targets, smoothing=eps, tet_lambda=lam, phi=phi, rest_weight=w)
    assert float(got) == pytest.approx(expected, rel=1e-6)
    # λ = 0 is the plain per-step CE; the uniform rest target sums to one
    plain = tet_loss(logits, targets, tet_lambda=0.0)
    assert float(plain) == pytest.approx(float(torch.nn.functional.cross_entropy(logits[1], targets[1])) / 2
                                         + (float(torch.nn.functional.cross_entropy(logits[0, :1], targets[0, :1]))
                                            + float(-torch.log_softmax(logits[0, 1], -1).mean())) / 4, rel=1e-6)
    soft = stream_soft_targets(targets, 3, 0.0)
    torch.testing.assert_close(soft[0, 1], torch.full((3,), 1 / 3))
    torch.testing.assert_close(soft.sum(-1), torch.ones(2, 2))


def _lif_nodes(model):
    return [m for m in model.modules() if hasattr(m, "v") and hasattr(m, "v_threshold")]


def _sequence(seed: int, steps: int = 6, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, 2, 32, 32, generator=g) < 0.3).float() * 2.0


def _calibrated_tiny(x: torch.Tensor):
    """spikformer_tiny in eval mode (BN statistics then do not depend on how a sequence is split)
    with BN running statistics taken from ``x``, so spikes reach the head as in training."""
    from spikingjelly.activation_based import functional

    torch.manual_seed(0)
    model = models.create_model("spikformer_tiny")
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = 1.0
    with torch.no_grad():
        model.train().step_logits(x)
    functional.reset_net(model)
    return model.eval()


def test_burn_in_carries_the_state_into_the_loss_steps_without_a_graph():
    from spikingjelly.activation_based import functional

    x = _sequence(1)
    model = _calibrated_tiny(x)
    # Same logits as one uninterrupted call over all 6 steps: the burn-in state is carried on.
    full = model.step_logits(x)[2:].detach()
    functional.reset_net(model)
    warm = burn_in_forward(model, x, 2)
    torch.testing.assert_close(warm.detach(), full)
    functional.reset_net(model)
    cold = model.step_logits(x[2:]).detach()  # a reset start instead of the burn-in
    functional.reset_net(model)
    assert not torch.allclose(cold, full)

    # Gradients reach the loss steps' inputs but never the burn-in's, and the burn-in builds no graph.
    graph = []
    hook = model.head.register_forward_hook(lambda _m, _i, out: graph.append((out.shape[0], out.requires_grad)))
    leaf = x.clone().requires_grad_(True)
    burn_in_forward(model, leaf, 2).square().sum().backward()
    hook.remove()
    assert graph == [(2, False), (4, True)]
    assert leaf.grad[:2].abs().sum() == 0 and leaf.grad[2:].abs().sum() > 0
    functional.reset_net(model)
    through = x.clone().requires_grad_(True)
    model.step_logits(through)[2:].square().sum().backward()  # without the cut, the burn-in gets gradients
    assert through.grad[:2].abs().sum() > 0
    functional.reset_net(model)
    with pytest.raises(ConfigError, match="burn_in"):
        burn_in_forward(model, x, 6)


def test_stream_epoch_loss_is_the_tet_loss_of_the_loss_steps_and_resets_after_the_batch():
    import copy

    from spikingjelly.activation_based import functional

    torch.manual_seed(0)
    model = models.create_model("spikformer_tiny")
    reference = copy.deepcopy(model)
    x = _sequence(2, steps=5, batch=3)
    targets = torch.tensor([[-1, -1, 0, 0, 3], [4, 4, -1, -1, -1], [7, 7, 7, 7, 7]])  # [B, T]
    frames = x.transpose(0, 1).contiguous()  # the DataLoader layout [B, T, 2, H, W]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    stats = train_stream_epoch(
        model, [(frames, targets)], optimizer, None, torch.device("cpu"), burn_in=2, smoothing=0.1,
        tet_lambda=1e-3, rest_weight=0.5,
    )
    # by hand: burn-in without gradients, then the TET loss on steps 2.. only
    reference.train()
    with torch.no_grad():
        reference.step_logits(x[:2])
    logits = reference.step_logits(x[2:])
    expected = tet_loss(logits, targets.T[2:], smoothing=0.1, tet_lambda=1e-3, rest_weight=0.5)
    expected = float(expected.detach())
    assert stats["loss"] == pytest.approx(expected, rel=1e-5)
    # a loss that included the burn-in steps would differ
    functional.reset_net(reference)
    with_burn_in = tet_loss(reference.step_logits(x), targets.T, smoothing=0.1, tet_lambda=1e-3, rest_weight=0.5)
    assert float(with_burn_in.detach()) != pytest.approx(expected, rel=1e-3)
    assert stats["samples"] == 3
    assert all(not torch.is_tensor(m.v) for m in _lif_nodes(model))


def test_evaluate_stream_scores_steps_rests_and_runs():
    class Fixed(torch.nn.Module):
        """Logits decided by the input: frame value k at pixel 0 -> class k, value 0 -> uniform."""

        def step_logits(self, x):
            k = x[:, :, 0, 0, 0].long()
            logits = torch.nn.functional.one_hot(k.clamp(min=0), 3).float() * 10.0
            return torch.where((k > 0)[..., None], logits, torch.zeros_like(logits))

    # one sequence of 1 burn-in + 6 steps: targets rest, 1, 1, 2, 2, rest after the burn-in step
    predicted = torch.tensor([1, 0, 2, 2, 2, 2, 1])  # 0 -> uniform (undecided)
    targets = torch.tensor([[2, -1, 1, 1, 2, 2, -1]])
    frames = torch.zeros(1, 7, 2, 4, 4)
    frames[0, :, 0, 0, 0] = predicted.float()
    result = evaluate_stream(Fixed(), [(frames, targets)], torch.device("cpu"), 3, burn_in=1, rest_threshold=0.5)
    # gesture steps: 1->2, 1->2, 2->2, 2->2: 2 of 4; rests: step 1 uniform (undecided), step 6 class 1 (claimed)
    assert (result["correct"], result["samples"]) == (2, 4) and result["step_top1"] == 0.5
    assert result["rest_steps"] == 2 and result["rest_undecided"] == 0.5
    assert result["clip_runs"] == 2 and result["clip_top1"] == 0.5  # the run of 1s reads as 2, the run of 2s as 2
    assert result["score"] == pytest.approx(0.5)
    confusion = np.array(result["confusion"])
    assert confusion.sum() == 4 and confusion[1, 2] == 2 and confusion[2, 2] == 2


def test_stream_options_are_checked(tmp_path):
    base = {"data": str(tmp_path), "out": str(tmp_path / "x.pt")}
    for kwargs, field in (
        ({"recipe": "online"}, "recipe"),
        ({"burn_in": -1}, "burn_in"),
        ({"tet_lambda": 1.0}, "tet_lambda"),
        ({"rest_weight": -0.5}, "rest_weight"),
        ({"samples_per_epoch": 0}, "samples_per_epoch"),
        ({"rest_threshold": 0.0}, "rest_threshold"),
        ({"recipe": "stream", "layout": "tonic"}, "layout"),
        ({"recipe": "stream", "split_by": "number", "step_ms": None}, "split_by"),
    ):
        with pytest.raises(ConfigError, match=f"^{field}: ") as err:
            TrainConfig(**base, **kwargs)
        assert "\n" not in str(err.value)


@pytest.mark.slow
def test_stream_recipe_trains_and_writes_a_loadable_checkpoint(synth_data, tmp_path, capsys):
    out = tmp_path / "stream" / "tiny.pt"
    args = ["train", "--data", str(synth_data), "--model", "spikformer_tiny", "--recipe", "stream", "--steps", "4"]
    args += ["--burn-in", "2", "--step-ms", "40", "--batch", "4", "--samples-per-epoch", "8", "--epochs", "2"]
    args += ["--warmup-epochs", "0.5", "--tet-lambda", "0.01", "--rest-weight", "0.5", "--out", str(out)]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/2 " in printed and "epoch 2/2 " in printed and "rest-undecided" in printed
    assert "stream recipe: train " in printed and "8 sequences/epoch" in printed
    best = models.load_checkpoint(out)
    pre = best.preprocessing
    assert pre["recipe"] == "stream" and pre["steps"] == 4 and pre["step_us"] == 40_000 and pre["burn_in"] == 2
    assert best.metrics["recipe"] == "stream" and best.metrics["select"] == "score"
    for key in ("step_top1", "rest_undecided", "clip_top1", "score"):
        assert 0.0 <= best.metrics[key] <= 1.0
    confusion = np.array(best.metrics["confusion"])
    assert confusion.shape == (11, 11) and confusion.sum() == best.metrics["samples"] > 0
    assert best.train_args["recipe"] == "stream" and best.train_args["tet_lambda"] == 0.01
    assert out.with_name("tiny_confusion.png").read_bytes()[:4] == b"\x89PNG"
    last = models.load_checkpoint(out.with_name("tiny_last.pt"))
    assert last.train_state["epoch"] == 1 and last.preprocessing == pre


# -- fine-tuning on a user's folder: decision settings ------------------------------------------


def test_a_fine_tune_inherits_the_init_checkpoints_decisions_less_what_no_longer_fits():
    from pathlib import Path
    from types import SimpleNamespace

    from models.train import inherited_decision

    own = {6: 0.7}
    start = SimpleNamespace(path=Path("init.pt"), class_names=("a", "b"),
                            preprocessing={"step_us": 50_000},
                            decision={"rule": "ema", "smoothing_ms": 100.0, "threshold": 0.5, "hysteresis": 0.0,
                                      "window_steps": 4, "class_thresholds": own})
    decision, line = inherited_decision(start, ("a", "b"), 50_000)
    assert decision == start.decision and "less" not in line and "not calibrated" in line
    decision, line = inherited_decision(start, ("x", "y"), 40_000)
    assert decision == {"rule": "ema", "smoothing_ms": 100.0, "threshold": 0.5, "hysteresis": 0.0}
    assert "less its per-class thresholds (the head was replaced) and its window length" in line
    assert start.decision["class_thresholds"] is own  # the loaded checkpoint is left as it was
    assert inherited_decision(None, ("a",), 50_000) == ({}, "")
    decision, line = inherited_decision(SimpleNamespace(**{**vars(start), "decision": {}}), ("a", "b"), 50_000)
    assert decision == {} and "carries none" in line


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """Two synthetic runs of 2 classes written by ``collect`` (the 2nd held out)."""
    out = tmp_path_factory.mktemp("user")
    assert cli_main(["collect", "--synthetic", "--classes", "wave,push", "--reps", "2", "--seconds", "1",
                     "--rest", "0.5", "--countdown", "0", "--out", str(out)]) == 0
    return out / "DvsGesture"


@pytest.mark.slow
def test_train_calibrate_on_a_user_folder_writes_the_calibrated_copy(user_folder, tmp_path, capsys):
    import json

    from models.train import inherited_decision

    out = tmp_path / "ft.pt"
    args = ["train", "--init", models.DEFAULT_WEIGHTS, "--data", str(user_folder), "--recipe", "stream",
            "--epochs", "1", "--warmup-epochs", "1", "--samples-per-epoch", "2", "--batch", "2", "--steps", "4",
            "--burn-in", "2", "--device", "cpu", "--out", str(out), "--calibrate"]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    shipped = models.load_checkpoint(models.DEFAULT_WEIGHTS)
    assert f"decisions: {shipped.path.name}'s (rule ema" in printed and "(the head was replaced)" in printed
    trained = models.load_checkpoint(out)
    assert trained.decision == inherited_decision(shipped, ("wave", "push"), 50_000)[0] != {}

    calibrated_path = tmp_path / "ft_calibrated.pt"
    assert f"calibrating the decisions on the held-out runs of {user_folder}" in printed
    assert printed.rstrip().endswith(f"calibrated: load {calibrated_path}")
    summary = json.loads((tmp_path / "ft_calibrated_calibration.json").read_text())
    calibrated = models.load_checkpoint(calibrated_path)
    assert json.loads(json.dumps(calibrated.decision)) == summary["decision"]
    assert calibrated.metrics["online_calibration"]["recordings"] == [
        str(user_folder / name) for name in (user_folder / "trials_to_test.txt").read_text().split()]
    torch.testing.assert_close(calibrated.model.head.weight, trained.model.head.weight)


def test_train_calibrate_needs_whole_recordings(tmp_path, capsys):
    code = cli_main(["train", "--data", str(tmp_path), "--layout", "tonic", "--model", "spikformer_tiny",
                     "--out", str(tmp_path / "x.pt"), "--calibrate"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --calibrate: ") and "tonic layout" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x.pt").exists()


# -- fine-tuning with a frozen stem ------------------------------------------------------------


def test_a_frozen_stem_keeps_its_weights_and_statistics_while_the_rest_learns():
    from spikingjelly.activation_based import functional

    from models.train import freeze_stem

    x = _sequence(3, steps=5, batch=3)
    model = _calibrated_tiny(x)  # spikes reach every stage, BN momentum 1
    count = freeze_stem(model, 2)
    stages = model.patch_embed.stages
    assert count == sum(p.numel() for s in stages[:2] for p in s.parameters()) > 0
    frozen = {k: v.clone() for k, v in stages[:2].state_dict().items()}  # weights and BN running statistics
    rest = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("patch_embed.stages.0.")
            and not k.startswith("patch_embed.stages.1.") and v.is_floating_point()}
    targets = torch.tensor([[-1, -1, 0, 0, 3], [4, 4, -1, -1, -1], [7, 7, 7, 7, 7]])
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    train_stream_epoch(model, [(x.transpose(0, 1).contiguous(), targets)] * 2, optimizer, None,
                       torch.device("cpu"), burn_in=2)
    for key, value in stages[:2].state_dict().items():
        assert torch.equal(value, frozen[key]), key
    changed = [k for k, v in model.state_dict().items() if k in rest and not torch.equal(v, rest[k])]
    assert any(k.startswith("patch_embed.stages.2.") and k.endswith("running_mean") for k in changed)
    assert any(k.startswith("blocks.") for k in changed) and "head.weight" in changed
    assert all(p.grad is None for s in stages[:2] for p in s.parameters())
    functional.reset_net(model)
    with pytest.raises(ConfigError, match="freeze_stem: 5 stages, the model's stem has 4"):
        freeze_stem(model, 5)


def test_train_freeze_stem_from_the_command_line(synth_data, tmp_path, capsys):
    out = tmp_path / "fz" / "tiny.pt"
    init = tmp_path / "init.pt"
    args = ["train", "--data", str(synth_data), "--model", "spikformer_tiny", "--recipe", "stream", "--steps", "4",
            "--burn-in", "2", "--step-ms", "40", "--batch", "4", "--samples-per-epoch", "8", "--epochs", "1"]
    assert cli_main([*args, "--out", str(init)]) == 0
    capsys.readouterr()
    assert cli_main(["train", "--data", str(synth_data), "--init", str(init), "--recipe", "stream", "--burn-in", "2",
                     "--batch", "4", "--samples-per-epoch", "8", "--epochs", "1", "--freeze-stem", "3",
                     "--out", str(out)]) == 0
    assert "frozen: the first 3 SPS stem stage(s)" in capsys.readouterr().out
    before, after = (models.load_checkpoint(p).model.state_dict() for p in (init, out))
    for key in before:
        if key.startswith(("patch_embed.stages.0.", "patch_embed.stages.1.", "patch_embed.stages.2.")):
            assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["head.weight"], after["head.weight"])
    assert cli_main([*args, "--freeze-stem", "-1", "--out", str(out)]) == 2
    assert "freeze_stem" in capsys.readouterr().err
    # resuming the unfrozen run with a frozen stem: its optimizer holds other parameters
    resumed = [*args[:-2], "--epochs", "2", "--resume", str(init.with_name("init_last.pt")), "--freeze-stem", "3"]
    assert cli_main([*resumed, "--out", str(tmp_path / "resumed.pt")]) == 2
    err = capsys.readouterr().err
    assert "init_last.pt: its optimizer state does not fit this run" in err and "--freeze-stem" in err
    assert len(err.strip().splitlines()) == 1
