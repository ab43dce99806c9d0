"""The dashboard window: panels, the socket reader, the control worker and the draw timer.

The GUI thread only draws: a QTimer (``display_hz``, 30 by default) takes the messages that
arrived since the last tick (latest per topic, from :class:`StreamReader`) and hands each to its
panel. The event image, the prediction and the status follow every tick; the secondary panels
(spike maps, attention, stats plot, decision ribbon) at most :data:`SECONDARY_HZ` times a second,
which no eye misses and which halves the GUI thread's painting. "disconnected" shows when no
message at all (``status`` repeats every second) arrived for :data:`DISCONNECTED_AFTER_S`; the
timer keeps running, so the window never freezes.

Every timeline (decision and truth ribbons, the stream plot, the times in the panels' headers)
is in sensor time relative to the recording's start, from the run's
:class:`~evstream.dashboard.timeline.Timeline`; the ribbon and the stream plot share one time
axis. The window title names the source (the recording's file name) and the model, from
``status``. The dark palette is the application's, so pop-ups (drop-down lists, dialogs,
tooltips) are dark too.

Below the controls, the Teach panel records labelled runs through the pipeline's recorder and the
Fine-tune panel trains on its folder in a child process, offering the result through
``load_model``; a ``load_model`` sent from here (either panel, or "Load model…") is remembered,
so a fine-tune can start from the file the running model came from.

A pipeline serving several sources (``status`` lists more than one in ``streams``) gets a
"stream" drop-down in the top bar (hidden otherwise): the panels show the chosen stream's
predictions, events and figures (:meth:`StreamReader.set_stream`), and the top bar its source and
sensor.
"""

from __future__ import annotations

import os
import time
from collections import deque

import zmq
from PyQt6 import QtCore, QtGui, QtWidgets

from evstream.dashboard.accumulate import EventAccumulator
from evstream.dashboard.attention_panel import AttentionPanel
from evstream.dashboard.control import ControlWorker, default_control_address, reachable_control_address
from evstream.dashboard.controls_panel import ControlsPanel
from evstream.dashboard.events_panel import EventsPanel
from evstream.dashboard.finetune import FinetunePanel
from evstream.dashboard.prediction_panel import PredictionPanel
from evstream.dashboard.reader import Snapshot, StreamReader, stream_status
from evstream.dashboard.spikes_panel import SpikesPanel
from evstream.dashboard.stats_panel import StatsPanel
from evstream.dashboard.style import configure_pyqtgraph, dark_palette, flexible_label
from evstream.dashboard.teach_panel import TeachPanel
from evstream.dashboard.timeline import Timeline
from evstream.protocol import Message

__all__ = ["DashboardWindow", "DISCONNECTED_AFTER_S", "SECONDARY_HZ"]

DISCONNECTED_AFTER_S = 2.5
SECONDARY_HZ = 10.0
_SECONDARY_TOPICS = ("spikes", "attn")


