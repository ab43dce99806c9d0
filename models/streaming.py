"""Stateful streaming inference: a Spikformer that keeps its LIF state from one window to the next.

The :class:`StreamingClassifier` is the one place that owns the network's neuron state
(spikingjelly keeps memories such as ``v`` inside the modules, and they persist across calls
until ``functional.reset_net``; shared/reference/spikformer.md §7). It feeds each
:class:`~evstream.binning.Window` ``[T, 2, H, W]`` to the model as ``[T, 1, 2, H, W]`` without
resetting, so cutting a stream into windows of any length gives the per-step logits of one long
run (Spikformer is causal in time: every op except the LIF recurrence runs per step; §6).

Per-step logits become decisions by one of two rules (``decision=``), each followed by a
confidence threshold with hysteresis and a "no gesture" state (:data:`evstream.labels.NO_GESTURE`):

- ``"ema"`` (:class:`DecisionFilter`): softmax per step, then an exponential moving average with
  a time constant in ms over the steps' real durations;
- ``"mean"`` (:class:`MeanLogitDecision`): softmax of the mean of the per-step logits over the
  last ``mean_steps`` steps, or since the last reset: the model's own offline rule (its head
  averages over T), so with ``mean_steps = T`` and a reset at a clip's start the decision after
  T steps is the offline clip decision.

Models are trained so that between gestures the per-step softmax is near uniform, so at rest
no class passes the threshold under either rule. ``Prediction.probs_kind`` says which
probabilities ``Prediction.smoothed`` holds. A checkpoint's ``decision`` dict
(:func:`decision_options`, :func:`default_window_steps`) carries the rule and its parameters
calibrated for its weights (``python main.py eval --stream ... --calibrate``). Online output
filtering of this kind follows TENNs-PLEIADES (arXiv 2405.12179), whose output filter took
DVS128 Gesture from 99.59 % to 100 %, and the live TrueNorth demo (Amir et al., CVPR 2017).

Reset policies decide when the state is cleared on their own: :class:`InactivityReset` (the
scene has been quiet for a while) and :class:`PeriodicReset`; with no policy resets are manual.

Speed: inference runs under ``torch.inference_mode``; firing rates (for the energy estimate)
stay on the device until the window ends (one host sync per window); on CPU the classifier runs
a copy of the model in its ``fuse_for_inference()`` form (BN folded, channels-last stem, numba
kernels for the first stage and the LIF loops; see ``fuse``) with glibc told to keep freed
memory (:func:`retain_freed_memory`); ``compile=True`` adds ``torch.compile`` (minutes to compile on a CPU;
shared/reference/spikformer.md §7.2 measured ~2× faster than eager).
"""

from __future__ import annotations

import collections
import copy
import ctypes
import math
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numba
import numpy as np
import torch
from spikingjelly.activation_based import base, functional

from evstream.errors import ConfigError, ModelError
from evstream.events import SensorSize
from evstream.labels import DVS_GESTURE_CLASSES, NO_GESTURE
from models.energy import estimate_energy
from models.spikformer import Capture

__all__ = [
    "StreamingClassifier",
    "Prediction",
    "DecisionFilter",
    "MeanLogitDecision",
    "make_decision",
    "decision_options",
    "default_window_steps",
    "DECISION_RULES",
    "DECISION_KEYS",
    "ResetPolicy",
    "InactivityReset",
    "PeriodicReset",
    "NO_GESTURE_NAME",
    "retain_freed_memory",
]

NO_GESTURE_NAME = "no gesture"
CHANGES_KEPT = 256
"""How many label changes :attr:`StreamingClassifier.changes` keeps (the oldest are dropped)."""
_DEFAULT_STEP_US = 50_000


@dataclass
class Prediction:
    """What the classifier says about one window.

    Attributes:
        t_start: window start, µs (sensor clock).
        t_end: window end, µs, exclusive.
        probs: mean over the window's steps of the per-step softmax, float32 ``[C]`` (whatever
            the decision rule: what the network says in this window alone).
        smoothed: the decision probabilities after the window's last step, float32 ``[C]``: what
            the threshold and hysteresis act on; ``probs_kind`` says which mean they are.
        label: decided class index after the window, or ``NO_GESTURE`` (-1).
        name: class name of ``label`` (``"no gesture"`` for -1).
        confidence: smoothed probability of ``label``; of the strongest class when no gesture.
        changed: the label differs from the previous window's label.
        logits: per-step logits, float32 ``[T, C]``.
        step_labels: decided label after each step, int64 ``[T]``.
        infer_ms: wall time of this ``step`` call (model, decisions, capture), ms.
        resets: number of state resets so far (manual and by policy).
        energy_uj: estimated energy of this window on neuromorphic hardware, µJ (models/energy.py).
        layer_rates: firing rate per layer during this window.
        spike_maps: when capturing, spike rate per map ``[h, w]`` ('sps.0' ... 'blocks.i.mlp').
        attn: when capturing, Q·Kᵀ averaged over the window's steps, ``[blocks, heads, N, N]``.
        input_frame: when capturing, input event counts summed over steps and polarities ``[H, W]``.
        index: the window's index (from the Binner), or the classifier's own count.
        probs_kind: what ``smoothed`` is, by decision rule: ``"ema_softmax"`` (EMA of the per-step
            softmax, rule ``"ema"``), ``"softmax_mean_logits_last_N"`` (softmax of the mean of
            the last N steps' logits, rule ``"mean"``) or ``"softmax_mean_logits_since_reset"``
            (the same over every step since the last reset). ``probs`` is always the window's
            mean of per-step softmax.
    """

    t_start: int
    t_end: int
    probs: np.ndarray
    smoothed: np.ndarray
    label: int
    name: str
    confidence: float
    changed: bool
    logits: np.ndarray
    step_labels: np.ndarray | None = None
    infer_ms: float = 0.0
    resets: int = 0
    energy_uj: float | None = None
    layer_rates: dict[str, float] = field(default_factory=dict)
    spike_maps: dict[str, np.ndarray] | None = None
    attn: np.ndarray | None = None
    input_frame: np.ndarray | None = None
    index: int = 0
    probs_kind: str = "ema_softmax"


