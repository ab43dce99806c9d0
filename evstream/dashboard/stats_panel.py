"""Stats panel: event rate over time, timing, losses, energy, display rate and per-topic ages.

Event rates (ON and OFF, from every ``stats`` message, kept by the
:class:`~evstream.dashboard.timeline.Timeline`) are plotted by two long-lived PlotDataItems
against the recording's time (sensor seconds since its start), the same axis as the decision
ribbon, to which the window links this plot: panning one pans both, a pause freezes both and
the whole run stays after the end. Losses come from two places: windows the pipeline dropped
(``dropped_windows``) and messages this dashboard missed (sequence gaps counted by the reader).
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtWidgets

from evstream.dashboard.reader import TopicStats
from evstream.dashboard.style import panel_title
from evstream.dashboard.timeline import Timeline
from evstream.protocol import TOPICS, Message

__all__ = ["StatsPanel"]


class StatsPanel(QtWidgets.QWidget):
    """Event-rate plot and a table of figures."""

    def __init__(self, timeline: Timeline | None = None, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.timeline = timeline if timeline is not None else Timeline()
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(panel_title("Stream"))
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=True, y=False)
        self.plot.hideButtons()
        self.plot.addLegend(offset=(6, 6))
        self.plot.getAxis("left").setLabel("events/s")
        self.plot.getAxis("bottom").setLabel("recording time (s)")
        # A long run holds many points: draw only the visible ones, decimated to the pixels (peaks kept).
        self.plot.setClipToView(True)
        self.plot.setDownsampling(auto=True, mode="peak")
        self.on_curve = self.plot.plot(pen=pg.mkPen("#ffbe28", width=1.5), name="ON")
        self.off_curve = self.plot.plot(pen=pg.mkPen("#3c96ff", width=1.5), name="OFF")
        layout.addWidget(self.plot, 1)

        grid = QtWidgets.QGridLayout()
        self.fields: dict[str, QtWidgets.QLabel] = {}
        names = ("connection", "inference", "lag", "dropped", "energy", "display", "windows", "ages")
        for i, name in enumerate(names):
            caption = QtWidgets.QLabel(name)
            caption.setStyleSheet("color: #8a8a96;")
            value = QtWidgets.QLabel("—")
            value.setWordWrap(True)
            grid.addWidget(caption, i, 0)
            grid.addWidget(value, i, 1)
            self.fields[name] = value
        grid.setColumnStretch(1, 1)
        layout.addLayout(grid)

        self._plotted_version = -1
        self.last_stats: dict = {}
        self.last_energy_uj: float | None = None
        self._texts: dict[str, str] = {}
        self._top = 0.0

    def add_stats(self, message: Message, now: float | None = None) -> None:
        """Take the figures of the latest ``stats`` message (the rates reach the plot through the timeline)."""
        data = message.data
        for key in ("event_rate", "events_on", "events_off"):
            value = data.get(key, 0)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"stats field {key!r} must be a number, got {type(value).__name__}")
        self.last_stats = dict(data)

    def add_prediction(self, message: Message) -> None:
        """Take the energy figure of a ``pred`` message."""
        energy = message.data.get("energy_uj")
        if isinstance(energy, (int, float)):
            self.last_energy_uj = float(energy)

    def rates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window ends (s since the recording's start), ON rates, OFF rates (ev/s), oldest first."""
        rates = self.timeline.rates()
        return rates["t1"], rates["on"], rates["off"]

    def draw(self, topics: dict[str, TopicStats], connection: str, fps: float, now: float | None = None, unusable: int = 0) -> None:
        """Redraw the plot and the figures (``unusable``: messages that did not decode or could not be shown)."""
        now = time.monotonic() if now is None else now
        if self.timeline.version != self._plotted_version:
            self._plotted_version = self.timeline.version
            times, on, off = self.rates()
            self.on_curve.setData(times, on)
            self.off_curve.setData(times, off)
        times, on, off = self.on_curve.xData, self.on_curve.yData, self.off_curve.yData
        if times is not None and len(times):
            (x0, x1), _ = self.plot.getViewBox().viewRange()
            keep = (times >= x0) & (times <= x1)
            if keep.any():
                # Rates start at zero: an autoscaled axis would magnify a steady rate's jitter.
                top = float(max(on[keep].max(), off[keep].max()))
                if not self._top or top > self._top or top < 0.5 * self._top:
                    self._top = max(top * 1.2, 1.0)
                    self.plot.setYRange(0, self._top, padding=0)
        s = self.last_stats
        gaps = sum(t.gaps for t in topics.values())
        lags = [t.lag_ms for t in topics.values() if t.lag_ms is not None]
        pipeline_lag = s.get("lag_ms")
        transport = min(lags) if lags else None
        lag_text = "—"
        if transport is not None:
            lag_text = f"transport {transport:.1f} ms"
            if isinstance(pipeline_lag, (int, float)):
                lag_text = f"{pipeline_lag + transport:.1f} ms end to end (pipeline {pipeline_lag:.1f} + transport {transport:.1f})"
        ages = []
        for topic in TOPICS:
            stat = topics.get(topic)
            if stat is None or stat.last_monotonic is None:
                ages.append(f"{topic} —")
            else:
                ages.append(f"{topic} {now - stat.last_monotonic:.1f}s")
        infer = s.get("infer_ms")
        self._set("connection", connection)
        self._set("inference", f"{infer:.1f} ms / window" if isinstance(infer, (int, float)) else "—")
        self._set("lag", lag_text)
        dropped = f"{s.get('dropped_windows', 0)} windows (pipeline) · {gaps} messages (gaps) · {s.get('resets', 0)} resets"
        self._set("dropped", dropped + (f" · {unusable} unusable" if unusable else ""))
        # The classifier's estimate: models/energy.py's default accounting, named so it is not
        # read as the papers' (which charge the first conv densely at every step).
        energy = self.last_energy_uj
        self._set("energy", "—" if energy is None else f"{energy:.2f} µJ / window (strict, first conv by events)")
        self._set("display", f"{fps:.0f} FPS")
        realtime = s.get("realtime_factor")
        window_ms = s.get("window_ms")
        windows = [str(s.get("windows", 0))]
        if isinstance(window_ms, (int, float)):
            windows.append(f"{window_ms:g} ms each")
        if isinstance(realtime, (int, float)):
            windows.append(f"×{realtime:.2f} real time")
        self._set("windows", " · ".join(windows))
        self._set("ages", "  ".join(ages))

    def _set(self, name: str, text: str) -> None:
        if self._texts.get(name) != text:
            self._texts[name] = text
            self.fields[name].setText(text)

    def text(self, name: str) -> str:
        """The figure shown under ``name``."""
        return self.fields[name].text()
