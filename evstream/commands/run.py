"""``python main.py [run]``: the application — a source through the Spikformer to the dashboard,
the console and the published ZeroMQ stream.

With no source option it replays the bundled recording ``recordings/gestures_128x128.aedat4``.
Several sources (``--replay A --replay B``, ``--synthetic N`` = N independent synthetic people,
or any mix with ``--camera``/``--network``/``--webcam``) run as streams 0, 1, ... in command-line
order through one batched classifier (:mod:`evstream.multipipeline`, whose docstring states the
rules: a stream that ends stops contributing and the others go on; ``--max-windows`` counts
windows per stream); ``--record`` and ``--loop`` take one source only.
The dashboard opens when a display Qt can use exists (``DISPLAY``/``WAYLAND_DISPLAY``, probed
before Qt starts: a dead one falls back to the console with one line saying why) or
``--screenshot`` is given (always on Qt's offscreen platform); otherwise (or with ``--no-gui``)
the console prints one line per label change and a periodic summary. Both start with a banner:
the source, what the model sees of the sensor, the model, the window and the decision rule. The stream is always published (``--publish``, loopback by default) and the
control socket listens on 127.0.0.1, publish port + 1, unless ``--control`` says otherwise —
publishing on another interface does not open the control socket there. With ``--curve-secret``
the control socket takes the same key and ``--curve-clients`` allow-list as the stream.
``record_start`` on the control socket writes only inside ``--record-dir`` (default: the current
folder) and never replaces a file unless asked to.

Exit codes: 0 when the replay ends, ``--max-windows``/``--duration`` is reached, or on Ctrl-C /
SIGTERM (recordings are finalised first); 2 for an expected fault — a bad option, file,
checkpoint or a missing camera at start, or mid-stream a damaged recording (after what it held
was replayed), a network stream cut inside a packet (reported on ``status`` and stderr, one
line); 1 for an unexpected failure (a bug, a device fault in the model).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from evstream.commands.convert import parse_roi, trim_bounds
from evstream.commands.eval import add_decision_arguments, decision_settings
from evstream.errors import ConfigError
from evstream.sources.filtered import FILTERS
from evstream.sources.pacing import MAX_SPEED, MIN_SPEED

EXAMPLES = """\
examples:
  python main.py                                        bundled recording; dashboard if a display exists
  python main.py --camera dvxplorer                     live camera
  python main.py --replay rec.aedat4 --speed 2 --loop
  python main.py --replay rec.aedat4 --no-gui --speed max
  python main.py --synthetic --no-gui --record out.aedat4
  python main.py --replay a.aedat4 --replay b.aedat4 --synthetic 2 --no-gui   four streams, one batched model
  python main.py --replay rec.aedat4 --no-gui --speed max --wait-subscribers 1 --publish tcp://127.0.0.1:6000
  python main.py --screenshot dash.png --duration 5
  python main.py --curve-secret keys/server.key_secret --curve-clients clients --publish tcp://0.0.0.0:5556
