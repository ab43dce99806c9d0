"""``run_dashboard(..., screenshot=PNG)`` and ``python main.py view``: a PNG with content, clean errors."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PyQt6 import QtGui

from evstream.dashboard import run_dashboard
from evstream.errors import ConfigError, EvstreamError
from tests.dashboard.streams import GRID, SENSOR, attention_arrays, frame_counts, status_data


def _pixels(path) -> np.ndarray:
    image = QtGui.QImage(str(path))
    assert not image.isNull(), f"{path} is not a readable PNG"
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    stride = image.bytesPerLine()
    raw = np.frombuffer(image.constBits().asstring(stride * image.height()), dtype=np.uint8)
    return raw.reshape(image.height(), stride)[:, : image.width() * 3].reshape(image.height(), image.width(), 3)


def _feed(feeder) -> None:
    feeder.set("status", status_data())
    feeder.set("frame", {"sensor": list(SENSOR)}, {"counts": frame_counts()})
    feeder.set("attn", {"blocks": 2, "heads": 3, "grid": list(GRID)}, attention_arrays())


def test_screenshot_writes_a_png_with_content(qapp, feeder, tmp_path):
    _feed(feeder)
    path = tmp_path / "dash.png"
    assert run_dashboard(feeder.address, screenshot=path, duration_s=1.0) == 0
    pixels = _pixels(path)
    assert pixels.shape[0] > 500 and pixels.shape[1] > 800
    assert pixels.std() > 10
    # The ON colour of the event image (warm: red well above blue) appears somewhere.
    warm = (pixels[..., 0].astype(int) - pixels[..., 2]) > 120
    assert warm.sum() > 50


def test_screenshot_into_a_missing_folder_is_one_clean_error(qapp, feeder, tmp_path):
    with pytest.raises(EvstreamError, match="does not exist") as info:
        run_dashboard(feeder.address, screenshot=tmp_path / "nope" / "dash.png", duration_s=0.1)
    assert "nope" in str(info.value)


def test_bad_address_is_a_config_error(qapp):
    with pytest.raises(ConfigError, match="publisher address tcp://127.0.0.1: cannot connect"):
        run_dashboard("tcp://127.0.0.1", duration_s=0.1)


def _main(repo_root, *args, env_update=None, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_update or {})
    return subprocess.run([sys.executable, str(repo_root / "main.py"), *args], capture_output=True, text=True, env=env, cwd=repo_root)


def test_view_command_saves_a_screenshot_without_a_display(repo_root, feeder, tmp_path):
    _feed(feeder)
    path = tmp_path / "view.png"
    result = _main(repo_root, "view", feeder.address, "--screenshot", str(path), "--duration", "1.5",
                   drop=("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
    assert result.returncode == 0, result.stderr
    assert _pixels(path).std() > 10


def test_view_command_without_a_display_says_so(repo_root):
    result = _main(repo_root, "view", "tcp://127.0.0.1:5556", drop=("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0] and "--screenshot" in lines[0]


def test_view_command_bad_address_is_one_line(repo_root):
    result = _main(repo_root, "view", "bogus://x", "--screenshot", "/tmp/x.png")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "bogus://x" in lines[0]


def test_half_given_curve_keys_are_a_config_error(qapp, tmp_path):
    with pytest.raises(ConfigError, match="CURVE"):
        run_dashboard("tcp://127.0.0.1:5556", duration_s=0.1, curve_secret_key_file=tmp_path / "client.key_secret")
