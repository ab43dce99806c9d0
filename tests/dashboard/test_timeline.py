"""The run's record in sensor time (no Qt): relative times, seeks, online accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from evstream.dashboard.timeline import UNKNOWN, Timeline
from evstream.protocol import decode, encode

EPOCH_US = 1_605_537_500_920_000  # a real recording's clock (tonic's DVXplorer sample starts near here)


def _pred(t0: int, t1: int, label: int, truth=None, events: int = 100):
    data = {"label": label, "name": "x", "confidence": 0.5, "events": events}
    if truth is not None:
        data["truth"] = truth
    return decode(encode("pred", 0, "p", data, None, t0, t1))


def test_times_are_relative_to_the_announced_origin_else_the_first_window():
    timeline = Timeline()
    timeline.push(_pred(EPOCH_US + 400_000, EPOCH_US + 600_000, 1))
    np.testing.assert_allclose(timeline.windows()["t0"], [0.0])  # no status yet: the first window
    timeline.set_origin(EPOCH_US)  # status.origin_us: the recording's first event
    windows = timeline.windows()
    np.testing.assert_allclose(windows["t0"], [0.4])
    np.testing.assert_allclose(windows["t1"], [0.6])
    assert timeline.relative_s(EPOCH_US + 2_500_000) == pytest.approx(2.5)
    timeline.set_origin(True)  # not an integer: ignored
    assert timeline.origin_us == EPOCH_US


def test_a_seek_back_replaces_the_record_from_the_seek_point():
    timeline = Timeline()
    for k in range(10):
        timeline.push(_pred(k * 1_000_000, (k + 1) * 1_000_000, k % 3))
    timeline.push(_pred(3_000_000, 4_000_000, 2))  # seek back to 3 s
    windows = timeline.windows()
    np.testing.assert_allclose(windows["t0"], [0, 1, 2, 3])
    assert windows["label"].tolist() == [0, 1, 2, 2]


def test_the_record_keeps_every_window_of_a_long_run():
    timeline = Timeline()
    n = 5000  # past the first growth of the arrays
    for k in range(n):
        timeline.push(_pred(k * 200_000, (k + 1) * 200_000, k % 11))
    windows = timeline.windows()
    assert len(windows["t0"]) == n
    assert windows["label"].tolist() == [k % 11 for k in range(n)]


def test_online_accuracy_and_false_alarms_as_online_eval_scores_them():
    timeline = Timeline()
    # (decided, truth): 3 gesture windows (2 right), 2 rest windows (1 false alarm), 1 unknown.
    rows = [(4, 4), (4, 4), (-1, 4), (-1, -1), (5, -1), (3, None)]
    for k, (label, truth) in enumerate(rows):
        timeline.push(_pred(k * 100, (k + 1) * 100, label, truth))
    figures = timeline.accuracy()
    assert figures["gesture_windows"] == 3 and figures["right"] == 2
    assert figures["accuracy"] == pytest.approx(2 / 3)
    assert figures["rest_windows"] == 2 and figures["false_alarms"] == 1
    assert figures["false_alarm"] == pytest.approx(0.5)
    assert timeline.windows()["truth"].tolist() == [4, 4, 4, -1, -1, UNKNOWN]


def test_stats_without_sensor_times_are_ignored_and_bad_numbers_refused():
    timeline = Timeline()
    timeline.push(decode(encode("stats", 0, "p", {"event_rate": 10.0, "events_on": 1, "events_off": 1})))
    assert len(timeline.rates()["t1"]) == 0
    timeline.push(decode(encode("stats", 1, "p", {"event_rate": 1000.0, "events_on": 3, "events_off": 1}, None, 0, 10)))
    rates = timeline.rates()
    assert rates["on"].tolist() == [750.0] and rates["off"].tolist() == [250.0]
    with pytest.raises(TypeError, match="numbers"):
        timeline.push(decode(encode("stats", 2, "p", {"event_rate": "fast"}, None, 10, 20)))


def test_a_visible_range_takes_only_the_windows_overlapping_it():
    timeline = Timeline()
    timeline.set_origin(EPOCH_US)
    for k in range(100):  # 100 windows of 0.5 s from 0 s
        timeline.push(_pred(EPOCH_US + k * 500_000, EPOCH_US + (k + 1) * 500_000, k % 11))
    part = timeline.windows(10.2, 12.0)
    np.testing.assert_allclose(part["t0"], [10.0, 10.5, 11.0, 11.5])
    assert part["label"].tolist() == [k % 11 for k in (20, 21, 22, 23)]
    assert timeline.span() == pytest.approx((0.0, 50.0))
    assert len(timeline.windows(60.0, 70.0)["t0"]) == 0
