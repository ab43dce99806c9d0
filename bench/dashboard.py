"""Dashboard benchmark: display FPS and the GUI thread's CPU share while showing a 640×480 stream.

A publisher process sends the synthetic stream of :mod:`evstream.dashboard.demo` (every topic:
640×480 frames, predictions, five spike maps, 2×8×64×64 attention, stats; status each second) at
``--rate`` windows per second over tcp://127.0.0.1. This process runs the whole dashboard with
every panel on (attention overlay included) for ``--seconds`` and measures:

- display FPS: paint events of the event image's view per second (what reaches the screen),
- GUI thread CPU share: ``time.thread_time()`` of the GUI thread / wall time (target ≤ 0.5),
- process CPU share (GUI + socket reader threads), messages received and lost.

Anchors, run side by side in this process:

- repaint per message: the same window and stream with the draw timer at 100 Hz, i.e. one draw
  per window as a naive "redraw on every message" GUI would do (pyqtgraph's examples and
  STYLE.md: a timer draws whatever arrived last);
- idle: the same window with no stream (the cost of the timer and the empty panels);
- image update paths: one 640×480 event image drawn with the fast path used here (row-major
  uint8, fixed levels, 256-entry LUT, long-lived ImageItem) against pyqtgraph's default path
  (float64, col-major, autoLevels) — the habit STYLE.md borrows from pyqtgraph's ImageItem docs.

Usage: ``python bench/dashboard.py [--seconds 10] [--rate 100] [--display-hz 30]`` (offscreen
when there is no display).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _publisher(address: str, rate_hz: float, sensor: tuple[int, int], stop) -> None:
    from evstream.dashboard.demo import publish_demo

    done = threading.Event()
    threading.Thread(target=lambda: (stop.wait(), done.set()), daemon=True).start()
    publish_demo(address, done, rate_hz=rate_hz, sensor=sensor)


class _PaintCounter:
    """Counts paint events of one widget (what the display actually shows)."""

    def __init__(self, widget) -> None:
        from PyQt6 import QtCore

        class Filter(QtCore.QObject):
            count = 0

            def eventFilter(self, watched, event):  # noqa: N802 (Qt override)
                if event.type() == QtCore.QEvent.Type.Paint:
                    Filter.count += 1
                return False

        self.filter = Filter()
        widget.installEventFilter(self.filter)

    @property
    def count(self) -> int:
        return type(self.filter).count


def _measure_window(app, address: str | None, seconds: float, display_hz: float, warmup_s: float) -> dict:
    from PyQt6 import QtCore

    from evstream.dashboard.window import DashboardWindow

    window = DashboardWindow(address or "tcp://127.0.0.1:1")
    window.set_display_rate(display_hz)
    window.events.overlay_box.setChecked(True)
    window.show()
    counter = _PaintCounter(window.events.graphics.viewport())
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(int(warmup_s * 1000), loop.quit)
    loop.exec()
    paints0, ticks0 = counter.count, window.ticks
    received0 = sum(t.received for t in window.reader.take().topics.values())
    wall0, thread0, process0 = time.perf_counter(), time.thread_time(), time.process_time()
    QtCore.QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    wall = time.perf_counter() - wall0
    thread_cpu = time.thread_time() - thread0
    process_cpu = time.process_time() - process0
    snapshot = window.reader.take()
    received = sum(t.received for t in snapshot.topics.values()) - received0
    gaps = sum(t.gaps for t in snapshot.topics.values())
    frames = snapshot.topics["frame"].received
    window.shutdown()
    window.close()
    app.processEvents()
    return {
        "fps": (counter.count - paints0) / wall,
        "ticks": (window.ticks - ticks0) / wall,
        "gui_share": thread_cpu / wall,
        "cpu_per_tick_ms": thread_cpu / max(window.ticks - ticks0, 1) * 1000,
        "process_share": process_cpu / wall,
        "messages_s": received / wall,
        "gaps": gaps,
        "frames": frames,
    }


def _image_paths(app, repeats: int, rounds: int = 3) -> tuple[float, float]:
    """ms per 640×480 event-image update + paint, best of ``rounds``: fast path vs pyqtgraph's default path."""
    import numpy as np
    import pyqtgraph as pg

    from evstream.dashboard.accumulate import diverging_lut

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, size=(480, 640), dtype=np.uint8) for _ in range(8)]
    best = {True: float("inf"), False: float("inf")}
    for _ in range(rounds):  # alternate the two paths so a busy moment hits both alike
        for fast in (True, False):
            pg.setConfigOptions(imageAxisOrder="row-major" if fast else "col-major")
            widget = pg.GraphicsLayoutWidget()
            widget.resize(660, 500)
            view = widget.addViewBox(lockAspect=True)
            item = pg.ImageItem()
            view.addItem(item)
            if fast:
                item.setLookupTable(diverging_lut())
            widget.show()
            app.processEvents()
            start = time.perf_counter()
            for i in range(repeats):
                frame = frames[i % len(frames)]
                if fast:
                    item.setImage(frame, autoLevels=False, levels=(0, 255))
                else:
                    item.setImage(frame.T.astype(np.float64))  # what a naive caller hands over
                widget.viewport().repaint()
            best[fast] = min(best[fast], (time.perf_counter() - start) / repeats * 1000)
            widget.close()
    pg.setConfigOptions(imageAxisOrder="row-major")
    return best[True], best[False]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run (default %(default)s)")
    parser.add_argument("--rate", type=float, default=100.0, help="windows per second published (default %(default)s)")
    parser.add_argument("--display-hz", type=float, default=30.0, help="dashboard draw rate, Hz (default %(default)s)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    args = parser.parse_args()

    import zmq
    from PyQt6 import QtCore, QtWidgets

    from evstream.dashboard.app import _quiet_offscreen

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    QtCore.qInstallMessageHandler(_quiet_offscreen)
    port = zmq.Context.instance().socket(zmq.PUB)
    free = port.bind_to_random_port("tcp://127.0.0.1")
    port.close(0)
    address = f"tcp://127.0.0.1:{free}"

    spawn = multiprocessing.get_context("spawn")
    stop = spawn.Event()
    publisher = spawn.Process(target=_publisher, args=(address, args.rate, (args.width, args.height), stop), daemon=True)
    publisher.start()
    try:
        live = _measure_window(app, address, args.seconds, args.display_hz, warmup_s=3.0)
        per_message = _measure_window(app, address, args.seconds, args.rate, warmup_s=1.0)
    finally:
        stop.set()
        publisher.join(5)
    idle = _measure_window(app, None, min(args.seconds, 5.0), args.display_hz, warmup_s=0.5)
    fast_ms, default_ms = _image_paths(app, 30)

    cores = os.cpu_count()
    print(f"dashboard benchmark · {args.width}×{args.height} stream at {args.rate:g} windows/s · display {args.display_hz:g} Hz · "
          f"{args.seconds:g} s · platform {app.platformName()} · {cores} cores")
    print(f"  streaming : {live['fps']:5.1f} FPS painted ({live['ticks']:.1f} timer ticks/s) · GUI thread "
          f"{live['gui_share'] * 100:5.1f}% of a core · process {live['process_share'] * 100:5.1f}% · "
          f"{live['messages_s']:.0f} msg/s received · {live['gaps']} lost · {live['frames']} frames")
    print(f"              GUI CPU per draw {live['cpu_per_tick_ms']:.1f} ms (budget {1000 / args.display_hz:.1f} ms) · "
          f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  per message: {per_message['fps']:5.1f} FPS painted ({per_message['ticks']:.1f} timer ticks/s of {args.rate:g}) · GUI thread "
          f"{per_message['gui_share'] * 100:5.1f}% of a core · process {per_message['process_share'] * 100:5.1f}% · {per_message['gaps']} lost")
    print(f"  idle      : {idle['fps']:5.1f} FPS painted · GUI thread {idle['gui_share'] * 100:5.1f}% of a core")
    print(f"  targets   : FPS / 30 = {live['fps'] / 30:.2f} (≥ 1 wanted) · GUI share / 0.5 core = {live['gui_share'] / 0.5:.2f} (≤ 1 wanted)")
    print(f"  vs anchors: repaint-per-message GUI CPU = {per_message['gui_share'] / max(live['gui_share'], 1e-9):.2f}× ours · "
          f"ours = {live['gui_share'] / max(idle['gui_share'], 1e-9):.1f}× idle")
    print(f"  image path: fast (uint8 row-major, fixed levels, LUT) {fast_ms:.2f} ms vs pyqtgraph default "
          f"(float64, autoLevels) {default_ms:.2f} ms per 640×480 update+paint, best of 3 → default / fast = {default_ms / fast_ms:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
