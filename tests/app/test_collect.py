"""``python main.py collect``: labelled runs into an IBM-layout folder that train and eval read."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest

from evstream.cli import main as cli_main
from evstream.commands.collect import UserDataset, assign_split
from evstream.errors import ConfigError
from evstream.io.aedat3 import read_labels
from evstream.io.aedat4 import Aedat4Reader

CLASSES = ("wave", "swipe", "push")


def _collect(out, *extra: str) -> int:
    return cli_main(["collect", "--synthetic", "--classes", ",".join(CLASSES), "--reps", "3", "--seconds", "0.6",
                     "--rest", "0.5", "--seed", "4", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def collected(tmp_path_factory):
    out = tmp_path_factory.mktemp("mine")
    assert _collect(out) == 0
    return out


def test_collect_synthetic_writes_recordings_labels_lists_and_classes(collected, capsys):
    folder = collected / "DvsGesture"
    assert (folder / "classes.txt").read_text().splitlines() == list(CLASSES)
    train = (folder / "trials_to_train.txt").read_text().split()
    test = (folder / "trials_to_test.txt").read_text().split()
    recordings = sorted(p.name for p in folder.glob("*.aedat4"))
    assert sorted(train + test) == recordings and len(recordings) == 3
    assert len(test) == 1 and len(train) == 2  # the 2nd run is held out while none is
    starts = []
    for name in recordings:
        path = folder / name
        labels = read_labels(path.with_name(f"{path.stem}_labels.csv"))
        assert sorted(labels["label"].tolist()) == [0, 1, 2]  # each class once per run
        assert np.all(labels["t_end"] - labels["t_start"] == 600_000)
        with Aedat4Reader(path) as reader:
            assert (reader.sensor_size.width, reader.sensor_size.height) == (128, 128)
            assert "synthetic" in reader.camera_name
            events = reader.read()
        t = events["t"].astype(np.int64)
        assert t.min() >= 0 and labels["t_start"].min() > t.min() and labels["t_end"].max() < t.max()
        # The person moves during the prompted segments and rests between: more events inside.
        inside = np.zeros(len(t), bool)
        for row in labels:
            inside |= (t >= row["t_start"]) & (t < row["t_end"])
        span_in = float((labels["t_end"] - labels["t_start"]).sum())
        rate_in = inside.sum() / span_in
        rate_out = (~inside).sum() / (t.max() - t.min() - span_in)
        assert rate_in > 2 * rate_out
        starts.append(int(labels["t_start"].min()))
    assert len(set(starts)) == 3  # one stream cut into runs, each in its own sensor-time span


def test_collect_again_appends_and_other_classes_are_refused(tmp_path, capsys):
    assert _collect(tmp_path, "--reps", "1") == 0
    captured = capsys.readouterr()
    assert "no recording is held out yet" in captured.err
    assert _collect(tmp_path, "--reps", "1") == 0
    folder = tmp_path / "DvsGesture"
    assert len(list(folder.glob("*.aedat4"))) == 2
    assert len((folder / "trials_to_test.txt").read_text().split()) == 1
    code = cli_main(["collect", "--synthetic", "--classes", "x,y", "--reps", "1", "--seconds", "0.5", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "classes.txt" in err and "\n" not in err
    assert len(list(folder.glob("*.aedat4"))) == 2


def test_assign_split_holds_out_every_nth_and_an_early_run():
    train = test = 0
    splits = []
    for _ in range(10):
        split = assign_split(train, test, 5)
        splits.append(split)
        train, test = train + (split == "train"), test + (split == "test")
    assert splits == ["train", "test", "train", "train", "test", "train", "train", "train", "train", "test"]


def test_by_default_five_runs_keep_four_to_train_on():
    """The Teach protocol's five runs: one held out (the 2nd), four to train on; ten runs: two held out."""
    from evstream.commands.collect import DEFAULT_TEST_EVERY

    train = test = 0
    splits = []
    for _ in range(12):
        split = assign_split(train, test, DEFAULT_TEST_EVERY)
        splits.append(split)
        train, test = train + (split == "train"), test + (split == "test")
    assert splits[:5].count("test") == 1 and splits[1] == "test"
    assert splits[:10].count("test") == 2 and splits[:12].count("test") == 3


