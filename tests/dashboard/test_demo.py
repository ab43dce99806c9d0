"""The synthetic stream used by the benchmark and for screenshots follows the wire schema."""

from __future__ import annotations

import numpy as np

from evstream.dashboard.demo import DemoStream
from evstream.protocol import decode


def test_demo_window_messages_decode_with_the_documented_fields():
    stream = DemoStream(sensor=(64, 48), window_us=10_000, input_size=32, grid=4, blocks=2, heads=3)
    for index in range(3):
        messages = {m.topic: m for m in (decode(frames) for frames in stream.window())}
        assert set(messages) == {"frame", "pred", "spikes", "attn", "stats"}
        assert all(m.seq == index and m.t_start == index * 10_000 and m.t_end == (index + 1) * 10_000 for m in messages.values())
        counts = messages["frame"].arrays["counts"]
        assert counts.shape == (2, 48, 64) and counts.dtype == np.uint8 and counts.sum() > 0
        pred = messages["pred"]
        assert np.isclose(pred.arrays["probs"].sum(), 1.0, atol=1e-5) and np.isclose(pred.arrays["smoothed"].sum(), 1.0, atol=1e-5)
        assert pred.data["label"] == -1 or pred.data["name"] == stream.classes[pred.data["label"]]
        assert messages["attn"].arrays["qk"].shape == (2, 3, 16, 16)
        assert messages["attn"].arrays["frame"].shape == (32, 32)
        spikes = messages["spikes"]
        assert set(spikes.data["layers"]) == set(spikes.arrays) == set(spikes.data["sparsity"])
        stats = messages["stats"].data
        assert stats["events_on"] + stats["events_off"] == counts.sum()
    status = decode(stream.status(control="tcp://127.0.0.1:5557"))
    assert status.data["control"] == "tcp://127.0.0.1:5557" and status.data["sensor"] == [64, 48]
