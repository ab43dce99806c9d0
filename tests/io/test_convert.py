"""``python main.py convert``: round trips (events equal after convert -> read), trims and crops
equal to the same selection done in numpy, other input formats, AEDAT 3.1 output, bad input
as one line naming the file."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from evstream.binning import Geometry
from evstream.cli import main
from evstream.commands.convert import convert
from evstream.events import SensorSize
from evstream.io import open_reader, read_events, write_aedat4
from tests.helpers import random_events

SENSOR = SensorSize(96, 64)


@pytest.fixture
def recording(tmp_path):
    events = random_events(30_000, SENSOR, t0=5_000_000, duration_us=3_000_000, seed=11)
    path = tmp_path / "rec.aedat4"
    write_aedat4(path, events, SENSOR, camera_name="DVXplorer_DXA00093", packet_events=2_000)
    return path, events


def test_aedat4_round_trip_is_event_equal_and_keeps_the_camera(recording, tmp_path):
    path, events = recording
    out = tmp_path / "copy.aedat4"
    assert main(["convert", str(path), str(out)]) == 0
    np.testing.assert_array_equal(read_events(out), events)
    with open_reader(out) as reader:
        assert reader.sensor_size == SENSOR and reader.camera_name == "DVXplorer_DXA00093"


def test_trim_equals_the_numpy_selection(recording, tmp_path):
    path, events = recording
    out = tmp_path / "part.aedat4"
    assert main(["convert", str(path), str(out), "--start", "0.75", "--end", "2.1"]) == 0
    rel = events["t"] - events["t"][0]
    np.testing.assert_array_equal(read_events(out), events[(rel >= 750_000) & (rel < 2_100_000)])


@pytest.mark.parametrize(
    ("roi", "size", "fit", "downsample"),
    [((10, 5, 50, 40), None, "crop", "area"), (None, (32, 32), "crop", "area"), ((0, 0, 96, 64), (24, 24), "letterbox", "area"),
     ((8, 0, 80, 64), (20, 16), "crop", "integer")],
)
def test_crop_and_downsample_equal_the_geometry_in_numpy(recording, tmp_path, roi, size, fit, downsample):
    path, events = recording
    out = tmp_path / "small.aedat4"
    args = ["convert", str(path), str(out), "--fit", fit, "--downsample", downsample, "--start", "0.5"]
    if roi:
        args += ["--roi", ",".join(map(str, roi))]
    if size:
        args += ["--size", f"{size[0]}x{size[1]}"]
    assert main(args) == 0
    g = Geometry(SENSOR, size, mode=fit, downsample=downsample, roi=roi)
    x, y = g.lut_x[events["x"]], g.lut_y[events["y"]]
    keep = (x >= 0) & (y >= 0) & (events["t"] - events["t"][0] >= 500_000)
    expected = events[keep].copy()
    expected["x"], expected["y"] = x[keep], y[keep]
    got = read_events(out)
    np.testing.assert_array_equal(got, expected)
    with open_reader(out) as reader:
        assert reader.sensor_size == g.out_size
    assert len(got) < len(events)


def test_aedat3_output_by_extension_reads_back_equal(tmp_path):
    sensor = SensorSize(128, 128)
    events = random_events(5_000, sensor, duration_us=1_000_000, seed=2)
    src = tmp_path / "rec.aedat4"
    write_aedat4(src, events, sensor, camera_name="DVS128")
    out = tmp_path / "rec.aedat"
    summary, error = convert(src, out)
    assert error is None and summary["format"] == "aedat3"
    with open(out, "rb") as f:
        assert f.read(12) == b"#!AER-DAT3.1"
    with open_reader(out) as reader:
        assert reader.sensor_size == sensor
        np.testing.assert_array_equal(reader.read(), events)


def test_other_formats_convert_to_aedat4(shared_data, tmp_path):
    for name in ("prophesee_gen3_evt2_faery_sample.raw", "prophesee_atis_ncars_tonic_sample.dat"):
        src = shared_data / name
        out = tmp_path / (name + ".aedat4")
        summary, error = convert(src, out)
        assert error is None
        with open_reader(src) as reader:
            expected, sensor = reader.read(), reader.sensor_size
        got = read_events(out)
        np.testing.assert_array_equal(got, expected)
        assert summary["events_out"] == len(expected) > 0
        with open_reader(out) as reader:
            assert reader.sensor_size == sensor


def test_streaming_keeps_one_packet_in_memory(recording, tmp_path, monkeypatch):
    """The converter never joins packets: every array handed to the writer is one packet's at most."""
    from evstream.io import aedat4

    path, events = recording
    sizes = []
    original = aedat4.Aedat4Writer.write

    def spy(self, ev):
        sizes.append(len(ev))
        return original(self, ev)

    monkeypatch.setattr(aedat4.Aedat4Writer, "write", spy)
    convert(path, tmp_path / "out.aedat4")
    assert len(sizes) == 15 and max(sizes) <= 2_000 and sum(sizes) == len(events)


def _cli(*args):
    return subprocess.run([sys.executable, "main.py", *map(str, args)], capture_output=True, text=True, timeout=300,
                          cwd=__import__("pathlib").Path(__file__).resolve().parents[2])


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "extra", "needle"),
    [
        (lambda d: d / "missing.aedat4", [], "missing.aedat4"),
        (lambda d: _file(d / "zero.aedat4", b""), [], "zero.aedat4"),
        (lambda d: _file(d / "junk.bin", b"hello world, not events"), [], "junk.bin"),
        (None, ["--roi", "90,0,50,50"], "roi"),
        (None, ["--size", "12"], "--size"),
        (None, ["--start", "2", "--end", "1"], "--end"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(recording, tmp_path, make, extra, needle):
    src = recording[0] if make is None else make(tmp_path)
    proc = _cli("convert", src, tmp_path / "out.aedat4", *extra)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr


def test_existing_output_is_not_replaced_without_force(recording, tmp_path):
    out = tmp_path / "out.aedat4"
    out.write_bytes(b"keep me")
    proc = _cli("convert", recording[0], out)
    assert proc.returncode == 2 and "--force" in proc.stderr and out.read_bytes() == b"keep me"
    assert main(["convert", str(recording[0]), str(out), "--force"]) == 0
    assert len(read_events(out)) == len(recording[1])


def test_damaged_input_converts_the_readable_prefix_then_reports(recording, tmp_path):
    path, events = recording
    cut = tmp_path / "cut.aedat4"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.aedat4"
    proc = _cli("convert", cut, out)
    assert proc.returncode == 2 and "cut.aedat4" in proc.stderr and "Traceback" not in proc.stderr
    got = read_events(out)  # finalised: readable
    assert 0 < len(got) < len(events)
    np.testing.assert_array_equal(got, events[: len(got)])
