"""Prediction panel: class probability bars, the decision in large type, decision and truth ribbons.

Bars are horizontal so the class names read along the y axis: a thin grey bar for this window's
probabilities (``probs``) over a coloured bar for the smoothed ones (``smoothed``, what the
decision rule acts on), with the decision threshold drawn across them (from ``status.decision``):
a class is decided once its smoothed bar passes the line (and, with hysteresis, stays decided
until it falls below the fainter "hold" line). A legend names both bars.

Below, two ribbons in sensor time relative to the recording's start (the
:class:`~evstream.dashboard.timeline.Timeline`): the decision of every window and, when the
source knows it (``pred.truth``), the true class, coloured as the bars (grey: no gesture, dark:
no window). Beside them the running online accuracy, scored as ``models/online_eval.py`` does.
The ribbons follow the newest window (:data:`RIBBON_S` seconds shown) until the user pans or
zooms them (mouse drag and wheel); "follow" brings them back. Time stands still while the
stream is paused, and the whole run stays after the end.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtGui, QtWidgets

from evstream.dashboard.style import class_colors, panel_title
from evstream.dashboard.timeline import UNKNOWN, Timeline
from evstream.labels import DVS_GESTURE_CLASSES, NO_GESTURE
from evstream.protocol import Message

__all__ = ["PredictionPanel", "RIBBON_S", "RIBBON_COLUMNS"]

RIBBON_S = 30.0  # seconds of sensor time shown while following the newest window
RIBBON_COLUMNS = 900  # ribbon resolution over the visible range
_NO_GESTURE_INDEX = 254
_EMPTY = 255  # ribbon index of a moment without a window (or without truth)
_INSTANT_BRUSH = (170, 170, 180, 150)


class PredictionPanel(QtWidgets.QWidget):
    """Probability bars with threshold and legend, decision label, ribbons, accuracy and "reset state".

    Args:
        timeline: the run's record (a fresh one when not given).
    """

    reset_requested = QtCore.pyqtSignal()

    def __init__(self, timeline: Timeline | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.timeline = timeline if timeline is not None else Timeline()
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
        self.instant = pg.BarGraphItem(x0=[], y=[], height=0.3, width=[], brush=pg.mkBrush(*_INSTANT_BRUSH))
        self.smoothed = pg.BarGraphItem(x0=[], y=[], height=0.55, width=[], brushes=[])
        self.plot.addItem(self.smoothed)
        self.plot.addItem(self.instant)
        self.threshold_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#f0f0f0", width=1.5, style=QtCore.Qt.PenStyle.DashLine),
                                              label="threshold", labelOpts={"position": 0.97, "color": "#f0f0f0", "anchors": [(0, 1), (0, 1)]})
        self.hold_line = pg.InfiniteLine(angle=90, movable=False, pen=pg.mkPen("#8a8a96", width=1, style=QtCore.Qt.PenStyle.DotLine))
        for line in (self.threshold_line, self.hold_line):
            line.setZValue(20)
            line.setVisible(False)
            self.plot.addItem(line)
        self.legend = pg.LegendItem(offset=(-8, 4), labelTextSize="8pt")
        self.legend.setParentItem(self.plot.getPlotItem().getViewBox())
        # Legend samples only (never added to the plot): the smoothed bar in the class colours, the grey one.
        rainbow = QtGui.QLinearGradient(2, 0, 20, 0)
        for i, color in enumerate(class_colors(6)):
            rainbow.setColorAt(i / 5, color)
        self._legend_smoothed = pg.BarGraphItem(x=[], height=[], width=1, pen=None, brush=QtGui.QBrush(rainbow))
        self._legend_instant = pg.BarGraphItem(x=[], height=[], width=1, pen=None, brush=pg.mkBrush(*_INSTANT_BRUSH))
        self.legend.addItem(self._legend_smoothed, "smoothed (decided on; class colour)")
        self.legend.addItem(self._legend_instant, "this window alone")
        layout.addWidget(self.plot, 3)

        ribbon_header = QtWidgets.QHBoxLayout()
        self.accuracy_label = QtWidgets.QLabel("ground truth: not known for this source")
        self.accuracy_label.setToolTip("online accuracy: windows inside a labelled gesture whose decision names it;\n"
                                       "false alarms: windows at rest whose decision names a gesture\n(per window, by the rule 'eval --stream' applies to every step)")
        ribbon_header.addWidget(self.accuracy_label, 1)
        self.follow_button = QtWidgets.QPushButton("follow")
        self.follow_button.setCheckable(True)
        self.follow_button.setChecked(True)
        self.follow_button.setToolTip("follow the newest window; pan (drag) or zoom (wheel) the ribbon to look back")
        ribbon_header.addWidget(self.follow_button)
        layout.addLayout(ribbon_header)

        self.ribbon_plot = pg.PlotWidget()
        self.ribbon_plot.setMenuEnabled(False)
        self.ribbon_plot.setMouseEnabled(x=True, y=False)
        self.ribbon_plot.hideButtons()
        self.ribbon_plot.setFixedHeight(84)
        self.ribbon_plot.getAxis("left").setTicks([[(1.5, "decided"), (0.5, "truth")]])
        self.ribbon_plot.getAxis("bottom").setLabel("recording time (s)")
        self.ribbon = pg.ImageItem()
        self.ribbon_plot.addItem(self.ribbon)
        self.ribbon_plot.setXRange(0, RIBBON_S, padding=0)
        self.ribbon_plot.setYRange(0, 2, padding=0)
        self.ribbon_plot.getViewBox().setLimits(yMin=0, yMax=2)
        self.ribbon_plot.getViewBox().sigRangeChangedManually.connect(self.stop_following)
        self.ribbon_plot.getViewBox().sigXRangeChanged.connect(self._range_changed)
        self.follow_button.toggled.connect(self._follow_toggled)
        layout.addWidget(self.ribbon_plot)

        self.classes: tuple[str, ...] = ()
        self.colors: list = []
        self.set_classes(DVS_GESTURE_CLASSES)
        self.last_probs: np.ndarray | None = None
        self.last_smoothed: np.ndarray | None = None
        self.label_text = ""
        self.threshold: float | None = None
        self.hysteresis: float | None = None
        self.ribbon_range: tuple[float, float] = (0.0, RIBBON_S)
        self._drawn: tuple | None = None

    # -- settings from status --------------------------------------------------------------

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
        for i, color in enumerate(self.colors[:_NO_GESTURE_INDEX]):
            lut[i] = color.getRgb()[:3]
        lut[_NO_GESTURE_INDEX] = (95, 95, 105)
        self.ribbon.setLookupTable(lut)
        self._drawn = None

    def set_decision(self, decision: dict | None) -> None:
        """Draw the decision rule's threshold (and the hold level ``threshold - hysteresis``) on the bars."""
        decision = decision if isinstance(decision, dict) else {}
        threshold, hysteresis = decision.get("threshold"), decision.get("hysteresis")
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
            self.threshold = None
            self.threshold_line.setVisible(False)
            self.hold_line.setVisible(False)
            return
        self.threshold = float(threshold)
        self.threshold_line.setValue(self.threshold)
        rule = decision.get("rule")
        self.threshold_line.label.setFormat(f"threshold {self.threshold:.2f}")
        self.threshold_line.setVisible(True)
        self.hysteresis = float(hysteresis) if isinstance(hysteresis, (int, float)) and hysteresis > 0 else None
        if self.hysteresis is not None:
            self.hold_line.setValue(self.threshold - self.hysteresis)
            self.hold_line.setToolTip(f"a decided class holds until its smoothed bar falls below {self.threshold - self.hysteresis:.2f}")
        self.hold_line.setVisible(self.hysteresis is not None)
        own = decision.get("class_thresholds")
        own_text = ""
        if isinstance(own, dict) and own:
            names = [f"{self.classes[int(k)] if str(k).isdigit() and int(k) < len(self.classes) else k} {float(v):.2f}"
                     for k, v in own.items() if isinstance(v, (int, float))]
            own_text = "; own thresholds: " + ", ".join(names)
        self.threshold_line.setToolTip(f"a class is decided when its smoothed bar passes {self.threshold:.2f}"
                                       + (f" (decision rule {rule})" if rule else "") + own_text)

    def _index(self, label: int) -> int:
        if label == NO_GESTURE or not 0 <= label < min(len(self.classes), _NO_GESTURE_INDEX):
            return _NO_GESTURE_INDEX
        return label

    # -- per message -----------------------------------------------------------------------

    def show_prediction(self, message: Message) -> None:
        """Draw one ``pred`` message (the ribbons come from the timeline: :meth:`draw_ribbon`)."""
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
        truth = data.get("truth")
        when = None
        if isinstance(message.t_end, int):
            relative = self.timeline.relative_s(message.t_end)
            when = f"t {relative:.2f} s" if relative is not None else None
            self.detail.setToolTip(f"window [{message.t_start}, {message.t_end}) µs, sensor clock (absolute: "
                                   f"{message.t_end / 1e6:.6f} s)")
        truth_text = None
        if isinstance(truth, int) and not isinstance(truth, bool):
            truth_text = "truth: no gesture" if truth == NO_GESTURE else \
                f"truth: {self.classes[truth] if 0 <= truth < len(self.classes) else f'class {truth}'}"
        parts = [when, truth_text,
                 f"{data.get('events', 0)} events",
                 f"{infer:.1f} ms" if isinstance(infer, (int, float)) else None,
                 f"{energy:.1f} µJ" if isinstance(energy, (int, float)) else None,
                 f"resets {data.get('resets', 0)}"]
        self.detail.setText(" · ".join(p for p in parts if p))

    # -- ribbons ---------------------------------------------------------------------------

    @property
    def following(self) -> bool:
        return self.follow_button.isChecked()

    def stop_following(self, *_args) -> None:
        """The user moved the time axis: stop following the newest window."""
        self.follow_button.setChecked(False)

    def _follow_toggled(self, on: bool) -> None:
        if on:
            self._drawn = None
            self.draw_ribbon()

    def _range_changed(self, *_args) -> None:
        (x0, x1), _ = self.ribbon_plot.getViewBox().viewRange()
        if (x0, x1) != self.ribbon_range:
            self.ribbon_range = (float(x0), float(x1))
            self._drawn = None
            self.draw_ribbon()

    def draw_ribbon(self, _now: float | None = None) -> None:
        """Redraw the ribbons and the accuracy when the record or the visible range changed.

        While following, the visible range ends at the newest window's end (sensor time, so a
        pause or the end of the stream freezes it).
        """
        version = self.timeline.version
        key = (version, self.ribbon_range, self.following)
        if key == self._drawn:
            return
        extent = self.timeline.span()
        if self.following and extent is not None:
            first, end = extent
            start = max(min(first, 0.0), end - RIBBON_S)
            span = (start, max(end, start + RIBBON_S))
            if span != self.ribbon_range:
                self.ribbon_range = span
                self.ribbon_plot.setXRange(*span, padding=0)  # the stream plot follows (window.py)
        self._drawn = (version, self.ribbon_range, self.following)
        x0, x1 = self.ribbon_range
        windows = self.timeline.windows(x0, x1)  # only what is visible: a long run costs nothing here
        self.ribbon.setImage(self.ribbon_columns(windows, x0, x1), autoLevels=False, levels=(0, 255))
        self.ribbon.setRect(QtCore.QRectF(x0, 0, max(x1 - x0, 1e-6), 2))
        self._show_accuracy()

    def ribbon_columns(self, windows: dict[str, np.ndarray], x0: float, x1: float,
                       columns: int = RIBBON_COLUMNS) -> np.ndarray:
        """uint8 ``[2, columns]`` LUT indices over ``[x0, x1)`` s: row 0 truth, row 1 decision
        (class index, 254 no gesture, 255 no window / truth unknown)."""
        out = np.full((2, columns), _EMPTY, dtype=np.uint8)
        t0, t1 = windows["t0"], windows["t1"]
        if not len(t1):
            return out
        centres = x0 + (np.arange(columns) + 0.5) * (x1 - x0) / columns
        i = np.searchsorted(t1, centres, side="right")  # first window ending after the column's time
        inside = i < len(t1)
        inside[inside] &= t0[i[inside]] <= centres[inside]
        rows = i[inside]
        out[1, inside] = self._lut_indices(windows["label"][rows])
        truth = windows["truth"][rows]
        out[0, inside] = np.where(truth == UNKNOWN, _EMPTY, self._lut_indices(truth))
        return out

    def _lut_indices(self, labels: np.ndarray) -> np.ndarray:
        labels = labels.astype(np.int64)
        valid = (labels >= 0) & (labels < min(len(self.classes), _NO_GESTURE_INDEX))
        return np.where(valid, labels, _NO_GESTURE_INDEX).astype(np.uint8)

    def _show_accuracy(self) -> None:
        figures = self.timeline.accuracy()
        self.accuracy = figures
        if not figures["known"]:
            text = "ground truth: not known for this source"
        else:
            parts = []
            if figures["accuracy"] is not None:
                parts.append(f"online accuracy {figures['accuracy'] * 100:.0f}% "
                             f"({figures['right']}/{figures['gesture_windows']} gesture windows)")
            else:
                parts.append("online accuracy — (no gesture window yet)")
            if figures["false_alarm"] is not None:
                parts.append(f"false alarms {figures['false_alarm'] * 100:.0f}% "
                             f"({figures['false_alarms']}/{figures['rest_windows']} rest windows)")
            text = " · ".join(parts)
        if self.accuracy_label.text() != text:
            self.accuracy_label.setText(text)