class DashboardWindow(QtWidgets.QMainWindow):
    """Main window attached to a published stream.

    Args:
        address: the pipeline's PUB address (``tcp://127.0.0.1:5556``, ``inproc://...``).
        control: the control (REP) address; None: from the ``status`` message's ``control``
            field, else the publish port + 1.
        context: ZeroMQ context (the publisher's, for ``inproc://``).
        display_hz: draw rate; independent of the event accumulation span.
        control_timeout_ms: how long a control command waits for its reply (on the worker thread).
        curve_secret_key_file, curve_server_key_file: CURVE client and server certificates for an
            encrypted published stream (see :class:`evstream.publish.Subscriber`).
    """

    def __init__(
        self,
        address: str,
        control: str | None = None,
        context: zmq.Context | None = None,
        display_hz: float = 30.0,
        control_timeout_ms: int = 1500,
        curve_secret_key_file: str | os.PathLike | None = None,
        curve_server_key_file: str | os.PathLike | None = None,
    ) -> None:
        configure_pyqtgraph()
        super().__init__()
        self.address = address
        # The title names the recording once status says it; an in-process address means nothing to a user.
        self.setWindowTitle("evstream · waiting for the stream" if address.startswith("inproc://") else f"evstream · {address}")
        self.resize(1680, 1020)
        palette = dark_palette()
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.setPalette(palette)  # pop-ups (drop-down lists, dialogs) are windows of their own
        self.setPalette(palette)
        self.setAutoFillBackground(True)

        self.accumulator = EventAccumulator("window", 100_000)
        self.timeline = Timeline()
        self.reader = StreamReader(address, self.accumulator, context=context, curve_secret_key_file=curve_secret_key_file,
                                   curve_server_key_file=curve_server_key_file, timeline=self.timeline)
        self._explicit_control = control
        self.control = ControlWorker(control or default_control_address(address), context=context, timeout_ms=control_timeout_ms,
                                     curve={"curve_secret_key_file": curve_secret_key_file,
                                            "curve_server_key_file": curve_server_key_file})

        self.events = EventsPanel(self.accumulator, self.timeline)
        self.prediction = PredictionPanel(self.timeline)
        self.spikes = SpikesPanel()
        self.attention = AttentionPanel()
        self.stats = StatsPanel(self.timeline)
        # One time axis: the stream plot and the ribbon show the same range (pyqtgraph's setXLink
        # aligns by screen position, which differs with the axes' widths); panning either stops following.
        ribbon_box, stream_box = self.prediction.ribbon_plot.getViewBox(), self.stats.plot.getViewBox()
        ribbon_box.sigXRangeChanged.connect(lambda *_: _same_x_range(ribbon_box, stream_box))
        stream_box.sigXRangeChanged.connect(lambda *_: _same_x_range(stream_box, ribbon_box))
        stream_box.sigRangeChangedManually.connect(self.prediction.stop_following)
        _same_x_range(ribbon_box, stream_box)
        self.controls = ControlsPanel()
        self.controls.set_address(self.control.address)
        self.teach = TeachPanel()
        self.finetune = FinetunePanel(data_folder=lambda: self.teach.dataset_folder)

        top = QtWidgets.QHBoxLayout()
        self.connection_label = QtWidgets.QLabel()
        font = self.connection_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.3)
        self.connection_label.setFont(font)
        top.addWidget(self.connection_label)
        self.source_label = flexible_label("")
        top.addWidget(self.source_label, 1)
        self.stream_label = QtWidgets.QLabel("stream")
        self.stream_box = QtWidgets.QComboBox()
        self.stream_box.setToolTip("which of the pipeline's sources the panels show")
        for widget in (self.stream_label, self.stream_box):
            widget.setVisible(False)  # shown once status lists more than one stream
            top.addWidget(widget)
        top.addWidget(QtWidgets.QLabel("display"))
        self.display_rate = QtWidgets.QComboBox()
        for hz in (10, 30, 60):
            self.display_rate.addItem(f"{hz} Hz", hz)
        self.display_rate.setCurrentIndex(max(0, self.display_rate.findData(int(display_hz))))
        top.addWidget(self.display_rate)

        left = _splitter(QtCore.Qt.Orientation.Vertical, (self.events, 3), (self.controls, 1), (self.teach, 1),
                         (self.finetune, 1))
        middle = _splitter(QtCore.Qt.Orientation.Vertical, (self.prediction, 3), (self.stats, 2))
        right = _splitter(QtCore.Qt.Orientation.Vertical, (self.attention, 3), (self.spikes, 2))
        columns = _splitter(QtCore.Qt.Orientation.Horizontal, (left, 5), (middle, 4), (right, 5))
        columns.setSizes([560, 470, 640])
        left.setSizes([560, 180, 240, 120])
        middle.setSizes([560, 440])
        right.setSizes([480, 520])
        central = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(top)
        layout.addWidget(columns, 1)
        self.setCentralWidget(central)

        self.prediction.reset_requested.connect(lambda: self.send_command("reset", {}))
        self.controls.command.connect(self.send_command)
        self.teach.command.connect(self.send_command)
        self.finetune.command.connect(self.send_command)
        self.display_rate.currentIndexChanged.connect(self._rate_changed)
        self.stream_box.currentIndexChanged.connect(self._stream_changed)
        self.events.pointer_moved.connect(self.attention.select_at)
        self.attention.overlay_changed.connect(self._overlay_changed)
        self.events.overlay_box.toggled.connect(self._overlay_changed)

        self.status_data: dict = {}
        self._closed = False
        self._pending: dict = {}
        self.unusable: dict[str, int] = {}  # per topic: messages a panel could not show
        self.last_unusable: str | None = None
        self._last_secondary = 0.0
        self.last_snapshot = Snapshot()
        self.ticks = 0
        self._tick_times: deque[float] = deque(maxlen=512)
        self._started = time.monotonic()
        self._set_connection("waiting", f"waiting for {address}")
        # Single-shot, re-armed against a fixed schedule: a periodic QTimer re-arms from the moment
        # it fired, so every late wake-up on a busy machine would lower the rate for good.
        self.timer = QtCore.QTimer(self)
        self.timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self._scheduled_tick)
        self._period_s = 1.0 / 30
        self._next_due = time.monotonic()
        self.reader.start()
        self._rate_changed()

    def _rate_changed(self) -> None:
        self.set_display_rate(float(self.display_rate.currentData()))

    def set_display_rate(self, hz: float) -> None:
        """Draw ``hz`` times a second (any rate; the combo box offers 10, 30 and 60)."""
        self._period_s = 1.0 / hz
        self._next_due = time.monotonic() + self._period_s
        self.timer.start(int(self._period_s * 1000))

    @property
    def display_period_ms(self) -> float:
        """Time between draws, ms."""
        return self._period_s * 1000

    def _scheduled_tick(self) -> None:
        self.tick()
        now = time.monotonic()
        self._next_due += self._period_s
        if self._next_due < now - self._period_s:  # more than a frame behind: skip, do not burst
            self._next_due = now
        if not self._closed:
            self.timer.start(max(0, int((self._next_due - now) * 1000)))

    def _overlay_changed(self) -> None:
        """The event image shows the attention panel's overlay (received, or the hovered token's row)."""
        if self.events.overlay_box.isChecked() and self.attention.overlay_values is not None:
            self.events.set_attention(self.attention.overlay_values)

    def send_command(self, cmd: str, args: dict) -> None:
        """Queue a control command (never blocks the GUI thread)."""
        if cmd == "load_model" and isinstance(args.get("path"), str):
            self.finetune.note_loaded(args["path"])  # so a fine-tune can start from the file status names
        self.control.send(cmd, **args)
        self.controls.show_reply(f"{cmd} sent…", True)

    @property
    def fps(self) -> float:
        """Draws per second over the last second."""
        now = time.monotonic()
        recent = [t for t in self._tick_times if t >= now - 1.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    @property
    def connection_state(self) -> str:
        """``waiting`` (nothing yet), ``connected`` or ``disconnected``."""
        return self._connection

    def tick(self) -> None:
        """One draw: take the new messages, update the panels, the connection state and the figures."""
        now = time.monotonic()
        self.ticks += 1
        self._tick_times.append(now)
        snapshot = self.reader.take()
        self.last_snapshot = snapshot
        fresh = snapshot.fresh
        for message in fresh.values():  # sensor times and record_dir for labelled segments
            self.teach.observe(message)
        if "status" in fresh:
            self._guarded(fresh["status"], self._show_status, fresh["status"].data)
            self._guarded(fresh["status"], self.controls.show_status, fresh["status"])
        if "pred" in fresh:
            self._guarded(fresh["pred"], self.prediction.show_prediction, fresh["pred"])
            self._guarded(fresh["pred"], self.stats.add_prediction, fresh["pred"])
        if "stats" in fresh:
            self._guarded(fresh["stats"], self.stats.add_stats, fresh["stats"], now)
        self._pending.update((t, fresh[t]) for t in _SECONDARY_TOPICS if t in fresh)
        secondary = now - self._last_secondary >= 1.0 / SECONDARY_HZ - 0.005
        if secondary:
            self._last_secondary = now
            pending, self._pending = self._pending, {}
            if "spikes" in pending:
                self._guarded(pending["spikes"], self.spikes.show_spikes, pending["spikes"])
            if "attn" in pending:
                self._guarded(pending["attn"], self.attention.show_attention, pending["attn"])
            self.prediction.draw_ribbon(now)
        self.events.draw()

        seen = [t.last_monotonic for t in snapshot.topics.values() if t.last_monotonic is not None]
        if not seen:
            text = f"waiting for {self.address}"
            if snapshot.last_error:
                text += f" · {snapshot.last_error}"
            self._set_connection("waiting", text)
        elif now - max(seen) > DISCONNECTED_AFTER_S:
            self._set_connection("disconnected", f"disconnected · no message for {now - max(seen):.0f} s")
        else:
            state = self.status_data.get("state", "?")
            self._set_connection("connected", f"connected · {state}")
        if secondary:
            unusable = snapshot.bad_messages + sum(self.unusable.values())
            self.stats.draw(snapshot.topics, self.connection_label.text(), self.fps, now, unusable)
        for reply in self.control.replies():
            self.teach.on_reply(reply)
            self.finetune.on_reply(reply)
            text = f"{reply.cmd}: ok" if reply.ok else f"{reply.cmd}: {reply.error}"
            self.controls.show_reply(text, reply.ok)
            if reply.ok and reply.cmd == "seek":
                self.accumulator.clear()

    def _guarded(self, message: Message, show, *args) -> None:
        """Run one panel update. A message that decodes but that a panel cannot use (a field of
        the wrong type, an array of the wrong shape) is counted and named, never a crash: PyQt
        aborts the process on an exception that escapes a slot."""
        try:
            show(*args)
        except Exception as err:  # any fault of one message must leave the window running
            self.unusable[message.topic] = self.unusable.get(message.topic, 0) + 1
            self.last_unusable = f"{message.topic} message seq {message.seq}: {type(err).__name__}: {err}"
            self.source_label.setText(f"unusable {self.last_unusable}")

    def _set_connection(self, state: str, text: str) -> None:
        self._connection = state
        color = {"connected": "#60d080", "disconnected": "#ff5a5a"}.get(state, "#e0b040")
        if self.connection_label.text() != text:
            self.connection_label.setText(text)
            self.connection_label.setStyleSheet(f"color: {color};")

    def _stream_changed(self) -> None:
        sid = self.stream_box.currentData()
        if sid is None or sid == self.reader.stream:
            return
        self.reader.set_stream(int(sid))
        if self.status_data:
            self._show_status(self.status_data)  # the top bar names the chosen stream at once

    def select_stream(self, sid: int) -> None:
        """Show stream ``sid`` (as choosing it in the drop-down does)."""
        index = self.stream_box.findData(int(sid))
        if index >= 0:
            self.stream_box.setCurrentIndex(index)

    def _offer_streams(self, streams: object) -> None:
        entries = [(e["sid"], str(e.get("source", ""))) for e in streams if isinstance(e, dict)
                   and isinstance(e.get("sid"), int)] if isinstance(streams, list) else []
        several = len(entries) > 1
        self.stream_label.setVisible(several)
        self.stream_box.setVisible(several)
        offered = [(self.stream_box.itemData(i), self.stream_box.itemText(i)) for i in range(self.stream_box.count())]
        wanted = [(sid, f"{sid}: {name}") for sid, name in entries]
        if offered == wanted:
            return
        self.stream_box.blockSignals(True)
        self.stream_box.clear()
        for sid, text in wanted:
            self.stream_box.addItem(text, sid)
        self.stream_box.setCurrentIndex(max(0, self.stream_box.findData(self.reader.stream)))
        self.stream_box.blockSignals(False)

    def _show_status(self, data: dict) -> None:
        self._offer_streams(data.get("streams"))
        self.status_data = dict(data)
        data = stream_status(data, self.reader.stream)
        self.finetune.observe_status(data)
        classes = data.get("classes")
        if isinstance(classes, list) and classes:
            self.prediction.set_classes(classes)
        self.prediction.set_decision(data.get("decision"))
        geometry = data.get("geometry") if isinstance(data.get("geometry"), dict) else None
        self.events.set_geometry(geometry)
        self.attention.set_geometry(geometry)
        title = " · ".join(str(data[k]) for k in ("source", "model") if isinstance(data.get(k), str) and data[k])
        self.setWindowTitle(f"evstream · {title}" if title else f"evstream · {self.address}")
        sensor = data.get("sensor") or []
        streams = self.status_data.get("streams")
        parts = [
            (f"stream {self.reader.stream} of {len(streams)}: " if not self.stream_box.isHidden() and streams else "")
            + str(data.get("source", "")),
            f"sensor {sensor[0]}×{sensor[1]}" if len(sensor) == 2 else "",
            f"model {data.get('model')}" if data.get("model") else "",
            f"schema v{data.get('schema')}" if data.get("schema") is not None else "",
            str(data.get("message") or ""),
        ]
        self.source_label.setText("   ·   ".join(p for p in parts if p))
        if self._explicit_control is None:
            announced = data.get("control")
            address = reachable_control_address(announced, self.address) if isinstance(announced, str) and announced else default_control_address(self.address)
            if address and address != self.control.address:
                self.control.set_address(address)
                self.controls.set_address(address)

    def grab_png(self, path: str) -> bool:
        """Render the whole window into a PNG at ``path``; returns whether it was written."""
        self._last_secondary = 0.0  # every panel up to date in the picture, not only the fast ones
        self.tick()
        QtWidgets.QApplication.processEvents()
        pixmap: QtGui.QPixmap = self.grab()
        return pixmap.save(str(path), "PNG")

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:  # noqa: N802 (Qt override)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop the timer, the reader thread and the control worker (once)."""
        if self._closed:
            return
        self._closed = True
        self.timer.stop()
        self.finetune.shutdown()
        self.reader.stop()
        self.control.close()


def _same_x_range(source, target) -> None:
    """Give ``target`` (a ViewBox) the x range of ``source``."""
    x0, x1 = source.viewRange()[0]
    if target.viewRange()[0] != [x0, x1]:
        target.setXRange(x0, x1, padding=0)


def _splitter(orientation: QtCore.Qt.Orientation, *widgets: tuple[QtWidgets.QWidget, int]) -> QtWidgets.QSplitter:
    splitter = QtWidgets.QSplitter(orientation)
    for widget, _ in widgets:
        splitter.addWidget(widget)
    for i, (_, stretch) in enumerate(widgets):
        splitter.setStretchFactor(i, stretch)
    return splitter
