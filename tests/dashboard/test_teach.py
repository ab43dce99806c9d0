"""The Teach panel: keys label segments in sensor time into the user's dataset folder."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PyQt6 import QtCore

from evstream.io.aedat3 import read_labels
from evstream.io.aedat4 import Aedat4Reader
from tests.dashboard.streams import status_data, wait_ticks
from tests.helpers import free_port

LEFT = QtCore.Qt.MouseButton.LeftButton
NAMES = ["wave", "push", "pull"]
OFFSET_US = 7_000_000_000  # a camera's clock starts far from 0


def _pred(label: int = 0) -> dict:
    return {"label": label, "probs": [0.2, 0.5, 0.3, 0.0, 0.0], "events": 500, "confidence": 0.5}


def _wait_for_stream(qtbot, window_factory, feeder, control_recorder, folder):
    feeder.t_offset_us = OFFSET_US
    feeder.set("status", status_data(record_dir=str(folder)))
    feeder.set("pred", _pred())
    window = window_factory(feeder.address, control=control_recorder.address)
    teach = window.teach
    assert teach.set_classes(NAMES)
    qtbot.waitUntil(lambda: teach.sensor_time_us is not None and teach.record_dir == str(folder), timeout=5000)
    return window, teach


def _start(qtbot, window_factory, feeder, control_recorder, folder):
    window, teach = _wait_for_stream(qtbot, window_factory, feeder, control_recorder, folder)
    qtbot.mouseClick(teach.record_button, LEFT)
    qtbot.waitUntil(lambda: teach.state == "recording", timeout=5000)
    request = control_recorder.requests[-1]
    assert request["cmd"] == "record_start" and request["path"] == f"{teach.stem}.aedat4"
    window.timer.stop()  # from here the test draws: the times pressed are the ones the window showed
    return window, teach


def _draw_newer(qtbot, window) -> int:
    """Draw until a newer message arrived; returns the newest sensor time the window drew."""
    before = window.teach.sensor_time_us
    qtbot.waitUntil(lambda: (window.tick(), window.teach.sensor_time_us > before)[1], timeout=5000)
    newest = max(m.t_end for m in window.last_snapshot.fresh.values() if m.topic != "status")
    assert window.teach.sensor_time_us == newest
    return newest


def test_keys_write_the_labels_csv_with_the_sensor_times_shown(qtbot, window_factory, feeder, control_recorder,
                                                               tmp_path):
    window, teach = _start(qtbot, window_factory, feeder, control_recorder, tmp_path)
    times = []
    t0 = _draw_newer(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_2)  # "push" starts
    assert teach.open == (1, t0)
    t1 = _draw_newer(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)  # ends
    times.append((2, t0, t1))
    t2 = _draw_newer(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_1)  # "wave" starts
    t3 = _draw_newer(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_1)  # its own key ends it too
    times.append((1, t2, t3))
    t4 = _draw_newer(qtbot, window)
    qtbot.mouseClick(teach.list.viewport(), LEFT, pos=teach.list.visualItemRect(teach.list.item(2)).center())
    t5 = _draw_newer(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)
    times.append((3, t4, t5))

    csv = tmp_path / f"{teach.stem}_labels.csv"
    lines = csv.read_text().splitlines()
    assert lines[0] == "class,startTime_usec,endTime_usec"
    assert lines[1:] == [f"{c},{a},{b}" for c, a, b in times]
    assert all(a >= OFFSET_US for _, a, _ in times)
    assert (tmp_path / "classes.txt").read_text().splitlines() == NAMES
    labels = read_labels(csv)  # the loaders' reader takes it, 1-based classes of classes.txt
    assert labels["label"].tolist() == [1, 0, 2]

    stem = teach.stem
    qtbot.mouseClick(teach.record_button, LEFT)
    qtbot.waitUntil(lambda: (window.tick(), teach.state == "idle")[1], timeout=5000)
    assert control_recorder.requests[-1]["cmd"] == "record_stop"
    assert (tmp_path / "trials_to_train.txt").read_text().split() == [f"{stem}.aedat4"]
    assert "train" in teach.message


def test_bad_input_gets_one_message_and_loses_nothing(qtbot, window_factory, feeder, control_recorder, tmp_path):
    window, teach = _start(qtbot, window_factory, feeder, control_recorder, tmp_path)
    csv = tmp_path / f"{teach.stem}_labels.csv"

    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)  # end before any start
    assert "no segment to end" in teach.message and not csv.exists() and teach.segments == []

    t0 = _draw_newer(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_1)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)  # no stream time since the start: refused, still open
    assert "no length" in teach.message and teach.open == (0, t0)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_3)  # overlapping another class: refused
    assert "still open" in teach.message and teach.open == (0, t0)
    t1 = _draw_newer(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)
    assert csv.read_text().splitlines()[1:] == [f"1,{t0},{t1}"]

    # The labels file cannot be written (a folder in its place): the segment is kept in memory
    # and written, with the one before, once writing works again.
    csv.unlink()
    csv.mkdir()
    t2 = _draw_newer(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_2)
    t3 = _draw_newer(qtbot, window)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)
    assert "cannot write" in teach.message and "2 segments kept" in teach.message and teach.unsaved
    assert "\n" not in teach.message
    csv.rmdir()
    qtbot.mouseClick(teach.record_button, LEFT)  # stop: the labels are written, the run listed
    qtbot.waitUntil(lambda: (window.tick(), teach.state == "idle")[1], timeout=5000)
    assert csv.read_text().splitlines()[1:] == [f"1,{t0},{t1}", f"2,{t2},{t3}"]
    assert (tmp_path / "trials_to_train.txt").read_text().split() == [csv.name.replace("_labels.csv", ".aedat4")]


def test_keys_without_a_recording_and_a_folder_of_other_classes(qtbot, window_factory, feeder, control_recorder,
                                                                tmp_path):
    (tmp_path / "classes.txt").write_text("x\ny\n")
    feeder.set("status", status_data(record_dir=str(tmp_path)))
    feeder.set("pred", _pred())
    window = window_factory(feeder.address, control=control_recorder.address)
    teach = window.teach
    teach.set_classes(NAMES)
    qtbot.waitUntil(lambda: teach.record_dir == str(tmp_path), timeout=5000)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_1)
    assert "start a recording first" in teach.message and teach.open is None
    qtbot.mouseClick(teach.record_button, LEFT)
    assert "classes.txt" in teach.message and "differ" in teach.message and teach.state == "idle"
    wait_ticks(qtbot, window)
    assert not any(r["cmd"] == "record_start" for r in control_recorder.requests)


def _rows(csv) -> list[str]:
    lines = csv.read_text().splitlines()
    assert lines[0] == "class,startTime_usec,endTime_usec"
    return lines[1:]


def test_countdown_labels_the_planned_classes_on_the_stream_clock(qtbot, window_factory, feeder, control_recorder,
                                                                  tmp_path):
    feeder.window_us = 50_000  # 2.5 s of stream a second: the runs pass quickly
    window, teach = _wait_for_stream(qtbot, window_factory, feeder, control_recorder, tmp_path)
    teach.reps_box.setValue(2)
    teach.seconds_box.setValue(0.5)
    teach.rest_box.setValue(1.0)  # the last 1 s of each rest counted down
    before = teach.sensor_time_us
    qtbot.mouseClick(teach.countdown_button, LEFT)
    c = teach.countdown
    assert c is not None and len(c.runs) == 2
    qtbot.waitUntil(lambda: "next:" in teach.prompt_label.text(), timeout=10_000)
    first = NAMES[c.runs[0][0].label]
    assert teach.prompt_label.text().startswith(f"next: {first} in 1…") and teach.prompt_label.isVisible()
    qtbot.waitUntil(lambda: teach.countdown is None, timeout=60_000)

    assert len(c.bases) == 2
    stems = [r["path"].removesuffix(".aedat4") for r in control_recorder.requests if r["cmd"] == "record_start"]
    assert len(stems) == 2 and [r["cmd"] for r in control_recorder.requests].count("record_stop") == 2
    for r, stem in enumerate(stems):
        base, run = c.bases[r], c.runs[r]
        assert sorted(s.label for s in run) == [0, 1, 2]  # every class once per run
        rows = _rows(tmp_path / f"{stem}_labels.csv")
        assert rows == [f"{s.label + 1},{base + s.t_start},{base + s.t_end}" for s in run]
        starts = [base + s.t_start for s in run]
        assert [s.t_end - s.t_start for s in run] == [500_000] * 3  # M seconds each
        assert starts[0] - base == 1_000_000 and list(np.diff(starts)) == [1_500_000] * 2
        assert (base - OFFSET_US) % feeder.window_us == 0  # a window end the stream showed
    assert c.bases[0] >= before and c.bases[1] >= c.bases[0] + c.run_us  # run 2 after run 1's end
    assert (tmp_path / "trials_to_train.txt").read_text().split() == [f"{stems[0]}.aedat4"]
    assert (tmp_path / "trials_to_test.txt").read_text().split() == [f"{stems[1]}.aedat4"]  # the 2nd is held out
    assert "countdown done: 2 of 2 runs listed (1 train, 1 test)" in teach.message
    assert teach.state == "idle" and not teach.prompt_label.isVisible() and teach.reps_box.isEnabled()


def _advance_until(qtbot, window, condition) -> None:
    """Draw and let the countdown look at the stream time until ``condition()`` holds."""
    qtbot.waitUntil(lambda: (window.tick(), window.teach.advance_countdown(), bool(condition()))[2], timeout=10_000)


def test_stop_mid_countdown_keeps_the_completed_segments(qtbot, window_factory, feeder, control_recorder, tmp_path):
    window, teach = _wait_for_stream(qtbot, window_factory, feeder, control_recorder, tmp_path)
    window.timer.stop()  # from here the test draws and drives the countdown
    teach.reps_box.setValue(3)
    teach.seconds_box.setValue(0.05)
    teach.rest_box.setValue(0.0)
    qtbot.mouseClick(teach.countdown_button, LEFT)
    teach.countdown_timer.stop()
    c = teach.countdown
    _advance_until(qtbot, window, lambda: teach.state == "recording" and c.bases)
    base, (s0, s1, _) = c.bases[0], c.runs[0]
    _advance_until(qtbot, window, lambda: teach.sensor_time_us >= base + s1.t_start)
    assert teach.open == (s1.label, base + s1.t_start)  # the 2nd gesture under way
    csv = tmp_path / f"{teach.stem}_labels.csv"
    assert _rows(csv) == [f"{s0.label + 1},{base + s0.t_start},{base + s0.t_end}"]

    qtbot.keyClick(window, QtCore.Qt.Key.Key_1)  # keys are refused while the countdown labels
    assert "countdown labels" in teach.message and teach.open == (s1.label, base + s1.t_start)
    qtbot.keyClick(window, QtCore.Qt.Key.Key_Space)
    assert "countdown ends its segments" in teach.message and len(teach.segments) == 1

    stem = teach.stem
    qtbot.mouseClick(teach.countdown_button, LEFT)  # ■ Stop
    assert teach.state == "stopping"  # record_stop sent
    _advance_until(qtbot, window, lambda: teach.countdown is None)
    assert _rows(csv) == [f"{s0.label + 1},{base + s0.t_start},{base + s0.t_end}"]  # the open one dropped
    assert (tmp_path / "trials_to_train.txt").read_text().split() == [f"{stem}.aedat4"]
    assert [r["cmd"] for r in control_recorder.requests].count("record_start") == 1  # no further run
    assert "countdown stopped: 1 of 3 runs listed" in teach.message and teach.state == "idle"
    assert teach.countdown_button.text() == "▶ Countdown"


def test_countdown_into_an_unwritable_labels_file_keeps_the_segments(qtbot, window_factory, feeder, control_recorder,
                                                                     tmp_path):
    window, teach = _wait_for_stream(qtbot, window_factory, feeder, control_recorder, tmp_path)
    window.timer.stop()
    teach.reps_box.setValue(2)
    teach.seconds_box.setValue(0.05)
    teach.rest_box.setValue(0.0)
    qtbot.mouseClick(teach.countdown_button, LEFT)
    teach.countdown_timer.stop()
    c = teach.countdown
    _advance_until(qtbot, window, lambda: teach.state == "recording" and c.bases)
    stem, base, run = teach.stem, c.bases[0], c.runs[0]
    csv = tmp_path / f"{stem}_labels.csv"
    csv.mkdir()  # the labels file cannot be written
    _advance_until(qtbot, window, lambda: teach.countdown is None)  # the run ends, its labels unwritable
    assert "labels could not be written; 3 segments kept here" in teach.message and "\n" not in teach.message
    assert [r["cmd"] for r in control_recorder.requests].count("record_start") == 1  # no run 2 without run 1's labels
    assert not (tmp_path / "trials_to_train.txt").exists()

    qtbot.mouseClick(teach.countdown_button, LEFT)  # still unwritable: refused, nothing lost
    assert "cannot write" in teach.message and teach.countdown is None and len(teach.segments) == 3
    csv.rmdir()
    qtbot.mouseClick(teach.countdown_button, LEFT)  # writable again: the kept segments first, then a new countdown
    teach.countdown_timer.stop()
    assert _rows(csv) == [f"{s.label + 1},{base + s.t_start},{base + s.t_end}" for s in run]
    assert (tmp_path / "trials_to_train.txt").read_text().split() == [f"{stem}.aedat4"]
    assert teach.countdown is not None and teach.stem != stem
    teach.stop_countdown()
    _advance_until(qtbot, window, lambda: teach.countdown is None)


def test_countdown_without_a_folder_or_during_a_recording_is_refused(qtbot, window_factory, feeder, control_recorder,
                                                                    tmp_path):
    feeder.set("status", status_data())
    feeder.set("pred", _pred())
    window = window_factory(feeder.address, control=control_recorder.address)
    teach = window.teach
    wait_ticks(qtbot, window)
    qtbot.mouseClick(teach.countdown_button, LEFT)
    assert "no recordings folder" in teach.message and teach.countdown is None
    teach.set_folder(tmp_path)
    qtbot.mouseClick(teach.record_button, LEFT)  # a key-labelled recording
    qtbot.waitUntil(lambda: teach.state == "recording", timeout=5000)
    qtbot.mouseClick(teach.countdown_button, LEFT)
    assert "Stop it before a countdown" in teach.message and teach.countdown is None
    assert [r["cmd"] for r in control_recorder.requests] == ["record_start"]


@pytest.mark.slow
def test_teach_through_a_real_pipeline_records_and_labels_inside_the_recording(qtbot, window_factory, repo_root,
                                                                               tmp_path):
    recording = repo_root / "recordings" / "gestures_128x128.aedat4"
    if not recording.exists():
        pytest.skip(f"bundled recording {recording} missing")
    port = free_port(pair=True)
    process = subprocess.Popen(
        [sys.executable, str(repo_root / "main.py"), "--replay", str(recording), "--no-gui", "--quiet", "--loop",
         "--publish", f"tcp://127.0.0.1:{port}", "--record-dir", str(tmp_path), "--duration", "90"],
        cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        window = window_factory(f"tcp://127.0.0.1:{port}")
        teach = window.teach
        qtbot.waitUntil(lambda: teach.record_dir is not None and teach.sensor_time_us is not None, timeout=90_000)
        assert os.path.realpath(teach.record_dir) == os.path.realpath(tmp_path)
        qtbot.mouseClick(teach.record_button, LEFT)
        qtbot.waitUntil(lambda: teach.state == "recording", timeout=10_000)
        for key in (QtCore.Qt.Key.Key_3, QtCore.Qt.Key.Key_Space):
            before = teach.sensor_time_us
            qtbot.waitUntil(lambda b=before: teach.sensor_time_us > b + 300_000, timeout=10_000)
            qtbot.keyClick(window, key)
        start = teach.sensor_time_us
        qtbot.waitUntil(lambda: teach.sensor_time_us > start + 300_000, timeout=10_000)
        qtbot.mouseClick(teach.record_button, LEFT)
        qtbot.waitUntil(lambda: teach.state == "idle", timeout=10_000)
        assert "-> " in teach.message, teach.message
    finally:
        process.terminate()
        process.wait(20)
    (csv,) = tmp_path.glob("teach_*_labels.csv")
    labels = read_labels(csv)
    with Aedat4Reader(tmp_path / csv.name.replace("_labels.csv", ".aedat4")) as reader:
        t = reader.read()["t"]
    assert labels["label"].tolist() == [2]
    # The segment lies inside what the pipeline recorded, in the same sensor clock.
    assert t.min() <= labels["t_start"][0] < labels["t_end"][0] <= t.max()
    listed = (tmp_path / "trials_to_train.txt").read_text().split()
    assert listed == [csv.name.replace("_labels.csv", ".aedat4")]