"""

BUNDLED_RECORDING = Path(__file__).resolve().parents[2] / "recordings" / "gestures_128x128.aedat4"
UNTRAINED_FALLBACK = "spikformer_2_64"
DEFAULT_STEP_US = 50_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group(
        "source (default: the bundled recording; repeat or mix them for several streams through one batched model, "
        "stream ids in command-line order)")
    parser.set_defaults(sources=[])
    src.add_argument("--camera", action=_SourceAction, metavar="{dvxplorer,davis346,dvs128,SERIAL,prophesee}",
                     help="live camera: iniVation (dv-processing) or prophesee[:SERIAL] (OpenEB bindings)")
    src.add_argument("--replay", action=_SourceAction, metavar="FILE",
                     help="replay a recording: AEDAT 4.0, 3.1 or 2.0, Prophesee RAW (EVT 2.0/2.1/3.0) or DAT")
    src.add_argument("--network", action=_SourceAction, metavar="HOST:PORT", help="DV network event stream (dv-processing)")
    src.add_argument("--synthetic", action=_SourceAction, nargs="?", const=1, type=int, metavar="N",
                     help="endless rendered gestures through the DVS emulator; N independent people (seeds 0 ... N-1, "
                          "default 1)")
    src.add_argument("--webcam", action=_SourceAction, type=int, metavar="N", help="OpenCV camera N through the DVS emulator")
    src.add_argument("--speed", default="1", metavar="X|max",
                     help="replay speed 0.1 ... 100, or max for as fast as possible (default 1)")
    src.add_argument("--loop", action="store_true", help="replay: start over at the end (at --start)")
    src.add_argument("--start", type=float, metavar="S", help="replay: start S seconds after the recording's first event")
    src.add_argument("--end", type=float, metavar="S", help="replay: end S seconds after the recording's first event")

    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="NAME|PATH",
                       help="shipped weights name, checkpoint file, or a registered variant (untrained); "
                            "default: the shipped weights")
    model.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto (CUDA when present)")
    model.add_argument("--step-ms", type=float, metavar="MS", help="time step, ms (default: the checkpoint's)")
    add_decision_arguments(model)

    view = parser.add_argument_group("what the model sees (sensor -> model input)")
    view.add_argument("--filter", choices=FILTERS, default="none",
                      help="event filter before binning: ba = background activity (dv-processing's rule), "
                           "refractory = at most one event per pixel per period (default none)")
    view.add_argument("--filter-us", type=int, metavar="US",
                      help="filter time: ba support window (default 2000 µs), refractory period (default 1000 µs)")
    view.add_argument("--roi", metavar="X,Y,W,H", help="use only this sensor rectangle (pixels)")
    view.add_argument("--fit", choices=("crop", "letterbox"), default="crop",
                      help="a sensor of another aspect than the model: crop its centre (default) or letterbox all of it")
    view.add_argument("--flip-x", action="store_true", help="mirror the model input left-right")
    view.add_argument("--flip-y", action="store_true", help="mirror the model input top-bottom")

    out = parser.add_argument_group("output")
    out.add_argument("--no-gui", action="store_true", help="console lines instead of the dashboard")
    out.add_argument("--quiet", action="store_true", help="console: only errors")
    out.add_argument("--publish", default="tcp://127.0.0.1:5556", metavar="ADDR",
                     help="ZeroMQ publish address (default tcp://127.0.0.1:5556; loopback unless you say otherwise)")
    out.add_argument("--control", metavar="ADDR",
                     help="control (REQ/REP) address (default: tcp://127.0.0.1:<publish port + 1>, loopback "
                          "whatever --publish says)")
    out.add_argument("--record", metavar="OUT.aedat4", help="record the source's events to an .aedat4 file")
    out.add_argument("--record-dir", metavar="DIR",
                     help="the only folder the control socket's record_start may write in (default: the current folder)")
    out.add_argument("--curve-secret", metavar="FILE", help="CURVE: this server's key pair file (python main.py keys)")
    out.add_argument("--curve-clients", metavar="DIR", help="CURVE: folder of allowed clients' public keys")
    out.add_argument("--screenshot", metavar="PNG", help="dashboard: save a screenshot after --duration and quit")
    out.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    out.add_argument("--max-windows", type=int, metavar="N", help="stop after N classified windows")
    out.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                     help="start reading the source only once N subscribers listen to 'pred' "
                          "(so a script receives every prediction from the first)")


class _SourceAction(argparse.Action):
    """A source option: sets its own attribute (the last one given wins, for one source) and appends
    ``(kind, value)`` to ``args.sources``, so several sources keep their command-line order."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.sources = [*getattr(namespace, "sources", []), (self.dest, values)]


def source_specs(args: argparse.Namespace) -> list[tuple[str, object]]:
    """The sources asked for, one ``(kind, value)`` per stream in command-line order (``--synthetic N``
    is N entries ``("synthetic", seed)``, seeds 0 ... N-1); empty for the bundled recording.

    Raises:
        ConfigError: ``--synthetic`` with N < 1.
    """
    out: list[tuple[str, object]] = []
    for kind, value in getattr(args, "sources", None) or []:
        if kind != "synthetic":
            out.append((kind, value))
            continue
        if int(value) < 1:
            raise ConfigError(f"--synthetic: N must be >= 1, got {value}")
        first = sum(1 for k, _ in out if k == "synthetic")
        out.extend(("synthetic", first + i) for i in range(int(value)))
    return out


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--speed: expected a number or 'max', got {text!r}") from None
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise ConfigError(f"--speed: {value:g} outside {MIN_SPEED:g} ... {MAX_SPEED:g} (or max)")
    return value


def trim_us(start: float | None, end: float | None) -> dict:
    """``start_us``/``end_us`` options of a file source from ``--start``/``--end`` seconds (only those given).

    Raises:
        ConfigError: a negative or non-finite time, or an end not after the start.
    """
    start_us, end_us = trim_bounds(start, end)
    out = {} if start is None else {"start_us": start_us}
    return out if end_us is None else {**out, "end_us": end_us}


