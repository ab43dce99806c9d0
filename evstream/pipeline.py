"""The running application: source → binner → classifier → sinks, on threads with bounded queues.

Three worker threads, each owning its part so no part needs a lock of its own:

- **reader**: iterates the :class:`~evstream.sources.base.EventSource` into a bounded chunk queue.
- **binner**: pushes chunks into the :class:`~evstream.binning.Binner`, writes ``--record``
  files, counts ON/OFF events per window (and, while ``frame`` is subscribed, their sensor-size
  histogram), and queues closed windows. For a live source it also closes time steps on the
  wall clock (``Binner.flush``) when no chunk arrives, so decisions keep flowing in a still scene.
- **model**: runs the :class:`~models.streaming.StreamingClassifier` on each window, publishes
  ``pred`` (every window), ``frame``/``spikes``/``attn`` (only while subscribed), ``stats``
  (≤ 10 Hz) and hands predictions to the sinks (console) through a bounded queue.

Back-pressure (DESIGN.md, "Threads, clocks and back-pressure"): a live source never waits for
the model. When the window queue is full the oldest window is dropped, and a window older than
``max_lag_ms`` when the model reaches it is dropped too; after a drop the LIF state is reset
(the state would otherwise integrate across a hole). Drops and resets are counted and published.
A replay (any non-live source) blocks at every queue: nothing is dropped, the result is the same
on every run.

Commands arrive on the control socket (:class:`~evstream.publish.ControlServer`, REQ/REP) and are
applied by the thread that owns the part they touch (the model thread resets the model, the
binner thread rebuilds its binner after a seek), so a command never races a running step.
"""

from __future__ import annotations

import copy
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from evstream import protocol
from evstream.errors import ConfigError, EvstreamError, ModelError, SourceError
from evstream.events import concatenate
from evstream.publish import ControlServer, Publisher
from evstream.sources.pacing import MAX_SPEED, MIN_SPEED
from evstream.stream_info import geometry_info, origin_for, truth_for

__all__ = ["PipelineConfig", "Pipeline", "Sink", "WindowTiming", "frame_counts"]

# Replay speeds the control socket accepts (0 = as fast as possible), as DESIGN.md states.
SPEED_RANGE = (MIN_SPEED, MAX_SPEED)


@dataclass
class PipelineConfig:
    """Knobs of a :class:`Pipeline`; the defaults suit a camera and a CPU model."""

    model_name: str = "model"  # shown in status
    chunk_queue: int = 64  # chunks between reader and binner
    window_queue: int = 4  # windows waiting for the model (replay: blocking)
    live_window_queue: int = 2  # windows waiting for the model, live (full: drop oldest)
    max_lag_ms: float = 500.0  # live: a window older than this when the model takes it is dropped
    sink_queue: int = 256  # predictions waiting for the sinks
    stats_hz: float = 10.0  # most stats messages per second
    heavy_hz: float | None = 30.0  # most frame/spikes/attn messages per second each; None: every window
    status_interval_s: float = 1.0  # status period (late joiners)
    max_windows: int | None = None  # stop after this many classified windows (tests, benchmarks)
    wait_subscribers: int = 0  # before reading the source, wait for this many 'pred' subscriptions
    speed: float | None = 1.0  # replay speed as set on the source (None = as fast as possible)
    loop: bool = False  # replay loops


class Sink(Protocol):
    """Something that consumes predictions on the sink thread (e.g. :class:`evstream.console.ConsoleSink`)."""

    def on_prediction(self, prediction: Any, stats: dict) -> None:
        """One classified window and the stats after it."""

    def on_state(self, state: str, message: str) -> None:
        """The pipeline's state changed (running, paused, ended, error)."""

    def close(self) -> None:
        """The pipeline stopped; flush."""


@dataclass
class WindowTiming:
    """Wall-clock timeline of one window, ``time.perf_counter()`` seconds (benchmarks)."""

    closed: float  # the binner closed it
    started: float  # the model took it
    published: float  # its pred was sent


@dataclass
class _Item:
    window: Any
    epoch: int
    closed: float
    events_on: int
    events_off: int
    counts: np.ndarray | None = None


_END = object()


@dataclass
class _Failure:
    error: BaseException
    unexpected: bool = False  # not an EvstreamError: a bug, exit code 1 instead of 2


