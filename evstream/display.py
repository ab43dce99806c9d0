"""Is there a display Qt can open? Asked before Qt starts, so a dead one never aborts the process.

Qt aborts the whole process (SIGABRT, exit 134) when ``DISPLAY`` names an X server that does
not answer or when the platform plugin cannot load its system libraries. :func:`probe_display`
finds both without loading Qt in this process: it connects to the X server's (or Wayland
compositor's) socket, then starts Qt in a child process and lets it fail there.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Mapping

__all__ = ["probe_display", "DEBIAN_PACKAGES"]

# What a real window needs on Debian/Ubuntu besides the wheels (Qt 6's xcb platform plugin).
DEBIAN_PACKAGES = "libxcb-cursor0 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libegl1 libgl1"

_QT_CHILD = ("import sys\n"
             "from PyQt6.QtWidgets import QApplication\n"
             "app = QApplication(sys.argv[:1])\n"
             "print(app.platformName())\n")


def _connect_unix(path: str, timeout_s: float) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _x_server_answers(display: str, timeout_s: float) -> tuple[bool, str]:
    """Connect to the X server ``display`` names (``[host]:N[.S]``); (answers, why not)."""
    host, sep, rest = display.rpartition(":")
    if not sep:
        return False, f"DISPLAY={display!r} is not of the form [host]:N"
    number = rest.split(".", 1)[0]
    if not number.isdigit():
        return False, f"DISPLAY={display!r} is not of the form [host]:N"
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        # Linux X servers also listen on the abstract socket of the same name.
        if _connect_unix(path, timeout_s) or (sys.platform.startswith("linux") and _connect_unix("\0" + path, timeout_s)):
            return True, ""
        return False, f"DISPLAY={display} is set but no X server answers at {path}"
    try:
        with socket.create_connection((host, 6000 + int(number)), timeout=timeout_s):
            return True, ""
    except OSError as err:
        return False, f"DISPLAY={display} is set but no X server answers at {host}:{6000 + int(number)} ({err.strerror or err})"


def probe_display(env: Mapping[str, str] | None = None, *, timeout_s: float = 20.0,
                  start_qt: bool = True) -> tuple[bool, str]:
    """``(True, platform)`` when Qt can open a window here, else ``(False, one-line reason)``.

    Args:
        env: the environment to judge (default ``os.environ``); the Qt child runs with it.
        timeout_s: how long the Qt child may take to start.
        start_qt: also start Qt in a child process (catches missing system libraries); without
            it only the display socket is checked.
    """
    env = dict(os.environ if env is None else env)
    platform = env.get("QT_QPA_PLATFORM", "")
    if platform.split(":")[0] in ("offscreen", "minimal", "vnc"):
        return True, platform
    wayland, display = env.get("WAYLAND_DISPLAY", ""), env.get("DISPLAY", "")
    if not wayland and not display:
        return False, "no display (DISPLAY and WAYLAND_DISPLAY are unset)"
    reasons = []
    alive = False
    if wayland:
        path = wayland if os.path.isabs(wayland) else os.path.join(env.get("XDG_RUNTIME_DIR", ""), wayland)
        if _connect_unix(path, 1.0):
            alive = True
        else:
            reasons.append(f"WAYLAND_DISPLAY={wayland} is set but no compositor answers at {path}")
    if not alive and display:
        alive, why = _x_server_answers(display, 1.0)
        if not alive:
            reasons.append(why)
    if not alive:
        return False, "; ".join(reasons)
    if not start_qt:
        return True, "xcb" if display else "wayland"
    try:
        done = subprocess.run([sys.executable, "-c", _QT_CHILD], env=env, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False, f"Qt did not start within {timeout_s:g} s on this display"
    except OSError as err:
        return False, f"could not start a Qt probe: {err}"
    if done.returncode == 0:
        return True, done.stdout.strip() or "unknown"
    lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
    plugin = [ln for ln in lines if "plugin" in ln.lower()]
    detail = (plugin or lines or [f"exit {done.returncode}"])[0][:200]
    return False, f"Qt cannot open a window here ({detail}); on Debian/Ubuntu: apt install {DEBIAN_PACKAGES}"
