"""Gesture datasets read from miniature copies of the real on-disk layouts, and the augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evstream.binning import Geometry, bin_events, bin_events_by_count
from evstream.errors import ConfigError, EventFileError, ModelError
from evstream.events import SensorSize, concatenate
from evstream.io.aedat3 import write_aedat3
from evstream.labels import DVS_GESTURE_CLASSES
from models.data import MIRRORED_CLASSES, GestureAugment, IBMGestureDataset, StreamSequenceDataset, TonicGestureDataset
from tests.helpers import random_events

SENSOR = SensorSize(128, 128)
STEPS = 4
STEP_US = 20_000

# Per recording: (label, start µs, end µs) rows, as in a _labels.csv (0-based here).
TRAIN = {"user01_natural": [(0, 1_000_000, 1_200_000), (4, 1_300_000, 1_470_000), (7, 1_500_000, 1_530_000)]}
TEST = {"user02_led": [(2, 2_000_000, 2_250_000), (10, 2_300_000, 2_500_000)]}


def recording_events(segments, seed):
    """Events before, inside and between the segments (idle periods must not leak into clips)."""
    first, last = segments[0][1] - 100_000, segments[-1][2] + 100_000
    return random_events(30_000, SENSOR, first, last - first, seed=seed)


def write_ibm(root, *, labels_text=None):
    folder = root / "DvsGesture"
    folder.mkdir(parents=True)
    events = {}
    for seed, (split, recs) in enumerate((("train", TRAIN), ("test", TEST))):
        (folder / f"trials_to_{split}.txt").write_text("".join(f"{name}.aedat\n" for name in recs) + "\n")
        for name, segments in recs.items():
            ev = recording_events(segments, seed)
            write_aedat3(folder / f"{name}.aedat", ev)
            rows = ["class,startTime_usec,endTime_usec"] + [f"{lab + 1},{t0},{t1}" for lab, t0, t1 in segments]
            (folder / f"{name}_labels.csv").write_text("\r\n".join(rows) + "\r\n")
            events[name] = ev
    return folder, events


def clip_events(events, t0, t1):
    return events[(events["t"] >= t0) & (events["t"] < t1)]


@pytest.fixture()
def ibm(tmp_path):
    return write_ibm(tmp_path)


def test_count_mode_frames_equal_bin_events_by_count_on_each_labelled_segment(ibm, tmp_path):
    folder, events = ibm
    data = IBMGestureDataset(tmp_path, "train", steps=STEPS, mode="count")  # parent of DvsGesture
    segments = TRAIN["user01_natural"]
    assert len(data) == len(segments)
    assert data.labels == [lab for lab, _, _ in segments]
    for i, (label, t0, t1) in enumerate(segments):
        frames, got_label = data[i]
        expected = bin_events_by_count(clip_events(events["user01_natural"], t0, t1), STEPS, Geometry(SENSOR, (128, 128)))
        assert got_label == label
        assert frames.dtype == torch.float32 and tuple(frames.shape) == (STEPS, 2, 128, 128)
        np.testing.assert_array_equal(frames.numpy(), expected)
        assert frames.sum() == len(clip_events(events["user01_natural"], t0, t1))


def test_fixed_time_windows_tile_each_segment_and_equal_bin_events(ibm):
    folder, events = ibm
    data = IBMGestureDataset(folder, "test", steps=STEPS, step_us=STEP_US, out_size=(64, 64))
    geometry = Geometry(SENSOR, (64, 64))
    window_us = STEPS * STEP_US
    expected_items = []
    for label, t0, t1 in TEST["user02_led"]:
        for w in range((t1 - t0) // window_us):
            start = t0 + w * window_us
            expected_items.append((label, bin_events(clip_events(events["user02_led"], t0, t1), start, STEP_US, STEPS, geometry)))
    assert len(data) == len(expected_items) == 3 + 2
    for i, (label, frames) in enumerate(expected_items):
        got, got_label = data[i]
        assert got_label == label
        assert tuple(got.shape) == (STEPS, 2, 64, 64)
        np.testing.assert_array_equal(got.numpy(), frames)


def test_a_segment_shorter_than_a_window_gives_one_window_with_empty_tail(ibm):
    folder, events = ibm
    data = IBMGestureDataset(folder, "train", steps=STEPS, step_us=STEP_US, windows="fixed")
    label, t0, t1 = TRAIN["user01_natural"][2]  # 30 ms < 80 ms
    frames, got_label = data[len(data) - 1]
    assert got_label == label
    clip = clip_events(events["user01_natural"], t0, t1)
    np.testing.assert_array_equal(frames.numpy(), bin_events(clip, t0, STEP_US, STEPS, SENSOR))
    assert frames[2:].sum() == 0 and frames.sum() == len(clip)


def test_random_windows_are_step_aligned_windows_inside_the_segment(ibm):
    folder, events = ibm
    data = IBMGestureDataset(folder, "train", steps=STEPS, step_us=STEP_US)
    assert data.windows == "random" and len(data) == 3
    label, t0, t1 = TRAIN["user01_natural"][0]  # 200 ms: windows may start at steps 0..6
    clip = clip_events(events["user01_natural"], t0, t1)
    candidates = [bin_events(clip, t0 + k * STEP_US, STEP_US, STEPS, SENSOR) for k in range(7)]
    torch.manual_seed(0)
    starts = set()
    for _ in range(40):
        frames, got_label = data[0]
        assert got_label == label
        matches = [k for k, c in enumerate(candidates) if np.array_equal(frames.numpy(), c)]
        assert matches, "a random window must be one of the step-aligned windows of the segment"
        starts.add(matches[0])
    assert len(starts) > 3
    label, t0, t1 = TRAIN["user01_natural"][1]  # 170 ms = 8 whole steps and a partial one
    clip = clip_events(events["user01_natural"], t0, t1)
    candidates = [bin_events(clip, t0 + k * STEP_US, STEP_US, STEPS, SENSOR) for k in range(9)]
    seen = set()
    for _ in range(40):
        frames, _ = data[1]
        seen.update(k for k, c in enumerate(candidates) if np.array_equal(frames.numpy(), c))
    assert seen == {0, 1, 2, 3, 4}  # never a window reaching into the partial last step


def test_cache_hit_returns_equal_frames_without_reading_the_recording(ibm, tmp_path):
    folder, _ = ibm
    cache = tmp_path / "cache"
    for kwargs in ({"mode": "count"}, {"step_us": STEP_US, "windows": "fixed"}):
        first = IBMGestureDataset(folder, "train", steps=STEPS, cache_dir=cache, **kwargs)
        reference = [first[i][0] for i in range(len(first))]
        assert first.prepare() == 0  # everything was cached while reading
    tags = sorted(p.name for p in cache.iterdir())
    assert len(tags) == 2 and all(len(list((cache / t).glob("*.npz"))) == 3 for t in tags)
    # Damage the recording: a cache hit must not touch it.
    (folder / "user01_natural.aedat").write_bytes(b"#!AER-DAT3.1\r\nbroken")
    again = IBMGestureDataset(folder, "train", steps=STEPS, step_us=STEP_US, windows="fixed", cache_dir=cache)
    for i, frames in enumerate(reference):
        np.testing.assert_array_equal(again[i][0].numpy(), frames.numpy())
    # Other parameters read a different cache folder, so they need the (now damaged) recording.
    other = IBMGestureDataset(folder, "train", steps=STEPS + 1, mode="count", cache_dir=cache)
    with pytest.raises(EventFileError, match="user01_natural.aedat"):
        other[0]


def test_transform_receives_frames_and_label(ibm):
    folder, _ = ibm
    seen = []

    def transform(frames, label):
        seen.append((tuple(frames.shape), label))
        return frames * 0, label + 100

    data = IBMGestureDataset(folder, "train", steps=STEPS, mode="count", transform=transform)
    frames, label = data[1]
    assert seen == [((STEPS, 2, 128, 128), 4)] and label == 104 and frames.sum() == 0


def test_missing_trials_list_names_the_folder(tmp_path):
    (tmp_path / "DvsGesture").mkdir()
    with pytest.raises(ModelError, match="trials_to_train.txt"):
        IBMGestureDataset(tmp_path, "train")


def test_missing_recording_and_missing_labels_are_named(ibm):
    folder, _ = ibm
    (folder / "user02_led_labels.csv").unlink()
    with pytest.raises(ModelError, match=r"user02_led_labels\.csv: labels file of user02_led\.aedat is missing"):
        IBMGestureDataset(folder, "test")
    (folder / "user01_natural.aedat").unlink()
    with pytest.raises(ModelError, match=r"user01_natural\.aedat: recording listed in trials_to_train\.txt is missing"):
        IBMGestureDataset(folder, "train")


def test_label_out_of_range_names_file_and_line(ibm):
    folder, _ = ibm
    (folder / "user01_natural_labels.csv").write_text("class,startTime_usec,endTime_usec\n1,0,10\n12,20,30\n")
    with pytest.raises(EventFileError, match=r"user01_natural_labels\.csv: byte \d+: line 3: class 12"):
        IBMGestureDataset(folder, "train")


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [({"step_us": 0}, "step_us"), ({"mode": "time"}, "step_us"), ({"mode": "count", "step_us": 10}, "step_us"),
     ({"steps": 0, "mode": "count"}, "steps"), ({"step_us": 10, "windows": "all"}, "windows")],
)
def test_bad_options_name_the_option(ibm, kwargs, option):
    folder, _ = ibm
    with pytest.raises(ConfigError, match=option):
        IBMGestureDataset(folder, "train", **kwargs)


# -- tonic layout -----------------------------------------------------------------------------


def write_tonic_clip(path, events, dtype=np.float64):
    """tonic's clip file: unstructured (N, 4) x, y, p, t with t in ms."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = np.stack([events["x"], events["y"], events["p"], events["t"] / 1000.0], axis=1).astype(dtype)
    np.save(path, raw)