def test_bad_class_lists_and_folders_get_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for argv, needle in (
        (["--classes", "a,,b"], "--classes"),
        (["--classes", "a,a"], "twice"),
        (["--seconds", "0"], "--seconds"),
    ):
        assert cli_main(["collect", "--synthetic", "--out", str(tmp_path / "d"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err
    assert cli_main(["collect", "--synthetic", "--reps", "1", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot create the dataset folder" in err and "nothing recorded" in err and "\n" not in err


def test_read_only_folder_is_refused_before_recording(tmp_path, monkeypatch):
    folder = tmp_path / "DvsGesture"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        try:
            probe.write_text("x")  # root writes anyway: fake what a read-only folder answers
            probe.unlink()
            monkeypatch.setattr("evstream.commands.collect.os.access", lambda path, mode: False)
        except OSError:
            pass
        with pytest.raises(ConfigError, match="not writable") as info:
            UserDataset(folder, CLASSES)
        assert "nothing recorded" in str(info.value)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o755)


def test_full_disk_mid_run_keeps_the_runs_before_and_the_partial_run(tmp_path, monkeypatch, capsys):
    from evstream.io import aedat4

    real_write = aedat4.Aedat4Writer.write
    calls = {"n": 0}

    def write(self, events):
        # The first run is written whole; then the disk "fills" inside the second run.
        if "_02" in self.path.name:
            calls["n"] += 1
            if calls["n"] > 150:  # 1.5 s into the run: its first segment (0.5 ... 1.1 s) is complete
                raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, events)

    monkeypatch.setattr(aedat4.Aedat4Writer, "write", write)
    code = _collect(tmp_path)
    err = capsys.readouterr().err
    assert code == 2
    assert "No space left on device" in err and "kept" in err
    folder = tmp_path / "DvsGesture"
    first, second = sorted(folder.glob("*.aedat4"))
    assert (folder / "trials_to_train.txt").read_text().split() == [first.name]
    assert (folder / "trials_to_test.txt").read_text().split() == []  # the partial run is in no list
    with Aedat4Reader(second) as reader:  # the partial run is a readable file with its labelled part
        assert len(reader.read()) > 0
    labels = read_labels(second.with_name(f"{second.stem}_labels.csv"))
    assert len(labels) == 1 and labels["t_end"][0] <= reader_end(second)


def reader_end(path) -> int:
    with Aedat4Reader(path) as reader:
        return int(reader.read()["t"].max()) + 1


@pytest.mark.slow
def test_collected_folder_loads_trains_with_a_new_head_and_evaluates(collected, tmp_path, capsys):
    import torch

    import models
    from models.checkpoint import save_checkpoint
    from models.data import StreamSequenceDataset
    from models.train import TrainConfig, train

    data = StreamSequenceDataset(collected, "train", steps=4, step_us=50_000, out_size=(32, 32))
    assert data.class_names == CLASSES and len(data.recordings) == 2
    frames, targets = data[0]
    assert frames.shape == (4, 2, 32, 32) and set(targets.tolist()) <= {-1, 0, 1, 2}

    torch.manual_seed(0)
    start = models.create_model("spikformer_tiny", steps=4)  # the 11 DVS128 classes
    init = save_checkpoint(tmp_path / "start.pt", start, preprocessing={"step_us": 50_000, "out_size": [32, 32]})
    out = tmp_path / "tuned.pt"
    config = TrainConfig(data=str(collected), out=str(out), model=None, init=str(init), step_ms=None, epochs=1,
                         batch=2, recipe="stream", burn_in=1, samples_per_epoch=2, amp=False, workers=0)
    best = train(config)
    printed = capsys.readouterr().out
    assert printed.count("head re-initialised") == 1
    tuned = models.load_checkpoint(out)
    assert tuned.class_names == CLASSES and tuned.arch == "spikformer_tiny"
    assert tuned.preprocessing["step_us"] == 50_000  # the checkpoint's step, not a default
    assert best["samples"] > 0 and "user classes" in tuned.metrics["trained_on"]

    report = tmp_path / "eval"
    assert cli_main(["eval", "--stream", str(collected), "--model", str(out), "--out", str(report)]) == 0
    result = json.loads((report / "online_eval.json").read_text())
    assert result["class_names"] == list(CLASSES)


def test_replay_source_keeps_its_sensor_and_the_folder_bins_it(recording, tmp_path):
    from models.data import StreamSequenceDataset

    out = tmp_path / "replayed"
    argv = ["collect", "--replay", str(recording), "--classes", "a,b", "--reps", "2", "--seconds", "0.4",
            "--rest", "0.3", "--out", str(out)]
    assert cli_main(argv) == 0  # 2 runs of 1.6 s: the 2 s recording is looped
    folder = out / "DvsGesture"
    for path in folder.glob("*.aedat4"):
        with Aedat4Reader(path) as reader:
            assert (reader.sensor_size.width, reader.sensor_size.height) == (64, 48)
            assert len(reader.read()) > 0
    data = StreamSequenceDataset(out, "test", steps=4, step_us=50_000, out_size=(16, 16))
    frames, targets = data[0]
    assert frames.shape == (4, 2, 16, 16) and frames.sum() > 0  # the 64x48 sensor mapped, not cut to 128x128
    assert data.class_names == ("a", "b")


def test_more_classes_than_the_renderer_has_reuse_gestures_mod_11(tmp_path, capsys):
    names = [f"c{k}" for k in range(13)]
    argv = ["collect", "--synthetic", "--classes", ",".join(names), "--reps", "1", "--seconds", "0.2",
            "--rest", "0.1", "--out", str(tmp_path)]
    assert cli_main(argv) == 0
    printed = capsys.readouterr().out
    assert "k mod 11" in printed and "c11 = hand clapping" in printed and "c12 = right hand wave" in printed
    (csv,) = (tmp_path / "DvsGesture").glob("*_labels.csv")
    assert sorted(read_labels(csv)["label"].tolist()) == list(range(13))  # classes 12 and 13 read with classes.txt


def test_synthetic_schedule_performs_the_given_classes_at_the_given_times():
    from evstream.sources.synthetic import SyntheticSource

    schedule = [(3, 200_000, 500_000), (7, 600_000, 900_000)]
    source = SyntheticSource(realtime=False, schedule=schedule, rest_s=(0.1, 0.1), seed=2)
    chunks = list(source)
    assert [tuple(int(v) for v in row) for row in source.labels()] == schedule
    assert source.current_label(300_000) == 3 and source.current_label(550_000) == -1
    assert chunks[-1].t_end == 900_000 + 100_000 + 1
