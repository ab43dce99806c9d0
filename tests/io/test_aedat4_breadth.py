"""AEDAT 4.0 breadth: streams of unknown types and packets of undeclared streams are skipped and
counted (with and without a FileDataTable), ``info`` lists every stream with its packets, elements
and time range, the camera name and sensor travel through ``write_aedat4`` and ``--record``, and
what we write opens in dv-processing as a camera recording with every field intact."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from evstream.cli import main
from evstream.events import SensorSize, concatenate
from evstream.io import codec, open_reader, read_events, write_aedat4
from evstream.io.aedat4 import MAGIC, Aedat4Reader, encode_event_packet
from evstream.io.flatbuf import DataTableEntry, encode_file_data_table, encode_io_header
from tests.helpers import random_events

SENSOR = SensorSize(80, 60)

_XML = """<dv version="2.0"><node name="outInfo" path="/outInfo/">
<node name="0" path="/outInfo/0/"><attr key="originalOutputName" type="string">events</attr>
<attr key="typeIdentifier" type="string">EVTS</attr>
<node name="info" path="/outInfo/0/info/"><attr key="sizeX" type="int">80</attr><attr key="sizeY" type="int">60</attr>
<attr key="source" type="string">DVXplorer_TEST</attr></node></node>
<node name="4" path="/outInfo/4/"><attr key="originalOutputName" type="string">mystery</attr>
<attr key="typeIdentifier" type="string">XYZW</attr></node>
</node></dv>"""


def _hand_built(path, events, *, table: bool, code: int = 1):
    """Event packets of stream 0 interleaved with packets of the declared unknown-type stream 4
    (``XYZW``) and of stream 9, which the info node does not declare."""
    header = encode_io_header(code, _XML)
    out = bytearray(MAGIC + struct.pack("<I", len(header)) + header)
    entries = []
    parts = np.array_split(events, 5)
    for i, part in enumerate(parts):
        for stream_id, payload, n, t0, t1 in (
            (4, codec.compress(code, b"\x08\x00\x00\x00" + b"XYZW" + bytes(range(i + 3))), 1, 0, 0),
            (0, encode_event_packet(code, part), len(part), int(part["t"][0]), int(part["t"][-1])),
            (9, codec.compress(code, bytes(17 + i)), 2, 5, 6),
        ):
            entries.append(DataTableEntry(len(out) + 8, stream_id, len(payload), n, t0, t1))
            out += struct.pack("<ii", stream_id, len(payload)) + payload
    if table:
        position = len(out)
        out += codec.compress(code, encode_file_data_table(entries))
        start = len(MAGIC) + 4
        fixed = encode_io_header(code, _XML, position)
        out[start:start + len(fixed)] = fixed
    path.write_bytes(bytes(out))
    return path


@pytest.mark.parametrize("table", [True, False])
def test_unknown_stream_types_and_undeclared_packets_are_skipped_and_counted(tmp_path, table):
    events = random_events(6_000, SENSOR, t0=10_000, seed=1)
    path = _hand_built(tmp_path / "mixed.aedat4", events, table=table)
    np.testing.assert_array_equal(read_events(path), events)
    with Aedat4Reader(path) as reader:
        assert (reader.data_table is not None) == table
        np.testing.assert_array_equal(concatenate(list(reader.iter_packets())), events)
        assert reader.undeclared_packets == 5
        summary = {row["id"]: row for row in reader.stream_summary()}
        assert reader.undeclared_packets == 5
    assert summary[0]["packets"] == 5 and summary[0]["elements"] == len(events)
    assert (summary[0]["t_first"], summary[0]["t_last"]) == (int(events["t"][0]), int(events["t"][-1]))
    assert summary[4] == {"id": 4, "type": "XYZW", "name": "mystery", "declared": True, "packets": 5,
                          "elements": None, "t_first": None, "t_last": None}
    assert summary[9]["declared"] is False and summary[9]["packets"] == 5 and summary[9]["elements"] is None


def test_info_lists_every_stream_with_counts_and_time_range(tmp_path, capsys):
    events = random_events(3_000, SENSOR, t0=10_000, seed=2)
    path = _hand_built(tmp_path / "mixed.aedat4", events, table=False)
    assert main(["info", str(path), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    streams = {s["id"]: s for s in facts["streams"]}
    assert set(streams) == {0, 4, 9} and facts["events"] == len(events) and facts["skipped_packets"] == 10
    assert streams[0]["elements"] == len(events) and streams[0]["t_last"] == int(events["t"][-1])
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"0 EVTS events 80x60: 5 packets, {len(events):,} events, {int(events['t'][0])} .. " in text
    assert "4 XYZW mystery: 5 packets (unknown type: skipped)" in text
    assert "9 ? - (not declared in the info node: skipped): 5 packets" in text


def test_info_counts_frames_imu_and_triggers_of_a_davis_recording(shared_data, capsys):
    """Counts as PROVENANCE.md states them: 117,667 events, 3 frames, 130 IMU samples, 15 triggers;
    the table-less scan (packets decoded) agrees with the FileDataTable."""
    path = shared_data / "davis346_aestream_sample.aedat4"
    assert main(["info", str(path), "--json"]) == 0
    streams = {s["type"]: s for s in json.loads(capsys.readouterr().out)["streams"]}
    assert {k: (v["packets"], v["elements"]) for k, v in streams.items()} == {
        "EVTS": (13, 117_667), "FRME": (3, 3), "IMUS": (13, 130), "TRIG": (11, 15)}
    with Aedat4Reader(path) as reader:
        from_table = reader.stream_summary()
        reader.data_table = None
        assert reader.stream_summary() == from_table


def test_write_aedat4_carries_camera_name_and_sensor(tmp_path):
    events = random_events(1_000, SENSOR, seed=3)
    write_aedat4(tmp_path / "a.aedat4", events, SENSOR, camera_name="DAVIS346_00000104")
    with open_reader(tmp_path / "a.aedat4") as reader:
        assert reader.camera_name == "DAVIS346_00000104" and reader.sensor_size == SENSOR


def test_record_carries_the_replayed_cameras_name(tmp_path):
    torch = pytest.importorskip("torch")
    from evstream.binning import Binner
    from evstream.pipeline import Pipeline, PipelineConfig
    from evstream.sources.file import FileSource
    from models import create_model
    from models.streaming import StreamingClassifier

    events = random_events(20_000, SENSOR, duration_us=500_000, seed=4)
    src = tmp_path / "davis.aedat4"
    write_aedat4(src, events, SENSOR, camera_name="DAVIS346_00000104")
    out = tmp_path / "copy.aedat4"
    torch.manual_seed(0)
    source = FileSource(src, speed=None)
    assert source.camera_name == "DAVIS346_00000104"
    pipeline = Pipeline(source, StreamingClassifier(create_model("spikformer_tiny"), device="cpu"),
                        Binner(SENSOR, (32, 32), 20_000, 4), None, config=PipelineConfig(speed=None),
                        record_path=out)
    pipeline.start()
    assert pipeline.wait() == 0
    pipeline.close()
    with open_reader(out) as reader:
        assert reader.camera_name == "DAVIS346_00000104" and reader.sensor_size == SENSOR
        np.testing.assert_array_equal(reader.read(), events)


@pytest.mark.parametrize("compression", ["none", "lz4", "zstd"])
def test_what_we_write_opens_in_dv_processing_with_every_field_intact(tmp_path, compression):
    dv = pytest.importorskip("dv_processing")
    sensor = SensorSize(346, 260)
    events = random_events(60_000, sensor, t0=1_633_953_690_975_950, duration_us=1_500_000, seed=5)
    path = tmp_path / "ours.aedat4"
    write_aedat4(path, events, sensor, compression=compression, camera_name="DAVIS346_00000104", packet_events=7_000)
    recording = dv.io.MonoCameraRecording(str(path))
    assert recording.getCameraName() == "DAVIS346_00000104"
    assert tuple(recording.getEventResolution()) == (346, 260)
    assert recording.isEventStreamAvailable() and recording.getStreamNames() == ["events"]
    assert recording.getStreamMetadata("events") == {"source": "DAVIS346_00000104"}
    assert tuple(recording.getTimeRange()) == (int(events["t"][0]), int(events["t"][-1]))
    batches = []
    while (batch := recording.getNextEventBatch()) is not None:
        batches.append(np.asarray(batch.numpy()))
    got = np.concatenate(batches)
    assert len(got) == len(events)
    for ours, theirs in (("t", "timestamp"), ("x", "x"), ("y", "y"), ("p", "polarity")):
        np.testing.assert_array_equal(got[theirs], events[ours])
    # A time-range read goes through the FileDataTable dv-processing indexes.
    lo, hi = int(events["t"][20_000]), int(events["t"][40_000])
    store = recording.getEventsTimeRange(lo, hi)
    expected = events[(events["t"] >= lo) & (events["t"] < hi)]
    assert len(store) == len(expected)
    np.testing.assert_array_equal(np.asarray(store.numpy())["timestamp"], expected["t"])
