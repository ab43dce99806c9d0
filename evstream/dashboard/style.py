"""Shared look of the dashboard: pyqtgraph options, lookup tables, fonts, small widget helpers."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6 import QtGui, QtWidgets

__all__ = [
    "configure_pyqtgraph",
    "colormap_lut",
    "colorbar",
    "nice_top",
    "alpha_lut",
    "class_colors",
    "image_view",
    "panel_title",
    "BACKGROUND",
    "dark_palette",
    "flexible_label",
]

BACKGROUND = "#15161c"


def configure_pyqtgraph() -> None:
    """Row-major images ([H, W], first axis = y), dark background, antialiased curves."""
    pg.setConfigOptions(imageAxisOrder="row-major", background=BACKGROUND, foreground="#d8d8e0", antialias=False)


def dark_palette() -> QtGui.QPalette:
    """A dark palette matching the plots' background (checkbox and slider indicators stay visible)."""
    palette = QtGui.QPalette()
    role, group = QtGui.QPalette.ColorRole, QtGui.QPalette.ColorGroup
    colors = {
        role.Window: BACKGROUND,
        role.WindowText: "#d8d8e0",
        role.Base: "#202129",
        role.AlternateBase: "#262731",
        role.Text: "#e0e0e8",
        role.Button: "#2a2b35",
        role.ButtonText: "#e0e0e8",
        role.Highlight: "#3c78d8",
        role.HighlightedText: "#ffffff",
        role.ToolTipBase: "#2a2b35",
        role.ToolTipText: "#e0e0e8",
        role.PlaceholderText: "#70707c",
    }
    for r, color in colors.items():
        palette.setColor(r, QtGui.QColor(color))
    for r in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(group.Disabled, r, QtGui.QColor("#6a6a74"))
    return palette


def colormap_lut(name: str = "viridis") -> np.ndarray:
    """A 256-entry uint8 [256, 3] lookup table of one of pyqtgraph's bundled colour maps."""
    return pg.colormap.get(name).getLookupTable(0.0, 1.0, 256, alpha=False)


def colorbar(name: str, label: str | None = None, width: int = 10) -> pg.ColorBarItem:
    """A fixed (non-interactive) vertical colour bar of colour map ``name``, values on its right axis, ``label`` as tooltip."""
    bar = pg.ColorBarItem(values=(0.0, 1.0), width=width, colorMap=pg.colormap.get(name), interactive=False,
                          rounding=1e-6, colorMapMenu=False)
    bar.axis.setStyle(tickFont=_small_font(), tickLength=3)
    bar.axis.setWidth(30)
    if label:
        bar.setToolTip(label)
    return bar


def nice_top(value: float) -> float:
    """The smallest of 1, 1.5, 2, 3, 5, 7 × 10^k at or above ``value`` (> 0): a map's full scale that
    changes only when its maximum moves by a step, so its colour bar is not redrawn at every window."""
    if not value > 0 or not np.isfinite(value):
        return 1e-6
    exponent = 10.0 ** np.floor(np.log10(value))
    for step in (1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0):
        if step * exponent >= value * (1 - 1e-9):
            return float(step * exponent)
    return float(10 * exponent)


def _small_font() -> QtGui.QFont:
    font = QtGui.QFont()
    font.setPointSizeF(7.0)
    return font


def alpha_lut(name: str = "inferno", max_alpha: int = 190) -> np.ndarray:
    """uint8 [256, 4]: colour map with alpha rising from 0 (transparent low values) to ``max_alpha``."""
    lut = np.zeros((256, 4), dtype=np.uint8)
    lut[:, :3] = colormap_lut(name)
    lut[:, 3] = (np.linspace(0.0, 1.0, 256) ** 1.5 * max_alpha).astype(np.uint8)
    return lut


def class_colors(n: int) -> list[QtGui.QColor]:
    """``n`` distinct colours for class indices."""
    return [pg.intColor(i, hues=max(n, 1), values=1, maxValue=230, minValue=150, sat=200) for i in range(n)]


def image_view(layout: pg.GraphicsLayoutWidget, row: int = 0, col: int = 0, title: str | None = None) -> tuple[pg.ViewBox, pg.ImageItem]:
    """A locked-aspect, y-down view box holding one long-lived ImageItem."""
    if title is not None:
        layout.addLabel(title, row=row, col=col, size="9pt")
        row += 1
    view = layout.addViewBox(row=row, col=col, lockAspect=True, invertY=True, enableMouse=False)
    view.setMenuEnabled(False)
    item = pg.ImageItem()
    view.addItem(item)
    return view, item


def panel_title(text: str) -> QtWidgets.QLabel:
    """A bold caption for the top of a panel."""
    label = QtWidgets.QLabel(text)
    font = label.font()
    font.setBold(True)
    font.setPointSizeF(font.pointSizeF() * 1.1)
    label.setFont(font)
    return label


def flexible_label(text: str = "") -> QtWidgets.QLabel:
    """A label that never widens its panel: long text is cut at the panel's edge."""
    label = QtWidgets.QLabel(text)
    label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
    label.setMinimumWidth(20)
    return label