def _choose_gui(args: argparse.Namespace) -> tuple[bool, str]:
    """(dashboard?, why not): a display that Qt cannot open falls back to the console, saying why."""
    if args.no_gui:
        return False, "console (--no-gui)"
    if args.screenshot is not None:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a screenshot never needs a display
        return True, ""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "console (no display: DISPLAY and WAYLAND_DISPLAY are unset)"
    from evstream.display import probe_display

    ok, why = probe_display()
    if not ok:
        print(f"note: {why}; printing to the console instead of opening the dashboard", file=sys.stderr)
        return False, f"console ({why})"
    return True, ""


def _describe_source(args: argparse.Namespace, source, speed: float | None) -> str:
    name = str(getattr(source, "name", type(source).__name__))
    if args.replay is not None:
        name = str(args.replay)
    elif not (args.camera or args.network or args.synthetic or args.webcam is not None):
        name = f"{BUNDLED_RECORDING.relative_to(BUNDLED_RECORDING.parents[1])} (bundled)"
    pace = ""
    if hasattr(source, "duration_us"):
        pace = ", as fast as possible" if speed is None else f", speed x{speed:g}"
        if args.loop:
            pace += ", looping"
        if args.start is not None or args.end is not None:
            pace += f", {args.start or 0:g} s to {'the end' if args.end is None else f'{args.end:g} s'}"
    return f"{name}{pace}"


def banner(source_text: str, binner, model_label: str, model, trained_on: str | None, settings: dict,
           event_filter: str, output: str) -> list[str]:
    """The start-up lines: what is read, what the model sees, which model, window, decision rule."""
    g = binner.geometry
    s, o = g.sensor_size, g.out_size
    view = f"{s.width}x{s.height} -> {o.width}x{o.height}: {g.mode}"
    rx, ry, rw, rh = g.roi
    if (rw, rh) != (s.width, s.height):
        view += f" of roi {rw}x{rh} at ({rx},{ry})"
    view += f", {g.downsample} downsampling, {g.pixels_per_output:.3g} sensor pixels per model pixel"
    flips = [n for n, f in (("x", g.flip_x), ("y", g.flip_y)) if f]
    if flips:
        view += ", flipped " + " and ".join(flips)
    if event_filter != "none":
        view += f"; filter {event_filter}"
    params = sum(p.numel() for p in model.parameters())
    model_text = f"{model_label} ({getattr(model, 'name', type(model).__name__)}, {params:,} parameters)"
    if trained_on:
        model_text += f", trained on {trained_on}"
    step_ms = binner.step_us / 1000
    window = f"{binner.steps} steps x {step_ms:g} ms = {binner.steps * step_ms:g} ms (state carried across windows)"
    rule = settings.get("rule", "ema")
    if rule == "mean":
        how = "mean of logits since the last reset" if not settings.get("mean_steps") else \
            f"mean of logits over the last {settings['mean_steps']} steps"
    else:
        how = f"EMA of per-step softmax over {settings.get('smoothing_ms', 0):g} ms"
    decision = f"{how}, threshold {settings.get('threshold', 0.0):.2f}, hysteresis {settings.get('hysteresis', 0.0):.2f}"
    own = settings.get("class_thresholds") or {}
    if own:
        from evstream.labels import DVS_GESTURE_CLASSES

        names = list(getattr(model, "class_names", None) or DVS_GESTURE_CLASSES)
        decision += " (own: " + ", ".join(f"{names[int(k)] if int(k) < len(names) else k} {float(v):.2f}"
                                          for k, v in sorted(own.items(), key=lambda kv: int(kv[0]))) + ")"
    return [f"source    {source_text}", f"view      {view}", f"model     {model_text}", f"window    {window}",
            f"decision  {decision}", f"output    {output}"]


def _open_source(args: argparse.Namespace, speed: float | None):
    from evstream.errors import SourceError
    from evstream.sources import open_source

    trim = trim_us(args.start, args.end)
    if trim and (args.camera or args.network or args.synthetic or args.webcam is not None):
        raise ConfigError("--start/--end: only a replayed recording can be trimmed")
    if args.camera:
        return open_source(f"camera:{args.camera}")
    if args.network:
        address = args.network if args.network.startswith("tcp://") else f"tcp://{args.network}"
        return open_source(address)
    if args.synthetic:
        return open_source("synthetic")
    if args.webcam is not None:
        return open_source(f"webcam:{args.webcam}")
    path = args.replay
    if path is None:
        if not BUNDLED_RECORDING.is_file():
            raise SourceError(f"{BUNDLED_RECORDING}: bundled recording not found; give a source (--replay FILE, --synthetic, ...)")
        path = BUNDLED_RECORDING
    return open_source(path, speed=speed, loop=args.loop, **trim)


