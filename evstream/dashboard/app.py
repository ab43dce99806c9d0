"""``run_dashboard``: open the window on a published stream, optionally save a screenshot and quit."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path

import zmq
from PyQt6 import QtCore, QtWidgets

from evstream.errors import ConfigError, EvstreamError
from evstream.protocol import TOPICS
from evstream.publish import Subscriber

__all__ = ["run_dashboard", "has_display"]

_SCREENSHOT_DEFAULT_S = 3.0


def has_display() -> bool:
    """Whether Qt can open a window here: a display server, or a platform chosen explicitly."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return True
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_dashboard(
    address: str,
    *,
    control: str | None = None,
    screenshot: str | os.PathLike | None = None,
    duration_s: float | None = None,
    context: zmq.Context | None = None,
    curve_secret_key_file: str | os.PathLike | None = None,
    curve_server_key_file: str | os.PathLike | None = None,
) -> int:
    """Show the dashboard attached to the stream published at ``address``; returns an exit code.

    Args:
        address: the pipeline's PUB address (``tcp://127.0.0.1:5556``; ``inproc://`` with ``context``).
        control: control (REP) address; None: announced by ``status``, else publish port + 1.
        screenshot: write a PNG of the whole window there after ``duration_s`` (3 s if not
            given), then quit. Works without a display (Qt's offscreen platform).
        duration_s: quit after this many seconds; None: run until the window is closed or Ctrl+C.
        context: ZeroMQ context shared with an in-process publisher.
        curve_secret_key_file: this client's CURVE certificate (``python main.py keys``), for a
            publisher that encrypts its stream; with ``curve_server_key_file``, its public one.
        curve_server_key_file: the publisher's public CURVE certificate.

    Raises:
        ConfigError: a bad address, unreadable or half-given CURVE key files, no display and no
            screenshot asked for.
        EvstreamError: the screenshot could not be written (names the file).
    """
    curve = {"curve_secret_key_file": curve_secret_key_file, "curve_server_key_file": curve_server_key_file}
    # The Subscriber checks the address and the key files; the reader thread opens its own later.
    Subscriber(address, TOPICS, context=context, **curve).close()
    if control is not None:
        _check_control_address(control, context)
    if QtWidgets.QApplication.instance() is None and not has_display():
        if screenshot is None:
            raise ConfigError("no display (DISPLAY is unset): use --screenshot PNG, or set QT_QPA_PLATFORM=offscreen")
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if screenshot is not None and duration_s is None:
        duration_s = _SCREENSHOT_DEFAULT_S
    if screenshot is not None:
        parent = Path(screenshot).expanduser().resolve().parent
        if not parent.is_dir():
            raise EvstreamError(f"{screenshot}: folder {parent} does not exist")

    app = QtWidgets.QApplication.instance()
    if app is None:
        app = QtWidgets.QApplication([sys.argv[0] if sys.argv else "evstream"])
        app.setStyle("Fusion")  # follows the window's dark palette on every platform
        if app.platformName() == "offscreen":
            QtCore.qInstallMessageHandler(_quiet_offscreen)
    from evstream.dashboard.window import DashboardWindow  # imports pyqtgraph once a QApplication exists

    window = DashboardWindow(address, control=control, context=context, **curve)
    loop = QtCore.QEventLoop()
    failure: list[str] = []

    def finish() -> None:
        if screenshot is not None and not window.grab_png(str(screenshot)):
            failure.append(f"{screenshot}: could not write the PNG")
        loop.quit()

    closer = _CloseWatcher(loop)
    window.installEventFilter(closer)
    window.show()
    if duration_s is not None:
        QtCore.QTimer.singleShot(int(max(duration_s, 0.0) * 1000), finish)
    previous = None
    wake = QtCore.QTimer()
    if threading.current_thread() is threading.main_thread():
        # Qt's loop holds the interpreter in C++; a periodic no-op lets Python run the SIGINT handler.
        previous = signal.signal(signal.SIGINT, lambda *_: loop.quit())
        wake.timeout.connect(lambda: None)
        wake.start(200)
    try:
        loop.exec()
    finally:
        wake.stop()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        window.removeEventFilter(closer)
        window.shutdown()
        window.close()
        window.deleteLater()
        app.processEvents()
    if failure:
        raise EvstreamError(failure[0])
    return 0


def _check_control_address(address: str, context: zmq.Context | None) -> None:
    """Raise ConfigError naming ``address`` when ZeroMQ cannot connect to it (bad syntax, unknown transport)."""
    socket = (context or zmq.Context.instance()).socket(zmq.REQ)
    try:
        socket.connect(address)
    except zmq.ZMQError as err:
        raise ConfigError(f"control address {address}: cannot connect ({err.strerror})") from None
    finally:
        socket.close(0)


def _quiet_offscreen(kind: QtCore.QtMsgType, _context: QtCore.QMessageLogContext, text: str) -> None:
    """Qt messages to stderr, less the offscreen platform's harmless note on every window resize."""
    if "does not support propagateSizeHints" not in text:
        print(text, file=sys.stderr)


class _CloseWatcher(QtCore.QObject):
    """Ends the event loop when the window is closed by the user."""

    def __init__(self, loop: QtCore.QEventLoop) -> None:
        super().__init__()
        self._loop = loop

    def eventFilter(self, watched: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802 (Qt override)
        if event.type() == QtCore.QEvent.Type.Close:
            self._loop.quit()
        return False