DECISION_RULES = ("ema", "mean")
"""The decision rules of :class:`StreamingClassifier` (``decision=``): see :class:`DecisionFilter`, :class:`MeanLogitDecision`."""
DECISION_KEYS = ("rule", "smoothing_ms", "mean_steps", "threshold", "hysteresis", "class_thresholds", "window_steps")
"""Keys of a checkpoint's ``decision`` dict (all optional; see :func:`decision_options`)."""
DEFAULT_WINDOW_STEPS = 4
"""Most time steps in the default streaming window (see :func:`default_window_steps`)."""
DEFAULT_WINDOW_US = 200_000
"""Longest default streaming window, µs: a decision can change at least 5 times a second."""


def _hysteresis_labels(
    rows: list[list[float]], thresholds: list[float], hysteresis: float, label: int
) -> tuple[list[int], int]:
    """The label after each row of decision probabilities, from ``label`` on (see :class:`DecisionFilter`).

    ``thresholds`` holds each class's threshold. Pure Python on floats: the same code decides
    online (a few steps per window) and in the calibration grid (every step of a recording, once
    per threshold/hysteresis pair).
    """
    out = []
    for s in rows:
        if label != NO_GESTURE and s[label] < thresholds[label] - hysteresis:
            label = NO_GESTURE
        best = 0
        top = s[0]
        for k in range(1, len(s)):
            if s[k] > top:
                best, top = k, s[k]
        if best != label and top > thresholds[best]:
            held = s[label] if label != NO_GESTURE else 0.0
            if top - held >= hysteresis:
                label = best
        out.append(label)
    return out, label


class _Thresholded:
    """Threshold + hysteresis over a per-step probability vector ``smoothed`` (shared by both rules)."""

    rule = ""
    num_classes: int
    threshold: float
    hysteresis: float
    class_thresholds: dict[int, float]
    smoothed: np.ndarray
    label: int

    def _check(self, num_classes: int, threshold: float, hysteresis: float,
               class_thresholds: dict[int, float] | None = None) -> None:
        if num_classes < 1:
            raise ConfigError(f"num_classes: must be at least 1, got {num_classes}")
        if not 0 < threshold <= 1:
            raise ConfigError(f"threshold: must lie in (0, 1], got {threshold}")
        if not 0 <= hysteresis <= threshold:
            raise ConfigError(f"hysteresis: must lie in [0, threshold={threshold}], got {hysteresis}")
        per_class = {}
        for k, value in (class_thresholds or {}).items():
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < num_classes:
                raise ConfigError(f"class_thresholds: class {k!r} is not one of 0..{num_classes - 1}")
            if not hysteresis <= value <= 1 or value <= 0:
                raise ConfigError(f"class_thresholds[{k}]: must lie in (0, 1] and >= hysteresis {hysteresis}, got {value}")
            per_class[k] = float(value)
        self.num_classes = int(num_classes)
        self.threshold = float(threshold)
        self.hysteresis = float(hysteresis)
        self.class_thresholds = dict(sorted(per_class.items()))
        self._thresholds = [self.class_thresholds.get(k, self.threshold) for k in range(self.num_classes)]

    def threshold_of(self, k: int) -> float:
        """The threshold class ``k`` needs (its own from ``class_thresholds``, else ``threshold``)."""
        return self._thresholds[k]

    def _settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"threshold": self.threshold, "hysteresis": self.hysteresis}
        if self.class_thresholds:
            out["class_thresholds"] = dict(self.class_thresholds)
        return out

    def _uniform(self) -> np.ndarray:
        return np.full(self.num_classes, 1.0 / self.num_classes, dtype=np.float64)

    def labels_for(self, smoothed: np.ndarray, label: int = NO_GESTURE) -> np.ndarray:
        """Labels after each row of ``smoothed [S, C]`` starting from ``label``; the state is untouched."""
        out, _ = _hysteresis_labels(np.asarray(smoothed, np.float64).tolist(), self._thresholds, self.hysteresis, label)
        return np.asarray(out, dtype=np.int64)

    def _label_rows(self, smoothed: np.ndarray) -> np.ndarray:
        out, self.label = _hysteresis_labels(smoothed.tolist(), self._thresholds, self.hysteresis, self.label)
        return np.asarray(out, dtype=np.int64)

    @property
    def confidence(self) -> float:
        """Decision probability of the current label, or of the strongest class when none."""
        k = self.label if self.label != NO_GESTURE else int(np.argmax(self.smoothed))
        return float(self.smoothed[k])

    def feed(self, logits: np.ndarray, probs: np.ndarray, durations_us: np.ndarray) -> np.ndarray:
        """Feed one window's per-step ``logits`` and ``probs`` (``[T, C]``) and step durations; labels ``[T]``."""
        raise NotImplementedError

    def settings(self) -> dict[str, Any]:
        """The rule and its parameters, as in a checkpoint's ``decision`` dict."""
        raise NotImplementedError


