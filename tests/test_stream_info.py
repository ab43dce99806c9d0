"""Ground truth, time origin and geometry as the pipeline publishes them (``pred.truth``, ``status``)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from evstream.binning import Binner, Geometry
from evstream.errors import EventFileError
from evstream.events import SensorSize
from evstream.io.aedat3 import LABEL_DTYPE, read_labels, write_labels
from evstream.io.aedat4 import write_aedat4
from evstream.sources.file import FileSource
from evstream.stream_info import SegmentTruth, geometry_info, origin_for, truth_for
from tests.helpers import free_port, random_events

SENSOR = SensorSize(64, 48)
T_FIRST = 1_000_000
SEGMENTS = np.array([(4, 1_200_000, 1_900_000), (7, 2_100_000, 2_600_000)], dtype=LABEL_DTYPE)


@pytest.fixture
def labelled(tmp_path):
    """A 2 s random recording from 1 s on, with two labelled segments in ``<stem>_labels.csv``."""
    path = tmp_path / "take.aedat4"
    events = random_events(40_000, SENSOR, t0=T_FIRST, duration_us=2_000_000, seed=5)
    events["t"][0] = T_FIRST  # the recording starts exactly there
    write_aedat4(path, events, SENSOR, packet_events=2000)
    write_labels(tmp_path / "take_labels.csv", SEGMENTS)
    return path


def _label_at(t_us: int) -> int:
    """The reference: the segment holding ``t_us`` (``t_start <= t < t_end``), else -1."""
    for label, t0, t1 in SEGMENTS.tolist():
        if t0 <= t_us < t1:
            return label
    return -1


def test_a_recording_with_labels_beside_it_knows_its_truth(labelled):
    with FileSource(labelled, speed=None) as source:
        truth = truth_for(source)
        assert isinstance(truth, SegmentTruth)
        for t in (1_000_000, 1_199_999, 1_200_000, 1_899_999, 1_900_000, 2_300_000, 2_600_000):
            assert truth(t) == _label_at(t), t
        # A looping replay shifts sensor time by one period per pass: the labels repeat with it.
        period = source.period_us
        assert truth(1_500_000 + period) == 4 and truth(2_300_000 + 2 * period) == 7
        assert origin_for(source, None) == source.t_first == T_FIRST


def test_no_labels_no_truth_and_bad_labels_are_one_clear_error(labelled):
    (labelled.parent / "take_labels.csv").unlink()
    with FileSource(labelled, speed=None) as source:
        assert truth_for(source) is None
    (labelled.parent / "take_labels.csv").write_text("class,startTime_usec,endTime_usec\n3,10,five\n")
    with FileSource(labelled, speed=None) as source, pytest.raises(EventFileError, match="take_labels.csv.*line 2"):
        truth_for(source)


def test_geometry_info_names_the_sensor_rectangle_the_model_sees():
    assert geometry_info(Geometry((640, 480), (64, 64), mode="crop")) == {"mode": "crop", "input": [64, 64], "view": [80, 0, 480, 480]}
    assert geometry_info(Geometry((640, 480), (64, 64), mode="letterbox"))["view"] == [0, 0, 640, 480]
    assert geometry_info(Geometry((640, 480), (32, 32), roi=(100, 50, 200, 300)))["view"] == [100, 100, 200, 200]
    assert geometry_info(None) is None


def test_the_pipeline_publishes_truth_origin_geometry_and_decision(labelled):
    torch = pytest.importorskip("torch")
    from evstream.pipeline import Pipeline, PipelineConfig
    from evstream.publish import Publisher, Subscriber
    from models import create_model
    from models.streaming import StreamingClassifier

    torch.manual_seed(0)
    classifier = StreamingClassifier(create_model("spikformer_tiny"), device="cpu")
    address = f"tcp://127.0.0.1:{free_port()}"
    sinks = []

    class Keep:
        def on_prediction(self, prediction, stats):
            sinks.append(prediction.truth)

        def on_state(self, state, message):
            pass

        def close(self):
            pass

    with Publisher(address) as pub:
        source = FileSource(labelled, speed=None)
        pipeline = Pipeline(source, classifier, Binner(SENSOR, (32, 32), 20_000, 4), pub, sinks=[Keep()],
                            config=PipelineConfig(wait_subscribers=1, speed=None))
        with Subscriber(address, topics=("pred", "status")) as sub:
            pipeline.start()
            preds, status = [], None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                msg = sub.recv(500)
                if msg is None:
                    continue
                if msg.topic == "pred":
                    preds.append(msg)
                elif msg.data["state"] == "ended":
                    status = msg.data
                    break
            assert pipeline.wait() == 0
    assert status is not None and len(preds) >= 20
    # Each window's truth: the label in force at its last µs (online evaluation's convention).
    assert [m.data["truth"] for m in preds] == [_label_at(m.t_end - 1) for m in preds]
    assert {4, 7, -1} <= {m.data["truth"] for m in preds}
    assert sinks == [m.data["truth"] for m in preds]  # the console sees the same field: Prediction.truth
    assert status["origin_us"] == T_FIRST
    assert status["geometry"] == {"mode": "crop", "input": [32, 32], "view": [8, 0, 48, 48]}
    assert status["decision"]["threshold"] == classifier.decision_settings["threshold"]
    assert read_labels(labelled.parent / "take_labels.csv").tolist() == SEGMENTS.tolist()
