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
folder with other classes in its ``classes.txt``. Segments still unwritten when a recording
stops stay in memory and are written (and the run listed) before the next recording starts, or
that start is refused. A segment during which the stream's windows counted no event is kept with
a warning.

"▶ Countdown" collects hands-free, as ``python main.py collect`` does and from the same plan
(:func:`~evstream.commands.collect.plan_protocol`, its prompts): N repetitions, each one recording
that prompts every class once in a shuffled order, each gesture of M seconds after a rest whose
last seconds are counted down ("next: left hand wave in 3… 2… 1… go (3 s)", shown big). A QTimer
follows the stream's sensor time (the newest window drawn, as for keys): a run's plan starts at
the stream time its recording was confirmed, so every segment is the planned span on the
recording's own clock, and a paused stream pauses the countdown. Between runs the recording is
stopped, listed and the next one started. "■ Stop" aborts cleanly: the gesture under way is
dropped, the segments completed so far are in the labels CSV and the run is listed like a run
labelled by keys. Keys and clicks are refused while a countdown labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from PyQt6 import QtCore, QtGui, QtWidgets

from evstream.commands.collect import DEFAULT_TEST_EVERY, Prompt, Segment, UserDataset, _prompts, plan_protocol
from evstream.dashboard.style import flexible_label, panel_title
from evstream.errors import EvstreamError
from evstream.labels import DVS_GESTURE_CLASSES
from evstream.protocol import Message

__all__ = ["TeachPanel"]

_KEYS = "1234567890"  # key k labels class k (0 = the 10th)
COUNTDOWN_S = 3  # seconds counted down before each gesture (collect's --countdown default)
COUNTDOWN_TICK_MS = 40  # how often the countdown looks at the stream time


@dataclass
class Countdown:
    """A countdown collection under way: the plan and where the stream is in it.

    ``runs[r]`` and ``prompts[r]`` are relative to run r's start (µs); ``bases[r]`` is the sensor
    µs run r started at (the stream time when its recording was confirmed).
    """

    runs: list[list[Segment]]
    prompts: list[list[Prompt]]
    run_us: int
    run: int = 0
    bases: list[int] = field(default_factory=list)
    next_prompt: int = 0
    next_segment: int = 0
    line: str = ""
    line_done: bool = False
    finishing: bool = False  # record_stop sent for this run
    aborted: bool = False
    listed: dict[str, int] = field(default_factory=lambda: {"train": 0, "test": 0})


