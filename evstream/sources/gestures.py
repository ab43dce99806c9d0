"""Synthetic DVS128-Gesture-style recordings: a rendered person performing the 11 gestures.

A seeded renderer draws a person facing the camera (head, torso, two arms of upper arm, forearm
and hand, Lambert shading under one light) in front of a static room, at any sensor size, and
moves the arms through the 11 classes of the DVS128 Gesture dataset (Amir et al., CVPR 2017;
class order in :mod:`evstream.labels`). The frames go through :class:`DvsEmulator`, which turns
them into events.

Conventions (as in the dataset, where the subject faces the camera):

- "right"/"left" are the **subject's** sides. The subject's right arm therefore appears on the
  **left half of the image** (smaller x), the left arm on the right half.
- "clockwise"/"counter-clockwise" are also from the subject's point of view, consistent with
  left/right; seen from the camera the rotation is mirrored, so "right arm clockwise" draws a
  counter-clockwise circle in the image (y down). The IBM recordings do not document this
  convention; it is our assumption.

What tells the classes apart (kept deliberate, so a small network can learn it): which side of
the image moves (wave, arm circles), the direction of rotation (clockwise vs counter), both hands
at once near the midline (clapping: horizontal meeting; arm roll: hands circling each other;
air drums: alternating vertical strokes low in front; air guitar: one hand fast low strumming,
the other held out high at the side), and "other": slow aperiodic movements or reaches to random
points with one or both arms.

Per sample the renderer varies body size and position, speed, amplitude and phase of the motion,
the lighting (level, direction, ambient share: five presets named after the dataset's lighting
conditions) and the emulator's noise and thresholds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from evstream.errors import ConfigError
from evstream.events import SensorSize, concatenate
from evstream.io.aedat3 import LABEL_DTYPE
from evstream.labels import DVS_GESTURE_CLASSES
from evstream.sources.emulator import DvsEmulator

__all__ = [
    "LABEL_DTYPE",
    "LIGHTINGS",
    "Lighting",
    "GestureScene",
    "GestureSequence",
    "balanced_classes",
    "render_gesture",
    "synthesize_recording",
]

N_CLASSES = len(DVS_GESTURE_CLASSES)

# Body geometry in units of the image height at body scale 1; origin between the shoulders,
# x to the image's right, y down.
_SHOULDER_X = 0.15
_UPPER_ARM = 0.19
_FOREARM = 0.17
_HAND_R = 0.035


@dataclass(frozen=True)
class Lighting:
    """Scene illumination: ``level`` scales all intensities (1 = bright), ``ambient`` is the
    unshaded share, ``direction`` the unit 3-D light vector (x right, y down, z toward camera)."""

    level: float
    ambient: float
    direction: tuple[float, float, float]


# Named after the DVS128 Gesture lighting conditions; values are our choice, not measurements.
LIGHTINGS: dict[str, Lighting] = {
    "fluorescent": Lighting(0.80, 0.75, (0.0, -0.6, 0.8)),
    "fluorescent_led": Lighting(0.90, 0.70, (0.2, -0.5, 0.84)),
    "lab": Lighting(0.50, 0.55, (-0.4, -0.4, 0.82)),
    "led": Lighting(0.70, 0.60, (-0.3, -0.5, 0.81)),
    "natural": Lighting(1.00, 0.45, (0.65, -0.3, 0.7)),
}


# ---------------------------------------------------------------- rasterisation (numba) -----


@njit(cache=True, nogil=True)
def _shade(nx, ny, ambient, lx, ly, lz):
    nz = math.sqrt(max(0.0, 1.0 - nx * nx - ny * ny))
    return ambient + (1.0 - ambient) * max(0.0, nx * lx + ny * ly + nz * lz)


@njit(cache=True, nogil=True)
def _draw_capsule(img, ax, ay, bx, by, ra, rb, tone, ambient, lx, ly, lz):
    """Blend a shaded, anti-aliased capsule (radius ra at a to rb at b, pixels) onto ``img``."""
    height, width = img.shape
    r = max(ra, rb)
    x0 = max(int(min(ax, bx) - r - 1), 0)
    x1 = min(int(max(ax, bx) + r + 2), width)
    y0 = max(int(min(ay, by) - r - 1), 0)
    y1 = min(int(max(ay, by) + r + 2), height)
    dx = bx - ax
    dy = by - ay
    length2 = dx * dx + dy * dy + 1e-12
    for y in range(y0, y1):
        py = y + 0.5
        for x in range(x0, x1):
            px = x + 0.5
            h = min(max(((px - ax) * dx + (py - ay) * dy) / length2, 0.0), 1.0)
            cx = ax + h * dx
            cy = ay + h * dy
            rad = ra + (rb - ra) * h
            ex = px - cx
            ey = py - cy
            dist = math.sqrt(ex * ex + ey * ey)
            cover = min(max(rad - dist + 0.5, 0.0), 1.0)
            if cover > 0.0:
                value = tone * _shade(ex / (rad + 0.5), ey / (rad + 0.5), ambient, lx, ly, lz)
                img[y, x] = img[y, x] * (1.0 - cover) + value * cover


@njit(cache=True, nogil=True)
def _draw_ellipse(img, cx, cy, rx, ry, tone, ambient, lx, ly, lz):
    """Blend a shaded, anti-aliased ellipse (centre, radii in pixels) onto ``img``."""
    height, width = img.shape
    x0 = max(int(cx - rx - 1), 0)
    x1 = min(int(cx + rx + 2), width)
    y0 = max(int(cy - ry - 1), 0)
    y1 = min(int(cy + ry + 2), height)
    rmin = min(rx, ry)
    for y in range(y0, y1):
        ny = (y + 0.5 - cy) / ry
        for x in range(x0, x1):
            nx = (x + 0.5 - cx) / rx
            q = math.sqrt(nx * nx + ny * ny)
            cover = min(max((1.0 - q) * rmin + 0.5, 0.0), 1.0)
            if cover > 0.0:
                s = 1.0 / max(q, 1.0)
                value = tone * _shade(nx * s * 0.95, ny * s * 0.95, ambient, lx, ly, lz)
                img[y, x] = img[y, x] * (1.0 - cover) + value * cover


# ----------------------------------------------------------------------- kinematics ---------


def _ik(shoulder: np.ndarray, target: np.ndarray, outward: float) -> np.ndarray:
    """Elbow of a two-link arm reaching ``target``; the elbow bends toward outside and below."""
    v = target - shoulder
    d = float(np.hypot(*v))
    d = min(max(d, abs(_UPPER_ARM - _FOREARM) + 1e-3), _UPPER_ARM + _FOREARM - 1e-4)
    u = v / max(float(np.hypot(*v)), 1e-9)
    a = (_UPPER_ARM**2 + d * d - _FOREARM**2) / (2 * d)
    h = math.sqrt(max(_UPPER_ARM**2 - a * a, 0.0))
    perp = np.array([-u[1], u[0]])
    pole = shoulder + np.array([outward * 0.3, 0.25])
    e1 = shoulder + a * u + h * perp
    e2 = shoulder + a * u - h * perp
    return e1 if np.hypot(*(e1 - pole)) <= np.hypot(*(e2 - pole)) else e2


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


@dataclass
class _Segment:
    label: int
    t_start: int  # µs
    t_end: int  # µs, exclusive
    speed: float  # frequency multiplier
    amplitude: float
    phase: float
    # "other" only: slow sinusoid sums [2 arms, 2 axes, 3 components, (amplitude, Hz, phase)], or
    # reaching to random hand targets [2 arms, n, 2] held ~0.6-1 s each; which arms move.
    other: np.ndarray
    reach: np.ndarray | None
    moving_arms: tuple[bool, bool]


def _rest(m: float) -> tuple[np.ndarray, np.ndarray]:
    return np.array([m * 0.19, 0.18]), np.array([m * 0.19, 0.36])


def _gesture_hands(seg: _Segment, tau: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """``[(elbow, hand)]`` in body units, for the subject's right arm (image left, m = -1), then left.

    ``tau`` is seconds since the gesture started; elbows not set by the gesture come from IK.
    """
    c, f, amp, ph = seg.label, seg.speed, seg.amplitude, seg.phase
    two_pi = 2 * math.pi
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for arm, m in enumerate((-1.0, 1.0)):  # 0 = subject's right (image left), 1 = subject's left
        shoulder = np.array([m * _SHOULDER_X, 0.0])
        elbow = None
        if c == 0:  # hand clapping: hands meet at the midline and part, ~2 Hz
            opening = 0.5 + 0.5 * math.cos(two_pi * 2.0 * f * tau + ph)
            hand = np.array([m * (0.025 + 0.11 * amp * opening), 0.2])
        elif c in (1, 2) and arm == c - 1:  # hand wave: forearm up, swinging side to side
            elbow = shoulder + np.array([m * 0.14, 0.06])
            angle = 0.5 * amp * math.sin(two_pi * 2.5 * f * tau + ph) + m * 0.15
            hand = elbow + _FOREARM * np.array([math.sin(angle), -math.cos(angle)])
        elif c in (3, 4, 5, 6) and arm == (0 if c in (3, 4) else 1):
            # Arm circles beside the body. Subject's clockwise = counter-clockwise in the image
            # (angle decreasing with y pointing down).
            direction = -1.0 if c in (3, 5) else 1.0
            angle = ph + direction * two_pi * 1.2 * f * tau
            centre = shoulder + np.array([m * 0.14, 0.12])
            hand = centre + 0.16 * amp * np.array([math.cos(angle), math.sin(angle)])
        elif c == 7:  # arm roll: both hands circle each other in front of the chest
            angle = ph + two_pi * 1.8 * f * tau + (math.pi if arm else 0.0)
            hand = np.array([m * 0.035, 0.2]) + 0.065 * amp * np.array([math.cos(angle), math.sin(angle)])
        elif c == 8:  # air drums: alternating sharp vertical strokes, low in front
            stroke = abs(math.sin(math.pi * 2.5 * f * tau + ph + (math.pi / 2 if arm else 0.0)))
            hand = np.array([m * 0.12, 0.32 - 0.09 * amp * stroke])
        elif c == 9:  # air guitar: right hand strums fast low, left hand holds the neck out high
            if arm == 0:
                hand = np.array([-0.03, 0.36 + 0.05 * amp * math.sin(two_pi * 4.0 * f * tau + ph)])
            else:
                slide = 0.04 * math.sin(two_pi * 0.6 * f * tau)
                hand = np.array([0.34 + slide, -0.02 - 0.3 * slide])
        elif c == 10 and seg.moving_arms[arm] and seg.reach is not None:  # other: reach to random points
            targets = seg.reach[arm]
            k = min(int(tau * f / 0.8), len(targets) - 2)
            blend = _smoothstep((tau * f / 0.8 - k) * 2.0)  # move for the first half of each hold
            hand = targets[k] + blend * (targets[k + 1] - targets[k])
        elif c == 10 and seg.moving_arms[arm]:  # other: slow aperiodic sums of sinusoids
            p = seg.other[arm]
            offset = (p[..., 0] * np.sin(two_pi * p[..., 1] * tau + p[..., 2])).sum(axis=1)
            hand = np.array([m * 0.2, 0.22]) + offset
        else:
            out.append(_rest(m))
            continue
        out.append((elbow if elbow is not None else _ik(shoulder, hand, m), hand))
    return out


# ------------------------------------------------------------------------- the scene --------


class GestureScene:
    """A person in a room under one lighting; renders the pose of a gesture timeline at time t.

    Args:
        sensor_size: output geometry; the person is scaled by the image height and centred.
        rng: randomness for the person, the room and the lighting jitter.
        lighting: a :data:`LIGHTINGS` name or a :class:`Lighting`; ``None`` picks one at random.
    """

    def __init__(self, sensor_size: SensorSize, rng: np.random.Generator, lighting: str | Lighting | None = None):
        if isinstance(lighting, str):
            if lighting not in LIGHTINGS:
                raise ConfigError(f"lighting must be one of {', '.join(LIGHTINGS)}, got {lighting!r}")
            lighting = LIGHTINGS[lighting]
        elif lighting is None:
            lighting = LIGHTINGS[str(rng.choice(list(LIGHTINGS)))]
        self.sensor_size = sensor_size
        self.lighting = lighting
        w, h = sensor_size.width, sensor_size.height
        self.scale = h * rng.uniform(0.85, 1.12)
        self.origin = np.array([w / 2 + rng.uniform(-0.08, 0.08) * h, h * rng.uniform(0.34, 0.42)])
        self.skin = rng.uniform(0.55, 0.9)
        self.shirt = rng.choice([rng.uniform(0.12, 0.3), rng.uniform(0.6, 0.85)])
        self.level = lighting.level * rng.uniform(0.85, 1.15)
        light = np.array(lighting.direction) + rng.normal(0, 0.08, 3)
        self.light = light / np.linalg.norm(light)
        self.sway = (rng.uniform(0.002, 0.008), rng.uniform(0.15, 0.4), rng.uniform(0, 2 * math.pi))
        self.background = self._room(rng)

    def _room(self, rng: np.random.Generator) -> np.ndarray:
        w, h = self.sensor_size.width, self.sensor_size.height
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        wall = rng.uniform(0.3, 0.6)
        img = wall * (1 - 0.25 * yy / h) * (1 + 0.3 * self.light[0] * (xx / w - 0.5))
        for _ in range(rng.integers(1, 4)):  # a door, a poster, a shelf: static rectangles
            x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
            rw, rh = rng.uniform(0.1, 0.35) * w, rng.uniform(0.1, 0.5) * h
            inside = (xx >= x0) & (xx < x0 + rw) & (yy >= y0) & (yy < y0 + rh)
            img[inside] = rng.uniform(0.15, 0.85)
        return img.astype(np.float32)

    def render(self, parts: list[tuple[np.ndarray, np.ndarray]], t_s: float) -> np.ndarray:
        """Frame ``[height, width]`` float32 in [0, 1] with arms at ``parts`` = [(elbow, hand)] × 2."""
        img = self.background.copy()
        amp, freq, ph = self.sway
        sway = amp * math.sin(2 * math.pi * freq * t_s + ph)
        s, (ox, oy) = self.scale, self.origin
        ox = ox + sway * s
        amb = self.lighting.ambient
        lx, ly, lz = (float(v) for v in self.light)
        _draw_capsule(img, ox, oy + 0.05 * s, ox, oy + 0.75 * s, 0.17 * s, 0.19 * s, self.shirt, amb, lx, ly, lz)
        _draw_capsule(img, ox, oy - 0.09 * s, ox, oy, 0.04 * s, 0.045 * s, self.skin * 0.9, amb, lx, ly, lz)
        _draw_ellipse(img, ox, oy - 0.17 * s, 0.075 * s, 0.09 * s, self.skin, amb, lx, ly, lz)
        for m, (elbow, hand) in zip((-1.0, 1.0), parts, strict=True):
            sx, sy = ox + m * _SHOULDER_X * s, oy
            ex, ey = ox + elbow[0] * s, oy + elbow[1] * s
            hx, hy = ox + hand[0] * s, oy + hand[1] * s
            _draw_capsule(img, sx, sy, ex, ey, 0.045 * s, 0.037 * s, self.shirt * 1.1, amb, lx, ly, lz)
            _draw_capsule(img, ex, ey, hx, hy, 0.032 * s, 0.026 * s, self.skin * 0.95, amb, lx, ly, lz)
            _draw_ellipse(img, hx, hy, _HAND_R * s, _HAND_R * s, self.skin, amb, lx, ly, lz)
        img *= self.level
        np.minimum(img, 1.0, out=img)  # the sensor saturates at full scale
        return img


class GestureSequence:
    """A timeline of gestures with rest periods between them, rendered by one :class:`GestureScene`.

    Segments are appended with :meth:`add`; each draws its own speed, amplitude and phase.
    Each gesture blends in from the rest pose over its first ~0.35 s and back over its last, and
    the labelled interval covers the whole movement, as in the dataset's label files.

    Args:
        sensor_size: output geometry.
        seed: seeds the scene and every segment's variation.
        lighting: see :class:`GestureScene`.
        t0_us: where the timeline starts (µs).
    """

    def __init__(self, sensor_size: SensorSize, seed: int = 0, lighting: str | Lighting | None = None,
                 t0_us: int = 0):
        self.rng = np.random.default_rng(seed)
        self.scene = GestureScene(sensor_size, self.rng, lighting)
        self.segments: list[_Segment] = []
        self.t_end_us = int(t0_us)

    def add(self, label: int, duration_us: int, rest_before_us: int = 0) -> None:
        """Append a rest of ``rest_before_us`` then gesture ``label`` (0-based) lasting ``duration_us``."""
        if not 0 <= int(label) < N_CLASSES:
            raise ConfigError(f"gesture class must be 0..{N_CLASSES - 1}, got {label}")
        if int(duration_us) <= 0 or int(rest_before_us) < 0:
            raise ConfigError(f"gesture duration must be > 0 and rest >= 0, got {duration_us}, {rest_before_us} µs")
        rng = self.rng
        other = np.stack([rng.uniform(0.015, 0.06, (2, 2, 3)), rng.uniform(0.15, 0.8, (2, 2, 3)),
                          rng.uniform(0, 2 * math.pi, (2, 2, 3))], axis=-1)
        n_reach = int(duration_us * 1e-6 / 0.5) + 3
        # Reach targets: anywhere from the hip to above the head on the arm's own side. Drawn from a
        # spawned generator, which leaves the main stream (and the bundled recordings) unchanged.
        child = rng.spawn(1)[0]
        reach = np.stack([np.stack([m * child.uniform(0.05, 0.42, n_reach), child.uniform(-0.25, 0.38, n_reach)],
                                   axis=1) for m in (-1.0, 1.0)]) if child.random() < 0.5 else None
        arms = [(True, False), (False, True), (True, True)][rng.integers(0, 3)]
        start = self.t_end_us + int(rest_before_us)
        self.segments.append(_Segment(int(label), start, start + int(duration_us), rng.uniform(0.75, 1.3),
                                      rng.uniform(0.8, 1.2), rng.uniform(0, 2 * math.pi), other, reach, arms))
        self.t_end_us = start + int(duration_us)

    def labels(self) -> np.ndarray:
        """Labelled segments as :data:`LABEL_DTYPE` (0-based class, start, end µs)."""
        out = np.empty(len(self.segments), dtype=LABEL_DTYPE)
        for i, seg in enumerate(self.segments):
            out[i] = (seg.label, seg.t_start, seg.t_end)
        return out

    def label_at(self, t_us: int) -> int:
        """0-based class of the gesture under way at ``t_us``, or -1 (no gesture)."""
        for seg in reversed(self.segments):
            if seg.t_start <= t_us < seg.t_end:
                return seg.label
            if seg.t_end <= t_us:
                break
        return -1

    def _pose(self, t_us: int) -> list[tuple[np.ndarray, np.ndarray]]:
        rest = [_rest(-1.0), _rest(1.0)]
        for seg in reversed(self.segments):  # newest first: an endless timeline stays O(1) per frame
            if seg.t_end <= t_us:
                break
            if seg.t_start <= t_us:
                tau = (t_us - seg.t_start) * 1e-6
                length = (seg.t_end - seg.t_start) * 1e-6
                ramp = min(0.35, length / 3)
                weight = _smoothstep(tau / ramp) * _smoothstep((length - tau) / ramp)
                active = _gesture_hands(seg, tau)
                return [(r[0] + weight * (a[0] - r[0]), r[1] + weight * (a[1] - r[1]))
                        for r, a in zip(rest, active, strict=True)]
        return rest

    def frame(self, t_us: int) -> np.ndarray:
        """The rendered frame at ``t_us``: ``[height, width]`` float32 linear intensity in [0, 1]."""
        return self.scene.render(self._pose(int(t_us)), t_us * 1e-6)

    def frames(self, fps: float, t_start_us: int = 0, t_end_us: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(t_us, frame)`` at ``fps`` from ``t_start_us`` to ``t_end_us`` (default: timeline end)."""
        fps = _check_fps(fps)
        t_end_us = self.t_end_us if t_end_us is None else int(t_end_us)
        i = 0
        while (t := t_start_us + round(i * 1e6 / fps)) <= t_end_us:
            yield t, self.frame(t)
            i += 1


