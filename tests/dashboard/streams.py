"""Helpers of the dashboard tests: a real PUB socket on 127.0.0.1 fed with protocol messages,
a real REP socket that records control commands, and the messages' content."""

from __future__ import annotations

import threading

import msgpack
import numpy as np
import zmq

from evstream.protocol import SCHEMA_VERSION, decode_control, encode

CLASSES = ["alpha", "bravo", "charlie", "delta", "echo"]
SENSOR = (96, 64)  # width, height: not square, so a transposed image would show
GRID = (4, 4)
INPUT = 32  # model input side; tokens are 8×8 pixels


class StreamFeeder:
    """A PUB socket bound on 127.0.0.1 that republishes the current message set every ``period_s``
    from a thread (so a SUB socket that connects late still gets them: zguide's slow joiner).

    Each round is one window of ``window_us`` sensor µs starting at ``t_offset_us`` (a real
    recording's clock starts far from 0)."""

    def __init__(self, context: zmq.Context, period_s: float = 0.02, window_us: int = 10_000, t_offset_us: int = 0) -> None:
        self.socket = context.socket(zmq.PUB)
        self.socket.setsockopt(zmq.LINGER, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.period_s = period_s
        self.window_us = window_us
        self.t_offset_us = t_offset_us
        self.seq: dict[str, int] = {}
        self.window = 0
        self.messages: dict[str, tuple[dict, dict]] = {}
        self.topics_on = True
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def set(self, topic: str, data: dict, arrays: dict | None = None) -> None:
        """Publish ``topic`` with these fields from now on (``None`` data removes the topic)."""
        with self._lock:
            if data is None:
                self.messages.pop(topic, None)
            else:
                self.messages[topic] = (data, arrays or {})

    def silence(self) -> None:
        """Stop publishing anything (the stream "stops")."""
        with self._lock:
            self.messages.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                batch = list(self.messages.items())
            t0 = self.t_offset_us + self.window * self.window_us
            for topic, (data, arrays) in batch:
                seq = self.seq.get(topic, 0)
                self.seq[topic] = seq + 1
                self.socket.send_multipart(encode(topic, seq, "test-pub", data, arrays, t0, t0 + self.window_us))
            if batch:
                self.window += 1
            self._stop.wait(self.period_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close(0)


class ControlRecorder:
    """A REP socket on 127.0.0.1 answering ``{"ok": True}`` and recording every decoded request."""

    def __init__(self, context: zmq.Context) -> None:
        self.socket = context.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.requests: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(20):
                continue
            request = decode_control(self.socket.recv())
            self.requests.append(request)
            self.socket.send(msgpack.packb({"ok": True, "echo": request["cmd"]}))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.socket.close(0)


def status_data(state: str = "running", **extra) -> dict:
    data = {
        "schema": SCHEMA_VERSION, "classes": CLASSES, "sensor": list(SENSOR), "model": "test-model",
        "source": "test-source", "state": state, "message": "", "live": False, "position_us": 2_000_000,
        "duration_us": 10_000_000, "speed": 1.0, "loop": False, "recording": False, "control": None,
    }
    data.update(extra)
    return data


def frame_counts() -> np.ndarray:
    """uint8 [2, H, W]: an ON block top-left, an OFF block bottom-right, nothing elsewhere."""
    width, height = SENSOR
    counts = np.zeros((2, height, width), dtype=np.uint8)
    counts[1, 5:15, 10:30] = 3
    counts[0, 40:60, 70:90] = 2
    return counts


def attention_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """qk float32 [2 blocks, 3 heads, 16, 16] (distinct rows) and an input frame [32, 32]."""
    rng = np.random.default_rng(seed)
    n = GRID[0] * GRID[1]
    qk = rng.uniform(0, 4, size=(2, 3, n, n)).astype(np.float32)
    frame = rng.uniform(0, 2, size=(INPUT, INPUT)).astype(np.float32)
    return {"qk": qk, "frame": frame}


def wait_ticks(qtbot, window, n: int = 3) -> None:
    """Let the draw timer run ``n`` more times."""
    target = window.ticks + n
    qtbot.waitUntil(lambda: window.ticks >= target, timeout=5000)
