"""Entry point: ``python main.py --help``. All parsing lives in :mod:`evstream.cli`."""

import sys

from evstream.cli import main

if __name__ == "__main__":
    sys.exit(main())