def call_model_loader(loader: Callable[[str], Any] | None, request: dict) -> Any:
    """What ``loader`` builds for a ``load_model`` request's ``path``, in the control thread.

    Raises:
        ConfigError: no loader, or a path that is empty or holds a NUL.
        EvstreamError: the loader's own one-line refusal (a checkpoint that does not fit).
        ModelError: any other fault of the loader (a bug, a torch error), as one line; never fatal to the run.
    """
    if loader is None:
        raise ConfigError("load_model: this pipeline was started without a model loader")
    spec = request["path"]
    if not spec or "\0" in spec:
        raise ConfigError(f"load_model: not a checkpoint path or weights name: {protocol.excerpt(spec)}")
    try:
        return loader(spec)
    except EvstreamError:
        raise
    except Exception as err:
        raise ModelError(f"load_model {protocol.excerpt(spec)}: {type(err).__name__}: "
                         f"{protocol.excerpt(str(err))}") from None


def publish_maps(pub: Publisher, pred: Any, t0: int, t1: int, stream: int = 0) -> None:
    """Publish a prediction's captured spike maps (``spikes``) and SSA maps with the input frame
    (``attn``) on stream ``stream``, each only while a subscriber wants it."""
    if pred.spike_maps and pub.wants("spikes"):
        maps = {name: np.asarray(m, np.float32) for name, m in pred.spike_maps.items()}
        # fraction of map positions without a single spike in the window
        sparsity = {name: float(np.mean(m == 0)) for name, m in maps.items()}
        pub.publish("spikes", {"layers": list(maps), "sparsity": sparsity}, maps, t0, t1, stream=stream)
    if pred.attn is not None and pub.wants("attn"):
        qk = np.asarray(pred.attn, np.float32)
        blocks, heads, tokens = qk.shape[0], qk.shape[1], qk.shape[-1]
        frame = np.asarray(pred.input_frame, np.float32)
        gw = max(1, round((tokens * frame.shape[1] / max(frame.shape[0], 1)) ** 0.5))
        grid = [tokens // gw, gw]
        pub.publish("attn", {"blocks": blocks, "heads": heads, "grid": grid}, {"qk": qk, "frame": frame}, t0, t1,
                    stream=stream)


def frame_counts(events: np.ndarray, width: int, height: int) -> np.ndarray:
    """ON/OFF event counts at sensor resolution, saturated at 255.

    Args:
        events: ``EVENT_DTYPE`` events (out-of-sensor ones are ignored).
        width: sensor width, pixels.
        height: sensor height, pixels.

    Returns:
        uint8 ``[2, H, W]``: channel 0 OFF, 1 ON (tonic's order).
    """
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    p = (events["p"] != 0).astype(np.int64)
    keep = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    index = (p * height + y) * width + x
    hist = np.bincount(index[keep], minlength=2 * height * width)
    return np.minimum(hist, 255).astype(np.uint8).reshape(2, height, width)


class SinkFanout:
    """The sink thread shared by :class:`Pipeline` and ``evstream.multipipeline.MultiPipeline``:
    predictions queue for the sinks (dropped and counted when live and the queue is full), a
    failing sink is removed and named in ``message``. The host provides ``sinks``, ``live``,
    ``_sink_queue``, ``_stop``, ``_put``, ``dropped_predictions`` and ``message``."""

    def _to_sinks(self, pred: Any, stats: dict) -> None:
        if not self.sinks:
            return
        if self.live:
            try:
                self._sink_queue.put_nowait((pred, stats))
            except queue.Full:
                self.dropped_predictions += 1
        else:
            self._put(self._sink_queue, (pred, stats))

    def _sink(self) -> None:
        while True:
            try:
                pred, stats = self._sink_queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            for sink in list(self.sinks):
                self._call_sink(sink, "on_prediction", pred, stats)

    def _call_sink(self, sink: Sink, method: str, *args: Any) -> None:
        try:
            getattr(sink, method)(*args)
        except Exception as err:  # e.g. stdout closed under `| head`: drop the sink, keep running
            if sink in self.sinks:
                self.sinks.remove(sink)
            self.message = f"sink {type(sink).__name__} removed: {type(err).__name__}: {err}"


class Pipeline(SinkFanout):
    """Wire a source, a binner, a classifier, a publisher and sinks; run them on threads.

    Args:
        source: an EventSource (``.sensor_size``, ``.name``, ``.live``; a file source may also
            have ``pause``/``resume``/``seek``/``set_speed``/``set_loop``/``position_us``/``duration_us``).
        classifier: a StreamingClassifier (``step(window)``, ``reset()``, ``capture(bool)``,
            ``class_names``).
        binner: a Binner (``push(chunk) -> list[Window]``, ``flush(now_us)``); a pristine copy is
            kept to start over after a seek or a replay loop.
        publisher: where messages go; None publishes nothing (benchmark anchor, library use).
        config: see :class:`PipelineConfig`.
        sinks: consumers of predictions on their own thread (console).
        record_path: start recording the source's events to this ``.aedat4`` at once (the
            operator's own choice: not confined to ``record_dir``).
        record_dir: the only folder ``record_start`` on the control socket may write in (paths
            are relative to it; leaving it, a NUL byte or an existing file without
            ``overwrite=True`` is refused). Default: the current folder at construction.
        control_address: bind a control socket here, or at several addresses (tcp plus an
            ``inproc://`` one for an in-process dashboard); None: no control socket. With a
            CURVE publisher the control socket is a CURVE server with the publisher's key and
            allow-list.
        context: ZeroMQ context for the control socket (a CURVE publisher's own is used instead).
        recorder_factory: ``(path, sensor_size) -> writer`` with ``write(events)``/``close()``;
            default :class:`evstream.io.aedat4.Aedat4Writer`.
    """

    def __init__(
        self,
        source: Any,
        classifier: Any,
        binner: Any,
        publisher: Publisher | None = None,
        *,
        config: PipelineConfig | None = None,
        sinks: Iterable[Sink] = (),
        record_path: str | os.PathLike | None = None,
        record_dir: str | os.PathLike | None = None,
        control_address: str | list[str] | None = None,
        context: Any = None,
        recorder_factory: Callable[[str, Any], Any] | None = None,
        model_loader: Callable[[str], tuple[Any, str]] | None = None,
    ) -> None:
        self.source = source
        # load_model: spec -> (classifier, model label), raising EvstreamError for a checkpoint
        # that does not fit (the application builds it: the pipeline core knows no torch).
        self._model_loader = model_loader
        self._pending_model: tuple[Any, str] | None = None
        self.classifier = classifier
        self.binner = binner
        self._binner_template = copy.deepcopy(binner)
        self.publisher = publisher
        self.config = config or PipelineConfig()
        self.sinks = list(sinks)
        self.live = bool(getattr(source, "live", False))
        self.sensor = source.sensor_size
        self.class_names = list(getattr(classifier, "class_names", ()))
        # The default recorder writes the source's camera name (a replayed file's own) into the info node.
        camera = str(getattr(source, "camera_name", "") or "") or "evstream"
        self._recorder_factory = recorder_factory or (lambda path, sensor: _default_recorder(path, sensor, camera))
        # label_at(t_us) when the source knows the ground truth (synthetic, a labelled recording)
        self._truth = truth_for(source)

        self._chunks: queue.Queue = queue.Queue(self.config.chunk_queue)
        size = self.config.live_window_queue if self.live else self.config.window_queue
        self._windows: queue.Queue = queue.Queue(size)
        self._sink_queue: queue.Queue = queue.Queue(self.config.sink_queue)
        self._stop = threading.Event()
        self._done = threading.Event()
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []

        self.state = "starting"
        self.message = ""
        self.error: BaseException | None = None
        self._unexpected = False
        self.model_swaps = 0  # models swapped in by load_model
        self._paused = False
        self._step_budget = 0
        self._step_resumed = False
        self._epoch = 0
        self._reset_requested = False
        self._speed = self.config.speed
        self._loop = self.config.loop
        self._recorder = None
        self._record_path: str | None = None
        self._recorded_events = 0
        self.record_dir = os.path.realpath(os.fspath(record_dir) if record_dir is not None else os.getcwd())

        self.windows = 0
        self.dropped_windows = 0
        self.dropped_predictions = 0
        self.resets = 0
        self.timings: list[WindowTiming] = []
        self.keep_timings = False
        self._last_window_t_end: int | None = None
        self._first_t: int | None = None
        self._last_stats_at = 0.0
        self._last_frame_at = 0.0
        self._heavy_interval = 0.0 if self.config.heavy_hz is None else 1.0 / self.config.heavy_hz
        self._last_maps_at = 0.0
        self._rt_anchor: tuple[float, int] | None = None
        self._last_stats: dict = {}

        self._control = None
        self.control_address = control_address if control_address is None or isinstance(control_address, str) \
            else control_address[0]
        if record_path is not None:
            self._start_recording(os.fspath(record_path))
        if control_address is not None:
            self._control = ControlServer(control_address, self.handle_control, context=context, publisher=publisher)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads and the status timer; returns at once."""
        if self.publisher is not None:
            self.publisher.start_status(self.status, self.config.status_interval_s)
        for target, name in ((self._read, "reader"), (self._bin, "binner"), (self._infer, "model"),
                             (self._sink, "sinks")):
            thread = threading.Thread(target=target, name=f"evstream-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, message: str = "") -> None:
        """Ask every thread to stop (safe from a signal handler); :meth:`wait` finishes the job."""
        if message and not self.message:
            self.message = message
        self._stop.set()

    def wait(self, timeout: float | None = None) -> int:
        """Wait until the pipeline ends or is stopped, then shut down; return the exit code.

        Returns:
            0 when the replay ended, ``max_windows`` was reached or :meth:`stop` was called;
            2 after an expected fault (state ``error`` with an :class:`EvstreamError`: a damaged
            recording after what it held was replayed, a network stream cut inside a packet, a
            camera unplugged); 1 after an unexpected one (a source bug, a device fault in the model).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            remaining = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if remaining <= 0:
                break
            self._stop.wait(remaining)
        self.close()
        if self.state != "error":
            return 0
        return 1 if self._unexpected else 2

    def run(self) -> int:
        """:meth:`start` then :meth:`wait`."""
        self.start()
        return self.wait()

    def close(self) -> None:
        """Stop threads, finalise the recording, publish the final status, close the control socket."""
        if self._done.is_set():
            return
        self._stop.set()
        resume = getattr(self.source, "resume", None)
        if self._paused and callable(resume):
            resume()  # a paused file source would keep the reader waiting
        reader = self._threads[0] if self._threads else None
        if reader is not None:
            reader.join(timeout=2.0)  # a source blocked in a read is unblocked by close()
        close_source = getattr(self.source, "close", None)
        if callable(close_source):
            close_source()
        for thread in self._threads:
            thread.join(timeout=5.0)
        with self._lock:
            self._stop_recording()
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
        """Whether the pipeline has stopped (ended, failed or asked to stop)."""
        return self._stop.is_set()

    def _set_state(self, state: str, message: str = "") -> None:
        changed = state != self.state or message != self.message
        self.state = state
        self.message = message
        if changed:
            if self.publisher is not None:
                self.publisher.publish_status()
            for sink in list(self.sinks):
                self._call_sink(sink, "on_state", state, message)

    def _fail(self, error: BaseException, unexpected: bool = False) -> None:
        self.error = error
        self._unexpected = unexpected
        self._set_state("error", str(error).splitlines()[0] if str(error) else type(error).__name__)
        self._stop.set()

    # -- reader thread -------------------------------------------------------------------------

    def _put(self, q: queue.Queue, item: Any) -> bool:
        """Blocking put that gives up when the pipeline stops."""
        while not self._stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _read(self) -> None:
        if self.publisher is not None and self.config.wait_subscribers > 0:
            self._set_state("starting", f"waiting for {self.config.wait_subscribers} subscriber(s)")
            if not self.publisher.wait_subscribers("pred", self.config.wait_subscribers, stop=self._stop):
                return
        if not self._paused:
            self._set_state("running", "")
        try:
            iterator = iter(self.source)
            while not self._stop.is_set():
                epoch = self._epoch
                try:
                    chunk = next(iterator)
                except StopIteration:
                    break
                if not self._put(self._chunks, (epoch, chunk)):
                    return
        except EvstreamError as err:
            if not self._stop.is_set():
                self._put(self._chunks, (self._epoch, _Failure(err)))
            return
        except Exception as err:  # a source bug must still end the run visibly, not hang it
            if not self._stop.is_set():
                self._put(self._chunks, (self._epoch, _Failure(SourceError(f"{self.source_name}: {type(err).__name__}: {err}"),
                                                               unexpected=True)))
            return
        self._put(self._chunks, (self._epoch, _END))

    @property
    def source_name(self) -> str:
        return str(getattr(self.source, "name", type(self.source).__name__))

    # -- binner thread -------------------------------------------------------------------------

    def _bin(self) -> None:
        try:
            self._bin_loop()
        except Exception as err:  # binning faults end the run visibly, after the windows before them
            expected = isinstance(err, EvstreamError)
            error = err if expected else EvstreamError(f"binner: {type(err).__name__}: {err}")
            self._put(self._windows, _Failure(error, unexpected=not expected))

    def _bin_loop(self) -> None:
        epoch = self._epoch
        recent: list[np.ndarray] = []
        last_t: int | None = None
        sensor_now: tuple[int, float] | None = None  # (sensor µs, perf_counter) of the latest chunk
        idle_timeout = 0.02 if self.live else 0.1
        while not self._stop.is_set():
            try:
                item_epoch, chunk = self._chunks.get(timeout=idle_timeout)
            except queue.Empty:
                if self.live and sensor_now is not None and not self._paused:
                    now_us = sensor_now[0] + int((time.perf_counter() - sensor_now[1]) * 1e6)
                    self._emit(self.binner.flush(now_us), recent, epoch)
                continue
            if item_epoch != self._epoch:
                continue  # read before a seek
            if item_epoch != epoch:
                epoch = item_epoch
                self._restart_binner(recent)
                last_t = None
            if chunk is _END:
                # The tail of a recording (all of it when shorter than a window) as a last, shorter
                # window. A live source's end is an unplugged camera: what it left is not kept.
                finish = getattr(self.binner, "finish", None)
                if callable(finish) and not self.live:
                    self._emit(finish(), recent, epoch)
                self._put(self._windows, _END)
                return
            if isinstance(chunk, _Failure):
                self._put(self._windows, chunk)
                return
            events = chunk.events
            if len(events) and last_t is not None and int(events["t"][0]) < last_t:
                # A looping replay starts over: sensor time runs backwards; so must the binner.
                self._restart_binner(recent)
                self._reset_requested = True
            if len(events):
                last_t = int(events["t"][-1])
                if self._first_t is None:
                    self._first_t = int(events["t"][0])
            sensor_now = (int(chunk.t_end), time.perf_counter())
            self._record(events)
            if len(events):
                recent.append(events)
            windows = self.binner.push(chunk)
            if self._paused and self.live and self._step_budget == 0:
                _trim(recent, windows)  # a paused live view discards what happens meanwhile
                continue
            self._emit(windows, recent, epoch)

    def _restart_binner(self, recent: list) -> None:
        reset = getattr(self.binner, "reset", None)
        if callable(reset):
            reset()  # the window index keeps counting
        else:
            self.binner = copy.deepcopy(self._binner_template)
        recent.clear()

    def _emit(self, windows: list, recent: list[np.ndarray], epoch: int) -> None:
        if not windows:
            return
        for window in windows:
            now = time.perf_counter()
            want_frame = (self.publisher is not None and now - self._last_frame_at >= self._heavy_interval
                          and self.publisher.wants("frame"))
            t0, t1 = int(window.t_start), int(window.t_end)
            parts = [_slice(e, t0, t1) for e in recent]
            parts = [p for p in parts if len(p)]
            n = sum(len(p) for p in parts)
            on = sum(int(np.count_nonzero(p["p"])) for p in parts)
            counts = None
            if want_frame:
                self._last_frame_at = now
                counts = frame_counts(concatenate(parts), self.sensor.width, self.sensor.height)
            item = _Item(window, epoch, time.perf_counter(), on, n - on, counts)
            if self.live:
                self._offer_live(item)
            elif not self._put(self._windows, item):
                return
            if self._step_resumed and self._paused:
                self._step_resumed = False
                pause = getattr(self.source, "pause", None)
                if callable(pause):
                    pause()
        _trim(recent, windows)

    def _offer_live(self, item: _Item) -> None:
        while True:
            try:
                self._windows.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._windows.get_nowait()
                except queue.Empty:
                    continue
                with self._lock:
                    self.dropped_windows += 1
                    self._reset_requested = True

    # -- recording -----------------------------------------------------------------------------

    def _record(self, events: np.ndarray) -> None:
        if self._recorder is None or not len(events):
            return
        with self._lock:
            if self._recorder is None:
                return
            try:
                self._recorder.write(events)
                self._recorded_events += len(events)
            except EvstreamError as err:
                self._stop_recording()
                self.message = f"recording stopped: {err}"

    def _start_recording(self, path: str) -> None:
        with self._lock:
            if self._recorder is not None:
                raise ConfigError(f"record_start: already recording to {self._record_path}")
            self._recorder = self._recorder_factory(path, self.sensor)
            self._record_path = path
            self._recorded_events = 0

    def _stop_recording(self) -> dict:
        with self._lock:
            if self._recorder is None:
                return {"path": None, "events": 0}
            recorder, self._recorder = self._recorder, None
            recorder.close()
            return {"path": self._record_path, "events": self._recorded_events}

    # -- model thread --------------------------------------------------------------------------

    def _apply_requests(self) -> None:
        pending, self._pending_model = self._pending_model, None
        if pending is not None:  # between windows: the next one is the new model's first
            classifier, label = pending
            with self._lock:
                self.classifier = classifier
                self.class_names = list(getattr(classifier, "class_names", ()))
                self.config.model_name = label
                self.model_swaps += 1
            if self.publisher is not None:
                self.publisher.publish_status()  # subscribers learn the new model and class names
        if self._reset_requested:
            self._reset_requested = False
            self.classifier.reset()
            self.resets = int(getattr(self.classifier, "resets", self.resets + 1))

    def _infer(self) -> None:
        heavy = ("spikes", "attn")
        while not self._stop.is_set():
            self._apply_requests()
            if self._paused and self._step_budget == 0:
                time.sleep(0.02)
                continue
            try:
                item = self._windows.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _END:
                self._finish_replay()
                return
            if isinstance(item, _Failure):
                self._fail(item.error, item.unexpected)
                return
            if item.epoch != self._epoch:
                continue
            started = time.perf_counter()
            if self.live and (started - item.closed) * 1000 > self.config.max_lag_ms:
                with self._lock:
                    self.dropped_windows += 1
                self._reset_requested = True
                continue
            self._apply_requests()
            if self._paused and self._step_budget > 0:
                self._step_budget -= 1
            if self.publisher is not None:
                due = started - self._last_maps_at >= self._heavy_interval
                capture = due and any(self.publisher.wants(t) for t in heavy)
                if capture:
                    self._last_maps_at = started
                self.classifier.capture(capture)
            try:
                pred = self.classifier.step(item.window)
            except EvstreamError as err:
                self._fail(err)
                return
            except Exception as err:  # e.g. CUDA out of memory: report it, never hang
                self._fail(ModelError(f"model {self.config.model_name}: {type(err).__name__}: {err}"), unexpected=True)
                return
            self.resets = int(getattr(pred, "resets", self.resets))
            # The label in force at the window's last µs (online evaluation's convention); sinks read pred.truth.
            pred.truth = None if self._truth is None else int(self._truth(int(pred.t_end) - 1))
            self.windows += 1
            self._last_window_t_end = int(pred.t_end)
            stats = self._stats(pred, item, started)
            self._publish(pred, item, stats)
            published = time.perf_counter()
            if self.keep_timings:
                self.timings.append(WindowTiming(item.closed, started, published))
            self._to_sinks(pred, stats)
            if self.config.max_windows is not None and self.windows >= self.config.max_windows:
                self._set_state("ended", f"stopped after {self.windows} windows (max windows)")
                self._stop.set()
                return

    def _finish_replay(self) -> None:
        if self.publisher is not None and self._last_stats:
            self.publisher.publish("stats", self._last_stats)
        self._set_state("ended", "end of recording")
        self._stop.set()

    def _stats(self, pred: Any, item: _Item, started: float) -> dict:
        now = time.perf_counter()
        t0, t1 = int(pred.t_start), int(pred.t_end)
        if self._rt_anchor is None:
            self._rt_anchor = (started, t0)
        wall = now - self._rt_anchor[0]
        rtf = (t1 - self._rt_anchor[1]) / 1e6 / wall if wall > 0 else 0.0
        if wall > 5.0:  # a moving anchor: the factor follows speed changes and pauses
            self._rt_anchor = (now, t1)
        span_s = max(t1 - t0, 1) / 1e6
        return {
            "windows": self.windows,
            "dropped_windows": self.dropped_windows,
            "resets": self.resets,
            "events_on": item.events_on,
            "events_off": item.events_off,
            "event_rate": (item.events_on + item.events_off) / span_s,
            "infer_ms": float(pred.infer_ms),
            "lag_ms": (now - item.closed) * 1000.0,
            "window_ms": (t1 - t0) / 1000.0,
            "realtime_factor": float(rtf),
        }

    def _publish(self, pred: Any, item: _Item, stats: dict) -> None:
        self._last_stats = stats
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
            "truth": getattr(pred, "truth", None),
        }
        arrays = {"probs": np.asarray(pred.probs, np.float32), "smoothed": np.asarray(pred.smoothed, np.float32)}
        pub.publish("pred", data, arrays, t0, t1)
        if item.counts is not None:
            pub.publish("frame", {"sensor": [self.sensor.width, self.sensor.height]}, {"counts": item.counts}, t0, t1)
        publish_maps(pub, pred, t0, t1)
        now = time.perf_counter()
        if now - self._last_stats_at >= 1.0 / self.config.stats_hz:
            self._last_stats_at = now
            pub.publish("stats", stats, None, t0, t1)  # t0/t1: the window the figures describe

    # -- status and control --------------------------------------------------------------------

    def position_us(self) -> int | None:
        """Position in the recording, µs from its start (the source's when it knows it)."""
        position = getattr(self.source, "position_us", None)
        if position is not None and not callable(position):
            return int(position)
        if self._last_window_t_end is None or self._first_t is None:
            return None
        return self._last_window_t_end - self._first_t

    def status(self) -> dict:
        """The ``status`` topic's fields (see :mod:`evstream.protocol`)."""
        duration = getattr(self.source, "duration_us", None)
        return {
            "schema": protocol.SCHEMA_VERSION,
            "classes": self.class_names,
            "sensor": [self.sensor.width, self.sensor.height],
            "model": self.config.model_name,
            "source": self.source_name,
            "state": "paused" if self._paused and self.state == "running" else self.state,
            "message": self.message,
            "live": self.live,
            "position_us": self.position_us(),
            "duration_us": None if self.live or duration is None else int(duration),
            "speed": 0.0 if self._speed is None else float(self._speed),
            "loop": bool(self._loop),
            "recording": self._record_path if self._recorder is not None else None,
            "control": self.control_address,
            "windows": self.windows,
            "dropped_windows": self.dropped_windows,
            "resets": self.resets,
            "origin_us": origin_for(self.source, self._first_t),
            "record_dir": self.record_dir,
            "geometry": geometry_info(getattr(self.binner, "geometry", None)),
            "decision": dict(getattr(self.classifier, "decision_settings", None) or {}),
            # paced replay: quiet stretches longer than MAX_QUIET_WAIT_S of wall time are skipped
            "quiet_skips": int(getattr(self.source, "quiet_skips", 0) or 0),
            "skipped_us": int(getattr(self.source, "skipped_us", 0) or 0),
        }

    def handle_control(self, request: dict) -> dict:
        """Apply one validated control request (see :data:`evstream.protocol.CONTROL_COMMANDS`).

        Returns:
            the reply's fields besides ``ok``.

        Raises:
            EvstreamError: the command does not apply (names the command and why).
        """
        cmd = request["cmd"]
        handler = getattr(self, f"_cmd_{cmd}")
        reply = handler(request) or {}
        if self.publisher is not None and cmd != "status":
            self.publisher.publish_status()
        return reply

    def _source_call(self, cmd: str, method: str, *args) -> None:
        fn = getattr(self.source, method, None)
        if not callable(fn):
            raise ConfigError(f"{cmd}: source {self.source_name} does not support it (live source)")
        fn(*args)

    def _cmd_status(self, request: dict) -> dict:
        return self.status()

    def _cmd_load_model(self, request: dict) -> dict:
        """Load a checkpoint in the control thread; the inference thread swaps it in between windows
        (its LIF state starts at rest, its own decision settings apply). A checkpoint that does not
        fit is refused and the running model keeps going."""
        classifier, label = call_model_loader(self._model_loader, request)
        self._pending_model = (classifier, label)
        return {"model": label, "classes": list(getattr(classifier, "class_names", ())), "from": "next window"}

    def _cmd_pause(self, request: dict) -> dict:
        self._paused = True
        self._step_budget = 0
        pause = getattr(self.source, "pause", None)
        if callable(pause):
            pause()
        return {"state": "paused"}

    def _cmd_resume(self, request: dict) -> dict:
        was_paused, self._paused = self._paused, False
        self._step_resumed = False
        resume = getattr(self.source, "resume", None)
        if callable(resume):
            resume()
        if was_paused and self.live:
            self._reset_requested = True  # the state would bridge the paused gap
        return {"state": self.state}

    def _cmd_step(self, request: dict) -> dict:
        if not self._paused:
            raise ConfigError("step: only while paused")
        self._step_budget += 1
        resume = getattr(self.source, "resume", None)
        if self._windows.empty() and callable(resume):
            self._step_resumed = True
            resume()
        return {"windows": self.windows}

    def _cmd_seek(self, request: dict) -> dict:
        if isinstance(request["t_us"], bool):
            raise ConfigError("seek: t_us must be an integer number of µs, got a boolean")
        t_us = int(request["t_us"])
        duration = getattr(self.source, "duration_us", None)
        if t_us < 0 or (duration is not None and t_us > int(duration)):
            raise ConfigError(f"seek: t_us {t_us} outside the recording (0 ... {duration} µs)")
        self._source_call("seek", "seek", t_us)
        with self._lock:
            self._epoch += 1
            self._reset_requested = True
            self._drain(self._windows)
        return {"position_us": t_us}

    def _drain(self, q: queue.Queue) -> None:
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                return
            if item is _END or isinstance(item, _Failure):
                q.put_nowait(item)  # the end of the stream is not stale
                return

    def _cmd_speed(self, request: dict) -> dict:
        value = float(request["value"])
        if math.isnan(value) or math.copysign(1.0, value) < 0:
            raise ConfigError(f"speed: value {value:g} is not a speed ({SPEED_RANGE[0]:g} ... {SPEED_RANGE[1]:g}, "
                              "or 0 = as fast as possible)")
        if value != 0 and not SPEED_RANGE[0] <= value <= SPEED_RANGE[1]:
            raise ConfigError(f"speed: value {value:g} outside {SPEED_RANGE[0]:g} ... {SPEED_RANGE[1]:g} (0 = as fast as possible)")
        speed = None if value == 0 else value
        self._source_call("speed", "set_speed", speed)
        self._speed = speed
        return {"speed": value}

    def _cmd_loop(self, request: dict) -> dict:
        self._source_call("loop", "set_loop", bool(request["value"]))
        self._loop = bool(request["value"])
        return {"loop": self._loop}

    def _cmd_reset(self, request: dict) -> dict:
        before = self.resets
        self._reset_requested = True
        deadline = time.monotonic() + 2.0
        while self._reset_requested and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.005)
        if self._reset_requested and not self._stop.is_set():
            raise ConfigError("reset: the model thread did not take the request within 2 s")
        return {"resets": max(self.resets, before + 1)}

    def _cmd_record_start(self, request: dict) -> dict:
        path = self._record_target(request["path"], bool(request.get("overwrite", False)))
        created = False
        if not request.get("overwrite", False):
            try:  # claim the name atomically: a file appearing meanwhile is not overwritten either
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                created = True
            except FileExistsError:
                raise ConfigError(f"record_start: {protocol.excerpt(request['path'])} exists (send overwrite=True to replace it)") from None
            except OSError as err:
                raise ConfigError(f"record_start: {protocol.excerpt(request['path'])}: cannot create ({err.strerror})") from None
        try:
            self._start_recording(path)
        except BaseException:
            if created:
                os.unlink(path)
            raise
        return {"path": path}

    def _record_target(self, requested: str, overwrite: bool) -> str:
        """The absolute path ``record_start`` may write for ``requested``, inside ``record_dir``.

        Raises:
            ConfigError: an empty path, a NUL byte, a path leaving the recordings folder (``..``,
                an absolute path elsewhere, a symbolic link out), a folder, or an existing file
                without ``overwrite`` (quoting an excerpt of the path only).
        """
        quoted = protocol.excerpt(requested)
        if not requested or "\0" in requested or len(requested) > 4096:
            raise ConfigError(f"record_start: path {quoted} is not a file name")
        path = os.path.realpath(os.path.join(self.record_dir, requested))
        if os.path.commonpath([path, self.record_dir]) != self.record_dir or path == self.record_dir:
            raise ConfigError(f"record_start: path {quoted} leaves the recordings folder {self.record_dir}")
        if os.path.isdir(path):
            raise ConfigError(f"record_start: path {quoted} is a folder")
        if os.path.lexists(path) and not overwrite:
            raise ConfigError(f"record_start: {quoted} exists (send overwrite=True to replace it)")
        return path

    def _cmd_record_stop(self, request: dict) -> dict:
        return self._stop_recording()


def _trim(recent: list[np.ndarray], windows: list) -> None:
    """Keep only the event arrays that a window after ``windows`` can still overlap."""
    if windows:
        start = int(windows[-1].t_start)
        recent[:] = [e for e in recent if int(e["t"][-1]) >= start]


def _slice(events: np.ndarray, t0: int, t1: int) -> np.ndarray:
    t = events["t"]
    return events[int(np.searchsorted(t, t0, "left")):int(np.searchsorted(t, t1, "left"))]


def _default_recorder(path: str, sensor_size: Any, camera_name: str = "evstream") -> Any:
    from evstream.io.aedat4 import Aedat4Writer

    return Aedat4Writer(path, sensor_size, camera_name=camera_name)

