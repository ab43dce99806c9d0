"""WebcamSource: the real no-camera error, and real OpenCV capture of a video file through the emulator."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from evstream.errors import ConfigError, SourceError
from evstream.events import SensorSize
from evstream.sources import open_source
from evstream.sources.webcam import WebcamSource

cv2 = pytest.importorskip("cv2")


def test_missing_camera_is_one_line_source_error():
    with pytest.raises(SourceError) as info:
        open_source("webcam:99")
    message = str(info.value)
    assert "webcam:99" in message and "\n" not in message


def test_bad_webcam_spec_and_fps():
    with pytest.raises(SourceError, match="webcam index"):
        open_source("webcam:front")
    with pytest.raises(ConfigError, match="fps"):
        WebcamSource(99, fps=0)


@pytest.fixture()
def moving_square(tmp_path):
    """A real MJPG video: a bright square moving right by 4 px per frame over a dark background."""
    path = tmp_path / "square.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (160, 120))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MJPG")
    for i in range(15):
        frame = np.full((120, 160, 3), 30, np.uint8)
        frame[40:80, 20 + 4 * i:50 + 4 * i] = 230
        writer.write(frame)
    writer.release()
    return path


def test_video_frames_become_events_on_the_moving_edges(moving_square):
    clock = itertools.count(5.0, 1 / 30).__next__  # frame times 33,333 µs apart
    with WebcamSource(moving_square, clock=clock, shot_noise_rate_hz=0.0, leak_rate_hz=0.0) as src:
        assert src.sensor_size == SensorSize(160, 120) and src.live
        chunks = list(src)
    assert len(chunks) == 14  # the first frame only sets the reference
    assert [c.t_start for c in chunks[1:]] == [c.t_end for c in chunks[:-1]]
    for i, chunk in enumerate(chunks, start=1):
        ev = chunk.events
        assert np.all(np.diff(ev["t"]) >= 0)
        assert ev["t"].min() >= chunk.t_start and ev["t"].max() < chunk.t_end
        assert abs(chunk.t_end - 1 - round(i * 1e6 / 30)) <= 1
        # Events on the square's rows; ON at its leading (right) edge, OFF at its trailing edge.
        # Allow a few from MJPEG block noise.
        on, off = ev[ev["p"] == 1], ev[ev["p"] == 0]
        assert np.mean((ev["y"] >= 38) & (ev["y"] < 82)) > 0.95
        right = 50 + 4 * i
        assert np.mean(np.abs(on["x"] - right) <= 6) > 0.9
        assert np.mean(np.abs(off["x"] - (right - 30)) <= 6) > 0.9


def test_resized_output(moving_square):
    clock = itertools.count(0.0, 0.02).__next__
    with WebcamSource(moving_square, sensor_size=SensorSize(80, 60), clock=clock) as src:
        events = np.concatenate([c.events for c in src])
    assert src.sensor_size == SensorSize(80, 60)
    assert events["x"].max() < 80 and events["y"].max() < 60 and len(events) > 100
