"""Prediction panel: class probability bars, the decision in large type, a timeline of decisions.

Bars are horizontal so the class names read along the y axis: a thin grey bar for this window's
probabilities (``probs``) over a coloured bar for the smoothed ones (``smoothed``). The ribbon
below shows the decision of the last :data:`RIBBON_S` seconds, one column per
:data:`RIBBON_BIN_S` of wall time, so it keeps scrolling when the stream falls silent. A decision
holds until the next one, for at most :data:`RIBBON_HOLD_S` (a silent stream leaves a gap).
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from evstream.dashboard.style import class_colors, panel_title
from evstream.labels import DVS_GESTURE_CLASSES, NO_GESTURE
from evstream.protocol import Message

__all__ = ["PredictionPanel", "RIBBON_S", "RIBBON_BIN_S", "RIBBON_HOLD_S"]

RIBBON_S = 30.0
RIBBON_BIN_S = 0.1
RIBBON_HOLD_S = 2.0
_EMPTY = 255  # ribbon index of a bin with no decision


class PredictionPanel(QtWidgets.QWidget):
    """Probability bars, decision label, decision ribbon and the "reset state" button."""

    reset_requested = QtCore.pyqtSignal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        header = QtWidgets.QHBoxLayout()
        header.addWidget(panel_title("Prediction"), 1)
        self.reset_button = QtWidgets.QPushButton("Reset state")
        self.reset_button.setToolTip("reset the model's LIF membrane state (control command 'reset')")
        self.reset_button.clicked.connect(self.reset_requested)
        header.addWidget(self.reset_button)
        layout.addLayout(header)

        self.label = QtWidgets.QLabel("—")
        font = self.label.font()
        font.setPointSizeF(font.pointSizeF() * 2.4)
        font.setBold(True)
        self.label.setFont(font)
        self.label.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.label)
        self.detail = QtWidgets.QLabel("")
        self.detail.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.detail)

        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        self.plot.setXRange(0, 1, padding=0.02)
        self.plot.getViewBox().invertY(True)
        self.plot.getAxis("bottom").setLabel("probability")
        self.instant = pg.BarGraphItem(x0=[], y=[], height=0.3, width=[], brush=pg.mkBrush(170, 170, 180, 150))
        self.smoothed = pg.BarGraphItem(x0=[], y=[], height=0.55, width=[], brushes=[])
        self.plot.addItem(self.smoothed)
        self.plot.addItem(self.instant)
        layout.addWidget(self.plot, 3)

        self.ribbon_plot = pg.PlotWidget()
        self.ribbon_plot.setMenuEnabled(False)
        self.ribbon_plot.setMouseEnabled(x=False, y=False)
        self.ribbon_plot.hideButtons()
        self.ribbon_plot.setFixedHeight(64)
        self.ribbon_plot.getAxis("left").setTicks([[]])
        self.ribbon_plot.getAxis("bottom").setLabel("seconds ago")
        self.ribbon = pg.ImageItem()
        self.ribbon_plot.addItem(self.ribbon)
        self.ribbon.setRect(QtCore.QRectF(-RIBBON_S, 0, RIBBON_S, 1))
        self.ribbon_plot.setXRange(-RIBBON_S, 0, padding=0)
        self.ribbon_plot.setYRange(0, 1, padding=0)
        layout.addWidget(self.ribbon_plot)

        self.classes: tuple[str, ...] = ()
        self._decisions: deque[tuple[float, int]] = deque()
        self.set_classes(DVS_GESTURE_CLASSES)
        self.last_probs: np.ndarray | None = None
        self.last_smoothed: np.ndarray | None = None
        self.label_text = ""

    def set_classes(self, classes: tuple[str, ...] | list[str]) -> None:
        """Class names in label order (from the ``status`` message)."""
        classes = tuple(str(c) for c in classes)
        if classes == self.classes:
            return
        self.classes = classes
        self.colors = class_colors(len(classes))
        self.plot.getAxis("left").setTicks([[(i, name) for i, name in enumerate(classes)]])
        self.plot.setYRange(-0.6, len(classes) - 0.4, padding=0)
        lut = np.full((256, 3), (32, 33, 40), dtype=np.uint8)
        for i, color in enumerate(self.colors[:254]):
            lut[i] = color.getRgb()[:3]
        lut[254] = (95, 95, 105)  # no gesture
        self.ribbon.setLookupTable(lut)

    def _index(self, label: int) -> int:
        if label == NO_GESTURE or not 0 <= label < min(len(self.classes), 254):
            return 254
        return label

    def show_prediction(self, message: Message) -> None:
        """Draw one ``pred`` message."""
        data = message.data
        probs = message.arrays.get("probs")
        smoothed = message.arrays.get("smoothed")
        if smoothed is None:
            smoothed = probs
        if probs is not None and smoothed is not None:
            n = min(len(probs), len(smoothed))
            rows = np.arange(n)
            self.last_probs = np.asarray(probs[:n], dtype=np.float32)
            self.last_smoothed = np.asarray(smoothed[:n], dtype=np.float32)
            self.instant.setOpts(x0=np.zeros(n), y=rows, width=self.last_probs, height=0.22)
            brushes = [pg.mkBrush(self.colors[i % len(self.colors)]) for i in range(n)] if self.colors else None
            self.smoothed.setOpts(x0=np.zeros(n), y=rows, width=self.last_smoothed, height=0.62, brushes=brushes)
        label = int(data.get("label", NO_GESTURE))
        confidence = float(data.get("confidence", 0.0))
        if label == NO_GESTURE:
            self.label_text = "no gesture"
        else:
            name = data.get("name") or (self.classes[label] if 0 <= label < len(self.classes) else f"class {label}")
            self.label_text = f"{name}  {confidence * 100:.0f}%"
        self.label.setText(self.label_text)
        color = "#9a9aa6" if label == NO_GESTURE else self.colors[label % len(self.colors)].name()
        self.label.setStyleSheet(f"color: {color};")
        infer = data.get("infer_ms")
        energy = data.get("energy_uj")
        parts = [f"window {message.t_end / 1e6:.2f} s" if message.t_end is not None else None,
                 f"{data.get('events', 0)} events",
                 f"{infer:.1f} ms" if isinstance(infer, (int, float)) else None,
                 f"{energy:.1f} µJ" if isinstance(energy, (int, float)) else None,
                 f"resets {data.get('resets', 0)}"]
        self.detail.setText(" · ".join(p for p in parts if p))
        self._decisions.append((time.monotonic(), self._index(label)))

    def draw_ribbon(self, now: float | None = None) -> None:
        """Redraw the decision ribbon up to ``now`` (time.monotonic())."""
        now = time.monotonic() if now is None else now
        # Keep one decision older than the ribbon: it may still hold into the first columns.
        while len(self._decisions) > 1 and self._decisions[1][0] < now - RIBBON_S:
            self._decisions.popleft()
        bins = int(RIBBON_S / RIBBON_BIN_S)
        ribbon = np.full((1, bins), _EMPTY, dtype=np.uint8)
        decisions = list(self._decisions)
        for i, (stamp, index) in enumerate(decisions):
            until = min(decisions[i + 1][0] if i + 1 < len(decisions) else now, stamp + RIBBON_HOLD_S)
            first = bins - 1 - int((now - stamp) / RIBBON_BIN_S)
            last = bins - 1 - int((now - until) / RIBBON_BIN_S)
            ribbon[0, max(first, 0):max(last + 1, 0)] = index
        self.ribbon.setImage(ribbon, autoLevels=False, levels=(0, 255))
        self.ribbon.setRect(QtCore.QRectF(-RIBBON_S, 0, RIBBON_S, 1))
