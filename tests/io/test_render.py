"""``python main.py render``: a playable video (read back with cv2.VideoCapture) whose frame count
matches duration x fps, frames drawn in the dashboard's ON/OFF colours where the events are,
decisions burned in from the real model path, bad input one line naming the file."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from evstream.cli import main
from evstream.dashboard.accumulate import diverging_lut
from evstream.events import EVENT_DTYPE, SensorSize
from evstream.io import write_aedat4
from tests.helpers import random_events

SENSOR = SensorSize(64, 48)
ROOT = Path(__file__).resolve().parents[2]


def _read_video(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened()
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


@pytest.fixture
def recording(tmp_path):
    events = random_events(8_000, SENSOR, t0=1_000_000, duration_us=1_000_000, seed=5)
    path = tmp_path / "rec.aedat4"
    write_aedat4(path, events, SENSOR, packet_events=700)
    return path, events


@pytest.mark.parametrize(("view", "fps", "extra"), [("window", 30.0, []), ("decay", 25.0, ["--span-ms", "60"]),
                                                   ("window", 20.0, ["--start", "0.2", "--end", "0.7"])])
def test_video_is_playable_and_has_duration_times_fps_frames(recording, tmp_path, view, fps, extra):
    path, events = recording
    out = tmp_path / "rec.mp4"
    assert main(["render", str(path), str(out), "--view", view, "--fps", str(fps), "--scale", "4", *extra]) == 0
    frames, got_fps = _read_video(out)
    if "--end" in extra:
        duration_us = 500_000
    else:
        duration_us = int(events["t"][-1]) + 1 - int(events["t"][0])
    assert len(frames) == math.ceil(duration_us * fps / 1e6)
    assert got_fps == pytest.approx(fps, rel=1e-3)
    assert frames[0].shape == (SENSOR.height * 4, SENSOR.width * 4, 3)


def test_frames_show_events_where_they_are_in_the_dashboard_colours(tmp_path):
    """ON events in the left half, OFF in the right half, nothing below row 24: the video shows amber
    left, blue right, background below (colours as the dashboard's lookup table, within codec loss)."""
    n = 20_000
    rng = np.random.default_rng(0)
    ev = np.zeros(n, dtype=EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(0, 400_000, n))
    ev["p"] = rng.integers(0, 2, n)
    ev["x"] = np.where(ev["p"] == 1, rng.integers(0, 32, n), rng.integers(32, 64, n))
    ev["y"] = rng.integers(0, 24, n)
    src = tmp_path / "halves.aedat4"
    write_aedat4(src, ev, SENSOR)
    out = tmp_path / "halves.mp4"
    assert main(["render", str(src), str(out), "--fps", "10", "--scale", "4"]) == 0
    frames, _ = _read_video(out)
    assert len(frames) == 4
    lut = diverging_lut().astype(float)[:, ::-1]  # BGR
    frame = frames[2].astype(float)
    on = frame[40:90, 10:120].reshape(-1, 3).mean(0)
    off = frame[40:90, 140:250].reshape(-1, 3).mean(0)
    empty = frame[110:180, :].reshape(-1, 3).mean(0)
    assert np.abs(empty - lut[128]).max() < 12
    assert on[2] > on[0] + 60  # red above blue: amber
    assert off[0] > off[2] + 60  # blue above red
    assert np.linalg.norm(on - lut[255]) < np.linalg.norm(on - lut[0])


def test_decisions_are_burned_in(recording, tmp_path):
    """The model path runs over the events (an untrained variant: its decisions mean nothing) and the
    frames with a decision differ from the same frames rendered without."""
    path, _ = recording
    plain, burned = tmp_path / "plain.mp4", tmp_path / "burned.mp4"
    assert main(["render", str(path), str(plain), "--fps", "10", "--scale", "4"]) == 0
    assert main(["render", str(path), str(burned), "--fps", "10", "--scale", "4", "--decisions",
                 "--model", "spikformer_2_64", "--device", "cpu", "--step-ms", "50", "--window-steps", "2",
                 "--threshold", "0.01", "--hysteresis", "0"]) == 0
    a, _ = _read_video(plain)
    b, _ = _read_video(burned)
    assert len(a) == len(b) == 10
    bottom = slice(SENSOR.height * 4 - 30, SENSOR.height * 4)

    def light(frame):  # near-white pixels: the text colour; ON is amber, OFF blue, so events are never all three
        return int(np.count_nonzero(frame[bottom].min(axis=2) > 170))

    # Every frame ends after the first 100 ms window has closed, so each carries its decision's text.
    for plain_frame, burned_frame in zip(a, b, strict=True):
        assert light(burned_frame) > 100 > 5 * light(plain_frame) + 20


def _cli(*args):
    return subprocess.run([sys.executable, "main.py", *map(str, args)], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)


@pytest.mark.parametrize(("name", "data", "extra", "needle"), [
    ("missing.aedat4", None, [], "missing.aedat4"),
    ("empty.aedat4", b"", [], "empty.aedat4"),
    ("labels.csv", b"class,startTime_usec,endTime_usec\n1,0,10\n", [], "labels.csv"),
    ("rec", "recording", ["--fps", "0"], "--fps"),
    ("rec", "recording", ["--start", "100"], "rec.aedat4"),
])
def test_bad_input_is_one_line_and_exit_2(recording, tmp_path, name, data, extra, needle):
    if data == "recording":
        src = recording[0]
    else:
        src = tmp_path / name
        if data is not None:
            src.write_bytes(data)
    proc = _cli("render", src, tmp_path / "out.mp4", *extra)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("\r")]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in proc.stderr
