"""``eval`` gives the same figures when run twice: fixed windows on every split and path.

The data is a miniature copy of IBM's DVS128 Gesture layout (AEDAT 3.1 recordings with
``_labels.csv`` and the split lists), each gesture longer than one window, so windows drawn at
random would differ from run to run; the model is the real ``spikformer_tiny`` with BatchNorm
gains that make every layer fire, so its output depends on which window it sees.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from evstream.cli import main
from evstream.events import SensorSize
from evstream.io.aedat3 import write_aedat3
from models.checkpoint import save_checkpoint
from models.spikformer import create_model
from tests.helpers import random_events

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SENSOR = SensorSize(128, 128)
STEPS, STEP_US = 4, 20_000  # windows of 80 ms
# Per recording: (0-based label, start µs, end µs); 200-330 ms gestures hold 2-4 whole windows each.
TRAIN = {"user01_natural": [(0, 1_000_000, 1_200_000), (4, 1_300_000, 1_630_000)]}
TEST = {"user02_led": [(2, 2_000_000, 2_250_000), (10, 2_300_000, 2_500_000)]}
WHOLE_WINDOWS = {"train": 2 + 4, "test": 3 + 2}  # floor(duration / 80 ms) per gesture


def write_ibm(root) -> None:
    folder = root / "DvsGesture"
    folder.mkdir(parents=True)
    for seed, (split, recordings) in enumerate((("train", TRAIN), ("test", TEST))):
        (folder / f"trials_to_{split}.txt").write_text("".join(f"{name}.aedat\n" for name in recordings))
        for name, rows in recordings.items():
            first, last = rows[0][1] - 100_000, rows[-1][2] + 100_000
            write_aedat3(folder / f"{name}.aedat", random_events(20_000, SENSOR, first, last - first, seed=seed))
            lines = ["class,startTime_usec,endTime_usec"] + [f"{lab + 1},{t0},{t1}" for lab, t0, t1 in rows]
            (folder / f"{name}_labels.csv").write_text("\r\n".join(lines) + "\r\n")


def firing_checkpoint(path):
    torch.manual_seed(3)
    model = create_model("spikformer_tiny", steps=STEPS)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.weight.fill_(4.0)
                module.bias.fill_(0.5)
    pre = {"sensor": [128, 128], "out_size": [32, 32], "steps": STEPS, "step_us": STEP_US, "mode": "time"}
    return save_checkpoint(path, model, preprocessing=pre)


@pytest.fixture()
def dataset_and_checkpoint(tmp_path):
    write_ibm(tmp_path / "data")
    return tmp_path / "data", firing_checkpoint(tmp_path / "firing.pt")


@pytest.mark.parametrize("split", ["train", "test"])
def test_offline_eval_twice_gives_identical_results(dataset_and_checkpoint, tmp_path, split):
    data, ckpt = dataset_and_checkpoint
    results = []
    for run in range(3):
        out = tmp_path / f"run{run}"
        assert main(["eval", "--data", str(data), "--split", split, "--model", str(ckpt), "--out", str(out)]) == 0
        results.append(json.loads((out / "offline_eval.json").read_text()))
    first = results[0]
    # Every whole window of every gesture, back to back from its start, whatever the split.
    assert first["samples"] == WHOLE_WINDOWS[split]
    for again in results[1:]:
        assert again["loss"] == first["loss"]  # the mean cross-entropy: any other window moves it
        assert again["confusion"] == first["confusion"] and again["correct"] == first["correct"]
    assert first["loss"] > 0


def test_online_eval_twice_gives_identical_results(dataset_and_checkpoint, tmp_path):
    data, ckpt = dataset_and_checkpoint
    reports = []
    for run in range(2):
        out = tmp_path / f"online{run}"
        args = ["eval", "--stream", str(data), "--split", "train", "--model", str(ckpt), "--out", str(out)]
        assert main([*args, "--window-steps", "2", "--threshold", "0.01", "--hysteresis", "0"]) == 0  # decide every step
        reports.append(json.loads((out / "online_eval.json").read_text()))
    timing = {"realtime_factor", "infer_ms", "recordings"}  # wall-clock figures (recordings: each one's wall_s)
    first, again = ({k: v for k, v in r.items() if k not in timing} for r in reports)
    assert first["decisions"] > 0 and sum(map(sum, first["confusion"])) > 0
    assert again == first
