"""Online accuracy of a checkpoint on fresh held-out synthetic recordings, the way the app uses it.

``python bench/online.py [--model NAME_OR_PT] [--seed S] [--recordings N] [--sizes 128x128 640x480]``

For each sensor size, ``--recordings`` fresh recordings (one person and lighting each, seeds
``--seed``, ``--seed + 1``, ...; default 90101, a seed no training run uses) of one shuffled round
of all 11 gestures (4-8 s each as in the real protocol, rests of 0.5-1.5 s) are rendered and
emulated, written as ``.aedat4`` + ``_labels.csv`` into a temporary folder, and replayed through
the same path as ``python main.py eval --stream``: the file source, the Binner (the checkpoint's
step, the default streaming window of at most 4 steps, the density match for larger sensors) and
the StreamingClassifier with the checkpoint's own decision settings. Printed per size:

- online accuracy (labelled steps decided right), balanced accuracy, false alarms (steps between
  gestures that name one), accuracy 500 ms after onset, mean decision latency (onset → first
  correct stable decision, compute included), segment accuracy (majority decision of a gesture);
- offline clip accuracy on the same gestures: each labelled segment binned from its start,
  the network reset, the clip's class = argmax of its logits averaged over all steps (the head's
  own mean over T, the paper's clip decision); also over 16-step (0.8 s) windows from reset;
- the worst confusion pairs of the clip decisions (clockwise / counter-clockwise included).

Anchors printed beside them (quoted, not re-run): the previous shipped model (Dec 2026 issue #12:
online 0.35, false alarms 0.71, 646 ms; 640×480 0.10) and IBM's TrueNorth live demo (onset in
105 ms, 96.5 %; Amir et al., CVPR 2017).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from evstream.binning import Geometry, bin_events  # noqa: E402
from evstream.events import SensorSize  # noqa: E402
from evstream.io.aedat3 import write_labels  # noqa: E402
from evstream.io.aedat4 import write_aedat4  # noqa: E402
from evstream.labels import DVS_GESTURE_CLASSES  # noqa: E402
from evstream.sources.gestures import balanced_classes, synthesize_recording  # noqa: E402

SHORT = ["clap", "R wave", "L wave", "R cw", "R ccw", "L cw", "L ccw", "roll", "drums", "guitar", "other"]


def make_recordings(folder: Path, size: SensorSize, seed: int, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        rng = np.random.default_rng(seed + i)
        events, labels = synthesize_recording(size, balanced_classes(11, rng), seed=seed + i)
        path = folder / f"heldout_{size.width}x{size.height}_{seed + i}.aedat4"
        write_aedat4(path, events, size)
        write_labels(folder / f"{path.stem}_labels.csv", labels)
        paths.append(path)
    return paths


def clip_accuracy(model: torch.nn.Module, paths: list[Path], sensor: SensorSize, pre: dict,
                  window_steps: int | None) -> np.ndarray:
    """Confusion ``[true, predicted]`` of offline clip decisions (reset, mean logits over the clip)."""
    from spikingjelly.activation_based import functional

    from evstream.io import read_events
    from evstream.io.aedat3 import read_labels
    from models.streaming import input_scale_for

    step_us = int(pre["step_us"])
    height, width = model.config.img_size
    confusion = np.zeros((11, 11), np.int64)
    for path in paths:
        events = read_events(path)
        geometry = Geometry(sensor, (width, height))
        scale = input_scale_for(pre, geometry)
        for label, t0, t1 in read_labels(path.with_name(f"{path.stem}_labels.csv")):
            steps = int((t1 - t0) // step_us)
            frames = bin_events(events[(events["t"] >= t0) & (events["t"] < t1)], int(t0), step_us, steps, geometry)
            x = torch.from_numpy(np.ascontiguousarray(frames, np.float32)).unsqueeze(1) * scale
            chunks = [x] if window_steps is None else [x[s:s + window_steps] for s in
                                                       range(0, steps - window_steps + 1, window_steps)]
            for chunk in chunks:
                functional.reset_net(model)
                with torch.inference_mode():
                    logits = model.step_logits(chunk)[:, 0].mean(0)
                confusion[int(label), int(logits.argmax())] += 1
    functional.reset_net(model)
    return confusion


def worst_pairs(confusion: np.ndarray, n: int = 4) -> str:
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    np.fill_diagonal(rates, 0)
    order = np.argsort(rates, axis=None)[::-1][:n]
    return ", ".join(f"{SHORT[i]}→{SHORT[j]} {rates[i, j]:.2f}" for i, j in zip(*np.unravel_index(order, rates.shape),
                                                                               strict=True) if rates[i, j] > 0) or "none"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="checkpoint or shipped weights name (default: the shipped default)")
    parser.add_argument("--seed", type=int, default=90101, help="first recording seed (default 90101, never trained on)")
    parser.add_argument("--recordings", type=int, default=2, help="recordings per size, 11 gestures each (default 2)")
    parser.add_argument("--sizes", nargs="+", default=["128x128", "640x480"], help="sensor sizes (default 128x128 640x480)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()

    from models import DEFAULT_WEIGHTS, load_checkpoint
    from models.online_eval import evaluate_online, find_recordings
    from models.streaming import StreamingClassifier, decision_options, default_window_steps

    torch.set_num_threads(args.threads)
    loaded = load_checkpoint(args.model or DEFAULT_WEIGHTS)
    pre = loaded.preprocessing
    model_steps = int(pre.get("steps") or loaded.model.config.steps)
    settings = dict(loaded.decision)
    window = default_window_steps(settings, model_steps, int(pre["step_us"]))
    options = decision_options({k: v for k, v in settings.items() if k != "window_steps"}, model_steps=model_steps)
    print(f"model {args.model or DEFAULT_WEIGHTS}: {loaded.model.name}, trained on {pre.get('sensor')} -> "
          f"{pre.get('out_size')}, step {pre['step_us'] / 1000:.0f} ms; decision {settings}; window {window} steps")
    print("anchors (quoted): previous shipped model online 0.35 / false alarms 0.71 / latency 646 ms at 128x128, "
          "0.10 at 640x480; TrueNorth live demo onset 105 ms, 96.5 %")
    with tempfile.TemporaryDirectory() as tmp:
        for size_text in args.sizes:
            width, height = (int(v) for v in size_text.lower().split("x"))
            size = SensorSize(width, height)
            began = time.perf_counter()
            paths = make_recordings(Path(tmp), size, args.seed + (0 if width == 128 else 1000), args.recordings)
            made = time.perf_counter() - began
            clf = StreamingClassifier(loaded.model, device="cpu", threads=args.threads, **options)
            report = evaluate_online(find_recordings(paths), clf, pre, steps=window)
            clips = clip_accuracy(loaded.model, paths, size, pre, None)
            windows = clip_accuracy(loaded.model, paths, size, pre, 16)
            onset = report["vs_onset"].get("500")
            print(f"\n== {size} ({len(paths)} recordings, {sum(r['segments'] for r in report['recordings'])} "
                  f"gestures, rendered in {made:.0f} s; replay {report['realtime_factor']:.1f}x real time)")
            print(f"online accuracy {report['accuracy']:.3f}  balanced {report['balanced_accuracy']:.3f}  "
                  f"false alarms {report['false_alarm']:.3f}  acc@500ms {onset if onset is None else round(onset, 3)}  "
                  f"latency mean {report['latency_ms']['mean'] or float('nan'):.0f} ms "
                  f"({report['latency_ms']['detected']}/{report['latency_ms']['segments']} detected)  "
                  f"segment accuracy {report['segment_accuracy']:.3f}")
            print(f"offline clip accuracy {np.trace(clips) / clips.sum():.3f} ({np.trace(clips)}/{clips.sum()} gestures, "
                  f"mean logits over the whole clip from reset); 16-step windows {np.trace(windows) / windows.sum():.3f} "
                  f"({np.trace(windows)}/{windows.sum()})")
            print("per-class online accuracy: " + ", ".join(
                f"{SHORT[i]} {a:.2f}" for i, a in enumerate(report["per_class"]) if a is not None))
            print(f"worst clip confusions: {worst_pairs(clips)}")
    print(f"\nclasses: {', '.join(DVS_GESTURE_CLASSES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
