"""One pipeline, several sources: N binners stepped together through one batched classifier.

``python main.py --replay A --replay B --synthetic 2`` runs here (one source runs in
:class:`evstream.pipeline.Pipeline`, unchanged). Stream ``i`` is the ``i``-th source on the
command line; it is batch row ``i`` of a :class:`models.multistream.MultiStreamClassifier` (its
own LIF state, reset and decision rule) and header ``sid`` ``i`` of every message published
about it (:mod:`evstream.protocol`).

Threads: one **reader** per source (iterates it, bins into its own Binner, counts ON/OFF events
per window and, while ``frame`` is subscribed, their histogram; queues closed windows) and one
**model** thread that runs rounds. The rules:

- **A round** takes the next window of every running stream and classifies them in one batched
  call, so every window of a round has the same number of steps (every Binner has the same
  ``steps`` and ``step_us``; their sensors may differ, each Binner maps its own onto the model's
  input, and each stream's density scale is applied to its own windows).
- **A stream that ends** (the end of a replay, a camera unplugged, a damaged recording) stops
  contributing; the others go on. Its row runs on empty windows from then on, never published,
  so a round always costs N rows. The partial window a replay's end leaves (shorter than a
  whole window) is not classified: it could not share a round. A failed stream is ``error`` in
  ``status``'s ``streams`` (its one-line reason in ``message``) and the exit code is 2 (1 for an
  unexpected fault) once the others are done. The pipeline ends when every stream has ended.
- **Replays** block at every queue: nothing is dropped, and a replay's labels equal those of the
  same replay alone through :class:`~evstream.pipeline.Pipeline` (windows of 1 round each, same
  decisions) — tests/app/test_multipipeline.py. The slowest stream sets the pace of all.
- **Live sources** never wait for the model: a stream whose queue is full loses its oldest
  window (counted in its ``dropped_windows``) and its row is reset. There is no wall-clock flush
  (the single-source pipeline's ``Binner.flush``): a live source that sends no chunks at all
  holds the rounds back until it does.
- ``max_windows`` counts rounds (each stream classifies at most that many windows).
- Sequence numbers run per topic and stream (:class:`~evstream.publish.Publisher`).

Spike maps and attention (``spikes``, ``attn``) are published per stream, at most ``heavy_hz``
rounds a second and only while a subscriber wants them (the batched classifier then captures
every row of one round). Not here: recording. The control socket answers ``status``, ``reset`` (every
stream), ``pause``, ``resume`` and ``load_model`` (with a ``model_loader``: the checkpoint is loaded
in the control thread and swapped in between rounds, every stream's state at rest, its decision
settings and density scales the new model's; one that does not fit is refused and the running
model goes on); the replay commands (``seek``, ``speed``, ``loop``, ``step``) and ``record_*`` are
refused with one line.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from evstream import protocol
from evstream.errors import ConfigError, EvstreamError, ModelError, SourceError
from evstream.events import concatenate
from evstream.pipeline import PipelineConfig, Sink, SinkFanout, call_model_loader, frame_counts, publish_maps
from evstream.publish import ControlServer, Publisher
from evstream.stream_info import geometry_info, origin_for, truth_for

__all__ = ["MultiPipeline"]

_END = object()
_SUPPORTED = ("status", "reset", "pause", "resume", "load_model")


@dataclass
class _Failure:
    error: BaseException
    unexpected: bool = False


@dataclass
class _Item:
    window: Any
    closed: float  # perf_counter when the binner closed it
    events_on: int
    events_off: int
    counts: np.ndarray | None = None


@dataclass
class _Stream:
    """One source and everything kept about it; only its reader thread touches ``binner``."""

    sid: int
    source: Any
    binner: Any
    name: str
    scale: float
    windows_queue: queue.Queue
    live: bool
    truth: Any = None
    state: str = "starting"  # starting | running | ended | error
    message: str = ""
    windows: int = 0
    dropped_windows: int = 0
    resets: int = 0
    reset_requested: bool = False
    first_t: int | None = None
    last_t_end: int | None = None
    last_frame_at: float = 0.0
    last_stats_at: float = 0.0
    rt_anchor: tuple[float, int] | None = None
    last_stats: dict = field(default_factory=dict)


class MultiPipeline(SinkFanout):
    """Wire N sources, N binners, one batched classifier, a publisher and sinks; run them on threads.

    Args:
        sources: N EventSources (``.sensor_size``, ``.name``, ``.live``), stream ``i`` = ``sources[i]``.
        classifier: a :class:`models.multistream.MultiStreamClassifier` with ``streams == N``
            (``step(windows) -> predictions``, ``reset(stream)``, ``class_names``).
        binners: N Binners, all with the same ``steps`` and ``step_us`` (each its own sensor).
        publisher: where messages go (each stream's with its ``sid``); None publishes nothing.
        config: :class:`~evstream.pipeline.PipelineConfig` (``max_windows`` counts rounds;
            ``speed``/``loop`` are only shown in status: set them on the sources).
        sinks: consumers of predictions on the model thread's behalf (their own thread); each
            prediction carries ``stream`` (its sid) and ``truth``.
        input_scales: each stream's density scale (``models.streaming.input_scale_for`` of its
            geometry), multiplied into its windows; default 1 for all.
        names: each stream's source name in status (default the source's ``name``).
        control_address: bind a control socket here (or at several addresses); None: none.
        context: ZeroMQ context for the control socket.

    Raises:
        ConfigError: counts that do not match, or binners of different steps.
    """

    def __init__(
        self,
        sources: Sequence[Any],
        classifier: Any,
        binners: Sequence[Any],
        publisher: Publisher | None = None,
        *,
        config: PipelineConfig | None = None,
        sinks: Iterable[Sink] = (),
        input_scales: Sequence[float] | None = None,
        names: Sequence[str] | None = None,
        control_address: str | list[str] | None = None,
        context: Any = None,
        model_loader: Callable[[str], tuple[Any, str, Sequence[float]]] | None = None,
    ) -> None:
        n = len(sources)
        if n < 1 or len(binners) != n:
            raise ConfigError(f"streams: {n} source(s) and {len(binners)} binner(s); give one binner per source")
        if int(getattr(classifier, "streams", n)) != n:
            raise ConfigError(f"classifier: serves {classifier.streams} streams, the pipeline has {n} sources")
        shapes = {(int(b.steps), int(b.step_us)) for b in binners}
        if len(shapes) != 1:
            raise ConfigError(f"binners: steps x step_us differ between streams ({sorted(shapes)}); a round "
                              "batches windows of one shape")
        scales = [1.0] * n if input_scales is None else [float(v) for v in input_scales]
        if len(scales) != n:
            raise ConfigError(f"input_scales: {len(scales)} for {n} streams")
        self.config = config or PipelineConfig()
        self.classifier = classifier
        self.publisher = publisher
        self.sinks = list(sinks)
        self.class_names = list(getattr(classifier, "class_names", ()))
        self.streams: list[_Stream] = []
        for i, (source, binner) in enumerate(zip(sources, binners, strict=True)):
            live = bool(getattr(source, "live", False))
            size = self.config.live_window_queue if live else self.config.window_queue
            name = str(names[i]) if names is not None else str(getattr(source, "name", type(source).__name__))
            self.streams.append(_Stream(i, source, binner, name, scales[i], queue.Queue(size), live, truth_for(source)))
        self.live = any(s.live for s in self.streams)
        self.state = "starting"
        self.message = ""
        self.error: BaseException | None = None
        self._unexpected = False
        self.rounds = 0
        self._paused = False
        self._reset_all = False
        # load_model: spec -> (classifier of these N streams, model label, each stream's density
        # scale), raising EvstreamError for a checkpoint that does not fit (run.py builds it).
        self._model_loader = model_loader
        self._pending_model: tuple[Any, str, list[float]] | None = None
        self.model_swaps = 0
        self._stop = threading.Event()
        self._go = threading.Event()  # readers start once the subscribers asked for are there
        self._done = threading.Event()
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._heavy_interval = 0.0 if self.config.heavy_hz is None else 1.0 / self.config.heavy_hz
        self._last_maps_at = -float("inf")
        self._sink_queue: queue.Queue = queue.Queue(self.config.sink_queue)
        self.dropped_predictions = 0
        self._control = None
        self.control_address = control_address if control_address is None or isinstance(control_address, str) \
            else control_address[0]
        if control_address is not None:
            self._control = ControlServer(control_address, self.handle_control, context=context, publisher=publisher)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the readers, the model and sink threads and the status timer; returns at once."""
        if self.publisher is not None:
            self.publisher.start_status(self.status, self.config.status_interval_s)
        targets = [(self._gate, "gate"), (self._infer, "model"), (self._sink, "sinks")]
        targets += [(lambda s=s: self._read(s), f"reader-{s.sid}") for s in self.streams]
        for target, name in targets:
            thread = threading.Thread(target=target, name=f"evstream-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, message: str = "") -> None:
        """Ask every thread to stop (safe from a signal handler)."""
        if message and not self.message:
            self.message = message
        self._stop.set()

    def wait(self, timeout: float | None = None) -> int:
        """Wait until every stream ended or the pipeline is stopped, shut down, return the exit code.

        Returns:
            0 when every stream ended cleanly, ``max_windows`` was reached or :meth:`stop` was
            called; 2 when a stream or the pipeline ended in an expected fault; 1 for an
            unexpected one.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():  # short waits: a signal handler runs between them
            remaining = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if remaining <= 0:
                break
            self._stop.wait(remaining)
        self.close()
        faults = [s for s in self.streams if s.state == "error"]
        if self.state != "error" and not faults:
            return 0
        return 1 if self._unexpected else 2

    def run(self) -> int:
        """:meth:`start` then :meth:`wait`."""
        self.start()
        return self.wait()

    def close(self) -> None:
        """Stop the threads, close the sources, publish the final status, close the control socket."""
        if self._done.is_set():
            return
        self._stop.set()
        self._go.set()
        for s in self.streams:
            resume = getattr(s.source, "resume", None)
            if self._paused and callable(resume):
                resume()
        for s in self.streams:
            close = getattr(s.source, "close", None)
            if callable(close):
                close()
        for thread in self._threads:
            thread.join(timeout=5.0)
        if self.state not in ("error", "ended"):
            self._set_state("ended", self.message or "stopped")
        if self.publisher is not None:
            self.publisher.publish_status()
        if self._control is not None:
            self._control.close()
        for sink in list(self.sinks):
            self._call_sink(sink, "close")
        self._done.set()

    @property
    def finished(self) -> bool:
        """Whether the pipeline has stopped."""
        return self._stop.is_set()

    def _set_state(self, state: str, message: str = "") -> None:
        changed = state != self.state or message != self.message
        self.state, self.message = state, message
        if changed:
            if self.publisher is not None:
                self.publisher.publish_status()
            for sink in list(self.sinks):
                self._call_sink(sink, "on_state", state, message)

    def _fail(self, error: BaseException, unexpected: bool = False) -> None:
        self.error = error
        self._unexpected = self._unexpected or unexpected
        self._set_state("error", str(error).splitlines()[0] if str(error) else type(error).__name__)
        self._stop.set()

    # -- reader threads ------------------------------------------------------------------------

    def _gate(self) -> None:
        if self.publisher is not None and self.config.wait_subscribers > 0:
            self._set_state("starting", f"waiting for {self.config.wait_subscribers} subscriber(s)")
            if not self.publisher.wait_subscribers("pred", self.config.wait_subscribers, stop=self._stop):
                return
        for s in self.streams:
            s.state = "running"
        self._set_state("running", "")
        self._go.set()

    def _put(self, q: queue.Queue, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self, s: _Stream) -> None:
        self._go.wait()
        if self._stop.is_set():
            return
        recent: list[np.ndarray] = []
        try:
            for chunk in s.source:
                if self._stop.is_set():
                    return
                events = chunk.events
                if len(events):
                    recent.append(events)
                    if s.first_t is None:
                        s.first_t = int(events["t"][0])
                if not self._emit(s, s.binner.push(chunk), recent):
                    return
            finish = getattr(s.binner, "finish", None)
            if callable(finish) and not s.live:
                # whole windows still held only: a shorter tail could not share a round
                self._emit(s, [w for w in finish() if w.frames.shape[0] == s.binner.steps], recent)
            self._put(s.windows_queue, _END)
        except EvstreamError as err:
            self._put(s.windows_queue, _Failure(err))
        except Exception as err:  # a source or binner bug ends this stream visibly, not the others silently
            self._put(s.windows_queue, _Failure(SourceError(f"{s.name}: {type(err).__name__}: {err}"), unexpected=True))

    def _emit(self, s: _Stream, windows: list, recent: list[np.ndarray]) -> bool:
        for window in windows:
            now = time.perf_counter()
            t0, t1 = int(window.t_start), int(window.t_end)
            parts = [p for p in (_slice(e, t0, t1) for e in recent) if len(p)]
            n = sum(len(p) for p in parts)
            on = sum(int(np.count_nonzero(p["p"])) for p in parts)
            counts = None
            if (self.publisher is not None and now - s.last_frame_at >= self._heavy_interval
                    and self.publisher.wants("frame")):
                s.last_frame_at = now
                sensor = s.source.sensor_size
                counts = frame_counts(concatenate(parts), sensor.width, sensor.height)
            item = _Item(window, time.perf_counter(), on, n - on, counts)
            if s.live:
                self._offer_live(s, item)
            elif not self._put(s.windows_queue, item):
                return False
        if windows:
            start = int(windows[-1].t_start)
            recent[:] = [e for e in recent if int(e["t"][-1]) >= start]
        return True

    def _offer_live(self, s: _Stream, item: _Item) -> None:
        while True:
            try:
                s.windows_queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    s.windows_queue.get_nowait()
                except queue.Empty:
                    continue
                with self._lock:
                    s.dropped_windows += 1
                    s.reset_requested = True  # the state would integrate across the hole

    # -- model thread --------------------------------------------------------------------------

    def _take(self, s: _Stream) -> Any:
        while not self._stop.is_set():
            try:
                return s.windows_queue.get(timeout=0.1)
            except queue.Empty:
                continue
        return None

    def _apply_resets(self) -> None:
        pending, self._pending_model = self._pending_model, None
        if pending is not None:  # between rounds: the next one is the new model's first
            classifier, label, scales = pending
            with self._lock:
                self.classifier = classifier
                self.class_names = list(getattr(classifier, "class_names", ()))
                self.config.model_name = label
                for s, scale in zip(self.streams, scales, strict=True):
                    s.scale = float(scale)
                self.model_swaps += 1
            if self.publisher is not None:
                self.publisher.publish_status()  # subscribers learn the new model and class names
        reset_all, self._reset_all = self._reset_all, False
        for s in self.streams:
            if reset_all or s.reset_requested:
                s.reset_requested = False
                self.classifier.reset(s.sid)

    def _infer(self) -> None:
        self._go.wait()
        while not self._stop.is_set():
            self._apply_resets()
            if self._paused:
                time.sleep(0.02)
                continue
            items: dict[int, _Item] = {}
            for s in self.streams:
                if s.state not in ("running", "starting"):
                    continue
                item = self._take(s)
                if item is None:
                    return
                if item is _END:
                    self._end_stream(s, "ended", "end of recording" if not s.live else "source ended")
                elif isinstance(item, _Failure):
                    self._unexpected = self._unexpected or item.unexpected
                    self._end_stream(s, "error", str(item.error).splitlines()[0] if str(item.error) else "failed")
                else:
                    items[s.sid] = item
            if not items:
                if all(s.state in ("ended", "error") for s in self.streams):
                    self._finish()
                    return
                continue
            if not self._round(items):
                return
            if self.config.max_windows is not None and self.rounds >= self.config.max_windows:
                self._set_state("ended", f"stopped after {self.rounds} windows per stream (max windows)")
                self._stop.set()
                return

    def _end_stream(self, s: _Stream, state: str, message: str) -> None:
        with self._lock:
            s.state, s.message = state, message
        if self.publisher is not None:
            if s.last_stats:
                self.publisher.publish("stats", s.last_stats, stream=s.sid)
            self.publisher.publish_status()

    def _finish(self) -> None:
        faults = [s for s in self.streams if s.state == "error"]
        if faults:
            self.error = SourceError("; ".join(f"stream {s.sid} ({s.name}): {s.message}" for s in faults))
            self._set_state("error", str(self.error))
        else:
            self._set_state("ended", "end of every stream")
        self._stop.set()

    def _round(self, items: dict[int, _Item]) -> bool:
        started = time.perf_counter()
        template = next(iter(items.values())).window
        windows = []
        for s in self.streams:
            item = items.get(s.sid)
            if item is None:  # an ended stream: an empty window keeps its row in the batch
                t0 = s.last_t_end or 0
                span = int(template.t_end) - int(template.t_start)
                windows.append(replace(template, frames=np.zeros_like(template.frames), t_start=t0, t_end=t0 + span,
                                       counts=np.zeros_like(template.counts)))
            elif s.scale != 1.0:
                windows.append(replace(item.window, frames=np.asarray(item.window.frames, np.float32) * np.float32(s.scale)))
            else:
                windows.append(item.window)
        if self.publisher is not None and hasattr(self.classifier, "capture"):
            due = started - self._last_maps_at >= self._heavy_interval
            capture = due and any(self.publisher.wants(t) for t in ("spikes", "attn"))
            if capture:
                self._last_maps_at = started
            self.classifier.capture(capture)
        try:
            preds = self.classifier.step(windows)
        except EvstreamError as err:
            self._fail(err)
            return False
        except Exception as err:  # e.g. out of memory: report it, never hang
            self._fail(ModelError(f"model {self.config.model_name}: {type(err).__name__}: {err}"), unexpected=True)
            return False
        self.rounds += 1
        for s in self.streams:
            item = items.get(s.sid)
            if item is None:
                continue
            pred = preds[s.sid]
            pred.stream = s.sid
            pred.truth = None if s.truth is None else int(s.truth(int(pred.t_end) - 1))
            with self._lock:
                s.windows += 1
                s.resets = int(getattr(pred, "resets", s.resets))
                s.last_t_end = int(pred.t_end)
            stats = self._stats(s, pred, item, started)
            self._publish(s, pred, item, stats)
            self._to_sinks(pred, stats)
        return True

    def _stats(self, s: _Stream, pred: Any, item: _Item, started: float) -> dict:
        now = time.perf_counter()
        t0, t1 = int(pred.t_start), int(pred.t_end)
        if s.rt_anchor is None:
            s.rt_anchor = (started, t0)
        wall = now - s.rt_anchor[0]
        rtf = (t1 - s.rt_anchor[1]) / 1e6 / wall if wall > 0 else 0.0
        if wall > 5.0:
            s.rt_anchor = (now, t1)
        span_s = max(t1 - t0, 1) / 1e6
        return {
            "windows": s.windows,
            "dropped_windows": s.dropped_windows,
            "resets": s.resets,
            "events_on": item.events_on,
            "events_off": item.events_off,
            "event_rate": (item.events_on + item.events_off) / span_s,
            "infer_ms": float(pred.infer_ms),
            "lag_ms": (now - item.closed) * 1000.0,
            "window_ms": (t1 - t0) / 1000.0,
            "realtime_factor": float(rtf),
        }

    def _publish(self, s: _Stream, pred: Any, item: _Item, stats: dict) -> None:
        s.last_stats = stats
        pub = self.publisher
        if pub is None:
            return
        t0, t1 = int(pred.t_start), int(pred.t_end)
        data = {
            "label": int(pred.label),
            "name": str(pred.name),
            "confidence": float(pred.confidence),
            "changed": bool(pred.changed),
            "infer_ms": float(pred.infer_ms),
            "resets": int(pred.resets),
            "energy_uj": None if pred.energy_uj is None else float(pred.energy_uj),
            "events": item.events_on + item.events_off,
            "lag_ms": stats["lag_ms"],
            "smoothed_kind": str(getattr(pred, "probs_kind", "ema_softmax")),
            "truth": pred.truth,
        }
        arrays = {"probs": np.asarray(pred.probs, np.float32), "smoothed": np.asarray(pred.smoothed, np.float32)}
        pub.publish("pred", data, arrays, t0, t1, stream=s.sid)
        if item.counts is not None:
            sensor = s.source.sensor_size
            pub.publish("frame", {"sensor": [sensor.width, sensor.height]}, {"counts": item.counts}, t0, t1,
                        stream=s.sid)
        publish_maps(pub, pred, t0, t1, stream=s.sid)
        now = time.perf_counter()
        if now - s.last_stats_at >= 1.0 / self.config.stats_hz:
            s.last_stats_at = now
            pub.publish("stats", stats, None, t0, t1, stream=s.sid)

    # -- status and control --------------------------------------------------------------------

    @property
    def source_name(self) -> str:
        return f"{len(self.streams)} streams: " + ", ".join(s.name for s in self.streams)

    def status(self) -> dict:
        """The ``status`` topic's fields (see :mod:`evstream.protocol`), with ``streams``: one entry per source."""
        first = self.streams[0]
        rules = getattr(self.classifier, "decisions", None)
        decision = dict(rules[0].settings()) if rules and hasattr(rules[0], "settings") else {}
        with self._lock:
            streams = [{
                "sid": s.sid,
                "source": s.name,
                "sensor": [s.source.sensor_size.width, s.source.sensor_size.height],
                "live": s.live,
                "state": s.state,
                "message": s.message,
                "windows": s.windows,
                "dropped_windows": s.dropped_windows,
                "resets": s.resets,
                "origin_us": origin_for(s.source, s.first_t),
                "geometry": geometry_info(getattr(s.binner, "geometry", None)),
            } for s in self.streams]
        return {
            "schema": protocol.SCHEMA_VERSION,
            "classes": self.class_names,
            "sensor": streams[0]["sensor"],
            "model": self.config.model_name,
            "source": self.source_name,
            "state": "paused" if self._paused and self.state == "running" else self.state,
            "message": self.message,
            "live": self.live,
            "position_us": None,
            "duration_us": None,
            "speed": 0.0 if self.config.speed is None else float(self.config.speed),
            "loop": bool(self.config.loop),
            "recording": None,
            "control": self.control_address,
            "windows": self.rounds,
            "dropped_windows": sum(s["dropped_windows"] for s in streams),
            "resets": sum(s["resets"] for s in streams),
            "origin_us": streams[0]["origin_us"],
            "geometry": geometry_info(getattr(first.binner, "geometry", None)),
            "decision": decision,
            "streams": streams,
        }

    def handle_control(self, request: dict) -> dict:
        """Apply one validated control request: ``status``, ``reset`` (every stream), ``pause``, ``resume``,
        ``load_model``.

        Raises:
            ConfigError: any other command (one line: a pipeline of several sources does not take it).
        """
        cmd = request["cmd"]
        if cmd not in _SUPPORTED:
            raise ConfigError(f"{cmd}: not supported by a pipeline of {len(self.streams)} sources "
                              f"(it takes {', '.join(_SUPPORTED)})")
        if cmd == "status":
            return self.status()
        if cmd == "load_model":
            return self._load_model(request)
        if cmd == "reset":
            self._reset_all = True
            reply: dict = {"streams": len(self.streams)}
        else:
            self._paused = cmd == "pause"
            for s in self.streams:
                fn = getattr(s.source, cmd, None)
                if callable(fn):
                    fn()
            reply = {"state": "paused" if self._paused else self.state}
        if self.publisher is not None:
            self.publisher.publish_status()
        return reply


    def _load_model(self, request: dict) -> dict:
        """Load a checkpoint in the control thread; the model thread swaps it in between rounds."""
        classifier, label, scales = call_model_loader(self._model_loader, request)
        spec = request["path"]
        n = len(self.streams)
        if int(getattr(classifier, "streams", -1)) != n or len(scales) != n:
            raise ModelError(f"load_model {protocol.excerpt(spec)}: the loader built a classifier of "
                             f"{getattr(classifier, 'streams', '?')} streams for {n}")
        self._pending_model = (classifier, label, [float(v) for v in scales])
        return {"model": label, "classes": list(getattr(classifier, "class_names", ())), "from": "next round"}


def _slice(events: np.ndarray, t0: int, t1: int) -> np.ndarray:
    t = events["t"]
    return events[int(np.searchsorted(t, t0, "left")):int(np.searchsorted(t, t1, "left"))]
