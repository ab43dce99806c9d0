"""SSA attention panel: the token-by-token map of a chosen block and head, and its overlay.

Spikformer's spiking self-attention has no softmax: Q·Kᵀ is a real N×N token map per head
(Zhou et al., ICLR 2023, eq. 6; 64 tokens for a 128×128 input). ``attn`` carries ``qk``
float32 [blocks, heads, N, N] (mean over the window's steps), the token ``grid`` [gh, gw] and the
model-input ``frame`` float32 [H, W].

Left: the N×N map (row i = the attention token i pays), with its colour bar (Q·Kᵀ values: the
number of coinciding Q and K spikes, mean over the window's steps). Right: the input frame with
every token's index on its patch and, per token cell, the attention it receives (column mean),
or, while the mouse hovers a cell of the input (or a row of the map), that token's row: the
attention it pays to every other cell; the colour bar beside it gives those values. The line
below names the hovered token, the model-input pixels of its patch and, when ``status.geometry``
is known, the sensor pixels they come from. A row of zeros (no query spike met a key spike in
the window) is said to be one, not read as "attends most to token 0".
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtCore, QtWidgets

from evstream.dashboard.events_panel import input_rect
from evstream.dashboard.style import (
    alpha_lut,
    colorbar,
    colormap_lut,
    flexible_label,
    image_view,
    nice_top,
    panel_title,
)
from evstream.protocol import Message

__all__ = ["AttentionPanel", "HEAD_MEAN"]

HEAD_MEAN = -1


class AttentionPanel(QtWidgets.QWidget):
    """Block/head selectors, the N×N map and the overlay on the model input.

    ``overlay_changed`` fires whenever :attr:`overlay_values` changes (new message, another block
    or head, another token under the mouse), so the event image can show the same overlay.
    """

    overlay_changed = QtCore.pyqtSignal()

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        header = QtWidgets.QHBoxLayout()
        header.addWidget(panel_title("SSA attention"))
        self.info = flexible_label("no attention yet")
        header.addWidget(self.info, 1)
        header.addWidget(QtWidgets.QLabel("block"))
        self.block = QtWidgets.QSpinBox()
        self.block.setRange(0, 0)
        header.addWidget(self.block)
        header.addWidget(QtWidgets.QLabel("head"))
        self.head = QtWidgets.QComboBox()
        self.head.addItem("mean", HEAD_MEAN)
        header.addWidget(self.head)
        layout.addLayout(header)

        self.graphics = pg.GraphicsLayoutWidget()
        self.map_view, self.map_image = image_view(self.graphics, row=0, col=0, title="Q·Kᵀ  (row = attention a token pays)")
        self.map_bar = colorbar("viridis", "Q·Kᵀ: coinciding Q and K spikes, mean over the window's steps")
        self.graphics.addItem(self.map_bar, row=1, col=1)
        self.map_bar.setImageItem(self.map_image)
        self.row_marker = pg.InfiniteLine(angle=0, movable=False, pen=pg.mkPen("#ff4060", width=1.5))
        self.row_marker.setVisible(False)
        self.map_view.addItem(self.row_marker)
        self.input_view, self.input_image = image_view(self.graphics, row=0, col=2, title="input · attention per token")
        self.input_image.setLookupTable(colormap_lut("CET-L1"))
        self.overlay = pg.ImageItem()
        self.overlay.setLookupTable(alpha_lut("inferno", 200))
        self.overlay.setZValue(10)
        self.input_view.addItem(self.overlay)
        self.overlay_bar = colorbar("inferno", "attention shown on the input (received: column mean; hovered: the row)")
        self.graphics.addItem(self.overlay_bar, row=1, col=3)
        self.overlay_levels: tuple[float, float] = (0.0, 1.0)
        self.token_items: list[pg.TextItem] = []
        self.geometry: dict | None = None
        self.cell_marker = pg.QtWidgets.QGraphicsRectItem(0, 0, 1, 1)
        self.cell_marker.setPen(pg.mkPen("#40ff90", width=2, cosmetic=True))
        self.cell_marker.setZValue(20)
        self.cell_marker.setVisible(False)
        self.input_view.addItem(self.cell_marker)
        layout.addWidget(self.graphics, 1)
        self.token_label = flexible_label("hover the input to see what a token attends to")
        layout.addWidget(self.token_label)

        self.block.valueChanged.connect(self._redraw)
        self.head.currentIndexChanged.connect(self._redraw)
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)

        self.message: Message | None = None
        self.grid: tuple[int, int] = (1, 1)
        self.input_shape: tuple[int, int] = (1, 1)
        self.selected_token: int | None = None
        self.current_map: np.ndarray | None = None
        self.overlay_values: np.ndarray | None = None

    def show_attention(self, message: Message) -> None:
        """Take one ``attn`` message; draws the selected block and head."""
        qk = message.arrays.get("qk")
        if qk is None or qk.ndim != 4 or qk.shape[2] != qk.shape[3]:
            return
        blocks, heads, n, _ = qk.shape
        grid = message.data.get("grid") or []
        if len(grid) == 2 and int(grid[0]) * int(grid[1]) == n:
            self.grid = (int(grid[0]), int(grid[1]))
        else:
            side = int(round(np.sqrt(n)))
            self.grid = (side, n // side) if side * (n // side) == n else (1, n)
        if self.block.maximum() != blocks - 1:
            self.block.setMaximum(max(0, blocks - 1))
        if self.head.count() != heads + 1:
            self.head.blockSignals(True)
            self.head.clear()
            self.head.addItem("mean", HEAD_MEAN)
            for h in range(heads):
                self.head.addItem(str(h), h)
            self.head.blockSignals(False)
        self.message = message
        frame = message.arrays.get("frame")
        if frame is not None and frame.ndim == 2:
            if (int(frame.shape[0]), int(frame.shape[1])) != self.input_shape or len(self.token_items) != n:
                self.input_shape = (int(frame.shape[0]), int(frame.shape[1]))
                self._place_token_indices(n)
            top = float(frame.max()) if frame.size else 1.0
            self.input_image.setImage(np.ascontiguousarray(frame, dtype=np.float32), autoLevels=False, levels=(0.0, max(top, 1e-6)))
        silent = "" if np.any(qk) else " · all zero (no Q·K spikes)"
        self.info.setText(f"{blocks} blocks · {heads} heads · {n} tokens ({self.grid[0]}×{self.grid[1]}){silent}")
        self._redraw()

    def head_map(self) -> np.ndarray | None:
        """The selected N×N map (float32), or None before any ``attn`` message."""
        if self.message is None:
            return None
        qk = self.message.arrays["qk"]
        block = min(self.block.value(), qk.shape[0] - 1)
        head = self.head.currentData()
        if head is None or head == HEAD_MEAN or head >= qk.shape[1]:
            return qk[block].mean(axis=0, dtype=np.float32)
        return np.asarray(qk[block, head], dtype=np.float32)

    def _redraw(self) -> None:
        attention = self.head_map()
        if attention is None:
            return
        self.current_map = attention
        top = nice_top(float(attention.max()) if attention.size else 0.0)
        self.map_image.setImage(np.ascontiguousarray(attention), autoLevels=False, levels=(0.0, top))
        if self.map_bar.levels() != (0.0, top):
            self.map_bar.setLevels((0.0, top))
        self._draw_overlay()

    def set_geometry(self, geometry: dict | None) -> None:
        """``status.geometry``: lets the hover line name the sensor pixels of a token's patch."""
        if geometry != self.geometry:
            self.geometry = geometry
            self._draw_overlay()

    def _place_token_indices(self, n: int) -> None:
        """Write each token's index on its patch of the input (none beyond 256 tokens: unreadable)."""
        for item in self.token_items:
            self.input_view.removeItem(item)
        self.token_items = []
        gh, gw = self.grid
        if n > 256 or gh * gw != n:
            return
        cell_h, cell_w = self.input_shape[0] / gh, self.input_shape[1] / gw
        for token in range(n):
            r, c = divmod(token, gw)
            item = pg.TextItem(str(token), color=(120, 200, 255, 200), anchor=(0, 0))
            item.setPos(c * cell_w, r * cell_h)
            item.setZValue(15)
            item.setCacheMode(QtWidgets.QGraphicsItem.CacheMode.DeviceCoordinateCache)  # a pixmap, not text, per repaint
            self.input_view.addItem(item)
            self.token_items.append(item)

    def patch_text(self, token: int) -> str:
        """The model-input pixels of ``token``'s patch and, with a geometry, the sensor pixels behind them."""
        gh, gw = self.grid
        r, c = divmod(token, gw)
        cell_h, cell_w = self.input_shape[0] / gh, self.input_shape[1] / gw
        x0, x1, y0, y1 = c * cell_w, (c + 1) * cell_w, r * cell_h, (r + 1) * cell_h
        text = f"input x {x0:.0f}–{x1 - 1:.0f}, y {y0:.0f}–{y1 - 1:.0f}"
        rect = input_rect(self.geometry)
        if rect is not None:
            sx, sy = rect[2] / self.input_shape[1], rect[3] / self.input_shape[0]
            text += (f" = sensor x {rect[0] + x0 * sx:.0f}–{rect[0] + x1 * sx - 1:.0f}, "
                     f"y {rect[1] + y0 * sy:.0f}–{rect[1] + y1 * sy - 1:.0f}")
        return text

    def _draw_overlay(self) -> None:
        attention = self.current_map
        if attention is None:
            return
        token = self.selected_token
        if token is not None and token < attention.shape[0]:
            values = _unit(attention[token]).reshape(self.grid)
            raw_top = float(attention[token].max())
            self.row_marker.setPos(token + 0.5)
            self.row_marker.setVisible(True)
            gh, gw = self.grid
            r, c = divmod(token, gw)
            cell_h, cell_w = self.input_shape[0] / gh, self.input_shape[1] / gw
            self.cell_marker.setRect(c * cell_w, r * cell_h, cell_w, cell_h)
            self.cell_marker.setVisible(True)
            row = attention[token]
            where = f"token {token} (row {r}, col {c}; {self.patch_text(token)})"
            if raw_top <= 0:
                self.token_label.setText(f"{where} pays no attention in this window: its Q·Kᵀ row is all zero "
                                         "(none of its query spikes met a key spike)")
            else:
                self.token_label.setText(f"{where} pays most to token {int(row.argmax())}; "
                                         f"row sum {float(row.sum()):.1f}, max {raw_top:.2f}")
        else:
            received = attention.mean(axis=0)
            values = _unit(received).reshape(self.grid)
            raw_top = float(received.max()) if received.size else 0.0
            self.row_marker.setVisible(False)
            self.cell_marker.setVisible(False)
            self.token_label.setText("attention each token receives (column mean); hover a cell for its row")
        # The overlay is drawn scaled to its maximum; the bar gives the values behind the colours.
        if (0.0, max(raw_top, 1e-6)) != self.overlay_levels:
            self.overlay_levels = (0.0, max(raw_top, 1e-6))
            self.overlay_bar.setLevels(self.overlay_levels)
        self.overlay_values = values
        self.overlay.setImage(np.ascontiguousarray(values, dtype=np.float32), autoLevels=False, levels=(0.0, 1.0))
        self.overlay.setRect(QtCore.QRectF(0, 0, self.input_shape[1], self.input_shape[0]))
        self.overlay_changed.emit()

    def token_at(self, x: float, y: float) -> int | None:
        """Token index under input-frame coordinates ``(x, y)`` (pixels), or None outside."""
        h, w = self.input_shape
        if not (0 <= x < w and 0 <= y < h):
            return None
        gh, gw = self.grid
        return int(y * gh / h) * gw + int(x * gw / w)

    def select_at(self, fx: float, fy: float) -> None:
        """Select the token under a point given as fractions of the input's width and height (outside: none)."""
        if self.message is None:
            return
        h, w = self.input_shape
        self.select_token(self.token_at(fx * w, fy * h))

    def select_token(self, token: int | None) -> None:
        """Show token ``token``'s row (None: the attention each token receives)."""
        if token != self.selected_token:
            self.selected_token = token
            self._draw_overlay()

    def _mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        if self.message is None:
            return
        if self.input_view.sceneBoundingRect().contains(scene_pos):
            point = self.input_view.mapSceneToView(scene_pos)
            self.select_at(point.x() / self.input_shape[1], point.y() / self.input_shape[0])
            return
        if self.map_view.sceneBoundingRect().contains(scene_pos) and self.current_map is not None:
            point = self.map_view.mapSceneToView(scene_pos)
            n = self.current_map.shape[0]
            if 0 <= point.x() < n and 0 <= point.y() < n:
                self.select_token(int(point.y()))
                return
        self.select_token(None)


def _unit(values: np.ndarray) -> np.ndarray:
    """Scale non-negative values to [0, 1] by their maximum (all zero stays zero)."""
    values = np.asarray(values, dtype=np.float32)
    top = float(values.max()) if values.size else 0.0
    return values / top if top > 0 else np.zeros_like(values)
