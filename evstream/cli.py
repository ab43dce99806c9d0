"""Command-line front of evstream: ``python main.py [run options] | <command> ...``.

Each subcommand lives in ``evstream/commands/<name>.py`` and exposes ``add_arguments(parser)``
and ``run(args) -> int``; only the module of the command asked for is imported, so
``python main.py --help`` and ``info`` start without loading torch or Qt. Expected faults
(:class:`~evstream.errors.EvstreamError`) become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from evstream.errors import EvstreamError

__all__ = ["main", "COMMANDS"]

# name -> one-line help. The default command (no name given) is "run".
COMMANDS: dict[str, str] = {
    "run": "run the pipeline: source -> binning -> Spikformer -> dashboard / console / ZeroMQ (default)",
    "subscribe": "print predictions published by a running pipeline (human lines or --json)",
    "view": "open the dashboard attached to a running pipeline",
    "info": "describe a recording: streams, sensor, camera, duration, event count and rates",
    "convert": "convert a recording (any readable format) to AEDAT 4.0 or 3.1: trim, crop, downsample",
    "render": "render a recording as an event video (.mp4), optionally with the model's decisions burned in",
    "synth": "write synthetic DVS128-Gesture-style recordings (IBM dataset layout or .aedat4)",
    "collect": "record and label your own gestures (countdown prompts) into a dataset folder train reads",
    "train": "train a Spikformer on DVS128 Gesture (IBM or tonic layout) or a synthetic set",
    "eval": "evaluate a checkpoint: offline clip accuracy, or online accuracy on a replayed stream",
    "keys": "make a CURVE key pair for an encrypted, authenticated published stream",
}

EPILOG = """\
examples:
  python main.py                                    bundled recording; dashboard if a display exists
  python main.py --camera dvxplorer                 live DVXplorer through dv-processing
  python main.py --replay rec.aedat4 --speed 2 --loop
  python main.py --replay rec.aedat4 --no-gui --speed max
  python main.py --webcam 0                         a webcam through the DVS emulator
  python main.py subscribe tcp://127.0.0.1:5556 --json
  python main.py view tcp://127.0.0.1:5556
  python main.py info recording.aedat4
  python main.py convert recording.raw recording.aedat4 --start 2 --end 5
  python main.py render rec.aedat4 rec.mp4 --decisions
  python main.py synth --out data/synth --samples 8
  python main.py collect --synthetic --classes a,b,c --reps 5 --seconds 3 --out data/mine
  python main.py train --data data/synth --model spikformer_2_64 --epochs 20
  python main.py eval --stream recordings/gestures_128x128.aedat4

Run `python main.py <command> --help` for a command's options
(`python main.py run --help` for the pipeline's).
"""


def _load(name: str):
    return importlib.import_module(f"evstream.commands.{name}")


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python main.py",
        description="evstream: online gesture recognition from event cameras with a stateful Spikformer.",
        epilog=EPILOG + "\ncommands:\n" + "\n".join(f"  {k:<10} {v}" for k, v in COMMANDS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        _top_parser().print_help()
        return 0
    if argv and argv[0] in ("-V", "--version"):
        from evstream import __version__

        print(f"evstream {__version__}")
        return 0
    name = argv[0] if argv and argv[0] in COMMANDS else "run"
    rest = argv[1:] if argv and argv[0] in COMMANDS else argv
    try:
        module = _load(name)
        parser = argparse.ArgumentParser(
            prog=f"python main.py {name}" if name != "run" else "python main.py [run]",
            description=COMMANDS[name],
            epilog=getattr(module, "EXAMPLES", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(parser)
        args = parser.parse_args(rest)
        return int(module.run(args) or 0)
    except EvstreamError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
