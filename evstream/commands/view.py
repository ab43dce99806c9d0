"""``python main.py view``: open the dashboard attached to a running pipeline's published stream."""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run", "EXAMPLES"]

EXAMPLES = """\
examples:
  python main.py view                                       the pipeline on this machine (tcp://127.0.0.1:5556)
  python main.py view tcp://10.0.0.5:5556                   a pipeline on another machine
  python main.py view tcp://127.0.0.1:5556 --control tcp://127.0.0.1:6000
  python main.py view --screenshot dash.png --duration 5    no display needed: save a PNG after 5 s, quit
  python main.py view tcp://10.0.0.5:5556 --curve-secret keys/client.key_secret --curve-server keys/server.key
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", nargs="?", default="tcp://127.0.0.1:5556",
                        help="the pipeline's publish address (default: %(default)s)")
    parser.add_argument("--control", metavar="ADDR", default=None,
                        help="control socket address (default: announced by the status message, else publish port + 1)")
    parser.add_argument("--screenshot", metavar="PNG", default=None,
                        help="save a PNG of the whole window after --duration seconds (default 3), then quit; works without a display")
    parser.add_argument("--duration", metavar="S", type=float, default=None,
                        help="quit after S seconds")
    parser.add_argument("--curve-secret", metavar="FILE",
                        help="CURVE: this client's key pair file (python main.py keys), for an encrypted stream")
    parser.add_argument("--curve-server", metavar="FILE", help="CURVE: the pipeline's public key file")


def run(args: argparse.Namespace) -> int:
    if args.duration is not None and args.duration < 0:
        from evstream.errors import ConfigError

        raise ConfigError(f"--duration must be >= 0, got {args.duration}")
    from evstream.dashboard import run_dashboard

    return run_dashboard(args.address, control=args.control, screenshot=args.screenshot, duration_s=args.duration,
                         curve_secret_key_file=args.curve_secret, curve_server_key_file=args.curve_server)
