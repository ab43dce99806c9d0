"""The dashboard window attached to a real PUB socket on 127.0.0.1 (Qt offscreen)."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6 import QtCore, QtTest

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

PROBS = np.array([0.1, 0.2, 0.4, 0.2, 0.1], dtype=np.float32)
SMOOTHED = np.array([0.05, 0.15, 0.6, 0.15, 0.05], dtype=np.float32)


def _pred(label: int = 2, confidence: float = 0.6) -> dict:
    return {"label": label, "name": CLASSES[label] if label >= 0 else "no gesture", "confidence": confidence,
            "changed": True, "infer_ms": 7.25, "resets": 1, "energy_uj": 42.5, "events": 1234}


def _stats() -> dict:
    return {"windows": 17, "dropped_windows": 3, "resets": 1, "events_on": 600, "events_off": 400,
            "event_rate": 100_000.0, "infer_ms": 7.25, "lag_ms": 12.0, "window_ms": 10.0, "realtime_factor": 1.0}


def _spikes() -> tuple[dict, dict]:
    rng = np.random.default_rng(3)
    arrays = {"sps.stage1": rng.uniform(0, 1, (16, 16)).astype(np.float32),
              "block0": rng.uniform(0, 1, (4, 4)).astype(np.float32)}
    return {"layers": list(arrays), "sparsity": {"sps.stage1": 0.75, "block0": 0.5}}, arrays


def _feed_everything(feeder) -> None:
    feeder.set("status", status_data())
    feeder.set("frame", {"sensor": list(SENSOR)}, {"counts": frame_counts()})
    feeder.set("pred", _pred(), {"probs": PROBS, "smoothed": SMOOTHED})
    data, arrays = _spikes()
    feeder.set("spikes", data, arrays)
    feeder.set("attn", {"blocks": 2, "heads": 3, "grid": list(GRID)}, attention_arrays())
    feeder.set("stats", _stats())


def _all_topics_seen(window) -> bool:
    topics = window.last_snapshot.topics
    return all(t in topics and topics[t].received > 0 for t in ("status", "frame", "pred", "spikes", "attn", "stats"))


def test_window_builds_and_waits(window_factory, feeder):
    window = window_factory(feeder.address)
    assert window.connection_state == "waiting"
    assert "waiting" in window.connection_label.text()
    assert window.events.image.image is None


def test_every_panel_updates_from_the_stream(qtbot, window_factory, feeder):
    _feed_everything(feeder)
    window = window_factory(feeder.address)
    qtbot.waitUntil(lambda: _all_topics_seen(window) and bool(window.spikes.layers), timeout=5000)
    wait_ticks(qtbot, window)

    # Events: row-major [H, W] at sensor resolution; ON pixels above the 128 midpoint, OFF below.
    image = window.events.image.image
    assert image.shape == (SENSOR[1], SENSOR[0])
    assert image.std() > 0
    assert (image[5:15, 10:30] > 128).all()
    assert (image[40:60, 70:90] < 128).all()
    assert (image[20:30, 40:60] == 128).all()

    # Prediction: class names from status, bars equal what was sent and sum to one.
    assert window.prediction.classes == tuple(CLASSES)
    assert np.isclose(window.prediction.smoothed.opts["width"].sum(), 1.0)
    np.testing.assert_allclose(window.prediction.smoothed.opts["width"], SMOOTHED)
    np.testing.assert_allclose(window.prediction.instant.opts["width"], PROBS)
    assert window.prediction.label.text() == "charlie  60%"
    assert window.prediction.ribbon.image is not None
    assert (window.prediction.ribbon.image[1] == 2).any()  # row 1: decisions (row 0: truth)

    # Spike maps: one image per layer holding the sent rates, sparsity in the titles.
    _, arrays = _spikes()
    assert window.spikes.layers == tuple(arrays)
    for name, rate in arrays.items():
        np.testing.assert_allclose(window.spikes.images[name].image, rate)
    # Headline: the firing rate (spikes per neuron per step = the map's mean); silence second.
    rates = {name: float(rate.mean()) for name, rate in arrays.items()}
    assert window.spikes.firing_rate == pytest.approx(rates, rel=1e-6)
    summary = window.spikes.summary.text()
    assert f"firing rate {np.mean(list(rates.values())):.3f} spikes/neuron/step" in summary
    assert "62.5% of map positions silent" in summary
    assert summary.index("firing rate") < summary.index("silent")
    # Every map has a colour bar giving the image's own scale: 0 to at most 1.5× the map's maximum.
    for name, rate in arrays.items():
        low, top = window.spikes.colorbars[name].levels()
        assert (low, top) == tuple(window.spikes.images[name].levels)
        assert low == 0 and rate.max() <= top <= 1.5 * rate.max()

    # Attention: the head average of block 0 by default, and per head when chosen.
    qk = attention_arrays()["qk"]
    np.testing.assert_allclose(window.attention.map_image.image, qk[0].mean(axis=0), rtol=1e-5)
    window.attention.block.setValue(1)
    window.attention.head.setCurrentIndex(window.attention.head.findData(2))
    np.testing.assert_allclose(window.attention.map_image.image, qk[1, 2], rtol=1e-6)
    received = qk[1, 2].mean(axis=0)
    np.testing.assert_allclose(window.attention.overlay_values, (received / received.max()).reshape(GRID), rtol=1e-5)

    # Stats: rates split ON/OFF, figures shown, connection state (drawn at the secondary rate).
    qtbot.waitUntil(lambda: window.stats.on_curve.getData()[0] is not None and window.stats.text("energy") != "—", timeout=5000)
    x, y = window.stats.on_curve.getData()
    assert len(x) > 0 and np.isclose(y[-1], 60_000.0)
    assert np.isclose(window.stats.off_curve.getData()[1][-1], 40_000.0)
    assert "7.2 ms" in window.stats.text("inference") or "7.3 ms" in window.stats.text("inference")
    assert "3 windows" in window.stats.text("dropped")
    assert "42.50 µJ" in window.stats.text("energy")
    assert "end to end" in window.stats.text("lag")
    assert window.connection_state == "connected"
    assert "connected" in window.stats.text("connection")
    assert "test-model" in window.source_label.text()
    assert window.fps > 5


def test_no_gesture_label(qtbot, window_factory, feeder):
    feeder.set("pred", _pred(label=-1, confidence=0.3), {"probs": PROBS, "smoothed": SMOOTHED})
    window = window_factory(feeder.address)
    qtbot.waitUntil(lambda: window.prediction.label_text == "no gesture", timeout=5000)
    assert window.prediction.label.text() == "no gesture"


def test_stopped_stream_shows_disconnected_and_keeps_drawing(qtbot, window_factory, feeder):
    feeder.set("status", status_data())
    window = window_factory(feeder.address)
    qtbot.waitUntil(lambda: window.connection_state == "connected", timeout=5000)
    feeder.silence()
    qtbot.waitUntil(lambda: window.connection_state == "disconnected", timeout=6000)
    assert window.connection_label.text().startswith("disconnected")
    ticks = window.ticks
    wait_ticks(qtbot, window, 5)
    assert window.ticks >= ticks + 5
    # The stream coming back is noticed too.
    feeder.set("status", status_data())
    qtbot.waitUntil(lambda: window.connection_state == "connected", timeout=5000)


def test_hover_over_the_input_selects_a_token_row(qtbot, window_factory, feeder):
    feeder.set("attn", {"blocks": 2, "heads": 3, "grid": list(GRID)}, attention_arrays())
    window = window_factory(feeder.address)
    panel = window.attention
    qtbot.waitUntil(lambda: panel.message is not None, timeout=5000)
    wait_ticks(qtbot, window)
    qk = attention_arrays()["qk"]
    average = qk[0].mean(axis=0)
    np.testing.assert_allclose(panel.overlay_values, (average.mean(axis=0) / average.mean(axis=0).max()).reshape(GRID), rtol=1e-5)

    # Pixel (row 2, col 1) of the 4×4 token grid: token 2 * 4 + 1 = 9.
    cell = INPUT / GRID[0]
    item_point = QtCore.QPointF(1.5 * cell, 2.5 * cell)
    scene_point = panel.input_view.mapViewToScene(item_point)
    widget_point = panel.graphics.mapFromScene(scene_point)
    QtTest.QTest.mouseMove(panel.graphics.viewport(), widget_point)
    qtbot.waitUntil(lambda: panel.selected_token == 9, timeout=3000)
    row = average[9]
    np.testing.assert_allclose(panel.overlay_values, (row / row.max()).reshape(GRID), rtol=1e-5)
    assert panel.row_marker.isVisible() and np.isclose(panel.row_marker.value(), 9.5)
    # The token, the input pixels of its 8×8 patch, and where its attention goes.
    assert f"token 9 (row 2, col 1; input x 8–15, y 16–23) pays most to token {int(row.argmax())}" in panel.token_label.text()
    assert panel.overlay_bar.levels() == pytest.approx((0.0, float(row.max())), rel=1e-6)

    # Hovering row 12 of the N×N map selects token 12.
    on_map = panel.graphics.mapFromScene(panel.map_view.mapViewToScene(QtCore.QPointF(3.5, 12.5)))
    qtbot.wait(50)  # offscreen Qt drops a synthetic move that follows the previous one at once
    QtTest.QTest.mouseMove(panel.graphics.viewport(), on_map)
    qtbot.waitUntil(lambda: panel.selected_token == 12, timeout=3000)

    # Leaving both views (the widget's top-left corner is the title row) goes back to the attention each token receives.
    outside = QtCore.QPoint(2, 2)
    assert not any(v.sceneBoundingRect().contains(panel.graphics.mapToScene(outside)) for v in (panel.map_view, panel.input_view))
    qtbot.wait(50)
    QtTest.QTest.mouseMove(panel.graphics.viewport(), outside)
    qtbot.waitUntil(lambda: panel.selected_token is None, timeout=3000)


def test_attention_overlay_on_the_event_image_and_hover_there(qtbot, window_factory, feeder):
    feeder.set("frame", {"sensor": list(SENSOR)}, {"counts": frame_counts()})
    feeder.set("attn", {"blocks": 2, "heads": 3, "grid": list(GRID)}, attention_arrays())
    window = window_factory(feeder.address)
    qtbot.waitUntil(lambda: window.attention.message is not None and window.events.image.image is not None, timeout=5000)
    events = window.events
    events.overlay_box.setChecked(True)
    qtbot.waitUntil(lambda: events.overlay.image is not None, timeout=5000)
    assert events.overlay.isVisible()
    average = attention_arrays()["qk"][0].mean(axis=0)
    received = average.mean(axis=0)
    np.testing.assert_allclose(events.overlay.image, (received / received.max()).reshape(GRID), rtol=1e-5)
    rect = events.overlay.mapRectToParent(events.overlay.boundingRect())
    assert (round(rect.width()), round(rect.height())) == SENSOR

    # The sensor is 96×64, the grid 4×4: sensor pixel (x 80, y 20) lies in token row 1, col 3 → 7.
    qtbot.wait(50)
    point = events.graphics.mapFromScene(events.view.mapViewToScene(QtCore.QPointF(80, 20)))
    QtTest.QTest.mouseMove(events.graphics.viewport(), point)
    qtbot.waitUntil(lambda: window.attention.selected_token == 7, timeout=3000)
    row = average[7]
    np.testing.assert_allclose(events.overlay.image, (row / row.max()).reshape(GRID), rtol=1e-5)


def test_accumulation_span_is_set_apart_from_the_display_rate(qtbot, window_factory, feeder):
    feeder.set("frame", {"sensor": list(SENSOR)}, {"counts": frame_counts()})
    window = window_factory(feeder.address)
    qtbot.waitUntil(lambda: window.events.image.image is not None, timeout=5000)
    window.events.span.setCurrentIndex(window.events.span.findData(300_000))
    window.events.mode.setCurrentText("surface")
    assert window.accumulator.span_us == 300_000 and window.accumulator.mode == "surface"
    window.display_rate.setCurrentIndex(window.display_rate.findData(60))
    assert round(window.display_period_ms) == 17

    def surface_drawn() -> None:
        image = window.events.image.image
        assert "surface 300 ms" in window.events.info.text()
        assert (image[5:15, 10:30] > 128).all() and (image[40:60, 70:90] < 128).all()
        assert (image[20:30, 40:60] == 128).all()

    qtbot.waitUntil(surface_drawn, timeout=5000)


def test_decision_ribbon_holds_each_decision_for_its_window_in_sensor_time(qtbot):
    from evstream.dashboard.prediction_panel import RIBBON_COLUMNS, PredictionPanel
    from evstream.protocol import decode, encode

    panel = PredictionPanel()
    qtbot.addWidget(panel)
    panel.set_classes(CLASSES)
    # Two 1 s windows (labels 1 then 3) from sensor time 5 s, then a silent 2 s, then label 4.
    for label, t0 in ((1, 5_000_000), (3, 6_000_000), (4, 9_000_000)):
        msg = decode(encode("pred", label, "p", _pred(label), {"probs": PROBS, "smoothed": SMOOTHED}, t0, t0 + 1_000_000))
        panel.timeline.push(msg)
    panel.follow_button.setChecked(False)
    panel.ribbon_plot.setXRange(0, 5, padding=0)  # relative to the first window: 0 s ... 5 s
    panel.draw_ribbon()
    decided = panel.ribbon.image[1]
    per_s = RIBBON_COLUMNS / 5
    assert (decided[: int(per_s) - 1] == 1).all()
    assert (decided[int(per_s) + 1: int(2 * per_s) - 1] == 3).all()
    assert (decided[int(2 * per_s) + 1: int(4 * per_s) - 1] == 255).all()  # no window: a gap, not a held decision
    assert (decided[int(4 * per_s) + 1:] == 4).all()
    assert (panel.ribbon.image[0] == 255).all()  # no truth from this source


def test_unusable_messages_are_counted_and_the_window_keeps_going(qtbot, window_factory, feeder):
    # Each decodes (valid wire schema) but carries a field a panel cannot use.
    feeder.set("pred", dict(_pred(), label="two"), {"probs": PROBS, "smoothed": SMOOTHED})
    feeder.set("spikes", {"layers": 5, "sparsity": {}}, {"a": np.zeros((2, 2), np.float32)})
    feeder.set("stats", dict(_stats(), event_rate="fast"))
    feeder.set("frame", {"sensor": list(SENSOR)}, {"counts": frame_counts().astype(np.float32)})
    window = window_factory(feeder.address)
    qtbot.waitUntil(lambda: {"pred", "spikes", "stats"} <= set(window.unusable), timeout=5000)
    qtbot.waitUntil(lambda: window.last_snapshot.bad_messages > 0, timeout=5000)
    qtbot.waitUntil(lambda: "unusable" in window.stats.text("dropped"), timeout=5000)
    assert window.source_label.text().startswith("unusable ")
    # Good messages afterwards show as usual.
    _feed_everything(feeder)
    qtbot.waitUntil(lambda: window.prediction.label.text() == "charlie  60%", timeout=5000)
    qtbot.waitUntil(lambda: bool(window.spikes.layers) and window.events.image.image is not None, timeout=5000)
    assert window.connection_state == "connected"
