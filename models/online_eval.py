"""Online evaluation: replay labelled recordings through the Binner and a StreamingClassifier.

Where the offline benchmark classifies whole pre-cut clips, this measures what a user of the
live pipeline sees: the smoothed decision at every time step of a continuous recording, scored
against the recording's labelled gesture segments (DVS128 Gesture ``_labels.csv`` format).

Decisions are taken after every model time step and stamped with the step's end (sensor µs).
Because the classifier carries its state across windows, the per-step decisions do not depend
on the window length (``steps``); a live pipeline shows them when their window closes, so add
up to one window to the latencies below for the published stream. That is why the default
window is short (:func:`models.streaming.default_window_steps`: at most 4 steps and 200 ms, so a
published decision can change 5 times a second) whatever T the model was trained with.

Figures (all from the per-step decisions):

- ``per_class``: for each class, the fraction of decisions inside its labelled segments that
  name the class ("online accuracy"); ``accuracy`` pools every labelled decision,
  ``balanced_accuracy`` averages the classes present; ``accuracy_interval``: a 95 % bootstrap
  interval of ``accuracy`` over gestures (:func:`accuracy_interval`), how far another set of as
  many gestures could move it.
- ``vs_onset``: accuracy of the decision taken ``d`` ms after each segment's onset (the latest
  decision at or before onset + d), over the segments at least ``d`` long.
- ``latency``: onset → first correct *stable* decision (the label stays correct for
  ``stable_ms`` or to the segment's end); segments never decided correctly count as misses.
  The DVS Gesture TrueNorth demo detected onsets with 105 ms latency (Amir et al., CVPR 2017).
- ``segment_accuracy``: fraction of segments whose most frequent gesture decision is right.
- ``false_alarm``: fraction of decisions outside every segment that name a gesture.

Calibration (:func:`calibrate_decisions`, ``python main.py eval --stream ... --calibrate --out
CKPT``) chooses the decision rule and its parameters for a checkpoint on labelled recordings
that are *not* the test recordings (an IBM folder's ``train`` split by default). Each recording
is replayed through the model once; the per-step logits and probabilities are kept, and every
candidate of :data:`CALIBRATION_GRID` re-decides from them (the smoothed probabilities once per
rule and parameter, the labels once per threshold and hysteresis), so the grid costs seconds,
not replays. The objective is :func:`calibration_score`: online ``accuracy`` (fraction of the
decisions inside labelled segments that name the segment's class) minus ``false_alarm``
(fraction of the decisions outside every segment that name a gesture); ties go to the first
candidate in grid order. The best candidates are then refined with per-class thresholds
(``class_thresholds``) for the classes that take most of their false alarms, kept only where the
objective rises: with the DVS128 Gesture classes, a person standing still between gestures
looks most like "other gestures", which then needs more evidence than the named gestures.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from evstream.errors import ConfigError, EventFileError
from evstream.labels import NO_GESTURE

__all__ = [
    "LabelledRecording",
    "Decisions",
    "find_recordings",
    "replay",
    "score_decisions",
    "accuracy_interval",
    "evaluate_online",
    "calibrate_decisions",
    "calibration_score",
    "redecide",
    "CALIBRATION_GRID",
    "write_report",
    "DEFAULT_ONSETS_MS",
]

DEFAULT_ONSETS_MS: tuple[int, ...] = (100, 200, 500, 1000, 2000, 3000, 5000)
_RECORDING_SUFFIXES = (".aedat4", ".aedat")

CALIBRATION_GRID: dict[str, Any] = {
    "rules": {"ema": {"smoothing_ms": (25.0, 50.0, 100.0, 200.0, 300.0, 500.0)}, "mean": {"mean_steps": (8, 16, 32)}},
    "threshold": (0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7),
    "hysteresis": (0.0, 0.05, 0.1),
    "class_threshold": (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
}
"""The candidates :func:`calibrate_decisions` tries: each rule with each of its parameter values,
times every threshold and hysteresis (126 EMA and 63 mean candidates); then, for the best
:data:`REFINE_TOP` of them, own thresholds (``class_threshold`` values) for the classes that
take the most false alarms (a higher one) and for those most often left undecided inside their own
gestures (a lower one: a catch-all class such as "other gestures" spreads its probability)."""
REFINE_TOP = 10
"""How many of the best grid candidates get per-class thresholds tried, besides the best candidate
of each threshold (see :func:`calibrate_decisions`)."""
REFINE_CLASSES = 3
"""At most this many classes per candidate get a higher threshold of their own (those taking >= 10 % of
its false alarms), and as many a lower one (those with >= 10 % of its undecided steps inside gestures)."""


@dataclass
class LabelledRecording:
    """A recording and its gesture segments.

    Attributes:
        path: the ``.aedat4`` / ``.aedat`` file.
        labels: ``LABEL_DTYPE`` ``[n]`` (``label`` 0-based, ``t_start``, ``t_end`` µs).
        labels_path: the CSV the labels came from.
    """

    path: Path
    labels: np.ndarray
    labels_path: Path


@dataclass
class Decisions:
    """Per-step decisions of one replayed recording.

    Attributes:
        t_us: int64 ``[S]`` end of each step, µs (sensor clock).
        labels: int64 ``[S]`` decided label after each step (``NO_GESTURE`` = -1).
        duration_s: sensor time replayed, s.
        wall_s: wall time of the replay (reading, binning, inference), s.
        windows: windows classified.
        resets: resets made by the reset policy during the replay.
        events: events read.
        infer_ms: per-window ``infer_ms`` of the classifier.
        logits: float32 ``[S, C]`` per-step logits (what calibration re-decides from).
        probs: float32 ``[S, C]`` per-step softmax, as the classifier computed it.
        durations_us: float64 ``[S]`` duration of each step, µs.
        restarts: int64 indices of the steps that began on a fresh decision state (0 and every
            step after a reset by the policy).
    """

    t_us: np.ndarray
    labels: np.ndarray
    duration_s: float
    wall_s: float
    windows: int
    resets: int
    events: int
    infer_ms: list[float] = field(default_factory=list)
    logits: np.ndarray | None = None
    probs: np.ndarray | None = None
    durations_us: np.ndarray | None = None
    restarts: np.ndarray | None = None


def _window_steps(preprocessing: dict[str, Any], classifier: Any, steps: int | None, step_us: int) -> int:
    from models.streaming import default_window_steps

    if steps:
        return int(steps)
    model_steps = preprocessing.get("steps") or getattr(getattr(classifier.model, "config", None), "steps", None)
    return default_window_steps({}, int(model_steps or 16), step_us)


def _labels_beside(path: Path) -> Path:
    return path.with_name(f"{path.stem}_labels.csv")


def _ibm_folder(folder: Path) -> Path | None:
    for candidate in (folder, folder / "DvsGesture"):
        if (candidate / "trials_to_test.txt").is_file():
            return candidate
    return None


def find_recordings(
    paths: Sequence[str | os.PathLike], labels: str | os.PathLike | None = None, split: str = "test"
) -> list[LabelledRecording]:
    """Resolve ``--stream`` arguments into labelled recordings.

    Args:
        paths: recordings (``.aedat4`` / ``.aedat``, labels in ``<stem>_labels.csv`` beside
            each), or IBM-layout folders (``DvsGesture/`` with ``trials_to_<split>.txt``).
        labels: a label CSV for a single recording given in ``paths`` (overrides the one beside it).
        split: which list of an IBM folder: ``"test"`` or ``"train"``.

    Raises:
        ConfigError: ``labels`` with more than one path, an unknown split.
        EventFileError: a missing recording, label file or trial list (names it).
    """
    from evstream.io.aedat3 import read_labels

    if split not in ("test", "train"):
        raise ConfigError(f"split: 'test' or 'train', got {split!r}")
    if labels is not None and len(paths) != 1:
        raise ConfigError(f"--labels: names one label file, but {len(paths)} recordings were given")
    found: list[LabelledRecording] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            root = _ibm_folder(path)
            if root is None:
                raise EventFileError(path, "folder without trials_to_test.txt (expected the IBM DvsGesture layout)")
            listing = root / f"trials_to_{split}.txt"
            if not listing.is_file():
                raise EventFileError(listing, "no such file")
            names = [line.strip() for line in listing.read_text(errors="replace").splitlines() if line.strip()]
            if not names:
                raise EventFileError(listing, "lists no recordings")
            for name in names:
                recording = root / name
                if not recording.is_file():
                    raise EventFileError(recording, f"listed in {listing.name} but missing")
                found.append(
                    LabelledRecording(recording, read_labels(_labels_beside(recording)), _labels_beside(recording))
                )
            continue
        if not path.is_file():
            raise EventFileError(path, "no such file or folder")
        if path.suffix.lower() not in _RECORDING_SUFFIXES:
            raise EventFileError(path, f"not a recording (expected {' or '.join(_RECORDING_SUFFIXES)}) or IBM folder")
        label_path = Path(labels) if labels is not None else _labels_beside(path)
        if not label_path.is_file():
            raise EventFileError(label_path, f"no label file for {path.name} (give one with --labels)")
        found.append(LabelledRecording(path, read_labels(label_path), label_path))
    return found


def replay(
    recording: LabelledRecording | str | os.PathLike,
    classifier: Any,
    preprocessing: dict[str, Any],
    *,
    steps: int | None = None,
    step_us: int | None = None,
    chunk_us: int = 50_000,
) -> Decisions:
    """Replay one recording as fast as possible through a fresh Binner and ``classifier``.

    The classifier is reset first (a recording is a new stream); its reset policy, if any,
    acts during the replay.

    Args:
        recording: a :class:`LabelledRecording` or a recording path.
        classifier: a :class:`models.streaming.StreamingClassifier`.
        preprocessing: the checkpoint's (``out_size``, ``step_us``, ``steps``, ``mode``).
        steps: time steps per window; default :func:`models.streaming.default_window_steps` of the
            checkpoint's ``steps`` (at most 4 and 200 ms; the decisions do not depend on it).
        step_us: step length, µs; default the checkpoint's (changing it changes what the model sees).
        chunk_us: sensor time read per chunk from the file, µs.

    Raises:
        EventFileError: the recording cannot be read (names the file and byte offset).
        ConfigError: a count-mode checkpoint without ``step_us``, or bad options.
    """
    from evstream.binning import Binner
    from evstream.sources.file import FileSource
    from models.streaming import input_scale_for

    path = recording.path if isinstance(recording, LabelledRecording) else Path(recording)
    step_us = int(step_us or preprocessing.get("step_us") or 0)
    if step_us <= 0:
        raise ConfigError(
            "step_us: the checkpoint bins by event count (no step_us); give --step-ms for streaming evaluation"
        )
    steps = _window_steps(preprocessing, classifier, steps, step_us)
    # The model's own input size is authoritative: (width, height) for the Binner, from img_size (H, W).
    img_size = getattr(getattr(classifier.model, "config", None), "img_size", None)
    out_size = (img_size[1], img_size[0]) if img_size is not None else preprocessing.get("out_size")
    t_list: list[np.ndarray] = []
    label_list: list[np.ndarray] = []
    logit_list: list[np.ndarray] = []
    prob_list: list[np.ndarray] = []
    duration_list: list[np.ndarray] = []
    restarts = [0]
    infer_ms: list[float] = []
    classifier.reset()
    resets_before = classifier.resets
    events = 0
    began = time.perf_counter()
    with FileSource(path, speed=None, chunk_us=chunk_us) as source:
        binner = Binner(source.sensor_size, None if out_size is None else tuple(out_size), step_us=step_us, steps=steps)
        # Counts per model pixel grow with the sensor pixels behind it: show the network the
        # densities of the sensor it was trained on (evstream.binning.density_scale).
        classifier.input_scale = input_scale_for(preprocessing, binner.geometry)
        first = last = None

        seen = {"steps": 0, "resets": classifier.resets}

        def consume(windows: list) -> None:
            for window in windows:
                pred = classifier.step(window)
                n = len(pred.step_labels)
                t_list.append(window.t_start + (np.arange(1, n + 1) * (window.t_end - window.t_start)) // n)
                label_list.append(pred.step_labels)
                logit_list.append(pred.logits)
                prob_list.append(_softmax32(pred.logits))
                duration_list.append(np.full(n, (window.t_end - window.t_start) / n, dtype=np.float64))
                infer_ms.append(pred.infer_ms)
                seen["steps"] += n
                if pred.resets != seen["resets"]:  # the policy reset the state after this window
                    seen["resets"] = pred.resets
                    restarts.append(seen["steps"])

        for chunk in source:
            events += len(chunk.events)
            first = chunk.t_start if first is None else first
            last = chunk.t_end
            consume(binner.push(chunk))
        if last is not None:
            # Close the last partial window (the Binner anchors at the first chunk's start): its
            # missing steps are quiet, as in a still scene; no window lies wholly past the end.
            span = steps * step_us
            consume(binner.flush(first + -(-(last - first) // span) * span))
    wall = time.perf_counter() - began
    t_us = np.concatenate(t_list) if t_list else np.zeros(0, np.int64)
    labels = np.concatenate(label_list) if label_list else np.zeros(0, np.int64)
    num_classes = int(classifier.num_classes)
    logits = np.concatenate(logit_list) if logit_list else np.zeros((0, num_classes), np.float32)
    probs = np.concatenate(prob_list) if prob_list else np.zeros((0, num_classes), np.float32)
    return Decisions(
        t_us=t_us.astype(np.int64),
        labels=labels.astype(np.int64),
        duration_s=0.0 if first is None else (last - first) / 1e6,
        wall_s=wall,
        windows=len(infer_ms),
        resets=classifier.resets - resets_before,
        events=events,
        infer_ms=infer_ms,
        logits=logits.astype(np.float32, copy=False),
        probs=probs,
        durations_us=np.concatenate(duration_list) if duration_list else np.zeros(0, np.float64),
        restarts=np.array([r for r in restarts if r < len(t_us)] or [0], dtype=np.int64),
    )


def _softmax32(logits: np.ndarray) -> np.ndarray:
    """The classifier's per-step softmax (torch, float32), recomputed from its logits."""
    import torch

    return torch.softmax(torch.from_numpy(np.ascontiguousarray(logits, np.float32)), dim=-1).numpy()


