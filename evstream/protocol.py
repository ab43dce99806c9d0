"""Wire schema of the published stream and of the control socket. No sockets here, only bytes.

A published message is a ZeroMQ multipart ``[topic, header, *buffers]`` (zguide ch. 2):

- ``topic``: one of :data:`TOPICS` as ASCII; none is a prefix of another, so a SUB filter on
  one topic never matches a second one.
- ``header``: a msgpack map ``{"v": SCHEMA_VERSION, "type": topic, "seq": n, "pub": publisher id,
  "t0": window start µs | None, "t1": window end µs | None, "ns": send time (time.time_ns()),
  "data": {topic fields}, "arrays": [[name, dtype str, shape], ...]}``.
- one raw, C-contiguous buffer per entry of ``"arrays"``, in order. Never pickled.

``seq`` counts per topic from 0 in each publisher, so a subscriber sees its own losses.

Topic fields (``data``) and arrays:

========  ==========================================================================================
pred      data: ``label`` (int, -1 = no gesture), ``name``, ``confidence``, ``changed`` (bool),
          ``infer_ms``, ``resets``, ``energy_uj``, ``events``, ``lag_ms`` (window closed ->
          published), ``smoothed_kind`` (what ``smoothed`` is: ``ema_softmax``,
          ``softmax_mean_logits_last_N`` or ``softmax_mean_logits_since_reset``); arrays: ``probs``
          float32 [C] (mean per-step softmax of this window), ``smoothed`` float32 [C] (what the
          decision threshold acts on)
frame     data: ``sensor`` [w, h]; arrays: ``counts`` uint8 [2, H, W] (OFF, ON event counts over
          the window at sensor resolution, saturated at 255)
spikes    data: ``layers`` [names], ``sparsity`` {layer: fraction of silent neurons};
          arrays: one float32 [h, w] firing-rate map per layer, named after the layer
attn      data: ``blocks`` n, ``heads`` n, ``grid`` [gh, gw]; arrays: ``qk`` float32
          [blocks, heads, N, N] (QKᵀ, mean over the window's steps), ``frame`` float32 [H, W]
stats     data: ``windows``, ``dropped_windows``, ``resets``, ``events_on``, ``events_off``,
          ``event_rate`` (ev/s), ``infer_ms``, ``lag_ms``, ``window_ms``, ``realtime_factor``
status    data: ``schema``, ``classes`` [names], ``sensor`` [w, h], ``model``, ``source``,
          ``state`` (starting | running | paused | ended | error), ``message``, ``live`` (bool),
          ``position_us``, ``duration_us`` (None when live), ``speed``, ``loop``, ``recording``,
          ``control`` (address of the control socket, or None), ``windows``,
          ``dropped_windows``, ``resets``
========  ==========================================================================================

The control socket (REQ/REP) carries one msgpack map each way: request ``{"cmd": name, ...}``
with the arguments of :data:`CONTROL_COMMANDS`; reply ``{"ok": True, ...}`` or
``{"ok": False, "error": "one line"}``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import msgpack
import numpy as np

from evstream.errors import ProtocolError

__all__ = [
    "SCHEMA_VERSION",
    "TOPICS",
    "HEAVY_TOPICS",
    "CONTROL_COMMANDS",
    "Message",
    "encode",
    "decode",
    "encode_control",
    "decode_control",
]

SCHEMA_VERSION = 1
TOPICS = ("pred", "frame", "spikes", "attn", "stats", "status")
# Produced only while somebody subscribes to them (the publisher tracks XPUB subscriptions).
HEAVY_TOPICS = ("frame", "spikes", "attn")

# command -> {argument: python type}; the pipeline implements each one.
CONTROL_COMMANDS: dict[str, dict[str, type]] = {
    "pause": {},
    "resume": {},
    "step": {},  # while paused: advance one window
    "seek": {"t_us": int},  # replay: offset from the recording's start, µs
    "speed": {"value": float},  # replay: 0.25 ... 4, or 0 for as fast as possible
    "loop": {"value": bool},
    "reset": {},  # reset the model's LIF state
    "record_start": {"path": str},
    "record_stop": {},
    "status": {},
}

_ALLOWED_DTYPES = {"|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8", "|b1"}


@dataclass
class Message:
    """A decoded published message."""

    topic: str
    seq: int
    publisher: str
    t_start: int | None
    t_end: int | None
    send_ns: int
    data: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    version: int = SCHEMA_VERSION


def encode(
    topic: str,
    seq: int,
    publisher: str,
    data: dict | None = None,
    arrays: dict[str, np.ndarray] | None = None,
    t_start: int | None = None,
    t_end: int | None = None,
) -> list:
    """Frames of one message: ``[topic, header, *buffers]`` (buffers are zero-copy memoryviews)."""
    if topic not in TOPICS:
        raise ProtocolError(f"unknown topic {topic!r}; topics are {', '.join(TOPICS)}")
    descriptors, buffers = [], []
    for name, array in (arrays or {}).items():
        array = np.ascontiguousarray(array)
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("<"))
        descriptors.append([name, array.dtype.str, list(array.shape)])
        buffers.append(memoryview(array).cast("B") if array.size else b"")
    header = {
        "v": SCHEMA_VERSION,
        "type": topic,
        "seq": int(seq),
        "pub": publisher,
        "t0": None if t_start is None else int(t_start),
        "t1": None if t_end is None else int(t_end),
        "ns": time.time_ns(),
        "data": data or {},
        "arrays": descriptors,
    }
    return [topic.encode("ascii"), msgpack.packb(header, use_bin_type=True), *buffers]


def decode(frames: list) -> Message:
    """Decode ``[topic, header, *buffers]``; arrays are read-only views on the received bytes.

    Raises:
        ProtocolError: naming the field that is missing or inconsistent.
    """
    if len(frames) < 2:
        raise ProtocolError(f"message has {len(frames)} frame(s), expected at least topic and header")
    topic = bytes(frames[0]).decode("ascii", "replace")
    try:
        header = msgpack.unpackb(bytes(frames[1]), raw=False, strict_map_key=False)
    except Exception as err:  # msgpack raises several unrelated types
        raise ProtocolError(f"topic {topic!r}: header is not msgpack ({err})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"topic {topic!r}: header is not a map")
    for key in ("v", "type", "seq", "pub", "data", "arrays"):
        if key not in header:
            raise ProtocolError(f"topic {topic!r}: header field {key!r} missing")
    if header["type"] != topic:
        raise ProtocolError(f"topic {topic!r}: header field 'type' says {header['type']!r}")
    descriptors = header["arrays"]
    if not isinstance(descriptors, list) or len(descriptors) != len(frames) - 2:
        raise ProtocolError(f"topic {topic!r}: header field 'arrays' lists {len(descriptors)} arrays, message carries {len(frames) - 2}")
    arrays = {}
    for desc, buf in zip(descriptors, frames[2:], strict=True):
        try:
            name, dtype_str, shape = desc
            if dtype_str not in _ALLOWED_DTYPES:
                raise ValueError(f"dtype {dtype_str!r} not allowed")
            dtype = np.dtype(dtype_str)
            shape = tuple(int(s) for s in shape)
            raw = memoryview(buf)
            if int(np.prod(shape, dtype=np.int64)) * dtype.itemsize != raw.nbytes:
                raise ValueError(f"shape {shape} x {dtype} does not match {raw.nbytes} bytes")
            arrays[str(name)] = np.frombuffer(raw, dtype=dtype).reshape(shape)
        except (ValueError, TypeError) as err:
            raise ProtocolError(f"topic {topic!r}: header field 'arrays' entry {desc!r}: {err}") from None
    return Message(
        topic=topic,
        seq=int(header["seq"]),
        publisher=str(header["pub"]),
        t_start=header.get("t0"),
        t_end=header.get("t1"),
        send_ns=int(header.get("ns", 0)),
        data=header["data"] if isinstance(header["data"], dict) else {},
        arrays=arrays,
        version=int(header["v"]),
    )


def encode_control(cmd: str, **args) -> bytes:
    """A control request ``{"cmd": cmd, **args}`` as msgpack."""
    return msgpack.packb({"cmd": cmd, **args}, use_bin_type=True)


def decode_control(raw: bytes) -> dict:
    """Validate a control request; return ``{"cmd": ..., args...}`` with arguments converted.

    Raises:
        ProtocolError: not msgpack, not a map, unknown command, missing or mistyped argument.
    """
    try:
        request = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as err:
        raise ProtocolError(f"control request is not msgpack ({err})") from None
    if not isinstance(request, dict) or "cmd" not in request:
        raise ProtocolError("control request must be a map with a 'cmd' field")
    cmd = request["cmd"]
    if cmd not in CONTROL_COMMANDS:
        raise ProtocolError(f"unknown control command {cmd!r}; known: {', '.join(CONTROL_COMMANDS)}")
    out = {"cmd": cmd}
    for arg, kind in CONTROL_COMMANDS[cmd].items():
        if arg not in request:
            raise ProtocolError(f"control command {cmd!r}: argument {arg!r} missing")
        value = request[arg]
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = float(value)
        elif kind is int and isinstance(value, int) and not isinstance(value, bool):
            value = int(value)
        elif not isinstance(value, kind):
            raise ProtocolError(f"control command {cmd!r}: argument {arg!r} must be {kind.__name__}, got {type(value).__name__}")
        out[arg] = value
    return out
