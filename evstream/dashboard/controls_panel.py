"""Controls panel: replay (play/pause, speed, seek, step, loop) and live recording.

Every action becomes a control command (:data:`evstream.protocol.CONTROL_COMMANDS`) emitted as
``command(name, args)``; the window hands it to the :class:`ControlWorker`, so nothing here
touches a socket. The ``status`` message (repeated every second) sets which controls apply
(replay or live) and where the seek slider stands, unless the user is dragging it.
"""

from __future__ import annotations

from PyQt6 import QtCore, QtWidgets

from evstream.dashboard.style import flexible_label, panel_title
from evstream.protocol import Message

__all__ = ["ControlsPanel", "SPEEDS"]

# (label, value of the "speed" command); 0 = as fast as possible.
SPEEDS = (("×0.25", 0.25), ("×0.5", 0.5), ("×1", 1.0), ("×2", 2.0), ("×4", 4.0), ("max", 0.0))
_SLIDER_STEPS = 1000


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
        self.speed.setCurrentIndex(2)
        self.loop_box = QtWidgets.QCheckBox("loop")
        replay.addWidget(self.play_button)
        replay.addWidget(self.step_button)
        replay.addWidget(QtWidgets.QLabel("speed"))
        replay.addWidget(self.speed)
        replay.addWidget(self.loop_box)
        replay.addStretch(1)
        layout.addLayout(replay)

        seek = QtWidgets.QHBoxLayout()
        self.seek_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.seek_slider.setRange(0, _SLIDER_STEPS)
        self.position_label = QtWidgets.QLabel("— / —")
        seek.addWidget(self.seek_slider, 1)
        seek.addWidget(self.position_label)
        layout.addLayout(seek)

        record = QtWidgets.QHBoxLayout()
        self.record_path = QtWidgets.QLineEdit("recording.aedat4")
        self.record_path.setToolTip("file the pipeline writes (on the pipeline's machine)")
        self.record_button = QtWidgets.QPushButton("Record")
        record.addWidget(QtWidgets.QLabel("record to"))
        record.addWidget(self.record_path, 1)
        record.addWidget(self.record_button)
        layout.addLayout(record)

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

        self.state = "unknown"
        self.live: bool | None = None
        self.recording = False
        self.duration_us: int | None = None

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
        self.recording = bool(data.get("recording", False))
        self.play_button.setText("Play" if self.state == "paused" else "Pause")
        self.step_button.setEnabled(self.state == "paused")
        for widget in (self.speed, self.loop_box, self.seek_slider):
            widget.setEnabled(not self.live)
        self.record_button.setText("Stop recording" if self.recording else "Record")
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