def _decision_at(t_us: np.ndarray, at: float) -> int:
    """Index of the latest decision at or before ``at``, or -1."""
    return int(np.searchsorted(t_us, at, side="right")) - 1


def _ms_key(ms: float) -> str:
    return str(int(ms)) if float(ms).is_integer() else str(float(ms))


def score_decisions(
    runs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    num_classes: int,
    *,
    onsets_ms: Sequence[float] = DEFAULT_ONSETS_MS,
    stable_ms: float = 250.0,
) -> dict[str, Any]:
    """Score per-step decisions against labelled segments (see the module docstring).

    Args:
        runs: per recording ``(t_us [S], labels [S], segments LABEL_DTYPE [n])``, decisions in
            time order; a decision at t belongs to a segment when ``t_start < t <= t_end``.
        num_classes: C.
        onsets_ms: the times after onset at which ``vs_onset`` is measured, ms.
        stable_ms: how long a correct decision must hold to count for the latency, ms.

    Returns:
        JSON-ready dict: ``accuracy``, ``balanced_accuracy``, ``per_class`` (list, None for
        absent classes), ``decisions``, ``vs_onset`` ``{ms: accuracy or None}``, ``vs_onset_segments``,
        ``latency_ms`` (``mean``, ``median``, ``detected``, ``segments``), ``segment_accuracy``,
        ``false_alarm``, ``confusion`` (``[C][C + 1]``, last column = no gesture),
        ``accuracy_interval`` (:func:`accuracy_interval`).
    """
    correct = np.zeros(num_classes, np.int64)
    total = np.zeros(num_classes, np.int64)
    confusion = np.zeros((num_classes, num_classes + 1), np.int64)
    onset_hits = np.zeros(len(onsets_ms), np.int64)
    onset_total = np.zeros(len(onsets_ms), np.int64)
    latencies: list[float] = []
    seg_correct: list[int] = []
    seg_total: list[int] = []
    segments = seg_right = 0
    outside = outside_alarm = 0
    for t_us, labels, segs in runs:
        t_us = np.asarray(t_us, np.int64)
        labels = np.asarray(labels, np.int64)
        inside = np.zeros(len(t_us), bool)
        for seg in segs:
            true, t0, t1 = int(seg["label"]), int(seg["t_start"]), int(seg["t_end"])
            if not 0 <= true < num_classes:
                raise ConfigError(f"labels: class {true} outside the model's {num_classes} classes")
            segments += 1
            lo = int(np.searchsorted(t_us, t0, side="right"))
            hi = int(np.searchsorted(t_us, t1, side="right"))
            inside[lo:hi] = True
            got = labels[lo:hi]
            total[true] += len(got)
            correct[true] += int((got == true).sum())
            seg_total.append(len(got))
            seg_correct.append(int((got == true).sum()))
            np.add.at(confusion[true], np.where(got == NO_GESTURE, num_classes, got), 1)
            gestures = got[got != NO_GESTURE]
            if len(gestures) and int(np.bincount(gestures, minlength=num_classes).argmax()) == true:
                seg_right += 1
            for j, d in enumerate(onsets_ms):
                if t1 - t0 >= d * 1000:
                    onset_total[j] += 1
                    k = _decision_at(t_us, t0 + d * 1000)
                    onset_hits[j] += int(k >= lo and labels[k] == true)
            for i in np.flatnonzero(got == true):
                k = lo + int(i)
                hold_until = min(t_us[k] + stable_ms * 1000, t1)
                end = int(np.searchsorted(t_us, hold_until, side="right"))
                if (labels[k:end] == true).all():
                    latencies.append((t_us[k] - t0) / 1000.0)
                    break
        outside += int((~inside).sum())
        outside_alarm += int((labels[~inside] != NO_GESTURE).sum())
    per_class = [float(c / n) if n else None for c, n in zip(correct, total, strict=True)]
    present = [a for a in per_class if a is not None]
    return {
        "accuracy": float(correct.sum() / total.sum()) if total.sum() else None,
        "accuracy_interval": accuracy_interval(seg_correct, seg_total),
        "balanced_accuracy": float(np.mean(present)) if present else None,
        "per_class": per_class,
        "decisions": int(total.sum()),
        "vs_onset": {
            _ms_key(d): (float(h / n) if n else None)
            for d, h, n in zip(onsets_ms, onset_hits, onset_total, strict=True)
        },
        "vs_onset_segments": {_ms_key(d): int(n) for d, n in zip(onsets_ms, onset_total, strict=True)},
        "latency_ms": {
            "mean": float(np.mean(latencies)) if latencies else None,
            "median": float(np.median(latencies)) if latencies else None,
            "detected": len(latencies),
            "segments": segments,
            "stable_ms": float(stable_ms),
        },
        "segment_accuracy": float(seg_right / segments) if segments else None,
        "segments_right": int(seg_right),
        "false_alarm": float(outside_alarm / outside) if outside else None,
        "confusion": confusion.tolist(),
    }