def _load_model(spec: str | None):
    """(model, preprocessing dict, label for status, decision settings) — an untrained variant is labelled so."""
    import models
    from evstream.errors import ModelError

    if spec is not None and spec in models.list_models() and not os.path.isfile(spec):
        return models.create_model(spec), {}, f"{spec} (untrained)", {}, "nothing (untrained)"
    name = spec or models.DEFAULT_WEIGHTS
    try:
        loaded = models.load_checkpoint(name)
    except ModelError as err:
        if spec is not None:
            raise
        print(f"note: no shipped weights ({err}); using an untrained {UNTRAINED_FALLBACK}: "
              "its predictions are meaningless", file=sys.stderr)
        return models.create_model(UNTRAINED_FALLBACK), {}, f"{UNTRAINED_FALLBACK} (untrained)", {}, \
            "nothing (untrained)"
    trained_on = loaded.metrics.get("trained_on")
    return loaded.model, dict(loaded.preprocessing), loaded.name, dict(loaded.decision), \
        trained_on if isinstance(trained_on, str) else None


def _fitting_checkpoint(spec: str, binner, args: argparse.Namespace | None):
    """``load_model``'s checks: the checkpoint ``spec`` loaded, if it takes ``binner``'s input size
    and step; returns it with its decision options (``--decision``-style options given on the
    command line still win)."""
    import models
    from evstream.errors import ModelError
    from models.streaming import decision_options

    loaded = models.load_checkpoint(spec, device="cpu")
    height, width = (int(v) for v in loaded.model.config.img_size)
    out = binner.geometry.out_size
    if (width, height) != (out.width, out.height):
        raise ModelError(f"load_model {spec}: the model takes {width}x{height} input; this pipeline bins "
                         f"{out.width}x{out.height}")
    step_us = int(loaded.preprocessing.get("step_us") or binner.step_us)
    if step_us != binner.step_us:
        raise ModelError(f"load_model {spec}: trained with {step_us / 1000:g} ms steps; this pipeline bins "
                         f"{binner.step_us / 1000:g} ms steps")
    settings = decision_settings(dict(loaded.decision), args) if args is not None else dict(loaded.decision)
    model_steps = int(loaded.preprocessing.get("steps") or loaded.model.config.steps)
    options = decision_options({k: v for k, v in settings.items() if k != "window_steps"}, model_steps=model_steps)
    return loaded, options


def model_loader(binner, device: str, args: argparse.Namespace | None = None):
    """``spec -> (StreamingClassifier, label)`` for the control socket's ``load_model``.

    The binner is fixed while the pipeline runs, so a checkpoint must take its input size and
    step; it brings its own decision settings and the density match for this sensor.
    """
    from models.streaming import StreamingClassifier, input_scale_for

    def load(spec: str):
        loaded, options = _fitting_checkpoint(spec, binner, args)
        classifier = StreamingClassifier(loaded.model, device=device,
                                         input_scale=input_scale_for(dict(loaded.preprocessing), binner.geometry),
                                         **options)
        return classifier, loaded.name

    return load


def multi_model_loader(binners, device: str, args: argparse.Namespace | None = None):
    """``spec -> (MultiStreamClassifier, label, density scales)`` for ``load_model`` with several
    streams: :func:`model_loader`'s checks (the binners share the input size and step), one
    classifier of ``len(binners)`` streams and each stream's density match for its own sensor."""
    from models.multistream import MultiStreamClassifier
    from models.streaming import input_scale_for

    def load(spec: str):
        loaded, options = _fitting_checkpoint(spec, binners[0], args)
        classifier = MultiStreamClassifier(loaded.model, len(binners), device=device, **options)
        scales = [input_scale_for(dict(loaded.preprocessing), b.geometry) for b in binners]
        return classifier, loaded.name, scales

    return load


def _device(choice: str) -> str:
    if choice == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device available")
    return choice


