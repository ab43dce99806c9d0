"""The sim-to-real judge: a CNN trained only on REAL DVS128 Gesture scores our synthetic gestures.

``python bench/sim2real.py [--seed S] [--gestures N] [--recording FILE.aedat4] [--out PNG]``

**A measuring instrument only.** Never train on its output, never distil from the reference
model, never fine-tune on its predictions and never search renderer parameters against its score
(by hand in a loop or automatically): improve the renderer from physics and from the real
recordings' statistics (``bench/realism.py``), then measure here. A score that was optimised
against stops measuring anything (``../shared/reference-models/README.md``).

The judge is SynSense's Speck demo gesture CNN (``../shared/reference-models``: a bias-free ReLU
``nn.Sequential`` loaded with ``strict=True`` after its sha256 is checked against
``SHA256SUMS``), run as the ANN. Protocol, as that README describes it:

- fresh synthetic 128×128 recordings from ``synthesize_recording``: ``--gestures`` rounds of all 11
  classes (one recording, hence one person and lighting, per round, seeds ``--seed``, ``--seed``+1,
  ...; default 90001, a seed no training run uses), gestures lasting ``--gesture-s`` (default 4-8 s,
  as in the real protocol); or one labelled recording (``--recording``, with ``<stem>_labels.csv``
  beside it), binned to 128×128 (centre crop, area downsampling) when its sensor is larger;
- each labelled segment is cut into consecutive whole 500 ms windows (a shorter tail is dropped);
  each window becomes one count frame ``[1, 2, 128, 128]`` (channel 0 OFF, 1 ON, our events'
  orientation, no normalisation); the argmax of the logits is the window's vote;
- a segment's class is the majority of its windows' votes (ties: the lowest class index; a
  segment without a whole window counts as wrong);
- also reported with the clockwise / counter-clockwise pairs of each arm merged (0-based classes
  3+4 and 5+6; a static count frame cannot see the direction of rotation), per class, and all of
  it again with every frame mirrored left-right: if mirrored scores better, our left/right
  convention is the wrong way round.

A confusion-matrix PNG (windows; as-is and mirrored side by side) goes to ``--out``.

    python bench/sim2real.py                     # 3 rounds of 11 gestures, ~1 minute on 2 cores
    python bench/sim2real.py --seed 90101 --gestures 2
    python bench/sim2real.py --recording recordings/gestures_128x128.aedat4
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from evstream.binning import Geometry, bin_events  # noqa: E402
from evstream.errors import EvstreamError, ModelError  # noqa: E402
from evstream.events import SensorSize  # noqa: E402
from evstream.labels import DVS_GESTURE_CLASSES  # noqa: E402

N_CLASSES = len(DVS_GESTURE_CLASSES)
WINDOW_US = 500_000
INPUT_SIZE = SensorSize(128, 128)
DEFAULT_MODEL = REPO.parent / "shared" / "reference-models" / "speck_dvs_gesture_cnn.pt"
# sha256 of speck_dvs_gesture_cnn.pt (reference-models/SHA256SUMS), used when no SHA256SUMS lies beside it.
REFERENCE_SHA256 = "39081dc5dce40748a42af3db42ca866c60dced142dd77dffe342e2e601262185"
MERGE_CIRCLES = np.array([0, 1, 2, 3, 3, 5, 5, 7, 8, 9, 10])
"""0-based class -> class with the clockwise / counter-clockwise pairs of each arm merged (4 -> 3, 6 -> 5)."""


# ------------------------------------------------------------------------ the model --------


def build_reference_cnn():
    """The Speck demo gesture CNN as the ``nn.Sequential`` whose indices match the state dict."""
    from torch import nn

    def conv(cin, cout, k, **kw):
        return nn.Conv2d(cin, cout, k, bias=False, **kw)

    return nn.Sequential(
        conv(2, 16, 2, stride=2), nn.ReLU(),
        conv(16, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        conv(16, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        conv(32, 32, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        conv(32, 64, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        conv(64, 64, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Dropout2d(0.5),
        conv(64, 256, 2), nn.ReLU(), nn.Dropout2d(0.5), nn.Flatten(),
        nn.Linear(256, 128, bias=False), nn.ReLU(),
        nn.Linear(128, N_CLASSES, bias=False),
    )


def expected_sha256(path: Path) -> str:
    """The sha256 listed for ``path`` in ``SHA256SUMS`` beside it, else the reference model's."""
    sums = path.with_name("SHA256SUMS")
    if sums.is_file():
        for line in sums.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("*") == path.name:
                return parts[0].lower()
        raise ModelError(f"{sums}: no entry for {path.name}")
    return REFERENCE_SHA256


