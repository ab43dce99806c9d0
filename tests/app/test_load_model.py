"""Swapping the model of a running pipeline (issue 16, item 3): real pipeline, real sockets on
127.0.0.1, real checkpoints written in tmp_path, the loader ``python main.py`` itself uses."""

from __future__ import annotations

import threading
import time

import pytest

from evstream.binning import Binner
from evstream.commands.run import model_loader
from evstream.pipeline import Pipeline, PipelineConfig
from evstream.publish import ControlClient, Publisher, Subscriber
from evstream.sources.file import FileSource
from models import create_model, save_checkpoint
from models.streaming import StreamingClassifier

STEP_US, STEPS = 20_000, 4
PRE = {"sensor": [64, 48], "out_size": [32, 32], "steps": 4, "step_us": STEP_US, "mode": "time"}


def _addr(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


@pytest.fixture
def checkpoints(tmp_path):
    new = save_checkpoint(tmp_path / "three.pt", create_model("spikformer_tiny", num_classes=3,
                                                              class_names=("up", "down", "still")), preprocessing=PRE)
    wide = save_checkpoint(tmp_path / "wide.pt", create_model("spikformer_tiny", img_size=(64, 64)),
                           preprocessing={**PRE, "out_size": [64, 64]})
    slow = save_checkpoint(tmp_path / "slow.pt", create_model("spikformer_tiny"), preprocessing={**PRE, "step_us": 50_000})
    return {"new": new, "wide": wide, "slow": slow}


def _drive(make_pipeline, port, on_pred):
    """Start ``make_pipeline(publisher, control address)`` and collect its prediction stream until it
    ends; ``on_pred(n, control)`` after each of the ``n`` preds so far."""
    messages = []
    n = 0
    with Publisher(_addr(port)) as pub:
        pipeline = make_pipeline(pub, _addr(port + 1))
        with Subscriber(_addr(port), topics=("pred", "status")) as sub, ControlClient(_addr(port + 1), timeout_ms=30_000) as control:
            pipeline.start()
            end = time.monotonic() + 60
            while time.monotonic() < end:
                msg = sub.recv(500)
                if msg is None:
                    continue
                messages.append(msg)
                if msg.topic == "pred":
                    n += 1
                    on_pred(n, control)
                if msg.topic == "status" and msg.data["state"] == "ended":
                    break
            assert pipeline.wait() == 0
    return pipeline, messages


def _run(recording, port, on_pred):
    """A paced replay through one Pipeline with ``python main.py``'s model loader; see :func:`_drive`."""
    source = FileSource(recording, speed=1.0)
    binner = Binner(source.sensor_size, (32, 32), STEP_US, STEPS)
    classifier = StreamingClassifier(create_model("spikformer_tiny"), device="cpu")
    return _drive(lambda pub, control: Pipeline(
        source, classifier, binner, pub, config=PipelineConfig(model_name="tiny", wait_subscribers=1),
        control_address=control, model_loader=model_loader(binner, "cpu")), port, on_pred)


def test_load_model_swaps_between_windows_with_a_gapless_stream_and_announces_the_classes(recording, port, checkpoints):
    replies = []

    def swap(n, control):
        if n == 3:
            replies.append(control.send("load_model", path=str(checkpoints["new"])))

    pipeline, messages = _run(recording, port, swap)
    [reply] = replies
    assert reply["ok"] and reply["model"] == "three" and reply["classes"] == ["up", "down", "still"]
    preds = [m for m in messages if m.topic == "pred"]
    assert [m.seq for m in preds] == list(range(len(preds)))  # nothing lost or duplicated
    assert all(a.t_end == b.t_start for a, b in zip(preds, preds[1:], strict=False))  # no window skipped
    assert len(preds) == pipeline.windows == 25  # 2 s of 80 ms windows: the swap cost none
    after = [m for m in messages if m.topic == "status" and m.data["model"] == "three"]
    assert after and after[0].data["classes"] == ["up", "down", "still"]
    assert pipeline.model_swaps == 1 and pipeline.class_names == ["up", "down", "still"]
    new_names = {"up", "down", "still", "no gesture"}
    assert all(m.data["name"] in new_names for m in preds[-5:])  # the new head decides the last windows
    assert len(preds[-1].arrays["probs"]) == 3


@pytest.mark.parametrize("which, needle", [("wide", "takes 64x64 input; this pipeline bins 32x32"),
                                           ("slow", "trained with 50 ms steps; this pipeline bins 20 ms steps"),
                                           ("missing", "missing.pt")])
def test_a_checkpoint_that_does_not_fit_is_refused_and_the_model_keeps_going(recording, port, checkpoints, tmp_path,
                                                                            which, needle):
    replies = []
    path = str(tmp_path / "missing.pt") if which == "missing" else str(checkpoints[which])

    def bad(n, control):
        if n == 2:
            replies.append(control.send("load_model", path=path))

    pipeline, messages = _run(recording, port, bad)
    [reply] = replies
    assert reply["ok"] is False and needle in reply["error"] and "\n" not in reply["error"]
    preds = [m for m in messages if m.topic == "pred"]
    assert [m.seq for m in preds] == list(range(25)) and pipeline.model_swaps == 0
    assert all(m.data["state"] != "error" for m in messages if m.topic == "status")


def test_without_a_loader_load_model_is_refused(recording, port):
    source = FileSource(recording, speed=None)
    pipeline = Pipeline(source, StreamingClassifier(create_model("spikformer_tiny"), device="cpu"),
                        Binner(source.sensor_size, (32, 32), STEP_US, STEPS), None, control_address=_addr(port + 1))
    try:
        with ControlClient(_addr(port + 1)) as control:
            reply = control.send("load_model", path="x.pt")
        assert reply["ok"] is False and "without a model loader" in reply["error"]
    finally:
        pipeline.close()
        threading.Event().wait(0)


def test_load_model_with_several_streams_swaps_every_stream_between_rounds(recording, port, checkpoints):
    """``--replay A --replay B``: the new model takes over every stream in the same round; each
    stream's sequence stays gapless, a checkpoint that does not fit is refused and the run goes on."""
    from evstream.commands.run import multi_model_loader
    from evstream.multipipeline import MultiPipeline
    from models.multistream import MultiStreamClassifier

    sources = [FileSource(recording, speed=1.0) for _ in range(2)]
    binners = [Binner(s.sensor_size, (32, 32), STEP_US, STEPS) for s in sources]
    classifier = MultiStreamClassifier(create_model("spikformer_tiny"), 2, device="cpu")
    replies = []

    def swaps(n, control):
        if n in (2, 4):  # a checkpoint that does not fit, then one that does
            replies.append(control.send("load_model", path=str(checkpoints["wide" if n == 2 else "new"])))

    pipeline, messages = _drive(lambda pub, control: MultiPipeline(
        sources, classifier, binners, pub, names=["a", "b"], config=PipelineConfig(model_name="tiny", wait_subscribers=1),
        control_address=control, model_loader=multi_model_loader(binners, "cpu")), port, swaps)
    refused, swapped = replies
    assert refused["ok"] is False and "takes 64x64 input; this pipeline bins 32x32" in refused["error"]
    assert swapped["ok"] and swapped["model"] == "three" and swapped["classes"] == ["up", "down", "still"]
    assert pipeline.model_swaps == 1 and pipeline.class_names == ["up", "down", "still"]
    for sid in (0, 1):
        preds = [m for m in messages if m.topic == "pred" and m.stream == sid]
        assert [m.seq for m in preds] == list(range(len(preds))) == list(range(25))  # 2 s of 80 ms windows
        assert all(a.t_end == b.t_start for a, b in zip(preds, preds[1:], strict=False))
        assert all(len(m.arrays["probs"]) == 3 for m in preds[-5:])  # the new head decides every stream
        assert all(len(m.arrays["probs"]) == 11 for m in preds[:2])
    after = [m for m in messages if m.topic == "status" and m.data["model"] == "three"]
    assert after and after[0].data["classes"] == ["up", "down", "still"]