def _check_fps(fps: float) -> float:
    fps = float(fps)
    if not math.isfinite(fps) or fps <= 0 or fps > 1e5:
        raise ConfigError(f"fps must be in (0, 100000], got {fps}")
    return fps


def render_gesture(label: int, duration_us: int, sensor_size: SensorSize, fps: float,
                   rng: np.random.Generator | int, lighting: str | Lighting | None = None) -> np.ndarray:
    """Frames of one gesture from rest to rest, in a random scene.

    Args:
        label: 0-based class (:data:`~evstream.labels.DVS_GESTURE_CLASSES`).
        duration_us: length of the gesture, µs.
        sensor_size: output geometry.
        fps: frame rate, Hz; frame ``i`` is at ``i * 1e6 / fps`` µs.
        rng: generator or seed for the scene and the gesture's variation.
        lighting: see :class:`GestureScene`.

    Returns:
        ``[N, height, width]`` float32 linear intensity in [0, 1], N = duration · fps + 1.

    Raises:
        ConfigError: unknown class, duration <= 0, fps <= 0.
    """
    seed = rng if isinstance(rng, int) else int(rng.integers(0, 2**63))
    seq = GestureSequence(sensor_size, seed, lighting)
    seq.add(label, duration_us)
    return np.stack([frame for _, frame in seq.frames(fps)])


