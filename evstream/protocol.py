"""Wire schema of the published stream and of the control socket. No sockets here, only bytes.

A published message is a ZeroMQ multipart ``[topic, header, *buffers]`` (zguide ch. 2):

- ``topic``: one of :data:`TOPICS` as ASCII; none is a prefix of another, so a SUB filter on
  one topic never matches a second one.
- ``header``: a msgpack map ``{"v": SCHEMA_VERSION, "type": topic, "seq": n, "pub": publisher id,
  "sid": stream id, "t0": window start µs | None, "t1": window end µs | None, "ns": send time
  (time.time_ns()), "data": {topic fields}, "arrays": [[name, dtype str, shape], ...]}``.
- one raw, C-contiguous buffer per entry of ``"arrays"``, in order. Never pickled.

``sid`` (optional, int >= 0, default 0): which of the pipeline's sources the message is about,
when one pipeline serves several (``python main.py --replay A --replay B``, :mod:`evstream.multipipeline`);
``pred``, ``frame``, ``spikes``, ``attn`` and ``stats`` carry their stream's id, ``status`` speaks
for the whole pipeline and carries 0. A single-source pipeline sends 0 everywhere.

``seq`` counts per topic and stream (``(type, sid)``) from 0 in each publisher, so a subscriber
of one stream, or of all, sees its own losses; with one stream that is per topic, as before.
Fields marked optional below were added within schema version 1: a subscriber reads them with a
default, so messages of older publishers still parse (``sid`` absent = stream 0). A subscriber
older than ``sid`` reading a several-stream publisher sees the streams interleaved on each topic
(their ``seq`` restarting per stream looks like gaps to it); one source is unchanged.

Topic fields (``data``) and arrays:

========  ==========================================================================================
pred      data: ``label`` (int, -1 = no gesture), ``name``, ``confidence``, ``changed`` (bool),
          ``infer_ms``, ``resets``, ``energy_uj``, ``events``, ``lag_ms`` (window closed ->
          published), ``smoothed_kind`` (what ``smoothed`` is: ``ema_softmax``,
          ``softmax_mean_logits_last_N`` or ``softmax_mean_logits_since_reset``), ``truth``
          (optional: the true class at the window's end, 0-based, -1 = no gesture, as online
          evaluation scores it; None or absent when the source does not know); arrays: ``probs``
          float32 [C] (mean per-step softmax of this window), ``smoothed`` float32 [C] (what the
          decision threshold acts on)
frame     data: ``sensor`` [w, h]; arrays: ``counts`` uint8 [2, H, W] (OFF, ON event counts over
          the window at sensor resolution, saturated at 255)
spikes    data: ``layers`` [names], ``sparsity`` {layer: fraction of map positions with no
          spike in the window}; arrays: one float32 [h, w] firing-rate map per layer (spikes per
          neuron per step, averaged over channels and steps; its mean is the layer's firing rate)
attn      data: ``blocks`` n, ``heads`` n, ``grid`` [gh, gw]; arrays: ``qk`` float32
          [blocks, heads, N, N] (QKᵀ, mean over the window's steps), ``frame`` float32 [H, W]
stats     data: ``windows``, ``dropped_windows``, ``resets``, ``events_on``, ``events_off``,
          ``event_rate`` (ev/s), ``infer_ms``, ``lag_ms``, ``window_ms``, ``realtime_factor``;
          header ``t0``/``t1``: the window the figures describe (nil in older publishers)
status    data: ``schema``, ``classes`` [names], ``sensor`` [w, h], ``model``, ``source``,
          ``state`` (starting | running | paused | ended | error), ``message``, ``live`` (bool),
          ``position_us``, ``duration_us`` (None when live), ``speed``, ``loop``, ``recording``,
          ``control`` (address of the control socket, or None), ``windows``,
          ``dropped_windows``, ``resets``; optional: ``origin_us`` (sensor µs that relative
          times count from: a recording's first event), ``record_dir`` (the folder
          ``record_start`` paths are relative to), ``geometry`` (``{"mode": crop |
          letterbox, "input": [w, h], "view": [x, y, w, h]}``: the sensor rectangle whose events
          reach the model), ``decision`` (the decision rule: ``rule``, ``threshold``,
          ``hysteresis``, ``smoothing_ms`` or ``mean_steps``), ``streams`` (a pipeline of several
          sources: ``[{"sid": n, "source": name, "sensor": [w, h], "live": bool, "state":
          running | ended, "windows": n}, ...]``; absent or one entry for one source)
========  ==========================================================================================

The control socket (REQ/REP) carries one msgpack map each way: request ``{"cmd": name, ...}``
with the arguments of :data:`CONTROL_COMMANDS` (and the optional ones of
:data:`CONTROL_OPTIONS`); reply ``{"ok": True, ...}`` or ``{"ok": False, "error": "one line"}``.
An error quotes at most :data:`EXCERPT_CHARS` characters of a bad argument.

Decoding never trusts the peer: every header field is type-checked (a wrong type is a
:class:`~evstream.errors.ProtocolError`, like a missing one), and nothing is ever unpickled.
"""

