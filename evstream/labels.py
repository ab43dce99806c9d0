"""The DVS128 Gesture classes (Amir et al., CVPR 2017), in dataset order.

Index = the 1-based ``class`` column of the dataset's ``_labels.csv`` minus one = tonic's label
(``neuromorphs/tonic`` ``tonic/datasets/dvsgesture.py``).
"""

from __future__ import annotations

__all__ = ["DVS_GESTURE_CLASSES", "NO_GESTURE"]

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