def accuracy_interval(correct: Sequence[int], total: Sequence[int], level: float = 0.95,
                      resamples: int = 2000, seed: int = 0) -> list[float] | None:
    """A bootstrap interval of the online ``accuracy`` over gestures: the labelled segments
    (``correct[i]`` of ``total[i]`` decisions right in segment ``i``) drawn with replacement
    ``resamples`` times, the pooled accuracy of each draw, its central ``level`` range. Gestures,
    not decisions, are the independent units (decisions inside one gesture are strongly
    correlated), so with 33 gestures the interval is several points wide. A fixed ``seed``: the same
    report gives the same interval. None with fewer than 2 segments.
    """
    c = np.asarray(correct, np.float64)
    n = np.asarray(total, np.float64)
    if len(n) < 2 or n.sum() == 0:
        return None
    draws = np.random.default_rng(seed).integers(0, len(n), (resamples, len(n)))
    drawn = n[draws].sum(axis=1)
    acc = c[draws].sum(axis=1) / np.where(drawn > 0, drawn, 1)
    lo, hi = np.quantile(acc[drawn > 0], [(1 - level) / 2, (1 + level) / 2])
    return [float(lo), float(hi)]


def evaluate_online(
    recordings: Sequence[LabelledRecording],
    classifier: Any,
    preprocessing: dict[str, Any],
    *,
    steps: int | None = None,
    step_us: int | None = None,
    onsets_ms: Sequence[float] = DEFAULT_ONSETS_MS,
    stable_ms: float = 250.0,
    progress: Callable[[LabelledRecording, Decisions], None] | None = None,
) -> dict[str, Any]:
    """Replay every recording (reset between them) and score the decisions.

    Returns:
        :func:`score_decisions`'s dict plus ``class_names``, ``recordings`` (per file: name,
        duration, wall time, real-time factor, windows, resets, and its own accuracy),
        ``realtime_factor`` (sensor time / wall time over all), ``infer_ms`` (p50, p99),
        ``steps`` (per window), ``step_us``, ``onsets_ms``, ``decision`` (the classifier's rule and
        parameters) and ``probs_kind`` (what its decision probabilities are).
    """
    if not recordings:
        raise ConfigError("--stream: no recordings to evaluate")
    step_us = int(step_us or preprocessing.get("step_us") or 0)
    if step_us > 0:
        steps = _window_steps(preprocessing, classifier, steps, step_us)
    runs = []
    per_file = []
    infer: list[float] = []
    for rec in recordings:
        dec = replay(rec, classifier, preprocessing, steps=steps, step_us=step_us)
        runs.append((dec.t_us, dec.labels, rec.labels))
        infer += dec.infer_ms
        own = score_decisions([runs[-1]], classifier.num_classes, onsets_ms=(), stable_ms=stable_ms)
        per_file.append(
            {
                "path": str(rec.path),
                "labels": str(rec.labels_path),
                "segments": int(len(rec.labels)),
                "duration_s": dec.duration_s,
                "wall_s": dec.wall_s,
                "realtime_factor": dec.duration_s / dec.wall_s if dec.wall_s > 0 else None,
                "windows": dec.windows,
                "events": dec.events,
                "policy_resets": dec.resets,
                "accuracy": own["accuracy"],
                "segment_accuracy": own["segment_accuracy"],
            }
        )
        if progress is not None:
            progress(rec, dec)
    report = score_decisions(runs, classifier.num_classes, onsets_ms=onsets_ms, stable_ms=stable_ms)
    duration = sum(f["duration_s"] for f in per_file)
    wall = sum(f["wall_s"] for f in per_file)
    report.update(
        class_names=list(classifier.class_names),
        recordings=per_file,
        realtime_factor=duration / wall if wall > 0 else None,
        infer_ms={"p50": float(np.percentile(infer, 50)), "p99": float(np.percentile(infer, 99))} if infer else None,
        steps=int(steps or 0),
        step_us=step_us,
        onsets_ms=[float(d) for d in onsets_ms],
    )
    if hasattr(classifier, "decisions"):
        report.update(decision=classifier.decision_settings, probs_kind=classifier.decisions.kind)
    return report