def load_reference_cnn(path: str | os.PathLike = DEFAULT_MODEL):
    """The judge in eval mode, after checking its sha256 and loading its state dict strictly.

    Raises:
        ModelError: missing file, sha256 mismatch, or a state dict that does not fit exactly.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: reference model not found (see ../shared/reference-models/README.md)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected_sha256(path):
        raise ModelError(f"{path}: sha256 {digest} does not match {expected_sha256(path)}")
    model = build_reference_cnn()
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    except (RuntimeError, ValueError) as err:
        raise ModelError(f"{path}: state dict does not fit the reference CNN: {err}") from None
    return model.eval()


def classify(model, frames: np.ndarray, batch: int = 64) -> np.ndarray:
    """Logits ``[N, 11]`` float32 of count frames ``[N, 2, 128, 128]``, in eval mode, no grad."""
    import torch

    out = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(frames), batch):
            out.append(model(torch.from_numpy(np.ascontiguousarray(frames[i:i + batch]))).numpy())
    return np.concatenate(out) if out else np.zeros((0, N_CLASSES), dtype=np.float32)


# -------------------------------------------------------------------- frames and votes -----


@dataclass(frozen=True)
class Windows:
    """Count frames of the labelled segments, one per whole window, and where each came from."""

    frames: np.ndarray  # [N, 2, 128, 128] float32 counts, channel 0 OFF, 1 ON
    labels: np.ndarray  # [N] int64 0-based class of the window's segment
    segment: np.ndarray  # [N] int64 index of the window's segment in the label array


def cut_windows(labels: np.ndarray, window_us: int = WINDOW_US) -> list[tuple[int, int, int]]:
    """``(segment index, t_start µs, whole windows)`` per labelled segment, windows from its start.

    A tail shorter than ``window_us`` is dropped; a segment shorter than one window has 0 windows.
    """
    out = []
    for i, (t0, t1) in enumerate(zip(labels["t_start"], labels["t_end"], strict=True)):
        out.append((i, int(t0), max(0, (int(t1) - int(t0)) // int(window_us))))
    return out


def window_frames(events: np.ndarray, labels: np.ndarray, sensor_size: SensorSize,
                  window_us: int = WINDOW_US) -> Windows:
    """One count frame per whole ``window_us`` window of every labelled segment.

    Args:
        events: ``EVENT_DTYPE`` array, time-sorted.
        labels: :data:`~evstream.io.aedat3.LABEL_DTYPE` segments (0-based class, µs).
        sensor_size: the events' sensor; other than 128×128 it is centre-cropped to a square and
            area-downsampled to 128×128 (:class:`~evstream.binning.Geometry`).
        window_us: window length, µs.

    Returns:
        :class:`Windows` with ``frames [N, 2, 128, 128]`` float32.
    """
    geometry = INPUT_SIZE if sensor_size == INPUT_SIZE else Geometry(sensor_size, INPUT_SIZE)
    frames, window_labels, segments = [], [], []
    for i, t0, n in cut_windows(labels, window_us):
        if n == 0:
            continue
        frames.append(bin_events(events, t0, window_us, n, geometry, dtype=np.float32))
        window_labels.append(np.full(n, int(labels["label"][i]), dtype=np.int64))
        segments.append(np.full(n, i, dtype=np.int64))
    if not frames:
        empty = np.zeros(0, dtype=np.int64)
        return Windows(np.zeros((0, 2, INPUT_SIZE.height, INPUT_SIZE.width), np.float32), empty, empty)
    return Windows(np.concatenate(frames), np.concatenate(window_labels), np.concatenate(segments))


def mirrored(frames: np.ndarray) -> np.ndarray:
    """Frames ``[N, 2, H, W]`` mirrored left-right (x -> W - 1 - x)."""
    return np.ascontiguousarray(frames[..., ::-1])


def majority_vote(votes: np.ndarray) -> int:
    """The most frequent vote (ties: the lowest class index); ``-1`` for no votes."""
    votes = np.asarray(votes, dtype=np.int64)
    if len(votes) == 0:
        return -1
    return int(np.argmax(np.bincount(votes, minlength=N_CLASSES)))


@dataclass(frozen=True)
class Score:
    """Accuracies of one set of window votes (NaN where a class has no window / segment)."""

    windows: int
    segments: int
    window_accuracy: float
    segment_accuracy: float
    merged_window_accuracy: float  # circle pairs 3+4, 5+6 merged
    merged_segment_accuracy: float
    per_class_window: np.ndarray  # [11]
    per_class_segment: np.ndarray  # [11]
    confusion: np.ndarray  # [11, 11] window counts, rows true class, columns vote


def _per_class(truth: np.ndarray, correct: np.ndarray) -> np.ndarray:
    total = np.bincount(truth, minlength=N_CLASSES).astype(np.float64)
    hits = np.bincount(truth, weights=correct.astype(np.float64), minlength=N_CLASSES)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hits / total, np.nan)


def score(votes: np.ndarray, window_labels: np.ndarray, window_segment: np.ndarray,
          segment_labels: np.ndarray) -> Score:
    """Window, majority-vote segment and merged-pair accuracies, per class, and the confusion matrix.

    Args:
        votes: ``[N]`` 0-based class voted by each window.
        window_labels: ``[N]`` true class of each window.
        window_segment: ``[N]`` segment index of each window (into ``segment_labels``).
        segment_labels: ``[S]`` true class of every labelled segment, windows or not.
    """
    votes = np.asarray(votes, dtype=np.int64)
    truth = np.asarray(window_labels, dtype=np.int64)
    segment_of = np.asarray(window_segment, dtype=np.int64)
    segment_truth = np.asarray(segment_labels, dtype=np.int64)
    seg_votes = np.array([majority_vote(votes[segment_of == s]) for s in range(len(segment_truth))], dtype=np.int64)
    seg_merged = np.array([majority_vote(MERGE_CIRCLES[votes[segment_of == s]]) for s in range(len(segment_truth))],
                          dtype=np.int64)
    correct = votes == truth
    seg_correct = seg_votes == segment_truth
    confusion = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    np.add.at(confusion, (truth, votes), 1)

    def mean(a: np.ndarray) -> float:
        return float(np.mean(a)) if len(a) else float("nan")

    return Score(
        windows=len(votes),
        segments=len(segment_truth),
        window_accuracy=mean(correct),
        segment_accuracy=mean(seg_correct),
        merged_window_accuracy=mean(MERGE_CIRCLES[votes] == MERGE_CIRCLES[truth]),
        merged_segment_accuracy=mean(seg_merged == MERGE_CIRCLES[segment_truth]),
        per_class_window=_per_class(truth, correct),
        per_class_segment=_per_class(segment_truth, seg_correct),
        confusion=confusion,
    )


# --------------------------------------------------------------------------- the bench -----


def synthetic_windows(rounds: int, seed: int, gesture_s: tuple[float, float]) -> tuple[Windows, np.ndarray, float]:
    """Windows of ``rounds`` fresh recordings of all 11 classes, the segments' classes, wall seconds."""
    from evstream.sources.gestures import synthesize_recording

    start = time.perf_counter()
    parts, segment_labels, offset = [], [], 0
    for k in range(rounds):
        events, labels = synthesize_recording(INPUT_SIZE, N_CLASSES, seed=seed + k, fps=100.0, gesture_s=gesture_s)
        w = window_frames(events, labels, INPUT_SIZE)
        parts.append(Windows(w.frames, w.labels, w.segment + offset))
        segment_labels.append(labels["label"])
        offset += len(labels)
    windows = Windows(np.concatenate([p.frames for p in parts]), np.concatenate([p.labels for p in parts]),
                      np.concatenate([p.segment for p in parts]))
    return windows, np.concatenate(segment_labels).astype(np.int64), time.perf_counter() - start


