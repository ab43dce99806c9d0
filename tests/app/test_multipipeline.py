"""Several sources through one batched model: real recordings, real Binners, real sockets, real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import msgpack
import pytest

from evstream import protocol
from evstream.binning import Binner
from evstream.errors import ConfigError, ProtocolError
from evstream.pipeline import Pipeline, PipelineConfig
from evstream.publish import ControlClient, Publisher, Subscriber
from evstream.sources.file import FileSource
from tests.app.conftest import SENSOR

torch = pytest.importorskip("torch")
import models  # noqa: E402
from evstream.multipipeline import MultiPipeline  # noqa: E402
from models.multistream import MultiStreamClassifier  # noqa: E402
from models.streaming import (  # noqa: E402
    StreamingClassifier,
    decision_options,
    default_window_steps,
    input_scale_for,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUNDLED = os.path.join(REPO, "recordings", "gestures_128x128.aedat4")
BUNDLED_640 = os.path.join(REPO, "recordings", "gestures_640x480.aedat4")
TINY_RUN = ["--no-gui", "--model", "spikformer_tiny", "--step-ms", "20", "--device", "cpu"]


def _addr(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


def _collect(sub: Subscriber, timeout_s: float = 120.0) -> list:
    """Every message until a status saying ``ended`` or ``error`` (inclusive)."""
    got = []
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        msg = sub.recv(500)
        if msg is None:
            continue
        got.append(msg)
        if msg.topic == "status" and msg.data["state"] in ("ended", "error"):
            return got
    raise AssertionError(f"the pipeline did not end within {timeout_s} s")


def _main(*args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.Popen([sys.executable, os.path.join(REPO, "main.py"), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# -- the shipped model on the bundled recording ----------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    loaded = models.load_checkpoint(models.DEFAULT_WEIGHTS, device="cpu")
    pre = dict(loaded.preprocessing)
    height, width = (int(v) for v in loaded.model.config.img_size)
    model_steps = int(pre.get("steps") or loaded.model.config.steps)
    decision = dict(loaded.decision)
    steps = default_window_steps(decision, model_steps, int(pre["step_us"]))  # as `python main.py` bins
    options = decision_options({k: v for k, v in decision.items() if k != "window_steps"}, model_steps=model_steps)
    return loaded.model, (width, height), int(pre["step_us"]), steps, options, pre


def _shipped_binner(shipped, sensor) -> Binner:
    _, out, step_us, steps, _, _ = shipped
    return Binner(sensor, out, step_us, steps)


def test_two_replays_as_streams_0_and_1_equal_one_replay_alone(shipped, port):
    model, _, _, _, options, pre = shipped
    # The anchor: the single-source pipeline, as `python main.py --replay` runs it.
    with Publisher(_addr(port)) as pub:
        source = FileSource(BUNDLED, speed=None)
        binner = _shipped_binner(shipped, source.sensor_size)
        classifier = StreamingClassifier(model, device="cpu", input_scale=input_scale_for(pre, binner.geometry),
                                         **options)
        pipeline = Pipeline(source, classifier, binner, pub, config=PipelineConfig(wait_subscribers=1, speed=None))
        with Subscriber(_addr(port), ("pred", "status")) as sub:
            pipeline.start()
            alone = [m for m in _collect(sub) if m.topic == "pred"]
            assert pipeline.wait() == 0
    port2 = port + 1
    with Publisher(_addr(port2)) as pub:
        sources = [FileSource(BUNDLED, speed=None) for _ in range(2)]
        binners = [_shipped_binner(shipped, s.sensor_size) for s in sources]
        classifier = MultiStreamClassifier(model, 2, device="cpu", **options)
        pipeline = MultiPipeline(sources, classifier, binners, pub, names=["a", "b"],
                                 input_scales=[input_scale_for(pre, b.geometry) for b in binners],
                                 config=PipelineConfig(wait_subscribers=1, speed=None))
        with Subscriber(_addr(port2), ("pred", "status")) as sub:
            pipeline.start()
            messages = _collect(sub)
            assert pipeline.wait() == 0
    assert len(alone) > 100
    by_stream = {sid: [m for m in messages if m.topic == "pred" and m.stream == sid] for sid in (0, 1)}
    # The single pipeline classifies the recording's partial last window too; a round cannot.
    assert alone[-1].t_end - alone[-1].t_start < binners[0].steps * binners[0].step_us
    expected = alone[:-1]
    assert all(m.data["energy_uj"] > 0 for m in expected)
    for sid, preds in by_stream.items():
        assert [m.data["label"] for m in preds] == [m.data["label"] for m in expected], sid
        assert [(m.t_start, m.t_end) for m in preds] == [(m.t_start, m.t_end) for m in expected]
        assert [m.data["truth"] for m in preds] == [m.data["truth"] for m in expected]
        # each stream publishes its own energy estimate, as the single pipeline does
        assert [m.data["energy_uj"] for m in preds] == pytest.approx([m.data["energy_uj"] for m in expected], rel=1e-5)
        # sequence numbers are gapless per topic and stream
        assert [m.seq for m in preds] == list(range(len(expected)))
    assert sub.stats["pred"].gaps == 0
    assert len({m.data["label"] for m in expected}) >= 3  # the recording's gestures, not one constant label
    final = [m for m in messages if m.topic == "status"][-1].data
    assert final["state"] == "ended" and final["source"] == "2 streams: a, b"
    assert [(s["sid"], s["source"], s["state"], s["windows"]) for s in final["streams"]] == \
        [(0, "a", "ended", len(expected)), (1, "b", "ended", len(expected))]


def test_streams_of_two_sensor_sizes_run_together(repo_root, port):
    proc = _main("--replay", BUNDLED, "--replay", BUNDLED_640, *TINY_RUN, "--speed", "max", "--max-windows", "5",
                 "--publish", _addr(port), "--wait-subscribers", "1")
    with Subscriber(_addr(port), ("pred", "status")) as sub:
        messages = _collect(sub)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    preds = [m for m in messages if m.topic == "pred"]
    assert sorted(m.stream for m in preds) == [0] * 5 + [1] * 5
    streams = [m for m in messages if m.topic == "status"][-1].data["streams"]
    assert [s["sensor"] for s in streams] == [[128, 128], [640, 480]]
    assert "2 streams: [0] " in out and "stopped after 5 windows per stream" in out


# -- a tiny model on the small recording -----------------------------------------------------------

STEP_US, STEPS, OUT = 20_000, 4, (32, 32)


def _tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create_model("spikformer_tiny")


def test_a_stream_that_ends_stops_contributing_and_the_others_go_on(recording, port):
    model = _tiny()
    with FileSource(recording, speed=None) as source:  # the long stream alone, with the tiny model
        classifier = StreamingClassifier(model, device="cpu")
        binner = Binner(SENSOR, OUT, STEP_US, STEPS)
        alone = [classifier.step(w) for chunk in source for w in binner.push(chunk)]
    with Publisher(_addr(port)) as pub:
        long, short = FileSource(recording, speed=None), FileSource(recording, speed=None, end_us=600_000)
        classifier = MultiStreamClassifier(model, 2, device="cpu")
        pipeline = MultiPipeline([long, short], classifier, [Binner(SENSOR, OUT, STEP_US, STEPS) for _ in range(2)], pub,
                                 config=PipelineConfig(wait_subscribers=1, speed=None))
        with Subscriber(_addr(port), ("pred", "status")) as sub:
            pipeline.start()
            messages = _collect(sub)
            assert pipeline.wait() == 0
    first = [m for m in messages if m.topic == "pred" and m.stream == 0]
    second = [m for m in messages if m.topic == "pred" and m.stream == 1]
    assert len(second) == 600_000 // (STEP_US * STEPS) and len(first) == len(alone) > 2 * len(second)
    assert [m.data["label"] for m in first] == [p.label for p in alone]
    assert [m.data["confidence"] for m in first] == pytest.approx([p.confidence for p in alone], abs=1e-5)
    states = [[s["state"] for s in m.data["streams"]] for m in messages if m.topic == "status"]
    assert ["running", "ended"] in states  # stream 1 ended while stream 0 went on
    assert states[-1] == ["ended", "ended"]


def test_spike_maps_and_attention_are_published_per_stream(recording, port):
    model = _tiny()
    with Publisher(_addr(port)) as pub:
        long, short = FileSource(recording, speed=None), FileSource(recording, speed=None, end_us=600_000)
        classifier = MultiStreamClassifier(model, 2, device="cpu")
        pipeline = MultiPipeline([long, short], classifier, [Binner(SENSOR, OUT, STEP_US, STEPS) for _ in range(2)], pub,
                                 config=PipelineConfig(wait_subscribers=2, speed=None, heavy_hz=None))
        topics = ("pred", "spikes", "attn", "status")
        with Subscriber(_addr(port), topics, stream=0) as zero, Subscriber(_addr(port), topics, stream=1) as one:
            pipeline.start()
            got = {0: _collect(zero), 1: _collect(one)}
            assert pipeline.wait() == 0
    for sid, messages in got.items():
        by_topic = {t: [m for m in messages if m.topic == t] for t in topics}
        assert all(m.stream == sid for m in messages if m.topic != "status")
        # heavy_hz None: maps of every window of this stream, in order, no gaps
        assert len(by_topic["spikes"]) == len(by_topic["attn"]) == len(by_topic["pred"]) > 0
        assert [m.seq for m in by_topic["attn"]] == list(range(len(by_topic["attn"])))
        assert [m.t_end for m in by_topic["spikes"]] == [m.t_end for m in by_topic["pred"]]
        spikes, attn = by_topic["spikes"][-1], by_topic["attn"][-1]
        assert spikes.data["layers"] and set(spikes.arrays) == set(spikes.data["layers"])
        qk = attn.arrays["qk"]
        assert qk.ndim == 4 and qk.shape[:2] == (attn.data["blocks"], attn.data["heads"]) and qk.shape[2] == qk.shape[3]
        assert attn.arrays["frame"].shape == (OUT[1], OUT[0]) and attn.arrays["frame"].sum() > 0
    # stream 1 ended after 0.6 s: its maps stop with it while stream 0's go on
    assert len([m for m in got[1] if m.topic == "attn"]) == 600_000 // (STEP_US * STEPS)
    assert len([m for m in got[0] if m.topic == "attn"]) > 2 * 600_000 // (STEP_US * STEPS)


def test_control_resets_every_stream_and_refuses_replay_commands_with_one_line(recording, port):
    with Publisher(_addr(port)) as pub:
        sources = [FileSource(recording, speed=0.5) for _ in range(2)]
        pipeline = MultiPipeline(sources, MultiStreamClassifier(_tiny(), 2, device="cpu"),
                                 [Binner(SENSOR, OUT, STEP_US, STEPS) for _ in range(2)], pub,
                                 control_address=_addr(port + 1), config=PipelineConfig(speed=0.5))
        pipeline.start()
        with ControlClient(_addr(port + 1), timeout_ms=5000) as control:
            reply = control.send("seek", t_us=0)
            assert reply["ok"] is False and "seek: not supported by a pipeline of 2 sources" in reply["error"]
            assert control.send("reset") == {"ok": True, "streams": 2}
            status = control.send("status")
            assert status["ok"] and [s["sid"] for s in status["streams"]] == [0, 1]
        deadline = time.monotonic() + 30
        while pipeline.classifier.resets != [1, 1] and time.monotonic() < deadline:
            time.sleep(0.02)
        assert pipeline.classifier.resets == [1, 1]
        pipeline.stop()
        assert pipeline.wait() == 0


def test_binners_of_different_steps_are_refused(recording):
    sources = [FileSource(recording, speed=None) for _ in range(2)]
    try:
        with pytest.raises(ConfigError, match="steps x step_us differ"):
            MultiPipeline(sources, MultiStreamClassifier(_tiny(), 2, device="cpu"),
                          [Binner(SENSOR, OUT, STEP_US, STEPS), Binner(SENSOR, OUT, STEP_US, STEPS + 1)])
    finally:
        for s in sources:
            s.close()


# -- the wire: stream ids, per-stream sequence numbers, the Subscriber's filter --------------------


def test_subscriber_stream_filter_yields_only_its_stream_and_status(port):
    with Publisher(_addr(port)) as pub:
        with Subscriber(_addr(port), ("pred", "status"), stream=1) as one, \
                Subscriber(_addr(port), ("pred", "status")) as every:
            assert pub.wait_subscribers("pred", 2, timeout_s=10)
            for i in range(4):
                for sid in (0, 1, 2):
                    pub.publish("pred", {"i": i, "sid": sid}, stream=sid)
            pub.publish("status", {"state": "ended"})
            got_one = _collect(one, 30)
            got_every = _collect(every, 30)
    assert [(m.topic, m.stream, m.seq) for m in got_one] == [("pred", 1, i) for i in range(4)] + [("status", 0, 0)]
    assert sorted((m.stream, m.seq) for m in got_every if m.topic == "pred") == \
        [(sid, i) for sid in (0, 1, 2) for i in range(4)]
    assert one.stats["pred"].gaps == 0 and every.stats["pred"].gaps == 0  # seq counts per stream
    assert one.stats["pred"].received == 4


def test_a_gap_in_one_stream_is_seen_by_its_subscriber(port):
    with Publisher(_addr(port)) as pub:
        with Subscriber(_addr(port), ("pred", "status"), stream=1) as sub:
            assert pub.wait_subscribers("pred", 1, timeout_s=10)
            pub.publish("pred", {}, stream=1)
            pub._seq[("pred", 1)] += 2  # two messages of stream 1 this subscriber never sees
            pub.publish("pred", {}, stream=1)
            pub.publish("pred", {}, stream=0)
            pub.publish("status", {"state": "ended"})
            _collect(sub, 30)
    assert (sub.stats["pred"].gaps, sub.stats["pred"].dropped, sub.stats["pred"].received) == (1, 2, 2)


def test_header_without_sid_is_stream_0_and_a_bad_sid_is_refused():
    frames = protocol.encode("pred", 3, "p", {"label": 1}, stream=2)
    assert protocol.decode(frames).stream == 2
    header = msgpack.unpackb(frames[1], raw=False)
    del header["sid"]  # a publisher older than several streams
    old = protocol.decode([frames[0], msgpack.packb(header, use_bin_type=True)])
    assert (old.stream, old.seq, old.data) == (0, 3, {"label": 1})
    header["sid"] = "one"
    with pytest.raises(ProtocolError, match="'sid' must be an integer >= 0"):
        protocol.decode([frames[0], msgpack.packb(header, use_bin_type=True)])
    with pytest.raises(ProtocolError, match="stream id"):
        protocol.encode("pred", 0, "p", stream=-1)
    with pytest.raises(ConfigError, match="stream"):
        Subscriber("tcp://127.0.0.1:1", stream=-1)


def test_subscribe_command_with_stream_prints_only_that_stream(port):
    with Publisher(_addr(port)) as pub:
        script = _main("subscribe", _addr(port), "--json", "--stream", "1", "--count", "3", "--timeout", "60")
        assert pub.wait_subscribers("pred", 1, timeout_s=60)
        for i in range(3):
            for sid in (0, 1):
                pub.publish("pred", {"name": f"s{sid}", "changed": True}, t_start=i, t_end=i + 1, stream=sid)
        out, err = script.communicate(timeout=60)
    assert script.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(m["stream"], m["seq"], m["data"]["name"]) for m in lines] == [(1, i, "s1") for i in range(3)]


# -- the command line ------------------------------------------------------------------------------


def test_synthetic_2_runs_two_people_and_exits_0(port):
    proc = _main("--synthetic", "2", *TINY_RUN, "--max-windows", "4", "--publish", _addr(port),
                 "--wait-subscribers", "1")
    with Subscriber(_addr(port), ("pred", "status")) as sub:
        messages = _collect(sub)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    preds = [m for m in messages if m.topic == "pred"]
    assert sorted(m.stream for m in preds) == [0] * 4 + [1] * 4
    assert all(m.data["truth"] is not None for m in preds)  # each person knows its own gestures
    streams = [m for m in messages if m.topic == "status"][-1].data["streams"]
    assert [s["source"] for s in streams] == ["synthetic (seed 0)", "synthetic (seed 1)"]
    assert "[0] " in out and "[1] " in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--replay", BUNDLED, "--replay", "/nonexistent/second.aedat4"], "/nonexistent/second.aedat4"),
        (["--replay", BUNDLED, "--replay", BUNDLED, "--record", "out.aedat4"], "--record: records one source"),
        (["--replay", BUNDLED, "--synthetic", "--start", "1"], "--start/--end: only a replayed recording"),
        (["--synthetic", "0"], "--synthetic: N must be >= 1"),
        (["--replay", BUNDLED, "--replay", BUNDLED_640, "--roi", "0,0,200,200"], "roi"),
    ],
)
def test_bad_input_of_several_sources_is_one_stderr_line_and_exit_2(args, needle, port):
    proc = _main(*args, *TINY_RUN, "--publish", _addr(port))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error: "), err
