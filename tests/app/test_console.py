"""Console sink: a line per label change, periodic summary, errors on stderr, --quiet."""

from __future__ import annotations

import io

import numpy as np

from evstream.console import ConsoleSink
from models.streaming import Prediction

STATS = {"windows": 3, "dropped_windows": 1, "resets": 2, "infer_ms": 4.3, "lag_ms": 5.5,
         "event_rate": 12_500.0, "realtime_factor": 1.5}


def _pred(t_start: int, name: str, changed: bool) -> Prediction:
    probs = np.full(11, 1 / 11, np.float32)
    return Prediction(t_start=t_start, t_end=t_start + 80_000, probs=probs, smoothed=probs, label=0, name=name,
                      confidence=0.876, changed=changed, logits=np.zeros((4, 11), np.float32))


def test_one_line_per_change_times_from_the_first_window_and_a_final_summary():
    out, err = io.StringIO(), io.StringIO()
    sink = ConsoleSink(out, errors=err, summary_every_s=None)
    sink.on_prediction(_pred(1_000_000, "no gesture", False), STATS)
    sink.on_prediction(_pred(1_080_000, "air guitar", True), STATS)
    sink.on_prediction(_pred(1_160_000, "air guitar", False), STATS)
    sink.on_state("error", "rec.aedat4: byte 1234: truncated packet")
    sink.close()
    sink.close()
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["0.160", "s", "air", "guitar", "conf", "0.88"]
    assert lines[1] == "windows 3  dropped 1  resets 2  infer 4.3 ms  lag 5.5 ms  12.5 kev/s  x1.50 real time"
    assert len(lines) == 2
    assert err.getvalue() == "error: rec.aedat4: byte 1234: truncated packet\n"


def test_quiet_prints_only_errors():
    out, err = io.StringIO(), io.StringIO()
    sink = ConsoleSink(out, errors=err, summary_every_s=0.0, quiet=True)
    sink.on_prediction(_pred(0, "arm roll", True), STATS)
    sink.on_state("ended", "end of recording")
    sink.on_state("error", "camera:dvxplorer: disconnected")
    sink.close()
    assert out.getvalue() == ""
    assert err.getvalue() == "error: camera:dvxplorer: disconnected\n"


def test_summary_every_period():
    out = io.StringIO()
    sink = ConsoleSink(out, summary_every_s=0.0)
    for i in range(3):
        sink.on_prediction(_pred(i * 80_000, "arm roll", False), STATS)
    assert out.getvalue().count("windows 3") == 3