def recording_windows(path: Path) -> tuple[Windows, np.ndarray]:
    """Windows of a labelled recording (``<stem>_labels.csv`` beside it) and its segments' classes."""
    from evstream.io import open_reader
    from evstream.io.aedat3 import read_labels

    labels = read_labels(path.with_name(f"{path.stem}_labels.csv"))
    with open_reader(path) as reader:
        events, size = reader.read(), reader.sensor_size
    events = events[np.argsort(events["t"], kind="stable")]
    return window_frames(events, labels, size), labels["label"].astype(np.int64)


def print_score(title: str, s: Score) -> None:
    print(f"\n{title}: {s.windows} windows of 500 ms in {s.segments} segments (chance 1/11 = 0.091)")
    print(f"  window accuracy              {s.window_accuracy:.3f}")
    print(f"  segment accuracy (majority)  {s.segment_accuracy:.3f}")
    print(f"  circle pairs merged: windows {s.merged_window_accuracy:.3f}, segments {s.merged_segment_accuracy:.3f}")
    print(f"  {'class':<30}{'windows':>9}{'segments':>10}")
    for c, name in enumerate(DVS_GESTURE_CLASSES):
        w, g = s.per_class_window[c], s.per_class_segment[c]
        print(f"  {c:>2} {name:<27}{'—' if np.isnan(w) else f'{w:.2f}':>9}{'—' if np.isnan(g) else f'{g:.2f}':>10}")


