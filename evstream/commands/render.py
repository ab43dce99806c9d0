"""``python main.py render IN OUT.mp4``: a recording as an event video, optionally with the
model's decisions burned in.

Frames are cut on the recording's clock: frame ``k`` ends at ``t0 + round((k + 1) * 1e6 / fps)``
µs (``t0`` = first event, or ``--start``), and the video holds ``ceil(duration * fps)`` frames,
``duration`` running from ``t0`` to just after the last event (or to ``--end``). Each frame is
drawn the way the dashboard draws its event image (:class:`evstream.dashboard.accumulate.EventAccumulator`
and its ON amber / OFF blue lookup table): ``--view window`` shows the events of the last
``--span-ms`` (default one frame), ``--view decay`` decays counts with that time constant.

``--decisions`` runs the pipeline's model path over the same events — :func:`models.load_checkpoint`
(or a registered variant, untrained), :class:`evstream.binning.Binner`,
:class:`models.streaming.StreamingClassifier`, built as ``python main.py run`` builds them — and
writes on each frame the decision of the latest window that ended by the frame's end. The
attention overlay is not burned in.

The video goes through OpenCV's ``VideoWriter`` (``mp4v``). Reading is streaming: one packet and
the events of one span are in memory. A progress line on stderr is updated in place.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from evstream.commands.convert import add_input_arguments, parse_roi, parse_size, reader_camera, trim_bounds
from evstream.commands.eval import add_decision_arguments, decision_settings
from evstream.errors import ConfigError, EventFileError
from evstream.events import concatenate
from evstream.io import open_reader

__all__ = ["add_arguments", "run", "render", "frame_bounds", "EXAMPLES"]

EXAMPLES = """\
examples:
  python main.py render rec.aedat4 rec.mp4
  python main.py render rec.aedat4 rec.mp4 --view decay --span-ms 50 --fps 60 --start 1 --end 4
  python main.py render rec.aedat4 rec.mp4 --decisions --model spikformer_2_256_dvsgesture
"""

_TEXT = (232, 232, 240)  # BGR of the dashboard's light text (#e8e8f0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="a recording in any readable format")
    parser.add_argument("output", help="video file to write (.mp4, mp4v codec)")
    add_input_arguments(parser)
    parser.add_argument("--fps", type=float, default=30.0, help="video frames per second of recording time (default 30)")
    parser.add_argument("--view", choices=("window", "decay"), default="window",
                        help="window: the events of the last span; decay: counts decayed with the span as time "
                             "constant (default window)")
    parser.add_argument("--span-ms", type=float, metavar="MS",
                        help="window length or decay time constant, ms (default: one frame, 1000 / fps)")
    parser.add_argument("--scale", type=int, metavar="N", help="pixels per sensor pixel (default: about 480 rows)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    model = parser.add_argument_group("decisions burned in (--decisions)")
    model.add_argument("--decisions", action="store_true", help="run the model and write its decision on each frame")
    model.add_argument("--model", metavar="NAME|PATH", help="as for run (default: the shipped weights)")
    model.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto (CUDA when present)")
    model.add_argument("--step-ms", type=float, metavar="MS", help="time step, ms (default: the checkpoint's)")
    model.add_argument("--roi", metavar="X,Y,W,H", help="the model sees only this sensor rectangle")
    model.add_argument("--fit", choices=("crop", "letterbox"), default="crop", help="as for run (default crop)")
    add_decision_arguments(model)


def frame_bounds(t0: int, fps: float, k: int) -> int:
    """End (µs, exclusive) of frame ``k`` of a video starting at ``t0``."""
    return t0 + round((k + 1) * 1e6 / fps)


class _Decider:
    """The run command's model path over the rendered events: Binner -> StreamingClassifier."""

    def __init__(self, args: argparse.Namespace, sensor_size) -> None:
        from evstream.binning import Binner, warmup
        from evstream.commands.run import DEFAULT_STEP_US, _device, _load_model
        from models.streaming import StreamingClassifier, decision_options, default_window_steps, input_scale_for

        model, pre, self.label, decision, _trained_on = _load_model(args.model)
        height, width = (int(v) for v in model.config.img_size)
        settings = decision_settings(decision, args)
        model_steps = int(pre.get("steps") or model.config.steps)
        step_us = int(round(args.step_ms * 1000)) if args.step_ms else int(pre.get("step_us") or DEFAULT_STEP_US)
        steps = default_window_steps(settings, model_steps, step_us)
        options = decision_options({k: v for k, v in settings.items() if k != "window_steps"}, model_steps=model_steps)
        self.binner = Binner(sensor_size, (width, height), step_us, steps, fit=args.fit, roi=parse_roi(args.roi))
        warmup()
        self.classifier = StreamingClassifier(model, device=_device(args.device),
                                              input_scale=input_scale_for(pre, self.binner.geometry), **options)
        self.decisions: list[tuple[int, str, float]] = []  # (window t_end, class name, confidence)
        self.windows = 0
        self._current: tuple[str, float] | None = None

    def push(self, events: np.ndarray) -> None:
        for window in self.binner.push(events):
            self._step(window)

    def flush(self, t_us: int) -> None:
        for window in self.binner.flush(t_us):
            self._step(window)

    def _step(self, window) -> None:
        pred = self.classifier.step(window)
        self.windows += 1
        self.decisions.append((int(pred.t_end), str(pred.name), float(pred.confidence)))

    def at(self, t_us: int) -> tuple[str, float] | None:
        """The latest decision of a window ending at or before ``t_us``; older ones are let go."""
        latest = None
        while self.decisions and self.decisions[0][0] <= t_us:
            latest = self.decisions.pop(0)
        if latest is not None:
            self._current = latest[1:]
        return self._current


