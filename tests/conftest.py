"""Test set-up shared by the whole suite.

Qt must be told to render offscreen before any QApplication exists, or a machine without a
display aborts the whole pytest process; real sample recordings are read from ../shared/data
and tests that need them skip with the reason when that folder is absent.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EVSTREAM_SHARED_DATA", REPO.parent / "shared" / "data"))


# Numba kernels every part of the suite uses, in two halves of about equal compile time (~80 s
# each on a fresh checkout) compiled side by side.
_WARM_UP = (
    "import numpy as np; from evstream.binning.frames import warmup; "
    "warmup((np.float32,)); warmup((np.int16,), arrays=('writable',))",
    "import numpy as np; from evstream.binning.frames import warmup; from models.fused import warm_up_kernels; "
    "warm_up_kernels(); warmup((np.int16,), arrays=('readonly',)); warmup((np.uint8,))",
)


def pytest_configure(config):
    """Compile (or load from numba's on-disk cache) the binning and fused-inference kernels before
    any test runs, in two processes at once (numba compiles on one core). On a fresh checkout this
    is about 1.5 min of CPU on 2 cores; paid here, once, it is not charged to whichever subprocess
    test (a replay under a timeout) happens to run first, nor compiled again by each pytest-xdist
    worker: they and every process the tests start load the kernels from the cache."""
    if os.environ.get("PYTEST_XDIST_WORKER") or config.option.collectonly:
        return
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO) for code in _WARM_UP]
    for proc in procs:
        if proc.wait() != 0:
            raise pytest.UsageError("compiling evstream's numba kernels failed (output above)")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real sample recordings (``../shared/data``); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample recordings not found at {SHARED_DATA} (set EVSTREAM_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
