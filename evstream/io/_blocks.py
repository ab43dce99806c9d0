"""Reading a recording in blocks into one reused buffer (the RAW, DAT and AEDAT 2.0 readers).

A fresh ``bytes`` object per block costs a page fault per 4 KiB on every block; filling one
numpy buffer with ``os.preadv`` touches its pages once.
"""

from __future__ import annotations

import os

import numpy as np

_PREADV = hasattr(os, "preadv")


def pread_into(fd: int, view: np.ndarray, offset: int) -> int:
    """Fill the contiguous uint8 ``view`` from ``fd`` at byte ``offset``.

    Returns:
        The bytes read: ``len(view)``, fewer only where the file ends first.
    """
    done = 0
    while done < len(view):
        if _PREADV:
            got = os.preadv(fd, [view[done:]], offset + done)
        else:  # platforms without preadv: one copy from a temporary bytes object
            data = os.pread(fd, len(view) - done, offset + done)
            got = len(data)
            view[done:done + got] = np.frombuffer(data, np.uint8)
        if got == 0:
            break
        done += got
    return done
