"""Spike maps panel: one firing-rate image per layer (SPS stages, blocks) and its sparsity.

``spikes`` carries a float32 [h, w] firing-rate map per layer (named in ``layers``) and the
fraction of silent neurons per layer (``sparsity``). The grid of images is rebuilt only when the
list of layers changes; otherwise each long-lived ImageItem gets new data with explicit levels
from 0 to the map's own maximum (firing rates of a sparse network are often a few percent, so a
fixed 0…1 scale would show black squares); the title carries the sparsity and that maximum.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtWidgets

from evstream.dashboard.style import colormap_lut, flexible_label, image_view, panel_title
from evstream.protocol import Message

__all__ = ["SpikesPanel"]


class SpikesPanel(QtWidgets.QWidget):
    """Grid of per-layer firing-rate maps."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        header = QtWidgets.QHBoxLayout()
        header.addWidget(panel_title("Spikes"))
        self.summary = flexible_label("no spike maps yet")
        header.addWidget(self.summary, 1)
        layout.addLayout(header)
        self.graphics = pg.GraphicsLayoutWidget()
        layout.addWidget(self.graphics, 1)
        self._lut = colormap_lut("magma")
        self.layers: tuple[str, ...] = ()
        self.images: dict[str, pg.ImageItem] = {}
        self._titles: dict[str, pg.LabelItem] = {}
        self.sparsity: dict[str, float] = {}

    def _rebuild(self, layers: tuple[str, ...]) -> None:
        self.graphics.clear()
        self.images.clear()
        self._titles.clear()
        self.layers = layers
        columns = max(1, math.ceil(math.sqrt(len(layers))))
        for i, name in enumerate(layers):
            row, col = divmod(i, columns)
            title = self.graphics.addLabel(name, row=2 * row, col=col, size="8pt")
            _, item = image_view(self.graphics, row=2 * row + 1, col=col)
            item.setLookupTable(self._lut)
            self.images[name] = item
            self._titles[name] = title

    def show_spikes(self, message: Message) -> None:
        """Draw one ``spikes`` message."""
        layers = tuple(str(name) for name in message.data.get("layers", ()) if str(name) in message.arrays)
        if layers != self.layers:
            self._rebuild(layers)
        sparsity = message.data.get("sparsity") or {}
        self.sparsity = {}
        for name in layers:
            rate = np.asarray(message.arrays[name], dtype=np.float32)
            if rate.ndim != 2:
                rate = rate.reshape(rate.shape[0], -1) if rate.ndim > 2 else rate.reshape(1, -1)
            top = float(rate.max()) if rate.size else 0.0
            self.images[name].setImage(np.ascontiguousarray(rate), autoLevels=False, levels=(0.0, max(top, 1e-6)))
            silent = sparsity.get(name)
            title = name
            if isinstance(silent, (int, float)):
                self.sparsity[name] = float(silent)
                title += f"<br>{silent * 100:.1f}% silent · max {top:.2f}"
            if self._titles[name].text != title:  # a LabelItem re-lays out its HTML on every setText
                self._titles[name].setText(title, size="8pt")
        if self.sparsity:
            mean = sum(self.sparsity.values()) / len(self.sparsity)
            self.summary.setText(f"{len(layers)} layers · mean sparsity {mean * 100:.1f}% silent")
        else:
            self.summary.setText(f"{len(layers)} layers")
