"""Panels that explain themselves, in time that means something (issue 15, items 2-4).

The dashboard attached to a real PUB socket on 127.0.0.1 (Qt offscreen): relative sensor time
that survives a pause and the end, the threshold line, colour bars, the crop rectangle, the
ground-truth ribbon and online accuracy, the seek slider, the window title, the record dialog.
"""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6 import QtCore, QtGui

from evstream.binning import Geometry
from evstream.dashboard.prediction_panel import RIBBON_S
from evstream.stream_info import geometry_info
from tests.dashboard.streams import (
    CLASSES,
    GRID,
    INPUT,
    SENSOR,
    attention_arrays,
    frame_counts,
    status_data,
    wait_ticks,
)

EPOCH_US = 1_605_537_500_920_000  # where a real recording's clock stands
PROBS = np.array([0.1, 0.2, 0.4, 0.2, 0.1], dtype=np.float32)
SMOOTHED = np.array([0.05, 0.15, 0.6, 0.15, 0.05], dtype=np.float32)
LEFT = QtCore.Qt.MouseButton.LeftButton


def _pred(label: int = 2, truth: int | None = None) -> dict:
    data = {"label": label, "name": CLASSES[label] if label >= 0 else "no gesture", "confidence": 0.6,
            "changed": False, "infer_ms": 5.0, "resets": 0, "energy_uj": 10.0, "events": 500}
    if truth is not None:
        data["truth"] = truth
    return data


def _stats() -> dict:
    return {"windows": 1, "dropped_windows": 0, "resets": 0, "events_on": 300, "events_off": 100,
            "event_rate": 2000.0, "infer_ms": 5.0, "lag_ms": 1.0, "window_ms": 200.0, "realtime_factor": 1.0}


@pytest.fixture
def recording_feeder(zmq_context):
    """A feeder on a real recording's clock: 200 ms windows from EPOCH_US + 1 s, 20 ms apart."""
    from tests.dashboard.streams import StreamFeeder

    feeder = StreamFeeder(zmq_context, window_us=200_000, t_offset_us=EPOCH_US + 1_000_000)
    yield feeder
    feeder.close()


def _windows_seen(window, n: int) -> bool:
    return len(window.timeline.windows()["t0"]) >= n


def test_timelines_run_on_relative_sensor_time_and_freeze_while_paused(qtbot, window_factory, recording_feeder):
    feeder = recording_feeder
    feeder.set("status", status_data(origin_us=EPOCH_US))
    feeder.set("frame", {"sensor": list(SENSOR)}, {"counts": frame_counts()})
    feeder.set("pred", _pred(), {"probs": PROBS, "smoothed": SMOOTHED})
    feeder.set("stats", _stats())
    window = window_factory(feeder.address)
    qtbot.waitUntil(lambda: window.timeline.origin_us == EPOCH_US and _windows_seen(window, 5), timeout=5000)
    wait_ticks(qtbot, window)

    # Labels: seconds since the recording's start (the first window starts 1 s in), absolute only in tooltips.
    first = window.timeline.windows()["t0"][0]
    assert first >= 1.0 and first < 60  # not 1605537501
    detail = window.prediction.detail.text()
    assert detail.startswith("t ") and "1605537" not in detail
    relative = float(detail.split()[1])
    assert 1.0 < relative < 60
    assert "1605537" in window.prediction.detail.toolTip()
    qtbot.waitUntil(lambda: window.events.info.text().startswith("t "), timeout=5000)
    assert "1605537" not in window.events.info.text() and "1605537" in window.events.info.toolTip()
    # The stream plot is on the same relative axis.
    qtbot.waitUntil(lambda: window.stats.on_curve.xData is not None and len(window.stats.on_curve.xData) > 0, timeout=5000)
    assert 1.0 <= window.stats.on_curve.xData[0] < 60
    np.testing.assert_allclose(window.stats.on_curve.yData[-1], 1500.0)  # 2000 ev/s, 3/4 ON

    # Pause: no window arrives; the ribbon, the plot and the labels stand still (a wall-clock
    # timeline would keep scrolling and draw a ramp into the pause).
    feeder.set("pred", None)
    feeder.set("stats", None)
    feeder.set("frame", None)
    feeder.set("status", status_data(state="paused", origin_us=EPOCH_US))
    qtbot.waitUntil(lambda: window.status_data.get("state") == "paused", timeout=5000)
    wait_ticks(qtbot, window, 3)
    before = (len(window.timeline.windows()["t0"]), window.prediction.ribbon_range, window.prediction.ribbon.image.copy(),
              window.prediction.detail.text(), window.stats.on_curve.xData.copy())
    qtbot.wait(800)
    wait_ticks(qtbot, window, 3)
    assert len(window.timeline.windows()["t0"]) == before[0]
    assert window.prediction.ribbon_range == before[1]
    np.testing.assert_array_equal(window.prediction.ribbon.image, before[2])
    assert window.prediction.detail.text() == before[3]
    np.testing.assert_array_equal(window.stats.on_curve.xData, before[4])


