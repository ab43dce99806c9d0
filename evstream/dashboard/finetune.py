"""Fine-tune panel: train the model on the Teach folder in a separate process, then swap it in.

"Fine-tune" runs ``python main.py train --init CKPT --data FOLDER --recipe stream --epochs N``
(:func:`finetune_arguments`) in a child process (:class:`QtCore.QProcess`): the GUI thread only
reads the lines it prints, so neither the window nor the pipeline waits for it. The child runs at
a lower CPU priority (``nice`` :data:`NICE`) with one core fewer than the machine has
(``OMP_NUM_THREADS``), so on a small machine the live pipeline keeps its windows.

CKPT is the running model (``status.model``: the name of shipped weights, or the path a
``load_model`` from this dashboard sent) unless another one is chosen; FOLDER is the Teach
panel's (the pipeline's recordings folder; the fine-tune runs on the dashboard's machine, so it
must be reachable here). The checkpoint goes to ``FOLDER/finetune/<time>.pt`` (train also writes
``<time>_last.pt`` and the confusion matrix there, and caches the binned recordings in
``FOLDER/finetune/frames_cache``, so the next fine-tune bins only new runs).

Train's per-epoch line (``epoch k/N loss … test top1 … score … lr … samples/s …s``) moves the
progress bar and the status line; its closing ``best: …`` line is the held-out accuracy, on the
folder's ``trials_to_test.txt`` recordings, which the model never trained on. A folder with no
held-out recording is refused before anything starts (a model is never offered without that
figure). When train ends well, "Load into pipeline" sends ``load_model`` with the new checkpoint.
"Cancel" kills the child: train writes its checkpoints through a temporary file and a rename, so
the best one so far (``PATH``, written after each epoch that improved the held-out score) stays
whole and is offered when there is one. A train that fails shows its one ``error:`` line.
"""

from __future__ import annotations

import datetime
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PyQt6 import QtCore, QtWidgets

from evstream.dashboard.style import flexible_label, panel_title

__all__ = ["FinetunePanel", "EpochReport", "finetune_arguments", "parse_epoch_line", "parse_best_line",
           "DEFAULT_EPOCHS", "NICE"]

DEFAULT_EPOCHS = 5  # ~2 min on 2 CPU cores for 11 classes x 4 training runs of 3 s gestures (README's fine-tune)
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
        done(ok): the child ended (True: a checkpoint is offered).

    Args:
        data_folder: returns the folder to train on (the Teach panel's), None while unknown.
    """

    command = QtCore.pyqtSignal(str, dict)
    done = QtCore.pyqtSignal(bool)

    def __init__(self, data_folder: Callable[[], str | None] = lambda: None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.data_folder = data_folder
        self.extra_args: list[str] = []  # more train flags (e.g. --samples-per-epoch for a quick try)
        self.threads = max(1, (os.cpu_count() or 2) - 1)  # one core left for the pipeline
        self.running_model: str | None = None  # status.model
        self._loaded_paths: dict[str, str] = {}  # checkpoint name (stem) -> path sent by load_model
        self.process: QtCore.QProcess | None = None
        self.out: str | None = None  # the checkpoint the running fine-tune writes
        self.checkpoint: str | None = None  # the one offered to the pipeline
        self.result: dict | None = None  # parse_best_line of the finished run
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
        self.load_button.setToolTip("swap the fine-tuned checkpoint in between windows (load_model)")
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
        self.process, self.out = process, os.fspath(out)
        self.checkpoint = self.result = self.last_epoch = self.error = None
        self._cancelled = False
        self._stdout = self._stderr = ""
        self._stderr_lines = []
        self._test_recordings = None
        self._epoch_tests = {}
        self.progress.setRange(0, epochs)
        self.progress.setValue(0)
        self.result_label.setText("")
        self.load_button.setEnabled(False)
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._say(f"starting: python main.py {' '.join(arguments[:8])} … (loading torch)")
        process.start()
        return True

    def cancel(self) -> None:
        """Kill the fine-tune; the best checkpoint written so far stays whole (written by rename)."""
        if self.process is None:
            return
        self._cancelled = True
        self.process.kill()
        self._say("cancelling…")

    def shutdown(self) -> None:
        """Kill a running fine-tune and wait for it (the window closes)."""
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
            self._say(f"epoch {epoch.epoch}/{epoch.epochs} · loss {epoch.loss:.3f}{held} · {epoch.seconds:.0f} s/epoch"
                      f"{tail}")
            return
        best = parse_best_line(line)
        if best is not None:
            self.result = best
        elif line.startswith("init: "):
            self._say(line[len("init: "):])
        elif line.startswith("data: "):
            self._say("binning the recordings (cached for the next fine-tune)…")
        elif (m := _STREAM.match(line)) is not None:
            self._test_recordings = int(m.group(2))
            self._say(f"training on {m.group(1)} recordings, {m.group(2)} held out: epoch 1 running…")

    def _process_error(self, error: QtCore.QProcess.ProcessError) -> None:
        if error == QtCore.QProcess.ProcessError.FailedToStart and self.process is not None:
            self.error = f"could not start {sys.executable}: {self.process.errorString()}"
            self._end(False)
            self._say(self.error, error=True)

    def _finished(self, code: int, status: QtCore.QProcess.ExitStatus) -> None:
        if self.process is None:
            return
        self._read_stdout()
        self._read_stderr()
        if self._stdout.strip():  # a last line without its newline
            self._stdout_line(self._stdout.rstrip("\r"))
        if self._stderr.strip():
            self._stderr_lines.append(self._stderr.strip())
        out = self.out
        have = out is not None and os.path.isfile(out)
        if self._cancelled:
            self._end(have)
            if have:
                self.checkpoint = out
                self.result_label.setText(self._held_out_text(None) + " (best epoch before Cancel)")
                self._say(f"cancelled; the best checkpoint so far stays usable: {out}")
            else:
                self._say("cancelled before an epoch was evaluated: nothing to load, the running model is unchanged")
            self.done.emit(have)
            return
        if code == 0 and status == QtCore.QProcess.ExitStatus.NormalExit and have:
            self.checkpoint = out
            self.progress.setValue(self.progress.maximum())
            self.result_label.setText(self._held_out_text(self.result))
            self._end(True)
            self._say(f"done: {out}")
            self.done.emit(True)
            return
        errors = [ln for ln in self._stderr_lines if ln.startswith("error: ")]
        if errors:
            self.error = errors[-1][len("error: "):]
        elif self._stderr_lines:
            self.error = self._stderr_lines[-1]
        else:
            self.error = f"train ended with exit code {code} and no checkpoint"
        self._end(False)
        self.progress.setValue(0)
        self._say(f"fine-tune failed: {self.error}", error=True)
        self.done.emit(False)

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

    def _end(self, offer: bool) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.deleteLater()
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
