"""bench/finetune.py: the out-of-range person, and the whole loop at toy sizes (``--quick``).

The figures of the full run come from a run on this machine (the note); this checks that the
prepared script records, fine-tunes, writes a checkpoint that loads and prints what it promises.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from evstream.io import read_events
from evstream.sources.gestures import GestureScene
from evstream.sources.synthetic import DVS128

REPO = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_finetune", REPO / "bench" / "finetune.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def test_the_person_is_outside_the_renderers_ranges_and_the_same_in_every_session():
    bench = _bench()
    user = bench.OutOfRangeUser(95001, build=0.84, distance=0.76, offset=0.10)
    drawn = GestureScene(DVS128, np.random.default_rng(95001))
    scene = user.scene(DVS128)
    assert abs(scene.body.upper / 0.20 - 0.84) < 1e-12 and abs(scene.body.fore / 0.18 - 0.84) < 1e-12 and abs(scene.body.hand / 0.075 - 0.84) < 1e-12
    # The person's own proportions stay: shoulder width scales with the limbs; the head is not the build's.
    f = 0.84 / (drawn.body.upper / 0.20)
    assert abs(scene.body.shoulder - drawn.body.shoulder * f) < 1e-12 and scene.body.head == drawn.body.head
    assert scene.scale == 128 * 0.76 and scene.origin[0] == 64 + 0.10 * 128
    assert np.array_equal(scene.background, drawn.background)  # the same room and clothes as the seed draws

    schedule = [(1, 200_000, 700_000)]
    events = {}
    for session in (1, 2):
        source = user.source(session, schedule, 0.2)
        assert source._sequence.scene.body == scene.body  # every session is the same person
        events[session] = np.concatenate([c.events for c in source])
    assert len(events[1]) > 100 and len(events[2]) > 100
    assert not np.array_equal(events[1], events[2])  # another recording: other variation and noise

    # --sensor 640x480: the same person before a DVXplorer-sized camera, at that camera's scale
    wide = bench.OutOfRangeUser(95001, sensor=(640, 480))
    source = wide.source(1, schedule, 0.2)
    assert (source.sensor_size.width, source.sensor_size.height) == (640, 480)
    assert source._sequence.scene.scale == 480 * 0.76 and source._sequence.scene.origin[0] == 320 + 0.10 * 480
    ev = np.concatenate([c.events for c in source])
    assert len(ev) > 1000 and int(ev["x"].max()) >= 128 and int(ev["x"].max()) < 640 and int(ev["y"].max()) < 480
    assert "camera 640x480" in wide.describe()


def test_quick_run_records_fine_tunes_and_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "finetune.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    for needle in ("person seed 95001: build k 0.84", "collect: 2 runs (1 train, 1 held out by collect)",
                   "epoch 1/1 loss", "from the start of recording to a loadable checkpoint:", "calibrate: ",
                   "shipped spikformer_synth_stream_64", "decisions: spikformer_synth_stream_64.pt's (rule ema",
                   "lift, fine-tuned, --init's decisions (stage 1):", "lift, as the panel offers it (+ calibration):"):
        assert needle in text, needle

    results = json.loads((out / "finetune.json").read_text())
    assert results["quick"] is True
    checkpoint = Path(results["train"]["checkpoint"])
    from models import load_checkpoint

    loaded = load_checkpoint(str(checkpoint))
    assert loaded.model.num_classes == 11 and loaded.preprocessing["recipe"] == "stream"
    assert results["train"]["best"]["samples"] > 0  # the fine-tune's own held-out figure was parsed
    # Train's checkpoint carries the shipped model's decisions; the one the panel offers (its
    # calibration stage's PATH_calibrated.pt) those chosen on the held-out run.
    from evstream.dashboard.finetune import calibrated_path

    assert loaded.decision == load_checkpoint("spikformer_synth_stream_64").decision
    assert json.loads(json.dumps(loaded.decision)) == results["train"]["decision"]
    assert results["calibrate"]["checkpoint"] == calibrated_path(str(checkpoint))
    calibrated = load_checkpoint(results["calibrate"]["checkpoint"])
    assert json.loads(json.dumps(calibrated.decision)) == results["calibrate"]["decision"]
    for key in ("shipped", "uncalibrated", "panel"):
        report = results["eval"][key]
        assert 0.0 <= report["online_accuracy"] <= 1.0 and report["segments"] == 11
    for key in ("uncalibrated", "panel"):
        assert abs(results["lift_points"][key] - 100 * (results["eval"][key]["online_accuracy"]
                                                       - results["eval"]["shipped"]["online_accuracy"])) < 1e-9
    assert results["ready"]["wall_s"] >= results["train"]["wall_s"] > 0
    assert results["collect"]["stream_s"] == 2 * (11 * 1.5 + 0.5)  # 2 runs of 11 x (0.5 s rest + 1 s) + tail

    # Both sessions are IBM-layout folders that the loaders read, and never the same recordings.
    user_runs = sorted(p.name for p in (out / "user" / "DvsGesture").glob("*.aedat4"))
    held_runs = sorted(p.name for p in (out / "heldout" / "DvsGesture").glob("*.aedat4"))
    assert len(user_runs) == 2 and len(held_runs) == 1
    assert (out / "user" / "DvsGesture" / "trials_to_test.txt").read_text().split()
    first = read_events(out / "heldout" / "DvsGesture" / held_runs[0])
    assert len(first) > 0 and (out / "heldout" / "DvsGesture" / held_runs[0].replace(".aedat4", "_labels.csv")).is_file()

    # A second run into the same folder would add its runs to the first's: refused before recording.
    again = subprocess.run([sys.executable, str(REPO / "bench" / "finetune.py"), "--quick", "--out", str(out)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode != 0 and "holds recordings of an earlier run" in again.stderr
    assert sorted(p.name for p in (out / "user" / "DvsGesture").glob("*.aedat4")) == user_runs
