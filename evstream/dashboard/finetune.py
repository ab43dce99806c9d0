"""Fine-tune panel: train the model on the Teach folder in a separate process, calibrate its
decisions on the folder's held-out runs, then swap it in.

"Fine-tune" runs two child processes (:class:`QtCore.QProcess`), one after the other:

1. ``python main.py train --init CKPT --data FOLDER --recipe stream --epochs N``
   (:func:`finetune_arguments`); its checkpoint carries CKPT's decision settings;
2. ``python main.py eval --stream FOLDER --split test --calibrate --model PATH --out
   PATH_calibrated.pt`` (:func:`calibrate_arguments`): the decision rule, smoothing and thresholds
   chosen for the new weights on the folder's held-out runs (on the bench's out-of-range person,
   10 epochs: the calibrated checkpoint scored 0.818 online, false alarms 0.030, against 0.576 for
   the shipped model; ``bench/finetune.py``).

The GUI thread only reads the lines they print, so neither the window nor the pipeline waits for
them. Each child runs at a lower CPU priority (``nice`` :data:`NICE`) with one core fewer than the
machine has (``OMP_NUM_THREADS``), so on a small machine the live pipeline keeps its windows.

CKPT is the running model (``status.model``: the name of shipped weights, or the path a
``load_model`` from this dashboard sent) unless another one is chosen; FOLDER is the Teach
panel's (the pipeline's recordings folder; the fine-tune runs on the dashboard's machine, so it
must be reachable here). The checkpoint goes to ``FOLDER/finetune/<time>.pt`` (train also writes
``<time>_last.pt`` and the confusion matrix there, and caches the binned recordings in
``FOLDER/finetune/frames_cache``, so the next fine-tune bins only new runs).

Train's per-epoch line (``epoch k/N loss … test top1 … score … lr … samples/s …s``) moves the
progress bar and the status line; its closing ``best: …`` line is the held-out accuracy, on the
folder's ``trials_to_test.txt`` recordings, which the model never trained on. The calibration's
per-recording lines move the bar over the held-out runs. A folder with no held-out recording is
refused before anything starts (a model is never offered without that figure). When both stages
end well, "Load into pipeline" sends ``load_model`` with the calibrated checkpoint. "Cancel" kills
the running child: train writes its checkpoints through a temporary file and a rename, so the best
one so far (``PATH``, written after each epoch that improved the held-out score) stays whole and is
offered when there is one (a Cancel during train skips the calibration). A train that fails shows
its one ``error:`` line; a calibration that fails or is cancelled says so in one line and offers
the trained checkpoint, with its starting model's decision settings.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PyQt6 import QtCore, QtWidgets

from evstream.dashboard.style import flexible_label, panel_title

__all__ = ["FinetunePanel", "EpochReport", "finetune_arguments", "calibrate_arguments", "calibrated_path",
           "parse_epoch_line", "parse_best_line", "DEFAULT_EPOCHS", "NICE"]

# 11 classes x 3 training runs of 3 s gestures (bench/finetune.py, 5 runs collected, 2 held out), the
# panel's 1 torch thread on 2 cores (load average 1.9 while it trained): 10 epochs of train in 223 s,
# calibration 16 s, 4.6 min from the start of a synthetic recording to the calibrated checkpoint; on
# the bench's out-of-range person online 0.828 after 10 epochs against 0.813 after 5 (both with the
# same calibration grid, before it had EMA 25/50 ms and thresholds 0.2/0.25).
DEFAULT_EPOCHS = 10
NICE = 10  # the child's CPU priority: the live pipeline comes first
_ERROR_LINES = 20  # stderr lines kept for the error message

_NUMBER = r"[-+0-9.eE]+|nan|inf"
_EPOCH = re.compile(
    rf"^epoch (\d+)/(\d+) loss ({_NUMBER}) train top1 ({_NUMBER})(?: test top1 ({_NUMBER}))?"
    rf"(?: rest-undecided ({_NUMBER}) clip top1 ({_NUMBER}) score ({_NUMBER}))?"
    rf" lr ({_NUMBER}) ({_NUMBER}) samples/s ({_NUMBER})s$"
)
_BEST = re.compile(rf"^best: epoch (\d+) (?:score ({_NUMBER}), gesture-step top-1|top-1) ({_NUMBER}) \((\d+)/(\d+)\) -> ")
_STREAM = re.compile(r"^stream recipe: train (\d+) recordings, .*; test (\d+) recordings")
_REPLAYED = re.compile(r"^\S.*: [0-9.]+ s replayed in [0-9.]+ s, \d+ steps$")  # eval --calibrate, per recording
# How the child starts: lower priority, then the same command line as `python main.py`.
_LAUNCH = (f"import os, sys; hasattr(os, 'nice') and os.nice({NICE}); "
           "from evstream.cli import main; sys.exit(main())")


@dataclass(frozen=True)
class EpochReport:
    """One ``epoch k/N …`` line of ``python main.py train`` (test figures None when not evaluated)."""

    epoch: int  # 1-based
    epochs: int
    loss: float
    train_top1: float
    test_top1: float | None
    clip_top1: float | None
    score: float | None
    seconds: float


def parse_epoch_line(line: str) -> EpochReport | None:
    """The figures of train's per-epoch line, or None for any other line."""
    m = _EPOCH.match(line.strip())
    if m is None:
        return None
    opt = [None if v is None else float(v) for v in (m.group(5), m.group(7), m.group(8))]
    return EpochReport(int(m.group(1)), int(m.group(2)), float(m.group(3)), float(m.group(4)), *opt,
                       seconds=float(m.group(11)))