def calibration_score(accuracy: float | None, false_alarm: float | None) -> float:
    """The calibration objective: online accuracy minus false-alarm rate, in [-1, 1].

    ``accuracy``: fraction of the decisions inside labelled segments that name the segment's
    class (no gesture counts as wrong); ``false_alarm``: fraction of the decisions outside every
    segment that name a gesture (0 when there are none). A rule that never decides scores 0; one
    that always says a gesture is charged for every step between gestures.
    """
    return float(accuracy or 0.0) - float(false_alarm or 0.0)


def _truth(t_us: np.ndarray, segs: np.ndarray, num_classes: int) -> np.ndarray:
    """Per decision: the class of the segment it falls in (``t_start < t <= t_end``), else -1."""
    truth = np.full(len(t_us), NO_GESTURE, np.int64)
    for seg in segs:
        true = int(seg["label"])
        if not 0 <= true < num_classes:
            raise ConfigError(f"labels: class {true} outside the model's {num_classes} classes")
        lo = int(np.searchsorted(t_us, int(seg["t_start"]), side="right"))
        hi = int(np.searchsorted(t_us, int(seg["t_end"]), side="right"))
        truth[lo:hi] = true
    return truth


def _pieces(dec: Decisions) -> list[tuple[int, int]]:
    """Step ranges decided on one decision state each (split at the policy's resets)."""
    n = len(dec.t_us)
    starts = sorted({0, *(int(r) for r in (dec.restarts if dec.restarts is not None else []) if 0 < r < n)})
    return list(zip(starts, [*starts[1:], n], strict=True))