def test_tonic_layout_clips_equal_binning_of_their_events(tmp_path):
    clips = {}
    for split, folder in (("train", "ibmGestureTrain"), ("test", "ibmGestureTest")):
        for user in ("user01_fluorescent", "user03_lab"):
            for label in (0, 5, 10):
                # t on a whole-µs grid, written in ms as tonic stores it
                ev = random_events(2_000, SENSOR, t0=label * 1_000_000, duration_us=300_000, seed=label + len(clips))
                write_tonic_clip(tmp_path / "DVSGesture" / folder / user / f"{label}.npy", ev)
                clips[(split, user, label)] = ev
    data = TonicGestureDataset(tmp_path, "train", steps=STEPS, mode="count")
    assert len(data) == 6 and data.labels == [0, 5, 10, 0, 5, 10]
    for i, (user, label) in enumerate((u, lab) for u in ("user01_fluorescent", "user03_lab") for lab in (0, 5, 10)):
        frames, got = data[i]
        assert got == label
        np.testing.assert_array_equal(frames.numpy(), bin_events_by_count(clips[("train", user, label)], STEPS, SENSOR))
    test = TonicGestureDataset(tmp_path / "DVSGesture", "test", steps=STEPS, step_us=STEP_US)
    ev = clips[("test", "user01_fluorescent", 0)]
    t0 = int(ev["t"][0])
    assert len(test) == 6 * (300_000 // (STEPS * STEP_US))
    np.testing.assert_array_equal(test[1][0].numpy(), bin_events(ev, t0 + STEPS * STEP_US, STEP_US, STEPS, SENSOR))
    all_events = concatenate(clips[k] for k in sorted(clips) if k[0] == "test")
    assert sum(float(test.clip_frames(c).sum()) for c in range(len(test.clips))) == len(all_events)


def test_tonic_bad_file_name_and_bad_array_are_named(tmp_path):
    folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led"
    write_tonic_clip(folder / "11.npy", random_events(10, SENSOR))
    with pytest.raises(ModelError, match=r"11\.npy: file name must be a class index 0\.\.10"):
        TonicGestureDataset(tmp_path, "train")
    (folder / "11.npy").unlink()
    np.save(folder / "3.npy", np.zeros((5, 3)))
    with pytest.raises(EventFileError, match=r"3\.npy: expected an \(N, 4\)"):
        TonicGestureDataset(tmp_path, "train")


def test_tonic_missing_split_folder(tmp_path):
    with pytest.raises(ModelError, match="ibmGestureTest"):
        TonicGestureDataset(tmp_path, "test")


# -- augmentation -----------------------------------------------------------------------------


def test_mirrored_class_pairs_are_mirror_images_by_name():
    def mirror(name):
        swapped = name.replace("right", "@").replace("left", "right").replace("@", "left")
        if "counter-clockwise" in swapped:
            return swapped.replace("counter-clockwise", "clockwise")
        return swapped.replace("clockwise", "counter-clockwise")

    pairs = {frozenset(p) for p in MIRRORED_CLASSES}
    for a, name in enumerate(DVS_GESTURE_CLASSES):
        image = mirror(name)
        if image == name:
            assert all(a not in p for p in pairs)
        else:
            assert frozenset((a, DVS_GESTURE_CLASSES.index(image))) in pairs


def test_every_op_keeps_shape_dtype_and_is_the_same_for_all_frames():
    aug = GestureAugment(generator=torch.Generator().manual_seed(1))
    one = (torch.rand(1, 2, 32, 48) < 0.2).float()
    frames = one.repeat(5, 1, 1, 1)
    for op in GestureAugment.OPS:
        for _ in range(5):
            out = aug.apply(frames, op)
            assert out.shape == frames.shape and out.dtype == frames.dtype
            for t in range(1, 5):
                assert torch.equal(out[t], out[0]), op


def test_translation_and_rotation_move_pixels_exactly():
    aug = GestureAugment()
    frames = torch.zeros(3, 2, 16, 16)
    frames[:, 1, 4, 6] = 1.0
    moved = aug.apply(frames, "translate_x", 2.0)
    assert moved[:, 1, 4, 8].eq(1).all() and moved.sum() == 3
    moved = aug.apply(frames, "translate_y", -3.0)
    assert moved[:, 1, 1, 6].eq(1).all() and moved.sum() == 3
    square = torch.rand(2, 2, 16, 16)
    turned = aug.apply(square, "rotate", 90.0)
    assert any(torch.equal(turned, torch.rot90(square, k, dims=(-2, -1))) for k in (1, 3))
    assert torch.equal(aug.apply(square, "shear_x", 0.0), square)


@pytest.mark.parametrize(("op", "magnitude"), [("shear_x", 0.3), ("shear_x", -0.17), ("rotate", 30.0), ("rotate", -12.5),
                                                ("translate_x", 5.0), ("translate_y", -4.0)])
def test_affine_ops_sample_like_grid_sample_nearest(op, magnitude):
    frames = torch.rand(3, 2, 24, 40)
    out = GestureAugment().apply(frames, op, magnitude)
    h, w = frames.shape[-2:]
    if op == "shear_x":
        matrix = [[1.0, np.tan(magnitude), 0.0], [0.0, 1.0, 0.0]]
    elif op == "rotate":
        a = np.radians(magnitude)
        matrix = [[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0]]
    elif op == "translate_x":
        matrix = [[1.0, 0.0, -2.0 * magnitude / w], [0.0, 1.0, 0.0]]
    else:
        matrix = [[1.0, 0.0, 0.0], [0.0, 1.0, -2.0 * magnitude / h]]
    theta = torch.tensor(matrix, dtype=torch.float32).unsqueeze(0).expand(3, 2, 3)
    grid = torch.nn.functional.affine_grid(theta, list(frames.shape), align_corners=False)
    reference = torch.nn.functional.grid_sample(frames, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    assert (out != reference).float().mean() < 1e-3  # equal up to round-half ties at float precision


def test_cutout_erases_a_small_rectangle():
    aug = GestureAugment(generator=torch.Generator().manual_seed(3))
    frames = torch.ones(4, 2, 64, 64)
    out = aug.apply(frames, "cutout", 0.05)
    erased = (out[0, 0] == 0).float()
    assert 0.02 * 64 * 64 < erased.sum() < 0.09 * 64 * 64
    assert torch.equal(out[:, :1].expand_as(out), out)  # same rectangle in every frame and channel


def test_default_augment_never_flips_and_swap_flip_swaps_labels():
    frames = torch.zeros(2, 2, 16, 16)
    plain = GestureAugment(generator=torch.Generator().manual_seed(0))
    for label in range(11):
        for _ in range(5):
            out, got = plain(frames, label)
            assert got == label and out.shape == frames.shape
    flip = GestureAugment(flip_p=1.0, generator=torch.Generator().manual_seed(0))
    expected = {1: 2, 2: 1, 3: 6, 6: 3, 4: 5, 5: 4}
    for label in range(11):
        _, got = flip(frames, label)
        assert got == expected.get(label, label)


def test_swap_flip_mirrors_the_frames():
    flip = GestureAugment(flip_p=1.0, generator=torch.Generator().manual_seed(0))
    frames = torch.zeros(2, 2, 8, 8)
    frames[:, 0, 3, 1] = 1.0
    mirrored = 0
    for _ in range(30):
        out, _ = flip(frames, 0)
        mirrored += int(out[0, 0, 3, 6] == 1 and out.sum() == 2)
    assert mirrored > 0  # whenever the drawn op is identity the mirrored pixel sits at x = 6


def test_augment_options_are_checked():
    with pytest.raises(ConfigError, match="flip_p"):
        GestureAugment(flip_p=1.5)
    with pytest.raises(ConfigError, match="op"):
        GestureAugment().apply(torch.zeros(1, 2, 4, 4), "zoom")


def test_real_dvs_gesture_label_file_cuts_a_recording_into_its_twelve_clips(shared_data, tmp_path):
    labels = (shared_data / "dvsgesture_user01_natural_labels.csv").read_bytes()
    rows = [line.split(b",") for line in labels.splitlines()[1:] if line.strip()]
    segments = [(int(c) - 1, int(t0), int(t1)) for c, t0, t1 in rows]
    folder = tmp_path / "DvsGesture"
    folder.mkdir()
    (folder / "user01_natural_labels.csv").write_bytes(labels)
    first, last = min(s[1] for s in segments) - 1_000_000, max(s[2] for s in segments) + 1_000_000
    events = random_events(60_000, SENSOR, first, last - first, seed=11)
    write_aedat3(folder / "user01_natural.aedat", events)
    (folder / "trials_to_train.txt").write_text("user01_natural.aedat\n")
    data = IBMGestureDataset(folder, "train", steps=STEPS, mode="count")
    assert len(data) == len(segments) == 12
    assert data.labels == [s[0] for s in segments] and data.labels.count(7) == 2
    for i, (_, t0, t1) in enumerate(segments):
        np.testing.assert_array_equal(data[i][0].numpy(), bin_events_by_count(clip_events(events, t0, t1), STEPS, SENSOR))
    windows = IBMGestureDataset(folder, "train", steps=16, step_us=50_000, windows="fixed")
    assert len(windows) == sum(max(1, (t1 - t0) // 800_000) for _, t0, t1 in segments)


# -- stream sequences over whole recordings ---------------------------------------------------

STREAM_STEP = 50_000
# Segments chosen against the step midpoints 25, 75, 125, ... ms: the first starts exactly on the
# midpoint of step 2 (inside) and ends exactly on the midpoint of step 6 (outside, half-open).
STREAM_SEGMENTS = [(2, 125_000, 325_000), (5, 400_000, 500_000)]
STREAM_TARGETS = [-1, -1, 2, 2, 2, 2, -1, -1, 5, 5, -1, -1]  # 12 steps of the 600 ms recording


def write_stream_ibm(root, *, names=("user01_natural",), split="train", duration=600_000):
    folder = root / "DvsGesture"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"trials_to_{split}.txt").write_text("".join(f"{n}.aedat\n" for n in names))
    events = {}
    for seed, name in enumerate(names):
        ev = random_events(20_000, SENSOR, 0, duration, seed=seed)
        ev["t"][0] = 0  # the recording (step 0) starts at 0 µs
        write_aedat3(folder / f"{name}.aedat", ev)
        rows = ["class,startTime_usec,endTime_usec"] + [f"{lab + 1},{t0},{t1}" for lab, t0, t1 in STREAM_SEGMENTS]
        (folder / f"{name}_labels.csv").write_text("\r\n".join(rows) + "\r\n")
        events[name] = ev
    return folder, events


def test_step_targets_use_the_step_midpoint_and_half_open_segments():
    from evstream.io.aedat3 import LABEL_DTYPE
    from models.data import step_targets

    segments = np.array(STREAM_SEGMENTS, dtype=LABEL_DTYPE)
    np.testing.assert_array_equal(step_targets(segments, 0, STREAM_STEP, 12), STREAM_TARGETS)
    # odd step length: midpoint 12.5 µs of step 0 is inside [12, 13) only with exact half-µs arithmetic
    one = np.array([(3, 12, 13)], dtype=LABEL_DTYPE)
    np.testing.assert_array_equal(step_targets(one, 0, 25, 2), [3, -1])


def test_test_sequences_tile_the_recording_and_carry_both_labels_across_a_boundary(tmp_path):
    from models.data import StreamSequenceDataset

    folder, events = write_stream_ibm(tmp_path, split="test")
    data = StreamSequenceDataset(folder, "test", steps=4, step_us=STREAM_STEP, burn_in=2, out_size=(64, 64))
    assert data.t0 == [0] and data.targets[0].tolist() == STREAM_TARGETS
    # loss steps tile the recording: sequences start at 0, 4 (6 steps each, 12 in the recording)
    assert len(data) == 2 and [data.position(i) for i in range(2)] == [(0, 0), (0, 4)]
    geometry = Geometry(SENSOR, (64, 64))
    for i, first in enumerate((0, 4)):
        frames, targets = data[i]
        assert frames.dtype == torch.float32 and tuple(frames.shape) == (6, 2, 64, 64)
        assert targets.dtype == torch.int64 and targets.tolist() == STREAM_TARGETS[first:first + 6]
        expected = bin_events(events["user01_natural"], first * STREAM_STEP, STREAM_STEP, 6, geometry)
        np.testing.assert_array_equal(frames.numpy(), expected)
    # the second sequence crosses gesture 2 -> rest -> gesture 5
    assert data[1][1].tolist() == [2, 2, -1, -1, 5, 5]


def test_train_sequences_start_anywhere_and_len_is_samples_per_epoch(tmp_path):
    from models.data import StreamSequenceDataset

    folder, events = write_stream_ibm(tmp_path)
    data = StreamSequenceDataset(folder, "train", steps=3, step_us=STREAM_STEP, burn_in=1)
    assert len(data) == 12 // 3  # default: total steps / steps
    whole = bin_events(events["user01_natural"], 0, STREAM_STEP, 12, SENSOR)
    torch.manual_seed(0)
    starts = set()
    for _ in range(60):
        frames, targets = data[0]
        match = [k for k in range(12 - 4 + 1) if np.array_equal(frames.numpy(), whole[k:k + 4])]
        assert match and targets.tolist() == STREAM_TARGETS[match[0]:match[0] + 4]
        starts.add(match[0])
    assert starts == set(range(9))  # every valid start, never one running past the end
    assert len(StreamSequenceDataset(folder, "train", steps=3, step_us=STREAM_STEP, samples_per_epoch=50)) == 50


def test_stream_cache_is_read_without_the_recording_and_short_recordings_are_padded(tmp_path):
    from models.data import StreamSequenceDataset

    folder, _ = write_stream_ibm(tmp_path, split="test")
    cache = tmp_path / "cache"
    kwargs = {"steps": 4, "step_us": STREAM_STEP, "burn_in": 2, "cache_dir": cache}
    first = StreamSequenceDataset(folder, "test", **kwargs)
    reference = [first[i] for i in range(len(first))]
    assert first.prepare() == 0
    (tag,) = cache.iterdir()
    assert tag.name.startswith("ibm-stream-v") and len(list(tag.glob("*.npz"))) == 1
    (folder / "user01_natural.aedat").write_bytes(b"#!AER-DAT3.1\r\nbroken")
    again = StreamSequenceDataset(folder, "test", **kwargs)
    for i, (frames, targets) in enumerate(reference):
        assert torch.equal(again[i][0], frames) and torch.equal(again[i][1], targets)
    # a sequence longer than the recording: one sample, empty frames and -1 past the end
    long = StreamSequenceDataset(folder, "test", steps=10, step_us=STREAM_STEP, burn_in=5, cache_dir=cache)
    frames, targets = long[0]
    assert len(long) == 1 and frames.shape[0] == 15 and frames[12:].sum() == 0
    assert targets.tolist() == STREAM_TARGETS + [-1, -1, -1]


def test_stream_transform_and_swap_flip_map_per_step_targets_keeping_rests(tmp_path):
    from models.data import StreamSequenceDataset

    folder, _ = write_stream_ibm(tmp_path, split="test")
    flip = GestureAugment(flip_p=1.0, generator=torch.Generator().manual_seed(0))
    data = StreamSequenceDataset(folder, "test", steps=4, step_us=STREAM_STEP, burn_in=2, transform=flip)
    _, targets = data[1]
    assert targets.tolist() == [1, 1, -1, -1, 4, 4]  # mirrored pairs 1 <-> 2 and 4 <-> 5; rests stay -1
    assert flip.swap_labels(torch.tensor([-1, 1, 3, 0, 10])).tolist() == [-1, 2, 6, 0, 10]


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [({"steps": 0}, "steps"), ({"burn_in": -1}, "burn_in"), ({"step_us": 0}, "step_us"),
     ({"samples_per_epoch": 0}, "samples_per_epoch"), ({"fit": "stretch"}, "fit"), ({"steps": 2.5}, "steps"),
     ({"transform": 3}, "transform")],
)
def test_stream_bad_options_name_the_option(tmp_path, kwargs, option):
    from models.data import StreamSequenceDataset

    folder, _ = write_stream_ibm(tmp_path)
    with pytest.raises(ConfigError, match=f"^{option}: "):
        StreamSequenceDataset(folder, "train", **kwargs)
    with pytest.raises(ConfigError, match="^split: "):
        StreamSequenceDataset(folder, "val")


def test_ibm_layout_with_aedat4_recordings_reads_like_aedat3(tmp_path):
    """`synth --format aedat4` and the user's own recordings are .aedat4: same clips, same frames."""
    from evstream.io.aedat4 import write_aedat4

    folder3, events = write_ibm(tmp_path / "a3")
    folder4 = tmp_path / "a4" / "DvsGesture"
    folder4.mkdir(parents=True)
    for split, recs in (("train", TRAIN), ("test", TEST)):
        (folder4 / f"trials_to_{split}.txt").write_text("".join(f"{name}.aedat4\n" for name in recs))
        for name in recs:
            write_aedat4(folder4 / f"{name}.aedat4", events[name], SENSOR)
            (folder4 / f"{name}_labels.csv").write_bytes((folder3 / f"{name}_labels.csv").read_bytes())
    for split in ("train", "test"):
        a = IBMGestureDataset(folder3, split, steps=STEPS, step_us=STEP_US, out_size=(64, 64), windows="fixed")
        b = IBMGestureDataset(folder4, split, steps=STEPS, step_us=STEP_US, out_size=(64, 64), windows="fixed")
        assert len(a) == len(b) > 0 and a.labels == b.labels
        for i in range(len(a)):
            np.testing.assert_array_equal(a[i][0].numpy(), b[i][0].numpy())
        sa = StreamSequenceDataset(folder3, split, steps=STEPS, step_us=STEP_US, out_size=(64, 64))
        sb = StreamSequenceDataset(folder4, split, steps=STEPS, step_us=STEP_US, out_size=(64, 64))
        if split == "test":
            np.testing.assert_array_equal(sa[0][0].numpy(), sb[0][0].numpy())
            np.testing.assert_array_equal(sa[0][1].numpy(), sb[0][1].numpy())


def test_augment_gain_scales_every_count_of_a_sample_alike():
    frames = torch.rand(6, 2, 16, 16) * 3
    gains = []
    for seed in range(20):
        aug = GestureAugment(gain=0.5, generator=torch.Generator().manual_seed(seed))
        aug.OPS = ("identity",)  # isolate the gain
        out, label = aug(frames, 3)
        ratio = out / frames
        assert label == 3 and torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), rtol=1e-5)
        gains.append(float(ratio.flatten()[0]))
    assert min(gains) >= np.exp(-0.5) - 1e-6 and max(gains) <= np.exp(0.5) + 1e-6
    assert max(gains) / min(gains) > 1.5  # it does vary
    with pytest.raises(ConfigError, match="gain"):
        GestureAugment(gain=-1)


