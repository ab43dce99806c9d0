"""Socket side of the dashboard: a thread that reads the published stream, off the GUI thread.

The thread reads with :class:`evstream.publish.Subscriber` (every topic) and keeps only the latest message per topic in a lock-protected dict (pyqtgraph's habit: the
GUI draws whatever arrived last on a timer, never one repaint per message). ``frame`` messages
are also pushed into an :class:`~evstream.dashboard.accumulate.EventAccumulator` here, so
accumulating a 300 ms span of 10 ms windows costs the GUI thread nothing; every ``pred`` and
``stats`` message goes into the :class:`~evstream.dashboard.timeline.Timeline`, so the run's
record misses no window however few of them the GUI draws.

A pipeline serving several sources publishes each stream's messages with its stream id (header
``sid``); the reader keeps one stream (:meth:`StreamReader.set_stream`, default 0) and drops the
others' messages before anything sees them, so every panel, the accumulator and the timeline show
that stream alone; switching clears the accumulator and the timeline (on the reader thread, so
no message of the old stream lands after the clear). ``status`` speaks for the whole pipeline
and always passes.

Per topic it keeps the messages received, the messages lost (the Subscriber's sequence-gap
count; zguide ch. 5), the time of the latest one and the transport lag (receive time minus the
header's send time).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import zmq

from evstream.dashboard.accumulate import EventAccumulator
from evstream.dashboard.timeline import Timeline
from evstream.errors import ConfigError
from evstream.protocol import TOPICS, Message
from evstream.publish import Subscriber

__all__ = ["StreamReader", "TopicStats", "Snapshot", "stream_status"]

_POLL_MS = 50


@dataclass
class TopicStats:
    """What the reader knows about one topic."""

    received: int = 0
    gaps: int = 0  # messages lost, from sequence numbers
    last_monotonic: float | None = None  # time.monotonic() of the latest message
    lag_ms: float | None = None  # receive time minus send time of the latest message


@dataclass
class Snapshot:
    """The latest messages taken by the GUI thread: ``fresh`` holds only those new since the last take."""

    fresh: dict[str, Message] = field(default_factory=dict)
    topics: dict[str, TopicStats] = field(default_factory=dict)
    bad_messages: int = 0
    last_error: str | None = None


class StreamReader:
    """Reads ``address`` (``tcp://``, ``ipc://`` or ``inproc://``) on a daemon thread.

    Args:
        address: address of the pipeline's PUB socket.
        accumulator: receives every ``frame`` message's counts.
        timeline: receives every ``pred`` and ``stats`` message, and the origin of ``status``.
        context: ZeroMQ context; pass the publisher's for ``inproc://`` (default: the global one).
        topics: topics to subscribe to.
        curve_secret_key_file: this client's certificate (``python main.py keys``), for a
            publisher that is a CURVE server; with ``curve_server_key_file``.
        curve_server_key_file: the publisher's public certificate.
    """

    def __init__(
        self,
        address: str,
        accumulator: EventAccumulator | None = None,
        context: zmq.Context | None = None,
        topics: tuple[str, ...] = TOPICS,
        curve_secret_key_file: str | os.PathLike | None = None,
        curve_server_key_file: str | os.PathLike | None = None,
        timeline: Timeline | None = None,
    ) -> None:
        self.address = address
        self.accumulator = accumulator
        self.timeline = timeline
        self._context = context or zmq.Context.instance()
        self._topics = topics
        self._curve = {"curve_secret_key_file": curve_secret_key_file, "curve_server_key_file": curve_server_key_file}
        self._lock = threading.Lock()
        self._fresh: dict[str, Message] = {}
        self._stats: dict[str, TopicStats] = {t: TopicStats() for t in topics}
        self._malformed = 0  # did not decode (counted by the Subscriber)
        self._bad_frames = 0  # decoded, but no usable counts
        self._last_error: str | None = None
        self._stream = 0  # the stream shown (header sid); the reader thread applies _want_stream
        self._want_stream = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evstream-dashboard-reader", daemon=True)

    def start(self) -> StreamReader:
        """Start the thread; returns once the socket is connected (or failed to)."""
        self._thread.start()
        self._ready.wait(5.0)
        return self

    def stop(self) -> None:
        """Stop the thread and close the socket (returns within about 50 ms)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def stream(self) -> int:
        """The stream id whose messages are kept (the latest asked for by :meth:`set_stream`)."""
        return self._want_stream

    def set_stream(self, stream: int) -> None:
        """Keep stream ``stream``'s messages from now on (thread-safe; applied by the reader thread,
        which clears the accumulator, the timeline and the fresh messages of the previous stream)."""
        self._want_stream = int(stream)

    def _switch_stream(self) -> None:
        want = self._want_stream
        if want == self._stream:
            return
        self._stream = want
        if self.accumulator is not None:
            self.accumulator.clear()
        if self.timeline is not None:
            self.timeline.clear()
        with self._lock:
            self._fresh = {t: m for t, m in self._fresh.items() if t == "status"}

    def received(self, topic: str) -> int:
        """Messages of ``topic`` received so far (does not consume anything)."""
        with self._lock:
            stats = self._stats.get(topic)
            return stats.received if stats is not None else 0

    @property
    def bad_messages(self) -> int:
        """Messages that did not decode (skipped)."""
        with self._lock:
            return self._malformed + self._bad_frames

    def take(self) -> Snapshot:
        """Messages new since the last call (latest per topic) and a copy of the per-topic counters."""
        with self._lock:
            fresh, self._fresh = self._fresh, {}
            topics = {t: TopicStats(**vars(s)) for t, s in self._stats.items()}
            return Snapshot(fresh=fresh, topics=topics, bad_messages=self._malformed + self._bad_frames, last_error=self._last_error)

    def _run(self) -> None:
        try:
            subscriber = Subscriber(self.address, self._topics, context=self._context, rcvhwm=200, **self._curve)
        except ConfigError as err:
            with self._lock:
                self._last_error = str(err)
            return
        finally:
            self._ready.set()
        try:
            while not self._stop.is_set():
                message = subscriber.recv(timeout_ms=_POLL_MS)
                self._switch_stream()
                if message is not None and message.topic != "status" and message.stream != self._stream:
                    continue  # another stream of a pipeline serving several sources
                if message is not None:
                    self._handle(message, subscriber)
                elif subscriber.malformed != self._malformed:
                    with self._lock:
                        self._malformed = subscriber.malformed
        finally:
            subscriber.close()

    def _handle(self, message: Message, subscriber: Subscriber) -> None:
        now_ns = time.time_ns()
        if message.topic == "frame" and self.accumulator is not None:
            counts = message.arrays.get("counts")
            t1 = message.t_end if isinstance(message.t_end, int) else now_ns // 1000
            t0 = message.t_start if isinstance(message.t_start, int) else t1
            if counts is not None and counts.ndim == 3 and counts.shape[0] == 2 and counts.dtype.kind in "ui":
                self.accumulator.push(counts, t0, t1)
            else:
                with self._lock:
                    self._bad_frames += 1
                    self._last_error = f"frame seq {message.seq}: 'counts' must be integer [2, H, W]"
        if self.timeline is not None:
            try:
                if message.topic in ("pred", "stats"):
                    self.timeline.push(message)
                elif message.topic == "status":
                    self.timeline.set_origin(stream_status(message.data, self._stream).get("origin_us"))
            except (TypeError, ValueError) as err:
                with self._lock:
                    self._bad_frames += 1
                    self._last_error = f"{message.topic} seq {message.seq}: {err}"
        tracked = subscriber.stats[message.topic]
        with self._lock:
            stats = self._stats.setdefault(message.topic, TopicStats())
            stats.gaps = tracked.dropped
            stats.received += 1
            stats.last_monotonic = time.monotonic()
            stats.lag_ms = (now_ns - message.send_ns) / 1e6 if message.send_ns else None
            self._malformed = subscriber.malformed
            self._fresh[message.topic] = message


def stream_status(data: dict, stream: int) -> dict:
    """``status`` data as seen by one stream: the entry of ``data["streams"]`` with ``sid == stream``
    (its source, sensor, origin, geometry, ...) over the pipeline-wide fields; ``data`` itself
    when the pipeline has one source."""
    streams = data.get("streams")
    if not isinstance(streams, list) or len(streams) < 2:
        return data
    entry = next((e for e in streams if isinstance(e, dict) and e.get("sid") == stream), None)
    return data if entry is None else {**data, **{k: v for k, v in entry.items() if k != "state"}}
