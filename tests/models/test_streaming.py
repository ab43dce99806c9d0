"""StreamingClassifier: state carried across windows, resets, decisions, capture, energy.

Every test runs the real ``spikformer_tiny`` with real spikingjelly LIF neurons. Its BatchNorm
layers are set to a gain of 4 and a bias of 0.3 so that spikes reach every layer (with the
default initialisation nothing reaches the head and every logit is 0, which would make the
equivalence tests vacuous; shared/reference/spikformer.md §7.2); the tests check the rates.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional

from evstream.errors import ConfigError, ModelError
from evstream.labels import NO_GESTURE
from models.spikformer import create_model
from models.streaming import (
    NO_GESTURE_NAME,
    DecisionFilter,
    InactivityReset,
    MeanLogitDecision,
    PeriodicReset,
    StreamingClassifier,
    decision_options,
    default_window_steps,
)

STEP_US = 50_000


def active_model(seed: int = 0) -> torch.nn.Module:
    """The tiny Spikformer (32×32, D 32, 1 block, 2 heads) with weights that make spikes flow."""
    torch.manual_seed(seed)
    model = create_model("spikformer_tiny").eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.weight.fill_(4.0)
                module.bias.fill_(0.3)
        model.head.weight.normal_(0.0, 1.0)
    return model


def event_frames(steps: int, seed: int = 0, density: float = 0.2, size: int = 32) -> torch.Tensor:
    """Random event counts ``[T, 2, size, size]`` (about ``density`` of the pixels active)."""
    gen = torch.Generator().manual_seed(seed)
    active = torch.rand(steps, 2, size, size, generator=gen) < density
    counts = torch.randint(1, 4, (steps, 2, size, size), generator=gen)
    return (active * counts).float()


def feed(clf: StreamingClassifier, frames: torch.Tensor, window_steps: int, t0: int = 0) -> list:
    """Feed ``frames [T, 2, H, W]`` in consecutive windows of ``window_steps`` steps."""
    preds = []
    for start in range(0, len(frames), window_steps):
        chunk = frames[start : start + window_steps]
        t_start = t0 + start * STEP_US
        preds.append(clf.step(chunk, t_start=t_start, t_end=t_start + len(chunk) * STEP_US))
    return preds


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return active_model()


@pytest.fixture()
def clf(model) -> StreamingClassifier:
    functional.reset_net(model)
    return StreamingClassifier(model, device="cpu")


def test_spikes_reach_every_layer(clf):
    pred = clf.step(event_frames(8))
    assert pred.layer_rates, "the model reported no firing rates"
    silent = [name for name, rate in pred.layer_rates.items() if rate <= 0.0]
    assert not silent, f"layers without a spike: {silent}"
    assert np.ptp(pred.logits) > 0.1


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("window_steps", [1, 2, 5, 16])
def test_windows_of_any_length_equal_one_pass(model, window_steps, fuse):
    frames = event_frames(32, seed=1)
    clf = StreamingClassifier(model, device="cpu", fuse=fuse)
    reference = clf.step(frames).logits  # one pass of 32 steps
    clf = StreamingClassifier(model, device="cpu", fuse=fuse)  # a new stream on the same network
    got = np.concatenate([p.logits for p in feed(clf, frames, window_steps)])
    assert got.shape == reference.shape == (32, model.num_classes)
    assert np.abs(got - reference).max() <= 1e-5
    # The state matters: a run that forgets it between windows gives different logits.
    if window_steps < 16:
        forgetful = []
        for start in range(0, 32, window_steps):
            clf.reset()
            forgetful.append(clf.step(frames[start : start + window_steps]).logits)
        assert np.abs(np.concatenate(forgetful) - reference).max() > 1e-3


def test_fused_model_gives_the_same_decisions():
    plain = StreamingClassifier(active_model(), device="cpu", fuse=False)
    given = active_model()
    fused = StreamingClassifier(given, device="cpu")  # fused by default on CPU
    assert not any(isinstance(m, torch.nn.Identity) for m in plain.model.modules())
    assert any(isinstance(m, torch.nn.Identity) for m in fused.model.modules())  # BN folded away
    assert not any(isinstance(m, torch.nn.Identity) for m in given.modules())  # on a copy: still saveable
    for seed, steps in ((21, 3), (22, 1), (23, 5)):
        frames = event_frames(steps, seed=seed)
        a, b = plain.step(frames), fused.step(frames)
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-4)  # BN folding rounds differently
        assert a.step_labels.tolist() == b.step_labels.tolist()
        assert a.layer_rates == pytest.approx(b.layer_rates, abs=1e-6)
    assert fused.state()["memories"].keys() == plain.state()["memories"].keys()


def test_window_object_and_five_dim_tensor_are_accepted(clf):
    class FakeWindow:  # the attributes the Binner's Window carries
        frames = event_frames(4, seed=2).numpy()
        t_start, t_end, step_us = 1_000_000, 1_200_000, STEP_US
        counts = frames.sum(axis=(1, 2, 3)).astype(np.int64)
        index = 7

    pred = clf.step(FakeWindow())
    assert (pred.t_start, pred.t_end, pred.index) == (1_000_000, 1_200_000, 7)
    pred5 = clf.step(event_frames(4, seed=3).unsqueeze(1))
    assert pred5.logits.shape == (4, clf.num_classes)
    assert pred5.t_start == 1_200_000 and pred5.t_end == 1_400_000


def test_reset_makes_the_next_output_equal_a_fresh_model(clf):
    feed(clf, event_frames(12, seed=4), 4)
    probe = event_frames(4, seed=5)
    clf.reset()
    after_reset = clf.step(probe)
    fresh = StreamingClassifier(active_model(), device="cpu").step(probe)
    assert after_reset.resets == 1 and fresh.resets == 0
    np.testing.assert_allclose(after_reset.logits, fresh.logits, atol=1e-6)
    np.testing.assert_allclose(after_reset.smoothed, fresh.smoothed, atol=1e-6)


def test_state_round_trip_reproduces_outputs(clf):
    before_any = clf.state()
    first = clf.step(event_frames(4, seed=6))
    feed(clf, event_frames(8, seed=7), 2)
    saved = clf.state()
    probe = event_frames(6, seed=8)
    expected = clf.step(probe)
    feed(clf, event_frames(6, seed=9), 3)  # move the state on
    clf.load_state(saved)
    again = clf.step(probe)
    np.testing.assert_array_equal(again.logits, expected.logits)
    np.testing.assert_array_equal(again.smoothed, expected.smoothed)
    assert again.label == expected.label
    clf.load_state(before_any)  # a state taken before the first step is the fresh state
    np.testing.assert_array_equal(clf.step(event_frames(4, seed=6)).logits, first.logits)


def test_state_is_a_deep_copy(clf):
    clf.step(event_frames(4, seed=10))
    saved = clf.state()
    tensors = {k: v.clone() for k, v in saved["memories"].items() if isinstance(v, torch.Tensor)}
    assert tensors, "no tensor memories after a step"
    clf.step(event_frames(4, seed=11))
    clf.reset()
    for name, value in tensors.items():
        assert torch.equal(saved["memories"][name], value), f"{name} changed inside the saved state"


def test_load_state_rejects_a_foreign_state(clf):
    other = StreamingClassifier(create_model("spikformer_1_64"), device="cpu")
    other.step(torch.zeros(1, 2, 64, 64))
    with pytest.raises(ModelError, match="memory"):
        clf.load_state({"memories": {"nope.v": 0.0}})
    with pytest.raises(ModelError, match="state"):
        clf.load_state({"weights": 1})


def test_inactivity_policy_resets_once_per_quiet_spell(model):
    functional.reset_net(model)
    clf = StreamingClassifier(model, device="cpu", reset_policy=InactivityReset(rate_below_hz=100.0, for_ms=200.0))
    busy = event_frames(8, seed=12)
    quiet = torch.zeros(2, 2, 32, 32)  # 2 steps = 100 ms without events
    feed(clf, busy, 2)
    assert clf.resets == 0
    t = 8 * STEP_US
    resets = []
    for _ in range(5):  # 500 ms of quiet: one reset once 200 ms have passed
        resets.append(clf.step(quiet, t_start=t, t_end=t + 2 * STEP_US).resets)
        t += 2 * STEP_US
    assert resets == [0, 1, 1, 1, 1]
    # After the reset the state is fresh: the next window equals a fresh model's output.
    # The reset came after the second quiet window; a fresh classifier that sees the three
    # quiet windows after it must now agree with the policy-reset one.
    probe = event_frames(2, seed=13)
    fresh_after_quiet = StreamingClassifier(active_model(), device="cpu")
    for _ in range(3):
        fresh_after_quiet.step(quiet)
    expected = fresh_after_quiet.step(probe)
    got = clf.step(probe, t_start=t, t_end=t + 2 * STEP_US)
    np.testing.assert_allclose(got.logits, expected.logits, atol=1e-6)
    # Activity re-arms the policy; a second quiet spell resets again.
    t += 2 * STEP_US
    for _ in range(3):
        last = clf.step(quiet, t_start=t, t_end=t + 2 * STEP_US)
        t += 2 * STEP_US
    assert last.resets == 2


def test_inactivity_counts_rates_per_step():
    policy = InactivityReset(rate_below_hz=1000.0, for_ms=100.0)
    # 10 ms steps: 9 events per step = 900 ev/s is quiet, 10 events = 1000 ev/s is not.
    assert not policy.after_window(0, 50_000, np.full(5, 9))
    assert policy.after_window(50_000, 100_000, np.full(5, 9))
    policy.on_reset(100_000)
    assert not policy.after_window(100_000, 300_000, np.full(20, 9))  # still the same quiet spell
    assert not policy.after_window(300_000, 310_000, np.array([10]))
    assert not policy.after_window(310_000, 400_000, np.full(9, 0))
    assert policy.after_window(400_000, 410_000, np.array([0]))


def test_periodic_policy(model):
    functional.reset_net(model)
    clf = StreamingClassifier(model, device="cpu", reset_policy=PeriodicReset(every_ms=500.0))
    preds = feed(clf, event_frames(20, seed=14), 2)  # 100 ms windows
    assert [p.resets for p in preds] == [0, 0, 0, 0, 1, 1, 1, 1, 1, 2]


def test_policy_options_are_checked():
    with pytest.raises(ConfigError, match="rate_below_hz"):
        InactivityReset(rate_below_hz=0, for_ms=10)
    with pytest.raises(ConfigError, match="for_ms"):
        InactivityReset(rate_below_hz=10, for_ms=-1)
    with pytest.raises(ConfigError, match="every_ms"):
        PeriodicReset(every_ms=0)


def test_bad_frames_raise_model_error(clf):
    with pytest.raises(ModelError, match="frames"):
        clf.step(torch.zeros(4, 3, 32, 32))
    with pytest.raises(ModelError, match="frames"):
        clf.step(torch.zeros(4, 2, 2, 32, 32))  # batch of 2
    with pytest.raises(ModelError, match="input"):
        clf.step(torch.zeros(4, 2, 64, 64))  # wrong geometry for this model
    with pytest.raises(ModelError, match="t_end"):
        clf.step(torch.zeros(4, 2, 32, 32), t_start=10, t_end=10)


def test_device_and_threads():
    model = active_model()
    threads = torch.get_num_threads()
    try:
        clf = StreamingClassifier(model, device="auto", threads=1)
        expected = "cuda" if torch.cuda.is_available() else "cpu"
        assert clf.device.type == expected
        assert next(model.parameters()).device.type == expected
        if expected == "cpu":
            assert torch.get_num_threads() == 1
            with pytest.raises(ConfigError, match="device"):
                StreamingClassifier(model, device="cuda")
        with pytest.raises(ConfigError, match="threads"):
            StreamingClassifier(model, threads=0)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(
    not os.environ.get("EVSTREAM_TEST_COMPILE"),
    reason="torch.compile takes minutes on 2 cores; set EVSTREAM_TEST_COMPILE=1 to run",
)
def test_compiled_equals_eager():
    frames = event_frames(12, seed=19)
    eager = StreamingClassifier(active_model(), device="cpu")
    reference = np.concatenate([eager.step(frames[i : i + 4]).logits for i in range(0, 12, 4)])
    compiled = StreamingClassifier(active_model(), device="cpu", compile=True)
    got = np.concatenate([compiled.step(frames[i : i + 4]).logits for i in range(0, 12, 4)])
    np.testing.assert_allclose(got, reference, atol=1e-5)  # the warm-up on zeros left no state behind
    compiled.reset()
    np.testing.assert_allclose(compiled.step(frames[:4]).logits, reference[:4], atol=1e-5)
    compiled.capture(True)
    captured = compiled.step(frames[4:8])
    assert captured.attn is not None and captured.layer_rates


# --- decisions ------------------------------------------------------------------------------


def test_decision_filter_stays_silent_on_uniform_evidence():
    f = DecisionFilter(11, smoothing_ms=100.0, threshold=0.5, hysteresis=0.1)
    labels = f.update(np.full((50, 11), 1 / 11), np.full(50, 50_000))
    assert (labels == NO_GESTURE).all()


def test_decision_latency_follows_the_time_constant():
    c, tau_ms, p, thr = 11, 300.0, 0.9, 0.5
    f = DecisionFilter(c, smoothing_ms=tau_ms, threshold=thr, hysteresis=0.1)
    probs = np.full((100, c), (1 - p) / (c - 1))
    probs[:, 3] = p
    labels = f.update(probs, np.full(100, 10_000))  # 10 ms steps
    # s3(t) = 1/C + (p - 1/C)(1 - exp(-t/tau)) crosses thr at t* = -tau ln(1 - (thr - 1/C)/(p - 1/C)).
    t_star_ms = -tau_ms * math.log(1 - (thr - 1 / c) / (p - 1 / c))
    first = int(np.argmax(labels == 3))
    assert (labels[:first] == NO_GESTURE).all() and (labels[first:] == 3).all()
    assert (first + 1) * 10 >= t_star_ms > first * 10


def test_smoothing_uses_real_durations():
    probs = np.zeros((1, 4))
    probs[0, 2] = 1.0
    fine = DecisionFilter(4, smoothing_ms=200.0)
    coarse = DecisionFilter(4, smoothing_ms=200.0)
    fine.update(np.repeat(probs, 10, axis=0), np.full(10, 10_000))  # 10 × 10 ms
    coarse.update(probs, np.array([100_000]))  # 1 × 100 ms
    np.testing.assert_allclose(fine.smoothed, coarse.smoothed, rtol=1e-12)
    assert fine.smoothed[2] == pytest.approx(0.25 + 0.75 * (1 - math.exp(-0.5)))


def test_hysteresis_without_smoothing():
    f = DecisionFilter(3, smoothing_ms=0.0, threshold=0.5, hysteresis=0.1)
    rows = [
        ([0.60, 0.30, 0.10], 0),  # above threshold: decided
        ([0.45, 0.40, 0.15], 0),  # below threshold but above threshold - hysteresis: held
        ([0.45, 0.52, 0.03], 0),  # class 1 above threshold but not 0.1 ahead of class 0
        ([0.41, 0.55, 0.04], 1),  # now 0.14 ahead: switch
        ([0.50, 0.42, 0.08], 1),  # class 0 at threshold, not above it: held
        ([0.55, 0.39, 0.06], 0),  # class 1 below 0.4: dropped, class 0 above threshold: taken
        ([0.38, 0.32, 0.30], NO_GESTURE),  # nothing convincing
        ([0.49, 0.31, 0.20], NO_GESTURE),  # needs more than the threshold to enter
    ]
    got = f.update(np.array([r for r, _ in rows]), np.full(len(rows), 50_000))
    assert got.tolist() == [want for _, want in rows]


def test_decision_options_are_checked():
    for kwargs, name in (
        ({"threshold": 0.0}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"hysteresis": -0.1}, "hysteresis"),
        ({"threshold": 0.3, "hysteresis": 0.4}, "hysteresis"),
        ({"smoothing_ms": -1.0}, "smoothing_ms"),
    ):
        with pytest.raises(ConfigError, match=name):
            DecisionFilter(11, **kwargs)


def test_label_changes_are_events(model):
    functional.reset_net(model)
    seen = []
    clf = StreamingClassifier(model, device="cpu", smoothing_ms=300.0, on_change=seen.append)
    head = clf.model.head  # the network the classifier runs (on CPU a fused copy of model)
    saved = head.weight.detach().clone(), head.bias.detach().clone()
    try:
        with torch.no_grad():
            head.weight.zero_()
            head.bias.zero_()
            head.bias[4] = 10.0  # every step says class 4
        preds = feed(clf, event_frames(20, seed=15), 2)
        with torch.no_grad():
            head.bias.zero_()
            head.bias[9] = 10.0
        preds += feed(clf, event_frames(20, seed=16), 2, t0=20 * STEP_US)
    finally:
        with torch.no_grad():
            head.weight.copy_(saved[0])
            head.bias.copy_(saved[1])
    labels = [p.label for p in preds]
    assert labels[0] == NO_GESTURE and preds[0].name == NO_GESTURE_NAME
    assert 4 in labels and labels[-1] == 9
    switches = [(a, b) for a, b in zip(labels, labels[1:], strict=False) if a != b]
    assert switches == [(NO_GESTURE, 4), (4, 9)]  # no flicker, no detour through "no gesture"
    assert [p.label for p in seen] == [4, 9] and [p.label for p in clf.changes] == [4, 9]
    assert all(p.changed == (p in seen) for p in preds)
    clf.reset()  # the decided gesture is dropped: the next window reports the change
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
    try:
        after = clf.step(event_frames(2, seed=20))
    finally:
        with torch.no_grad():
            head.weight.copy_(saved[0])
            head.bias.copy_(saved[1])
    assert after.label == NO_GESTURE and after.changed and seen[-1] is after
    changed = seen[0]
    assert changed.name == clf.class_names[4] and changed.confidence > 0.5
    assert changed.probs[4] > 0.99 and changed.probs.dtype == np.float32
    assert changed.step_labels.shape == (2,) and changed.step_labels[-1] == 4


# --- capture and energy -------------------------------------------------------------------------


def test_capture_maps_have_the_documented_shapes(clf, model):
    frames = event_frames(4, seed=17)
    off = clf.step(frames)
    assert off.spike_maps is None and off.attn is None and off.input_frame is None
    clf.capture(True)
    assert clf.capturing
    on = clf.step(frames)
    cfg = model.config
    h, w = cfg.img_size
    d_head = cfg.embed_dim // cfg.num_heads
    tokens = (h // 16) * (w // 16)
    expected = {f"sps.{i}": (h >> i, w >> i) for i in range(4)}
    expected.update({"rpe": (h // 16, w // 16)})
    for b in range(cfg.depth):
        expected[f"blocks.{b}.attn"] = expected[f"blocks.{b}.mlp"] = (h // 16, w // 16)
    assert {k: v.shape for k, v in on.spike_maps.items()} == expected
    assert all(((m >= 0) & (m <= 1)).all() for m in on.spike_maps.values())
    assert on.attn.shape == (cfg.depth, cfg.num_heads, tokens, tokens)
    assert on.attn.min() >= 0 and on.attn.max() <= d_head and on.attn.max() > 0
    np.testing.assert_array_equal(on.input_frame, frames.sum(dim=(0, 1)).numpy())
    clf.capture(False)
    assert clf.step(frames).spike_maps is None


def test_energy_is_attached_and_follows_activity(clf):
    quiet = clf.step(torch.zeros(4, 2, 32, 32))
    clf.reset()
    busy = clf.step(event_frames(4, seed=18, density=0.4))
    assert quiet.energy_uj is not None and busy.energy_uj is not None
    assert math.isfinite(busy.energy_uj) and busy.energy_uj > quiet.energy_uj >= 0
    assert busy.infer_ms > 0
    bare = StreamingClassifier(active_model(), device="cpu", energy=False).step(event_frames(4, seed=18, density=0.4))
    assert bare.energy_uj is None and bare.layer_rates == {}
    np.testing.assert_array_equal(bare.logits, busy.logits)


def test_freed_memory_is_kept_on_glibc():
    import platform

    from models.streaming import retain_freed_memory

    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert retain_freed_memory() is glibc
    assert retain_freed_memory() is glibc  # once per process; asking again is harmless


# --- the offline-equivalent rule: softmax of the mean of per-step logits ---------------------


@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("window_steps", [1, 2, 4])
def test_mean_rule_decision_equals_the_offline_clip_decision(window_steps, fuse):
    agreed = 0
    for seed in range(4):
        model = active_model(seed)  # random weights (BN set so that spikes reach the head)
        steps = model.config.steps  # T = 4
        clip = event_frames(steps, seed=100 + seed)
        functional.reset_net(model)
        with torch.no_grad():
            offline = model(clip.unsqueeze(1))[0].double()  # [C]: the head on the features' mean over T
        functional.reset_net(model)
        top2 = torch.topk(offline, 2).values
        margin = float(top2[0] - top2[1])
        if margin < 1e-4:
            continue  # a tie within rounding says nothing about the rule
        clf = StreamingClassifier(
            model, device="cpu", fuse=fuse, decision="mean", mean_steps=steps, threshold=1e-6, hysteresis=0.0
        )
        feed(clf, event_frames(6, seed=200 + seed), window_steps)  # some other stream first ...
        clf.reset()  # ... then a reset at the clip's start
        preds = feed(clf, clip, window_steps)
        last = preds[-1]
        assert last.probs_kind == f"softmax_mean_logits_last_{steps}"
        assert last.label == int(offline.argmax()), (seed, margin)
        np.testing.assert_allclose(last.smoothed, torch.softmax(offline, 0).numpy(), atol=1e-5)
        agreed += 1
    assert agreed >= 3


def test_mean_rule_ring_buffer_and_since_reset():
    c = 3
    logits = np.array([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [0, 0, 3.0], [0, 0, 3.0]])
    last2 = MeanLogitDecision(c, mean_steps=2, threshold=0.5, hysteresis=0.0)
    since = MeanLogitDecision(c, mean_steps=None, threshold=0.5, hysteresis=0.0)
    assert since.kind == "softmax_mean_logits_since_reset" and last2.kind == "softmax_mean_logits_last_2"

    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    rows = last2.smooth(logits[:1])
    rows = np.concatenate([rows, last2.smooth(logits[1:])])  # carried across two calls ("windows")
    for i in range(len(logits)):
        np.testing.assert_allclose(rows[i], softmax(logits[max(0, i - 1) : i + 1].mean(axis=0)), rtol=1e-12)
    got = since.update(logits)
    np.testing.assert_allclose(since.smoothed, softmax(logits.mean(axis=0)), rtol=1e-12)
    # since reset: 0 then [1.5, 1.5, 0] (no class above 0.5), then class 2 as its mean rises
    assert got.tolist()[:2] == [0, NO_GESTURE] and got[-1] == 2
    since.reset()
    np.testing.assert_array_equal(since.smoothed, np.full(c, 1 / c))
    assert since.label == NO_GESTURE and since.update(logits[1:2]).tolist() == [1]


def test_mean_rule_at_rest_decides_nothing(model):
    rest = MeanLogitDecision(11, mean_steps=8, threshold=0.3, hysteresis=0.05)
    near_uniform = np.random.default_rng(0).normal(0.0, 0.05, (64, 11))  # what a trained model says at rest
    assert (rest.update(near_uniform) == NO_GESTURE).all()
    assert rest.confidence < 0.3


def test_mean_rule_threshold_and_hysteresis_act_on_the_mean():
    f = MeanLogitDecision(3, mean_steps=1, threshold=0.5, hysteresis=0.1)  # one step: softmax of each row
    rows = np.log(np.array([[0.60, 0.30, 0.10], [0.45, 0.40, 0.15], [0.41, 0.55, 0.04], [0.38, 0.32, 0.30]]))
    assert f.update(rows).tolist() == [0, 0, 1, NO_GESTURE]  # as DecisionFilter: enter, hold, switch, drop


def test_mean_rule_state_round_trip(model):
    functional.reset_net(model)
    clf = StreamingClassifier(model, device="cpu", decision="mean", mean_steps=3, threshold=0.2, hysteresis=0.0)
    feed(clf, event_frames(5, seed=30), 2)
    saved = clf.state()
    assert saved["decision"]["rule"] == "mean" and saved["decision"]["buffer"].shape == (3, clf.num_classes)
    probe = event_frames(4, seed=31)
    expected = clf.step(probe)
    feed(clf, event_frames(7, seed=32), 3)
    clf.load_state(saved)
    again = clf.step(probe)
    np.testing.assert_array_equal(again.smoothed, expected.smoothed)
    assert again.step_labels.tolist() == expected.step_labels.tolist()
    ema = StreamingClassifier(model, device="cpu")
    with pytest.raises(ModelError, match="decision.rule"):
        ema.load_state(saved)
    with pytest.raises(ModelError, match="mean_steps"):
        StreamingClassifier(model, device="cpu", decision="mean", mean_steps=4).load_state(saved)
    assert clf.decision_settings == {"rule": "mean", "mean_steps": 3, "threshold": 0.2, "hysteresis": 0.0}
    assert ema.step(probe).probs_kind == "ema_softmax"
    assert ema.decision_settings == {"rule": "ema", "smoothing_ms": 300.0, "threshold": 0.5, "hysteresis": 0.1}


def test_decision_rule_options_are_checked(model):
    with pytest.raises(ConfigError, match="decision"):
        StreamingClassifier(model, device="cpu", decision="median")
    for bad in (0, -2, 2.5):
        with pytest.raises(ConfigError, match="mean_steps"):
            MeanLogitDecision(11, mean_steps=bad)
    with pytest.raises(ConfigError, match="hysteresis"):
        MeanLogitDecision(11, threshold=0.2, hysteresis=0.3)


def test_checkpoint_decision_settings_become_classifier_options():
    assert decision_options({}) == {"decision": "ema"}
    assert decision_options({"threshold": 0.3, "hysteresis": 0.05, "smoothing_ms": 200}) == {
        "decision": "ema",
        "threshold": 0.3,
        "hysteresis": 0.05,
        "smoothing_ms": 200.0,
    }
    assert decision_options({"rule": "mean"}, model_steps=16) == {"decision": "mean", "mean_steps": 16}
    assert decision_options({"rule": "mean", "mean_steps": None}, model_steps=16)["mean_steps"] is None
    assert decision_options({"rule": "mean", "mean_steps": 8, "window_steps": 2})["mean_steps"] == 8
    for settings, name in (
        ({"rule": "vote"}, "decision.rule"),
        ({"colour": 1}, "decision.colour"),
        ({"threshold": "high"}, "decision.threshold"),
        ({"rule": "mean", "mean_steps": 0}, "decision.mean_steps"),
    ):
        with pytest.raises(ConfigError, match=name):
            decision_options(settings)


def test_default_window_is_at_most_four_steps_and_200_ms():
    assert default_window_steps({}, 16, 50_000) == 4
    assert default_window_steps({}, 2, 50_000) == 2
    assert default_window_steps({}, 16, 100_000) == 2  # 200 ms
    assert default_window_steps({}, 16, 300_000) == 1
    assert default_window_steps({}, 16) == 4
    assert default_window_steps({"window_steps": 8}, 16, 50_000) == 8  # the checkpoint's own
    with pytest.raises(ConfigError, match="decision.window_steps"):
        default_window_steps({"window_steps": 0}, 16)


# ----------------------------------------------------------------- sensor density match -----


def test_input_scale_equals_scaling_the_counts(model):
    frames = event_frames(4, seed=3)
    scaled = StreamingClassifier(model, device="cpu", input_scale=0.25)
    plain = StreamingClassifier(model, device="cpu")
    a = scaled.step(frames, t_start=0, t_end=4 * STEP_US)
    b = plain.step(frames * 0.25, t_start=0, t_end=4 * STEP_US)
    np.testing.assert_allclose(a.logits, b.logits, rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="input_scale"):
        StreamingClassifier(model, device="cpu", input_scale=0.0)


def test_input_scale_for_a_checkpoint_trained_on_a_dvs128():
    from evstream.binning import Geometry
    from evstream.events import SensorSize
    from models.streaming import input_scale_for

    pre = {"sensor": [128, 128], "out_size": [64, 64]}
    assert input_scale_for(pre, Geometry(SensorSize(128, 128), (64, 64))) == 1.0
    # A DVXplorer cropped to 480x480 sums 7.5 x 7.5 pixels per model pixel, a DVS128 2 x 2.
    assert input_scale_for(pre, Geometry(SensorSize(640, 480), (64, 64))) == pytest.approx(4 / 56.25)
    assert input_scale_for({}, Geometry(SensorSize(640, 480), (64, 64))) == 1.0
    with pytest.raises(ModelError, match="preprocessing.sensor"):
        input_scale_for({"sensor": ["a", 1], "out_size": [64, 64]}, Geometry(SensorSize(128, 128), (64, 64)))