def test_after_the_end_the_whole_run_stays_and_can_be_scrolled(qtbot, window_factory, recording_feeder):
    feeder = recording_feeder
    feeder.set("status", status_data(origin_us=EPOCH_US))
    window = window_factory(feeder.address)
    qtbot.waitUntil(lambda: window.timeline.origin_us == EPOCH_US, timeout=5000)  # subscribed: nothing is missed now
    first = 1.0 + 0.2 * feeder.window  # the next round's window start, s since the origin (or one later)
    feeder.set("pred", _pred(label=1), {"probs": PROBS, "smoothed": SMOOTHED})
    feeder.set("stats", _stats())
    qtbot.waitUntil(lambda: _windows_seen(window, 10), timeout=10_000)
    feeder.set("pred", _pred(label=3), {"probs": PROBS, "smoothed": SMOOTHED})
    # Run on past twice the ribbon's span (200 ms of sensor time per 20 ms round), then end.
    qtbot.waitUntil(lambda: window.timeline.windows()["t1"][-1] > 2.5 * RIBBON_S, timeout=20_000)
    feeder.silence()
    feeder.set("status", status_data(state="ended", origin_us=EPOCH_US))
    qtbot.waitUntil(lambda: window.status_data.get("state") == "ended", timeout=5000)
    wait_ticks(qtbot, window, 5)

    windows = window.timeline.windows()
    assert windows["label"][0] == 1 and windows["label"][-1] == 3
    assert np.allclose(np.diff(windows["t0"]), 0.2)  # every window kept, none skipped
    # The run's first window is still there (the feeder may have run a round or two, status only,
    # between reading its counter and taking the prediction).
    assert first - 1e-6 <= windows["t0"][0] <= first + 0.4 + 1e-6
    # Following: the last RIBBON_S seconds, ending at the last window (no empty ribbon after the end).
    x0, x1 = window.prediction.ribbon_range
    assert x1 == pytest.approx(windows["t1"][-1]) and x1 - x0 == pytest.approx(RIBBON_S)
    assert (window.prediction.ribbon.image[1, -10:] == 3).all()
    # Scrolling back to the start (on the stream plot: one time axis) shows the first decisions.
    window.prediction.stop_following()
    start = float(windows["t0"][0])
    window.stats.plot.setXRange(0, start + 1, padding=0)
    qtbot.waitUntil(lambda: window.prediction.ribbon_range == pytest.approx((0, start + 1)), timeout=5000)
    decided = window.prediction.ribbon.image[1]
    edge = int(len(decided) * start / (start + 1))
    assert (decided[: edge - 1] == 255).all()  # before the first window: nothing
    assert (decided[edge + 1:] == 1).all()
    assert window.stats.on_curve.xData[0] == pytest.approx(start + 0.2)  # the plot keeps the run's start too
    # "follow" brings the newest window back.
    window.prediction.follow_button.setChecked(True)
    assert window.prediction.ribbon_range[1] == pytest.approx(windows["t1"][-1])


