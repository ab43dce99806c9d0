"""MultiStreamClassifier: N batched streams equal N separate StreamingClassifiers, resets per stream.

Real ``spikformer_tiny`` with real spikingjelly LIF neurons; BatchNorm gain 4 / bias 0.3 and a
unit-variance head so that spikes reach the head and decisions pass the threshold (the tests
check both, so the equalities are not between zeros).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from evstream.binning import Window
from evstream.errors import ConfigError, ModelError
from evstream.labels import NO_GESTURE
from models.multistream import MultiStreamClassifier
from models.spikformer import create_model
from models.streaming import PeriodicReset, StreamingClassifier

STEP_US = 50_000
STEPS = 4
STREAMS = 3
OPTIONS = {"threshold": 0.3, "hysteresis": 0.05}


def active_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model("spikformer_tiny").eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.weight.fill_(4.0)
                module.bias.fill_(0.3)
        model.head.weight.normal_(0.0, 1.0)
    return model


def window(stream: int, k: int, steps: int = STEPS, density: float = 0.2) -> Window:
    """Window ``k`` of ``stream``: random event counts, each stream and window its own draw."""
    rng = np.random.default_rng(1000 * stream + k)
    frames = ((rng.random((steps, 2, 32, 32)) < density) * rng.integers(1, 4, (steps, 2, 32, 32))).astype(np.float32)
    t0 = k * steps * STEP_US
    counts = frames.sum(axis=(1, 2, 3)).astype(np.int64)
    return Window(frames=frames, t_start=t0, t_end=t0 + steps * STEP_US, step_us=STEP_US, counts=counts, index=k)


def assert_same(batched, single, changed: bool = True) -> None:
    np.testing.assert_allclose(batched.logits, single.logits, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(batched.step_labels, single.step_labels)
    assert batched.label == single.label
    if changed:
        assert batched.changed == single.changed
    np.testing.assert_allclose(batched.smoothed, single.smoothed, atol=1e-6)
    np.testing.assert_allclose(batched.probs, single.probs, atol=1e-6)
    assert (batched.t_start, batched.t_end, batched.index) == (single.t_start, single.t_end, single.index)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("decision", ["ema", "mean"])
def test_batched_streams_equal_separate_classifiers_and_reset_one_stream(one_torch_thread, fuse, decision):
    model = active_model()
    options = {**OPTIONS, "decision": decision, "mean_steps": 6 if decision == "mean" else None}
    # Unfused classifiers run the model they are given, so each gets its own copy.
    multi = MultiStreamClassifier(copy.deepcopy(model), STREAMS, device="cpu", fuse=fuse, **options)
    singles = [StreamingClassifier(copy.deepcopy(model), device="cpu", fuse=fuse, energy=False, **options) for _ in range(STREAMS)]
    labels = set()
    for k in range(4):
        windows = [window(s, k) for s in range(STREAMS)]
        batched = multi.step(windows)
        assert len(batched) == STREAMS
        for s in range(STREAMS):
            assert_same(batched[s], singles[s].step(windows[s]))
            labels.add(batched[s].label)
        # The streams see different events, so their logits differ: a mix-up of rows would show.
        assert np.abs(batched[0].logits - batched[1].logits).max() > 0.1
    assert batched[0].logits.std() > 0.1
    assert labels - {NO_GESTURE}, "no stream ever passed the threshold: the decision check would be vacuous"

    multi.reset(1)
    singles[1].reset()  # the same reset on its own classifier: changed and resets agree too
    fresh = StreamingClassifier(copy.deepcopy(model), device="cpu", fuse=fuse, energy=False, **options)
    for name, value in multi.memories(1).items():
        if isinstance(value, torch.Tensor):
            assert torch.count_nonzero(value) == 0, name
    assert any(isinstance(v, torch.Tensor) and torch.count_nonzero(v) > 0 for v in multi.memories(0).values())
    for k in range(4, 7):
        windows = [window(s, k) for s in range(STREAMS)]
        batched = multi.step(windows)
        assert_same(batched[0], singles[0].step(windows[0]))
        # Against a fresh classifier all but `changed` (a reset that drops a gesture is a change).
        assert_same(batched[1], fresh.step(windows[1]), changed=False)
        assert_same(batched[1], singles[1].step(windows[1]))
        assert_same(batched[2], singles[2].step(windows[2]))
    assert [p.resets for p in batched] == [0, 1, 0]


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_captured_maps_are_each_streams_own(one_torch_thread, fuse):
    model = active_model()
    multi = MultiStreamClassifier(copy.deepcopy(model), STREAMS, device="cpu", fuse=fuse, **OPTIONS)
    singles = [StreamingClassifier(copy.deepcopy(model), device="cpu", fuse=fuse, energy=False, **OPTIONS)
               for _ in range(STREAMS)]
    for s in singles:
        s.capture(True)
    first = multi.step([window(s, 0) for s in range(STREAMS)])
    assert all(p.spike_maps is None and p.attn is None for p in first)  # off by default
    multi.capture(True)
    for s in range(STREAMS):
        singles[s].step(window(s, 0))
    for k in (1, 2):
        windows = [window(s, k) for s in range(STREAMS)]
        batched = multi.step(windows)
        for s in range(STREAMS):
            single = singles[s].step(windows[s])
            assert set(batched[s].spike_maps) == set(single.spike_maps)
            for name, m in single.spike_maps.items():
                np.testing.assert_allclose(batched[s].spike_maps[name], m, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(batched[s].attn, single.attn, atol=1e-6)
            np.testing.assert_array_equal(batched[s].input_frame, windows[s].frames.sum(axis=(0, 1)))
            np.testing.assert_array_equal(batched[s].input_frame, single.input_frame)
        # Different events per stream give different maps: rows taken from the wrong stream would show.
        assert np.abs(batched[0].attn - batched[1].attn).max() > 0
        assert any(np.abs(batched[0].spike_maps[n] - batched[1].spike_maps[n]).max() > 0 for n in batched[0].spike_maps)
    assert batched[0].attn.max() > 0, "no attention at all: the equality would be between zeros"
    multi.capture(False)
    assert not multi.capturing
    assert all(p.spike_maps is None for p in multi.step([window(s, 3) for s in range(STREAMS)]))


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_energy_and_firing_rates_are_each_streams_own(one_torch_thread, fuse):
    model = active_model()
    multi = MultiStreamClassifier(copy.deepcopy(model), STREAMS, device="cpu", fuse=fuse, **OPTIONS)
    singles = [StreamingClassifier(copy.deepcopy(model), device="cpu", fuse=fuse, **OPTIONS) for _ in range(STREAMS)]
    multi.capture(True)  # maps and rates in the same call: both per row
    for k in range(3):
        # each stream its own event density, so each has its own firing rates and energy
        windows = [window(s, k, density=0.05 + 0.15 * s) for s in range(STREAMS)]
        batched = multi.step(windows)
        for s in range(STREAMS):
            single = singles[s].step(windows[s])
            assert single.energy_uj is not None and batched[s].energy_uj is not None
            assert set(batched[s].layer_rates) == set(single.layer_rates)
            for name, rate in single.layer_rates.items():
                assert batched[s].layer_rates[name] == pytest.approx(rate, abs=1e-6), name
            assert batched[s].energy_uj == pytest.approx(single.energy_uj, rel=1e-5)
        assert batched[0].energy_uj < batched[1].energy_uj < batched[2].energy_uj
        assert batched[0].layer_rates["input"] < batched[2].layer_rates["input"]
    quiet = MultiStreamClassifier(copy.deepcopy(model), STREAMS, device="cpu", fuse=fuse, energy=False, **OPTIONS)
    assert all(p.energy_uj is None and not p.layer_rates for p in quiet.step(windows))


def test_reset_before_the_first_step_and_reset_all(one_torch_thread):
    model = active_model(1)
    multi = MultiStreamClassifier(copy.deepcopy(model), 2, device="cpu", **OPTIONS)
    multi.reset(0)  # memories are still floats: nothing to zero, counted all the same
    first = multi.step([window(0, 0), window(1, 0)])
    assert [p.resets for p in first] == [1, 0]
    multi.reset()
    again = multi.step([window(0, 0), window(1, 0)])
    for a, b in zip(first, again, strict=True):
        np.testing.assert_allclose(a.logits, b.logits, atol=1e-5, rtol=0)
    assert [p.resets for p in again] == [2, 1]


def test_reset_policy_is_per_stream(one_torch_thread):
    model = active_model(2)
    multi = MultiStreamClassifier(copy.deepcopy(model), 2, device="cpu", reset_policy=lambda: PeriodicReset(300), **OPTIONS)
    single = StreamingClassifier(copy.deepcopy(model), device="cpu", energy=False, reset_policy=PeriodicReset(300), **OPTIONS)
    for k in range(4):
        # Stream 0 runs on a clock 10 s ahead: its policy counts on its own clock, not stream 1's.
        w0 = window(0, k)
        w0.t_start, w0.t_end = w0.t_start + 10_000_000, w0.t_end + 10_000_000
        w1 = window(1, k)
        batched = multi.step([w0, w1])
        assert_same(batched[1], single.step(w1))
    assert batched[1].resets == single.resets > 0
    with pytest.raises(ConfigError, match="reset_policy"):
        MultiStreamClassifier(model, 2, device="cpu", reset_policy=PeriodicReset(300))


def test_bad_input_is_one_clear_error(one_torch_thread):
    multi = MultiStreamClassifier(active_model(), 2, device="cpu", **OPTIONS)
    with pytest.raises(ModelError, match="expected 2"):
        multi.step([window(0, 0)])
    with pytest.raises(ModelError, match=r"windows\[1\].frames: shape \[2, 2, 32, 32\] differs"):
        multi.step([window(0, 0), window(1, 0, steps=2)])
    with pytest.raises(ModelError, match=r"windows\[0\]: expected an evstream Window"):
        multi.step([np.zeros((4, 2, 32, 32)), window(1, 0)])
    with pytest.raises(ConfigError, match="stream: must be an integer in 0..1"):
        multi.reset(2)
    with pytest.raises(ConfigError, match="streams: must be an integer >= 1"):
        MultiStreamClassifier(active_model(), 0)
