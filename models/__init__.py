"""The network side of evstream: the Spikformer, its registry, checkpoints and shipped weights.

``create_model(name, **overrides)`` builds a registered variant (``list_models()``);
``load_checkpoint(path_or_name)`` rebuilds a trained one, where a bare name is one of the shipped
checkpoints in ``models/weights/`` (``list_weights()``; the application loads ``DEFAULT_WEIGHTS``).
"""

from __future__ import annotations

from models.checkpoint import LoadedModel, list_weights, load_checkpoint, save_checkpoint
from models.multistream import MultiStreamClassifier
from models.spikformer import (
    Capture,
    Spikformer,
    SpikformerConfig,
    create_model,
    list_models,
    register_model,
)
from models.streaming import Prediction, StreamingClassifier

__all__ = [
    "DEFAULT_WEIGHTS",
    "Capture",
    "Spikformer",
    "SpikformerConfig",
    "LoadedModel",
    "create_model",
    "list_models",
    "register_model",
    "load_checkpoint",
    "save_checkpoint",
    "list_weights",
    "StreamingClassifier",
    "MultiStreamClassifier",
    "Prediction",
]

# Name of the shipped checkpoint the application loads by default (models/weights/<name>.pt):
# spikformer_2_64 trained on the synthetic gesture set (see its model card).
DEFAULT_WEIGHTS: str = "spikformer_synth_stream_64"