def test_threshold_line_legend_and_truth_ribbon_with_online_accuracy(qtbot, window_factory, recording_feeder):
    feeder = recording_feeder
    decision = {"rule": "ema", "smoothing_ms": 100.0, "threshold": 0.6, "hysteresis": 0.1, "class_thresholds": {3: 0.8}}
    feeder.set("status", status_data(origin_us=EPOCH_US, decision=decision))
    feeder.set("pred", _pred(label=2, truth=2), {"probs": PROBS, "smoothed": SMOOTHED})
    window = window_factory(feeder.address)
    panel = window.prediction
    qtbot.waitUntil(lambda: panel.threshold == 0.6 and _windows_seen(window, 5), timeout=5000)
    # The decision threshold across the bars, its hold level, and the legend of both bars.
    assert panel.threshold_line.isVisible() and panel.threshold_line.value() == pytest.approx(0.6)
    assert panel.threshold_line.label.format == "threshold 0.60"
    assert "own thresholds: delta 0.80" in panel.threshold_line.toolTip()
    assert panel.hold_line.isVisible() and panel.hold_line.value() == pytest.approx(0.5)
    names = [label.text for _, label in panel.legend.items]
    assert any("smoothed" in n for n in names) and any("this window" in n for n in names)

    # Then two wrong windows kinds: the truth moves on (3) while the decision stays, and a rest.
    feeder.set("pred", _pred(label=2, truth=3), {"probs": PROBS, "smoothed": SMOOTHED})
    qtbot.waitUntil(lambda: 3 in window.timeline.windows()["truth"], timeout=5000)
    feeder.set("pred", _pred(label=2, truth=-1), {"probs": PROBS, "smoothed": SMOOTHED})
    qtbot.waitUntil(lambda: -1 in window.timeline.windows()["truth"], timeout=5000)
    feeder.silence()
    wait_ticks(qtbot, window, 5)
    windows = window.timeline.windows()
    truth, label = windows["truth"], windows["label"]
    gestures = truth >= 0
    right = int((label[gestures] == truth[gestures]).sum())
    alarms = int((label[truth == -1] >= 0).sum())
    text = panel.accuracy_label.text()
    assert f"online accuracy {100 * right / gestures.sum():.0f}% ({right}/{gestures.sum()} gesture windows)" in text
    assert f"false alarms 100% ({alarms}/{(truth == -1).sum()} rest windows)" in text
    # The truth row holds the true classes (2, 3, then 254 = no gesture) under the decisions.
    panel.stop_following()
    window.stats.plot.setXRange(windows["t0"][0], windows["t1"][-1], padding=0)
    qtbot.waitUntil(lambda: panel.ribbon_range[0] == pytest.approx(windows["t0"][0]), timeout=5000)
    ribbon = panel.ribbon.image
    assert {2, 3, 254} <= set(np.unique(ribbon[0]).tolist())
    assert set(np.unique(ribbon[1]).tolist()) <= {2, 255}
    assert "truth: no gesture" in panel.detail.text()


def test_no_truth_says_so(qtbot, window_factory, recording_feeder):
    recording_feeder.set("pred", _pred(), {"probs": PROBS, "smoothed": SMOOTHED})
    window = window_factory(recording_feeder.address)
    qtbot.waitUntil(lambda: _windows_seen(window, 3), timeout=5000)
    wait_ticks(qtbot, window, 3)
    assert window.prediction.accuracy_label.text() == "ground truth: not known for this source"
    assert not window.prediction.threshold_line.isVisible()  # no decision settings announced


@pytest.mark.parametrize("fit", ["crop", "letterbox"])
def test_crop_rectangle_and_token_patches_on_the_sensor(qtbot, window_factory, feeder, fit):
    # The real mapping of the 96×64 test sensor onto the 32×32 model input.
    geometry = geometry_info(Geometry(SENSOR, (INPUT, INPUT), mode=fit))
    feeder.set("status", status_data(geometry=geometry, source="take_03.aedat4", model="test-model"))
    feeder.set("frame", {"sensor": list(SENSOR)}, {"counts": frame_counts()})
    feeder.set("attn", {"blocks": 2, "heads": 3, "grid": list(GRID)}, attention_arrays())
    window = window_factory(feeder.address)
    events = window.events
    qtbot.waitUntil(lambda: events.view_rect is not None and window.attention.message is not None, timeout=5000)
    rect = events.crop_rect.rect()
    if fit == "crop":  # the centred 64×64 square of the 96×64 sensor
        assert geometry["view"] == [16, 0, 64, 64]
        assert (rect.x(), rect.y(), rect.width(), rect.height()) == (16, 0, 64, 64)
        assert events.input_rect == (16, 0, 64, 64)
    else:  # the whole sensor, with bands above and below in the input
        assert geometry["view"] == [0, 0, 96, 64]
        assert (rect.x(), rect.y(), rect.width(), rect.height()) == (0, 0, 96, 64)
        assert events.input_rect == pytest.approx((0, -16, 96, 96))
    assert events.crop_rect.isVisible() and f"({fit}) → 32×32" in events.crop_text.toPlainText()
    # The overlay covers what the input covers.
    events.overlay_box.setChecked(True)
    qtbot.waitUntil(lambda: events.overlay.image is not None, timeout=5000)
    box = events.overlay.mapRectToParent(events.overlay.boundingRect())
    assert (box.x(), box.y(), box.width(), box.height()) == pytest.approx(events.input_rect)
    # Each token's index is written on its patch; the hover line names the patch's sensor pixels.
    attention = window.attention
    assert [item.toPlainText() for item in attention.token_items] == [str(i) for i in range(GRID[0] * GRID[1])]
    attention.select_token(9)  # row 2, col 1: input x 8-15, y 16-23
    expected = "sensor x 32–47, y 32–47" if fit == "crop" else "sensor x 24–47, y 32–55"
    assert f"input x 8–15, y 16–23 = {expected}" in attention.token_label.text()
    # The title names the recording and the model, not an address.
    qtbot.waitUntil(lambda: "take_03.aedat4" in window.windowTitle(), timeout=5000)
    assert window.windowTitle() == "evstream · take_03.aedat4 · test-model"


