"""Events panel: the ON/OFF event image at sensor resolution, with its accumulation settings.

The socket thread accumulates ``frame`` messages (:class:`EventAccumulator`); this panel renders
the result into one long-lived ImageItem with a diverging lookup table when it changed. An
optional overlay shows the attention each SSA token receives, stretched over the sensor (the
model sees the whole sensor resized to its input, so token cells map onto sensor rectangles);
moving the mouse over it selects the token under the pointer (``pointer_moved``), and the
overlay then shows that token's row: the attention it pays.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from evstream.dashboard.accumulate import MODES, EventAccumulator, diverging_lut
from evstream.dashboard.style import alpha_lut, flexible_label, image_view, panel_title

__all__ = ["EventsPanel", "SPANS_MS"]

SPANS_MS = (10, 33, 100, 300, 1000)


class EventsPanel(QtWidgets.QWidget):
    """Event image + view and span selectors + attention overlay toggle.

    ``pointer_moved(fx, fy)``: the mouse over the overlay, as fractions of the image's width and
    height; ``(-1, -1)`` when it leaves.
    """

    pointer_moved = QtCore.pyqtSignal(float, float)

    def __init__(self, accumulator: EventAccumulator, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.accumulator = accumulator
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)

        header = QtWidgets.QHBoxLayout()
        header.addWidget(panel_title("Events"))
        self.info = flexible_label("no frame yet")
        header.addWidget(self.info, 1)
        self.mode = QtWidgets.QComboBox()
        self.mode.addItems(MODES)
        self.mode.setCurrentText(accumulator.mode)
        self.mode.setToolTip("window: sum over the span; decay: exponential decay; surface: time surface")
        header.addWidget(self.mode)
        self.span = QtWidgets.QComboBox()
        for ms in SPANS_MS:
            self.span.addItem(f"{ms} ms", ms * 1000)
        index = self.span.findData(accumulator.span_us)
        self.span.setCurrentIndex(index if index >= 0 else SPANS_MS.index(100))
        self.span.setToolTip("accumulation span (window) or time constant (decay, surface)")
        header.addWidget(self.span)
        self.overlay_box = QtWidgets.QCheckBox("attention")
        self.overlay_box.setToolTip("overlay the attention each token receives (SSA, head average)")
        header.addWidget(self.overlay_box)
        layout.addLayout(header)

        self.graphics = pg.GraphicsLayoutWidget()
        self.view, self.image = image_view(self.graphics)
        self.image.setLookupTable(diverging_lut())
        self.overlay = pg.ImageItem()
        self.overlay.setLookupTable(alpha_lut("inferno", 150))
        self.overlay.setZValue(10)
        self.overlay.setVisible(False)
        self.view.addItem(self.overlay)
        layout.addWidget(self.graphics, 1)

        self.mode.currentTextChanged.connect(self._settings_changed)
        self.span.currentIndexChanged.connect(self._settings_changed)
        self.overlay_box.toggled.connect(self.overlay.setVisible)
        self._shape: tuple[int, int] | None = None
        self._inside = False
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)

    def _settings_changed(self) -> None:
        self.accumulator.configure(mode=self.mode.currentText(), span_us=int(self.span.currentData()))

    def draw(self) -> bool:
        """Redraw if a frame arrived or a setting changed; returns whether the image was updated."""
        if not self.accumulator.take_dirty():
            return False
        picture = self.accumulator.render()
        if picture is None:
            return False
        self.image.setImage(picture, autoLevels=False, levels=(0, 255))
        if picture.shape != self._shape:
            self._shape = picture.shape
            self.view.setRange(QtCore.QRectF(0, 0, picture.shape[1], picture.shape[0]), padding=0.01)
            self._place_overlay()
        now = self.accumulator.now_us
        self.info.setText(
            f"{picture.shape[1]}×{picture.shape[0]} · {self.accumulator.mode} {self.accumulator.span_us / 1000:g} ms"
            + (f" · t {now / 1e6:.2f} s" if now is not None else "")
        )
        return True

    def set_attention(self, received: np.ndarray) -> None:
        """Attention received per token, float32 [gh, gw], scaled to [0, 1] by the caller."""
        self.overlay.setImage(np.ascontiguousarray(received, dtype=np.float32), autoLevels=False, levels=(0.0, 1.0))
        self._place_overlay()

    def _mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        if self._shape is None or not self.overlay.isVisible():
            return
        point = self.view.mapSceneToView(scene_pos)
        fx, fy = point.x() / self._shape[1], point.y() / self._shape[0]
        inside = self.view.sceneBoundingRect().contains(scene_pos) and 0 <= fx < 1 and 0 <= fy < 1
        if inside:
            self.pointer_moved.emit(fx, fy)
        elif self._inside:
            self.pointer_moved.emit(-1.0, -1.0)
        self._inside = inside

    def _place_overlay(self) -> None:
        if self._shape is not None and self.overlay.image is not None:
            self.overlay.setRect(QtCore.QRectF(0, 0, self._shape[1], self._shape[0]))
