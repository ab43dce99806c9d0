"""The sim-to-real judge (bench/sim2real.py): window cutting, frames, votes and scoring on constructed inputs."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from evstream.errors import ModelError
from evstream.events import SensorSize, make_events
from evstream.io.aedat3 import LABEL_DTYPE

REPO = Path(__file__).resolve().parents[1]
REFERENCE_MODEL = REPO.parent / "shared" / "reference-models" / "speck_dvs_gesture_cnn.pt"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_sim2real", REPO / "bench" / "sim2real.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


sim2real = _load_bench()


def labels(*rows: tuple[int, int, int]) -> np.ndarray:
    return np.array(list(rows), dtype=LABEL_DTYPE)


def test_cut_windows_keeps_whole_windows_from_each_segment_start():
    segs = labels((3, 1_000_000, 2_200_000), (5, 3_000_000, 3_400_000), (0, 4_000_000, 5_000_000))
    assert sim2real.cut_windows(segs) == [(0, 1_000_000, 2), (1, 3_000_000, 0), (2, 4_000_000, 2)]


def test_window_frames_count_each_event_once_in_its_window_channel_and_pixel():
    size = SensorSize(128, 128)
    segs = labels((2, 1_000_000, 2_100_000))  # two whole windows; the 100 ms tail is dropped
    ev = make_events(
        [500_000, 1_000_000, 1_200_000, 1_499_999, 1_500_000, 2_050_000],
        [1, 10, 10, 127, 20, 30],
        [1, 5, 5, 0, 100, 30],
        [1, 1, 1, 0, 0, 1],
    )
    w = sim2real.window_frames(ev, segs, size)
    assert w.frames.shape == (2, 2, 128, 128) and w.frames.dtype == np.float32
    assert w.labels.tolist() == [2, 2] and w.segment.tolist() == [0, 0]
    assert w.frames[0, 1, 5, 10] == 2  # ON, [channel, y, x]
    assert w.frames[0, 0, 0, 127] == 1  # OFF at the right edge
    assert w.frames[1, 0, 100, 20] == 1
    assert w.frames.sum() == 4  # before the segment and in the dropped tail: not counted
    flipped = sim2real.mirrored(w.frames)
    assert flipped[0, 1, 5, 127 - 10] == 2 and flipped[0, 0, 0, 0] == 1
    assert flipped.flags["C_CONTIGUOUS"]


def test_window_frames_downsample_a_larger_sensor_to_128():
    size = SensorSize(256, 256)
    ev = make_events([0, 10, 20], [0, 1, 255], [0, 1, 255], [1, 1, 0])
    w = sim2real.window_frames(ev, labels((1, 0, 600_000)), size)
    assert w.frames.shape == (1, 2, 128, 128)
    assert w.frames[0, 1, 0, 0] == 2 and w.frames[0, 0, 127, 127] == 1


def test_window_frames_without_a_whole_window():
    w = sim2real.window_frames(make_events([0], [0], [0], [0]), labels((1, 0, 100)), SensorSize(128, 128))
    assert w.frames.shape == (0, 2, 128, 128) and len(w.labels) == 0


def test_majority_vote_ties_go_to_the_lowest_class_and_no_votes_to_minus_one():
    assert sim2real.majority_vote(np.array([4, 4, 9])) == 4
    assert sim2real.majority_vote(np.array([7, 2, 2, 7])) == 2
    assert sim2real.majority_vote(np.array([], dtype=np.int64)) == -1


def test_score_window_segment_merged_and_per_class():
    # Segment 0: class 3, votes 3, 4, 4 -> majority 4 (wrong), merged all right.
    # Segment 1: class 6, votes 6, 5 -> tie -> 5 (wrong), merged right.
    # Segment 2: class 1, votes 1, 1, 0 -> right.
    # Segment 3: class 9, no whole window -> wrong.
    votes = np.array([3, 4, 4, 6, 5, 1, 1, 0])
    truth = np.array([3, 3, 3, 6, 6, 1, 1, 1])
    segment = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    s = sim2real.score(votes, truth, segment, np.array([3, 6, 1, 9]))
    assert s.windows == 8 and s.segments == 4
    assert s.window_accuracy == pytest.approx(4 / 8)
    assert s.segment_accuracy == pytest.approx(1 / 4)
    assert s.merged_window_accuracy == pytest.approx(7 / 8)
    assert s.merged_segment_accuracy == pytest.approx(3 / 4)
    assert s.per_class_window[3] == pytest.approx(1 / 3)
    assert s.per_class_window[1] == pytest.approx(2 / 3)
    assert np.isnan(s.per_class_window[9]) and np.isnan(s.per_class_window[0])
    assert s.per_class_segment[1] == 1.0 and s.per_class_segment[9] == 0.0 and s.per_class_segment[3] == 0.0
    assert s.confusion.sum() == 8 and s.confusion[3, 4] == 2 and s.confusion[1, 0] == 1
    assert np.trace(s.confusion) == 4


def test_merge_map_joins_only_the_circle_pairs():
    m = sim2real.MERGE_CIRCLES
    assert m[3] == m[4] and m[5] == m[6] and m[3] != m[5]
    assert len(set(m.tolist())) == 9


def test_missing_or_tampered_model_is_refused(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        sim2real.load_reference_cnn(tmp_path / "none.pt")
    bad = tmp_path / "speck_dvs_gesture_cnn.pt"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="sha256"):
        sim2real.load_reference_cnn(bad)


def test_main_exits_2_without_the_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["sim2real.py", "--model", str(tmp_path / "none.pt")])
    assert sim2real.main() == 2
    assert "reference model not found" in capsys.readouterr().err


def test_reference_model_loads_strictly_and_gives_11_logits(tmp_path):
    if not REFERENCE_MODEL.is_file():
        pytest.skip(f"reference model not found at {REFERENCE_MODEL}")
    pytest.importorskip("torch")
    model = sim2real.load_reference_cnn(REFERENCE_MODEL)
    assert not model.training
    frames = np.zeros((3, 2, 128, 128), dtype=np.float32)
    frames[:, 1, 60:70, 20:40] = 3.0
    logits = sim2real.classify(model, frames, batch=2)
    assert logits.shape == (3, 11) and np.all(np.isfinite(logits))
    # Without SHA256SUMS beside it, the built-in reference hash is checked (and matches).
    copy = tmp_path / REFERENCE_MODEL.name
    shutil.copyfile(REFERENCE_MODEL, copy)
    assert sim2real.load_reference_cnn(copy) is not None
