"""Events panel: the ON/OFF event image at sensor resolution, with its accumulation settings.

The socket thread accumulates ``frame`` messages (:class:`EventAccumulator`); this panel renders
the result into one long-lived ImageItem with a diverging lookup table when it changed. An
optional overlay shows the attention each SSA token receives, over the part of the sensor the
model input covers (``status.geometry``: the crop, or the letterboxed region with its bands), so
token cells map onto sensor rectangles; moving the mouse over it selects the token under the
pointer (``pointer_moved``), and the overlay then shows that token's row: the attention it pays.

A dashed rectangle marks the sensor pixels whose events reach the model (``geometry.view``):
with ``crop`` the events outside it are dropped, with ``letterbox`` it is the whole region.
The header's time is the recording's (seconds since its start); the absolute sensor time is in
its tooltip.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from evstream.dashboard.accumulate import MODES, EventAccumulator, diverging_lut
from evstream.dashboard.style import alpha_lut, flexible_label, image_view, panel_title
from evstream.dashboard.timeline import Timeline

__all__ = ["EventsPanel", "SPANS_MS", "input_rect"]

SPANS_MS = (10, 33, 100, 300, 1000)


def input_rect(geometry: dict | None) -> tuple[float, float, float, float] | None:
    """The sensor area ``(x, y, w, h)`` the model input covers, from ``status.geometry``: the view
    (``geometry.view``) scaled to fit the input (``geometry.input``), so a letterbox's bands
    extend it; None when the geometry is missing or malformed."""
    if not isinstance(geometry, dict):
        return None
    view, size = geometry.get("view"), geometry.get("input")
    if not (isinstance(view, list) and len(view) == 4 and all(isinstance(v, int) for v in view) and view[2] > 0 and view[3] > 0):
        return None
    x, y, w, h = view
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        return (float(x), float(y), float(w), float(h))
    scale = min(size[0] / w, size[1] / h)
    iw, ih = size[0] / scale, size[1] / scale
    return (x + w / 2 - iw / 2, y + h / 2 - ih / 2, iw, ih)


class EventsPanel(QtWidgets.QWidget):
    """Event image + view and span selectors + attention overlay toggle.

    ``pointer_moved(fx, fy)``: the mouse over the overlay, as fractions of the image's width and
    height; ``(-1, -1)`` when it leaves.
    """

    pointer_moved = QtCore.pyqtSignal(float, float)

    def __init__(self, accumulator: EventAccumulator, timeline: Timeline | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.accumulator = accumulator
        self.timeline = timeline if timeline is not None else Timeline()
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
        self.crop_rect = QtWidgets.QGraphicsRectItem(0, 0, 1, 1)
        self.crop_rect.setPen(pg.mkPen("#e8e8f0", width=1.5, style=QtCore.Qt.PenStyle.DashLine, cosmetic=True))
        self.crop_rect.setZValue(15)
        self.crop_rect.setVisible(False)
        self.view.addItem(self.crop_rect)
        self.crop_text = pg.TextItem("", color="#e8e8f0", anchor=(0, 1), fill=(20, 20, 28, 190))
        self.crop_text.setZValue(16)
        self.crop_text.setVisible(False)
        self.view.addItem(self.crop_text)
        layout.addWidget(self.graphics, 1)

        self.mode.currentTextChanged.connect(self._settings_changed)
        self.span.currentIndexChanged.connect(self._settings_changed)
        self.overlay_box.toggled.connect(self.overlay.setVisible)
        self._shape: tuple[int, int] | None = None
        self._inside = False
        self.geometry: dict | None = None
        self.view_rect: tuple[int, int, int, int] | None = None  # sensor pixels the model sees
        self.input_rect: tuple[float, float, float, float] | None = None  # sensor area the model input covers
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
        relative = None if now is None else self.timeline.relative_s(now)
        self.info.setText(
            (f"t {relative:.2f} s · " if relative is not None else "")
            + f"{picture.shape[1]}×{picture.shape[0]} · {self.accumulator.mode} {self.accumulator.span_us / 1000:g} ms"
        )
        if now is not None:
            self.info.setToolTip(f"t: seconds since the recording's start; sensor clock {now} µs (absolute {now / 1e6:.6f} s)")
        return True

    def set_geometry(self, geometry: dict | None) -> None:
        """Show the sensor rectangle the model sees (``status.geometry``); None or malformed: hide it."""
        if geometry == self.geometry:
            return
        self.geometry = geometry
        view = geometry.get("view") if isinstance(geometry, dict) else None
        size = geometry.get("input") if isinstance(geometry, dict) else None
        if not (isinstance(view, list) and len(view) == 4 and all(isinstance(v, int) for v in view) and view[2] > 0 and view[3] > 0):
            self.view_rect = self.input_rect = None
            self.crop_rect.setVisible(False)
            self.crop_text.setVisible(False)
            self._place_overlay()
            return
        x, y, w, h = view
        self.view_rect = (x, y, w, h)
        self.crop_rect.setRect(QtCore.QRectF(x, y, w, h))
        self.crop_rect.setVisible(True)
        mode = str(geometry.get("mode", "?"))
        text = f"model sees {w}×{h} ({mode})"
        if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
            text += f" → {size[0]}×{size[1]}"
        self.input_rect = input_rect(geometry)
        self.crop_text.setText(text)
        self.crop_text.setPos(x + 2, y + h - 2)
        self.crop_text.setVisible(True)
        self.crop_rect.setToolTip(text)
        self._place_overlay()

    def _overlay_rect(self) -> tuple[float, float, float, float] | None:
        if self.input_rect is not None:
            return self.input_rect
        if self._shape is None:
            return None
        return (0.0, 0.0, float(self._shape[1]), float(self._shape[0]))

    def set_attention(self, received: np.ndarray) -> None:
        """Attention received per token, float32 [gh, gw], scaled to [0, 1] by the caller."""
        self.overlay.setImage(np.ascontiguousarray(received, dtype=np.float32), autoLevels=False, levels=(0.0, 1.0))
        self._place_overlay()

    def _mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        if self._shape is None or not self.overlay.isVisible():
            return
        point = self.view.mapSceneToView(scene_pos)
        ox, oy, ow, oh = self._overlay_rect()
        fx, fy = (point.x() - ox) / ow, (point.y() - oy) / oh
        inside = self.view.sceneBoundingRect().contains(scene_pos) and 0 <= fx < 1 and 0 <= fy < 1
        if inside:
            self.pointer_moved.emit(fx, fy)
        elif self._inside:
            self.pointer_moved.emit(-1.0, -1.0)
        self._inside = inside

    def _place_overlay(self) -> None:
        rect = self._overlay_rect()
        if rect is not None and self.overlay.image is not None:
            self.overlay.setRect(QtCore.QRectF(*rect))
