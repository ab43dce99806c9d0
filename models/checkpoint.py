"""Checkpoints: one file holding a Spikformer's architecture, weights, class names, the
preprocessing its inputs need, and how it was trained.

The file is a plain ``dict`` of ``str``/``int``/``float``/``list``/``dict``/tensors, so it loads with
``torch.load(..., weights_only=True)`` (no pickled classes, no code execution). A bare name such as
``"spikformer_synth_stream_64"`` resolves to the shipped ``models/weights/<name>.pt``.

Keys: ``format`` (``"evstream-spikformer"``), ``version``, ``model`` (registered variant name),
``config`` (:meth:`SpikformerConfig.to_dict`), ``class_names``, ``state_dict``, ``preprocessing``
(e.g. ``sensor``, ``out_size``, ``step_us``, ``steps``, ``mode``), ``metrics``, ``train_args``,
``decision``, ``weights_sha256`` and optionally ``train_state`` (optimizer, scheduler, epoch: what
``--resume`` needs).

``weights_sha256`` is :func:`weights_digest` of ``state_dict``: SHA-256 over every tensor in name
order (name, dtype, shape, then its bytes). Loading recomputes it and refuses a file whose tensors
differ (a flipped bit, an edited weight) with one line naming the file. It detects damage, not an
adversary, who can rewrite the field too. Checkpoints written before it existed have no such field;
they load unverified (:attr:`LoadedModel.weights_verified` is False), and :func:`update_checkpoint`
adds it.

``decision`` holds the online-decision settings calibrated for the weights, all optional:
``rule`` (``"ema"`` or ``"mean"``), ``threshold``, ``hysteresis``, ``smoothing_ms`` (EMA),
``mean_steps`` (mean rule; None = since reset) and ``window_steps`` (time steps per streaming
window for ``run`` and ``eval --stream``); see :func:`models.streaming.decision_options` and
:func:`models.streaming.default_window_steps`. ``python main.py eval --stream ... --calibrate``
writes them (:func:`update_checkpoint`).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evstream.errors import ConfigError, ModelError
from models.spikformer import Spikformer, SpikformerConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "WEIGHTS_DIR",
    "LoadedModel",
    "save_checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "list_weights",
    "unwrap_model",
    "update_checkpoint",
    "weights_digest",
]

CHECKPOINT_FORMAT = "evstream-spikformer"
_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass
class LoadedModel:
    """A checkpoint brought back to life.

    Attributes:
        model: the Spikformer, in eval mode, on the requested device.
        preprocessing: how frames were made for it (``sensor``, ``out_size``, ``step_us``, ``steps``, ``mode``, ...).
        class_names: one name per output.
        metrics: what training measured (e.g. ``top1``, ``epoch``).
        name: the checkpoint's name (file stem).
        arch: the registered variant name.
        path: the file it was read from.
        train_args: the training options.
        train_state: optimizer/scheduler/epoch when saved for resuming, else ``{}``.
        decision: recommended online-decision settings calibrated for these weights (``rule``,
            ``threshold``, ``hysteresis``, ``smoothing_ms``, ``mean_steps``, ``window_steps``; see the
            module docstring); ``{}`` = the StreamingClassifier's defaults.
        weights_verified: the file carried ``weights_sha256`` and its tensors matched it (False
            for checkpoints written before the checksum existed).
    """

    model: Spikformer
    preprocessing: dict[str, Any]
    class_names: tuple[str, ...]
    metrics: dict[str, Any]
    name: str
    arch: str
    path: Path
    train_args: dict[str, Any] = field(default_factory=dict)
    train_state: dict[str, Any] = field(default_factory=dict)
    decision: dict[str, Any] = field(default_factory=dict)
    weights_verified: bool = False


def weights_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a state dict: for each tensor in name order, its name, dtype and shape, then
    its bytes (C order, as stored on this little-endian CPU).

    Raises:
        TypeError: a key that is not a string or a value that is not a dense tensor.
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict, key=lambda k: (not isinstance(k, str), str(k))):
        tensor = state_dict[name]
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided:
            raise TypeError(f"entry {str(name)[:60]!r} is not a named dense tensor")
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{len(name)}:{name}|{data.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(data.view(torch.uint8).numpy() if data.numel() else b"")
    return digest.hexdigest()


def _load_payload(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with torch's own warnings kept off stderr (a rejected
    TorchScript or pickle file is one line, not three), and its reason shortened to one line.

    Raises:
        ModelError: the file is not a plain ``weights_only`` checkpoint.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for damaged files; the message names the file.
        text = str(err).strip()
        if "TorchScript" in text:
            reason = "a TorchScript archive, which is not loaded"
        elif text.startswith("Weights only load failed"):
            detail = [ln.strip() for ln in text.splitlines() if ln.strip().startswith(("WeightsUnpickler error", "Unsupported"))]
            reason = "holds pickled objects other than plain values and tensors, which are not loaded"
            reason += f": {detail[0].split('error: ')[-1].split(' was not an allowed')[0][:120]}" if detail else ""
        else:
            reason = text.splitlines()[0][:200] if text else type(err).__name__
        raise ModelError(f"{path}: unreadable checkpoint ({reason})") from err


def unwrap_model(model: nn.Module) -> Spikformer:
    """The Spikformer inside a DistributedDataParallel and/or ``torch.compile`` wrapper."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        else:
            break
    if not isinstance(model, Spikformer):
        raise ModelError(f"checkpoint: expected a Spikformer, got {type(model).__name__}")
    return model


