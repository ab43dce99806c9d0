"""The pipeline in-process: real recording, real Binner, real (tiny, untrained) Spikformer, real sockets."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from evstream.binning import Binner
from evstream.events import EventChunk, SensorSize
from evstream.pipeline import Pipeline, PipelineConfig, frame_counts
from evstream.publish import ControlClient, Publisher, Subscriber
from evstream.sources.base import EventSource
from evstream.sources.file import FileSource
from tests.app.conftest import SENSOR
from tests.helpers import random_events

torch = pytest.importorskip("torch")
from models import create_model  # noqa: E402
from models.streaming import StreamingClassifier  # noqa: E402

STEP_US, STEPS = 20_000, 4  # 80 ms windows
OUT = (32, 32)  # spikformer_tiny's input


def _addr(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


def _classifier() -> StreamingClassifier:
    torch.manual_seed(0)
    return StreamingClassifier(create_model("spikformer_tiny"), device="cpu")


def _binner(sensor: SensorSize = SENSOR) -> Binner:
    return Binner(sensor, OUT, STEP_US, STEPS)


def _collect(sub: Subscriber, until_state: str = "ended", timeout_s: float = 60.0) -> list:
    """Every message until a status with ``until_state`` (inclusive)."""
    got = []
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        msg = sub.recv(500)
        if msg is None:
            continue
        got.append(msg)
        if msg.topic == "status" and msg.data["state"] == until_state:
            return got
    raise AssertionError(f"no status {until_state!r} within {timeout_s} s")


def _bare_loop(recording) -> list:
    """The anchor: the same source, binner and model with no threads, queues or sockets."""
    classifier = _classifier()
    binner = _binner()
    preds = []
    with FileSource(recording, speed=None) as source:
        for chunk in source:
            for window in binner.push(chunk):
                preds.append(classifier.step(window))
    return preds


def test_replay_publishes_every_window_in_order_and_matches_a_bare_loop(recording, port):
    expected = _bare_loop(recording)
    assert len(expected) >= 20
    with Publisher(_addr(port)) as pub:
        source = FileSource(recording, speed=None)
        pipeline = Pipeline(source, _classifier(), _binner(), pub,
                            config=PipelineConfig(model_name="tiny (untrained)", wait_subscribers=1, speed=None))
        with Subscriber(_addr(port), topics=("pred", "stats", "status")) as sub:
            pipeline.start()
            messages = _collect(sub)
            assert pipeline.wait() == 0
    preds = [m for m in messages if m.topic == "pred"]
    assert [m.seq for m in preds] == list(range(len(expected)))
    assert sub.stats["pred"].gaps == 0
    assert [(m.t_start, m.t_end) for m in preds] == [(p.t_start, p.t_end) for p in expected]
    for msg, ref in zip(preds, expected, strict=True):
        np.testing.assert_allclose(msg.arrays["probs"], ref.probs, rtol=1e-5, atol=1e-6)
        assert msg.data["label"] == ref.label
        assert msg.data["smoothed_kind"] == ref.probs_kind  # subscribers learn what "smoothed" is
        np.testing.assert_allclose(msg.arrays["smoothed"], ref.smoothed, rtol=1e-5, atol=1e-6)
    assert sum(m.data["events"] for m in preds) <= 60_000
    status = [m for m in messages if m.topic == "status"][-1].data
    assert status["classes"] == list(pipeline.class_names) and len(status["classes"]) == 11
    assert status["sensor"] == [SENSOR.width, SENSOR.height]
    assert status["model"] == "tiny (untrained)" and status["source"] == recording.name
    assert status["message"] == "end of recording" and status["live"] is False
    stats = [m for m in messages if m.topic == "stats"]
    assert stats and stats[-1].data["windows"] == len(expected) and stats[-1].data["dropped_windows"] == 0
    assert pub.sent["frame"] == pub.sent["attn"] == pub.sent["spikes"] == 0  # nobody asked


def test_heavy_topics_are_produced_while_subscribed(recording, port):
    with Publisher(_addr(port)) as pub:
        source = FileSource(recording, speed=None)
        config = PipelineConfig(wait_subscribers=1, speed=None, heavy_hz=None)
        pipeline = Pipeline(source, _classifier(), _binner(), pub, config=config)
        with Subscriber(_addr(port), topics=("pred", "frame", "spikes", "attn", "status")) as sub:
            pipeline.start()
            messages = _collect(sub)
            assert pipeline.wait() == 0
    by_topic = {t: [m for m in messages if m.topic == t] for t in ("pred", "frame", "spikes", "attn")}
    assert len(by_topic["frame"]) == len(by_topic["pred"]) == len(by_topic["attn"]) == len(by_topic["spikes"])
    events = {m.t_start: m.data["events"] for m in by_topic["pred"]}
    for frame in by_topic["frame"]:
        counts = frame.arrays["counts"]
        assert counts.dtype == np.uint8 and counts.shape == (2, SENSOR.height, SENSOR.width)
        assert int(counts.sum(dtype=np.int64)) == events[frame.t_start]  # sparse: no pixel saturates
    attn = by_topic["attn"][0]
    assert attn.arrays["qk"].shape == (1, 2, 4, 4) and attn.data["grid"] == [2, 2]
    assert attn.arrays["frame"].shape == (32, 32)
    spikes = by_topic["spikes"][0]
    assert set(spikes.data["layers"]) == set(spikes.arrays) and "sps.0" in spikes.arrays
    assert all(0.0 <= v <= 1.0 for v in spikes.data["sparsity"].values())


def test_frame_counts_split_polarity_and_saturate():
    sensor = SensorSize(8, 4)
    ev = random_events(0, sensor)
    ev = np.concatenate([ev, random_events(300, sensor, seed=1)])
    ev["x"][:300], ev["y"][:300], ev["p"][:300] = 3, 2, 1
    ev = np.concatenate([ev, random_events(5, sensor, seed=2)])
    ev["x"][-5:], ev["y"][-5:], ev["p"][-5:] = 7, 0, 0
    counts = frame_counts(ev, sensor.width, sensor.height)
    assert counts.shape == (2, 4, 8) and counts[1, 2, 3] == 255 and counts[0, 0, 7] == 5
    assert int(counts.sum(dtype=np.int64)) == 255 + 5


def test_control_commands_steer_a_paced_replay(recording, port, tmp_path):
    from evstream.io import read_events

    control = _addr(port + 1)
    with Publisher(_addr(port)) as pub:
        source = FileSource(recording, speed=1.0, loop=True)
        config = PipelineConfig(wait_subscribers=1, speed=1.0, loop=True)
        pipeline = Pipeline(source, _classifier(), _binner(), pub, config=config, control_address=control,
                            record_dir=tmp_path)
        sub = Subscriber(_addr(port), topics=("pred",))
        client = ControlClient(control, timeout_ms=5000)
        try:
            pipeline.start()
            assert sub.recv(5000) is not None

            assert client.send("record_start", path=str(tmp_path / "rec.aedat4"))["ok"]
            assert client.send("pause") == {"ok": True, "state": "paused"}
            time.sleep(0.3)
            while sub.recv(50) is not None:
                pass  # what was in flight when the pause arrived
            assert sub.recv(600) is None
            assert client.send("status")["state"] == "paused"

            assert client.send("step")["ok"]
            stepped = sub.recv(3000)
            assert stepped is not None and sub.recv(400) is None

            before = client.send("reset")
            assert before["ok"] and before["resets"] >= 1
            assert client.send("resume")["ok"]
            msg = sub.recv(3000)
            assert msg is not None and msg.data["resets"] >= before["resets"]

            reply = client.send("seek", t_us=1_500_000)
            assert reply == {"ok": True, "position_us": 1_500_000}
            assert client.send("status")["position_us"] >= 1_500_000
            assert not client.send("seek", t_us=99_000_000)["ok"]

            assert client.send("speed", value=4.0) == {"ok": True, "speed": 4.0}
            assert client.send("status")["speed"] == 4.0
            assert "outside" in client.send("speed", value=101.0)["error"]
            assert client.send("loop", value=False) == {"ok": True, "loop": False}

            stopped = client.send("record_stop")
            assert stopped["ok"] and stopped["events"] > 0
            assert client.send("record_stop") == {"ok": True, "path": None, "events": 0}
            recorded = read_events(tmp_path / "rec.aedat4")
            assert len(recorded) == stopped["events"]
        finally:
            client.close()
            sub.close()
            pipeline.stop()
            assert pipeline.wait() == 0


class _Burst(EventSource):
    """A live source that delivers its events far faster than real time (a model falling behind)."""

    live = True
    name = "burst"

    def __init__(self, seconds: float, then_idle_s: float = 0.0) -> None:
        self.sensor_size = SENSOR
        self.seconds = seconds
        self.then_idle_s = then_idle_s

    def __iter__(self) -> Iterator[EventChunk]:
        chunk_us = 10_000
        for i in range(int(self.seconds * 1e6) // chunk_us):
            ev = random_events(300, SENSOR, t0=i * chunk_us, duration_us=chunk_us, seed=i)
            yield EventChunk(ev, i * chunk_us, (i + 1) * chunk_us)
        time.sleep(self.then_idle_s)  # a still scene: no chunk at all for a while


class _SlowClassifier(StreamingClassifier):
    """The tiny model made as slow as a big one would be on this machine."""

    def step(self, window, **kw):
        time.sleep(0.01)
        return super().step(window, **kw)


def test_live_source_drops_whole_windows_and_resets_when_the_model_falls_behind(port):
    classifier = _SlowClassifier(create_model("spikformer_tiny"), device="cpu")
    with Publisher(_addr(port)) as pub:
        pipeline = Pipeline(_Burst(8.0), classifier, _binner(), pub, config=PipelineConfig(wait_subscribers=1))
        with Subscriber(_addr(port), topics=("pred", "stats", "status")) as sub:
            pipeline.start()
            messages = _collect(sub)
            assert pipeline.wait() == 0
    preds = [m for m in messages if m.topic == "pred"]
    assert pipeline.dropped_windows > 0
    assert len(preds) + pipeline.dropped_windows <= 100  # 8 s of 80 ms windows
    assert preds[-1].data["resets"] >= 1 and classifier.resets >= 1
    stats = [m for m in messages if m.topic == "stats"]
    assert stats[-1].data["dropped_windows"] == pipeline.dropped_windows
    # whole windows only: what was classified starts and ends on the window grid
    assert all(m.t_start % (STEP_US * STEPS) == 0 and m.t_end - m.t_start == STEP_US * STEPS for m in preds)


def test_live_still_scene_keeps_windows_flowing_on_the_wall_clock(port):
    with Publisher(_addr(port)) as pub:
        pipeline = Pipeline(_Burst(0.1, then_idle_s=1.5), _classifier(), _binner(), pub,
                            config=PipelineConfig(wait_subscribers=1))
        with Subscriber(_addr(port), topics=("pred",)) as sub:
            pipeline.start()
            preds = []
            end = time.monotonic() + 3.0
            while time.monotonic() < end and not pipeline.finished:
                msg = sub.recv(100)
                if msg is not None:
                    preds.append(msg)
            assert pipeline.wait() == 0
    # 0.1 s of events make one window; the other windows closed with no events at all
    assert len(preds) >= 5
    assert [m.t_start for m in preds] == [i * STEP_US * STEPS for i in range(len(preds))]
    assert all(m.data["events"] == 0 for m in preds[2:])


def test_truncated_file_ends_in_error_after_publishing_what_it_read(recording, port, tmp_path):
    data = recording.read_bytes()
    broken = tmp_path / "truncated.aedat4"
    broken.write_bytes(data[: len(data) * 2 // 3])
    with Publisher(_addr(port)) as pub:
        source = FileSource(broken, speed=None)
        pipeline = Pipeline(source, _classifier(), _binner(), pub,
                            config=PipelineConfig(wait_subscribers=1, speed=None))
        with Subscriber(_addr(port), topics=("pred", "status")) as sub:
            pipeline.start()
            messages = _collect(sub, until_state="error")
            assert pipeline.wait() == 2  # an expected fault
    status = [m for m in messages if m.topic == "status"][-1].data
    assert "truncated.aedat4" in status["message"] and "\n" not in status["message"]
    assert len([m for m in messages if m.topic == "pred"]) >= 5


def test_stalled_subscriber_does_not_stall_a_replay(recording, port):
    with Publisher(_addr(port), hwm=2) as pub:
        source = FileSource(recording, speed=None)
        config = PipelineConfig(wait_subscribers=1, speed=None, heavy_hz=None)
        pipeline = Pipeline(source, _classifier(), _binner(), pub, config=config)
        stalled = Subscriber(_addr(port), topics=("pred", "frame", "attn"), rcvhwm=1)
        try:
            pipeline.start()
            code = pipeline.wait()
            assert code == 0 and pipeline.windows >= 20 and pipeline.state == "ended"
        finally:
            stalled.close()


class _FailingClassifier(StreamingClassifier):
    """Fails on its fourth window the way a device fault would (not an EvstreamError)."""

    def step(self, window, **kw):
        if self._windows == 3:
            raise RuntimeError("CUDA error: device-side assert triggered")
        return super().step(window, **kw)


def test_model_failure_mid_stream_ends_in_error_not_a_hang(recording, port):
    classifier = _FailingClassifier(create_model("spikformer_tiny"), device="cpu")
    with Publisher(_addr(port)) as pub:
        pipeline = Pipeline(FileSource(recording, speed=None), classifier, _binner(), pub,
                            config=PipelineConfig(model_name="tiny", wait_subscribers=1, speed=None))
        with Subscriber(_addr(port), topics=("pred", "status")) as sub:
            pipeline.start()
            messages = _collect(sub, until_state="error")
            assert pipeline.wait() == 1  # unexpected: not an EvstreamError
    assert len([m for m in messages if m.topic == "pred"]) == 3
    message = [m for m in messages if m.topic == "status"][-1].data["message"]
    assert message.startswith("model tiny: RuntimeError: CUDA error")


def test_live_pause_discards_the_scene_and_resume_carries_on_without_a_backlog(port):
    from evstream.sources.synthetic import SyntheticSource

    control = _addr(port + 1)
    source = SyntheticSource(SensorSize(64, 64), seed=1)
    with Publisher(_addr(port)) as pub:
        pipeline = Pipeline(source, _classifier(), Binner(source.sensor_size, OUT, STEP_US, STEPS), pub,
                            config=PipelineConfig(wait_subscribers=1), control_address=control)
        sub = Subscriber(_addr(port), topics=("pred",))
        client = ControlClient(control, timeout_ms=5000)
        try:
            pipeline.start()
            # A few windows first: on a fresh install the first ones pay for compiling kernels.
            assert None not in [sub.recv(10_000) for _ in range(5)]
            before = pipeline.dropped_windows
            assert client.send("pause")["ok"]
            time.sleep(0.3)
            while sub.recv(50) is not None:
                pass
            assert sub.recv(700) is None  # 700 ms of scene: about 9 windows that never reach the model
            assert client.send("seek", t_us=0)["error"].startswith("seek: source")  # live: no seeking
            assert client.send("resume")["ok"]
            after = [sub.recv(3000) for _ in range(3)]
            assert None not in after
            # the model saw no backlog: what comes after the pause is a fresh, current window
            assert after[-1].data["resets"] >= 1
            assert pipeline.dropped_windows - before <= 2  # (drops before the pause: the first, slow steps)
        finally:
            client.close()
            sub.close()
            pipeline.stop()
            assert pipeline.wait() == 0
