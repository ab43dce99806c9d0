"""Fine-tuning with ``--init``: the data's class names (``classes.txt``) decide whether the head is kept."""

from __future__ import annotations

import pytest
import torch

import models
from evstream.errors import ConfigError, ModelError
from evstream.labels import DVS_GESTURE_CLASSES, write_class_names
from models.checkpoint import save_checkpoint
from models.data import dataset_class_names
from models.train import TrainConfig, _initial_model


@pytest.fixture
def start(tmp_path):
    torch.manual_seed(1)
    model = models.create_model("spikformer_tiny", steps=4)
    path = save_checkpoint(tmp_path / "start.pt", model, preprocessing={"step_us": 40_000})
    return models.load_checkpoint(path)


def _config(tmp_path, **kw) -> TrainConfig:
    return TrainConfig(data=str(tmp_path), out=str(tmp_path / "x.pt"), model=None, init="unused", step_ms=None, **kw)


def test_new_class_names_replace_the_head_and_keep_the_backbone(start, tmp_path, capsys):
    names = ("wave", "push", "pull", "no gesture")
    model = _initial_model(_config(tmp_path), names, start, announce=True)
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "backbone kept, head re-initialised" in line and "4 classes" in line
    assert model.class_names == names and model.num_classes == 4 and model.name == "spikformer_tiny"
    assert model.head.weight.shape == (4, start.model.config.embed_dim)
    before, after = start.model.state_dict(), model.state_dict()
    body = [k for k in before if not k.startswith("head.")]
    assert body and all(torch.equal(before[k], after[k]) for k in body)
    assert model.config.img_size == start.model.config.img_size and model.config.steps == 4


def test_same_class_names_keep_every_weight(start, tmp_path, capsys):
    model = _initial_model(_config(tmp_path), DVS_GESTURE_CLASSES, start, announce=True)
    assert "every weight loaded" in capsys.readouterr().out
    before, after = start.model.state_dict(), model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_same_count_other_names_still_replace_the_head(start, tmp_path, capsys):
    names = tuple(f"mine {i}" for i in range(11))
    model = _initial_model(_config(tmp_path), names, start, announce=True)
    assert "head re-initialised" in capsys.readouterr().out
    assert not torch.equal(model.head.weight, start.model.head.weight)


def test_class_names_come_from_classes_txt(tmp_path):
    assert dataset_class_names(tmp_path) == DVS_GESTURE_CLASSES
    (tmp_path / "DvsGesture").mkdir()
    write_class_names(tmp_path / "DvsGesture", ["a", "b"])
    assert dataset_class_names(tmp_path) == ("a", "b")
    (tmp_path / "DvsGesture" / "classes.txt").write_text("a\na\n")
    with pytest.raises(ModelError, match="classes.txt: a class is named twice"):
        dataset_class_names(tmp_path)


def test_init_step_is_taken_only_when_no_step_is_given(tmp_path):
    with pytest.raises(ConfigError, match="step_ms"):
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "x.pt"), step_ms=None)
    assert _config(tmp_path).step_ms is None
