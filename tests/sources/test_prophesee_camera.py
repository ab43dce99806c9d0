"""``--camera prophesee`` without OpenEB's Python bindings: one line saying what to install, exit 2.
The camera itself is not faked: with the bindings importable these tests are skipped."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from evstream.errors import SourceError
from evstream.sources import open_source
from evstream.sources.camera import PROPHESEE_INSTALL_HINT

HAVE_OPENEB = importlib.util.find_spec("metavision_core") is not None

pytestmark = pytest.mark.skipif(HAVE_OPENEB, reason="OpenEB's bindings are importable: the message does not apply")


@pytest.mark.parametrize("spec", ["camera:prophesee", "camera:prophesee:00050123", "camera:Prophesee"])
def test_missing_bindings_say_what_to_install(spec):
    with pytest.raises(SourceError) as info:
        open_source(spec)
    text = str(info.value)
    assert "\n" not in text and text.startswith(spec.lower())
    assert "metavision_core" in text and "metavision_hal" in text and "openeb" in text.lower()
    assert PROPHESEE_INSTALL_HINT in text


def test_command_line_exits_2_with_one_line(repo_root):
    proc = subprocess.run([sys.executable, "main.py", "--camera", "prophesee", "--no-gui"], cwd=repo_root,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "metavision_core" in lines[0] and "Traceback" not in proc.stderr