class _Progress:
    """One stderr line updated in place (at most 10 times a second)."""

    def __init__(self, total_frames: int | None, stream=sys.stderr) -> None:
        self.total = total_frames
        self.stream = stream
        self._last = 0.0

    def show(self, frames: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < 0.1:
            return
        self._last = now
        if self.total:
            done = min(1.0, frames / self.total)
            bar = "#" * int(30 * done)
            text = f"\rrender [{bar:<30}] {frames}/{self.total} frames"
        else:
            text = f"\rrender {frames} frames"
        self.stream.write(text + ("\n" if final else ""))
        self.stream.flush()


def render(args: argparse.Namespace, progress: bool = True) -> dict:
    """Write the video of ``args.input`` to ``args.output`` (see the module docstring).

    Returns:
        ``frames`` written, ``fps``, ``size`` ``[W, H]`` of the video, ``decisions`` (windows classified).

    Raises:
        EventFileError: unreadable input, a video that cannot be written.
        ConfigError: a bad option.
    """
    import cv2

    from evstream.dashboard.accumulate import EventAccumulator, diverging_lut

    if not (math.isfinite(args.fps) and 0 < args.fps <= 1000):
        raise ConfigError(f"--fps: expected 0 < fps <= 1000, got {args.fps:g}")
    start_us, end_us = trim_bounds(args.start, args.end)
    frame_us = 1e6 / args.fps
    span_us = int(round(args.span_ms * 1000)) if args.span_ms is not None else int(round(frame_us))
    if span_us <= 0:
        raise ConfigError(f"--span-ms: must be positive, got {args.span_ms:g}")
    out = Path(args.output)
    lut = diverging_lut()[:, ::-1].copy()  # RGB -> BGR for OpenCV
    error = None
    with open_reader(args.input, format=args.format, sensor_size=parse_size(args.sensor, "--sensor")) as reader:
        sensor = reader.sensor_size
        w, h = sensor.width, sensor.height
        scale = args.scale if args.scale is not None else max(1, min(8, round(480 / h)))
        if scale < 1 or scale * max(w, h) > 8192:
            raise ConfigError(f"--scale: {scale} gives a video of {scale * w}x{scale * h}; at most 8192 pixels a side")
        size = (w * scale, h * scale)
        decider = _Decider(args, sensor) if args.decisions else None
        total = None
        time_range = getattr(reader, "time_range", None)
        if time_range is not None:
            try:
                found = time_range()
            except EventFileError:
                found = None
            if found is not None:
                lo = found[0] + start_us
                hi = found[1] + 1 if end_us is None else min(found[1] + 1, found[0] + end_us)
                total = max(0, math.ceil((hi - lo) / frame_us - 1e-9))
        bar = _Progress(total) if progress else None
        fourcc = cv2.VideoWriter_fourcc(*"mp4v")
        writer = cv2.VideoWriter(str(out), fourcc, float(args.fps), size)
        if not writer.isOpened():
            raise EventFileError(out, "OpenCV cannot write this video (mp4v); check the folder and the .mp4 name")
        accumulator = EventAccumulator(args.view, span_us)
        frames = 0
        pending: list[np.ndarray] = []
        t0 = t_hi = last = None

        def emit(events: np.ndarray, k: int) -> None:
            """Draw frame ``k`` from ``events`` (those inside it) and write it."""
            lo, hi = (t0 if k == 0 else frame_bounds(t0, args.fps, k - 1)), frame_bounds(t0, args.fps, k)
            idx = (events["p"].astype(np.int64) * h + events["y"]) * w + events["x"]
            counts = np.minimum(np.bincount(idx, minlength=2 * h * w), 255).astype(np.uint8).reshape(2, h, w)
            accumulator.push(counts, lo, hi)
            image = lut[accumulator.render()]
            if scale > 1:
                image = cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)
            text = f"{(hi - t0 + start_us) / 1e6:7.3f} s"
            cv2.putText(image, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, _TEXT, 1, cv2.LINE_AA)
            if decider is not None:
                decider.flush(hi)
                decision = decider.at(hi)
                if decision is not None:
                    name, confidence = decision
                    cv2.putText(image, f"{name} {confidence:.2f}", (6, size[1] - 10), cv2.FONT_HERSHEY_SIMPLEX,
                                0.6, _TEXT, 2, cv2.LINE_AA)
            writer.write(image)

        try:
            try:
                t_first = None
                for events in reader.iter_packets():
                    if not len(events):
                        continue
                    if t_first is None:
                        t_first = int(events["t"][0])
                        t0 = t_first + start_us
                        t_hi = None if end_us is None else t_first + end_us
                    t = events["t"]
                    if t_hi is not None and int(t.min()) >= t_hi:
                        break
                    keep = t >= t0
                    if t_hi is not None:
                        keep &= t < t_hi
                    events = events[keep] if not keep.all() else events
                    if not len(events):
                        continue
                    if decider is not None:
                        decider.push(events)
                    pending.append(events)
                    last = int(events["t"][-1])
                    # Every frame that ends at or before the latest event is complete: draw it.
                    while frame_bounds(t0, args.fps, frames) <= last:
                        joined = concatenate(pending)
                        cut = int(np.searchsorted(joined["t"], frame_bounds(t0, args.fps, frames), side="left"))
                        emit(joined[:cut], frames)
                        pending = [joined[cut:]]
                        frames += 1
                        if bar:
                            bar.show(frames)
            except EventFileError as err:
                error = err
            if last is not None:
                joined = concatenate(pending)
                end = last + 1 if t_hi is None else min(t_hi, last + 1)
                while frames == 0 or frame_bounds(t0, args.fps, frames - 1) < end:
                    hi = frame_bounds(t0, args.fps, frames)
                    cut = int(np.searchsorted(joined["t"], hi, side="left"))
                    emit(joined[:cut], frames)
                    joined = joined[cut:]
                    frames += 1
                    if bar:
                        bar.show(frames)
        finally:
            writer.release()
        if bar:
            bar.show(frames, final=True)
    if frames == 0 and error is not None:
        raise error
    if frames == 0:
        raise EventFileError(args.input, "no events to render" + (" in --start/--end" if start_us or end_us else ""))
    summary = {"output": str(out), "frames": frames, "fps": args.fps, "size": list(size),
               "camera": reader_camera(reader),
               "decisions": None if decider is None else decider.windows}
    if error is not None:
        raise error
    return summary


def run(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not args.force:
        raise ConfigError(f"{out}: exists (pass --force to replace it)")
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder")
    if not out.parent.is_dir():
        raise EventFileError(out, f"cannot create: no folder {out.parent}")
    summary = render(args)
    print(f"{summary['output']}: {summary['frames']} frames at {summary['fps']:g} fps, "
          f"{summary['size'][0]}x{summary['size'][1]}", flush=True)
    return 0