class DecisionFilter(_Thresholded):
    """The ``"ema"`` rule: per-step probabilities → smoothed probabilities → a label with hysteresis.

    Smoothing is an exponential moving average whose weight follows each step's real duration:
    ``s += (1 - exp(-dt / tau)) * (p - s)``, so windows of different lengths or a changed step
    size smooth over the same time in ms. The average starts (and restarts on ``reset``) at
    the uniform distribution, so no class is above any sensible threshold before evidence.
    ``Prediction.probs_kind`` is ``"ema_softmax"``.

    Decision rule, applied after every step (the same for :class:`MeanLogitDecision`):

    - the current label drops to ``NO_GESTURE`` when its smoothed probability falls below
      ``threshold - hysteresis``;
    - a new label ``k`` is taken when ``s[k] > threshold`` and ``s[k]`` beats the current label's
      smoothed probability by at least ``hysteresis`` (from no gesture: ``s[k] > threshold``).

    Choose ``threshold`` for how sure a decision must be (0.5 with 11 classes is already a
    strong majority), ``hysteresis`` against flicker near the threshold, ``smoothing_ms`` for
    the trade between latency (larger is slower to switch) and stability. ``class_thresholds``
    gives single classes their own threshold in place of ``threshold`` (both the take and the
    drop rule use it): a catch-all class such as DVS128 Gesture's "other gestures", which a
    person standing still resembles, can be made to need more evidence than the rest.

    Args:
        num_classes: C.
        smoothing_ms: EMA time constant, ms; 0 disables smoothing.
        threshold: confidence a class needs to be decided, in (0, 1].
        hysteresis: margin, in [0, threshold].
        class_thresholds: ``{class index: threshold}`` overrides, each in [hysteresis, 1].
    """

    rule = "ema"
    kind = "ema_softmax"

    def __init__(
        self, num_classes: int, smoothing_ms: float = 300.0, threshold: float = 0.5, hysteresis: float = 0.1,
        class_thresholds: dict[int, float] | None = None,
    ) -> None:
        if not smoothing_ms >= 0 or not math.isfinite(smoothing_ms):
            raise ConfigError(f"smoothing_ms: must be a finite number >= 0, got {smoothing_ms}")
        self._check(num_classes, threshold, hysteresis, class_thresholds)
        self.tau_us = smoothing_ms * 1000.0
        self.reset()

    def reset(self) -> None:
        """Back to uniform smoothed probabilities and no gesture."""
        self.smoothed = self._uniform()
        self.label = NO_GESTURE

    def state(self) -> dict[str, Any]:
        """A copy of the filter's state (for :meth:`load_state`)."""
        return {"rule": self.rule, "smoothed": self.smoothed.copy(), "label": self.label}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state`."""
        _check_rule(state, self.rule)
        self.smoothed = np.array(state["smoothed"], dtype=np.float64, copy=True)
        self.label = int(state["label"])

    def smooth(self, probs: np.ndarray, durations_us: np.ndarray) -> np.ndarray:
        """Advance the average over per-step ``probs [T, C]``; the smoothed probabilities after each step ``[T, C]``."""
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != self.num_classes:
            raise ModelError(f"probs: expected [T, {self.num_classes}], got {list(probs.shape)}")
        if self.tau_us > 0:
            alphas = 1.0 - np.exp(-np.asarray(durations_us, dtype=np.float64) / self.tau_us)
        else:
            alphas = np.ones(len(probs))
        rows = np.empty_like(probs)
        s = self.smoothed
        for i, p in enumerate(probs):
            s += alphas[i] * (p - s)
            rows[i] = s
        return rows

    def update(self, probs: np.ndarray, durations_us: np.ndarray) -> np.ndarray:
        """Feed per-step probabilities; return the label after each step.

        Args:
            probs: ``[T, C]`` probabilities of each step.
            durations_us: ``[T]`` duration of each step, µs.

        Returns:
            int64 ``[T]``: the decided label after each step (``NO_GESTURE`` = -1).
        """
        return self._label_rows(self.smooth(probs, durations_us))

    def feed(self, logits: np.ndarray, probs: np.ndarray, durations_us: np.ndarray) -> np.ndarray:
        return self.update(probs, durations_us)

    def settings(self) -> dict[str, Any]:
        return {"rule": self.rule, "smoothing_ms": self.tau_us / 1000.0} | self._settings()


class MeanLogitDecision(_Thresholded):
    """The ``"mean"`` rule, the offline-equivalent one: softmax of the mean of per-step logits.

    The Spikformer head is linear, so the mean of its per-step logits over T steps equals the
    model's clip output (``model(clip)`` averages the features over T, then applies the head;
    shared/reference/spikformer.md §6). With ``mean_steps = T`` and a reset at a clip's start,
    the decision after T steps is the offline clip decision (when it passes the threshold).

    The mean runs over the last ``mean_steps`` steps (a ring buffer carried across windows and
    cleared on :meth:`reset`; ``Prediction.probs_kind`` ``"softmax_mean_logits_last_N"``), or,
    with ``mean_steps=None``, over every step since the last reset (``"softmax_mean_logits_since_reset"``;
    meant for use with a reset policy). Before the buffer is full the mean is over the steps
    seen so far. Threshold and hysteresis act on ``softmax(mean)`` as in :class:`DecisionFilter`;
    before the first step it is uniform (no gesture).

    Args:
        num_classes: C.
        mean_steps: how many of the latest steps the mean covers, >= 1; None = since reset.
        threshold: confidence a class needs to be decided, in (0, 1].
        hysteresis: margin, in [0, threshold].
        class_thresholds: ``{class index: threshold}`` overrides (see :class:`DecisionFilter`).
    """

    rule = "mean"

    def __init__(
        self, num_classes: int, mean_steps: int | None = None, threshold: float = 0.5, hysteresis: float = 0.1,
        class_thresholds: dict[int, float] | None = None,
    ) -> None:
        if mean_steps is not None and (isinstance(mean_steps, bool) or int(mean_steps) != mean_steps or mean_steps < 1):
            raise ConfigError(f"mean_steps: must be an integer >= 1 or None (since reset), got {mean_steps}")
        self._check(num_classes, threshold, hysteresis, class_thresholds)
        self.mean_steps = None if mean_steps is None else int(mean_steps)
        self.reset()

    @property
    def kind(self) -> str:
        """What ``smoothed`` holds: ``"softmax_mean_logits_last_N"`` or ``"softmax_mean_logits_since_reset"``."""
        if self.mean_steps is None:
            return "softmax_mean_logits_since_reset"
        return f"softmax_mean_logits_last_{self.mean_steps}"

    def reset(self) -> None:
        """Empty the mean: uniform probabilities and no gesture."""
        self._buffer = np.zeros((self.mean_steps or 0, self.num_classes), dtype=np.float64)
        self._sum = np.zeros(self.num_classes, dtype=np.float64)
        self._count = 0
        self.smoothed = self._uniform()
        self.label = NO_GESTURE

    def state(self) -> dict[str, Any]:
        """A copy of the rule's state (ring buffer, running sum, count, probabilities, label)."""
        return {
            "rule": self.rule,
            "mean_steps": self.mean_steps,
            "buffer": self._buffer.copy(),
            "sum": self._sum.copy(),
            "count": self._count,
            "smoothed": self.smoothed.copy(),
            "label": self.label,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state` (of a rule with the same ``mean_steps``)."""
        _check_rule(state, self.rule)
        if state.get("mean_steps") != self.mean_steps:
            raise ModelError(
                f"state: decision.mean_steps is {state.get('mean_steps')}, this classifier's is {self.mean_steps}"
            )
        self._buffer = np.array(state["buffer"], dtype=np.float64, copy=True).reshape(-1, self.num_classes)
        self._sum = np.array(state["sum"], dtype=np.float64, copy=True)
        self._count = int(state["count"])
        self.smoothed = np.array(state["smoothed"], dtype=np.float64, copy=True)
        self.label = int(state["label"])

    def smooth(self, logits: np.ndarray, durations_us: np.ndarray | None = None) -> np.ndarray:
        """Add per-step ``logits [T, C]`` to the mean; ``softmax(mean)`` after each step ``[T, C]``."""
        logits = np.asarray(logits, dtype=np.float64)
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ModelError(f"logits: expected [T, {self.num_classes}], got {list(logits.shape)}")
        rows = np.empty_like(logits)
        n_max = self.mean_steps
        for i, z in enumerate(logits):
            if n_max is None:
                self._sum += z
                self._count += 1
                mean = self._sum / self._count
            else:
                self._buffer[self._count % n_max] = z
                self._count += 1
                n = min(self._count, n_max)
                mean = self._buffer[:n].sum(axis=0) / n
            e = np.exp(mean - mean.max())
            rows[i] = e / e.sum()
        if len(rows):
            self.smoothed = rows[-1].copy()
        return rows

    def update(self, logits: np.ndarray, durations_us: np.ndarray | None = None) -> np.ndarray:
        """Feed per-step logits ``[T, C]``; the label after each step, int64 ``[T]``."""
        return self._label_rows(self.smooth(logits, durations_us))

    def feed(self, logits: np.ndarray, probs: np.ndarray, durations_us: np.ndarray) -> np.ndarray:
        return self.update(logits, durations_us)

    def settings(self) -> dict[str, Any]:
        return {"rule": self.rule, "mean_steps": self.mean_steps} | self._settings()


def _check_rule(state: Any, rule: str) -> None:
    if not isinstance(state, dict) or "smoothed" not in state:
        raise ModelError("state: 'decision' is not a decision state (from StreamingClassifier.state())")
    saved = state.get("rule", "ema")  # states saved before the rules existed are EMA states
    if saved != rule:
        raise ModelError(f"state: decision.rule is {saved!r}, this classifier decides by {rule!r}")


def make_decision(
    num_classes: int,
    rule: str = "ema",
    *,
    smoothing_ms: float = 300.0,
    threshold: float = 0.5,
    hysteresis: float = 0.1,
    mean_steps: int | None = None,
    class_thresholds: dict[int, float] | None = None,
) -> DecisionFilter | MeanLogitDecision:
    """The decision object of ``rule`` (``"ema"`` ignores ``mean_steps``, ``"mean"`` ignores ``smoothing_ms``).

    Raises:
        ConfigError: an unknown rule or a bad parameter (names it).
    """
    if rule == "ema":
        return DecisionFilter(num_classes, smoothing_ms, threshold, hysteresis, class_thresholds)
    if rule == "mean":
        return MeanLogitDecision(num_classes, mean_steps, threshold, hysteresis, class_thresholds)
    raise ConfigError(f"decision: must be one of {', '.join(DECISION_RULES)}, got {rule!r}")


def decision_options(settings: dict[str, Any] | None, *, model_steps: int | None = None) -> dict[str, Any]:
    """A checkpoint's ``decision`` dict (overrides merged in) → :class:`StreamingClassifier` keyword arguments.

    Keys (all optional, :data:`DECISION_KEYS`): ``rule`` (``"ema"``, the default, or ``"mean"``),
    ``smoothing_ms``, ``threshold``, ``hysteresis``, ``class_thresholds`` (``{class index:
    threshold}``; keys may be digit strings, as JSON writes them), ``mean_steps`` (present and
    None = since reset; absent = ``model_steps``, the model's own "mean over T") and
    ``window_steps`` (not a classifier option: see :func:`default_window_steps`). Missing keys
    take the classifier's defaults.

    Raises:
        ConfigError: an unknown key or a value of the wrong type (names ``decision.<key>``).
    """
    settings = dict(settings or {})
    for key in settings:
        if key not in DECISION_KEYS:
            raise ConfigError(f"decision.{key}: unknown decision setting (known: {', '.join(DECISION_KEYS)})")
    rule = settings.get("rule") or "ema"
    if rule not in DECISION_RULES:
        raise ConfigError(f"decision.rule: must be one of {', '.join(DECISION_RULES)}, got {rule!r}")
    out: dict[str, Any] = {"decision": rule}
    for key in ("smoothing_ms", "threshold", "hysteresis"):
        value = settings.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"decision.{key}: expected a number, got {value!r}")
        out[key] = float(value)
    per_class = settings.get("class_thresholds")
    if per_class:
        if not isinstance(per_class, dict) or len(per_class) > 4096:
            raise ConfigError(f"decision.class_thresholds: expected {{class index: threshold}}, got {str(per_class)[:60]!r}")
        out["class_thresholds"] = {}
        for key, value in per_class.items():
            index = key if isinstance(key, int) and not isinstance(key, bool) else None
            if isinstance(key, str) and key.isascii() and key.isdigit() and len(key) < 6:
                index = int(key)
            if index is None or isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"decision.class_thresholds: {str(key)[:20]!r}: {str(value)[:20]!r} is not class index: threshold")
            out["class_thresholds"][index] = float(value)
    if rule == "mean":
        value = settings["mean_steps"] if "mean_steps" in settings else model_steps
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"decision.mean_steps: expected an integer >= 1 or None (since reset), got {value!r}")
        out["mean_steps"] = value
    return out


def default_window_steps(settings: dict[str, Any] | None, model_steps: int, step_us: int | None = None) -> int:
    """Time steps per streaming window (the Binner's ``steps``) for ``run`` and ``eval --stream``.

    The checkpoint's ``decision["window_steps"]`` when set, else ``min(4, model_steps)`` steps and
    at most :data:`DEFAULT_WINDOW_US` (200 ms) of them, at least one: a decision can then change
    5 times a second. The state carry makes the per-step decisions independent of the window
    length (models/online_eval.py); the window sets how often they are published.

    Raises:
        ConfigError: ``decision.window_steps`` is not an integer >= 1.
    """
    value = (settings or {}).get("window_steps")
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"decision.window_steps: expected an integer >= 1, got {value!r}")
        return value
    cap = DEFAULT_WINDOW_STEPS
    if step_us:
        cap = min(cap, max(1, DEFAULT_WINDOW_US // int(step_us)))
    return max(1, min(cap, int(model_steps)))


class ResetPolicy(Protocol):
    """Decides, after each window, whether the network state should be cleared."""

    def after_window(self, t_start: int, t_end: int, counts: np.ndarray) -> bool:
        """Observe a processed window (µs bounds, per-step event counts ``[T]``); True = reset now."""
        ...

    def on_reset(self, t_us: int) -> None:
        """Told of every reset (manual ones too), at sensor time ``t_us``."""
        ...


class InactivityReset:
    """Reset once the event rate has stayed below ``rate_below_hz`` for ``for_ms``.

    The rate is the whole sensor's events per second in each time step (from the window's
    per-step counts). After firing, it waits for activity before it can fire again, so a long
    quiet scene costs one reset, not one per window.

    Args:
        rate_below_hz: events/s under which a step counts as quiet.
        for_ms: how long the quiet must last, ms (sensor time).
    """

    def __init__(self, rate_below_hz: float, for_ms: float) -> None:
        if not rate_below_hz > 0:
            raise ConfigError(f"rate_below_hz: must be > 0, got {rate_below_hz}")
        if not for_ms > 0:
            raise ConfigError(f"for_ms: must be > 0, got {for_ms}")
        self.rate_below_hz = float(rate_below_hz)
        self.for_us = float(for_ms) * 1000.0
        self._quiet_us = 0.0
        self._armed = True

    def after_window(self, t_start: int, t_end: int, counts: np.ndarray) -> bool:
        counts = np.asarray(counts, dtype=np.float64)
        if len(counts) == 0 or t_end <= t_start:
            return False
        dt_us = (t_end - t_start) / len(counts)
        for c in counts:
            if c / (dt_us * 1e-6) < self.rate_below_hz:
                self._quiet_us += dt_us
            else:
                self._quiet_us = 0.0
                self._armed = True
        return self._armed and self._quiet_us >= self.for_us

    def on_reset(self, t_us: int) -> None:
        # Fresh state: wait for activity, then for a new quiet spell, before firing again.
        self._armed = False
        self._quiet_us = 0.0


class PeriodicReset:
    """Reset every ``every_ms`` of sensor time (counted from the last reset of any kind).

    Args:
        every_ms: period, ms.
    """

    def __init__(self, every_ms: float) -> None:
        if not every_ms > 0:
            raise ConfigError(f"every_ms: must be > 0, got {every_ms}")
        self.every_us = float(every_ms) * 1000.0
        self._since: int | None = None

    def after_window(self, t_start: int, t_end: int, counts: np.ndarray) -> bool:
        if self._since is None:
            self._since = t_start
        return t_end - self._since >= self.every_us

    def on_reset(self, t_us: int) -> None:
        self._since = t_us


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
_allocator_tuned = False


def retain_freed_memory() -> bool:
    """Keep freed blocks of up to 32 MiB inside the process instead of returning them to the OS (glibc).

    A window of spikformer_2_256 allocates and frees tens of MB of activations; by default glibc
    maps each large block fresh and unmaps it on free, so every window page-faults its whole
    working set back in: on the 2-core CPU machine that was ~15 % of a 16-step window
    (bench/stream.py). This is the tuning PyTorch's CPU performance guide reaches with jemalloc
    or tcmalloc, done with two ``mallopt`` calls: mmap threshold 32 MiB, trim threshold 512 MiB.
    The process's resident memory then stays near its peak. Once per process; returns whether
    the settings are in force (False off glibc, e.g. macOS, Windows, musl).
    """
    global _allocator_tuned
    if _allocator_tuned:
        return True
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        _allocator_tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20) and libc.mallopt(_M_TRIM_THRESHOLD, 512 << 20))
    except (OSError, AttributeError):
        return False
    return _allocator_tuned


class MapCapture:
    """``capture(maps)`` / ``capturing`` of a classifier: whether its next steps capture spike maps,
    attention and the input frame (a ``threading.Event``, so another thread may switch it)."""

    _capture_maps: threading.Event

    def capture(self, maps: bool) -> None:
        """Switch capture of spike maps, attention and the input frame (thread-safe; next step on)."""
        if maps:
            self._capture_maps.set()
        else:
            self._capture_maps.clear()

    @property
    def capturing(self) -> bool:
        """Whether spike maps, attention and the input frame are captured."""
        return self._capture_maps.is_set()


def attach_maps(pred: Prediction, cap: Capture, row: int, frames: torch.Tensor) -> None:
    """Give ``pred`` batch row ``row`` of a ``maps`` capture: its spike maps ``{layer: [h, w]}``,
    its SSA maps ``[blocks, heads, N, N]`` (mean over the window's steps) and ``input_frame``,
    the window's events per pixel (``frames``: its own ``[T, 2, H, W]``)."""
    pred.spike_maps = {name: m[row].float().cpu().numpy() for name, m in cap.spike_maps.items()}
    pred.attn = torch.stack([a[:, row].float().mean(dim=0) for a in cap.attn]).cpu().numpy()
    pred.input_frame = frames.sum(dim=(0, 1)).float().cpu().numpy()


class _TensorCapture(Capture):
    """A :class:`Capture` that keeps firing rates as 0-d tensors until the forward pass is over.

    ``Capture`` turns every rate into a Python float as it is recorded: one host sync per layer
    (about 25 per window, each a device round trip on CUDA) and a graph break per layer under
    ``torch.compile``. Here the rates stay on the device and :meth:`rates` reads them all at once.
    """

    def record_rate(self, name: str, spikes: torch.Tensor) -> None:
        self.layer_rates[name] = spikes.detach().float().mean()

    def record_nonzero(self, name: str, values: torch.Tensor) -> None:
        self.layer_rates[name] = torch.count_nonzero(values.detach()) / max(values.numel(), 1)

    def rates(self) -> dict[str, float]:
        """The recorded rates as floats (one transfer)."""
        if not self.layer_rates:
            return {}
        names = list(self.layer_rates)
        values = torch.stack([torch.as_tensor(self.layer_rates[n]) for n in names]).tolist()
        return dict(zip(names, values, strict=True))


class RowCapture(_TensorCapture):
    """A :class:`_TensorCapture` that keeps every firing rate per batch row (one stream of a
    batched forward pass): each rate is a ``[B]`` tensor, the mean over everything but the batch
    axis (dimension 1 of the ``[T, B, ...]`` tensors the model records). The fused kernels' one
    spike count per call (``node.fired``) covers the whole batch, so the rows are counted from the
    spike tensors themselves; the fused first stem stage keeps its counts per row already."""

    per_row = True

    @staticmethod
    def _dims(t: torch.Tensor) -> tuple[int, ...]:
        return (0, *range(2, t.dim()))

    def record_rate(self, name: str, spikes: torch.Tensor) -> None:
        self.layer_rates[name] = spikes.detach().float().mean(dim=self._dims(spikes))

    def record_nonzero(self, name: str, values: torch.Tensor) -> None:
        v = values.detach()
        self.layer_rates[name] = (v != 0).sum(dim=self._dims(v)) / max(v.numel() // max(v.shape[1], 1), 1)

    def record_spikes(self, name: str, spikes: torch.Tensor, node: torch.nn.Module) -> None:
        self.record_rate(name, spikes)

    def row_rates(self) -> list[dict[str, float]]:
        """The recorded rates, one ``{layer: rate}`` dict per batch row (one transfer)."""
        if not self.layer_rates:
            return []
        names = list(self.layer_rates)
        table = torch.stack([torch.as_tensor(self.layer_rates[n]).float() for n in names]).cpu().tolist()
        return [dict(zip(names, column, strict=True)) for column in zip(*table, strict=True)]


def _pick_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ConfigError(f"device: {device!r} is not a torch device ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} asked for, but CUDA is not available")
    return dev


def _copy_memory(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return copy.deepcopy(value)


def input_scale_for(preprocessing: dict[str, Any], geometry: Any) -> float:
    """The :func:`evstream.binning.density_scale` from a checkpoint's training geometry (its
    ``preprocessing["sensor"]`` shown on ``out_size``) to ``geometry`` (the Binner's); 1.0 when
    the checkpoint does not say what sensor it was trained on."""
    from evstream.binning import Geometry, density_scale

    sensor, out = preprocessing.get("sensor"), preprocessing.get("out_size")
    if not sensor or not out:
        return 1.0
    try:
        trained = Geometry(SensorSize(int(sensor[0]), int(sensor[1])), (int(out[0]), int(out[1])))
    except (TypeError, ValueError, IndexError, ConfigError) as err:
        raise ModelError(f"preprocessing.sensor/out_size: {sensor!r} / {out!r} is not a sensor geometry ({err})") from None
    return density_scale(trained, geometry)


def _prepare_inference(model, device, threads, fuse, compile, input_scale, class_names):
    """What every classifier sets up once: ``(device, numba threads, model, input scale, class names)``.

    The model goes to the device in eval mode (its ``fuse_for_inference()`` copy on CPU unless
    ``fuse=False`` or ``compile``), its neurons at rest; ``threads`` sets torch's (and the fused
    kernels') threads on CPU.

    Raises:
        ConfigError: ``threads < 1``, a non-positive or non-finite ``input_scale``, or class names
            that do not match the model's classes.
    """
    device = _pick_device(device)
    numba_threads = None
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads: must be >= 1, got {threads}")
        if device.type == "cpu":
            torch.set_num_threads(threads)
            numba_threads = min(threads, numba.config.NUMBA_NUM_THREADS)
    if device.type == "cpu":
        retain_freed_memory()
    source = model
    if fuse is None:
        fuse = device.type == "cpu" and not compile
    if fuse and hasattr(model, "fuse_for_inference"):
        model = copy.deepcopy(model).to(device).eval().fuse_for_inference()
    model = model.to(device).eval()
    input_scale = float(input_scale)
    if not math.isfinite(input_scale) or input_scale <= 0:
        raise ConfigError(f"input_scale: must be a positive finite number, got {input_scale}")
    functional.reset_net(model)  # a new stream starts from rest, whatever ran before
    num_classes = int(getattr(source, "num_classes", 0)) or len(DVS_GESTURE_CLASSES)
    names = class_names if class_names is not None else getattr(source, "class_names", None)
    names = tuple(names) if names else DVS_GESTURE_CLASSES[:num_classes]
    if len(names) != num_classes:
        raise ConfigError(f"class_names: {len(names)} names for a model with {num_classes} classes")
    return device, numba_threads, model, input_scale, names


class StreamingClassifier(MapCapture):
    """Run a Spikformer window by window with its LIF state carried across windows.

    Args:
        model: a ``models.spikformer.Spikformer`` (anything with ``step_logits(x, capture)``
            returning ``[T, B, C]`` and spikingjelly neurons inside).
        device: ``"auto"`` (CUDA when present, else CPU), or a torch device.
        threads: CPU threads for torch (``torch.set_num_threads``) and for the fused numba kernels;
            None leaves the defaults (all cores).
        smoothing_ms: ``"ema"`` rule: smoothing time constant, ms (see :class:`DecisionFilter`).
        threshold: decision confidence threshold (both rules).
        hysteresis: decision hysteresis margin (both rules).
        decision: the decision rule, ``"ema"`` (:class:`DecisionFilter`) or ``"mean"``
            (:class:`MeanLogitDecision`).
        mean_steps: ``"mean"`` rule: steps the mean of logits covers; None = since the last reset.
        class_thresholds: ``{class index: threshold}``: classes that need their own threshold.
        reset_policy: when to clear the state on its own; None = only on :meth:`reset`.
        compile: wrap the model in ``torch.compile``; the first window then pays for a warm-up
            call on zeros (its state is discarded). Meant for CUDA: on the 2-core CPU machine the
            fused eager form was the fastest measured (spikformer_2_256, 16-step windows: 4.8 ms
            per step fused, 5.6 compiled fused after ~20 minutes of compiling, 6.3 compiled
            unfused; bench/stream.py --compile), and under compile the numba kernels step aside.
        fuse: run a copy of the model prepared by its ``fuse_for_inference()``: BatchNorm folded
            into the convolutions, the stem channels-last, the first stem stage (conv → LIF →
            max-pool) and every LIF's step loop as numba passes, the k = 1 convolutions as
            matrix products. The caller's model is left as it was (it can still be saved).
            Close to the unfused model, not bit-identical: other summation orders change last
            bits, which flip the odd spike on a threshold, and the flip carries on (at
            spikformer_2_256, 0.32 % of spikes, 0 / 48 window decisions and 1.3 % of per-step
            decisions differed; see models/fused.py); windows of any length still equal one
            pass (logits within 1e-5). None (default): fuse on CPU without ``compile``, where
            it runs spikformer_2_256 about 2.4x faster (bench/stream.py); not on CUDA, where the
            numba kernels do not apply.
        energy: record every layer's firing rate and estimate each window's energy
            (``Prediction.layer_rates``, ``energy_uj``); costs a reduction per layer (about 5 % of
            a 1-step window of spikformer_2_256 on CPU, bench/stream.py). False leaves them empty / None.
        class_names: names of the classes; default the model's ``class_names``, else DVS128 Gesture.
        on_change: called with the :class:`Prediction` of every window whose label changed
            (the last ``CHANGES_KEPT`` of them are also kept in :attr:`changes`).
        input_scale: multiplies every input count before the network (default 1): the density
            match of :func:`evstream.binning.density_scale` when the sensor differs from the one
            the model was trained on (run and eval set it from the checkpoint's preprocessing).

    Raises:
        ConfigError: a bad option (names it).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        device: str | torch.device = "auto",
        threads: int | None = None,
        smoothing_ms: float = 300.0,
        threshold: float = 0.5,
        hysteresis: float = 0.1,
        decision: str = "ema",
        mean_steps: int | None = None,
        class_thresholds: dict[int, float] | None = None,
        reset_policy: ResetPolicy | None = None,
        compile: bool = False,
        fuse: bool | None = None,
        energy: bool = True,
        class_names: list[str] | tuple[str, ...] | None = None,
        on_change: Callable[[Prediction], None] | None = None,
        input_scale: float = 1.0,
    ) -> None:
        if not hasattr(model, "step_logits"):
            raise ModelError(f"model: {type(model).__name__} has no step_logits(x, capture); not a Spikformer")
        # the fused kernels' threads are set per calling thread in step()
        self.device, self._numba_threads, self.model, self.input_scale, self.class_names = _prepare_inference(
            model, device, threads, fuse, compile, input_scale, class_names)
        num_classes = self.num_classes = len(self.class_names)
        self.decisions: DecisionFilter | MeanLogitDecision = make_decision(
            num_classes,
            decision,
            smoothing_ms=smoothing_ms,
            threshold=threshold,
            hysteresis=hysteresis,
            mean_steps=mean_steps,
            class_thresholds=class_thresholds,
        )
        self.energy = bool(energy)
        self.reset_policy = reset_policy
        self.on_change = on_change
        self.changes: collections.deque[Prediction] = collections.deque(maxlen=CHANGES_KEPT)
        self.resets = 0
        self._capture_maps = threading.Event()
        # step, reset and the state calls may come from different threads (a control socket).
        self._lock = threading.RLock()
        self._forward: Callable[..., torch.Tensor] = self.model.step_logits
        self._warm = not compile
        if compile:
            self._forward = torch.compile(self.model.step_logits, dynamic=False)
        self._windows = 0
        self._last_t_end: int | None = None
        # Label of the last Prediction handed out: a reset that drops a gesture shows as a change.
        self._published_label = NO_GESTURE

    @property
    def decision_settings(self) -> dict[str, Any]:
        """The decision rule and its parameters (``rule``, ``threshold``, ``hysteresis``, and
        ``smoothing_ms`` or ``mean_steps``), as in a checkpoint's ``decision`` dict."""
        return self.decisions.settings()

    def reset(self) -> None:
        """Clear every neuron's state and the decision state; counted in ``Prediction.resets``."""
        with self._lock:
            functional.reset_net(self.model)
            self.decisions.reset()
            self.resets += 1
            if self.reset_policy is not None:
                self.reset_policy.on_reset(self._last_t_end or 0)

    def state(self) -> dict[str, Any]:
        """Deep copy of the stream state: every MemoryModule's memories and the decision filter.

        Returns:
            ``{"memories": {name: value}, "decision": {...}}`` (the decision rule's state: ``rule``,
            smoothed probabilities and label, and for ``"mean"`` its ring buffer); names as in spikingjelly's
            ``named_memories`` (e.g. ``"blocks.0.attn.q.lif.v"``). Valid before the first step
            (fresh memories are the float reset values).
        """
        with self._lock:
            memories = {name: _copy_memory(value) for name, value in base.named_memories(self.model)}
            return {"memories": memories, "decision": self.decisions.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state` (copied again, so the dict can be reused).

        Raises:
            ModelError: the dict does not hold exactly this model's memories (names the first), or
                holds the state of another decision rule.
        """
        with self._lock:
            self._load_state(state)

    def _load_state(self, state: dict[str, Any]) -> None:
        memories = state.get("memories") if isinstance(state, dict) else None
        if not isinstance(memories, dict):
            raise ModelError("state: expected a dict with 'memories' (from StreamingClassifier.state())")
        names = [name for name, _ in base.named_memories(self.model)]
        missing = [n for n in names if n not in memories]
        extra = [n for n in memories if n not in set(names)]
        if missing or extra:
            which = f"missing memory {missing[0]!r}" if missing else f"unknown memory {extra[0]!r}"
            raise ModelError(f"state: {which} for this model")
        values = []
        for name in names:
            value = _copy_memory(memories[name])
            values.append(value.to(self.device) if isinstance(value, torch.Tensor) else value)
        base.load_memories(self.model, values)
        if "decision" in state:
            self.decisions.load_state(state["decision"])

    def warm_up(self, frames_shape: tuple[int, ...]) -> None:
        """Run the (compiled) model on zeros of ``[T, 1, 2, H, W]``, then restore the state.

        With ``compile=True`` this pays the compilation before the first live window (called
        on its own by the first :meth:`step`). Two calls: the state turns from the float reset
        value into a tensor after the first, which torch.compile specialises anew
        (shared/reference/spikformer.md §7).
        """
        with self._lock:
            saved = self.state()
            zeros = torch.zeros(frames_shape, device=self.device)
            with torch.inference_mode():
                for _ in range(2):
                    self._forward(zeros, capture=_TensorCapture(maps=False) if self.energy else None)
            functional.invalidate_reset_cache(self.model)
            self.load_state(saved)
            self._warm = True

    def step(
        self,
        window: Any,
        *,
        t_start: int | None = None,
        t_end: int | None = None,
        step_us: int = _DEFAULT_STEP_US,
    ) -> Prediction:
        """Classify one window, carrying the state on from the previous one.

        Args:
            window: an ``evstream.binning.Window`` (``frames [T, 2, H, W]``, ``t_start``,
                ``t_end``, ``counts``), or a tensor / array ``[T, 2, H, W]`` or ``[T, 1, 2, H, W]``
                of event counts.
            t_start: for a bare tensor: window start, µs (default: the previous window's end, or 0).
            t_end: for a bare tensor: window end, µs (default ``t_start + T * step_us``).
            step_us: for a bare tensor without ``t_end``: step duration, µs.

        Returns:
            The :class:`Prediction` for the window.

        Raises:
            ModelError: the frames do not have the shape ``[T, (1,) 2, H, W]``.
        """
        with self._lock:
            return self._step(window, t_start, t_end, step_us)

    def _step(self, window: Any, t_start: int | None, t_end: int | None, step_us: int) -> Prediction:
        began = time.perf_counter()
        if self._numba_threads is not None:
            numba.set_num_threads(self._numba_threads)  # numba's setting belongs to the calling thread
        frames, t0, t1, counts, index = self._unpack(window, t_start, t_end, step_us)
        x = frames.to(self.device, dtype=torch.float32, non_blocking=True)
        if self.input_scale != 1.0:
            x = x * self.input_scale
        if not self._warm:
            self.warm_up(tuple(x.shape))
        maps = self._capture_maps.is_set()
        cap = _TensorCapture(maps=maps) if maps or self.energy else None
        with torch.inference_mode():
            logits_t = self._forward(x, capture=cap)[:, 0]
            probs_t = torch.softmax(logits_t.float(), dim=-1)
        logits = logits_t.float().cpu().numpy()
        step_probs = probs_t.cpu().numpy()
        steps = len(logits)
        durations = np.full(steps, (t1 - t0) / steps, dtype=np.float64)
        step_labels = self.decisions.feed(logits, step_probs, durations)
        label = int(step_labels[-1])
        layer_rates = cap.rates() if cap is not None else {}
        energy = estimate_energy(self.model, layer_rates, steps=steps, batch=1).total_uj if self.energy else None
        pred = Prediction(
            t_start=t0,
            t_end=t1,
            probs=step_probs.mean(axis=0).astype(np.float32),
            smoothed=self.decisions.smoothed.astype(np.float32),
            label=label,
            name=self.class_names[label] if label != NO_GESTURE else NO_GESTURE_NAME,
            confidence=self.decisions.confidence,
            changed=label != self._published_label,
            logits=logits.astype(np.float32, copy=False),
            step_labels=step_labels,
            energy_uj=energy,
            layer_rates=layer_rates,
            index=index,
            probs_kind=self.decisions.kind,
        )
        if maps:
            attach_maps(pred, cap, 0, frames[:, 0])
        self._windows += 1
        self._last_t_end = t1
        self._published_label = label
        if self.reset_policy is not None and self.reset_policy.after_window(t0, t1, counts):
            self.reset()
        pred.resets = self.resets
        pred.infer_ms = (time.perf_counter() - began) * 1000.0
        if pred.changed:
            self.changes.append(pred)
            if self.on_change is not None:
                self.on_change(pred)
        return pred

    def _unpack(
        self, window: Any, t_start: int | None, t_end: int | None, step_us: int
    ) -> tuple[torch.Tensor, int, int, np.ndarray, int]:
        if hasattr(window, "frames"):
            frames = torch.as_tensor(np.asarray(window.frames))
            t0, t1 = int(window.t_start), int(window.t_end)
            counts = getattr(window, "counts", None)
            index = int(getattr(window, "index", self._windows))
        else:
            frames = window if isinstance(window, torch.Tensor) else torch.as_tensor(np.asarray(window))
            counts = None
            index = self._windows
            t0 = int(t_start) if t_start is not None else (self._last_t_end or 0)
            t1 = 0
        if frames.ndim == 4:
            frames = frames.unsqueeze(1)
        if frames.ndim != 5 or frames.shape[1] != 1 or frames.shape[2] != 2 or frames.shape[0] < 1:
            raise ModelError(f"frames: expected [T, 2, H, W] or [T, 1, 2, H, W], got {list(frames.shape)}")
        steps = frames.shape[0]
        if not hasattr(window, "frames"):
            t1 = int(t_end) if t_end is not None else t0 + steps * int(step_us)
        if t1 <= t0:
            raise ModelError(f"window: t_end {t1} µs is not after t_start {t0} µs")
        if counts is None:
            counts = frames.sum(dim=(1, 2, 3, 4)).to(torch.int64).cpu().numpy()
        return frames, t0, t1, np.asarray(counts), index

