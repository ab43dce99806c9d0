"""SyntheticSource (endless paced gesture stream) and the ``synth`` command (IBM dataset layout)."""

from __future__ import annotations

import numpy as np
import pytest

from evstream.cli import main
from evstream.errors import ConfigError
from evstream.events import EVENT_DTYPE, SensorSize, concatenate
from evstream.io.aedat3 import Aedat3Reader, read_labels
from evstream.sources import open_source
from evstream.sources.synthetic import SyntheticSource
from tests.helpers import FakeClock

FAST = dict(realtime=False, gesture_s=(0.4, 0.6), rest_s=(0.2, 0.3), fps=50.0)



def test_open_source_synthetic_streams_contiguous_chunks_to_the_end():
    with open_source("synthetic", gestures=3, seed=1, chunk_us=20_000, **FAST) as src:
        assert src.sensor_size == SensorSize(128, 128) and src.name == "synthetic" and not src.live
        chunks = list(src)
        labels = src.labels()
    assert [c.t_start for c in chunks[1:]] == [c.t_end for c in chunks[:-1]]
    assert all(c.t_end - c.t_start == 20_000 for c in chunks[:-1])
    for chunk in chunks:
        assert chunk.events.dtype == EVENT_DTYPE
        if len(chunk):
            assert chunk.events["t"].min() >= chunk.t_start and chunk.events["t"].max() < chunk.t_end
    events = concatenate(chunks)
    assert np.all(np.diff(events["t"]) >= 0)
    assert len(labels) == 3 and len(set(labels["label"].tolist())) == 3  # no class repeats within a round
    assert chunks[-1].t_end > labels["t_end"][-1]


def test_ground_truth_follows_the_stream():
    src = SyntheticSource(seed=2, gestures=4, **FAST)
    events = concatenate(list(src))
    labels = src.labels()
    for label, t0, t1 in labels:
        assert src.current_label(t0) == label and src.current_label(t1 - 1) == label
        assert src.current_label(t0 - 1) == -1  # rests separate gestures
    gesture = np.zeros(len(events), bool)
    for _, t0, t1 in labels:
        gesture |= (events["t"] >= t0) & (events["t"] < t1)
    gesture_time = float(np.sum(labels["t_end"] - labels["t_start"]))
    rest_time = float(events["t"][-1]) - gesture_time
    assert gesture.sum() / gesture_time > 3 * (~gesture).sum() / rest_time


def test_open_source_synthetic_is_live_and_paced_by_default():
    with open_source("synthetic") as src:
        assert src.live and src.sensor_size == SensorSize(128, 128)


def test_realtime_pacing_follows_the_wall_clock():
    clock = FakeClock()
    src = SyntheticSource(seed=3, chunk_us=50_000, realtime=True, clock=clock, sleep=clock.sleep,
                          gesture_s=(0.5, 0.5), rest_s=(0.2, 0.2), fps=40.0)
    assert src.live
    start = clock.now
    for i, chunk in enumerate(src):
        # A chunk is released only once the wall clock has passed its end.
        assert clock.now - start >= chunk.t_end * 1e-6 - 1e-9
        if i == 19:
            break
    assert clock.slept == pytest.approx(1.0, abs=1e-6)  # 20 chunks of 50 ms, nothing ahead of time


def test_endless_by_default_and_close_stops():
    src = SyntheticSource(seed=4, chunk_us=100_000, **FAST)
    seen = 0
    for chunk in src:
        seen += 1
        if chunk.t_end >= 6_000_000:  # longer than several gestures: still going
            src.close()
    assert seen == 60
    assert len(src.labels()) >= 6


def test_same_seed_same_stream():
    a = concatenate(list(SyntheticSource(seed=9, gestures=2, **FAST)))
    b = concatenate(list(SyntheticSource(seed=9, gestures=2, **FAST)))
    assert len(a) > 1000 and np.array_equal(a, b)


@pytest.mark.parametrize("options, field", [
    ({"chunk_us": 0}, "chunk_us"), ({"fps": 0.0}, "fps"), ({"gesture_s": (2.0, 1.0)}, "gesture_s"),
    ({"gestures": 0}, "gestures"),
])
def test_bad_options_raise(options, field):
    with pytest.raises(ConfigError, match=field):
        SyntheticSource(**options)