# -- a user's own camera: training frames are the frames the live classifier sees --------------


def test_a_users_own_camera_trains_on_the_frames_the_live_classifier_sees(tmp_path):
    """A 640x480 Teach recording: the stream and clip datasets bin it as the live Binner does and
    scale its counts as the streaming classifier does (input_scale_for), not as a DVS128."""
    from evstream.binning import Binner, density_scale
    from evstream.io.aedat4 import write_aedat4
    from models.streaming import input_scale_for

    sensor, out = SensorSize(640, 480), (32, 32)
    folder = tmp_path / "DvsGesture"
    folder.mkdir()
    ev = random_events(60_000, sensor, 0, 400_000, seed=7)
    ev["t"][0] = 0
    write_aedat4(folder / "run_01.aedat4", ev, sensor)
    (folder / "run_01_labels.csv").write_text("class,startTime_usec,endTime_usec\n3,100000,300000\n")
    (folder / "trials_to_train.txt").write_text("run_01.aedat4\n")

    binner = Binner(sensor, out, STEP_US, 4, fit="crop", t0=0)
    live = np.concatenate([w.frames for w in binner.push(ev) + binner.flush(400_000)])
    scale = input_scale_for({"sensor": [128, 128], "out_size": [out[1], out[0]]}, binner.geometry)
    assert scale == pytest.approx(4 * 4 / (15 * 15)) and scale == density_scale(Geometry(SENSOR, out), binner.geometry)

    stream = StreamSequenceDataset(tmp_path, "train", steps=4, step_us=STEP_US, out_size=out, cache_dir=tmp_path / "c")
    frames, targets = stream.sequence(0, 0)
    torch.testing.assert_close(frames, torch.from_numpy(live[:4] * np.float32(scale)))
    assert stream.input_scale(0) == pytest.approx(scale)
    again = StreamSequenceDataset(tmp_path, "train", steps=4, step_us=STEP_US, out_size=out, cache_dir=tmp_path / "c")
    torch.testing.assert_close(again.sequence(0, 5)[0], torch.from_numpy(live[5:9] * np.float32(scale)))  # from the cache

    for _ in range(2):  # binned, then from the cache with the recording gone
        clips = IBMGestureDataset(tmp_path, "train", steps=4, step_us=STEP_US, out_size=out, windows="fixed",
                                  cache_dir=tmp_path / "clips")
        first, label = clips[0]
        assert label == 2
        torch.testing.assert_close(first, torch.from_numpy(live[5:9] * np.float32(scale)))  # the segment starts at step 5
        (folder / "run_01.aedat4").write_bytes(b"#!AER-DAT4.0\r\nbroken")