def _spec_name(kind: str, value: object) -> str:
    """A stream's source as status and the banner name it."""
    return {"replay": str(value), "camera": f"camera:{value}", "network": str(value),
            "synthetic": f"synthetic (seed {value})", "webcam": f"webcam:{value}"}[kind]


def _open_sources(args: argparse.Namespace, specs: list[tuple[str, object]], speed: float | None) -> list:
    """Open every source of several streams, in order; the ones opened are closed again when one fails.

    Raises:
        ConfigError: ``--start``/``--end`` with a source that is not a recording, ``--record`` or ``--loop``.
        SourceError, EventFileError: a source that does not open (names it).
    """
    from evstream.sources import open_source

    if args.record is not None:
        raise ConfigError("--record: records one source; run one pipeline per source to record several")
    if args.loop:
        raise ConfigError("--loop: only with one source (a looping replay would restart its stream's clock)")
    trim = trim_us(args.start, args.end)
    if trim and any(kind != "replay" for kind, _ in specs):
        raise ConfigError("--start/--end: only a replayed recording can be trimmed")
    sources: list = []
    try:
        for kind, value in specs:
            if kind == "replay":
                sources.append(open_source(str(value), speed=speed, **trim))
            elif kind == "synthetic":
                sources.append(open_source("synthetic", seed=int(value)))
            elif kind == "network":
                text = str(value)
                sources.append(open_source(text if text.startswith("tcp://") else f"tcp://{text}"))
            else:
                sources.append(open_source(_spec_name(kind, value)))
    except BaseException:
        for source in sources:
            source.close()
        raise
    return sources


class _StreamConsole:
    """Console of several streams: one :class:`~evstream.console.ConsoleSink` per stream, each line
    prefixed with ``[sid]``; the pipeline's own states go to stream 0's."""

    def __init__(self, streams: int, quiet: bool, class_names) -> None:
        from evstream.console import ConsoleSink

        self.sinks = [ConsoleSink(_Prefixed(sys.stdout, f"[{i}] "), errors=_Prefixed(sys.stderr, f"[{i}] "),
                                  quiet=quiet, class_names=class_names) for i in range(streams)]
        self._plain = ConsoleSink(quiet=quiet, summary_every_s=None)

    def on_prediction(self, prediction, stats: dict) -> None:
        self.sinks[int(getattr(prediction, "stream", 0))].on_prediction(prediction, stats)

    def on_state(self, state: str, message: str) -> None:
        self._plain.on_state(state, message)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


class _Prefixed:
    """A text stream that starts every line with ``prefix``."""

    def __init__(self, stream, prefix: str) -> None:
        self.stream, self.prefix = stream, prefix

    def write(self, text: str) -> int:
        lines = text.split("\n")
        body = "\n".join(self.prefix + line if line else line for line in lines)
        return self.stream.write(body)

    def flush(self) -> None:
        self.stream.flush()


