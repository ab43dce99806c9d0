"""The commands as a user runs them: ``python main.py ...`` in a subprocess, real sockets and files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from evstream.publish import Publisher, Subscriber

RUN = ["--no-gui", "--model", "spikformer_tiny", "--step-ms", "20", "--device", "cpu"]


def _addr(port: int) -> str:
    return f"tcp://127.0.0.1:{port}"


def _main(repo_root, *args: str, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.Popen([sys.executable, str(repo_root / "main.py"), *args], cwd=repo_root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_replay_end_to_end_every_prediction_reaches_two_subscriber_processes(recording, port, repo_root):
    proc = _main(repo_root, "--replay", str(recording), "--speed", "max", *RUN, "--publish", _addr(port),
                 "--control", _addr(port + 1), "--wait-subscribers", "2")
    script = _main(repo_root, "subscribe", _addr(port), "--json", "--topics", "pred,status", "--timeout", "60")
    preds, statuses = [], []
    try:
        with Subscriber(_addr(port), topics=("pred", "status")) as sub:
            end = time.monotonic() + 120
            while time.monotonic() < end:
                msg = sub.recv(1000)
                if msg is None:
                    continue
                (preds if msg.topic == "pred" else statuses).append(msg)
                if msg.topic == "status" and msg.data["state"] == "ended":
                    break
            gaps = sub.stats["pred"].gaps
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert statuses[-1].data["state"] == "ended" and statuses[-1].data["model"] == "spikformer_tiny (untrained)"
    assert len(preds) == 25  # 2 s of 80 ms windows
    assert [m.seq for m in preds] == list(range(25)) and gaps == 0
    assert all(a.t_end == b.t_start for a, b in zip(preds, preds[1:], strict=False))
    assert "windows 25" in out  # the console's closing summary

    # the script subscriber: one JSON object per line, the same predictions
    script.send_signal(signal.SIGINT)
    lines = script.communicate(timeout=30)[0].splitlines()
    objects = [json.loads(line) for line in lines]
    got = [o for o in objects if o["topic"] == "pred"]
    assert [o["seq"] for o in got] == list(range(25))
    assert [o["data"]["label"] for o in got] == [m.data["label"] for m in preds]
    assert len(got[0]["arrays"]["probs"]) == 11


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_while_recording_stops_cleanly_and_leaves_a_readable_file(signum, recording, port, repo_root, tmp_path):
    from evstream.io import read_events

    out = tmp_path / "out.aedat4"
    proc = _main(repo_root, "--replay", str(recording), "--loop", *RUN, "--publish", _addr(port),
                 "--control", _addr(port + 1), "--record", str(out), "--wait-subscribers", "1")
    try:
        with Subscriber(_addr(port), topics=("pred",)) as sub:
            assert sub.recv(60_000) is not None and sub.recv(10_000) is not None
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    events = read_events(out)
    assert len(events) > 1000
    assert (events["t"][1:] >= events["t"][:-1]).all()
    assert events["x"].max() < 64 and events["y"].max() < 48


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--replay", "/nonexistent/rec.aedat4"], "/nonexistent/rec.aedat4"),
        (["--replay", "{rec}", "--speed", "101"], "--speed"),
        (["--replay", "{rec}", "--model", "/nonexistent/weights.pt"], "/nonexistent/weights.pt"),
        (["--camera", "dvxplorer"], "camera:dvxplorer"),  # no camera on a test machine
    ],
)
def test_bad_input_is_one_stderr_line_and_exit_2(args, needle, recording, port, repo_root):
    args = [a.replace("{rec}", str(recording)) for a in args]
    proc = _main(repo_root, *args, "--no-gui", "--publish", _addr(port))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("error: ")


def test_keys_make_a_working_curve_pair(tmp_path, port, repo_root):
    for name in ("server", "client"):
        proc = _main(repo_root, "keys", "--out", str(tmp_path), "--name", name)
        assert proc.communicate(timeout=60)[1] == "" and proc.returncode == 0
    assert oct((tmp_path / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    again = _main(repo_root, "keys", "--out", str(tmp_path), "--name", "server")
    assert again.communicate(timeout=60) and again.returncode == 2  # never overwrites a key
    with Publisher(_addr(port), curve_secret_key_file=tmp_path / "server.key_secret") as pub:
        with Subscriber(_addr(port), ("pred",), curve_secret_key_file=tmp_path / "client.key_secret",
                        curve_server_key_file=tmp_path / "server.key") as sub:
            assert pub.wait_subscribers("pred", 1, timeout_s=10)
            pub.publish("pred", {"ok": 1})
            assert sub.recv(5000).data == {"ok": 1}


def test_subscribe_reports_gaps_in_human_mode(port, repo_root):
    with Publisher(_addr(port)) as pub:
        script = _main(repo_root, "subscribe", _addr(port), "--all", "--count", "3", "--timeout", "30")
        assert pub.wait_subscribers("pred", 1, timeout_s=30)
        base = {"name": "left hand wave", "confidence": 0.9, "changed": True, "infer_ms": 1.0}
        pub.publish("pred", base, t_start=0, t_end=80_000)
        pub._seq["pred"] += 4  # four messages this subscriber never sees
        pub.publish("pred", base, t_start=80_000, t_end=160_000)
        pub.publish("pred", base, t_start=160_000, t_end=240_000)
        out, err = script.communicate(timeout=30)
    assert script.returncode == 0
    assert out.count("left hand wave") == 3 and "gap on pred: 4 message(s) missed" in out
    assert "1 gaps, 4 missed" in err


def test_subscribe_ends_with_0_when_the_publisher_says_ended_even_when_not_shown(port, repo_root):
    with Publisher(_addr(port)) as pub:
        script = _main(repo_root, "subscribe", _addr(port), "--json", "--topics", "pred")
        assert pub.wait_subscribers("status", 1, timeout_s=30) and pub.wait_subscribers("pred", 1, timeout_s=30)
        for i in range(3):
            pub.publish("pred", {"name": "air drums", "changed": True}, t_start=i, t_end=i + 1)
        pub.publish("status", {"state": "ended", "message": "end of recording"})
        out, err = script.communicate(timeout=30)
    assert script.returncode == 0, err
    topics = [json.loads(line)["topic"] for line in out.splitlines()]
    assert topics == ["pred"] * 3  # status was listened to, not printed
    assert "status:" not in err and "pred: 3 received" in err


def test_subscribe_exits_1_when_the_stream_goes_silent_before_it_ends(port, repo_root):
    with Publisher(_addr(port)) as pub:
        script = _main(repo_root, "subscribe", _addr(port), "--timeout", "2")
        assert pub.wait_subscribers("pred", 1, timeout_s=30)
        pub.publish("pred", {"name": "air drums", "changed": True, "confidence": 0.5}, t_start=0, t_end=1)
        out, err = script.communicate(timeout=60)
    assert script.returncode == 1
    assert "no message for 2 s before the stream ended (1 prediction(s) received)" in err
