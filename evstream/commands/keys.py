"""``python main.py keys``: make a CURVE key pair for an encrypted, authenticated stream.

Writes ``NAME.key`` (public key, safe to hand out) and ``NAME.key_secret`` (keep it private)
with ``zmq.auth.create_certificates`` — the certificate format the publisher, ``subscribe`` and
the dashboard read. A server pair goes to ``run --curve-secret``; each client's public ``.key``
goes into the folder given to ``run --curve-clients``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from evstream.errors import ConfigError

EXAMPLES = """\
examples:
  python main.py keys --out keys --name server
  python main.py keys --out keys --name client
  mkdir clients && cp keys/client.key clients/
  python main.py --curve-secret keys/server.key_secret --curve-clients clients --publish tcp://0.0.0.0:5556
  python main.py subscribe tcp://HOST:5556 --curve-secret keys/client.key_secret --curve-server keys/server.key
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the key files (created)")
    parser.add_argument("--name", default="evstream", help="file stem: NAME.key and NAME.key_secret (default: evstream)")


def run(args: argparse.Namespace) -> int:
    import zmq
    import zmq.auth

    if not zmq.has("curve"):
        raise ConfigError("this libzmq was built without CURVE support")
    if not args.name or os.sep in args.name or args.name.startswith("."):
        raise ConfigError(f"--name {args.name!r}: must be a plain file stem")
    out = Path(args.out)
    for suffix in (".key", ".key_secret"):
        if (out / f"{args.name}{suffix}").exists():
            raise ConfigError(f"{out / (args.name + suffix)}: exists; refusing to overwrite a key")
    try:
        out.mkdir(parents=True, exist_ok=True)
        public, secret = zmq.auth.create_certificates(os.fspath(out), args.name)
        os.chmod(secret, 0o600)
    except OSError as err:
        raise ConfigError(f"--out {out}: cannot write keys ({err.strerror})") from None
    print(f"public key: {public}")
    print(f"secret key: {secret}  (keep private)")
    return 0
