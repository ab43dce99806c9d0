"""Where sensor pixels land in the model's frame: region of interest, crop or letterbox, downsample, flips.

:class:`Geometry` builds one lookup table per axis (sensor pixel -> model pixel, ``-1`` dropped),
widened for the kernels of :mod:`evstream._kernels` so every int16 coordinate has an entry;
:func:`density_scale` matches event counts per model pixel between two geometries. Used by the
one-shot binning (:mod:`evstream.binning.frames`), the online :class:`~evstream.binning.Binner`
and the training data (``models.data``), so all three map pixels identically.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from evstream import _kernels as K
from evstream.errors import ConfigError
from evstream.events import SensorSize

__all__ = ["Geometry", "density_scale"]


def _sensor(size: SensorSize | tuple[int, int], name: str) -> SensorSize:
    if isinstance(size, SensorSize):
        return size
    try:
        width, height = (int(v) for v in size)
        return SensorSize(width, height)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: expected positive (width, height), got {size!r}") from None


class Geometry:
    """How sensor pixels map to model pixels; every kept event lands in exactly one output pixel.

    Order: region of interest (``roi``) → fit the output aspect (``mode``) → downsample
    (``downsample``) → flips (on the output, so a flipped frame is exactly the mirror image).

    ``mode``:
        ``"crop"``: keep the centred part of the region that has the output's aspect; events
        outside it are dropped (counted as outside the geometry). Chooses resolution over view.
        ``"letterbox"``: scale the whole region into the output, centred, with empty bands; no
        event is dropped. Chooses view over resolution.

    ``downsample``:
        ``"area"``: ``o = floor(u * S / L)`` for a region of ``L`` pixels shown on ``S`` output
        pixels: any ratio (640×480 → 128×128 crops 480×480 and maps 15 sensor pixels to 4);
        count preserving because floor maps each input pixel to one output pixel.
        ``"integer"``: ``o = floor(u / k)`` with an integer factor ``k`` — every output pixel
        sums exactly ``k × k`` sensor pixels (uniform weight), but the view is smaller or the
        bands wider: with crop ``k = min(L_w // W, L_h // H)`` (640×480 → 128×128 with k = 3
        shows the central 384×384 pixels); with letterbox ``k = ceil(max(L_w / W, L_h / H))``.

    Args:
        sensor_size: sensor pixels (``SensorSize`` or ``(width, height)``).
        out_size: model pixels ``(width, height)``; ``None`` = the sensor (or roi) size.
        mode: ``"crop"`` or ``"letterbox"``.
        downsample: ``"area"`` or ``"integer"``.
        flip_x: mirror the output left-right.
        flip_y: mirror the output top-bottom.
        roi: ``(x, y, w, h)`` sensor rectangle to use; ``None`` = whole sensor.

    Attributes:
        lut_x: ``int32 [sensor width]``: output column per sensor column, ``-1`` = dropped.
        lut_y: ``int32 [sensor height]``: output row per sensor row, ``-1`` = dropped.

    Raises:
        ConfigError: a bad size, mode, roi outside the sensor, or an integer factor below 1.
    """

    def __init__(
        self,
        sensor_size: SensorSize | tuple[int, int],
        out_size: tuple[int, int] | SensorSize | None = None,
        mode: Literal["crop", "letterbox"] = "crop",
        downsample: Literal["area", "integer"] = "area",
        flip_x: bool = False,
        flip_y: bool = False,
        roi: tuple[int, int, int, int] | None = None,
    ) -> None:
        self.sensor_size = _sensor(sensor_size, "sensor_size")
        if mode not in ("crop", "letterbox"):
            raise ConfigError(f"mode: geometry mode is 'crop' or 'letterbox', got {mode!r}")
        if downsample not in ("area", "integer"):
            raise ConfigError(f"downsample: 'area' or 'integer', got {downsample!r}")
        if roi is None:
            roi = (0, 0, self.sensor_size.width, self.sensor_size.height)
        rx, ry, rw, rh = (int(v) for v in roi)
        if rw <= 0 or rh <= 0 or rx < 0 or ry < 0 or rx + rw > self.sensor_size.width or ry + rh > self.sensor_size.height:
            raise ConfigError(f"roi: {roi!r} is not inside the {self.sensor_size} sensor")
        self.roi = (rx, ry, rw, rh)
        self.out_size = SensorSize(rw, rh) if out_size is None else _sensor(out_size, "out_size")
        self.mode = mode
        self.downsample = downsample
        self.flip_x = bool(flip_x)
        self.flip_y = bool(flip_y)
        (sx, off_x, den_x, num_x), (sy, off_y, den_y, num_y) = self._fit(rw, rh)
        self.lut_x = self._axis(self.sensor_size.width, rx, rw, sx, off_x, den_x, num_x, self.out_size.width, self.flip_x)
        self.lut_y = self._axis(self.sensor_size.height, ry, rh, sy, off_y, den_y, num_y, self.out_size.height, self.flip_y)
        self._wide_x = self._widen(self.lut_x)
        self._wide_y = self._widen(self.lut_y)

    def _fit(self, rw: int, rh: int) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """Per axis ``(skip, pad, den, num)``: ``o = pad + (u - skip) * num // den`` for ``0 <= u - skip < span``.

        ``skip`` = region pixels cut off before the kept span (crop), ``pad`` = empty output
        pixels before the image (letterbox).
        """
        ow, oh = self.out_size.width, self.out_size.height
        if self.downsample == "area":
            if self.mode == "crop":
                if rw * oh >= rh * ow:  # region wider than the output: keep full height
                    cw, ch = min(rw, max(1, round(rh * ow / oh))), rh
                else:
                    cw, ch = rw, min(rh, max(1, round(rw * oh / ow)))
                return ((rw - cw) // 2, 0, cw, ow), ((rh - ch) // 2, 0, ch, oh)
            if rw * oh >= rh * ow:
                sw, sh = ow, min(oh, max(1, round(rh * ow / rw)))
            else:
                sw, sh = min(ow, max(1, round(rw * oh / rh))), oh
            return (0, (ow - sw) // 2, rw, sw), (0, (oh - sh) // 2, rh, sh)
        if self.mode == "crop":
            k = min(rw // ow, rh // oh)
            if k < 1:
                raise ConfigError(
                    f"downsample: 'integer' crop needs out_size {self.out_size} <= roi {rw}x{rh}; use 'area' or 'letterbox'"
                )
            return ((rw - ow * k) // 2, 0, k, 1), ((rh - oh * k) // 2, 0, k, 1)
        k = max(-(-rw // ow), -(-rh // oh))
        sw, sh = -(-rw // k), -(-rh // k)
        return (0, (ow - sw) // 2, k, 1), (0, (oh - sh) // 2, k, 1)

    @staticmethod
    def _axis(n: int, r0: int, span: int, skip: int, pad: int, den: int, num: int, out: int, flip: bool) -> np.ndarray:
        lut = np.full(n, K.CROPPED, dtype=np.int32)
        u = np.arange(span, dtype=np.int64) - skip
        if num == 1:  # integer factor den; kept span = out * den (crop) or all (letterbox)
            inside = (u >= 0) & (u < (out - pad) * den)
        else:
            inside = (u >= 0) & (u < den)
        o = pad + np.where(inside, u, 0) * num // den
        o = np.where(inside & (o < out), o, K.CROPPED)
        if flip:
            o = np.where(o >= 0, out - 1 - o, K.CROPPED)
        lut[r0:r0 + span] = o
        lut.setflags(write=False)
        return lut

    @staticmethod
    def _widen(lut: np.ndarray) -> np.ndarray:
        """The kernels' table: one entry per int16 coordinate read as uint16, -2 off the sensor."""
        wide = np.full(K.WIDE, K.OFF_SENSOR, dtype=np.int32)
        wide[:lut.size] = lut
        wide.setflags(write=False)
        return wide

    def map(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output ``(column, row)`` of sensor pixels ``(x, y)``; ``-1`` where dropped or outside the sensor."""
        x = np.asarray(x, dtype=np.int64)
        y = np.asarray(y, dtype=np.int64)
        okx = (x >= 0) & (x < self.sensor_size.width)
        oky = (y >= 0) & (y < self.sensor_size.height)
        ox = np.where(okx, self.lut_x[np.where(okx, x, 0)], -1)
        oy = np.where(oky, self.lut_y[np.where(oky, y, 0)], -1)
        drop = (ox < 0) | (oy < 0)
        return np.where(drop, -1, ox), np.where(drop, -1, oy)

    @property
    def pixels_per_output(self) -> float:
        """Mean number of sensor pixels summed into one model pixel (kept columns per output
        column times kept rows per output row): 4.0 for 128×128 → 64×64, 56.25 for 640×480 →
        64×64 (crop). Event counts per model pixel grow with it (see :func:`density_scale`)."""
        kx, ky = self.lut_x[self.lut_x >= 0], self.lut_y[self.lut_y >= 0]
        if not len(kx) or not len(ky):
            return 1.0
        return (len(kx) / len(np.unique(kx))) * (len(ky) / len(np.unique(ky)))

    def __repr__(self) -> str:
        return (
            f"Geometry({self.sensor_size} -> {self.out_size}, mode={self.mode!r}, downsample={self.downsample!r}, "
            f"flip_x={self.flip_x}, flip_y={self.flip_y}, roi={self.roi})"
        )


def _as_geometry(geometry: Geometry | SensorSize | tuple[int, int]) -> Geometry:
    return geometry if isinstance(geometry, Geometry) else Geometry(geometry)


def density_scale(trained: Geometry, used: Geometry) -> float:
    """Factor that makes model-pixel counts of ``used`` look like those of ``trained``.

    A moving edge, or a still pixel's noise, makes about the same events per *sensor* pixel on any
    sensor, so the count in a model pixel grows with the sensor pixels summed into it: a 640×480
    sensor cropped to 480×480 and shown on 64×64 sums 56.25 pixels per model pixel, a DVS128 on
    64×64 sums 4, so the same gesture arrives 14× denser. Multiplying the frames by
    ``trained.pixels_per_output / used.pixels_per_output`` gives the network the densities it
    was trained on.
    """
    return float(trained.pixels_per_output / used.pixels_per_output)
