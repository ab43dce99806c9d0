"""Teach panel: record and label your own gestures from the dashboard.

"● Record run" starts a recording through the pipeline's recorder (``record_start`` on the
control socket, a file ``teach_<time>_<k>.aedat4`` in the pipeline's recordings folder,
``status.record_dir``); while it runs, a number key (1-9, 0 = the 10th class) or a click on a
class starts a labelled segment and the same key, the same click or space ends it. "■ Stop"
ends the recording (``record_stop``) and lists it in the folder's ``trials_to_train.txt`` /
``trials_to_test.txt`` (:func:`evstream.commands.collect.assign_split`). The folder gets the
layout ``python main.py collect`` writes (:class:`~evstream.commands.collect.UserDataset`): the
recording, a DVS128 Gesture-style ``<stem>_labels.csv`` kept by this panel and rewritten after
every segment (so a crash loses at most the open segment), and ``classes.txt``.

Segment times are sensor µs: the end (``t_end``) of the newest message (``pred``, ``stats``,
``frame``) the window drew when the key was pressed, i.e. the stream's newest window. They lag
what the eye sees by at most one window plus one draw, the same for start and end.

Bad input gets one line in the panel and changes nothing already labelled: a key or space
without a recording, space with no open segment, another class's key while one is open
(segments never overlap), a segment with no stream time between its start and end, a folder the
dashboard cannot write (the segments stay in memory and are written with the next one), a
folder with other classes in its ``classes.txt``. A segment during which the stream's windows
counted no event is kept with a warning.
"""

from __future__ import annotations

import os

from PyQt6 import QtCore, QtGui, QtWidgets

from evstream.commands.collect import Segment, UserDataset
from evstream.dashboard.style import flexible_label, panel_title
from evstream.errors import EvstreamError
from evstream.labels import DVS_GESTURE_CLASSES
from evstream.protocol import Message

__all__ = ["TeachPanel"]

_KEYS = "1234567890"  # key k labels class k (0 = the 10th)


