"""The Fine-tune panel: real ``python main.py train`` and ``eval --calibrate`` children on a real
(tiny) user folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from PyQt6 import QtCore

from evstream.dashboard.finetune import FinetunePanel, calibrated_path, parse_best_line, parse_epoch_line
from tests.dashboard.streams import status_data

LEFT = QtCore.Qt.MouseButton.LeftButton
SHIPPED = "spikformer_synth_stream_64"
# A fine-tune of seconds: 2 sequences of 2 + 4 steps an epoch, on the CPU.
TINY = ["--samples-per-epoch", "2", "--batch", "2", "--steps", "4", "--burn-in", "2", "--device", "cpu"]
WAIT_MS = 300_000  # the CPU is shared: generous, never a figure asserted


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory, repo_root):
    """Two synthetic runs of 2 classes through ``collect`` (1 train, 1 held out), shared by the
    tests so the binned-frame cache (FOLDER/finetune/frames_cache) is made once."""
    out = tmp_path_factory.mktemp("user")
    subprocess.run([sys.executable, str(repo_root / "main.py"), "collect", "--synthetic", "--classes", "wave,push",
                    "--reps", "2", "--seconds", "1", "--rest", "0.5", "--countdown", "0", "--out", str(out)],
                   cwd=repo_root, check=True, capture_output=True, text=True)
    folder = out / "DvsGesture"
    assert (folder / "trials_to_test.txt").read_text().split()  # collect held the 2nd run out
    return folder


def _panel(qtbot, folder) -> FinetunePanel:
    panel = FinetunePanel(data_folder=lambda: None if folder is None else str(folder))
    qtbot.addWidget(panel)
    panel.observe_status({"model": SHIPPED})
    panel.extra_args = list(TINY)
    panel.calibrate_args = ["--device", "cpu"]
    return panel


def _copy(folder, where):
    """A fresh copy of the user folder's recordings and lists (no finetune/ outputs)."""
    shutil.copytree(folder, where, ignore=shutil.ignore_patterns("finetune"))
    return where


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_train_lines_are_parsed():
    stream = ("epoch 2/5 loss 0.7776 train top1 0.0000 test top1 0.3750 rest-undecided 0.0000 clip top1 0.4545 "
              "score 0.1875 lr 5.05e-04 3.7 samples/s 2.2s")
    report = parse_epoch_line(stream)
    assert (report.epoch, report.epochs, report.test_top1, report.clip_top1, report.score, report.seconds) == \
        (2, 5, 0.375, 0.4545, 0.1875, 2.2)
    clip = parse_epoch_line("epoch 1/40 loss 2.3000 train top1 0.1000 lr 1.00e-05 12.5 samples/s 30.1s")
    assert clip.test_top1 is None and clip.score is None and clip.loss == 2.3
    assert parse_epoch_line("init: x.pt: every weight loaded") is None
    assert parse_best_line("best: epoch 1 score 0.1875, gesture-step top-1 0.3750 (15/40) -> /a b/ft.pt") == \
        {"epoch": 1, "score": 0.1875, "top1": 0.375, "correct": 15, "samples": 40}
    assert parse_best_line("best: epoch 3 top-1 0.9000 (9/10) -> runs/x.pt")["score"] is None


