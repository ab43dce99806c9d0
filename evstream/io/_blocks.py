"""Reading a recording in blocks into one reused buffer (the RAW, DAT and AEDAT 2.0 readers), and
mapping a whole-file output array's pages beside the decoder (:class:`Prefault`).

A fresh ``bytes`` object per block costs a page fault per 4 KiB on every block; filling one
numpy buffer with ``os.preadv`` touches its pages once.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import threading

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


# -- first touch of a whole-file output array ---------------------------------------------------
# A reader's ``read()`` decodes into one array of the whole file's size; the kernel zeroes and maps
# every page of it the first time it is written (for 10 M events, 160 MB: 17-25 ms on the
# development machine, about a third of a DAT read). ``madvise(MADV_POPULATE_WRITE)`` (Linux >= 5.14)
# maps the pages writable without writing them, so a second thread can do that work while the
# decoder fills the array from its start: the contents are never touched, only the page tables, so
# the two threads cannot disturb each other's data. Elsewhere (other systems, older kernels) nothing
# happens and the decoder faults the pages itself as before. Only for arrays the decoder fills
# (nearly) to the end: the pages of slots never written would otherwise stay unallocated (the
# AEDAT 2.0 reader sizes for every record, APS and IMU samples included, so it does not use this).
_MADV_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
_PREFAULT_MIN_BYTES = 16 << 20  # below this a thread costs more than the faults it saves
_PAGE = mmap.PAGESIZE
_madvise = None
if sys.platform.startswith("linux"):
    try:
        _libc = ctypes.CDLL(None, use_errno=True)
        _madvise = _libc.madvise
        _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _madvise.restype = ctypes.c_int
    except (OSError, AttributeError):  # no libc symbol table (static builds): no prefaulting
        _madvise = None


class Prefault:
    """Maps ``array``'s pages on a helper thread (see above); :meth:`join` before the array is
    resized or returned. A no-op where the platform cannot, or the array is small."""

    def __init__(self, array: np.ndarray) -> None:
        self._thread: threading.Thread | None = None
        if _madvise is None or array.nbytes < _PREFAULT_MIN_BYTES or not array.flags.c_contiguous:
            return
        start = -(-array.ctypes.data // _PAGE) * _PAGE
        end = (array.ctypes.data + array.nbytes) // _PAGE * _PAGE
        if end > start:
            # The call releases the GIL (ctypes), so it runs beside the numba decoder. Its result
            # is ignored: EINVAL on kernels without the flag leaves the faults to the decoder.
            self._thread = threading.Thread(target=_madvise, args=(start, end - start, _MADV_POPULATE_WRITE),
                                            name="evstream-prefault", daemon=True)
            self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