# ----------------------------------------------------------------------- synth command ---------

SYNTH_FAST = ["--gesture-s", "0.3", "0.5", "--fps", "40", "--workers", "1"]


def test_synth_writes_an_ibm_layout_dataset_that_round_trips(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path), "--samples", "3", "--users", "2", "--seed", "5", *SYNTH_FAST]) == 0
    assert "3 recordings" in capsys.readouterr().out
    folder = tmp_path / "DvsGesture"
    train = (folder / "trials_to_train.txt").read_text().split()
    test = (folder / "trials_to_test.txt").read_text().split()
    assert train and test and not set(train) & set(test)
    assert sorted(train + test) == sorted(p.name for p in folder.glob("*.aedat"))
    assert all(name.startswith("user01_") for name in train) and all(name.startswith("user02_") for name in test)
    lightings = {"fluorescent", "fluorescent_led", "lab", "led", "natural"}
    per_class = np.zeros(11, int)
    for name in train + test:
        user, lighting = name[:-len(".aedat")].split("_", 1)
        assert lighting in lightings and len(user) == 6
        reader = Aedat3Reader(folder / name)
        assert reader.sensor_size == SensorSize(128, 128)
        events = reader.read()
        reader.close()
        labels = read_labels(folder / name.replace(".aedat", "_labels.csv"))
        assert sorted(labels["label"].tolist()) == list(range(11))  # every class once per recording
        per_class += np.bincount(labels["label"], minlength=11)
        durations = (labels["t_end"] - labels["t_start"]) / 1e6
        assert durations.min() >= 0.3 and durations.max() <= 0.5
        assert np.all(np.diff(events["t"]) >= 0) and events["x"].max() < 128 and events["y"].max() < 128
        assert events["t"][-1] > labels["t_end"].max()
        for _, t0, t1 in labels:  # each labelled gesture holds events
            assert np.sum((events["t"] >= t0) & (events["t"] < t1)) > 100
    assert per_class.tolist() == [3] * 11
    csv = (folder / (train[0].replace(".aedat", "_labels.csv"))).read_text().splitlines()
    assert csv[0] == "class,startTime_usec,endTime_usec"
    assert {int(line.split(",")[0]) for line in csv[1:]} == set(range(1, 12))  # 1-based in the file


def test_synth_is_deterministic_by_seed(tmp_path):
    for name in ("a", "b"):
        assert main(["synth", "--out", str(tmp_path / name), "--samples", "2", "--seed", "1", *SYNTH_FAST]) == 0
    for path in (tmp_path / "a" / "DvsGesture").glob("*.aedat"):
        with Aedat3Reader(path) as ra, Aedat3Reader(tmp_path / "b" / "DvsGesture" / path.name) as rb:
            assert np.array_equal(ra.read(), rb.read())


def test_synth_aedat4_format_with_two_workers(tmp_path):
    from evstream.io import read_events

    assert main(["synth", "--out", str(tmp_path), "--samples", "2", "--format", "aedat4", "--size", "64x48",
                 "--gesture-s", "0.3", "0.3", "--fps", "30", "--workers", "2"]) == 0
    files = sorted((tmp_path / "DvsGesture").glob("*.aedat4"))
    assert len(files) == 2
    names = (tmp_path / "DvsGesture" / "trials_to_train.txt").read_text().split()
    assert all(n.endswith(".aedat4") for n in names)
    events = read_events(files[0])
    assert len(events) > 0 and events["x"].max() < 64 and events["y"].max() < 48


@pytest.mark.parametrize("args, words", [
    (["--size", "12x"], "--size"),
    (["--size", "100x100"], "--format aedat4"),
    (["--samples", "0"], "--samples"),
    (["--samples", "11", "--users", "2"], "--users"),
    (["--users", "1"], "--users"),
])
def test_synth_bad_arguments_exit_2_with_one_line(tmp_path, capsys, args, words):
    assert main(["synth", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err
