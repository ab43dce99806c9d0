"""The Fine-tune panel: a real ``python main.py train`` child on a real (tiny) user folder."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PyQt6 import QtCore

from evstream.dashboard.finetune import FinetunePanel, parse_best_line, parse_epoch_line
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
    return panel


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


def test_finetune_from_the_dashboard_reaches_the_end_and_loads_into_the_pipeline(
        qtbot, window_factory, feeder, control_recorder, user_folder):
    from models import load_checkpoint

    feeder.set("status", status_data(record_dir=str(user_folder), model=SHIPPED))
    window = window_factory(feeder.address, control=control_recorder.address)
    panel = window.finetune
    qtbot.waitUntil(lambda: window.teach.dataset_folder == str(user_folder) and panel.running_model == SHIPPED,
                    timeout=5000)
    panel.extra_args = list(TINY)
    panel.epochs_box.setValue(1)
    with qtbot.waitSignal(panel.done, timeout=WAIT_MS) as finished:
        qtbot.mouseClick(panel.start_button, LEFT)
        assert panel.running and not panel.start_button.isEnabled() and panel.cancel_button.isEnabled()
    assert finished.args == [True], panel.message

    out = panel.checkpoint
    assert out == panel.out and os.path.dirname(out) == str(user_folder / "finetune")
    assert os.path.isfile(out) and os.path.isfile(out.removesuffix(".pt") + "_last.pt")
    assert panel.progress.value() == panel.progress.maximum() == 1
    best = panel.result
    assert best is not None and best["epoch"] == 1 and best["samples"] > 0
    text = panel.result_label.text()
    assert "1 held-out recording (never trained on)" in text
    assert f"gesture-step top-1 {best['top1']:.3f} ({best['correct']}/{best['samples']})" in text
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
