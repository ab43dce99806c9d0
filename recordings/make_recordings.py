"""Regenerate the bundled recordings: ``python recordings/make_recordings.py``.

Renders labelled gesture sequences with :func:`evstream.sources.gestures.synthesize_recording`
(person model + DVS emulator, all seeded, so the output is the same on every run with the same
numpy/numba) and writes each as ``.aedat4`` (LZ4) with a DVS128-Gesture-style labels CSV.
Prints what README.md lists (event counts, classes with times).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from evstream.events import SensorSize  # noqa: E402
from evstream.io.aedat3 import write_labels  # noqa: E402
from evstream.io.aedat4 import write_aedat4  # noqa: E402
from evstream.labels import DVS_GESTURE_CLASSES  # noqa: E402
from evstream.sources.emulator import DvsEmulator  # noqa: E402
from evstream.sources.gestures import synthesize_recording  # noqa: E402

# name -> (sensor, classes in order, seed, lighting, emulator options or None for the calibrated
# DVS128-like sensor of synthesize_recording, gesture seconds)
RECORDINGS = {
    "gestures_128x128": (SensorSize(128, 128), list(range(11)), 128, "fluorescent_led", None, (2.5, 3.0)),
    # DVXplorer geometry: 14x the events per second of 128x128 at the same contrast, so three short
    # gestures, a higher contrast threshold (0.4, within the range of real sensors' bias settings)
    # and ZSTD keep it near 6 MB; noise as the calibrated sensor's.
    "gestures_640x480": (SensorSize(640, 480), [1, 6, 0], 640, "natural",
                         {"pos_threshold": 0.4, "neg_threshold": 0.4, "refractory_us": 500, "leak_rate_hz": 0.001,
                          "shot_noise_rate_hz": 0.003, "hot_pixels": 12, "hot_pixel_rate_hz": 3.0}, (1.5, 2.0)),
}


def main() -> int:
    for name, (size, classes, seed, lighting, options, gesture_s) in RECORDINGS.items():
        emulator = None if options is None else DvsEmulator(size, seed=seed, **options)
        events, labels = synthesize_recording(size, classes, seed=seed, fps=100.0, lighting=lighting,
                                              gesture_s=gesture_s, rest_s=(0.7, 1.0), emulator=emulator)
        path = HERE / f"{name}.aedat4"
        write_aedat4(path, events, size, compression="lz4" if size.width <= 128 else "zstd")
        write_labels(HERE / f"{name}_labels.csv", labels)
        duration = (int(events["t"][-1]) + 1) / 1e6
        print(f"{path.name}: {size}, {len(events):,} events, {duration:.2f} s, {path.stat().st_size:,} bytes")
        for label, t0, t1 in labels:
            print(f"  {t0 / 1e6:6.2f}-{t1 / 1e6:6.2f} s  {label + 1:2d} {DVS_GESTURE_CLASSES[label]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