def plot_confusion(path: Path, scores: list[tuple[str, Score]]) -> None:
    """Row-normalised window confusion matrices side by side, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scores), figsize=(7.5 * len(scores), 7), constrained_layout=True)
    axes = np.atleast_1d(axes)
    names = [f"{c} {n}" for c, n in enumerate(DVS_GESTURE_CLASSES)]
    for ax, (title, s) in zip(axes, scores, strict=True):
        rows = s.confusion.sum(axis=1, keepdims=True)
        share = np.divide(s.confusion, rows, out=np.zeros(s.confusion.shape), where=rows > 0)
        ax.imshow(share, vmin=0, vmax=1, cmap="viridis")
        for (i, j), v in np.ndenumerate(s.confusion):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="black" if share[i, j] > 0.6 else "white")
        ax.set_xticks(range(N_CLASSES), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(N_CLASSES), names, fontsize=8)
        ax.set_xlabel("vote of the reference CNN")
        ax.set_ylabel("true class")
        ax.set_title(f"{title}\nwindow acc {s.window_accuracy:.3f}, merged {s.merged_window_accuracy:.3f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                        help="reference CNN state dict (default ../shared/reference-models/speck_dvs_gesture_cnn.pt)")
    parser.add_argument("--seed", type=int, default=90001,
                        help="first seed of the synthetic recordings, one per round (default 90001)")
    parser.add_argument("--gestures", type=int, default=3, help="synthetic gestures per class (default 3)")
    parser.add_argument("--gesture-s", type=float, nargs=2, default=(4.0, 8.0), metavar=("MIN", "MAX"),
                        help="range of synthetic gesture durations, s (default 4 8)")
    parser.add_argument("--recording", type=Path, default=None,
                        help="judge this labelled .aedat4/.aedat (labels in <stem>_labels.csv) instead of synthesis")
    parser.add_argument("--out", type=Path, default=REPO / "bench_out" / "sim2real_confusion.png",
                        help="confusion-matrix PNG (default bench_out/sim2real_confusion.png in the repository)")
    args = parser.parse_args()
    if args.gestures < 1:
        parser.error("--gestures must be at least 1")
    if not 0 < args.gesture_s[0] <= args.gesture_s[1]:
        parser.error("--gesture-s: MIN must be positive and at most MAX")

    try:
        model = load_reference_cnn(args.model)
    except ModelError as err:
        print(f"sim2real: {err}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    try:
        if args.recording is not None:
            windows, segment_labels = recording_windows(args.recording)
            source = f"recording {args.recording}"
        else:
            windows, segment_labels, wall = synthetic_windows(args.gestures, args.seed, tuple(args.gesture_s))
            source = (f"synthetic 128x128, {args.gestures} x 11 gestures, seeds {args.seed}..{args.seed + args.gestures - 1}, "
                      f"durations {args.gesture_s[0]:g}-{args.gesture_s[1]:g} s, made in {wall:.1f} s")
    except EvstreamError as err:
        print(f"sim2real: {err}", file=sys.stderr)
        return 1
    if len(windows.labels) == 0:
        print("sim2real: no labelled segment holds a whole 500 ms window", file=sys.stderr)
        return 1

    print(f"sim2real judge: reference CNN trained on real DVS128 Gesture ({args.model.name}, sha256 verified), "
          f"as ANN, 500 ms count frames")
    print(f"  source: {source}")
    print(f"  mean events per frame {windows.frames.sum(axis=(1, 2, 3)).mean():,.0f}, "
          f"ON share {windows.frames[:, 1].sum() / max(windows.frames.sum(), 1):.3f}")
    start = time.perf_counter()
    as_is = score(classify(model, windows.frames).argmax(axis=1), windows.labels, windows.segment, segment_labels)
    flipped = score(classify(model, mirrored(windows.frames)).argmax(axis=1), windows.labels, windows.segment,
                    segment_labels)
    print(f"  CNN on {2 * len(windows.labels)} frames in {time.perf_counter() - start:.1f} s")
    print_score("as recorded", as_is)
    print_score("mirrored left-right (orientation check)", flipped)
    better = "as recorded" if as_is.window_accuracy >= flipped.window_accuracy else "MIRRORED"
    print(f"\norientation: window accuracy {as_is.window_accuracy:.3f} as recorded vs {flipped.window_accuracy:.3f} "
          f"mirrored -> {better} fits the real data better")
    plot_confusion(args.out, [("as recorded", as_is), ("mirrored left-right", flipped)])
    print(f"confusion matrices: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
