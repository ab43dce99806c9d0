"""The DVS128 Gesture classes (Amir et al., CVPR 2017), in dataset order.

Index = the 1-based ``class`` column of the dataset's ``_labels.csv`` minus one = tonic's label
(``neuromorphs/tonic`` ``tonic/datasets/dvsgesture.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DVS_GESTURE_CLASSES", "NO_GESTURE", "CLASSES_FILE", "read_class_names", "write_class_names"]

DVS_GESTURE_CLASSES: tuple[str, ...] = (
    "hand clapping",
    "right hand wave",
    "left hand wave",
    "right arm clockwise",
    "right arm counter-clockwise",
    "left arm clockwise",
    "left arm counter-clockwise",
    "arm roll",
    "air drums",
    "air guitar",
    "other gestures",
)

# Label of the "no gesture" decision state of online classification.
NO_GESTURE = -1

# A user's dataset folder (``python main.py collect``, the dashboard's Teach panel) names its own
# classes, one per line in file order (line k = CSV class k); a folder without one holds DVS128 Gesture.
CLASSES_FILE = "classes.txt"


def read_class_names(folder: str | os.PathLike) -> tuple[str, ...] | None:
    """The class names of ``folder/classes.txt`` (blank lines skipped), or None without that file.

    Raises:
        ValueError: the file lists no class or the same name twice (message names the file).
    """
    path = Path(folder) / CLASSES_FILE
    if not path.is_file():
        return None
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"{path}: lists no class")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a class is named twice")
    return tuple(names)


def write_class_names(folder: str | os.PathLike, names: tuple[str, ...] | list[str]) -> Path:
    """Write ``folder/classes.txt``, one name per line; returns its path (OSError as raised)."""
    path = Path(folder) / CLASSES_FILE
    path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return path
