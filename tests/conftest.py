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


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of real sample recordings (``../shared/data``); skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real sample recordings not found at {SHARED_DATA} (set EVSTREAM_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
