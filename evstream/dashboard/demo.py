"""A synthetic published stream: every topic, plausible content, built with :func:`protocol.encode`.

For the dashboard's tests, its benchmark and screenshots when no pipeline runs. A bright arc
sweeps around the sensor centre like a waving arm: pixels entering it fire ON, pixels leaving
it fire OFF. Predictions follow the sweep phase (probabilities sum to 1), spike maps and the SSA
token map are derived from the same activity so the panels agree with each other. Nothing here
is a model: it only exercises the wire schema.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import zmq

from evstream.labels import DVS_GESTURE_CLASSES
from evstream.protocol import SCHEMA_VERSION, encode

__all__ = ["DemoStream", "publish_demo"]

_LAYERS = (("sps.stage1", 64), ("sps.stage2", 32), ("sps.stage3", 16), ("block0.mlp", 8), ("block1.mlp", 8))


class DemoStream:
    """Generates the messages of one synthetic pipeline.

    Args:
        sensor: (width, height) of the event image.
        window_us: span of one window, µs.
        input_size: side of the square model input (``attn`` ``frame``).
        grid: token grid side (N = grid²).
        blocks, heads: shape of ``qk``.
        seed: random seed.
    """

    def __init__(
        self,
        sensor: tuple[int, int] = (128, 128),
        window_us: int = 10_000,
        input_size: int = 128,
        grid: int = 8,
        blocks: int = 2,
        heads: int = 8,
        seed: int = 0,
        publisher: str = "demo",
    ) -> None:
        self.width, self.height = sensor
        self.window_us = int(window_us)
        self.input_size = input_size
        self.grid = grid
        self.blocks = blocks
        self.heads = heads
        self.publisher = publisher
        self.rng = np.random.default_rng(seed)
        self.seq = dict.fromkeys(("pred", "frame", "spikes", "attn", "stats", "status"), 0)
        self.index = 0
        self.classes = DVS_GESTURE_CLASSES
        self._smoothed = np.full(len(self.classes), 1.0 / len(self.classes), dtype=np.float32)
        self._head_bias = self.rng.uniform(0.5, 1.5, size=(blocks, heads, 1, 1)).astype(np.float32)

    def _next(self, topic: str) -> int:
        seq = self.seq[topic]
        self.seq[topic] += 1
        return seq

    def _counts(self, t_mid_s: float) -> np.ndarray:
        """uint8 [2, H, W] counts: the leading edge of the sweep fires ON, the trailing edge OFF."""
        counts = np.zeros((2, self.height, self.width), dtype=np.uint8)
        cx, cy = self.width / 2, self.height / 2
        radius = 0.35 * min(self.width, self.height)
        n = max(200, (self.width * self.height) // 60)
        angle = 1.2 * np.sin(2 * np.pi * 0.4 * t_mid_s)
        speed = np.cos(2 * np.pi * 0.4 * t_mid_s)
        for channel, offset in ((1, 0.12 * np.sign(speed)), (0, -0.12 * np.sign(speed))):
            theta = angle + offset + self.rng.normal(0, 0.05, n)
            r = radius * np.sqrt(self.rng.uniform(0.05, 1.0, n))
            x = np.clip(cx + r * np.sin(theta), 0, self.width - 1).astype(np.int64)
            y = np.clip(cy - r * np.cos(theta), 0, self.height - 1).astype(np.int64)
            flat = np.bincount(y * self.width + x, minlength=self.width * self.height)
            counts[channel] = np.minimum(flat, 255).reshape(self.height, self.width)
        noise = self.rng.integers(0, self.width * self.height, size=n // 10)
        counts.reshape(2, -1)[self.rng.integers(0, 2, size=noise.size), noise] += 1
        return counts

    def window(self) -> list[list]:
        """Messages of the next window (frame, pred, spikes, attn, stats), encoded."""
        t0 = self.index * self.window_us
        t1 = t0 + self.window_us
        self.index += 1
        counts = self._counts((t0 + t1) / 2e6)
        on, off = int(counts[1].sum()), int(counts[0].sum())
        out = [encode("frame", self._next("frame"), self.publisher, {"sensor": [self.width, self.height]}, {"counts": counts}, t0, t1)]

        # Model input: the sensor resized to input_size², ON + OFF counts.
        ys = (np.arange(self.input_size) * self.height // self.input_size)
        xs = (np.arange(self.input_size) * self.width // self.input_size)
        frame = counts.sum(axis=0, dtype=np.float32)[np.ix_(ys, xs)]
        tokens = frame.reshape(self.grid, self.input_size // self.grid, self.grid, self.input_size // self.grid).mean(axis=(1, 3)).ravel()
        tokens = tokens / (tokens.max() + 1e-6)

        phase = int(t0 // 1_500_000) % (len(self.classes) + 1)
        logits = self.rng.normal(0, 0.3, len(self.classes)).astype(np.float32)
        if phase < len(self.classes):
            logits[phase] += 3.0
        probs = np.exp(logits) / np.exp(logits).sum()
        self._smoothed = 0.9 * self._smoothed + 0.1 * probs
        self._smoothed /= self._smoothed.sum()
        label = int(self._smoothed.argmax()) if self._smoothed.max() > 0.35 else -1
        infer_ms = float(4.0 + self.rng.normal(0, 0.3))
        out.append(encode("pred", self._next("pred"), self.publisher, {
            "label": label,
            "name": self.classes[label] if label >= 0 else "no gesture",
            "confidence": float(self._smoothed.max()),
            "changed": False,
            "infer_ms": infer_ms,
            "resets": 0,
            "energy_uj": float(12.0 + 30.0 * tokens.mean()),
            "events": on + off,
        }, {"probs": probs.astype(np.float32), "smoothed": self._smoothed.astype(np.float32)}, t0, t1))

        arrays, sparsity = {}, {}
        for name, side in _LAYERS:
            ys_l = np.arange(side) * self.input_size // side
            base = frame[np.ix_(ys_l, ys_l)]
            rate = np.clip(base / (base.max() + 1e-6) + self.rng.uniform(0, 0.08, (side, side)), 0, 1).astype(np.float32)
            arrays[name] = rate
            sparsity[name] = float((rate < 0.1).mean())
        out.append(encode("spikes", self._next("spikes"), self.publisher, {"layers": [n for n, _ in _LAYERS], "sparsity": sparsity}, arrays, t0, t1))

        # Tokens with activity attend to each other (Q·Kᵀ of spike counts is integer-valued, 0…T).
        n_tok = self.grid * self.grid
        qk = (np.outer(tokens, tokens)[None, None] * self._head_bias * 8.0 + self.rng.uniform(0, 0.5, (self.blocks, self.heads, n_tok, n_tok)))
        out.append(encode("attn", self._next("attn"), self.publisher, {"blocks": self.blocks, "heads": self.heads, "grid": [self.grid, self.grid]},
                          {"qk": qk.astype(np.float32), "frame": frame}, t0, t1))

        window_ms = self.window_us / 1000
        out.append(encode("stats", self._next("stats"), self.publisher, {
            "windows": self.index, "dropped_windows": 0, "resets": 0, "events_on": on, "events_off": off,
            "event_rate": (on + off) / (self.window_us / 1e6), "infer_ms": infer_ms, "lag_ms": infer_ms + 1.0,
            "window_ms": window_ms, "realtime_factor": 1.0,
        }, None, t0, t1))
        return out

    def status(self, state: str = "running", control: str | None = None, duration_us: int | None = 60_000_000) -> list:
        """An encoded ``status`` message."""
        return encode("status", self._next("status"), self.publisher, {
            "schema": SCHEMA_VERSION, "classes": list(self.classes), "sensor": [self.width, self.height],
            "model": "demo (synthetic stream)", "source": "synthetic", "state": state, "message": "",
            "live": duration_us is None, "position_us": self.index * self.window_us, "duration_us": duration_us,
            "speed": 1.0, "loop": False, "recording": False, "control": control,
        })


def publish_demo(
    address: str,
    stop: threading.Event,
    *,
    rate_hz: float = 100.0,
    sensor: tuple[int, int] = (128, 128),
    context: zmq.Context | None = None,
    control: str | None = None,
) -> int:
    """Bind a PUB socket at ``address`` and publish :class:`DemoStream` windows at ``rate_hz`` until ``stop``.

    ``status`` goes out once a second. Returns the number of windows published.
    """
    stream = DemoStream(sensor=sensor, window_us=int(1e6 / rate_hz))
    socket = (context or zmq.Context.instance()).socket(zmq.PUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM, 100)
    socket.bind(address)
    try:
        period = 1.0 / rate_hz
        start = time.monotonic()
        next_status = start
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_status:
                socket.send_multipart(stream.status(control=control))
                next_status += 1.0
            for frames in stream.window():
                socket.send_multipart(frames)
            delay = start + stream.index * period - time.monotonic()
            if delay > 0:
                stop.wait(delay)
        return stream.index
    finally:
        socket.close(0)