class TeachPanel(QtWidgets.QWidget):
    """Labelled recording from the dashboard.

    Signals:
        command(name, args): a control command for the pipeline (``record_start`` / ``record_stop``).

    Args:
        class_names: the classes offered (default the 11 DVS128 Gesture classes).
        test_every: every N-th recording of the folder is held out (see ``assign_split``).
    """

    command = QtCore.pyqtSignal(str, dict)

    def __init__(self, class_names: tuple[str, ...] | list[str] = DVS_GESTURE_CLASSES, test_every: int = DEFAULT_TEST_EVERY,
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
        self.countdown: Countdown | None = None
        self.rng = np.random.default_rng()  # the countdown's class order (a test may seed it)

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
        count = QtWidgets.QHBoxLayout()
        self.reps_box = QtWidgets.QSpinBox()
        self.reps_box.setRange(1, 99)
        self.reps_box.setValue(5)
        self.reps_box.setSuffix(" runs")
        self.reps_box.setToolTip("repetitions: one recording each, every class once per run (shuffled)")
        self.seconds_box = _seconds_box(0.05, 3.0, " s gesture", "length of each gesture")
        self.rest_box = _seconds_box(0.0, 3.0, " s rest", f"rest before each gesture (its last {COUNTDOWN_S} s "
                                                          "counted down)")
        self.countdown_button = QtWidgets.QPushButton("▶ Countdown")
        self.countdown_button.setToolTip("hands-free: prompts each class in turn and labels it on the stream's clock")
        self.countdown_button.clicked.connect(self.toggle_countdown)
        for widget in (self.reps_box, self.seconds_box, self.rest_box):
            count.addWidget(widget)
        count.addWidget(self.countdown_button)
        layout.addLayout(count)
        self.prompt_label = flexible_label("")
        font = self.prompt_label.font()
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.9)
        self.prompt_label.setFont(font)
        self.prompt_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.prompt_label.setStyleSheet("color: #f0d060;")
        layout.addWidget(self.prompt_label)
        self.clock_label = flexible_label("")
        self.clock_label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.clock_label)
        self.status_label = flexible_label("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        self.set_classes(class_names)
        self.countdown_timer = QtCore.QTimer(self)
        self.countdown_timer.setInterval(COUNTDOWN_TICK_MS)
        self.countdown_timer.timeout.connect(self.advance_countdown)
        self._show_countdown(False)

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
        if self.state != "idle" or self.countdown is not None:
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

    @property
    def dataset_folder(self) -> str | None:
        """The folder labelled runs go to (the one a fine-tune reads), None until known."""
        if self.dataset is not None:
            return os.fspath(self.dataset.folder)
        return self.folder or self.record_dir

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
                self._end_countdown()
                self._say(f"recording refused: {reply.error}", error=True)
                return
            path = reply.reply.get("path") if isinstance(reply.reply, dict) else None
            if isinstance(path, str) and os.path.isdir(os.path.dirname(path)) and self.folder is None:
                self._open_dataset(os.path.dirname(path))  # where the pipeline really writes
            self.state = "recording"
            self.record_button.setText("■ Stop")
            c = self.countdown
            if c is not None:
                c.next_prompt = c.next_segment = 0
                c.line, c.line_done, c.finishing = "", False, False
                if self.sensor_time_us is not None:
                    c.bases.append(self.sensor_time_us)  # the run's plan starts at the stream's newest time
                if c.aborted:  # Stop came while this run was starting
                    self.stop_countdown()
                    return
                self._say(f"countdown run {c.run + 1}/{len(c.runs)}: recording {self.stem}.aedat4")
                self.advance_countdown()
                return
            n = len(self.class_names)
            keys = "1-9, 0" if n >= 10 else f"1-{n}"
            self._say(f"recording {self.stem}.aedat4: a class key ({keys}) or a click starts a gesture")
        elif reply.cmd == "record_stop" and self.state == "stopping":
            if not reply.ok:
                self.state = "recording"
                again = " (■ Stop to try again)" if self.countdown is not None else ""
                self._say(f"record_stop failed: {reply.error}; still recording{again}", error=True)
                return
            split = self._finish()
            c = self.countdown
            if c is None:
                return
            if split is not None:
                c.listed[split] += 1
            if split is not None and not c.aborted and c.run + 1 < len(c.runs):
                c.run += 1
                self._begin_recording()
                return
            last = self.message
            self._end_countdown()
            if split is not None or c.aborted:  # else _finish's error line stays
                what = "stopped" if c.aborted else "done"
                self._say(f"countdown {what}: {c.listed['train'] + c.listed['test']} of {len(c.runs)} runs listed "
                          f"({c.listed['train']} train, {c.listed['test']} test); {last}", error=split is None)

    # -- recording -----------------------------------------------------------------------------

    def toggle_recording(self) -> None:
        """Start a recording (idle) or stop it (recording); during a countdown, stop the countdown."""
        if self.countdown is not None:
            self.stop_countdown()
        elif self.state == "idle":
            if self._ready_to_record():
                self._begin_recording()
        elif self.state == "recording":
            if self.open is not None:
                self.end_segment()
                if self.open is not None:  # could not end it (no stream time yet): drop it, keep the rest
                    self.open = None
            self.state = "stopping"
            self.record_button.setText("stopping…")
            self.command.emit("record_stop", {})

    def _ready_to_record(self) -> bool:
        if self.unsaved and self.segments and self.stem is not None and self.dataset is not None:
            # The last run's labels could not be written: write (and list) them before a new run replaces them.
            if not self._save():
                return False
            try:
                split = self.dataset.add_trial(f"{self.stem}.aedat4")
            except EvstreamError as err:
                self._say(f"{err}; the recording and its labels are kept", error=True)
                return False
            self._say(f"{self.stem}.aedat4: the {len(self.segments)} kept segments written -> {split}")
        folder = self.folder or self.record_dir
        if folder is None:
            self._say("no recordings folder known yet (waiting for the pipeline's status)", error=True)
            return False
        return self._open_dataset(folder)

    def _begin_recording(self) -> None:
        self.stem = self.dataset.new_stem("teach")
        self.segments, self.unsaved, self.open = [], False, None
        self.state = "starting"
        self.record_button.setText("starting…")
        self.command.emit("record_start", {"path": f"{self.stem}.aedat4"})

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
        if self.countdown is not None:
            self._say(f"'{self.class_names[k]}': the countdown labels the segments now (■ Stop ends it)", error=True)
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
        if self.countdown is not None:
            self._say("the countdown ends its segments itself (■ Stop ends the countdown)", error=True)
            return
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
        self._close_segment(Segment(k, start, end))

    def _close_segment(self, segment: Segment) -> None:
        """Keep ``segment`` (the open one) and rewrite the labels CSV."""
        self.open = None
        self.segments.append(segment)
        self._fill_list()
        note = "" if self._open_events else " — warning: no events in it (camera covered or nobody moving?)"
        if self._save():
            self._say(f"'{self.class_names[segment.label]}' {(segment.t_end - segment.t_start) / 1e6:.2f} s labelled "
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

    def _finish(self) -> str | None:
        """The recording stopped: write its labels, list it; returns its split (None: not listed)."""
        saved = self._save() if self.segments else True
        split = None
        if saved and self.segments:
            try:
                split = self.dataset.add_trial(f"{self.stem}.aedat4")
            except EvstreamError as err:
                self._say(f"{err}; the recording and its labels are kept", error=True)
                self.state = "idle"
                self.record_button.setText("● Record run")
                return None
        stem, n = self.stem, len(self.segments)
        self._reset_session(keep_segments=not saved)
        if not saved:
            self._say(f"{stem}: labels could not be written; {n} segments kept here", error=True)
        elif split is None:
            self._say(f"{stem}.aedat4 recorded with no labelled segment: not listed for training", error=True)
        else:
            self._say(f"{stem}.aedat4: {n} segments -> {split} ({self.dataset.folder})")
        return split

    def _reset_session(self, keep_segments: bool = False) -> None:
        self.state = "idle"
        self.open = None
        if not keep_segments:
            self.segments = []
        self.record_button.setText("● Record run")
        self._fill_list()

    # -- countdown -----------------------------------------------------------------------------

    def toggle_countdown(self) -> None:
        """Start a countdown collection (idle) or stop the one running."""
        if self.countdown is not None:
            self.stop_countdown()
        else:
            self.start_countdown()

    def start_countdown(self) -> bool:
        """Plan ``reps`` runs of every class (``seconds`` each, ``rest`` before each) and record the first.

        Returns:
            whether it started (else one line in the panel says why).
        """
        if self.state != "idle":
            self._say("a recording is running: ■ Stop it before a countdown", error=True)
            return False
        if not self._ready_to_record():
            return False
        reps, seconds, rest = self.reps_box.value(), self.seconds_box.value(), self.rest_box.value()
        runs, run_us, _ = plan_protocol(len(self.class_names), reps, seconds, rest, COUNTDOWN_S, "shuffle", self.rng)
        prompts = _prompts(runs, self.class_names, COUNTDOWN_S, rest)
        # Each run is its own recording, so its plan is made relative to the run's start.
        runs_rel = [[Segment(s.label, s.t_start - r * run_us, s.t_end - r * run_us) for s in run]
                    for r, run in enumerate(runs)]
        prompts_rel = [[Prompt(p.t_us - r * run_us, p.text, p.newline) for p in prompts
                        if r * run_us <= p.t_us < (r + 1) * run_us] for r in range(reps)]
        self.countdown = Countdown(runs_rel, prompts_rel, run_us)
        self._show_countdown(True)
        self.prompt_label.setText("starting the recording…")
        self.clock_label.setText("")
        self.countdown_timer.start()
        self._begin_recording()
        return True

    def stop_countdown(self) -> None:
        """Abort the countdown: the gesture under way is dropped, the completed segments kept and
        written, the recording stopped and listed (when it has a segment)."""
        c = self.countdown
        if c is None:
            return
        c.aborted = True
        self.countdown_button.setText("stopping…")
        if self.state == "recording":
            dropped = self.open is not None
            self.open = None
            c.finishing = True
            self.state = "stopping"
            self.record_button.setText("stopping…")
            self.command.emit("record_stop", {})
            self._say(f"stopping: {len(self.segments)} completed segments kept"
                      + (", the gesture under way dropped" if dropped else ""))
        # starting: stopped once the pipeline confirms; stopping: no further run starts

    def advance_countdown(self) -> None:
        """One look at the stream time (the QTimer): prompts, segment starts and ends, the run's end."""
        c = self.countdown
        if c is None or self.state != "recording" or c.finishing:
            return
        now = self.sensor_time_us
        if now is None:
            return
        if len(c.bases) <= c.run:
            c.bases.append(now)
        base = c.bases[c.run]
        rel = now - base
        if rel < 0:
            self.clock_label.setText("the stream went back before this run's start (a seek?): waiting")
            return
        prompts = c.prompts[c.run]
        while c.next_prompt < len(prompts) and prompts[c.next_prompt].t_us <= rel:
            p = prompts[c.next_prompt]
            c.line = (p.text.lstrip() if c.line_done or not c.line else c.line + p.text)
            c.line_done = p.newline
            c.next_prompt += 1
        segments = c.runs[c.run]
        while c.next_segment < len(segments):
            s = segments[c.next_segment]
            if self.open is None and rel >= s.t_start:
                self.open = (s.label, base + s.t_start)
                self._open_events = 0
                self._fill_list()
            if self.open is not None and rel >= s.t_end:
                self._close_segment(Segment(s.label, base + s.t_start, base + s.t_end))
                c.next_segment += 1
                continue
            break
        self.prompt_label.setText(c.line if c.line and (not c.line_done or self.open is not None) else "rest")
        where = f"run {c.run + 1}/{len(c.runs)} · gesture {min(c.next_segment + 1, len(segments))}/{len(segments)}"
        if self.open is not None:
            s = segments[c.next_segment]
            self.clock_label.setText(f"{where} · ● {self.class_names[s.label]}: {(s.t_end - rel) / 1e6:.1f} s left")
        elif c.next_segment < len(segments):
            wait = (segments[c.next_segment].t_start - rel) / 1e6
            self.clock_label.setText(f"{where} · rest, next gesture in {wait:.1f} s")
        elif rel >= c.run_us:
            c.finishing = True
            self.state = "stopping"
            self.record_button.setText("stopping…")
            self.clock_label.setText(f"run {c.run + 1}/{len(c.runs)} done: saving")
            self.command.emit("record_stop", {})
        else:
            self.prompt_label.setText("rest")
            self.clock_label.setText(f"run {c.run + 1}/{len(c.runs)} · end of run in {(c.run_us - rel) / 1e6:.1f} s")

    def _end_countdown(self) -> None:
        self.countdown = None
        self.countdown_timer.stop()
        self._show_countdown(False)

    def _show_countdown(self, running: bool) -> None:
        for widget in (self.reps_box, self.seconds_box, self.rest_box, self.classes_edit):
            widget.setEnabled(not running)
        self.countdown_button.setText("■ Stop" if running else "▶ Countdown")
        self.prompt_label.setVisible(running)
        self.clock_label.setVisible(running)
        if not running:
            self.prompt_label.setText("")
            self.clock_label.setText("")

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


def _seconds_box(minimum: float, value: float, suffix: str, tip: str) -> QtWidgets.QDoubleSpinBox:
    box = QtWidgets.QDoubleSpinBox()
    box.setRange(minimum, 60.0)
    box.setDecimals(2)
    box.setSingleStep(0.5)
    box.setValue(value)
    box.setSuffix(suffix)
    box.setToolTip(tip)
    return box