class TeachPanel(QtWidgets.QWidget):
    """Labelled recording from the dashboard.

    Signals:
        command(name, args): a control command for the pipeline (``record_start`` / ``record_stop``).

    Args:
        class_names: the classes offered (default the 11 DVS128 Gesture classes).
        test_every: every N-th recording of the folder is held out (see ``assign_split``).
    """

    command = QtCore.pyqtSignal(str, dict)

    def __init__(self, class_names: tuple[str, ...] | list[str] = DVS_GESTURE_CLASSES, test_every: int = 5,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.test_every = test_every
        self.class_names: tuple[str, ...] = ()
        self.sensor_time_us: int | None = None  # newest sensor time the stream showed
        self.record_dir: str | None = None  # from status (the pipeline's recordings folder)
        self.folder: str | None = None  # explicit dataset folder (set_folder); else record_dir
        self.state = "idle"  # idle | starting | recording | stopping
        self.dataset: UserDataset | None = None
        self.stem: str | None = None
        self.segments: list[Segment] = []
        self.unsaved = False  # segments not yet on disk (a write failed)
        self.open: tuple[int, int] | None = None  # (class, start µs) of the open segment
        self._open_events = 0
        self.message = ""

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(panel_title("Teach: record and label your gestures"))
        row = QtWidgets.QHBoxLayout()
        self.classes_edit = QtWidgets.QLineEdit()
        self.classes_edit.setPlaceholderText("classes, comma-separated")
        self.classes_edit.setToolTip("your own class names, comma-separated (any number; 'no gesture' allowed)")
        self.classes_edit.editingFinished.connect(self._classes_edited)
        row.addWidget(self.classes_edit, 1)
        self.record_button = QtWidgets.QPushButton("● Record run")
        self.record_button.clicked.connect(self.toggle_recording)
        row.addWidget(self.record_button)
        layout.addLayout(row)
        self.list = QtWidgets.QListWidget()
        self.list.itemClicked.connect(lambda item: self.press(self.list.row(item)))
        layout.addWidget(self.list, 1)
        self.status_label = flexible_label("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        self.set_classes(class_names)

        self._shortcuts = []
        for k, key in enumerate(_KEYS):
            shortcut = QtGui.QShortcut(QtGui.QKeySequence(key), self, context=QtCore.Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(lambda k=k: self.press(k))
            self._shortcuts.append(shortcut)
        space = QtGui.QShortcut(QtGui.QKeySequence(QtCore.Qt.Key.Key_Space), self,
                                context=QtCore.Qt.ShortcutContext.WindowShortcut)
        space.activated.connect(self.end_segment)
        self._shortcuts.append(space)
        self._say("● Record run, then a number key starts a gesture and the same key or space ends it")

    # -- settings ----------------------------------------------------------------------------

    def set_classes(self, names: tuple[str, ...] | list[str]) -> bool:
        """Offer these classes (refused while recording); returns whether they were taken."""
        names = tuple(str(n).strip() for n in names)
        if self.state != "idle":
            self._say("classes cannot change during a recording", error=True)
            return False
        if not names or any(not n for n in names) or len(set(names)) != len(names):
            self._say("classes: give distinct, non-empty names", error=True)
            return False
        self.class_names = names
        self.classes_edit.setText(", ".join(names))
        self._fill_list()
        return True

    def _classes_edited(self) -> None:
        names = [n.strip() for n in self.classes_edit.text().split(",")]
        if tuple(names) != self.class_names:
            self.set_classes(names)

    def set_folder(self, folder: str | os.PathLike | None) -> None:
        """Write labels and trial lists here instead of the pipeline's ``status.record_dir``
        (it must be the folder the pipeline records into, e.g. seen through a network share)."""
        self.folder = None if folder is None else os.fspath(folder)

    # -- the stream ----------------------------------------------------------------------------

    def observe(self, message: Message) -> None:
        """Take a drawn message: its sensor time (``t_end``), ``status.record_dir``, ``pred`` event counts."""
        if message.topic == "status":
            record_dir = message.data.get("record_dir")
            if isinstance(record_dir, str) and record_dir:
                self.record_dir = record_dir
        t_end = message.t_end
        if isinstance(t_end, int) and not isinstance(t_end, bool) and message.topic != "status":
            if self.sensor_time_us is None or t_end > self.sensor_time_us:
                self.sensor_time_us = t_end
            if message.topic == "pred" and self.open is not None and t_end > self.open[1]:
                events = message.data.get("events", 0)
                self._open_events += int(events) if isinstance(events, (int, float)) else 0

    def on_reply(self, reply) -> None:
        """A control reply (:class:`~evstream.dashboard.control.ControlReply`) for record_start/stop."""
        if reply.cmd == "record_start" and self.state == "starting":
            if not reply.ok:
                self._reset_session()
                self._say(f"recording refused: {reply.error}", error=True)
                return
            path = reply.reply.get("path") if isinstance(reply.reply, dict) else None
            if isinstance(path, str) and os.path.isdir(os.path.dirname(path)) and self.folder is None:
                self._open_dataset(os.path.dirname(path))  # where the pipeline really writes
            self.state = "recording"
            self.record_button.setText("■ Stop")
            n = len(self.class_names)
            keys = "1-9, 0" if n >= 10 else f"1-{n}"
            self._say(f"recording {self.stem}.aedat4: a class key ({keys}) or a click starts a gesture")
        elif reply.cmd == "record_stop" and self.state == "stopping":
            if not reply.ok:
                self.state = "recording"
                self._say(f"record_stop failed: {reply.error}; still recording", error=True)
                return
            self._finish()

    # -- recording -----------------------------------------------------------------------------

    def toggle_recording(self) -> None:
        """Start a recording (idle) or stop it (recording)."""
        if self.state == "idle":
            folder = self.folder or self.record_dir
            if folder is None:
                self._say("no recordings folder known yet (waiting for the pipeline's status)", error=True)
                return
            if not self._open_dataset(folder):
                return
            self.stem = self.dataset.new_stem("teach")
            self.segments, self.unsaved, self.open = [], False, None
            self.state = "starting"
            self.record_button.setText("starting…")
            self.command.emit("record_start", {"path": f"{self.stem}.aedat4"})
        elif self.state == "recording":
            if self.open is not None:
                self.end_segment()
                if self.open is not None:  # could not end it (no stream time yet): drop it, keep the rest
                    self.open = None
            self.state = "stopping"
            self.record_button.setText("stopping…")
            self.command.emit("record_stop", {})

    def _open_dataset(self, folder: str) -> bool:
        try:
            self.dataset = UserDataset(folder, self.class_names, self.test_every)
        except EvstreamError as err:
            self._say(str(err), error=True)
            return False
        return True

    def press(self, k: int) -> None:
        """Class ``k``'s key or click: start its segment, or end it when it is the open one."""
        if not 0 <= k < len(self.class_names):
            return
        if self.state != "recording":
            self._say(f"'{self.class_names[k]}': start a recording first (● Record run)", error=True)
            return
        if self.open is not None:
            if self.open[0] == k:
                self.end_segment()
            else:
                self._say(f"'{self.class_names[self.open[0]]}' is still open: end it (space or its key) before "
                          f"'{self.class_names[k]}' (segments do not overlap)", error=True)
            return
        if self.sensor_time_us is None:
            self._say("no stream time yet: wait for the stream before labelling", error=True)
            return
        if self.segments and self.sensor_time_us < self.segments[-1].t_end:
            self._say("the stream went back before the last segment's end (a seek?): not started", error=True)
            return
        self.open = (k, self.sensor_time_us)
        self._open_events = 0
        self._fill_list()
        self._say(f"'{self.class_names[k]}' started at {self._rel(self.sensor_time_us)}: same key or space ends it")

    def end_segment(self) -> None:
        """Space: end the open segment at the stream's newest time and save the labels."""
        if self.state != "recording":
            self._say("no recording: nothing to end", error=True)
            return
        if self.open is None:
            self._say("no segment to end: a class key starts one", error=True)
            return
        k, start = self.open
        end = self.sensor_time_us
        if end is None or end <= start:
            self._say(f"'{self.class_names[k]}' has no length yet (no new stream time since it started): still open",
                      error=True)
            return
        self.open = None
        self.segments.append(Segment(k, start, end))
        self._fill_list()
        note = "" if self._open_events else " — warning: no events in it (camera covered or nobody moving?)"
        if self._save():
            self._say(f"'{self.class_names[k]}' {(end - start) / 1e6:.2f} s labelled "
                      f"({len(self.segments)} in {self.stem}){note}", error=bool(note))

    def _save(self) -> bool:
        try:
            self.dataset.write_labels(self.stem, self.segments)
        except EvstreamError as err:
            self.unsaved = True
            self._say(f"{err}; {len(self.segments)} segments kept here, written with the next one", error=True)
            return False
        self.unsaved = False
        return True

    def _finish(self) -> None:
        saved = self._save() if self.segments else True
        split = None
        if saved and self.segments:
            try:
                split = self.dataset.add_trial(f"{self.stem}.aedat4")
            except EvstreamError as err:
                self._say(f"{err}; the recording and its labels are kept", error=True)
                self.state = "idle"
                self.record_button.setText("● Record run")
                return
        stem, n = self.stem, len(self.segments)
        self._reset_session(keep_segments=not saved)
        if not saved:
            self._say(f"{stem}: labels could not be written; {n} segments kept here", error=True)
        elif split is None:
            self._say(f"{stem}.aedat4 recorded with no labelled segment: not listed for training", error=True)
        else:
            self._say(f"{stem}.aedat4: {n} segments -> {split} ({self.dataset.folder})")

    def _reset_session(self, keep_segments: bool = False) -> None:
        self.state = "idle"
        self.open = None
        if not keep_segments:
            self.segments = []
        self.record_button.setText("● Record run")
        self._fill_list()

    # -- drawing -------------------------------------------------------------------------------

    def _fill_list(self) -> None:
        counts = [sum(s.label == k for s in self.segments) for k in range(len(self.class_names))]
        self.list.clear()
        for k, name in enumerate(self.class_names):
            key = _KEYS[k] if k < len(_KEYS) else " "
            mark = "  ● recording" if self.open is not None and self.open[0] == k else ""
            self.list.addItem(f"{key}  {name}  ×{counts[k]}{mark}")

    def _rel(self, t_us: int) -> str:
        return f"{t_us / 1e6:.2f} s"

    def _say(self, text: str, error: bool = False) -> None:
        self.message = text
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #ff8a5a;" if error else "")
