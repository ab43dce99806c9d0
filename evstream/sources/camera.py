"""Live iniVation cameras (DVXplorer, DAVIS, DVS128) through dv-processing 2.0.

dv-processing is an optional dependency (the ``camera`` extra) and is imported only when a camera
is opened. In 2.0 the capture class is gone: cameras are found with ``dv.io.camera.discover()``
and opened with ``dv.io.camera.open(descriptor)``; ``open()`` with no camera raises
``IndexError`` (``../shared/reference/formats.md`` §7.1), so this module looks the camera up among
the discovered descriptors itself and turns every failure into one :class:`SourceError` line.

Live Prophesee cameras (``camera:prophesee`` or ``camera:prophesee:<serial>``) go through OpenEB's
Python bindings (``metavision_core``, ``metavision_hal``; the Metavision SDK ships the same). They
are not installable with pip: where they are not importable, opening one is one line saying what to
install (:data:`PROPHESEE_INSTALL_HINT`). Recorded Prophesee files (RAW EVT 2.0 / 2.1 / 3.0, DAT)
need none of this: ``--replay`` reads them directly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from evstream.errors import SourceError
from evstream.events import EVENT_DTYPE, EventChunk, SensorSize, as_events
from evstream.sources.base import EventSource

__all__ = ["CameraSource", "PropheseeCameraSource", "CAMERA_FAMILIES", "PROPHESEE_INSTALL_HINT", "open_camera"]

# Spec word -> dv.io.camera.CameraModel names it accepts (any generation of the family).
CAMERA_FAMILIES: dict[str, tuple[str, ...]] = {
    "dvxplorer": ("DVXPLORER", "DVXPLORER_M", "DVXPLORER_S", "DVXPLORER_GEN2"),
    "davis346": ("DAVIS", "DAVIS_GEN2"),
    "davis": ("DAVIS", "DAVIS_GEN2"),
    "dvs128": ("DVS128",),
}

_INSTALL_HINT = "install the camera extra: pip install -e '.[camera]'"

PROPHESEE_INSTALL_HINT = (
    "live Prophesee cameras need OpenEB's Python bindings (metavision_core, metavision_hal), which pip cannot "
    "install: build OpenEB from https://github.com/prophesee-ai/openeb (or install the Metavision SDK) and put its "
    "python packages on PYTHONPATH; recorded .raw/.dat files replay without it (--replay FILE)"
)


def open_camera(which: str, **options) -> EventSource:
    """The live camera ``which`` names: ``prophesee[:<serial>]`` through OpenEB, else an iniVation camera.

    Raises:
        SourceError: the bindings are missing (one line saying what to install) or no such camera.
    """
    key = str(which).strip()
    if key.lower() == "prophesee" or key.lower().startswith("prophesee:"):
        return PropheseeCameraSource(key.partition(":")[2], **options)
    return CameraSource(key, **options)


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
        self.camera_name = self.name  # written by --record into the info node's source
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


class PropheseeCameraSource(EventSource):
    """Events from a live Prophesee camera through OpenEB's ``metavision_core`` EventsIterator.

    Args:
        serial: camera serial number (``""`` = the first camera found).
        delta_t_us: sensor time per batch the driver hands over, µs.

    Chunks cover ``[previous t_end, batch end)`` on the camera's µs clock. Not tested against a
    camera here: no machine this project runs on has OpenEB or a Prophesee sensor.

    Raises:
        SourceError: the bindings are not importable (:data:`PROPHESEE_INSTALL_HINT`) or the camera
            cannot be opened.
    """

    live = True

    def __init__(self, serial: str = "", *, delta_t_us: int = 10_000) -> None:
        label = f"camera:prophesee{':' + serial if serial else ''}"
        try:
            from metavision_core.event_io import EventsIterator
        except ImportError:
            raise SourceError(f"{label}: {PROPHESEE_INSTALL_HINT}") from None
        try:
            self._iterator = EventsIterator(input_path=serial, delta_t=int(delta_t_us))
            height, width = self._iterator.get_size()
        except Exception as err:  # noqa: BLE001 - the HAL reports a missing camera as various types
            raise SourceError(f"{label}: cannot open the camera: {_reason(err)}") from None
        self.name = f"Prophesee {serial}".strip()
        self.camera_name = self.name
        self.sensor_size = SensorSize(int(width), int(height))
        self._closed = False

    def __iter__(self) -> Iterator[EventChunk]:
        t_end: int | None = None
        for batch in self._iterator:
            if self._closed:
                return
            if batch is None or not len(batch):
                continue
            events = np.empty(len(batch), dtype=EVENT_DTYPE)
            events["t"], events["x"], events["y"], events["p"] = batch["t"], batch["x"], batch["y"], batch["p"]
            t_start = int(events["t"][0]) if t_end is None else t_end
            t_end = max(t_start, int(events["t"][-1]) + 1)
            yield EventChunk(events, t_start, t_end)

    def close(self) -> None:
        """Stop iterating and let the driver go (idempotent)."""
        self._closed = True
        self._iterator = None
