"""Many streams, one model: N independent event streams classified in one batched forward pass.

A :class:`MultiStreamClassifier` holds one copy of the network and runs the windows of N
streams as one batch ``[T, N, 2, H, W]``. Every spikingjelly memory (the LIF membranes ``v``)
is then a tensor whose batch index ``i`` belongs to stream ``i``, so each stream keeps its own
LIF state from window to window exactly as a :class:`~models.streaming.StreamingClassifier`
keeps the one stream's; :meth:`MultiStreamClassifier.reset` zeroes row ``i`` of every memory
(to the memory's spikingjelly reset value) and leaves the other rows alone. Each stream also has
its own decision rule (:func:`models.streaming.make_decision`), reset policy and counters.

What holds (tests/models/test_multistream.py, spikformer_tiny with real spikingjelly neurons,
fused and unfused): the per-step logits of 3 batched streams equal those of 3 separate
StreamingClassifiers fed the same windows to 1e-5 over several windows, decisions equal, and
after resetting stream 1 only, stream 1 equals a fresh classifier while streams 0 and 2 go on
unchanged (in that test the batched logits came out equal to the separate ones exactly, 0.0
apart). Nothing in the network mixes batch rows at inference (BatchNorm uses its running
statistics; attention runs within a sample), so batching changes only summation orders inside
batched matrix products: at ``spikformer_2_256`` (128×128, fused, CPU, untrained with BN gain 4;
4 streams × 3 windows of 4 steps, ``bench/gpu.py --device cpu --sections streams``) the batched
logits were up to 1.3e-5 from the separate ones, per-step labels equal. A membrane within an
ulp of its threshold could in principle fire on one side in one form and not the other, as
between the fused and unfused forms (models/fused.py); none did there.

The fused CPU path (models/fused.py) keeps its membranes as spikingjelly's ``v`` too, with a
batch dimension first (the first stem stage stores a channels-last ``[B, C, H, W]`` view), and
updates them in place; a row reset writes into the same tensors, so ``fuse`` works as for one
stream (default: fused on CPU without ``compile``).

Spike maps, attention and the input frame are captured per stream (``capture``: every row of
the batch, as :class:`~models.streaming.StreamingClassifier` captures its one), and so are the
firing rates and the energy estimate (``energy``: :class:`~models.streaming.RowCapture` keeps each
rate per batch row; ``Prediction.layer_rates`` and ``energy_uj`` are the stream's own, equal to
what a classifier of that stream alone records). ``Prediction.infer_ms`` is the wall time of the
whole batched call.
Every call takes one window from every stream, all with the same number of steps.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np
import torch
from spikingjelly.activation_based import base, functional

from evstream.errors import ConfigError, ModelError
from evstream.labels import NO_GESTURE
from models.energy import estimate_energy
from models.streaming import (
    NO_GESTURE_NAME,
    DecisionFilter,
    MapCapture,
    MeanLogitDecision,
    Prediction,
    ResetPolicy,
    RowCapture,
    _prepare_inference,
    attach_maps,
    make_decision,
)

__all__ = ["MultiStreamClassifier"]


class MultiStreamClassifier(MapCapture):
    """Classify N independent streams with one model, one batched forward pass per round.

    Args:
        model: a ``models.spikformer.Spikformer`` (anything with ``step_logits(x, capture)``
            returning ``[T, B, C]`` and spikingjelly neurons inside).
        streams: N, the number of streams (>= 1); stream ``i`` is batch row ``i``.
        device: ``"auto"`` (CUDA when present, else CPU), or a torch device.
        threads: CPU threads for torch and the fused numba kernels; None leaves the defaults.
        smoothing_ms, threshold, hysteresis, decision, mean_steps, class_thresholds: each stream's decision rule,
            as for :class:`~models.streaming.StreamingClassifier`.
        reset_policy: a callable returning a fresh :class:`~models.streaming.ResetPolicy`
            (e.g. ``lambda: InactivityReset(1000, 500)``), called once per stream; None = resets
            only by :meth:`reset`.
        compile: wrap the model in ``torch.compile`` (the first :meth:`step` pays for two
            warm-up calls on zeros whose state is discarded).
        fuse: run a copy of the model in its ``fuse_for_inference()`` form; None: on CPU without
            ``compile`` (as the StreamingClassifier). Unfused, the classifier runs ``model``
            itself, so do not give the same module to two classifiers.
        class_names: names of the classes; default the model's ``class_names``.
        input_scale: multiplies every input count before the network (default 1).
        energy: record every layer's firing rate per stream and estimate each stream's energy per
            window (``Prediction.layer_rates``, ``energy_uj``; models/energy.py): a reduction per
            layer, 8-11 % of a round for the shipped 2-64 at 4 streams on 2 CPU threads.

    Raises:
        ConfigError: a bad option (names it).
        ModelError: ``model`` is not a Spikformer.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        streams: int,
        *,
        device: str | torch.device = "auto",
        threads: int | None = None,
        smoothing_ms: float = 300.0,
        threshold: float = 0.5,
        hysteresis: float = 0.1,
        decision: str = "ema",
        mean_steps: int | None = None,
        class_thresholds: dict[int, float] | None = None,
        reset_policy: Callable[[], ResetPolicy] | None = None,
        compile: bool = False,
        fuse: bool | None = None,
        class_names: Sequence[str] | None = None,
        input_scale: float = 1.0,
        energy: bool = True,
    ) -> None:
        if not hasattr(model, "step_logits"):
            raise ModelError(f"model: {type(model).__name__} has no step_logits(x, capture); not a Spikformer")
        if isinstance(streams, bool) or not isinstance(streams, int) or streams < 1:
            raise ConfigError(f"streams: must be an integer >= 1, got {streams!r}")
        if reset_policy is not None and (hasattr(reset_policy, "after_window") or not callable(reset_policy)):
            raise ConfigError(
                "reset_policy: pass a callable that makes one policy per stream (e.g. lambda: InactivityReset(...)), "
                f"not {type(reset_policy).__name__}"
            )
        self.device, self._numba_threads, self.model, self.input_scale, self.class_names = _prepare_inference(
            model, device, threads, fuse, compile, input_scale, class_names)
        num_classes = self.num_classes = len(self.class_names)
        self.streams = streams
        self.decisions: list[DecisionFilter | MeanLogitDecision] = [
            make_decision(
                num_classes,
                decision,
                smoothing_ms=smoothing_ms,
                threshold=threshold,
                hysteresis=hysteresis,
                mean_steps=mean_steps,
                class_thresholds=class_thresholds,
            )
            for _ in range(streams)
        ]
        self.reset_policies: list[ResetPolicy | None] = [
            reset_policy() if reset_policy is not None else None for _ in range(streams)
        ]
        self.resets = [0] * streams
        self._windows = [0] * streams
        self._last_t_end: list[int | None] = [None] * streams
        self._published_label = [NO_GESTURE] * streams
        self._lock = threading.RLock()
        self._forward: Callable[..., torch.Tensor] = self.model.step_logits
        self._warm = not compile
        if compile:
            self._forward = torch.compile(self.model.step_logits, dynamic=False)
        self._memories_checked = False
        self._capture_maps = threading.Event()
        self.energy = bool(energy)

    def reset(self, stream: int | None = None) -> None:
        """Clear one stream's neuron and decision state (all streams when ``stream`` is None).

        Row ``stream`` of every spikingjelly memory is set to that memory's reset value; the
        other rows are not touched. Counted in that stream's ``Prediction.resets``.

        Raises:
            ConfigError: ``stream`` is not in ``0 .. streams - 1``.
        """
        with self._lock:
            if stream is None:
                functional.reset_net(self.model)
                for i in range(self.streams):
                    self._reset_decisions(i)
                return
            if isinstance(stream, bool) or not isinstance(stream, int) or not 0 <= stream < self.streams:
                raise ConfigError(f"stream: must be an integer in 0..{self.streams - 1}, got {stream!r}")
            self._reset_row(stream)
            self._reset_decisions(stream)

    def _reset_decisions(self, i: int) -> None:
        self.decisions[i].reset()
        self.resets[i] += 1
        policy = self.reset_policies[i]
        if policy is not None:
            policy.on_reset(self._last_t_end[i] or 0)

    def _reset_row(self, i: int) -> None:
        # spikingjelly keeps each memory as its float reset value until the first step, then as a
        # tensor [B, ...]; a float memory is already at rest for every row.
        with torch.inference_mode():
            for module in self.model.modules():
                if not isinstance(module, base.MemoryModule):
                    continue
                for key, value in module._memories.items():
                    if not isinstance(value, torch.Tensor):
                        continue
                    rest = module._memories_rv[key]
                    if isinstance(rest, torch.Tensor) and rest.dim() > 0 and rest.shape[0] == value.shape[0]:
                        rest = rest[i]
                    value[i] = rest

    def memories(self, stream: int) -> dict[str, Any]:
        """Copies of stream ``stream``'s row of every memory (``{name: tensor or float}``; names as in
        spikingjelly's ``named_memories``; a float memory is the shared reset value before the first step)."""
        with self._lock:
            out: dict[str, Any] = {}
            for name, value in base.named_memories(self.model):
                out[name] = value[stream].detach().clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
            return out

    def _warm_up(self, shape: tuple[int, ...]) -> None:
        saved = [value.detach().clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)
                 for _, value in base.named_memories(self.model)]
        zeros = torch.zeros(shape, device=self.device)
        with torch.inference_mode():
            for _ in range(2):  # the memories turn from floats into tensors after the first call
                self._forward(zeros, capture=RowCapture(maps=False) if self.energy else None)
        functional.invalidate_reset_cache(self.model)
        base.load_memories(self.model, saved)
        self._warm = True

    def step(self, windows: Sequence[Any]) -> list[Prediction]:
        """Classify one window of every stream in one batched pass, carrying each stream's state on.

        Args:
            windows: N ``evstream.binning.Window`` objects (``frames [T, 2, H, W]``, ``t_start``,
                ``t_end``, ``counts``, ``index``), window ``i`` for stream ``i``, all with the same
                frame shape.

        Returns:
            N :class:`~models.streaming.Prediction`, prediction ``i`` for stream ``i``.

        Raises:
            ModelError: not N windows, a window without frames, frames of another shape than
                ``[T, 2, H, W]`` or than the first window's, or ``t_end`` not after ``t_start``
                (names the window).
        """
        with self._lock:
            return self._step(windows)

    def _step(self, windows: Sequence[Any]) -> list[Prediction]:
        began = time.perf_counter()
        if self._numba_threads is not None:
            numba.set_num_threads(self._numba_threads)
        if len(windows) != self.streams:
            raise ModelError(f"windows: expected {self.streams} (one per stream), got {len(windows)}")
        frames = []
        for i, window in enumerate(windows):
            if not hasattr(window, "frames"):
                raise ModelError(f"windows[{i}]: expected an evstream Window with frames, got {type(window).__name__}")
            f = torch.as_tensor(np.asarray(window.frames))
            if f.ndim != 4 or f.shape[1] != 2 or f.shape[0] < 1:
                raise ModelError(f"windows[{i}].frames: expected [T, 2, H, W], got {list(f.shape)}")
            if frames and f.shape != frames[0].shape:
                raise ModelError(
                    f"windows[{i}].frames: shape {list(f.shape)} differs from windows[0]'s {list(frames[0].shape)}"
                )
            if int(window.t_end) <= int(window.t_start):
                raise ModelError(f"windows[{i}]: t_end {int(window.t_end)} µs is not after t_start {int(window.t_start)} µs")
            frames.append(f)
        x = torch.stack(frames, dim=1).to(self.device, dtype=torch.float32, non_blocking=True)  # [T, N, 2, H, W]
        if self.input_scale != 1.0:
            x = x * self.input_scale
        if not self._warm:
            self._warm_up(tuple(x.shape))
        maps = self._capture_maps.is_set()
        cap = RowCapture(maps=maps) if maps or self.energy else None
        with torch.inference_mode():
            logits_t = self._forward(x, capture=cap).float()
            probs_t = torch.softmax(logits_t, dim=-1)
        logits = logits_t.cpu().numpy()  # [T, N, C]
        probs = probs_t.cpu().numpy()
        if not self._memories_checked:
            self._check_memories()
        steps = logits.shape[0]
        rows = cap.row_rates() if cap is not None and self.energy else None
        infer_ms = (time.perf_counter() - began) * 1000.0
        preds = []
        for i, window in enumerate(windows):
            t0, t1 = int(window.t_start), int(window.t_end)
            durations = np.full(steps, (t1 - t0) / steps, dtype=np.float64)
            rule = self.decisions[i]
            step_labels = rule.feed(logits[:, i], probs[:, i], durations)
            label = int(step_labels[-1])
            pred = Prediction(
                t_start=t0,
                t_end=t1,
                probs=probs[:, i].mean(axis=0).astype(np.float32),
                smoothed=rule.smoothed.astype(np.float32),
                label=label,
                name=self.class_names[label] if label != NO_GESTURE else NO_GESTURE_NAME,
                confidence=rule.confidence,
                changed=label != self._published_label[i],
                logits=np.ascontiguousarray(logits[:, i], dtype=np.float32),
                step_labels=step_labels,
                infer_ms=infer_ms,
                energy_uj=None if rows is None else estimate_energy(self.model, rows[i], steps=steps).total_uj,
                layer_rates={} if rows is None else rows[i],
                index=int(getattr(window, "index", self._windows[i])),
                probs_kind=rule.kind,
            )
            if maps:
                attach_maps(pred, cap, i, frames[i])
            self._windows[i] += 1
            self._last_t_end[i] = t1
            self._published_label[i] = label
            policy = self.reset_policies[i]
            counts = getattr(window, "counts", None)
            if counts is None:
                counts = frames[i].sum(dim=(1, 2, 3)).to(torch.int64).numpy()
            if policy is not None and policy.after_window(t0, t1, np.asarray(counts)):
                self.reset(i)
            pred.resets = self.resets[i]
            preds.append(pred)
        return preds

    def _check_memories(self) -> None:
        # Per-row state and per-row reset rely on every memory having the batch first.
        for name, value in base.named_memories(self.model):
            if isinstance(value, torch.Tensor) and (value.dim() == 0 or value.shape[0] != self.streams):
                raise ModelError(
                    f"memory {name!r}: shape {list(value.shape)} has no batch dimension of {self.streams} first; "
                    "this model cannot keep one state per stream"
                )
        self._memories_checked = True