def _most(counts: np.ndarray) -> list[int]:
    """The (at most :data:`REFINE_CLASSES`) classes holding the most of ``counts``, each >= 10 % of them."""
    return [int(k) for k in np.argsort(-counts, kind="stable")[:REFINE_CLASSES]
            if counts[k] > 0 and counts[k] >= 0.1 * counts.sum()]


def _candidates(grid: dict[str, Any]) -> list[tuple[str, str, Any]]:
    out = []
    for rule, params in grid["rules"].items():
        for key, values in params.items():
            out += [(rule, key, v) for v in values]
    return out


def calibrate_decisions(
    runs: Sequence[tuple[Decisions, np.ndarray]],
    num_classes: int,
    *,
    grid: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Choose the decision rule and parameters that maximise :func:`calibration_score`.

    Args:
        runs: per recording, its :class:`Decisions` from :func:`replay` (with ``logits`` and
            ``probs``) and its segments (``LABEL_DTYPE``).
        num_classes: C.
        grid: ``{"rules": {"ema": {"smoothing_ms": [...]}, "mean": {"mean_steps": [...]}},
            "threshold": [...], "hysteresis": [...]}``; default :data:`CALIBRATION_GRID`.
            A (threshold, hysteresis) pair with ``hysteresis > threshold`` is skipped.

    Returns:
        ``{"best": decision settings (a checkpoint's ``decision`` dict without ``window_steps``),
        "score", "accuracy", "false_alarm", "candidates": [{settings..., accuracy, false_alarm,
        score}, ...] in grid order, "objective": "accuracy - false_alarm", "decisions": steps
        inside segments, "outside": steps outside}``.

    Raises:
        ConfigError: no labelled decision to calibrate on, a run without logits, or a bad grid value.
    """
    from models.streaming import make_decision

    grid = CALIBRATION_GRID if grid is None else grid
    truths = []
    for dec, segs in runs:
        if dec.logits is None or dec.probs is None:
            raise ConfigError("calibrate: the replay kept no per-step logits")
        truths.append(_truth(np.asarray(dec.t_us, np.int64), segs, num_classes))
    truth = np.concatenate(truths) if truths else np.zeros(0, np.int64)
    inside = truth != NO_GESTURE
    n_in, n_out = int(inside.sum()), int((~inside).sum())
    if n_in == 0:
        raise ConfigError("calibrate: no decision falls inside a labelled gesture segment")
    table: list[dict[str, Any]] = []
    smoothed: dict[tuple[str, str, Any], list[np.ndarray]] = {}

    def score(decider) -> tuple[dict[str, Any], np.ndarray]:
        labels = np.concatenate([decider.labels_for(rows) for rows in pieces])
        accuracy = float((labels[inside] == truth[inside]).mean())
        false_alarm = float((labels[~inside] != NO_GESTURE).mean()) if n_out else 0.0
        row = {"accuracy": accuracy, "false_alarm": false_alarm, "score": calibration_score(accuracy, false_alarm)}
        return row, labels

    for rule, key, value in _candidates(grid):
        # The decision probabilities after every step, once per (rule, parameter): fresh at each reset.
        pieces: list[np.ndarray] = []
        for dec, _ in runs:
            for lo, hi in _pieces(dec):
                rows = make_decision(num_classes, rule, **{key: value}, threshold=1.0, hysteresis=0.0).smooth(
                    dec.logits[lo:hi] if rule == "mean" else dec.probs[lo:hi], dec.durations_us[lo:hi]
                )
                pieces.append(rows)
        smoothed[(rule, key, value)] = pieces
        for threshold in grid["threshold"]:
            for hysteresis in grid["hysteresis"]:
                if hysteresis > threshold:
                    continue
                decider = make_decision(num_classes, rule, **{key: value}, threshold=threshold, hysteresis=hysteresis)
                table.append(decider.settings() | score(decider)[0] | {"_key": (rule, key, value)})
    if not table:
        raise ConfigError("calibrate: the grid holds no candidate")
    # Per-class thresholds, by coordinate ascent from the best candidates: a class that takes many of
    # the false alarms (a catch-all class that a person standing still resembles) may need more
    # evidence than the others; a new row is kept only when it scores higher.
    ranked = sorted(table, key=lambda row: -row["score"])
    bases = ranked[:REFINE_TOP]  # and the best of each threshold: a low one may pay once a class has its own
    for t in grid["threshold"]:
        bases += [row for row in ranked if row["threshold"] == t][:1]
    seen: set[int] = set()
    for base in bases:
        if id(base) in seen:
            continue
        seen.add(id(base))
        rule, key, value = base["_key"]
        pieces = smoothed[base["_key"]]
        options = {key: value, "threshold": base["threshold"], "hysteresis": base["hysteresis"]}
        best_row, labels = score(make_decision(num_classes, rule, **options))
        alarms = np.bincount(labels[~inside][labels[~inside] != NO_GESTURE], minlength=num_classes)
        missed = np.bincount(truth[inside & (labels == NO_GESTURE)], minlength=num_classes)
        raise_ = _most(alarms)  # classes that take false alarms: try more evidence
        lower = [k for k in _most(missed) if k not in raise_]  # classes left undecided: try less
        per_class: dict[int, float] = {}
        for k in raise_ + lower:
            for v in grid.get("class_threshold", ()):
                if v < base["hysteresis"] or v == base["threshold"] or (v < base["threshold"]) != (k in lower):
                    continue
                decider = make_decision(num_classes, rule, **options, class_thresholds=per_class | {k: v})
                row = score(decider)[0]
                if row["score"] > best_row["score"] + 1e-9:
                    best_row, per_class = row, per_class | {k: float(v)}
        if per_class:
            decider = make_decision(num_classes, rule, **options, class_thresholds=per_class)
            table.append(decider.settings() | best_row | {"_key": base["_key"]})
    for row in table:
        del row["_key"]
    best = max(table, key=lambda row: row["score"])  # the first of equals
    settings = {k: v for k, v in best.items() if k not in ("accuracy", "false_alarm", "score")}
    return {
        "best": settings,
        "score": best["score"],
        "accuracy": best["accuracy"],
        "false_alarm": best["false_alarm"],
        "objective": "accuracy - false_alarm",
        "decisions": n_in,
        "outside": n_out,
        "candidates": table,
    }


def redecide(dec: Decisions, num_classes: int, settings: dict[str, Any]) -> np.ndarray:
    """The per-step labels ``settings`` (a decision dict: ``rule``, ``threshold``, ...) give on a replay's logits."""
    from models.streaming import decision_options, make_decision

    options = decision_options({k: v for k, v in settings.items() if k != "window_steps"})
    rule = options.pop("decision")
    out = []
    for lo, hi in _pieces(dec):
        decider = make_decision(num_classes, rule, **options)
        out.append(decider.feed(dec.logits[lo:hi], dec.probs[lo:hi], dec.durations_us[lo:hi]))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _plot_timeline(ax, recording: LabelledRecording, decisions: Decisions, names: list[str]) -> None:
    """True segments (bars) and the decided label after each step (line), seconds from the first step."""
    if len(decisions.t_us) == 0:
        return
    origin = int(decisions.t_us[0])
    for seg in recording.labels:
        ax.plot(
            [(seg["t_start"] - origin) / 1e6, (seg["t_end"] - origin) / 1e6],
            [seg["label"], seg["label"]],
            color="tab:green",
            linewidth=6,
            alpha=0.5,
            solid_capstyle="butt",
        )
    ax.step((decisions.t_us - origin) / 1e6, decisions.labels, where="post", color="tab:blue", linewidth=1)
    ax.set_yticks(range(-1, len(names)), ["no gesture", *names], fontsize=7)
    ax.set_xlabel("time (s)")
    ax.set_title(f"{recording.path.name}: labelled gestures (green) and online decisions (blue)")


def write_report(
    report: dict[str, Any],
    out_dir: str | os.PathLike,
    stem: str = "online_eval",
    timeline: tuple[LabelledRecording, Decisions] | None = None,
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` (the numbers) and ``<stem>.png`` in ``out_dir``.

    The plot shows accuracy vs time since onset, per-class accuracy and, when ``timeline`` is
    given, one recording's decisions over time against its labelled segments.

    Raises:
        EventFileError: the folder cannot be created or written (names it).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        json_path = out / f"{stem}.json"
        json_path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    except OSError as err:
        raise EventFileError(out, f"cannot write the report: {err.strerror or err}") from None
    if timeline is None:
        fig, (ax_onset, ax_class) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 1.4]})
    else:
        fig = plt.figure(figsize=(12, 8))
        grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.4], height_ratios=[1, 0.8])
        ax_onset, ax_class = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1])
        _plot_timeline(fig.add_subplot(grid[1, :]), *timeline, report["class_names"])
    points = [(float(d), a) for d, a in report["vs_onset"].items() if a is not None]
    if points:
        xs, ys = zip(*points, strict=True)
        ax_onset.plot(xs, ys, marker="o")
    chance = 1.0 / len(report["class_names"])
    ax_onset.axhline(chance, color="grey", linestyle=":", label=f"chance ({chance:.2f})")
    latency = report["latency_ms"]["mean"]
    if latency is not None:
        ax_onset.axvline(latency, color="tab:red", linestyle="--", label=f"mean latency {latency:.0f} ms")
    ax_onset.set_xscale("log")
    ax_onset.set_ylim(0, 1.02)
    ax_onset.set_xlabel("time since gesture onset (ms)")
    ax_onset.set_ylabel("decision accuracy")
    ax_onset.set_title("accuracy vs time since onset")
    ax_onset.legend(loc="lower right", fontsize=8)
    names = report["class_names"]
    values = [a if a is not None else math.nan for a in report["per_class"]]
    ax_class.bar(range(len(names)), values, color="tab:blue")
    ax_class.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax_class.set_ylim(0, 1.02)
    ax_class.set_ylabel("online accuracy (fraction of decisions)")
    acc = report["accuracy"]
    ax_class.set_title("per class" + (f" (all: {acc:.3f})" if acc is not None else ""))
    fig.tight_layout()
    png_path = out / f"{stem}.png"
    try:
        fig.savefig(png_path, dpi=100)
    except OSError as err:
        raise EventFileError(png_path, f"cannot write the plot: {err.strerror or err}") from None
    finally:
        plt.close(fig)
    return json_path, png_path
