"""``python main.py info``: figures computed independently from the events in the test."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from evstream.events import SensorSize
from evstream.io.aedat3 import write_aedat3
from evstream.io.aedat4 import write_aedat4
from tests.helpers import random_events


def _info(repo_root, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "main.py", "info", *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True)


def test_info_json_figures(tmp_path, repo_root):
    sensor = SensorSize(64, 48)
    events = random_events(30_000, sensor, t0=2_000_000, duration_us=400_000, seed=8)
    burst = random_events(5_000, sensor, t0=2_100_000, duration_us=5_000, seed=9)
    events = np.sort(np.concatenate([events, burst]), order="t")
    events["t"][100] = events["t"][99] - 50  # one step backwards, kept
    path = tmp_path / "r.aedat4"
    write_aedat4(path, events, sensor, "zstd", camera_name="cam7", packet_events=4_000)
    done = _info(repo_root, path, "--json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    t = events["t"]
    duration = int(t.max() - t.min())
    peak = np.bincount(t // 10_000 - t.min() // 10_000).max() / 0.01
    assert facts["events"] == len(events)
    assert facts["sensor"] == [64, 48] and facts["camera"] == "cam7" and facts["compression"] == "ZSTD"
    assert facts["duration_s"] == duration / 1e6
    assert abs(facts["mean_rate_ev_s"] - len(events) / (duration / 1e6)) < 1e-6
    assert facts["peak_rate_ev_s"] == peak
    assert facts["on_fraction"] == events["p"].mean()
    assert facts["backward_steps"] == 1
    assert facts["streams"] == [{"id": 0, "type": "EVTS", "name": "events", "size": [64, 48], "source": "cam7",
                                 "declared": True, "packets": 9, "elements": len(events),
                                 "t_first": int(t.min()), "t_last": int(t.max())}]


def test_info_text_on_real_sample_and_aedat3(tmp_path, repo_root, shared_data):
    done = _info(repo_root, shared_data / "davis346_aestream_sample.aedat4")
    assert done.returncode == 0
    assert "117,667" in done.stdout and "DAVIS346_00000104" in done.stdout and "346x260" in done.stdout
    assert "3 TRIG triggers" in done.stdout
    path = tmp_path / "g.aedat"
    write_aedat3(path, random_events(1_000, seed=2))
    done = _info(repo_root, path)
    assert done.returncode == 0 and "AEDAT 3.1" in done.stdout and "128x128" in done.stdout


def test_info_damaged_file_prints_prefix_then_one_error_line(tmp_path, repo_root, shared_data):
    data = (shared_data / "davis346_aestream_sample.aedat4").read_bytes()
    path = tmp_path / "cut.aedat4"
    path.write_bytes(data[:500_000])
    done = _info(repo_root, path, "--json")
    assert done.returncode == 2
    facts = json.loads(done.stdout)
    assert facts["complete"] is False and 0 < facts["events"] < 117_667
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: byte ")
    done = _info(repo_root, tmp_path / "missing.aedat4")
    assert done.returncode == 2 and done.stderr.strip() == f"error: {tmp_path / 'missing.aedat4'}: no such file"


def test_info_packet_spanning_a_huge_time_range_counts_rates_without_allocating_by_span(tmp_path, repo_root):
    # reproducer (issue 17, finding 4): one packet from 0 to 2**50 µs made np.bincount ask for PiB
    from evstream.events import make_events

    events = make_events(t=[0, 1, 2**50], x=[1, 2, 3], y=[1, 2, 3], p=[1, 0, 1])
    path = tmp_path / "span.aedat4"
    write_aedat4(path, events, SensorSize(8, 8))
    done = _info(repo_root, path, "--json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["events"] == 3 and facts["peak_rate_ev_s"] == 2 / 0.01
    assert facts["duration_s"] == 2**50 / 1e6


def test_info_garbage_file_is_one_line_and_exit_2(tmp_path, repo_root):
    path = tmp_path / "junk.aedat4"
    path.write_bytes(b"#!AER-DAT4.0\r\n" + bytes(range(256)) * 4)
    done = _info(repo_root, path)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "junk.aedat4" in done.stderr


def test_info_on_a_label_file_says_what_it_is_and_finds_its_recording(tmp_path, repo_root):
    write_aedat4(tmp_path / "user07_lab.aedat4", random_events(100, SensorSize(128, 128), seed=1), SensorSize(128, 128))
    labels = tmp_path / "user07_lab_labels.csv"
    labels.write_text("class,startTime_usec,endTime_usec\n1,100,5000\n4,6000,9000\n4,9500,9900\n")
    done = _info(repo_root, labels, "--json")
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["format"] == "DVS128 Gesture label file" and facts["segments"] == 3
    assert facts["classes"] == ["hand clapping", "right arm clockwise"]
    assert (facts["first_t_us"], facts["last_t_us"]) == (100, 9900)
    assert facts["recordings"] == [str(tmp_path / "user07_lab.aedat4")]
    text = _info(repo_root, labels).stdout
    assert "labels, not events - pass the recording it labels" in text and "user07_lab.aedat4" in text


def test_replaying_a_label_file_is_one_line_naming_it(tmp_path):
    import pytest

    from evstream.errors import EventFileError
    from evstream.io import detect_format

    labels = tmp_path / "x_labels.csv"
    labels.write_text("class,startTime_usec,endTime_usec\n1,100,5000\n")
    with pytest.raises(EventFileError, match="label file .* not a recording: pass the recording it labels"):
        detect_format(labels)