def balanced_classes(n: int, rng: np.random.Generator) -> list[int]:
    """``n`` class labels cycling through shuffled rounds of all 11 classes."""
    out: list[int] = []
    while len(out) < n:
        out.extend(int(c) for c in rng.permutation(N_CLASSES))
    return out[:n]


def synthesize_recording(
    sensor_size: SensorSize,
    gestures: Sequence[int] | int,
    seed: int = 0,
    fps: float = 100.0,
    *,
    lighting: str | Lighting | None = None,
    gesture_s: tuple[float, float] = (3.0, 5.0),
    rest_s: tuple[float, float] = (0.5, 1.2),
    emulator: DvsEmulator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render a labelled recording and convert it to events.

    Args:
        sensor_size: output geometry, e.g. ``SensorSize(128, 128)``.
        gestures: 0-based classes in order, or a count (balanced shuffled rounds of all classes).
        seed: seeds everything; the same arguments give the same events.
        fps: render rate, Hz (event times are interpolated between frames).
        lighting: see :class:`GestureScene`.
        gesture_s: range of gesture durations, s (uniform).
        rest_s: range of the rest before each gesture and after the last, s.
        emulator: the emulator; default: v2e-like parameters jittered per recording (thresholds
            0.2 ± 10 %, shot noise 0.05–0.3 Hz/pixel, more in dim light).

    Returns:
        ``(events, labels)``: ``EVENT_DTYPE`` time-sorted from t = 0 µs, and :data:`LABEL_DTYPE`.

    Raises:
        ConfigError: unknown class, bad durations or fps.
    """
    rng = np.random.default_rng(seed)
    classes = balanced_classes(int(gestures), rng) if isinstance(gestures, int | np.integer) else list(gestures)
    if not (0 < gesture_s[0] <= gesture_s[1]) or not (0 <= rest_s[0] <= rest_s[1]):
        raise ConfigError(f"gesture_s and rest_s must be ordered non-negative ranges, got {gesture_s}, {rest_s}")
    seq = GestureSequence(sensor_size, int(rng.integers(0, 2**63)), lighting)
    for label in classes:
        seq.add(label, int(rng.uniform(*gesture_s) * 1e6), int(rng.uniform(*rest_s) * 1e6))
    end = seq.t_end_us + int(rng.uniform(*rest_s) * 1e6)
    if emulator is None:
        threshold = rng.uniform(0.18, 0.22)
        emulator = DvsEmulator(sensor_size, pos_threshold=threshold, neg_threshold=threshold * rng.uniform(0.9, 1.1),
                               shot_noise_rate_hz=rng.uniform(0.05, 0.3) / seq.scene.level,
                               seed=int(rng.integers(0, 2**63)))
    parts = [emulator.push(frame, t) for t, frame in seq.frames(fps, 0, end)]
    return concatenate(parts), seq.labels()
