"""Each control sends its command to a real REP socket; the GUI never waits on the network."""

from __future__ import annotations

import time

import zmq
from PyQt6 import QtCore

from evstream.dashboard.control import ControlWorker, default_control_address, reachable_control_address
from tests.dashboard.streams import status_data, wait_ticks

LEFT = QtCore.Qt.MouseButton.LeftButton


def _wait_requests(qtbot, recorder, n: int) -> None:
    qtbot.waitUntil(lambda: len(recorder.requests) >= n, timeout=5000)


def test_every_control_sends_its_command(qtbot, window_factory, feeder, control_recorder):
    feeder.set("status", status_data(state="running"))
    window = window_factory(feeder.address, control=control_recorder.address)
    controls = window.controls
    qtbot.waitUntil(lambda: controls.state == "running", timeout=5000)
    expected = []

    def press(widget, request: dict) -> None:
        qtbot.mouseClick(widget, LEFT)
        expected.append(request)
        _wait_requests(qtbot, control_recorder, len(expected))

    press(window.prediction.reset_button, {"cmd": "reset"})
    assert controls.play_button.text() == "Pause"
    press(controls.play_button, {"cmd": "pause"})

    feeder.set("status", status_data(state="paused"))
    qtbot.waitUntil(lambda: controls.state == "paused", timeout=5000)
    assert controls.play_button.text() == "Play" and controls.step_button.isEnabled()
    press(controls.step_button, {"cmd": "step"})
    press(controls.play_button, {"cmd": "resume"})

    # Speed: the keyboard moves a closed combo box one entry (×1 -> ×2).
    controls.speed.setFocus()
    qtbot.keyClick(controls.speed, QtCore.Qt.Key.Key_Down)
    expected.append({"cmd": "speed", "value": 2.0})
    _wait_requests(qtbot, control_recorder, len(expected))

    controls.loop_box.setChecked(False)
    press(controls.loop_box, {"cmd": "loop", "value": True})

    # Seek: drag the slider to 75 % of the 10 s recording, release.
    controls.seek_slider.setSliderDown(True)
    controls.seek_slider.setValue(750)
    controls.seek_slider.setSliderDown(False)
    expected.append({"cmd": "seek", "t_us": 7_500_000})
    _wait_requests(qtbot, control_recorder, len(expected))

    controls.record_path.setText("/tmp/take1.aedat4")
    press(controls.record_button, {"cmd": "record_start", "path": "/tmp/take1.aedat4"})
    feeder.set("status", status_data(state="running", recording=True))
    qtbot.waitUntil(lambda: controls.record_button.text() == "Stop recording", timeout=5000)
    press(controls.record_button, {"cmd": "record_stop"})

    # Load model: the dialog is replaced (no modal window in a test); cancelling sends nothing.
    controls.choose_model = lambda parent, start: ""
    qtbot.mouseClick(controls.load_model_button, LEFT)
    controls.choose_model = lambda parent, start: "/models/mine.pt"
    press(controls.load_model_button, {"cmd": "load_model", "path": "/models/mine.pt"})

    assert control_recorder.requests == expected
    qtbot.waitUntil(lambda: controls.reply_label.text() == "load_model: ok", timeout=5000)
    assert controls.model_label.text().startswith("model: ") and "classes)" in controls.model_label.text()


def test_control_address_comes_from_status_else_port_plus_one(qtbot, window_factory, feeder, control_recorder):
    window = window_factory(feeder.address)
    port = int(feeder.address.rsplit(":", 1)[1])
    assert window.control.address == f"tcp://127.0.0.1:{port + 1}"
    # The pipeline announces a wildcard bind; the dashboard reaches it on the publisher's host.
    announced = control_recorder.address.replace("127.0.0.1", "*")
    feeder.set("status", status_data(control=announced))
    qtbot.waitUntil(lambda: window.control.address == control_recorder.address, timeout=5000)
    qtbot.mouseClick(window.prediction.reset_button, LEFT)
    _wait_requests(qtbot, control_recorder, 1)
    assert control_recorder.requests == [{"cmd": "reset"}]


def test_unanswered_command_times_out_without_blocking_the_gui(qtbot, window_factory, feeder, zmq_context):
    silent = zmq_context.socket(zmq.ROUTER)  # accepts the connection, never answers
    silent.setsockopt(zmq.LINGER, 0)
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    try:
        feeder.set("status", status_data())
        window = window_factory(feeder.address, control=f"tcp://127.0.0.1:{port}", control_timeout_ms=300)
        started = time.monotonic()
        qtbot.mouseClick(window.prediction.reset_button, LEFT)
        assert time.monotonic() - started < 0.2  # the click returned at once
        ticks = window.ticks
        qtbot.waitUntil(lambda: "within 300 ms" in window.controls.reply_label.text(), timeout=5000)
        assert window.ticks > ticks  # the draw timer kept running meanwhile
        wait_ticks(qtbot, window)
    finally:
        silent.close(0)


def test_control_worker_recovers_after_a_timeout(control_recorder, zmq_context):
    worker = ControlWorker(None, timeout_ms=300)
    try:
        worker.send("reset")
        deadline = time.monotonic() + 5
        replies = []
        while not replies and time.monotonic() < deadline:
            replies = worker.replies()
            time.sleep(0.01)
        assert replies[0].ok is False and "no control address" in replies[0].error
        worker.set_address(control_recorder.address)
        worker.send("seek", t_us=5)
        while not (replies := worker.replies()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert replies[0].ok and replies[0].reply["echo"] == "seek"
        assert control_recorder.requests == [{"cmd": "seek", "t_us": 5}]
    finally:
        worker.close()


def test_default_control_address():
    assert default_control_address("tcp://127.0.0.1:5556") == "tcp://127.0.0.1:5557"
    assert default_control_address("tcp://[::1]:7000") == "tcp://[::1]:7001"
    assert default_control_address("inproc://evstream") is None
    assert default_control_address("ipc:///tmp/evstream") is None


def test_announced_control_address_as_seen_from_the_subscriber():
    remote = "tcp://10.0.0.5:5556"
    assert reachable_control_address("tcp://*:5557", remote) == "tcp://10.0.0.5:5557"
    assert reachable_control_address("tcp://0.0.0.0:5557", remote) == "tcp://10.0.0.5:5557"
    assert reachable_control_address("tcp://127.0.0.1:5557", remote) == "tcp://10.0.0.5:5557"
    assert reachable_control_address("tcp://[::]:5557", "tcp://[fe80::1]:5556") == "tcp://[fe80::1]:5557"
    assert reachable_control_address("tcp://127.0.0.1:5557", "tcp://127.0.0.1:5556") == "tcp://127.0.0.1:5557"
    assert reachable_control_address("tcp://10.0.0.7:6000", remote) == "tcp://10.0.0.7:6000"
    assert reachable_control_address("inproc://control", "inproc://pub") == "inproc://control"