def run(args: argparse.Namespace) -> int:
    speed = _speed(args.speed)
    specs = source_specs(args)
    many = len(specs) > 1
    for name in ("step_ms", "duration"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            raise ConfigError(f"--{name.replace('_', '-')}: must be positive, got {value:g}")
    for name in ("window_steps", "max_windows"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1, got {value}")
    if args.wait_subscribers < 0:
        raise ConfigError(f"--wait-subscribers: must be >= 0, got {args.wait_subscribers}")
    record_dir = args.record_dir or os.getcwd()
    if not os.path.isdir(record_dir):
        raise ConfigError(f"--record-dir {record_dir}: not a folder")
    roi = parse_roi(args.roi)
    if args.filter_us is not None and args.filter_us <= 0:
        raise ConfigError(f"--filter-us: must be positive, got {args.filter_us}")
    gui, console_why = _choose_gui(args)
    device = _device(args.device)

    import zmq

    from evstream.binning import Binner, warmup
    from evstream.console import ConsoleSink
    from evstream.pipeline import Pipeline, PipelineConfig
    from evstream.publish import Publisher, control_address_for
    from models.streaming import StreamingClassifier, decision_options, default_window_steps, input_scale_for

    sources = _open_sources(args, specs, speed) if many else [_open_source(args, speed)]
    publisher = None
    try:
        if many:
            names = [_spec_name(kind, value) for kind, value in specs]
            pace = "" if not any(k == "replay" for k, _ in specs) else \
                (", replays as fast as possible" if speed is None else f", replays at speed x{speed:g}")
            source_text = f"{len(names)} streams: " + "; ".join(f"[{i}] {n}" for i, n in enumerate(names)) + pace
        else:
            source_text = _describe_source(args, sources[0], speed)
        if args.filter != "none":
            from evstream.sources.filtered import FilteredSource, make_filter

            us = {} if args.filter_us is None else {"dt_us" if args.filter == "ba" else "refractory_us": args.filter_us}
            sources = [FilteredSource(src, make_filter(args.filter, src.sensor_size, **us)) for src in sources]
        source = sources[0]
        model, pre, model_label, decision, trained_on = _load_model(args.model)
        height, width = (int(v) for v in model.config.img_size)
        settings = decision_settings(decision, args)
        model_steps = int(pre.get("steps") or model.config.steps)
        step_us = int(round(args.step_ms * 1000)) if args.step_ms else int(pre.get("step_us") or DEFAULT_STEP_US)
        steps = default_window_steps(settings, model_steps, step_us)
        options = decision_options({k: v for k, v in settings.items() if k != "window_steps"}, model_steps=model_steps)
        binners = [Binner(src.sensor_size, (width, height), step_us, steps, fit=args.fit, roi=roi,
                          flip_x=args.flip_x, flip_y=args.flip_y) for src in sources]
        binner = binners[0]
        warmup()
        if many:
            from models.multistream import MultiStreamClassifier

            # each stream's density scale is applied to its own windows (their sensors may differ)
            classifier = MultiStreamClassifier(model, len(sources), device=device, **options)
        else:
            classifier = StreamingClassifier(model, device=device, input_scale=input_scale_for(pre, binner.geometry),
                                             **options)

        context = zmq.Context.instance()
        addresses = [args.publish]
        inproc = f"inproc://evstream-{os.getpid()}" if gui else None
        if inproc:
            addresses.append(inproc)
        publisher = Publisher(addresses, context=context, curve_secret_key_file=args.curve_secret,
                              curve_clients_dir=args.curve_clients)
        control = args.control or control_address_for(args.publish, host="127.0.0.1")
        controls = [] if control is None else [control]
        dashboard_control = control
        if gui and control is not None and args.curve_secret:
            # The in-process dashboard holds no client key: it steers through inproc (no CURVE there).
            dashboard_control = f"inproc://evstream-control-{os.getpid()}"
            controls.append(dashboard_control)
        config = PipelineConfig(
            model_name=model_label,
            max_windows=args.max_windows,
            wait_subscribers=args.wait_subscribers,
            speed=speed,
            loop=args.loop,
        )
        output = "dashboard" if gui else console_why
        output += f"; publishing {args.publish}" + (f", control {control}" if control else "")
        lines = banner(source_text, binner, model_label, model, trained_on, settings, args.filter, output)
        if not args.quiet:
            print("\n".join(lines), flush=True)
        class_names = getattr(classifier, "class_names", None)
        if many:
            from evstream.multipipeline import MultiPipeline

            sinks = [] if gui else [_StreamConsole(len(sources), args.quiet, class_names)]
            pipeline = MultiPipeline(sources, classifier, binners, publisher, config=config, sinks=sinks,
                                     input_scales=[input_scale_for(pre, b.geometry) for b in binners], names=names,
                                     control_address=controls or None, context=context,
                                     model_loader=multi_model_loader(binners, device))
        else:
            sinks = [] if gui else [ConsoleSink(quiet=args.quiet, class_names=class_names)]
            pipeline = Pipeline(source, classifier, binner, publisher, config=config, sinks=sinks,
                                record_path=args.record, record_dir=record_dir, control_address=controls or None,
                                context=context, model_loader=model_loader(binner, device))
    except BaseException:
        if publisher is not None:
            publisher.close()
        for src in sources:
            src.close()
        raise

    def on_signal(signum, _frame) -> None:
        pipeline.stop("interrupted" if signum == signal.SIGINT else "terminated")
        if gui and "PyQt6.QtCore" in sys.modules:
            from PyQt6 import QtCore

            QtCore.QCoreApplication.exit(0)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, on_signal)
    try:
        pipeline.start()
        if gui:
            from evstream.dashboard import run_dashboard

            run_dashboard(inproc, control=dashboard_control, screenshot=args.screenshot, duration_s=args.duration,
                          context=context)
            pipeline.stop("dashboard closed")
            code = pipeline.wait()
        else:
            code = pipeline.wait(timeout=args.duration)
    finally:
        pipeline.close()
        publisher.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if code and gui and pipeline.error is not None:
        print(f"error: {pipeline.error}", file=sys.stderr)
    return code