def test_attention_colour_bar_and_an_all_zero_row(qtbot, window_factory, feeder):
    arrays = attention_arrays()
    arrays["qk"][0, :, 5, :] = 0.0  # token 5 of block 0 pays no attention in any head
    feeder.set("attn", {"blocks": 2, "heads": 3, "grid": list(GRID)}, arrays)
    window = window_factory(feeder.address)
    panel = window.attention
    qtbot.waitUntil(lambda: panel.message is not None, timeout=5000)
    average = arrays["qk"][0].mean(axis=0)
    low, top = panel.map_bar.levels()
    assert (low, top) == tuple(panel.map_image.levels) and low == 0 and average.max() <= top <= 1.5 * average.max()
    received = average.mean(axis=0)
    assert panel.overlay_bar.levels() == pytest.approx((0.0, float(received.max())), rel=1e-6)
    panel.select_token(5)
    text = panel.token_label.text()
    assert "token 5 (row 1, col 1" in text and "pays no attention in this window" in text
    assert "pays most" not in text
    panel.select_token(6)
    assert f"pays most to token {int(average[6].argmax())}" in panel.token_label.text()


def test_seek_slider_seeks_where_it_is_clicked(qtbot, window_factory, feeder, control_recorder):
    feeder.set("status", status_data())  # 10 s recording, 2 s in
    window = window_factory(feeder.address, control=control_recorder.address)
    slider = window.controls.seek_slider
    qtbot.waitUntil(lambda: window.controls.duration_us == 10_000_000, timeout=5000)
    feeder.silence()  # no status moves the slider meanwhile
    for fraction in (0.75, 0.3):
        x = int(round(slider.width() * fraction))
        qtbot.mouseClick(slider, LEFT, pos=QtCore.QPoint(x, slider.height() // 2))
    qtbot.waitUntil(lambda: len(control_recorder.requests) >= 2, timeout=5000)
    seeks = [r["t_us"] for r in control_recorder.requests if r["cmd"] == "seek"]
    # A page step from 2 s would give 2.1 s: a click lands within a handle's width of the pointer.
    handle = 0.1 * 10_000_000 * 30 / slider.width()  # generous: 30 px of handle and margins
    assert len(seeks) == 2
    assert abs(seeks[0] - 7_500_000) < 0.05 * 10_000_000 + handle
    assert abs(seeks[1] - 3_000_000) < 0.05 * 10_000_000 + handle


def test_record_path_is_chosen_in_a_dialog_and_shown(qtbot, window_factory, feeder, control_recorder, tmp_path):
    feeder.set("status", status_data(record_dir=str(tmp_path)))
    window = window_factory(feeder.address, control=control_recorder.address)
    controls = window.controls
    qtbot.waitUntil(lambda: controls.record_dir == str(tmp_path), timeout=5000)
    assert controls.record_status.text() == f"Record writes {tmp_path / 'recording.aedat4'}"
    asked = []

    def dialog(parent, start: str) -> str:  # stands in for QFileDialog.getSaveFileName
        asked.append(start)
        return str(tmp_path / "takes" / "wave")

    controls.choose_path = dialog
    qtbot.mouseClick(controls.browse_button, LEFT)
    assert asked == [str(tmp_path / "recording.aedat4")]
    assert controls.record_path.text() == "takes/wave.aedat4"  # inside the recordings folder: relative
    assert controls.record_status.text() == f"Record writes {tmp_path / 'takes' / 'wave.aedat4'}"
    qtbot.mouseClick(controls.record_button, LEFT)
    qtbot.waitUntil(lambda: len(control_recorder.requests) == 1, timeout=5000)
    assert control_recorder.requests == [{"cmd": "record_start", "path": "takes/wave.aedat4"}]
    writing = str(tmp_path / "takes" / "wave.aedat4")
    feeder.set("status", status_data(record_dir=str(tmp_path), recording=writing))
    qtbot.waitUntil(lambda: controls.record_status.text() == f"recording to {writing}", timeout=5000)
    # A cancelled dialog changes nothing.
    controls.choose_path = lambda parent, start: ""
    controls.browse()
    assert controls.record_path.text() == "takes/wave.aedat4"


def test_drop_down_lists_open_in_the_dark_theme(qtbot, window_factory, feeder):
    window = window_factory(feeder.address)
    for combo in (window.attention.head, window.events.mode, window.controls.speed, window.display_rate):
        palette = combo.view().palette()
        assert palette.color(QtGui.QPalette.ColorRole.Base).lightness() < 60
        assert palette.color(QtGui.QPalette.ColorRole.Text).lightness() > 180
