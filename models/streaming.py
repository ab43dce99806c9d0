"""Stateful streaming inference: a Spikformer that keeps its LIF state from one window to the next.

The :class:`StreamingClassifier` is the one place that owns the network's neuron state
(spikingjelly keeps memories such as ``v`` inside the modules, and they persist across calls
until ``functional.reset_net``; shared/reference/spikformer.md §7). It feeds each
:class:`~evstream.binning.Window` ``[T, 2, H, W]`` to the model as ``[T, 1, 2, H, W]`` without
resetting, so cutting a stream into windows of any length gives the per-step logits of one long
run (Spikformer is causal in time: every op except the LIF recurrence runs per step; §6).

Per-step logits become decisions in :class:`DecisionFilter`: softmax, an exponential moving
average with a time constant in ms over the steps' real durations, then a confidence threshold
with hysteresis and a "no gesture" state (:data:`evstream.labels.NO_GESTURE`). Online output
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
from evstream.labels import DVS_GESTURE_CLASSES, NO_GESTURE
from models.energy import estimate_energy
from models.spikformer import Capture

__all__ = [
    "StreamingClassifier",
    "Prediction",
    "DecisionFilter",
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
        probs: mean over the window's steps of the per-step softmax, float32 ``[C]``.
        smoothed: smoothed probabilities after the window's last step, float32 ``[C]``.
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


class DecisionFilter:
    """Per-step probabilities → smoothed probabilities → a label with hysteresis.

    Smoothing is an exponential moving average whose weight follows each step's real duration:
    ``s += (1 - exp(-dt / tau)) * (p - s)``, so windows of different lengths or a changed step
    size smooth over the same time in ms. The average starts (and restarts on ``reset``) at
    the uniform distribution, so no class is above any sensible threshold before evidence.

    Decision rule, applied after every step:

    - the current label drops to ``NO_GESTURE`` when its smoothed probability falls below
      ``threshold - hysteresis``;
    - a new label ``k`` is taken when ``s[k] > threshold`` and ``s[k]`` beats the current label's
      smoothed probability by at least ``hysteresis`` (from no gesture: ``s[k] > threshold``).

    Choose ``threshold`` for how sure a decision must be (0.5 with 11 classes is already a
    strong majority), ``hysteresis`` against flicker near the threshold, ``smoothing_ms`` for
    the trade between latency (larger is slower to switch) and stability.

    Args:
        num_classes: C.
        smoothing_ms: EMA time constant, ms; 0 disables smoothing.
        threshold: confidence a class needs to be decided, in (0, 1].
        hysteresis: margin, in [0, threshold].
    """

    def __init__(
        self, num_classes: int, smoothing_ms: float = 300.0, threshold: float = 0.5, hysteresis: float = 0.1
    ) -> None:
        if num_classes < 1:
            raise ConfigError(f"num_classes: must be at least 1, got {num_classes}")
        if not smoothing_ms >= 0 or not math.isfinite(smoothing_ms):
            raise ConfigError(f"smoothing_ms: must be a finite number >= 0, got {smoothing_ms}")
        if not 0 < threshold <= 1:
            raise ConfigError(f"threshold: must lie in (0, 1], got {threshold}")
        if not 0 <= hysteresis <= threshold:
            raise ConfigError(f"hysteresis: must lie in [0, threshold={threshold}], got {hysteresis}")
        self.num_classes = num_classes
        self.tau_us = smoothing_ms * 1000.0
        self.threshold = threshold
        self.hysteresis = hysteresis
        self.reset()

    def reset(self) -> None:
        """Back to uniform smoothed probabilities and no gesture."""
        self.smoothed = np.full(self.num_classes, 1.0 / self.num_classes, dtype=np.float64)
        self.label = NO_GESTURE

    def state(self) -> dict[str, Any]:
        """A copy of the filter's state (for :meth:`load_state`)."""
        return {"smoothed": self.smoothed.copy(), "label": self.label}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state`."""
        self.smoothed = np.array(state["smoothed"], dtype=np.float64, copy=True)
        self.label = int(state["label"])

    def update(self, probs: np.ndarray, durations_us: np.ndarray) -> np.ndarray:
        """Feed per-step probabilities; return the label after each step.

        Args:
            probs: ``[T, C]`` probabilities of each step.
            durations_us: ``[T]`` duration of each step, µs.

        Returns:
            int64 ``[T]``: the decided label after each step (``NO_GESTURE`` = -1).
        """
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != self.num_classes:
            raise ModelError(f"probs: expected [T, {self.num_classes}], got {list(probs.shape)}")
        if self.tau_us > 0:
            alphas = 1.0 - np.exp(-np.asarray(durations_us, dtype=np.float64) / self.tau_us)
        else:
            alphas = np.ones(len(probs))
        labels = np.empty(len(probs), dtype=np.int64)
        s = self.smoothed
        for i, p in enumerate(probs):
            s += alphas[i] * (p - s)
            self._decide(s)
            labels[i] = self.label
        return labels

    def _decide(self, s: np.ndarray) -> None:
        current = self.label
        if current != NO_GESTURE and s[current] < self.threshold - self.hysteresis:
            current = NO_GESTURE
        best = int(np.argmax(s))
        if best != current and s[best] > self.threshold:
            held = s[current] if current != NO_GESTURE else 0.0
            if s[best] - held >= self.hysteresis:
                current = best
        self.label = current

    @property
    def confidence(self) -> float:
        """Smoothed probability of the current label, or of the strongest class when none."""
        k = self.label if self.label != NO_GESTURE else int(np.argmax(self.smoothed))
        return float(self.smoothed[k])


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


class StreamingClassifier:
    """Run a Spikformer window by window with its LIF state carried across windows.

    Args:
        model: a ``models.spikformer.Spikformer`` (anything with ``step_logits(x, capture)``
            returning ``[T, B, C]`` and spikingjelly neurons inside).
        device: ``"auto"`` (CUDA when present, else CPU), or a torch device.
        threads: CPU threads for torch (``torch.set_num_threads``) and for the fused numba kernels;
            None leaves the defaults (all cores).
        smoothing_ms: decision smoothing time constant, ms (see :class:`DecisionFilter`).
        threshold: decision confidence threshold.
        hysteresis: decision hysteresis margin.
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
            Logits can differ from the unfused model's in the last bits (another summation
            order), which can flip a spike that sat exactly on a threshold; windows of any
            length still equal one pass. None (default): fuse on CPU without ``compile``, where
            it runs spikformer_2_256 about 2.4x faster (bench/stream.py); not on CUDA, where the
            numba kernels do not apply.
        energy: record every layer's firing rate and estimate each window's energy
            (``Prediction.layer_rates``, ``energy_uj``); costs a reduction per layer (about 5 % of
            a 1-step window of spikformer_2_256 on CPU, bench/stream.py). False leaves them empty / None.
        class_names: names of the classes; default the model's ``class_names``, else DVS128 Gesture.
        on_change: called with the :class:`Prediction` of every window whose label changed
            (the last ``CHANGES_KEPT`` of them are also kept in :attr:`changes`).

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
        reset_policy: ResetPolicy | None = None,
        compile: bool = False,
        fuse: bool | None = None,
        energy: bool = True,
        class_names: list[str] | tuple[str, ...] | None = None,
        on_change: Callable[[Prediction], None] | None = None,
    ) -> None:
        if not hasattr(model, "step_logits"):
            raise ModelError(f"model: {type(model).__name__} has no step_logits(x, capture); not a Spikformer")
        self.device = _pick_device(device)
        self._numba_threads: int | None = None  # the fused kernels' threads, set per calling thread in step()
        if threads is not None:
            if threads < 1:
                raise ConfigError(f"threads: must be >= 1, got {threads}")
            if self.device.type == "cpu":
                torch.set_num_threads(threads)
                self._numba_threads = min(threads, numba.config.NUMBA_NUM_THREADS)
        if self.device.type == "cpu":
            retain_freed_memory()
        if fuse is None:
            fuse = self.device.type == "cpu" and not compile
        if fuse and hasattr(model, "fuse_for_inference"):
            model = copy.deepcopy(model).to(self.device).eval().fuse_for_inference()
        self.model = model.to(self.device).eval()
        functional.reset_net(self.model)  # a new stream starts from rest, whatever ran before
        num_classes = int(getattr(model, "num_classes", 0)) or len(DVS_GESTURE_CLASSES)
        names = class_names if class_names is not None else getattr(model, "class_names", None)
        names = tuple(names) if names else DVS_GESTURE_CLASSES[:num_classes]
        if len(names) != num_classes:
            raise ConfigError(f"class_names: {len(names)} names for a model with {num_classes} classes")
        self.class_names: tuple[str, ...] = names
        self.num_classes = num_classes
        self.decisions = DecisionFilter(num_classes, smoothing_ms, threshold, hysteresis)
        self.energy = bool(energy)
        self.reset_policy = reset_policy
        self.on_change = on_change
        self.changes: collections.deque[Prediction] = collections.deque(maxlen=CHANGES_KEPT)
        self.resets = 0
        self._capture_maps = threading.Event()
        # step, reset and the state calls may come from different threads (a control socket).
        self._lock = threading.RLock()
        self._forward: Callable[..., torch.Tensor] = model.step_logits
        self._warm = not compile
        if compile:
            self._forward = torch.compile(model.step_logits, dynamic=False)
        self._windows = 0
        self._last_t_end: int | None = None
        # Label of the last Prediction handed out: a reset that drops a gesture shows as a change.
        self._published_label = NO_GESTURE

    def capture(self, maps: bool) -> None:
        """Switch capture of spike maps, attention and the input frame (thread-safe; next window on)."""
        if maps:
            self._capture_maps.set()
        else:
            self._capture_maps.clear()

    @property
    def capturing(self) -> bool:
        """Whether spike maps, attention and the input frame are captured."""
        return self._capture_maps.is_set()

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
            ``{"memories": {name: value}, "decision": {...}}``; names as in spikingjelly's
            ``named_memories`` (e.g. ``"blocks.0.attn.q.lif.v"``). Valid before the first step
            (fresh memories are the float reset values).
        """
        with self._lock:
            memories = {name: _copy_memory(value) for name, value in base.named_memories(self.model)}
            return {"memories": memories, "decision": self.decisions.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state` (copied again, so the dict can be reused).

        Raises:
            ModelError: the dict does not hold exactly this model's memories (names the first).
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
        step_labels = self.decisions.update(step_probs, durations)
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
        )
        if maps:
            self._attach_maps(pred, cap, frames)
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

    def _attach_maps(self, pred: Prediction, cap: Any, frames: torch.Tensor) -> None:
        pred.spike_maps = {name: m[0].float().cpu().numpy() for name, m in cap.spike_maps.items()}
        pred.attn = torch.stack([a[:, 0].float().mean(dim=0) for a in cap.attn]).cpu().numpy()
        pred.input_frame = frames[:, 0].sum(dim=(0, 1)).float().cpu().numpy()
