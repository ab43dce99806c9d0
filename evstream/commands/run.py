"""``python main.py [run]``: the application — a source through the Spikformer to the dashboard,
the console and the published ZeroMQ stream.

With no source option it replays the bundled recording ``recordings/gestures_128x128.aedat4``.
The dashboard opens when a display exists (``DISPLAY``/``WAYLAND_DISPLAY``) or ``--screenshot``
is given; otherwise (or with ``--no-gui``) the console prints one line per label change and a
periodic summary. The stream is always published (``--publish``, loopback by default) and the
control socket listens on 127.0.0.1, publish port + 1, unless ``--control`` says otherwise —
publishing on another interface does not open the control socket there. With ``--curve-secret``
the control socket takes the same key and ``--curve-clients`` allow-list as the stream.
``record_start`` on the control socket writes only inside ``--record-dir`` (default: the current
folder) and never replaces a file unless asked to.

Exit codes: 0 when the replay ends, ``--max-windows``/``--duration`` is reached, or on Ctrl-C /
SIGTERM (recordings are finalised first); 1 when the source or the model fails mid-stream
(reported on ``status`` and stderr); 2 for a bad option, file, checkpoint or a missing camera.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from evstream.commands.eval import add_decision_arguments, decision_settings
from evstream.errors import ConfigError

EXAMPLES = """\
examples:
  python main.py                                        bundled recording; dashboard if a display exists
  python main.py --camera dvxplorer                     live camera
  python main.py --replay rec.aedat4 --speed 2 --loop
  python main.py --replay rec.aedat4 --no-gui --speed max
  python main.py --synthetic --no-gui --record out.aedat4
  python main.py --replay rec.aedat4 --no-gui --speed max --wait-subscribers 1 --publish tcp://127.0.0.1:6000
  python main.py --screenshot dash.png --duration 5
  python main.py --curve-secret keys/server.key_secret --curve-clients clients --publish tcp://0.0.0.0:5556
"""

BUNDLED_RECORDING = Path(__file__).resolve().parents[2] / "recordings" / "gestures_128x128.aedat4"
UNTRAINED_FALLBACK = "spikformer_2_64"
DEFAULT_STEP_US = 50_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("source (one of; default: the bundled recording)")
    which = src.add_mutually_exclusive_group()
    which.add_argument("--camera", metavar="{dvxplorer,davis346,dvs128,SERIAL}", help="live iniVation camera")
    which.add_argument("--replay", metavar="FILE", help="replay an .aedat4 or AEDAT 3.1 .aedat recording")
    which.add_argument("--network", metavar="HOST:PORT", help="DV network event stream (dv-processing)")
    which.add_argument("--synthetic", action="store_true", help="endless rendered gestures through the DVS emulator")
    which.add_argument("--webcam", type=int, metavar="N", help="OpenCV camera N through the DVS emulator")
    src.add_argument("--speed", default="1", metavar="X|max",
                     help="replay speed 0.25 ... 4, or max for as fast as possible (default 1)")
    src.add_argument("--loop", action="store_true", help="replay: start over at the end")

    model = parser.add_argument_group("model")
    model.add_argument("--model", metavar="NAME|PATH",
                       help="shipped weights name, checkpoint file, or a registered variant (untrained); "
                            "default: the shipped weights")
    model.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: auto (CUDA when present)")
    model.add_argument("--step-ms", type=float, metavar="MS", help="time step, ms (default: the checkpoint's)")
    add_decision_arguments(model)

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


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--speed: expected a number or 'max', got {text!r}") from None
    if not 0.25 <= value <= 4.0:
        raise ConfigError(f"--speed: {value:g} outside 0.25 ... 4 (or max)")
    return value


def _open_source(args: argparse.Namespace, speed: float | None):
    from evstream.errors import SourceError
    from evstream.sources import open_source

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
    return open_source(path, speed=speed, loop=args.loop)


def _load_model(spec: str | None):
    """(model, preprocessing dict, label for status, decision settings) — an untrained variant is labelled so."""
    import models
    from evstream.errors import ModelError

    if spec is not None and spec in models.list_models() and not os.path.isfile(spec):
        return models.create_model(spec), {}, f"{spec} (untrained)", {}
    name = spec or models.DEFAULT_WEIGHTS
    try:
        loaded = models.load_checkpoint(name)
    except ModelError as err:
        if spec is not None:
            raise
        print(f"note: no shipped weights ({err}); using an untrained {UNTRAINED_FALLBACK}: "
              "its predictions are meaningless", file=sys.stderr)
        return models.create_model(UNTRAINED_FALLBACK), {}, f"{UNTRAINED_FALLBACK} (untrained)", {}
    return loaded.model, dict(loaded.preprocessing), loaded.name, dict(loaded.decision)


def _device(choice: str) -> str:
    if choice == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device available")
    return choice


def run(args: argparse.Namespace) -> int:
    speed = _speed(args.speed)
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
    gui = not args.no_gui and (args.screenshot is not None or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")))
    device = _device(args.device)

    import zmq

    from evstream.binning import Binner, warmup
    from evstream.console import ConsoleSink
    from evstream.pipeline import Pipeline, PipelineConfig
    from evstream.publish import Publisher, control_address_for
    from models.streaming import StreamingClassifier, decision_options, default_window_steps, input_scale_for

    source = _open_source(args, speed)
    publisher = None
    try:
        model, pre, model_label, decision = _load_model(args.model)
        height, width = (int(v) for v in model.config.img_size)
        settings = decision_settings(decision, args)
        model_steps = int(pre.get("steps") or model.config.steps)
        step_us = int(round(args.step_ms * 1000)) if args.step_ms else int(pre.get("step_us") or DEFAULT_STEP_US)
        steps = default_window_steps(settings, model_steps, step_us)
        options = decision_options({k: v for k, v in settings.items() if k != "window_steps"}, model_steps=model_steps)
        binner = Binner(source.sensor_size, (width, height), step_us, steps)
        warmup()
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
        sinks = [] if gui else [ConsoleSink(quiet=args.quiet)]
        pipeline = Pipeline(source, classifier, binner, publisher, config=config, sinks=sinks,
                            record_path=args.record, record_dir=record_dir, control_address=controls or None,
                            context=context)
    except BaseException:
        if publisher is not None:
            publisher.close()
        source.close()
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
