"""Controls panel: replay (play/pause, speed, seek, step, loop) and live recording.

Every action becomes a control command (:data:`evstream.protocol.CONTROL_COMMANDS`) emitted as
``command(name, args)``; the window hands it to the :class:`ControlWorker`, so nothing here
touches a socket. The ``status`` message (repeated every second) sets which controls apply
(replay or live) and where the seek slider stands, unless the user is dragging it.

A click on the seek slider's groove seeks to the time under the pointer (not a page step), and
dragging on from there seeks where the button is released. "…" chooses the recording's file in a
save dialog (``choose_path``, replaceable in tests); the path the pipeline writes is shown while
it records. The pipeline takes a path relative to its recordings folder (``status.record_dir``):
a file chosen inside that folder is sent relative to it, any other as chosen (the pipeline
refuses a path outside its folder and says so).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from PyQt6 import QtCore, QtWidgets

from evstream.dashboard.style import flexible_label, panel_title
from evstream.protocol import Message

__all__ = ["ControlsPanel", "SeekSlider", "SPEEDS"]

# (label, value of the "speed" command); 0 = as fast as possible.
SPEEDS = (("×0.1", 0.1), ("×0.25", 0.25), ("×0.5", 0.5), ("×1", 1.0), ("×2", 2.0), ("×4", 4.0), ("×10", 10.0),
          ("×30", 30.0), ("×100", 100.0), ("max", 0.0))
_SLIDER_STEPS = 1000


class SeekSlider(QtWidgets.QSlider):
    """A horizontal slider that jumps to the clicked position (Qt's default steps a page) and drags from there."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(QtCore.Qt.Orientation.Horizontal, parent)
        self._jumped = False

    def value_at(self, x: float) -> int:
        """The slider value under widget x coordinate ``x``."""
        option = QtWidgets.QStyleOptionSlider()
        self.initStyleOption(option)
        style = self.style()
        groove = style.subControlRect(QtWidgets.QStyle.ComplexControl.CC_Slider, option,
                                      QtWidgets.QStyle.SubControl.SC_SliderGroove, self)
        handle = style.subControlRect(QtWidgets.QStyle.ComplexControl.CC_Slider, option,
                                      QtWidgets.QStyle.SubControl.SC_SliderHandle, self)
        span = max(groove.width() - handle.width(), 1)
        offset = int(round(x - groove.x() - handle.width() / 2))
        return QtWidgets.QStyle.sliderValueFromPosition(self.minimum(), self.maximum(), min(max(offset, 0), span), span,
                                                        option.upsideDown)

    def mousePressEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if event.button() == QtCore.Qt.MouseButton.LeftButton and self.isEnabled():
            self._jumped = True
            self.setSliderDown(True)
            self.setValue(self.value_at(event.position().x()))
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self._jumped:
            self.setValue(self.value_at(event.position().x()))
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if self._jumped and event.button() == QtCore.Qt.MouseButton.LeftButton:
            self._jumped = False
            self.setValue(self.value_at(event.position().x()))
            self.setSliderDown(False)  # emits sliderReleased: one seek per click or drag
            event.accept()
            return
        super().mouseReleaseEvent(event)


def _ask_save_path(parent: QtWidgets.QWidget, start: str) -> str:
    path, _ = QtWidgets.QFileDialog.getSaveFileName(parent, "Record events to", start, "AEDAT 4 (*.aedat4)")
    return path


def _ask_model_path(parent: QtWidgets.QWidget, start: str) -> str:
    path, _ = QtWidgets.QFileDialog.getOpenFileName(parent, "Load a checkpoint", start, "Checkpoints (*.pt)")
    return path


class ControlsPanel(QtWidgets.QWidget):
    """Buttons that send control commands."""

    command = QtCore.pyqtSignal(str, dict)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        header = QtWidgets.QHBoxLayout()
        header.addWidget(panel_title("Controls"))
        self.address_label = flexible_label("control: unknown")
        self.address_label.setStyleSheet("color: #8a8a96;")
        header.addWidget(self.address_label, 1)
        layout.addLayout(header)

        replay = QtWidgets.QHBoxLayout()
        self.play_button = QtWidgets.QPushButton("Pause")
        self.play_button.setToolTip("pause or resume the pipeline")
        self.step_button = QtWidgets.QPushButton("Step")
        self.step_button.setToolTip("while paused: advance one window")
        self.speed = QtWidgets.QComboBox()
        for label, value in SPEEDS:
            self.speed.addItem(label, value)
        self.speed.setCurrentIndex(self.speed.findData(1.0))
        self.loop_box = QtWidgets.QCheckBox("loop")
        replay.addWidget(self.play_button)
        replay.addWidget(self.step_button)
        replay.addWidget(QtWidgets.QLabel("speed"))
        replay.addWidget(self.speed)
        replay.addWidget(self.loop_box)
        replay.addStretch(1)
        layout.addLayout(replay)

        seek = QtWidgets.QHBoxLayout()
        self.seek_slider = SeekSlider()
        self.seek_slider.setRange(0, _SLIDER_STEPS)
        self.seek_slider.setToolTip("click or drag to seek (replay)")
        self.position_label = QtWidgets.QLabel("— / —")
        seek.addWidget(self.seek_slider, 1)
        seek.addWidget(self.position_label)
        layout.addLayout(seek)

        record = QtWidgets.QHBoxLayout()
        self.record_path = QtWidgets.QLineEdit("recording.aedat4")
        self.record_path.setToolTip("file the pipeline writes (on the pipeline's machine), relative to its recordings folder")
        self.browse_button = QtWidgets.QPushButton("…")
        self.browse_button.setToolTip("choose the file in a dialog")
        self.browse_button.setFixedWidth(32)
        self.record_button = QtWidgets.QPushButton("Record")
        record.addWidget(QtWidgets.QLabel("record to"))
        record.addWidget(self.record_path, 1)
        record.addWidget(self.browse_button)
        record.addWidget(self.record_button)
        layout.addLayout(record)
        self.record_status = flexible_label("")
        self.record_status.setStyleSheet("color: #8a8a96;")
        layout.addWidget(self.record_status)

        model = QtWidgets.QHBoxLayout()
        self.model_label = flexible_label("model: unknown")
        self.model_label.setToolTip("the model deciding now; Load model swaps another checkpoint in between windows")
        self.load_model_button = QtWidgets.QPushButton("Load model…")
        self.load_model_button.setToolTip("choose a checkpoint (.pt, on the pipeline's machine) to swap in between "
                                          "windows; one that does not fit is refused and the running model keeps going")
        model.addWidget(self.model_label, 1)
        model.addWidget(self.load_model_button)
        layout.addLayout(model)

        self.reply_label = QtWidgets.QLabel("")
        self.reply_label.setWordWrap(True)
        layout.addWidget(self.reply_label)
        layout.addStretch(1)

        self.play_button.clicked.connect(self._play_clicked)
        self.step_button.clicked.connect(lambda: self.command.emit("step", {}))
        self.speed.activated.connect(lambda _index: self.command.emit("speed", {"value": float(self.speed.currentData())}))
        self.loop_box.clicked.connect(lambda checked: self.command.emit("loop", {"value": bool(checked)}))
        self.seek_slider.sliderReleased.connect(self._seek_released)
        self.record_button.clicked.connect(self._record_clicked)
        self.browse_button.clicked.connect(self.browse)
        self.record_path.textChanged.connect(self._show_record_target)
        self.load_model_button.clicked.connect(self.load_model)

        self.state = "unknown"
        self.live: bool | None = None
        self.recording = False
        self.recording_path: str | None = None
        self.record_dir: str | None = None
        self.duration_us: int | None = None
        # (parent, start path) -> chosen path or "" (cancelled); a test replaces it, no modal dialog then
        self.choose_path: Callable[[QtWidgets.QWidget, str], str] = _ask_save_path
        self.choose_model: Callable[[QtWidgets.QWidget, str], str] = _ask_model_path
        self._show_record_target()

    def load_model(self) -> None:
        """Choose a checkpoint in a dialog and ask the pipeline to swap it in (``load_model``)."""
        chosen = self.choose_model(self, "")
        if chosen:
            self.command.emit("load_model", {"path": chosen})

    def browse(self) -> None:
        """Choose the recording's file in a dialog; a file inside the pipeline's recordings folder is
        entered relative to it (what ``record_start`` expects)."""
        current = self.record_path.text().strip() or "recording.aedat4"
        start = current if os.path.isabs(current) or not self.record_dir else os.path.join(self.record_dir, current)
        chosen = self.choose_path(self, start)
        if not chosen:
            return
        if not chosen.endswith(".aedat4"):
            chosen += ".aedat4"
        if self.record_dir:
            folder = os.path.realpath(self.record_dir)
            real = os.path.realpath(chosen)
            if os.path.commonpath([real, folder]) == folder and real != folder:
                chosen = os.path.relpath(real, folder)
        self.record_path.setText(chosen)
        self._show_record_target()

    def _show_record_target(self) -> None:
        if self.recording and self.recording_path:
            self.record_status.setText(f"recording to {self.recording_path}")
            return
        name = self.record_path.text().strip() or "recording.aedat4"
        target = name if os.path.isabs(name) or not self.record_dir else os.path.join(self.record_dir, name)
        self.record_status.setText(f"Record writes {target}")

    def _play_clicked(self) -> None:
        self.command.emit("resume" if self.state == "paused" else "pause", {})

    def _seek_released(self) -> None:
        if self.duration_us:
            t_us = int(self.duration_us * self.seek_slider.value() / _SLIDER_STEPS)
            self.command.emit("seek", {"t_us": t_us})

    def _record_clicked(self) -> None:
        if self.recording:
            self.command.emit("record_stop", {})
        else:
            self.command.emit("record_start", {"path": self.record_path.text().strip() or "recording.aedat4"})

    def show_status(self, message: Message) -> None:
        """Follow the pipeline's ``status``: state, position, speed, loop, recording."""
        data = message.data
        self.state = str(data.get("state", "unknown"))
        self.live = bool(data.get("live", False))
        recording = data.get("recording")
        self.recording = bool(recording)
        self.recording_path = recording if isinstance(recording, str) else None
        record_dir = data.get("record_dir")
        self.record_dir = record_dir if isinstance(record_dir, str) and record_dir else None
        self._show_record_target()
        self.play_button.setText("Play" if self.state == "paused" else "Pause")
        self.step_button.setEnabled(self.state == "paused")
        for widget in (self.speed, self.loop_box, self.seek_slider):
            widget.setEnabled(not self.live)
        self.record_button.setText("Stop recording" if self.recording else "Record")
        model, classes = data.get("model"), data.get("classes")
        if isinstance(model, str):
            n = len(classes) if isinstance(classes, list) else "?"
            self.model_label.setText(f"model: {model} ({n} classes)")
        duration = data.get("duration_us")
        position = data.get("position_us")
        self.duration_us = int(duration) if isinstance(duration, (int, float)) and duration > 0 else None
        if self.duration_us and isinstance(position, (int, float)):
            if not self.seek_slider.isSliderDown():
                self.seek_slider.setValue(int(_SLIDER_STEPS * min(max(position / self.duration_us, 0.0), 1.0)))
            self.position_label.setText(f"{position / 1e6:.1f} / {self.duration_us / 1e6:.1f} s")
        elif isinstance(position, (int, float)):
            self.position_label.setText(f"{position / 1e6:.1f} s (live)")
        speed = data.get("speed")
        if isinstance(speed, (int, float)):
            index = self.speed.findData(float(speed))
            if index >= 0 and not self.speed.view().isVisible():
                self.speed.setCurrentIndex(index)
        if isinstance(data.get("loop"), bool):
            self.loop_box.setChecked(data["loop"])

    def show_reply(self, text: str, ok: bool) -> None:
        """Show the outcome of the latest command."""
        self.reply_label.setStyleSheet("color: #70d090;" if ok else "color: #ff7070;")
        self.reply_label.setText(text)

    def set_address(self, address: str | None) -> None:
        self.address_label.setText(f"control: {address}" if address else "control: unknown")