from __future__ import annotations

import math
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
    "CONTROL_OPTIONS",
    "EXCERPT_CHARS",
    "MAX_ARRAY_DIMS",
    "Message",
    "excerpt",
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
    "speed": {"value": float},  # replay: 0.1 ... 100, or 0 for as fast as possible
    "loop": {"value": bool},
    "reset": {},  # reset the model's LIF state
    "record_start": {"path": str},  # inside the pipeline's recordings folder
    "record_stop": {},
    "status": {},
    "load_model": {"path": str},  # a checkpoint file or shipped-weights name; swapped in between windows
}
# command -> {optional argument: python type}
CONTROL_OPTIONS: dict[str, dict[str, type]] = {
    "record_start": {"overwrite": bool},  # replace an existing file (default: refuse)
}

# Most characters of a peer's value quoted back in an error (a 10 MB path is not echoed whole).
EXCERPT_CHARS = 80
MAX_ARRAY_DIMS = 8

_ALLOWED_DTYPES = {"|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8", "|b1"}


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters (with the full length when cut), for error messages."""
    if isinstance(value, (str, bytes)) and len(value) > 4 * limit:
        value = value[: 4 * limit]  # repr of a huge value is never built
        text = repr(value)
        return f"{text[:limit]}… ({len(value)}+ chars)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
    stream: int = 0  # header "sid": the pipeline's source this message is about


def encode(
    topic: str,
    seq: int,
    publisher: str,
    data: dict | None = None,
    arrays: dict[str, np.ndarray] | None = None,
    t_start: int | None = None,
    t_end: int | None = None,
    stream: int = 0,
) -> list:
    """Frames of one message: ``[topic, header, *buffers]`` (buffers are zero-copy memoryviews).

    ``stream`` is the header's ``sid`` (the pipeline's source the message is about; 0 for one source).
    """
    if topic not in TOPICS:
        raise ProtocolError(f"unknown topic {topic!r}; topics are {', '.join(TOPICS)}")
    if not _is_int(stream) or stream < 0:
        raise ProtocolError(f"stream id must be an integer >= 0, got {excerpt(stream)}")
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
        "sid": int(stream),
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
        ProtocolError: naming the field that is missing, of the wrong type or inconsistent.
    """
    if len(frames) < 2:
        raise ProtocolError(f"message has {len(frames)} frame(s), expected at least topic and header")
    topic = bytes(frames[0][:64]).decode("ascii", "replace")
    where = f"topic {excerpt(topic)}"
    try:
        header = msgpack.unpackb(bytes(frames[1]), raw=False, strict_map_key=False)
    except Exception as err:  # msgpack raises several unrelated types
        raise ProtocolError(f"{where}: header is not msgpack ({excerpt(str(err))})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"{where}: header is not a map")
    for key in ("v", "type", "seq", "pub", "data", "arrays"):
        if key not in header:
            raise ProtocolError(f"{where}: header field {key!r} missing")
    if header["type"] != topic:
        raise ProtocolError(f"{where}: header field 'type' says {excerpt(header['type'])}")
    header.setdefault("sid", 0)  # optional: publishers older than several streams per pipeline
    for key in ("v", "seq", "sid"):
        if not _is_int(header[key]) or header[key] < 0:
            raise ProtocolError(f"{where}: header field {key!r} must be an integer >= 0, got {excerpt(header[key])}")
    if not isinstance(header["pub"], str):
        raise ProtocolError(f"{where}: header field 'pub' must be a string, got {type(header['pub']).__name__}")
    for key in ("t0", "t1", "ns"):
        value = header.get(key)
        if value is not None and not _is_int(value):
            raise ProtocolError(f"{where}: header field {key!r} must be an integer or nil, got {excerpt(value)}")
    if not isinstance(header["data"], dict):
        raise ProtocolError(f"{where}: header field 'data' must be a map, got {type(header['data']).__name__}")
    descriptors = header["arrays"]
    if not isinstance(descriptors, list):
        raise ProtocolError(f"{where}: header field 'arrays' must be a list, got {type(descriptors).__name__}")
    if len(descriptors) != len(frames) - 2:
        raise ProtocolError(f"{where}: header field 'arrays' lists {len(descriptors)} arrays, message carries {len(frames) - 2}")
    arrays = {}
    for i, (desc, buf) in enumerate(zip(descriptors, frames[2:], strict=True)):
        try:
            arrays.update([_array(desc, buf)])
        except (ValueError, TypeError, OverflowError) as err:
            raise ProtocolError(f"{where}: header field 'arrays' entry {i}: {excerpt(str(err))}") from None
    return Message(
        topic=topic,
        seq=header["seq"],
        publisher=header["pub"],
        t_start=header.get("t0"),
        t_end=header.get("t1"),
        send_ns=header.get("ns") or 0,
        data=header["data"],
        arrays=arrays,
        version=header["v"],
        stream=header["sid"],
    )


def _array(desc: object, buf: object) -> tuple[str, np.ndarray]:
    """One ``[name, dtype, shape]`` descriptor and its buffer as ``(name, read-only array)``."""
    if not isinstance(desc, list) or len(desc) != 3:
        raise ValueError("must be [name, dtype, shape]")
    name, dtype_str, shape = desc
    if not isinstance(name, str):
        raise ValueError(f"name must be a string, got {type(name).__name__}")
    if not isinstance(dtype_str, str) or dtype_str not in _ALLOWED_DTYPES:
        raise ValueError(f"dtype {excerpt(dtype_str)} not allowed")
    if not isinstance(shape, list) or len(shape) > MAX_ARRAY_DIMS or not all(_is_int(n) and n >= 0 for n in shape):
        raise ValueError(f"shape must be a list of at most {MAX_ARRAY_DIMS} integers >= 0, got {excerpt(shape)}")
    dtype = np.dtype(dtype_str)
    raw = memoryview(buf)
    size = 1
    for n in shape:
        size *= n  # python ints: no overflow
    if size * dtype.itemsize != raw.nbytes:
        raise ValueError(f"shape {shape} x {dtype} does not match {raw.nbytes} bytes")
    return name, np.frombuffer(raw, dtype=dtype).reshape(tuple(shape))


def encode_control(cmd: str, **args) -> bytes:
    """A control request ``{"cmd": cmd, **args}`` as msgpack."""
    return msgpack.packb({"cmd": cmd, **args}, use_bin_type=True)


def decode_control(raw: bytes) -> dict:
    """Validate a control request; return ``{"cmd": ..., args...}`` with arguments converted.

    Integers refuse booleans; floats must be finite (``-0.0`` stays ``-0.0``, for the command to
    judge). An optional argument of :data:`CONTROL_OPTIONS` is present only when sent.

    Raises:
        ProtocolError: not msgpack, not a map, unknown command, missing or mistyped argument
            (quoting at most :data:`EXCERPT_CHARS` characters of what was sent).
    """
    try:
        request = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as err:
        raise ProtocolError(f"control request is not msgpack ({excerpt(str(err))})") from None
    if not isinstance(request, dict) or "cmd" not in request:
        raise ProtocolError("control request must be a map with a 'cmd' field")
    cmd = request["cmd"]
    if not isinstance(cmd, str) or cmd not in CONTROL_COMMANDS:
        raise ProtocolError(f"unknown control command {excerpt(cmd)}; known: {', '.join(CONTROL_COMMANDS)}")
    out = {"cmd": cmd}
    arguments = [(arg, kind, True) for arg, kind in CONTROL_COMMANDS[cmd].items()]
    arguments += [(arg, kind, False) for arg, kind in CONTROL_OPTIONS.get(cmd, {}).items()]
    for arg, kind, required in arguments:
        if arg not in request:
            if required:
                raise ProtocolError(f"control command {cmd!r}: argument {arg!r} missing")
            continue
        value = request[arg]
        if kind is float and (_is_int(value) or isinstance(value, float)):
            value = float(value)
            if not math.isfinite(value):
                raise ProtocolError(f"control command {cmd!r}: argument {arg!r} must be a finite number, got {value}")
        elif kind is int and _is_int(value):
            value = int(value)
        elif kind in (int, float) or not isinstance(value, kind):
            raise ProtocolError(f"control command {cmd!r}: argument {arg!r} must be {kind.__name__}, "
                                f"got {type(value).__name__} {excerpt(value)}")
        out[arg] = value
    return out