def _plain(value: Any, where: str) -> Any:
    """Tuples → lists, numpy scalars → Python numbers; reject what ``weights_only`` cannot load."""
    if isinstance(value, dict):
        return {k if isinstance(k, int | str) else str(k): _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise ConfigError(f"{where}: {type(value).__name__} cannot be stored in a checkpoint (use plain values)")


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    preprocessing: dict[str, Any],
    class_names: tuple[str, ...] | list[str] | None = None,
    metrics: dict[str, Any] | None = None,
    train_args: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
    decision: dict[str, Any] | None = None,
) -> Path:
    """Write one self-describing checkpoint file (atomically: a temporary file, then a rename).

    Args:
        path: destination ``.pt`` file; parent folders are created.
        model: a Spikformer (possibly wrapped in DDP or ``torch.compile``), not BN-fused.
        preprocessing: frame parameters the model expects (``sensor``, ``out_size``, ``step_us``, ``steps``, ``mode``).
        class_names: default ``model.class_names``.
        metrics: evaluation results to keep with the weights.
        train_args: the training options, for the record.
        train_state: optimizer/scheduler state and epoch, for ``--resume``.
        decision: recommended streaming decision settings (``rule``, ``threshold``, ``hysteresis``,
            ``smoothing_ms``, ``mean_steps``, ``window_steps``).

    Returns:
        The path written.
    """
    net = unwrap_model(model)
    if any(isinstance(m, nn.Identity) for m in net.modules()):
        raise ModelError(f"{os.fspath(path)}: model {net.name} is BN-fused (fuse_for_inference); save before fusing")
    names = list(net.class_names if class_names is None else class_names)
    if len(names) != net.num_classes:
        raise ModelError(f"{os.fspath(path)}: {len(names)} class names for a model with {net.num_classes} outputs")
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": _VERSION,
        "model": net.name,
        "config": net.config.to_dict(),
        "class_names": names,
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "preprocessing": _plain(preprocessing, "preprocessing"),
        "metrics": _plain(metrics or {}, "metrics"),
        "train_args": _plain(train_args or {}, "train_args"),
        "decision": _plain(decision or {}, "decision"),
    }
    payload["weights_sha256"] = weights_digest(payload["state_dict"])
    if train_state:
        payload["train_state"] = _plain(train_state, "train_state")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def update_checkpoint(
    source: str | os.PathLike,
    out: str | os.PathLike,
    *,
    decision: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Copy a checkpoint to ``out`` with its ``decision`` dict replaced and ``metrics`` merged in.

    Everything else (weights, preprocessing, training record) is copied as it is; a source without
    ``weights_sha256`` gets one. Written atomically; ``out`` may not be the source file itself.

    Raises:
        ModelError: the source is not a readable checkpoint, or ``out`` is the source.
    """
    path = resolve_checkpoint(source)
    out = Path(out)
    if out.exists() and out.resolve() == path.resolve():
        raise ModelError(f"{out}: is the source checkpoint; write the updated copy to another file")
    load_checkpoint(path)  # validates the file (format, weights, checksum) before anything is written
    payload = _load_payload(path)
    payload["weights_sha256"] = weights_digest(payload["state_dict"])  # added to an older file
    if decision is not None:
        payload["decision"] = _plain(decision, "decision")
    if metrics:
        payload["metrics"] = {**payload.get("metrics", {}), **_plain(metrics, "metrics")}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, out)
    return out


def list_weights() -> list[str]:
    """Names of the shipped checkpoints present in ``models/weights/``."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt"))


