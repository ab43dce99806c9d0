"""Start-up as a user meets it: a dead display falls back to the console, the banner says what runs,
the view flags reach the binner, an event filter sits before it, and truth is printed beside decisions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from evstream.display import probe_display
from evstream.events import SensorSize

RUN = ["--model", "spikformer_tiny", "--step-ms", "20", "--device", "cpu", "--speed", "max"]


def _main(repo_root: Path, *args: str, env_extra: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, str(repo_root / "main.py"), *args], cwd=repo_root, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _dead_display() -> str:
    n = 700 + os.getpid() % 200
    while os.path.exists(f"/tmp/.X11-unix/X{n}"):
        n += 1
    return f":{n}"


# ------------------------------------------------------------------------------ display probe ---

def test_probe_says_why_when_nothing_is_set():
    ok, why = probe_display({"PATH": os.environ.get("PATH", "")})
    assert not ok and "unset" in why


def test_probe_finds_a_display_that_no_server_answers():
    display = _dead_display()
    ok, why = probe_display({"DISPLAY": display})
    assert not ok
    assert f"DISPLAY={display}" in why and "no X server answers" in why and "\n" not in why


def test_probe_rejects_a_malformed_display_and_a_dead_wayland_socket(tmp_path):
    ok, why = probe_display({"DISPLAY": "nonsense"})
    assert not ok and "[host]:N" in why
    ok, why = probe_display({"WAYLAND_DISPLAY": "wayland-9", "XDG_RUNTIME_DIR": str(tmp_path)})
    assert not ok and str(tmp_path / "wayland-9") in why


def test_probe_accepts_the_offscreen_platform():
    assert probe_display({"QT_QPA_PLATFORM": "offscreen"}) == (True, "offscreen")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux X socket paths")
def test_a_server_that_is_not_x_fails_in_the_qt_child_not_here(tmp_path):
    """A socket that accepts and hangs up passes the socket check; Qt then fails, in the child only."""
    os.makedirs("/tmp/.X11-unix", exist_ok=True)
    display = _dead_display()
    path = f"/tmp/.X11-unix/X{display[1:]}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(8)
    stop = threading.Event()

    def hang_up() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
        env["DISPLAY"] = display
        assert probe_display(env, start_qt=False)[0]  # the socket answers ...
        ok, why = probe_display(env, timeout_s=60)  # ... but Qt cannot use it; we are still alive
        assert not ok and why.startswith("Qt cannot open a window here") and "apt install" in why
    finally:
        stop.set()
        thread.join()
        server.close()
        os.unlink(path)


# ------------------------------------------------------------------------------ main.py ---------

def test_a_dead_display_falls_back_to_the_console_with_a_banner(repo_root, recording, port):
    display = _dead_display()
    done = _main(repo_root, "--replay", str(recording), *RUN, "--max-windows", "3",
                 "--publish", f"tcp://127.0.0.1:{port}", env_extra={"DISPLAY": display})
    assert done.returncode == 0, done.stderr
    notes = [ln for ln in done.stderr.splitlines() if ln.startswith("note:")]
    assert len(notes) == 1 and f"DISPLAY={display}" in notes[0] and "console" in notes[0]
    assert "Traceback" not in done.stderr and "qt.qpa" not in done.stderr
    lines = done.stdout.splitlines()
    banner = {ln.split()[0]: ln for ln in lines[:6]}
    assert str(recording) in banner["source"] and "as fast as possible" in banner["source"]
    assert banner["view"].startswith("view      64x48 -> 32x32: crop")
    assert "spikformer_tiny (untrained)" in banner["model"] and "trained on nothing" in banner["model"]
    assert "steps x 20 ms" in banner["window"]
    assert "threshold" in banner["decision"]
    assert "console (DISPLAY=" in banner["output"] and f"tcp://127.0.0.1:{port}" in banner["output"]
    assert "stopped after 3 windows" in done.stdout


def test_view_flags_reach_the_binner_and_the_banner(repo_root, recording, port):
    done = _main(repo_root, "--replay", str(recording), *RUN, "--no-gui", "--max-windows", "2",
                 "--roi", "8,0,48,48", "--fit", "letterbox", "--flip-x", "--filter", "ba", "--filter-us", "5000",
                 "--publish", f"tcp://127.0.0.1:{port}")
    assert done.returncode == 0, done.stderr
    view = next(ln for ln in done.stdout.splitlines() if ln.startswith("view"))
    assert "letterbox of roi 48x48 at (8,0)" in view and "flipped x" in view and "filter ba" in view


@pytest.mark.parametrize("roi", ["1,2,3", "a,b,c,d", "0,0,999,999"])
def test_a_bad_roi_is_one_line_and_exit_2(repo_root, recording, roi):
    done = _main(repo_root, "--replay", str(recording), *RUN, "--no-gui", "--roi", roi)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "roi" in done.stderr and "Traceback" not in done.stderr


def test_screenshot_always_uses_the_offscreen_platform(monkeypatch):
    from evstream.commands.run import _choose_gui

    monkeypatch.setenv("DISPLAY", _dead_display())
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    gui, _ = _choose_gui(SimpleNamespace(no_gui=False, screenshot="x.png"))
    assert gui and os.environ["QT_QPA_PLATFORM"] == "offscreen"
    gui, why = _choose_gui(SimpleNamespace(no_gui=True, screenshot=None))
    assert not gui and why == "console (--no-gui)"


# ------------------------------------------------------------------------------ the filter ------

def test_filtered_source_passes_what_the_filter_keeps_and_forgets_on_seek(recording):
    from evstream.filters import BackgroundActivityFilter
    from evstream.io import read_events
    from evstream.sources import open_source
    from evstream.sources.filtered import FilteredSource, make_filter

    events = read_events(recording)
    want = BackgroundActivityFilter(SensorSize(64, 48), dt_us=3000)(events)
    source = FilteredSource(open_source(recording, speed=None), make_filter("ba", SensorSize(64, 48), dt_us=3000))
    with source:
        got = np.concatenate([c.events for c in source])
        assert 0 < len(got) < len(events)
        assert np.array_equal(got, want)
        assert source.sensor_size == SensorSize(64, 48) and source.filter.stats.events_in == len(events)
        assert callable(getattr(source, "seek", None))
        source.filter._last[5, 5] = 123
        source.seek(0)
        assert source.filter._last[5, 5] != 123  # a seek forgets the per-pixel history


def test_filtered_source_without_seek_has_none():
    from evstream.sources.filtered import FilteredSource, make_filter

    class Plain:
        sensor_size = SensorSize(8, 8)

        def __iter__(self):
            return iter(())

    assert getattr(FilteredSource(Plain(), make_filter("refractory", SensorSize(8, 8))), "seek", None) is None
    assert make_filter("none", SensorSize(8, 8)) is None


# ------------------------------------------------------------------------------ truth, data -----

def test_console_prints_truth_beside_decisions_and_counts_agreement():
    import io

    from evstream.console import ConsoleSink, format_change

    names = ["clap", "wave"]

    def pred(label, truth, changed=True, t=1_000_000):
        return SimpleNamespace(t_start=t - 200_000, t_end=t, label=label, name="no gesture" if label < 0 else names[label],
                               confidence=0.9, changed=changed, truth=truth)

    assert format_change(pred(0, 1), 0, names).endswith("conf 0.90  truth wave")
    assert format_change(pred(0, -1), 0, names).endswith("truth no gesture")
    assert "truth" not in format_change(pred(0, None), 0, names)
    out = io.StringIO()
    sink = ConsoleSink(out, summary_every_s=None, class_names=names)
    for p in (pred(0, 0), pred(0, 0, False), pred(-1, 1), pred(1, None)):
        sink.on_prediction(p, {"windows": 1})
    sink.close()
    assert sink.truth_windows == 3 and sink.truth_agree == 2
    assert "decision equals the truth in 2/3 windows" in out.getvalue()


def test_training_data_is_described_from_the_synthetic_marker(tmp_path):
    from models.train import describe_training_data

    (tmp_path / "real" / "DvsGesture").mkdir(parents=True)
    assert describe_training_data(tmp_path / "real", "ibm") == "DVS128 Gesture (IBM layout)"
    synth = tmp_path / "synth" / "DvsGesture"
    synth.mkdir(parents=True)
    (synth / "SYNTHETIC.txt").write_text("synthetic gestures\n")
    assert describe_training_data(tmp_path / "synth", "ibm").startswith("synthetic gestures only")


def test_synth_marks_its_output_as_synthetic(repo_root, tmp_path):
    out = tmp_path / f"s{uuid.uuid4().hex[:6]}"
    done = subprocess.run([sys.executable, str(repo_root / "main.py"), "synth", "--out", str(out), "--samples", "1",
                           "--gesture-s", "0.3", "0.3", "--fps", "50", "--workers", "1"],
                          cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "synthetic" in (out / "DvsGesture" / "SYNTHETIC.txt").read_text()


def test_a_damaged_recording_is_replayed_then_exits_2_with_one_line(repo_root, recording, tmp_path, port):
    broken = tmp_path / "broken.aedat4"
    data = recording.read_bytes()
    broken.write_bytes(data[: len(data) * 2 // 3])
    done = _main(repo_root, "--replay", str(broken), *RUN, "--no-gui", "--quiet", "--publish", f"tcp://127.0.0.1:{port}")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "broken.aedat4" in lines[0]


def test_a_recording_shorter_than_one_window_is_classified(repo_root, tmp_path, port):
    """0.13 s of events against 16-step windows of 20 ms (0.32 s): the tail becomes one shorter window."""
    from evstream.io.aedat4 import write_aedat4
    from tests.helpers import random_events

    path = tmp_path / "short.aedat4"
    write_aedat4(path, random_events(3000, SensorSize(64, 48), t0=5_000_000, duration_us=130_000, seed=9),
                 SensorSize(64, 48))
    done = _main(repo_root, "--replay", str(path), *RUN, "--no-gui", "--window-steps", "16",
                 "--publish", f"tcp://127.0.0.1:{port}")
    assert done.returncode == 0, done.stderr
    assert "windows 1 " in done.stdout.splitlines()[-1] or "windows 1 " in done.stdout


def test_the_tail_of_every_recording_reaches_the_classifier(recording, port):
    from evstream.binning import Binner
    from evstream.pipeline import Pipeline, PipelineConfig
    from evstream.publish import Publisher
    from evstream.sources.file import FileSource
    from models import create_model
    from models.streaming import StreamingClassifier

    seen = []

    class Sink:
        def on_prediction(self, prediction, stats):
            seen.append((prediction.t_start, prediction.t_end))

        def on_state(self, state, message):
            pass

        def close(self):
            pass

    with Publisher(f"tcp://127.0.0.1:{port}") as pub:
        pipeline = Pipeline(FileSource(recording, speed=None),
                            StreamingClassifier(create_model("spikformer_tiny"), device="cpu"),
                            Binner(SensorSize(64, 48), (32, 32), 30_000, 4), pub, config=PipelineConfig(speed=None),
                            sinks=[Sink()])
        pipeline.start()
        assert pipeline.wait() == 0
    # 2 s recording from t = 1 s: 16 whole windows of 120 ms (1.92 s), then the last 80 ms as a 3-step window
    assert len(seen) == 17
    assert all(a[1] == b[0] for a, b in zip(seen, seen[1:], strict=False))
    assert seen[-1][1] - seen[-1][0] < 120_000 and seen[-1][1] >= 2_990_000
