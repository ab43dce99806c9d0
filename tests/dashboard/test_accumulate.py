"""Event image accumulation: window sums, decay, time surface, restarts."""

from __future__ import annotations

import numpy as np
import pytest

from evstream.dashboard.accumulate import EventAccumulator, diverging_lut


def _counts(on: dict | None = None, off: dict | None = None, shape=(4, 6)) -> np.ndarray:
    counts = np.zeros((2, *shape), dtype=np.uint8)
    for (y, x), n in (on or {}).items():
        counts[1, y, x] = n
    for (y, x), n in (off or {}).items():
        counts[0, y, x] = n
    return counts


def test_window_mode_holds_exactly_the_last_span():
    acc = EventAccumulator("window", span_us=30_000)
    acc.push(_counts(on={(0, 0): 5}), 0, 10_000)
    acc.push(_counts(on={(1, 1): 1}), 10_000, 20_000)
    acc.push(_counts(off={(2, 2): 2}), 20_000, 30_000)
    image = acc.render()
    assert image.shape == (4, 6) and image.dtype == np.uint8
    assert image[0, 0] > image[1, 1] > 128 > image[2, 2]
    assert (image[3] == 128).all()
    # The window ending at 10 ms leaves the 30 ms span when one ending at 40 ms arrives.
    acc.push(_counts(), 30_000, 40_000)
    image = acc.render()
    assert image[0, 0] == 128 and image[1, 1] > 128 and image[2, 2] < 128


def test_on_and_off_at_one_pixel_cancel_in_the_signed_image():
    acc = EventAccumulator("window", span_us=100_000)
    acc.push(_counts(on={(0, 0): 3}, off={(0, 0): 3, (1, 0): 1}), 0, 10_000)
    image = acc.render()
    assert image[0, 0] == 128 and image[1, 0] < 128


def test_decay_mode_fades_with_the_time_constant():
    acc = EventAccumulator("decay", span_us=10_000)
    acc.push(_counts(on={(0, 0): 200}, off={(3, 5): 1}), 0, 10_000)
    first = acc.render()
    assert first[0, 0] > 128 > first[3, 5]
    # A fresh event (1) next to the old one after one time constant (200/e ≈ 74): still dimmer.
    acc.push(_counts(on={(0, 1): 1}), 10_000, 20_000)
    image = acc.render()
    assert image[0, 0] > image[0, 1] > 128
    # Ten more time constants of silence: the old burst (74·e⁻¹⁰ ≈ 0.003) has all but faded.
    for k in range(2, 12):
        acc.push(_counts(), k * 10_000, (k + 1) * 10_000)
    acc.push(_counts(on={(1, 1): 1}), 120_000, 130_000)
    image = acc.render()
    assert image[1, 1] > 200 and image[0, 0] < 140


def test_time_surface_shows_recency_and_polarity():
    acc = EventAccumulator("surface", span_us=20_000)
    acc.push(_counts(on={(0, 0): 1}), 0, 10_000)
    acc.push(_counts(off={(1, 1): 1}, on={(2, 2): 9}), 90_000, 100_000)
    image = acc.render()
    # A pixel that fired once long ago is dimmer than one that just fired, whatever the counts.
    assert 128 <= image[0, 0] < image[2, 2]
    assert image[1, 1] < 128
    assert image[3, 3] == 128


def test_a_frame_from_the_past_or_of_another_size_restarts_the_image():
    acc = EventAccumulator("window", span_us=1_000_000)
    acc.push(_counts(on={(0, 0): 1}), 500_000, 510_000)
    acc.push(_counts(on={(1, 1): 1}), 0, 10_000)  # seek backwards
    image = acc.render()
    assert image[0, 0] == 128 and image[1, 1] > 128
    acc.push(_counts(on={(0, 0): 1}, shape=(8, 8)), 20_000, 30_000)
    assert acc.render().shape == (8, 8)


def test_configure_and_dirty_flag():
    acc = EventAccumulator()
    assert acc.render() is None
    acc.push(_counts(on={(0, 0): 1}), 0, 10_000)
    assert acc.take_dirty() and not acc.take_dirty()
    acc.configure(mode="decay", span_us=33_000)
    assert acc.take_dirty() and acc.mode == "decay" and acc.span_us == 33_000
    assert (acc.render() == 128).all()
    with pytest.raises(ValueError, match="mode"):
        acc.configure(mode="sum")
    with pytest.raises(ValueError, match="span_us"):
        EventAccumulator(span_us=0)
    with pytest.raises(ValueError, match=r"\[2, H, W\]"):
        acc.push(np.zeros((3, 4, 4), dtype=np.uint8), 0, 1)


def test_lookup_table_is_dark_in_the_middle_and_coloured_at_the_ends():
    lut = diverging_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    assert lut[128].sum() < 100
    assert lut[255, 0] > lut[255, 2]  # ON: warm
    assert lut[0, 2] > lut[0, 0]  # OFF: cold
