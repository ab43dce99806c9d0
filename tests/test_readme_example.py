"""The README's offline example runs as printed and decides gestures on the bundled recording."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest


def test_the_offline_example_of_the_readme_runs(repo_root, tmp_path):
    from evstream import read_events
    from evstream.io.aedat4 import write_aedat4

    text = (repo_root / "README.md").read_text()
    section = text.split("## Offline, in a few lines of Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    bundled = repo_root / "recordings" / "gestures_128x128.aedat4"
    if not bundled.is_file():
        pytest.skip("bundled recording missing")
    assert f'"{bundled.relative_to(repo_root)}"' in code
    # The example as printed, on the first 12 s of the bundled recording (four gestures), to keep it short.
    events = read_events(bundled)
    excerpt = tmp_path / "excerpt.aedat4"
    write_aedat4(excerpt, events[events["t"] < 12_000_000], (128, 128))
    code = code.replace(f'"{bundled.relative_to(repo_root)}"', repr(str(excerpt)))
    done = subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    names = {line.split("  ")[1].strip() for line in lines}
    assert len(lines) >= 3 and len(names - {"no gesture"}) >= 2  # gestures decided, in time order
    times = [float(line.split()[0]) for line in lines]
    assert times == sorted(times)
