"""Live iniVation cameras (DVXplorer, DAVIS, DVS128) through dv-processing 2.0.

dv-processing is an optional dependency (the ``camera`` extra) and is imported only when a camera
is opened. In 2.0 the capture class is gone: cameras are found with ``dv.io.camera.discover()``
and opened with ``dv.io.camera.open(descriptor)``; ``open()`` with no camera raises
``IndexError`` (``../shared/reference/formats.md`` §7.1), so this module looks the camera up among
the discovered descriptors itself and turns every failure into one :class:`SourceError` line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from evstream.errors import SourceError
from evstream.events import EventChunk, SensorSize, as_events
from evstream.sources.base import EventSource

__all__ = ["CameraSource", "CAMERA_FAMILIES"]

# Spec word -> dv.io.camera.CameraModel names it accepts (any generation of the family).
CAMERA_FAMILIES: dict[str, tuple[str, ...]] = {
    "dvxplorer": ("DVXPLORER", "DVXPLORER_M", "DVXPLORER_S", "DVXPLORER_GEN2"),
    "davis346": ("DAVIS", "DAVIS_GEN2"),
    "davis": ("DAVIS", "DAVIS_GEN2"),
    "dvs128": ("DVS128",),
}

_INSTALL_HINT = "install the camera extra: pip install -e '.[camera]'"


def _import_dv():
    try:
        import dv_processing
    except ImportError as err:
        raise SourceError(f"camera sources need dv-processing, which is not importable ({err}); {_INSTALL_HINT}") from None
    return dv_processing


def _model_name(descriptor) -> str:
    model = descriptor.cameraModel
    return getattr(model, "name", str(model).rsplit(".", 1)[-1])


def _describe(descriptors) -> str:
    if not descriptors:
        return "no camera is connected"
    return "connected: " + ", ".join(f"{_model_name(d)} {d.serialNumber}" for d in descriptors)


def _reason(err: Exception) -> str:
    """One line out of a dv-processing exception (its text carries a source location and a stack trace)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if "Error:" in line:
            return line.split("Error:", 1)[1].strip()
    return lines[0] if lines else type(err).__name__


class CameraSource(EventSource):
    """Events from a connected iniVation camera, chunk by chunk as the driver delivers them.

    Args:
        which: ``dvxplorer``, ``davis346`` (any DAVIS), ``dvs128``, or a serial number
            (e.g. ``DXA00093``); the first connected camera of the family is taken.
        poll_s: pause (s) between polls while the driver has no new batch.
        sleep: sleep function (``time.sleep``), a parameter for tests.

    Chunks cover ``[previous t_end, last event t + 1)`` in the camera's µs clock (Unix time as
    dv-processing reports it). When the scene is still no chunks arrive; the pipeline's binner
    closes time steps on the wall clock then.

    Raises:
        SourceError: dv-processing missing, no such camera (the message lists what is connected),
            or the camera failed to open.
    """

    live = True

    def __init__(self, which: str, *, poll_s: float = 0.001, sleep: Callable[[float], None] = time.sleep) -> None:
        self.which = str(which)
        self._poll_s = float(poll_s)
        self._sleep = sleep
        self._camera = None
        dv = _import_dv()
        try:
            descriptors = list(dv.io.camera.discover())
        except Exception as err:  # noqa: BLE001 - driver/libusb failures surface as various types
            raise SourceError(f"camera:{self.which}: cannot list cameras: {_reason(err)}") from None
        descriptor = self._pick(descriptors)
        try:
            self._camera = dv.io.camera.open(descriptor)
        except (IndexError, RuntimeError) as err:
            raise SourceError(
                f"camera:{self.which}: cannot open {_model_name(descriptor)} {descriptor.serialNumber}: {_reason(err)}"
            ) from None
        self.name = str(self._camera.getCameraName())
        width, height = self._camera.getEventResolution()
        self.sensor_size = SensorSize(int(width), int(height))

    def _pick(self, descriptors):
        key = self.which.strip().lower()
        if key in CAMERA_FAMILIES:
            matches = [d for d in descriptors if _model_name(d) in CAMERA_FAMILIES[key]]
            wanted = f"no {self.which} camera found"
        else:
            matches = [d for d in descriptors if str(d.serialNumber).lower() == key]
            wanted = (
                f"no camera with serial number {self.which!r} "
                f"(camera specs: {', '.join(sorted(CAMERA_FAMILIES))} or a serial number)"
            )
        if not matches:
            raise SourceError(f"camera:{self.which}: {wanted}; {_describe(descriptors)}")
        return matches[0]

    def __iter__(self) -> Iterator[EventChunk]:
        """Yield chunks until :meth:`close`; raise SourceError when the camera stops running."""
        t_end: int | None = None
        while True:
            camera = self._camera
            if camera is None:
                return
            try:
                batch = camera.getNextEventBatch()
                running = camera.isRunning()
            except RuntimeError as err:
                if self._camera is None:
                    return
                raise SourceError(f"camera {self.name} disconnected: {_reason(err)}") from None
            if batch is None or batch.isEmpty():
                if not running:
                    if self._camera is None:
                        return
                    raise SourceError(f"camera {self.name} disconnected")
                self._sleep(self._poll_s)
                continue
            events = as_events(np.asarray(batch.numpy()), name=f"camera {self.name}")
            t_start = int(events["t"][0]) if t_end is None else t_end
            t_end = max(t_start, int(events["t"][-1]) + 1)
            yield EventChunk(events, t_start, t_end)

    def close(self) -> None:
        """Stop iterating and release the device (dropping the last reference closes it). Idempotent."""
        self._camera = None
