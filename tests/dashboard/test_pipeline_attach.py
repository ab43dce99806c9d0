"""The dashboard attached over TCP to a real pipeline running in another process."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PyQt6 import QtCore

from tests.helpers import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def pipeline(repo_root):
    recording = repo_root / "recordings" / "gestures_128x128.aedat4"
    if not (repo_root / "evstream" / "pipeline.py").exists() or not (repo_root / "evstream" / "commands" / "run.py").exists():
        pytest.skip("the pipeline (evstream/pipeline.py, run command) is not in this checkout")
    if not recording.exists():
        pytest.skip(f"bundled recording {recording} missing")
    port = free_port(pair=True)
    process = subprocess.Popen(
        [sys.executable, str(repo_root / "main.py"), "--replay", str(recording), "--no-gui", "--quiet", "--loop",
         "--publish", f"tcp://127.0.0.1:{port}", "--duration", "60"],
        cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    yield process, f"tcp://127.0.0.1:{port}"
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_attach_to_a_pipeline_in_another_process(qtbot, window_factory, pipeline):
    process, address = pipeline
    window = window_factory(address)

    def every_topic() -> bool:
        if process.poll() is not None:
            pytest.fail(f"pipeline exited with {process.returncode}: {process.stderr.read().strip()[-500:]}")
        topics = window.last_snapshot.topics
        return all(t in topics and topics[t].received > 0 for t in ("status", "pred", "frame", "spikes", "attn", "stats"))

    qtbot.waitUntil(every_topic, timeout=60_000)
    qtbot.waitUntil(lambda: window.attention.message is not None and bool(window.spikes.layers), timeout=5000)
    assert window.connection_state == "connected"
    image = window.events.image.image
    assert image is not None and image.shape == (128, 128) and image.std() > 0
    widths = window.prediction.smoothed.opts["width"]
    assert len(widths) == len(window.prediction.classes) and np.isclose(widths.sum(), 1.0, atol=1e-4)
    assert window.prediction.label.text() not in ("", "—")
    # The control address came from status (publish port + 1) and a real command round-trips.
    assert window.control.address == f"{address.rsplit(':', 1)[0]}:{int(address.rsplit(':', 1)[1]) + 1}"
    qtbot.mouseClick(window.controls.play_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.controls.state == "paused", timeout=10_000)
    assert window.controls.reply_label.text() == "pause: ok"
    qtbot.mouseClick(window.controls.play_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.controls.state == "running", timeout=10_000)
    # The pipeline going away shows as "disconnected".
    process.terminate()
    process.wait(10)
    qtbot.waitUntil(lambda: window.connection_state == "disconnected", timeout=10_000)