def parse_best_line(line: str) -> dict | None:
    """Train's closing ``best: epoch E score S, gesture-step top-1 T (c/n) -> PATH`` line as
    ``{"epoch", "score" (None for the clip recipe), "top1", "correct", "samples"}``, or None."""
    m = _BEST.match(line.strip())
    if m is None:
        return None
    return {"epoch": int(m.group(1)), "score": None if m.group(2) is None else float(m.group(2)),
            "top1": float(m.group(3)), "correct": int(m.group(4)), "samples": int(m.group(5))}


def finetune_arguments(init: str, data: str, out: str, epochs: int = DEFAULT_EPOCHS,
                       extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``python main.py`` arguments of a fine-tune on a Teach folder (the stream recipe, one
    warm-up epoch: the backbone is trained already). ``extra``: more train flags, appended."""
    return ["train", "--init", init, "--data", data, "--recipe", "stream", "--epochs", str(int(epochs)),
            "--warmup-epochs", "1", "--out", out, *extra]


def calibrated_path(checkpoint: str) -> str:
    """Where the calibration stage writes the calibrated copy: ``PATH_calibrated.pt`` beside ``PATH``
    (the name ``python main.py train --calibrate`` gives it too)."""
    path = Path(checkpoint)
    return os.fspath(path.with_name(f"{path.stem}_calibrated.pt"))


def calibrate_arguments(checkpoint: str, data: str, out: str, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``python main.py`` arguments of the calibration stage: the decision settings of ``checkpoint``
    chosen on the held-out runs (``trials_to_test.txt``) of the Teach folder ``data`` and written into
    ``out``, a copy of it. ``extra``: more eval flags, appended."""
    return ["eval", "--stream", data, "--split", "test", "--calibrate", "--model", checkpoint, "--out", out, *extra]


def _listed(folder: Path, split: str) -> int:
    """Recordings in ``trials_to_<split>.txt`` of ``folder`` or ``folder/DvsGesture`` (as the loader looks)."""
    for where in (folder, folder / "DvsGesture"):
        path = where / f"trials_to_{split}.txt"
        if path.is_file():
            try:
                return sum(1 for line in path.read_text(errors="replace").splitlines() if line.strip())
            except OSError:
                return 0
    return 0


class FinetunePanel(QtWidgets.QWidget):
    """Runs a fine-tune in a child process and offers the result to the pipeline.

    Signals:
        command(name, args): ``load_model`` with the new checkpoint's path.
        stage(name): a child starts: ``"train"``, then ``"calibrate"`` (emitted before it starts).
        done(ok): the last child ended (True: a checkpoint is offered).

    Args:
        data_folder: returns the folder to train on (the Teach panel's), None while unknown.
    """

    command = QtCore.pyqtSignal(str, dict)
    stage = QtCore.pyqtSignal(str)
    done = QtCore.pyqtSignal(bool)

    def __init__(self, data_folder: Callable[[], str | None] = lambda: None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.data_folder = data_folder
        self.extra_args: list[str] = []  # more train flags (e.g. --samples-per-epoch for a quick try)
        self.calibrate_args: list[str] = []  # more flags of the calibration's eval (e.g. --device cpu)
        self.threads = max(1, (os.cpu_count() or 2) - 1)  # one core left for the pipeline
        self.running_model: str | None = None  # status.model
        self._loaded_paths: dict[str, str] = {}  # checkpoint name (stem) -> path sent by load_model
        self.process: QtCore.QProcess | None = None
        self.out: str | None = None  # the checkpoint the running fine-tune's train writes
        self.calibrated: str | None = None  # the calibrated copy its calibration stage writes
        self.trained: str | None = None  # train's checkpoint, once train ended with one
        self.checkpoint: str | None = None  # the one offered to the pipeline
        self.result: dict | None = None  # parse_best_line of the finished run
        self.calibration: dict | None = None  # the calibration's summary (PATH_calibrated_calibration.json)
        self.running_stage: str | None = None  # "train" | "calibrate" while a child runs
        self.folder: str | None = None  # the Teach folder of the running fine-tune
        self.last_epoch: EpochReport | None = None
        self.error: str | None = None
        self.message = ""
        self._cancelled = False
        self._load_pending = False
        self._stdout = ""
        self._stderr = ""
        self._stderr_lines: list[str] = []
        self._test_recordings: int | None = None
        self._epoch_tests: dict[int, EpochReport] = {}

        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(panel_title("Fine-tune on your recordings"))
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("from"))
        self.init_edit = QtWidgets.QLineEdit()
        self.init_edit.setPlaceholderText("the running model")
        self.init_edit.setToolTip("checkpoint (.pt) or shipped-weights name to start from; empty: the model "
                                  "the pipeline runs (choose one if it was started from a file elsewhere)")
        row.addWidget(self.init_edit, 1)
        self.choose_button = QtWidgets.QPushButton("…")
        self.choose_button.setToolTip("choose a checkpoint to start from")
        self.choose_button.setMaximumWidth(36)
        self.choose_button.clicked.connect(self._choose_init)
        row.addWidget(self.choose_button)
        self.epochs_box = QtWidgets.QSpinBox()
        self.epochs_box.setRange(1, 500)
        self.epochs_box.setValue(DEFAULT_EPOCHS)
        self.epochs_box.setSuffix(" epochs")
        row.addWidget(self.epochs_box)
        self.start_button = QtWidgets.QPushButton("Fine-tune")
        self.start_button.setToolTip("train on the Teach folder in a separate process (the GUI and the pipeline "
                                     "keep running); the held-out runs give its accuracy")
        self.start_button.clicked.connect(self.start)
        row.addWidget(self.start_button)
        self.cancel_button = QtWidgets.QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v/%m epochs")
        layout.addWidget(self.progress)
        self.status_label = flexible_label("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        result = QtWidgets.QHBoxLayout()
        self.result_label = flexible_label("")
        self.result_label.setWordWrap(True)
        result.addWidget(self.result_label, 1)
        self.load_button = QtWidgets.QPushButton("Load into pipeline")
        self.load_button.setToolTip("swap the fine-tuned checkpoint (calibrated when that stage ended well) in "
                                    "between windows (load_model)")
        self.load_button.setEnabled(False)
        self.load_button.clicked.connect(self.load_into_pipeline)
        result.addWidget(self.load_button)
        layout.addLayout(result)
        # (parent) -> chosen checkpoint path or "" (cancelled); a test replaces it, no modal dialog then
        self.choose_checkpoint: Callable[[QtWidgets.QWidget], str] = _ask_checkpoint
        self._say("record runs in Teach (at least 2: the 2nd is held out), then Fine-tune")

    # -- what it starts from -----------------------------------------------------------------------

    def observe_status(self, data: dict) -> None:
        """Take ``status``: the name of the model the pipeline runs now."""
        model = data.get("model")
        if isinstance(model, str) and model:
            self.running_model = model

    def note_loaded(self, path: str) -> None:
        """A ``load_model`` with ``path`` was sent: when status names it, it is the running model's file."""
        self._loaded_paths[Path(path).stem] = path

    def init_checkpoint(self) -> str | None:
        """What ``--init`` gets: the chosen checkpoint, else the running model (None: untrained or unknown)."""
        chosen = self.init_edit.text().strip()
        if chosen:
            return chosen
        model = self.running_model
        if model is None or model.endswith("(untrained)"):
            return None
        return self._loaded_paths.get(model, model)

    def _choose_init(self) -> None:
        chosen = self.choose_checkpoint(self)
        if chosen:
            self.init_edit.setText(chosen)

    # -- the child process ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether a fine-tune is under way."""
        return self.process is not None

    def start(self) -> bool:
        """Start the fine-tune; returns whether it started (else one line says why)."""
        if self.running:
            self._say("a fine-tune is running: Cancel it first", error=True)
            return False
        folder = self.data_folder()
        if not folder:
            self._say("no Teach folder known yet (waiting for the pipeline's status)", error=True)
            return False
        root = Path(folder)
        if not _listed(root, "train"):
            self._say(f"{root}: no recording listed for training yet: record runs in Teach first", error=True)
            return False
        if not _listed(root, "test"):
            self._say(f"{root}: no held-out recording yet (trials_to_test.txt is empty), so no honest accuracy: "
                      "record one more run (the 2nd run is held out)", error=True)
            return False
        init = self.init_checkpoint()
        if init is None:
            self._say("the running model is untrained or unknown: choose a checkpoint to start from (…)", error=True)
            return False
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
        out_dir = root / "finetune"
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            self._say(f"{out_dir}: cannot create ({err.strerror}); nothing started", error=True)
            return False
        out = out_dir / f"{root.resolve().name}_{stamp}.pt"
        k = 1
        while out.exists():
            k += 1
            out = out_dir / f"{root.resolve().name}_{stamp}_{k}.pt"
        epochs = self.epochs_box.value()
        arguments = finetune_arguments(init, os.fspath(root), os.fspath(out), epochs, self.extra_args)

        self.out, self.calibrated, self.folder = os.fspath(out), calibrated_path(os.fspath(out)), os.fspath(root)
        self.trained = self.checkpoint = self.result = self.calibration = self.last_epoch = self.error = None
        self._test_recordings = None
        self._epoch_tests = {}
        self.progress.setRange(0, epochs)
        self.progress.setValue(0)
        self.progress.setFormat("train: %v/%m epochs (then calibration)")
        self.result_label.setText("")
        self.load_button.setEnabled(False)
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._spawn("train", arguments)
        self._say(f"stage 1 of 2, train: python main.py {' '.join(arguments[:8])} … (loading torch)")
        return True

    def _spawn(self, stage: str, arguments: list[str]) -> None:
        """Start the child of ``stage`` (``python main.py ARGUMENTS`` at a lower priority)."""
        self.running_stage = stage
        self.stage.emit(stage)
        process = QtCore.QProcess(self)
        process.setProgram(sys.executable)
        process.setArguments(["-u", "-c", _LAUNCH, *arguments])
        env = QtCore.QProcessEnvironment.systemEnvironment()
        if not env.contains("OMP_NUM_THREADS"):
            env.insert("OMP_NUM_THREADS", str(self.threads))
        here = str(Path(__file__).resolve().parents[2])  # the folder holding evstream/ and models/
        env.insert("PYTHONPATH", os.pathsep.join(p for p in (here, env.value("PYTHONPATH")) if p))
        env.insert("PYTHONUNBUFFERED", "1")
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._process_error)
        self.process = process
        self._cancelled = False
        self._stdout = self._stderr = ""
        self._stderr_lines = []
        process.start()

    def _start_calibration(self) -> None:
        """Stage 2: calibrate train's checkpoint on the folder's held-out runs."""
        assert self.trained is not None and self.calibrated is not None and self.folder is not None
        runs = self._test_recordings or _listed(Path(self.folder), "test") or 1
        self.progress.setRange(0, runs)
        self.progress.setValue(0)
        self.progress.setFormat("calibration: %v/%m held-out runs")
        self._spawn("calibrate", calibrate_arguments(self.trained, self.folder, self.calibrated, self.calibrate_args))
        self._say(f"stage 2 of 2, calibration: choosing the decision settings on the {runs} held-out "
                  f"run{'s' if runs != 1 else ''} (replaying them)…")

    def cancel(self) -> None:
        """Kill the running stage; the best checkpoint written so far stays whole (written by rename)."""
        if self.process is None:
            return
        self._cancelled = True
        self.process.kill()
        self._say("cancelling…")

    def shutdown(self) -> None:
        """Kill a running stage and wait for it (the window closes)."""
        if self.process is not None:
            self._cancelled = True
            self.process.kill()
            self.process.waitForFinished(5000)

    def _read_stdout(self) -> None:
        if self.process is None:
            return
        self._stdout += bytes(self.process.readAllStandardOutput().data()).decode(errors="replace")
        *lines, self._stdout = self._stdout.split("\n")
        for line in lines:
            self._stdout_line(line.rstrip("\r"))

    def _read_stderr(self) -> None:
        if self.process is None:
            return
        self._stderr += bytes(self.process.readAllStandardError().data()).decode(errors="replace")
        *lines, self._stderr = self._stderr.split("\n")
        self._stderr_lines = (self._stderr_lines + [ln.rstrip("\r") for ln in lines if ln.strip()])[-_ERROR_LINES:]

    def _stdout_line(self, line: str) -> None:
        if self.running_stage == "calibrate":
            if _REPLAYED.match(line) is not None:
                self.progress.setValue(min(self.progress.value() + 1, self.progress.maximum()))
                self._say(f"stage 2 of 2, calibration: {self.progress.value()}/{self.progress.maximum()} held-out "
                          "runs replayed, then the grid search…")
            return
        epoch = parse_epoch_line(line)
        if epoch is not None:
            self.last_epoch = epoch
            if epoch.test_top1 is not None:
                self._epoch_tests[epoch.epoch] = epoch
            self.progress.setRange(0, epoch.epochs)
            self.progress.setValue(epoch.epoch)
            held = ""
            if epoch.score is not None:
                held = f" · held-out score {epoch.score:.3f} (gesture-step top-1 {epoch.test_top1:.3f})"
            elif epoch.test_top1 is not None:
                held = f" · held-out top-1 {epoch.test_top1:.3f}"
            left = (epoch.epochs - epoch.epoch) * epoch.seconds
            tail = f" · about {_duration(left)} left" if epoch.epoch < epoch.epochs else " · writing the result"
            self._say(f"stage 1 of 2, train: epoch {epoch.epoch}/{epoch.epochs} · loss {epoch.loss:.3f}{held} · "
                      f"{epoch.seconds:.0f} s/epoch{tail}")
            return
        best = parse_best_line(line)
        if best is not None:
            self.result = best
        elif line.startswith("init: "):
            self._say(f"stage 1 of 2, train: {line[len('init: '):]}")
        elif line.startswith("data: "):
            self._say("stage 1 of 2, train: binning the recordings (cached for the next fine-tune)…")
        elif (m := _STREAM.match(line)) is not None:
            self._test_recordings = int(m.group(2))
            self._say(f"stage 1 of 2, train: training on {m.group(1)} recordings, {m.group(2)} held out: epoch 1 "
                      "running…")

    def _process_error(self, error: QtCore.QProcess.ProcessError) -> None:
        if error == QtCore.QProcess.ProcessError.FailedToStart and self.process is not None:
            self.error = f"could not start {sys.executable}: {self.process.errorString()}"
            if self.running_stage == "calibrate" and self.trained is not None:
                self._offer_trained(f"calibration failed: {self.error}")
                return
            self._end(False)
            self._say(self.error, error=True)
            self.done.emit(False)

    def _finished(self, code: int, status: QtCore.QProcess.ExitStatus) -> None:
        if self.process is None:
            return
        self._read_stdout()
        self._read_stderr()
        if self._stdout.strip():  # a last line without its newline
            self._stdout_line(self._stdout.rstrip("\r"))
        if self._stderr.strip():
            self._stderr_lines.append(self._stderr.strip())
        if self.running_stage == "calibrate":
            self._calibration_finished(code, status)
            return
        out = self.out
        have = out is not None and os.path.isfile(out)
        if self._cancelled:
            self._end(have)
            if have:
                self.checkpoint = self.trained = out
                self.result_label.setText(self._held_out_text(None) + " (best epoch before Cancel)")
                self._say(f"cancelled; the best checkpoint so far stays usable: {out}")
            else:
                self._say("cancelled before an epoch was evaluated: nothing to load, the running model is unchanged")
            self.done.emit(have)
            return
        if code == 0 and status == QtCore.QProcess.ExitStatus.NormalExit and have:
            self.trained = out
            self.progress.setValue(self.progress.maximum())
            self.result_label.setText(self._held_out_text(self.result))
            self._drop_process()
            self._start_calibration()
            return
        self.error = self._child_error(f"train ended with exit code {code} and no checkpoint")
        self._end(False)
        self.progress.setValue(0)
        self._say(f"fine-tune failed: {self.error}", error=True)
        self.done.emit(False)

    def _child_error(self, fallback: str) -> str:
        """The child's last ``error:`` line, else its last stderr line, else ``fallback``."""
        errors = [ln for ln in self._stderr_lines if ln.startswith("error: ")]
        if errors:
            return errors[-1][len("error: "):]
        return self._stderr_lines[-1] if self._stderr_lines else fallback

    def _calibration_finished(self, code: int, status: QtCore.QProcess.ExitStatus) -> None:
        calibrated = self.calibrated
        assert calibrated is not None
        if self._cancelled:
            with contextlib.suppress(OSError):
                os.remove(calibrated + ".tmp")  # a copy cut short (the checkpoint is written by rename)
            self._offer_trained("calibration cancelled", error=False)
            return
        if code == 0 and status == QtCore.QProcess.ExitStatus.NormalExit and os.path.isfile(calibrated):
            report = Path(calibrated).with_name(f"{Path(calibrated).stem}_calibration.json")
            try:
                self.calibration = json.loads(report.read_text())
            except (OSError, ValueError):
                self.calibration = None
            self.checkpoint = calibrated
            self.progress.setValue(self.progress.maximum())
            self.result_label.setText(f"{self.result_label.text()}; {self._calibration_text()}")
            self._end(True)
            self._say(f"done: {calibrated} (decisions calibrated on the held-out runs)")
            self.done.emit(True)
            return
        self.error = self._child_error(f"eval ended with exit code {code} and no calibrated checkpoint")
        self._offer_trained(f"calibration failed: {self.error}")

    def _offer_trained(self, why: str, error: bool = True) -> None:
        """The calibration did not end well: offer train's checkpoint, saying so in one line."""
        self.checkpoint = self.trained
        self._end(True)
        self._say(f"{why}; the fine-tuned checkpoint is offered with its starting model's decision settings "
                  f"(not calibrated): {self.trained}", error=error)
        self.done.emit(True)

    def _calibration_text(self) -> str:
        """What the calibration chose, and its figures on the runs it chose them on."""
        summary = self.calibration
        if not summary or not isinstance(summary.get("decision"), dict):
            return "decisions calibrated on them"
        decision = summary["decision"]
        parts = [str(decision.get("rule", "ema"))]
        if "smoothing_ms" in decision:
            parts.append(f"{float(decision['smoothing_ms']):g} ms")
        if "mean_steps" in decision:
            parts.append(f"{decision['mean_steps'] or 'all'} steps")
        if "threshold" in decision:
            parts.append(f"threshold {float(decision['threshold']):g}")
        if decision.get("class_thresholds"):
            parts.append(f"{len(decision['class_thresholds'])} own threshold(s)")
        if "hysteresis" in decision:
            parts.append(f"hysteresis {float(decision['hysteresis']):g}")
        figures = ""
        if isinstance(summary.get("accuracy"), float) and isinstance(summary.get("false_alarm"), float):
            figures = (f" (online {summary['accuracy']:.3f}, false alarms {summary['false_alarm']:.3f} there: "
                       "the runs they were chosen on)")
        return f"decisions calibrated on them: {', '.join(parts)}{figures}"

    def _held_out_text(self, best: dict | None) -> str:
        """The held-out figures: train's ``best:`` line, else the best evaluated epoch seen."""
        n = self._test_recordings
        where = f"{n} held-out recording{'s' if n != 1 else ''}" if n is not None else "the held-out recordings"
        if best is not None:
            epoch = self._epoch_tests.get(best["epoch"])
            clip = f", clip top-1 {epoch.clip_top1:.3f}" if epoch is not None and epoch.clip_top1 is not None else ""
            score = f", score {best['score']:.3f}" if best["score"] is not None else ""
            return (f"on {where} (never trained on): gesture-step top-1 {best['top1']:.3f} "
                    f"({best['correct']}/{best['samples']}){clip}{score}, epoch {best['epoch']}")
        if not self._epoch_tests:
            return f"on {where}: no figure read"
        key = "score" if any(e.score is not None for e in self._epoch_tests.values()) else "test_top1"
        epoch = max(self._epoch_tests.values(), key=lambda e: getattr(e, key))
        return f"on {where}: gesture-step top-1 {epoch.test_top1:.3f}, epoch {epoch.epoch}"

    def _drop_process(self) -> None:
        process, self.process = self.process, None
        self.running_stage = None
        if process is not None:
            process.deleteLater()

    def _end(self, offer: bool) -> None:
        self._drop_process()
        self.start_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.load_button.setEnabled(offer)

    # -- the pipeline ------------------------------------------------------------------------------

    def load_into_pipeline(self) -> None:
        """Ask the pipeline to swap the fine-tuned checkpoint in (``load_model``)."""
        if self.checkpoint is None:
            self._say("no fine-tuned checkpoint to load yet", error=True)
            return
        self.note_loaded(self.checkpoint)
        self._load_pending = True
        self.command.emit("load_model", {"path": self.checkpoint})
        self._say(f"load_model {Path(self.checkpoint).name} sent…")

    def on_reply(self, reply) -> None:
        """A control reply (:class:`~evstream.dashboard.control.ControlReply`): the answer to our ``load_model``."""
        if reply.cmd != "load_model" or not self._load_pending:
            return
        self._load_pending = False
        if reply.ok:
            model = reply.reply.get("model") if isinstance(reply.reply, dict) else None
            self._say(f"the pipeline decides with {model or Path(self.checkpoint or '').stem} from the next window")
        else:
            self._say(f"load_model refused: {reply.error}; the running model keeps going", error=True)

    def _say(self, text: str, error: bool = False) -> None:
        self.message = text
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #ff8a5a;" if error else "")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def _ask_checkpoint(parent: QtWidgets.QWidget) -> str:
    chosen, _ = QtWidgets.QFileDialog.getOpenFileName(parent, "Fine-tune from", "", "checkpoints (*.pt);;all files (*)")
    return chosen
