"""CameraSource: the real no-camera path of dv-processing, a missing dv-processing, and iteration
over a camera object that delivers real dv-processing EventStores (no camera is attached here)."""

from __future__ import annotations

import datetime
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from evstream.errors import SourceError
from evstream.events import EventChunk, as_events, concatenate
from evstream.sources import open_source

dv = pytest.importorskip("dv_processing")


@pytest.fixture()
def no_camera_connected():
    if list(dv.io.camera.discover()):
        pytest.skip("a real camera is connected; the no-camera path cannot be exercised")


@pytest.mark.parametrize("which", ["dvxplorer", "davis346", "dvs128"])
def test_no_camera_of_the_family_is_one_clear_line(no_camera_connected, which):
    with pytest.raises(SourceError) as info:
        open_source(f"camera:{which}")
    message = str(info.value)
    assert message == f"camera:{which}: no {which} camera found; no camera is connected"
    assert "\n" not in message


def test_unknown_serial_number_names_it_and_the_accepted_specs(no_camera_connected):
    with pytest.raises(SourceError) as info:
        open_source("camera:DXA99999")
    message = str(info.value)
    assert "'DXA99999'" in message and "dvxplorer" in message and "no camera is connected" in message
    assert "\n" not in message


def test_missing_dv_processing_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "dv_processing", None)
    with pytest.raises(SourceError) as info:
        open_source("camera:dvxplorer")
    assert "pip install -e '.[camera]'" in str(info.value)
    assert "\n" not in str(info.value)


class ScriptedCamera:
    """Mirrors the dv-processing camera methods CameraSource uses; delivers real EventStores."""

    def __init__(self, batches, name="DVXplorer_DXA00093", resolution=(640, 480)):
        self.batches = list(batches)
        self.name = name
        self.resolution = resolution
        self.polls = 0

    def getCameraName(self):  # noqa: N802
        return self.name

    def getEventResolution(self):  # noqa: N802
        return self.resolution

    def getNextEventBatch(self):  # noqa: N802
        self.polls += 1
        return self.batches.pop(0) if self.batches else None

    def isRunning(self):  # noqa: N802
        return bool(self.batches)


def store(t0, count, resolution=(640, 480), seed=0):
    return dv.data.generate.uniformEventsWithinTimeRange(t0, datetime.timedelta(microseconds=5_000), resolution, count, seed)


@pytest.fixture()
def fake_bus(monkeypatch):
    """Replace discovery and opening in the real dv-processing module with a scripted bus."""
    bus = SimpleNamespace(descriptors=[], camera=None, opened=[])

    def open_(descriptor):
        bus.opened.append(descriptor)
        return bus.camera

    monkeypatch.setattr(dv.io.camera, "discover", lambda: list(bus.descriptors))
    monkeypatch.setattr(dv.io.camera, "open", open_)
    return bus


def descriptor(model, serial):
    return SimpleNamespace(cameraModel=getattr(dv.io.camera.CameraModel, model), serialNumber=serial)


def test_chunks_carry_every_event_then_disconnect_is_reported(fake_bus):
    stores = [store(1_000_000 + 5_000 * k, 200 + k, seed=k) for k in range(4)]
    expected = concatenate(as_events(np.asarray(s.numpy())) for s in stores)
    batches = [stores[0], None, stores[1], stores[2], None, None, stores[3]]
    fake_bus.descriptors = [descriptor("DAVIS", "00000499"), descriptor("DVXPLORER", "DXA00093")]
    fake_bus.camera = ScriptedCamera(batches)
    sleeps = []
    source = open_source("camera:dvxplorer", sleep=sleeps.append)
    assert fake_bus.opened[0].serialNumber == "DXA00093"
    assert source.live and source.name == "DVXplorer_DXA00093"
    assert (source.sensor_size.width, source.sensor_size.height) == (640, 480)
    chunks: list[EventChunk] = []
    with pytest.raises(SourceError, match="^camera DVXplorer_DXA00093 disconnected$"):
        for chunk in source:
            chunks.append(chunk)
    got = concatenate(chunks)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert before.t_end == after.t_start
    for chunk in chunks:
        assert chunk.t_start <= chunk.events["t"][0] and chunk.events["t"][-1] < chunk.t_end
    assert len(sleeps) == 3  # one short sleep per empty poll, never a busy loop


def test_serial_number_picks_that_camera_and_wrong_family_lists_what_is_connected(fake_bus):
    fake_bus.descriptors = [descriptor("DAVIS", "00000499"), descriptor("DVXPLORER", "DXA00093")]
    fake_bus.camera = ScriptedCamera([store(0, 10, (346, 260))], name="DAVIS346_00000499", resolution=(346, 260))
    with open_source("camera:00000499") as source:
        assert fake_bus.opened[-1].serialNumber == "00000499"
        assert str(source.sensor_size) == "346x260"
    with pytest.raises(SourceError) as info:
        open_source("camera:dvs128")
    assert str(info.value) == "camera:dvs128: no dvs128 camera found; connected: DAVIS 00000499, DVXPLORER DXA00093"


def test_close_ends_iteration_without_error(fake_bus):
    fake_bus.descriptors = [descriptor("DVS128", "0042")]
    fake_bus.camera = ScriptedCamera([store(0, 10, (128, 128)), store(5_000, 10, (128, 128))], resolution=(128, 128))
    source = open_source("camera:dvs128")
    seen = []
    for chunk in source:
        seen.append(chunk)
        source.close()
    assert len(seen) == 1


def test_open_failure_is_one_line(fake_bus, monkeypatch):
    fake_bus.descriptors = [descriptor("DVXPLORER", "DXA00093")]

    def refuse(_descriptor):
        raise RuntimeError("/project/include/x.hpp(88): open()\nRuntimeError: device busy\nStacktrace:\n 0# 0x0")

    monkeypatch.setattr(dv.io.camera, "open", refuse)
    with pytest.raises(SourceError) as info:
        open_source("camera:dvxplorer")
    assert str(info.value) == "camera:dvxplorer: cannot open DVXPLORER DXA00093: device busy"


def test_driver_error_while_reading_is_a_disconnect(fake_bus):
    class Unplugged(ScriptedCamera):
        def getNextEventBatch(self):  # noqa: N802
            if self.batches:
                return self.batches.pop(0)
            raise RuntimeError("/project/x.hpp(1): read\nRuntimeError: libusb transfer failed\nStacktrace:\n 0# 0x0")

    fake_bus.descriptors = [descriptor("DVXPLORER", "DXA00093")]
    fake_bus.camera = Unplugged([store(0, 10)])
    chunks = []
    with pytest.raises(SourceError) as info:
        for chunk in open_source("camera:dvxplorer"):
            chunks.append(chunk)
    assert len(chunks) == 1
    assert str(info.value) == "camera DVXplorer_DXA00093 disconnected: libusb transfer failed"
