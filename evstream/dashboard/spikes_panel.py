"""Spike maps panel: one firing-rate image per layer (SPS stages, blocks), its colour bar and figures.

``spikes`` carries a float32 [h, w] firing-rate map per layer (named in ``layers``): spikes per
neuron per step at each position, averaged over the layer's channels and the window's steps, so
the map's mean is the layer's **firing rate** (spikes per neuron per step), the headline figure
of each title. ``sparsity`` (per layer) is the fraction of map positions where no neuron of any
channel fired during the whole window: shown second, as "positions silent", since it is not a
firing-rate statistic. The grid of images is rebuilt only when the list of layers changes;
otherwise each long-lived ImageItem gets new data with explicit levels from 0 to the map's own
maximum, rounded up to 1, 1.5, 2, 3, 5 or 7 × 10^k (firing rates of a sparse network are often
a few percent, so a fixed 0…1 scale would show black squares; the rounding keeps the colour bar
from being redrawn at every window), and the colour bar beside it shows that scale in spikes per
neuron per step.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtWidgets

from evstream.dashboard.style import colorbar, colormap_lut, flexible_label, image_view, nice_top, panel_title
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
        self.firing_rate: dict[str, float] = {}
        self.colorbars: dict[str, pg.ColorBarItem] = {}

    def _rebuild(self, layers: tuple[str, ...]) -> None:
        self.graphics.clear()
        self.images.clear()
        self._titles.clear()
        self.colorbars.clear()
        self.layers = layers
        columns = max(1, math.ceil(math.sqrt(len(layers))))
        for i, name in enumerate(layers):
            row, col = divmod(i, columns)
            title = self.graphics.addLabel(name, row=2 * row, col=2 * col, colspan=2, size="8pt")
            _, item = image_view(self.graphics, row=2 * row + 1, col=2 * col)
            bar = colorbar("magma", "spikes/neuron/step")
            self.graphics.addItem(bar, row=2 * row + 1, col=2 * col + 1)
            bar.setImageItem(item)
            self.images[name] = item
            self.colorbars[name] = bar
            self._titles[name] = title

    def show_spikes(self, message: Message) -> None:
        """Draw one ``spikes`` message."""
        layers = tuple(str(name) for name in message.data.get("layers", ()) if str(name) in message.arrays)
        if layers != self.layers:
            self._rebuild(layers)
        sparsity = message.data.get("sparsity") or {}
        self.sparsity = {}
        self.firing_rate = {}
        for name in layers:
            rate = np.asarray(message.arrays[name], dtype=np.float32)
            if rate.ndim != 2:
                rate = rate.reshape(rate.shape[0], -1) if rate.ndim > 2 else rate.reshape(1, -1)
            top = nice_top(float(rate.max()) if rate.size else 0.0)
            self.images[name].setImage(np.ascontiguousarray(rate), autoLevels=False, levels=(0.0, top))
            if self.colorbars[name].levels() != (0.0, top):
                self.colorbars[name].setLevels((0.0, top))
            self.firing_rate[name] = float(rate.mean()) if rate.size else 0.0
            title = f"{name}<br>firing {self.firing_rate[name]:.3f}"
            silent = sparsity.get(name)
            if isinstance(silent, (int, float)) and not isinstance(silent, bool):
                self.sparsity[name] = float(silent)
                title += f" · {silent * 100:.0f}% pos. silent"
            if self._titles[name].text != title:  # a LabelItem re-lays out its HTML on every setText
                self._titles[name].setText(title, size="8pt")
        text = f"{len(layers)} layers"
        if self.firing_rate:
            mean = sum(self.firing_rate.values()) / len(self.firing_rate)
            text += f" · firing rate {mean:.3f} spikes/neuron/step (layer mean)"
        if self.sparsity:
            silent = sum(self.sparsity.values()) / len(self.sparsity)
            text += f" · {silent * 100:.1f}% of map positions silent all window"
        self.summary.setText(text)
        self.summary.setToolTip("firing rate: spikes per neuron per time step, the mean of each map;\n"
                                "positions silent: map positions where no channel spiked during the window")