def resolve_checkpoint(path_or_name: str | os.PathLike) -> Path:
    """A file path as given, or a bare shipped name → ``models/weights/<name>.pt``.

    Raises:
        ModelError: no such file or shipped name (the message lists the shipped names).
    """
    path = Path(path_or_name)
    if path.is_file():
        return path
    text = os.fspath(path_or_name)
    if path.suffix == "" and os.sep not in text and "/" not in text:
        shipped = WEIGHTS_DIR / f"{text}.pt"
        if shipped.is_file():
            return shipped
        available = ", ".join(list_weights()) or "none"
        raise ModelError(f"checkpoint: no file or shipped weights named {text!r} (shipped: {available})")
    raise ModelError(f"{text}: checkpoint file not found")


# preprocessing keys with a checked type: (kind, low, high); others are kept as they are.
_PREPROCESSING = {"sensor": ("pair", 1, 32767), "out_size": ("pair", 1, 1024), "steps": ("int", 1, 1024),
                  "step_us": ("int", 1, 60_000_000), "mode": ("str", 1, 32), "burn_in": ("int", 0, 1024)}


def _check_fields(path: Path, payload: dict, config: SpikformerConfig) -> None:
    """Reject bad ``class_names``, ``decision`` and ``preprocessing`` before any module is built."""
    from models.streaming import decision_options

    names = payload["class_names"]
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) and len(n) <= 256 for n in names):
        raise ModelError(f"{path}: field 'class_names': expected a list of short strings")
    if len(names) != config.num_classes:
        raise ModelError(f"{path}: field 'class_names': {len(names)} names for {config.num_classes} outputs")
    for key in ("decision", "preprocessing", "metrics", "train_args", "train_state"):
        if not isinstance(payload.get(key, {}), dict):
            raise ModelError(f"{path}: field {key!r}: expected a dict, got {type(payload[key]).__name__}")
    decision = payload.get("decision", {})
    try:
        decision_options(decision, model_steps=config.steps)
    except (ConfigError, TypeError) as err:
        raise ModelError(f"{path}: field 'decision': {err}") from None
    window = decision.get("window_steps")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= 1024):
        raise ModelError(f"{path}: field 'decision.window_steps': expected an integer 1 ... 1024, got {window!r}")
    for key, (kind, lo, hi) in _PREPROCESSING.items():
        if key not in payload.get("preprocessing", {}):
            continue
        value = payload["preprocessing"][key]
        if kind == "str":
            ok = isinstance(value, str) and lo <= len(value) <= hi
        else:
            items = value if kind == "pair" else [value]
            ok = (isinstance(items, list | tuple) and len(items) == (2 if kind == "pair" else 1)
                  and all(not isinstance(v, bool) and isinstance(v, int) and lo <= v <= hi for v in items))
        if not ok:
            what = {"pair": "two integers", "int": "an integer", "str": "a string"}[kind]
            text = repr(value)
            raise ModelError(f"{path}: field 'preprocessing.{key}': expected {what} {lo} ... {hi}, "
                             f"got {text if len(text) <= 40 else text[:37] + '...'}")