def test_finetune_from_the_dashboard_trains_calibrates_and_loads_the_calibrated_checkpoint(
        qtbot, window_factory, feeder, control_recorder, user_folder):
    from models import load_checkpoint
    from models.train import inherited_decision

    feeder.set("status", status_data(record_dir=str(user_folder), model=SHIPPED))
    window = window_factory(feeder.address, control=control_recorder.address)
    panel = window.finetune
    qtbot.waitUntil(lambda: window.teach.dataset_folder == str(user_folder) and panel.running_model == SHIPPED,
                    timeout=5000)
    panel.extra_args = list(TINY)
    panel.calibrate_args = ["--device", "cpu"]
    panel.epochs_box.setValue(1)
    stages, texts = [], []
    panel.stage.connect(stages.append)
    panel.progress.valueChanged.connect(lambda _: texts.append(panel.progress.text()))
    with qtbot.waitSignal(panel.done, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(panel.start_button, LEFT)
        assert panel.running and not panel.start_button.isEnabled() and panel.cancel_button.isEnabled()
        assert panel.running_stage == "train" and panel.message.startswith("stage 1 of 2, train: ")
    assert finished.args == [True], panel.message
    assert stages == ["train", "calibrate"] and not panel.running
    assert "train: 1/1 epochs (then calibration)" in texts and "calibration: 1/1 held-out runs" in texts

    trained, out = panel.trained, panel.checkpoint
    assert trained == panel.out and os.path.dirname(trained) == str(user_folder / "finetune")
    assert os.path.isfile(trained) and os.path.isfile(trained.removesuffix(".pt") + "_last.pt")
    assert out == panel.calibrated == calibrated_path(trained) and os.path.isfile(out)
    assert panel.progress.value() == panel.progress.maximum() == 1
    assert panel.message == f"done: {out} (decisions calibrated on the held-out runs)"
    # Train's checkpoint carries the shipped model's decisions (its own thresholds dropped: new head);
    # the offered one those chosen on the held-out run, not train's or the classifier's defaults.
    shipped = load_checkpoint(SHIPPED)
    assert load_checkpoint(trained).decision == inherited_decision(shipped, ("wave", "push"), 50_000)[0]
    assert load_checkpoint(trained).decision["smoothing_ms"] == shipped.decision["smoothing_ms"]
    summary = json.loads((user_folder / "finetune" / (os.path.basename(out)[:-3] + "_calibration.json")).read_text())
    assert summary == panel.calibration
    calibrated = load_checkpoint(out)
    assert json.loads(json.dumps(calibrated.decision)) == summary["decision"] and "rule" in calibrated.decision
    assert calibrated.metrics["online_calibration"]["recordings"] == [
        str(user_folder / name) for name in (user_folder / "trials_to_test.txt").read_text().split()]
    assert calibrated.model.state_dict().keys() == load_checkpoint(trained).model.state_dict().keys()
    best = panel.result
    assert best is not None and best["epoch"] == 1 and best["samples"] > 0
    text = panel.result_label.text()
    assert "1 held-out recording (never trained on)" in text
    assert f"gesture-step top-1 {best['top1']:.3f} ({best['correct']}/{best['samples']})" in text
    assert "decisions calibrated on them: " in text and "the runs they were chosen on" in text
    loaded = load_checkpoint(out)
    assert loaded.class_names == ("wave", "push")  # the head replaced for the folder's classes

    assert panel.load_button.isEnabled()
    qtbot.mouseClick(panel.load_button, LEFT)
    qtbot.waitUntil(lambda: any(r["cmd"] == "load_model" for r in control_recorder.requests), timeout=5000)
    request = [r for r in control_recorder.requests if r["cmd"] == "load_model"][-1]
    assert request["path"] == out
    qtbot.waitUntil(lambda: "decides with" in panel.message, timeout=5000)

    # The next fine-tune starts from the model now running: status names it by its stem.
    feeder.set("status", status_data(record_dir=str(user_folder), model=loaded.name))
    qtbot.waitUntil(lambda: panel.running_model == loaded.name, timeout=5000)
    assert panel.init_checkpoint() == out


def test_cancel_kills_the_child_and_the_best_checkpoint_stays_usable(qtbot, user_folder):
    from models import load_checkpoint

    panel = _panel(qtbot, user_folder)
    # Cancelled while it starts: nothing to load.
    with qtbot.waitSignal(panel.done, timeout=WAIT_MS) as finished:
        assert panel.start()
        qtbot.waitUntil(lambda: panel.process.processId() > 0, timeout=WAIT_MS)
        pid = panel.process.processId()
        qtbot.mouseClick(panel.cancel_button, LEFT)
    assert finished.args == [False] and _gone(pid)
    assert "nothing to load" in panel.message and not panel.load_button.isEnabled() and not panel.running

    # Cancelled after epoch 1 of 3: its checkpoint (written through a rename) is whole and offered.
    panel.epochs_box.setValue(3)
    with qtbot.waitSignal(panel.done, timeout=WAIT_MS) as finished:
        assert panel.start()
        qtbot.waitUntil(lambda: panel.last_epoch is not None, timeout=WAIT_MS)
        pid = panel.process.processId()
        qtbot.mouseClick(panel.cancel_button, LEFT)
    assert finished.args == [True] and _gone(pid)
    assert panel.progress.value() == 1 and panel.progress.maximum() == 3
    assert "cancelled; the best checkpoint so far stays usable" in panel.message
    assert panel.checkpoint == panel.out and load_checkpoint(panel.checkpoint).class_names == ("wave", "push")
    assert panel.load_button.isEnabled() and "best epoch before Cancel" in panel.result_label.text()


def test_a_failing_train_shows_its_error_line(qtbot, tmp_path):
    (tmp_path / "classes.txt").write_text("wave\npush\n")
    (tmp_path / "trials_to_train.txt").write_text("gone.aedat4\n")
    (tmp_path / "trials_to_test.txt").write_text("gone_too.aedat4\n")
    panel = _panel(qtbot, tmp_path)
    with qtbot.waitSignal(panel.done, timeout=WAIT_MS) as finished:
        assert panel.start()
    assert finished.args == [False]
    assert panel.message == f"fine-tune failed: {tmp_path / 'gone.aedat4'}: recording listed in trials_to_train.txt " \
                            "is missing"
    assert panel.error and "\n" not in panel.message and "ff8a5a" in panel.status_label.styleSheet()
    assert not panel.load_button.isEnabled() and panel.checkpoint is None and panel.start_button.isEnabled()


def test_nothing_starts_without_a_held_out_run_a_folder_or_a_trained_model(qtbot, tmp_path):
    panel = _panel(qtbot, None)
    assert not panel.start() and "no Teach folder known" in panel.message
    (tmp_path / "classes.txt").write_text("wave\npush\n")
    panel = _panel(qtbot, tmp_path)
    assert not panel.start() and "no recording listed for training" in panel.message
    (tmp_path / "trials_to_train.txt").write_text("run_01.aedat4\n")
    (tmp_path / "trials_to_test.txt").write_text("")
    assert not panel.start() and "no held-out recording yet" in panel.message and "honest" in panel.message
    (tmp_path / "trials_to_test.txt").write_text("run_02.aedat4\n")
    panel.observe_status({"model": "spikformer_2_64 (untrained)"})
    assert not panel.start() and "choose a checkpoint" in panel.message
    assert not panel.running and not (tmp_path / "finetune").exists()


def test_a_failing_calibration_offers_the_trained_checkpoint_in_one_line(qtbot, user_folder, tmp_path):
    from models import load_checkpoint

    folder = _copy(user_folder, tmp_path / "user")
    held_out = folder / (folder / "trials_to_test.txt").read_text().split()[0]
    panel = _panel(qtbot, folder)
    panel.epochs_box.setValue(1)

    def lose_the_held_out_run(stage: str) -> None:  # between the stages, before eval starts
        if stage == "calibrate":
            held_out.unlink()

    panel.stage.connect(lose_the_held_out_run)
    with qtbot.waitSignal(panel.done, timeout=WAIT_MS) as finished:
        assert panel.start()
    assert finished.args == [True]
    trained = panel.trained
    assert panel.checkpoint == trained == panel.out and load_checkpoint(trained).class_names == ("wave", "push")
    assert not os.path.exists(panel.calibrated) and not os.path.exists(panel.calibrated + ".tmp")
    assert panel.message == (f"calibration failed: {held_out}: listed in trials_to_test.txt but missing; "
                             "the fine-tuned checkpoint is offered with its starting model's decision settings "
                             f"(not calibrated): {trained}")
    assert panel.error and "ff8a5a" in panel.status_label.styleSheet()
    assert panel.load_button.isEnabled() and panel.start_button.isEnabled() and not panel.running
    assert "decisions calibrated" not in panel.result_label.text()


def test_cancel_during_the_calibration_offers_the_trained_checkpoint(qtbot, user_folder, tmp_path):
    from models import load_checkpoint

    panel = _panel(qtbot, _copy(user_folder, tmp_path / "user"))
    panel.epochs_box.setValue(1)
    with qtbot.waitSignal(panel.done, timeout=WAIT_MS) as finished:
        assert panel.start()
        qtbot.waitUntil(lambda: panel.running_stage == "calibrate" and panel.process.processId() > 0,
                        timeout=WAIT_MS)
        assert panel.message.startswith("stage 2 of 2, calibration: ")
        pid = panel.process.processId()
        qtbot.mouseClick(panel.cancel_button, LEFT)
    assert finished.args == [True] and _gone(pid)
    assert panel.checkpoint == panel.trained and load_checkpoint(panel.checkpoint).decision["rule"] == "ema"
    assert panel.message.startswith("calibration cancelled; the fine-tuned checkpoint is offered")
    assert "ff8a5a" not in panel.status_label.styleSheet()
    assert not os.path.exists(panel.calibrated + ".tmp") and panel.load_button.isEnabled() and not panel.running
