"""The dashboard's stream picker: a real Publisher on 127.0.0.1 serving two streams, the window offscreen."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from evstream.publish import Publisher
from tests.dashboard.streams import CLASSES, status_data, wait_ticks
from tests.helpers import free_port

SENSORS = {0: (96, 64), 1: (48, 32)}  # width, height: each stream its own sensor
LABELS = {0: 0, 1: 2}  # stream 0 says alpha, stream 1 charlie
RATES = {0: 0.1, 1: 0.3}  # and fires at these rates


def _counts(sid: int) -> np.ndarray:
    width, height = SENSORS[sid]
    counts = np.zeros((2, height, width), np.uint8)
    counts[1, : height // 2, : width // 2] = 3
    return counts


class TwoStreams:
    """Publishes, every 20 ms, status (listing ``streams`` when ``several``) and one window of each stream."""

    def __init__(self, several: bool = True) -> None:
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.publisher = Publisher(self.address)
        self.several = several
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        window = 0
        streams = [{"sid": 0, "source": "cam-a", "sensor": list(SENSORS[0]), "state": "running", "origin_us": 0},
                   {"sid": 1, "source": "cam-b", "sensor": list(SENSORS[1]), "state": "running", "origin_us": 0}]
        while not self._stop.is_set():
            extra = {"streams": streams, "source": "2 streams: cam-a, cam-b"} if self.several else {}
            self.publisher.publish("status", status_data(**extra))
            t0 = window * 50_000
            for sid in (0, 1) if self.several else (0,):
                label = LABELS[sid]
                probs = np.full(len(CLASSES), 0.05, np.float32)
                probs[label] = 0.8
                data = {"label": label, "name": CLASSES[label], "confidence": 0.8, "changed": False, "infer_ms": 1.0,
                        "resets": 0, "energy_uj": None, "events": 10, "lag_ms": 1.0}
                self.publisher.publish("pred", data, {"probs": probs, "smoothed": probs}, t0, t0 + 50_000, stream=sid)
                self.publisher.publish("frame", {"sensor": list(SENSORS[sid])}, {"counts": _counts(sid)}, t0,
                                       t0 + 50_000, stream=sid)
                rate = np.full((4, 4), RATES[sid], np.float32)  # each stream its own spike maps
                self.publisher.publish("spikes", {"layers": ["sps.0"], "sparsity": {"sps.0": 0.0}}, {"sps.0": rate},
                                       t0, t0 + 50_000, stream=sid)
            window += 1
            self._stop.wait(0.02)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.publisher.close()


@pytest.fixture
def two_streams():
    feed = TwoStreams()
    yield feed
    feed.close()


def test_the_picker_chooses_which_stream_the_panels_show(qtbot, window_factory, two_streams):
    window = window_factory(two_streams.address)
    qtbot.waitUntil(lambda: not window.stream_box.isHidden() and window.stream_box.count() == 2, timeout=20_000)
    assert [window.stream_box.itemText(i) for i in range(2)] == ["0: cam-a", "1: cam-b"]
    assert window.stream_box.currentData() == 0
    qtbot.waitUntil(lambda: window.prediction.label.text().startswith("alpha"), timeout=10_000)
    qtbot.waitUntil(lambda: window.events.image.image is not None, timeout=10_000)
    assert window.events.image.image.shape in ((64, 96), (96, 64))
    assert "stream 0 of 2: cam-a" in window.source_label.text() and "sensor 96×64" in window.source_label.text()
    qtbot.waitUntil(lambda: window.spikes.firing_rate.get("sps.0") == pytest.approx(RATES[0]), timeout=10_000)

    window.stream_box.setCurrentIndex(1)  # as a user picks it
    assert window.reader.stream == 1
    qtbot.waitUntil(lambda: window.prediction.label.text().startswith("charlie"), timeout=10_000)
    qtbot.waitUntil(lambda: window.events.image.image is not None
                    and window.events.image.image.shape in ((32, 48), (48, 32)), timeout=10_000)
    wait_ticks(qtbot, window, 5)
    assert window.prediction.label.text().startswith("charlie")  # stream 0's messages no longer reach a panel
    assert window.spikes.firing_rate["sps.0"] == pytest.approx(RATES[1])  # the spike maps are stream 1's too
    assert "stream 1 of 2: cam-b" in window.source_label.text() and "sensor 48×32" in window.source_label.text()
    windows = window.timeline.windows()
    assert len(windows["label"]) and set(windows["label"].tolist()) == {LABELS[1]}  # the timeline restarted on stream 1


def test_no_picker_for_one_stream(qtbot, window_factory):
    feed = TwoStreams(several=False)
    try:
        window = window_factory(feed.address)
        qtbot.waitUntil(lambda: window.prediction.label.text().startswith("alpha"), timeout=20_000)
        wait_ticks(qtbot, window, 3)
        assert window.stream_box.isHidden() and window.stream_label.isHidden()
        assert "stream 0" not in window.source_label.text()
    finally:
        feed.close()