def load_checkpoint(
    path_or_name: str | os.PathLike,
    *,
    model: str | None = None,
    num_classes: int | None = None,
    device: str | torch.device | None = None,
) -> LoadedModel:
    """Read a checkpoint and rebuild its model in eval mode.

    Args:
        path_or_name: a ``.pt`` file, or the name of shipped weights (see :func:`list_weights`).
        model: when given, the registered variant the checkpoint must hold.
        num_classes: when given, the class count the checkpoint must have.
        device: where to put the model (default CPU).

    Raises:
        ModelError: unknown name, unreadable or foreign file (TorchScript, other pickles), weights
            that do not match their ``weights_sha256``, another architecture or class count than
            requested, missing or unexpected weights (one line naming the file, nothing from torch
            on stderr).
    """
    path = resolve_checkpoint(path_or_name)
    payload = _load_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path}: not an evstream Spikformer checkpoint (field 'format' missing or different)")
    for key in ("model", "config", "class_names", "state_dict"):
        if key not in payload:
            raise ModelError(f"{path}: field {key!r} missing")
    if not isinstance(payload["state_dict"], dict):
        raise ModelError(f"{path}: field 'state_dict': expected a dict of tensors, got {type(payload['state_dict']).__name__}")
    arch = str(payload["model"])
    if model is not None and arch != model:
        raise ModelError(f"{path}: field 'model' is {arch!r}, expected {model!r}")
    try:
        config = SpikformerConfig.from_dict(payload["config"])
    except (ConfigError, TypeError) as err:
        raise ModelError(f"{path}: field 'config': {err}") from err
    if num_classes is not None and config.num_classes != num_classes:
        raise ModelError(f"{path}: field 'config.num_classes' is {config.num_classes}, expected {num_classes}")
    _check_fields(path, payload, config)
    class_names = tuple(str(n) for n in payload["class_names"])
    try:
        net = Spikformer(config, class_names=class_names, name=arch)
    except ConfigError as err:
        raise ModelError(f"{path}: {err}") from err
    try:
        result = net.load_state_dict(payload["state_dict"], strict=False)
    except RuntimeError as err:  # a tensor of another shape
        lines = [ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln] or [str(err).splitlines()[0]]
        raise ModelError(f"{path}: field 'state_dict': {lines[0].rstrip('.')}") from err
    if result.missing_keys or result.unexpected_keys:
        parts = []
        if result.missing_keys:
            parts.append(f"missing {len(result.missing_keys)} (e.g. {result.missing_keys[0]})")
        if result.unexpected_keys:
            parts.append(f"unexpected {len(result.unexpected_keys)} (e.g. {result.unexpected_keys[0]})")
        raise ModelError(f"{path}: field 'state_dict': weights do not match {arch}: {'; '.join(parts)}")
    verified = _verify_weights(path, payload)
    net.eval()
    if device is not None:
        net.to(device)
    return LoadedModel(
        model=net,
        preprocessing=dict(payload.get("preprocessing", {})),
        class_names=class_names,
        metrics=dict(payload.get("metrics", {})),
        name=path.stem,
        arch=arch,
        path=path,
        train_args=dict(payload.get("train_args", {})),
        train_state=dict(payload.get("train_state", {})),
        decision=dict(payload.get("decision", {})),
        weights_verified=verified,
    )


def _verify_weights(path: Path, payload: dict) -> bool:
    """Check ``weights_sha256`` against the tensors; False when the file has none (older files).

    Raises:
        ModelError: ``state_dict`` holds something other than named tensors, the field is
            malformed, or the tensors do not match it (the file was modified or damaged).
    """
    try:
        digest = weights_digest(payload["state_dict"])
    except (TypeError, RuntimeError) as err:
        raise ModelError(f"{path}: field 'state_dict': {err}") from None
    expected = payload.get("weights_sha256")
    if expected is None:
        return False
    if not isinstance(expected, str) or len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ModelError(f"{path}: field 'weights_sha256': expected 64 lowercase hex digits")
    if digest != expected:
        raise ModelError(f"{path}: weights checksum mismatch: the file was modified or damaged "
                         "(its tensors' SHA-256 is not field 'weights_sha256')")
    return True
