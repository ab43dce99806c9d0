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
    "sensor_emulator",
    "warm_up",
    "PART_BACKGROUND",
    "PART_TORSO",
    "PART_HEAD",
    "PART_RIGHT_ARM",
    "PART_LEFT_ARM",
]

N_CLASSES = len(DVS_GESTURE_CLASSES)

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
# Every primitive blends an anti-aliased, Lambert-shaded, textured shape onto ``img`` and writes
# its part id into ``ids`` where it covers more than half a pixel (later shapes are in front).
# Textures live in the shape's own coordinates (body units), so cloth and skin patterns move with
# the limb and a moving surface emits events, not only its outline.


@njit(cache=True, nogil=True)
def _hash(ix, iy, seed):
    h = (ix * 374761393 + iy * 668265263 + seed * 982451653) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFF) / 65535.0


@njit(cache=True, nogil=True)
def _value_noise(u, v, seed):
    """Smooth value noise in [0, 1] on a unit lattice."""
    iu = math.floor(u)
    iv = math.floor(v)
    fu = u - iu
    fv = v - iv
    fu = fu * fu * (3.0 - 2.0 * fu)
    fv = fv * fv * (3.0 - 2.0 * fv)
    iu = int(iu)
    iv = int(iv)
    a = _hash(iu, iv, seed)
    b = _hash(iu + 1, iv, seed)
    c = _hash(iu, iv + 1, seed)
    d = _hash(iu + 1, iv + 1, seed)
    return (a + (b - a) * fu) * (1.0 - fv) + (c + (d - c) * fu) * fv


@njit(cache=True, nogil=True)
def _texture(u, v, amp, freq, stripes, seed):
    """Multiplicative surface texture at body-unit coordinates (u, v): two octaves of value noise
    (weave, folds, skin) plus optional stripes across ``v`` (a striped shirt)."""
    if amp <= 0.0:
        return 1.0
    n = 0.65 * _value_noise(u * freq, v * freq, seed) + 0.35 * _value_noise(u * freq * 2.7, v * freq * 2.7, seed + 7)
    t = 2.0 * n - 1.0
    if stripes > 0.0:
        t = 0.5 * t + 0.5 * math.sin(v * stripes * 2.0 * math.pi)
    return 1.0 + amp * t


@njit(cache=True, nogil=True)
def _shade(nx, ny, ambient, lx, ly, lz):
    nz = math.sqrt(max(0.0, 1.0 - nx * nx - ny * ny))
    return ambient + (1.0 - ambient) * max(0.0, nx * lx + ny * ly + nz * lz)


@njit(cache=True, nogil=True)
def _draw_limb(img, ids, part, ax, ay, bx, by, ra, rb, tone, tex_amp, tex_freq, stripes, seed, ppu,
               ambient, lx, ly, lz):
    """A tapered capsule from a (radius ra) to b (radius rb), pixels; shaded as a cylinder."""
    height, width = img.shape
    r = max(ra, rb)
    x0 = max(int(min(ax, bx) - r - 1), 0)
    x1 = min(int(max(ax, bx) + r + 2), width)
    y0 = max(int(min(ay, by) - r - 1), 0)
    y1 = min(int(max(ay, by) + r + 2), height)
    dx = bx - ax
    dy = by - ay
    length2 = dx * dx + dy * dy + 1e-12
    length = math.sqrt(length2)
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
                u = h * length / ppu
                v = ((px - ax) * -dy + (py - ay) * dx) / length / ppu
                shade = _shade(ex / (rad + 0.5), ey / (rad + 0.5), ambient, lx, ly, lz)
                value = tone * shade * _texture(u, v, tex_amp, tex_freq, stripes, seed)
                img[y, x] = img[y, x] * (1.0 - cover) + value * cover
                if cover > 0.5:
                    ids[y, x] = part


@njit(cache=True, nogil=True)
def _draw_blob(img, ids, part, cx, cy, rx, ry, angle, tone, tex_amp, tex_freq, seed, ppu, ambient, lx, ly, lz):
    """A rotated ellipse (centre, radii along and across ``angle``, pixels), shaded as a dome."""
    height, width = img.shape
    r = max(rx, ry)
    x0 = max(int(cx - r - 1), 0)
    x1 = min(int(cx + r + 2), width)
    y0 = max(int(cy - r - 1), 0)
    y1 = min(int(cy + r + 2), height)
    ca = math.cos(angle)
    sa = math.sin(angle)
    rmin = min(rx, ry)
    for y in range(y0, y1):
        py = y + 0.5 - cy
        for x in range(x0, x1):
            px = x + 0.5 - cx
            a = (px * ca + py * sa) / rx
            b = (-px * sa + py * ca) / ry
            q = math.sqrt(a * a + b * b)
            cover = min(max((1.0 - q) * rmin + 0.5, 0.0), 1.0)
            if cover > 0.0:
                s = 0.95 / max(q, 1.0)
                nx = (a * ca - b * sa) * s
                ny = (a * sa + b * ca) * s
                value = tone * _shade(nx, ny, ambient, lx, ly, lz)
                value *= _texture(a * rx / ppu, b * ry / ppu, tex_amp, tex_freq, 0.0, seed)
                img[y, x] = img[y, x] * (1.0 - cover) + value * cover
                if cover > 0.5:
                    ids[y, x] = part


@njit(cache=True, nogil=True)
def _draw_torso(img, ids, part, cx, top, bottom, w_top, w_bottom, tone, tex_amp, tex_freq, stripes, seed, ppu,
                ambient, lx, ly, lz):
    """The trunk: rows from ``top`` to ``bottom`` (pixels) with a half width narrowing linearly
    from the shoulders to the waist; shaded as a vertical cylinder, texture fixed to the body."""
    height, width = img.shape
    y0 = max(int(top), 0)
    y1 = min(int(bottom) + 1, height)
    span = max(bottom - top, 1.0)
    for y in range(y0, y1):
        py = y + 0.5
        f = min(max((py - top) / span, 0.0), 1.0)
        half = w_top + (w_bottom - w_top) * f
        xa = max(int(cx - half - 1), 0)
        xb = min(int(cx + half + 2), width)
        vcover = min(max(py - top + 0.5, 0.0), 1.0)
        for x in range(xa, xb):
            px = x + 0.5
            cover = min(max(half - abs(px - cx) + 0.5, 0.0), 1.0) * vcover
            if cover > 0.0:
                nx = (px - cx) / (half + 0.5)
                value = tone * _shade(nx * 0.9, -0.15, ambient, lx, ly, lz)
                value *= _texture((py - top) / ppu, (px - cx) / ppu, tex_amp, tex_freq, stripes, seed)
                img[y, x] = img[y, x] * (1.0 - cover) + value * cover
                if cover > 0.5:
                    ids[y, x] = part


# ----------------------------------------------------------------------- kinematics ---------


def _ik(shoulder: np.ndarray, target: np.ndarray, outward: float, upper: float, fore: float) -> np.ndarray:
    """Elbow of a two-link arm reaching ``target``; the elbow bends toward outside and below."""
    v = target - shoulder
    d = float(np.hypot(*v))
    d = min(max(d, abs(upper - fore) + 1e-3), upper + fore - 1e-4)
    u = v / max(float(np.hypot(*v)), 1e-9)
    a = (upper**2 + d * d - fore**2) / (2 * d)
    h = math.sqrt(max(upper**2 - a * a, 0.0))
    perp = np.array([-u[1], u[0]])
    pole = shoulder + np.array([outward * 0.3, 0.25])
    e1 = shoulder + a * u + h * perp
    e2 = shoulder + a * u - h * perp
    return e1 if np.hypot(*(e1 - pole)) <= np.hypot(*(e2 - pole)) else e2


# Camera distance in body units (image heights at scale 1): the DVS128 stood ~2-3 m from a subject
# whose upper body fills the frame, so a hand 0.3 units in front of the shoulders is drawn ~10 %
# larger and further from the image centre (weak perspective).
_CAMERA_DISTANCE = 3.0


def _ik3(shoulder: np.ndarray, target: np.ndarray, pole: np.ndarray, upper: float, fore: float) -> np.ndarray:
    """Elbow (3-D: x right, y down, z toward the camera) of a two-link arm reaching ``target``.

    The elbow lies on the circle of points ``upper`` from the shoulder and ``fore`` from the
    wrist; of that circle we take the point nearest ``pole`` (where the elbow prefers to be).
    """
    v = target - shoulder
    d = float(np.linalg.norm(v))
    u = v / max(d, 1e-9)
    d = min(max(d, abs(upper - fore) + 1e-3), upper + fore - 1e-4)
    a = (upper**2 + d * d - fore**2) / (2 * d)
    h = math.sqrt(max(upper**2 - a * a, 0.0))
    w = pole - shoulder
    w = w - float(w @ u) * u
    n = float(np.linalg.norm(w))
    w = w / n if n > 1e-9 else np.array([0.0, 1.0, 0.0])
    return shoulder + a * u + h * w


def _project(p: np.ndarray) -> np.ndarray:
    """Image-plane position (body units) of a 3-D point, by weak perspective about the shoulders."""
    return p[:2] * (_CAMERA_DISTANCE / (_CAMERA_DISTANCE - float(p[2])))


def _arm3(body: _Body, m: float, wrist: np.ndarray, pole: np.ndarray, hand: np.ndarray) -> _Arm:
    """A pose from a 3-D wrist target: elbow by :func:`_ik3`, everything projected to the image.

    ``pole`` is relative to the shoulder; ``hand`` is the hand's 3-D direction, whose projected
    length foreshortens the fingers; the depth order is the forearm's mean distance forward.
    """
    shoulder = np.array([m * body.shoulder, 0.0, 0.0])
    elbow = _ik3(shoulder, wrist, shoulder + pole, body.upper, body.fore)
    hand = hand / max(float(np.linalg.norm(hand)), 1e-9)
    tip = _project(wrist + 0.1 * hand) - _project(wrist)
    fingers = max(float(np.hypot(*tip)) / 0.1, 0.3)
    return _project(elbow), _project(wrist), math.atan2(tip[1], tip[0]), fingers, 1.0 + float(elbow[2] + wrist[2])


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3 - 2 * x)


@dataclass(frozen=True)
class _Body:
    """One subject's build, in units of the image height at scale 1 (origin between the shoulders)."""

    shoulder: float  # half width at the shoulders
    upper: float  # upper-arm length
    fore: float  # forearm length (elbow to wrist)
    hand: float  # palm length
    head: float  # head half height
    arm_r: float  # upper-arm radius at the shoulder
    right_handed: bool


def _draw_body_build(rng: np.random.Generator) -> _Body:
    k = rng.uniform(0.92, 1.08)  # overall build
    return _Body(shoulder=0.17 * k * rng.uniform(0.93, 1.07), upper=0.20 * k, fore=0.18 * k,
                 hand=0.075 * k, head=0.095 * rng.uniform(0.93, 1.07), arm_r=0.05 * k * rng.uniform(0.9, 1.15),
                 right_handed=bool(rng.random() < 0.9))


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
    # Tempo wobble: the repetition rate drifts by ``wobble[0]`` (fraction) at ``wobble[1]`` Hz, as
    # a person's repetitions are never metronomic.
    wobble: tuple[float, float, float] = (0.0, 0.1, 0.0)


# A pose: per arm (subject's right = image left first) elbow, wrist, hand direction (radians in the
# image, 0 = +x, y down), finger length factor (foreshortening) and depth (drawn in depth order).
_Arm = tuple[np.ndarray, np.ndarray, float, float, float]


def _rest_arm(body: _Body, m: float) -> _Arm:
    shoulder = np.array([m * body.shoulder, 0.0])
    elbow = shoulder + np.array([m * 0.03, body.upper * 0.99])
    wrist = elbow + np.array([m * 0.02, body.fore * 0.99])
    return elbow, wrist, math.pi / 2, 1.0, 0.0


def _phase(seg: _Segment, tau: float, hz: float) -> float:
    """Cycles (radians) of a ``hz`` repetition after ``tau`` s, with the segment's tempo wobble."""
    amount, rate, ph = seg.wobble
    f = hz * seg.speed
    drift = amount / (2 * math.pi * rate) * (math.sin(2 * math.pi * rate * tau + ph) - math.sin(ph))
    return 2 * math.pi * f * (tau + drift) + seg.phase


def _arm_towards(body: _Body, m: float, wrist: np.ndarray, hand_angle: float | None = None,
                 fingers: float = 1.0, depth: float = 1.0) -> _Arm:
    shoulder = np.array([m * body.shoulder, 0.0])
    elbow = _ik(shoulder, wrist, m, body.upper, body.fore)
    if hand_angle is None:  # the hand continues the forearm
        d = wrist - elbow
        hand_angle = math.atan2(d[1], d[0])
    return elbow, wrist, hand_angle, fingers, depth


def _gesture_arms(seg: _Segment, tau: float, body: _Body) -> list[_Arm]:
    """Both arms' pose ``tau`` s into a gesture (body units; subject's right arm, image left, first)."""
    c, amp = seg.label, seg.amplitude
    sw = body.shoulder
    out: list[_Arm] = []
    for arm, m in enumerate((-1.0, 1.0)):  # 0 = subject's right (image left), 1 = subject's left
        shoulder = np.array([m * sw, 0.0])
        lead = (arm == 0) == body.right_handed  # the subject's dominant arm
        if c == 0:  # hand clapping: elbows by the sides, forearms forward, palms meeting in front of the
            # chest at the midline, ~2.5 Hz, the hands parting by about 20-25 cm; the forearms point
            # mostly at the camera, so they are foreshortened and the hands do most of the moving
            opening = 0.5 + 0.5 * math.cos(_phase(seg, tau, 2.5))
            wrist = np.array([m * (0.03 + 0.11 * amp * opening), 0.17 - 0.02 * opening, 0.24])
            out.append(_arm3(body, m, wrist, np.array([m * 0.25, 0.3, -0.25]), np.array([-m * 0.3, -0.6, 0.7])))
        elif c in (1, 2) and arm == c - 1:  # hand wave: forearm up beside the head, swinging ~2.2 Hz
            elbow = shoulder + np.array([m * 0.16, 0.02])
            angle = 0.55 * amp * math.sin(_phase(seg, tau, 2.2)) + m * 0.2
            wrist = elbow + body.fore * np.array([math.sin(angle), -math.cos(angle)])
            out.append((elbow, wrist, angle - math.pi / 2, 1.0, 1.0))
        elif c in (3, 4, 5, 6) and arm == (0 if c in (3, 4) else 1):
            # Big arm circles in the frontal plane, the arm almost straight (windmill), ~0.9 Hz.
            # Subject's clockwise = counter-clockwise in the image (angle decreasing, y down).
            direction = -1.0 if c in (3, 5) else 1.0
            angle = direction * _phase(seg, tau, 0.9)
            centre = shoulder + np.array([m * 0.10, 0.04])
            radius = (body.upper + body.fore) * 0.78 * amp
            wrist = centre + radius * np.array([math.cos(angle), math.sin(angle)])
            out.append(_arm_towards(body, m, wrist, None, 1.0, 1.0))
        elif c == 7:  # arm roll: forearms held across the chest, rolling around each other, ~1.6 Hz. The
            # hands circle in the body's sagittal plane (up, forward, down, back), so from the camera
            # the crossed forearms bob up and down, the upper one passing in front
            angle = _phase(seg, tau, 1.6) + (math.pi if arm else 0.0)
            wrist = np.array([-m * 0.01, 0.21 + 0.08 * amp * math.sin(angle), 0.14 + 0.08 * amp * math.cos(angle)])
            out.append(_arm3(body, m, wrist, np.array([m * 0.3, 0.3, -0.1]), np.array([-m * 1.0, 0.0, 0.2])))
        elif c == 8:  # air drums: elbows by the sides, alternating strokes of both fists in front of the
            # belly, ~2.4 Hz; the forearm pivots at the elbow, so the hand swings down and forward
            stroke = abs(math.sin(0.5 * _phase(seg, tau, 2.4) + (math.pi / 2 if arm else 0.0)))
            wrist = np.array([m * 0.16, 0.36 - 0.14 * amp * stroke, 0.2 + 0.04 * stroke])
            out.append(_arm3(body, m, wrist, np.array([m * 0.2, 0.3, -0.2]),
                             np.array([-m * 0.2, 0.5 - 0.9 * stroke, 0.8])))
        elif c == 9:  # air guitar: the dominant hand strums low and fast in front of the hip, the other
            # holds the neck out to the side and forward
            if lead:
                wrist = np.array([m * 0.07, 0.42 + 0.09 * amp * math.sin(_phase(seg, tau, 3.5)), 0.12])
                out.append(_arm3(body, m, wrist, np.array([m * 0.3, 0.3, -0.1]), np.array([m * 0.3, 0.9, 0.3])))
            else:
                slide = 0.04 * math.sin(_phase(seg, tau, 0.6))
                wrist = np.array([m * (0.36 + slide), 0.08 - 0.5 * slide, 0.15])
                hand = np.array([m * 0.8, -0.3 + 0.1 * math.sin(_phase(seg, tau, 4.0)), 0.3])
                out.append(_arm3(body, m, wrist, np.array([m * 0.3, 0.3, -0.1]), hand))
        elif c == 10 and seg.moving_arms[arm] and seg.reach is not None:  # other: reach to random points
            targets = seg.reach[arm]
            k = min(int(tau * seg.speed / 0.8), len(targets) - 2)
            blend = _smoothstep((tau * seg.speed / 0.8 - k) * 2.0)  # move for the first half of each hold
            wrist = targets[k] + blend * (targets[k + 1] - targets[k])
            out.append(_arm_towards(body, m, wrist))
        elif c == 10 and seg.moving_arms[arm]:  # other: slow aperiodic sums of sinusoids
            p = seg.other[arm]
            offset = (p[..., 0] * np.sin(2 * math.pi * p[..., 1] * tau + p[..., 2])).sum(axis=1)
            out.append(_arm_towards(body, m, np.array([m * 0.24, 0.24]) + 1.6 * offset))
        else:
            out.append(_rest_arm(body, m))
    return out


# ------------------------------------------------------------------------- the scene --------

# Part ids of GestureScene.render(..., parts=...) maps.
PART_BACKGROUND, PART_TORSO, PART_HEAD, PART_RIGHT_ARM, PART_LEFT_ARM = 0, 1, 2, 3, 4


class GestureScene:
    """A person standing before a static camera in a room under one lighting.

    The subject's upper body fills much of the frame, as in DVS128 Gesture (Amir et al., CVPR
    2017): head, neck, trunk narrowing to the waist, shoulders, upper arms, forearms, and hands
    with a palm, four fingers and a thumb, drawn in depth order. Clothing and skin are textured
    and shaded, so moving surfaces emit as well as moving edges. The body sways and breathes a
    little; the room is static and textured and only changes through light flicker and the odd
    camera tremor (a sub-pixel shift for a few tens of ms).

    Args:
        sensor_size: output geometry; the person is scaled by the image height and centred.
        rng: randomness for the person, the room and the lighting jitter.
        lighting: a :data:`LIGHTINGS` name or a :class:`Lighting`; ``None`` picks one at random.
    """

    def __init__(self, sensor_size: SensorSize, rng: np.random.Generator, lighting: str | Lighting | None = None):
        name = None
        if isinstance(lighting, str):
            if lighting not in LIGHTINGS:
                raise ConfigError(f"lighting must be one of {', '.join(LIGHTINGS)}, got {lighting!r}")
            name, lighting = lighting, LIGHTINGS[lighting]
        elif lighting is None:
            name = str(rng.choice(list(LIGHTINGS)))
            lighting = LIGHTINGS[name]
        self.sensor_size = sensor_size
        self.lighting = lighting
        w, h = sensor_size.width, sensor_size.height
        self.body = _draw_body_build(rng)
        self.scale = h * rng.uniform(0.85, 1.1)
        self.origin = np.array([w / 2 + rng.uniform(-0.06, 0.06) * h, h * rng.uniform(0.33, 0.43)])
        self.skin = rng.uniform(0.35, 0.85)
        self.hair = self.skin * rng.uniform(0.15, 0.6)
        shirt = rng.choice([rng.uniform(0.1, 0.3), rng.uniform(0.35, 0.6), rng.uniform(0.65, 0.9)])
        self.shirt = float(shirt)
        self.long_sleeves = bool(rng.random() < 0.5)
        self.stripes = float(rng.uniform(8, 20)) if rng.random() < 0.25 else 0.0
        self.cloth_texture = (float(rng.uniform(0.12, 0.3)), float(rng.uniform(12, 30)))  # amplitude, cycles/unit
        self.seed = int(rng.integers(0, 2**31))
        self.level = lighting.level * rng.uniform(0.85, 1.15)
        light = np.array(lighting.direction) + rng.normal(0, 0.08, 3)
        self.light = light / np.linalg.norm(light)
        self.sway = (rng.uniform(0.0008, 0.003), rng.uniform(0.1, 0.3), rng.uniform(0, 2 * math.pi))
        self.breath = (rng.uniform(0.002, 0.005), rng.uniform(0.2, 0.33), rng.uniform(0, 2 * math.pi))
        # Mains flicker as the pixels see it: fluorescent tubes modulate light at twice the mains
        # frequency; a DVS pixel's photoreceptor band and the render rate leave a small residual
        # beat. Amplitudes are our choice (a fraction of a percent), so flicker stays below the
        # contrast threshold almost everywhere, as on real recordings without lamps in view.
        flicker = {"fluorescent": 0.006, "fluorescent_led": 0.003, "led": 0.002, "lab": 0.004}
        self.flicker = (flicker.get(name or "", 0.002 if lighting.ambient > 0.5 else 0.0), rng.uniform(0.5, 3.0))
        # Camera tremor: about one small knock every 5-20 s (someone walks by, the tripod settles).
        self.tremor_every_s = rng.uniform(5.0, 20.0)
        self.tremor_seed = int(rng.integers(0, 2**31))
        self.background = self._room(rng)

    def _room(self, rng: np.random.Generator) -> np.ndarray:
        w, h = self.sensor_size.width, self.sensor_size.height
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        wall = rng.uniform(0.25, 0.6)
        img = wall * (1 - 0.25 * yy / h) * (1 + 0.3 * self.light[0] * (xx / w - 0.5))
        # Wall texture (paint, plaster), in units of the image height so it looks alike at every size.
        seed = int(rng.integers(0, 2**31))
        u, v = xx / h * 24.0, yy / h * 24.0
        img *= 1 + rng.uniform(0.03, 0.1) * (2 * _noise_field(u, v, seed) - 1)
        for _ in range(rng.integers(1, 5)):  # a door, a poster, a shelf, a whiteboard
            x0, y0 = rng.uniform(-0.1, 1.0) * w, rng.uniform(-0.1, 1.0) * h
            rw, rh = rng.uniform(0.08, 0.35) * w, rng.uniform(0.1, 0.5) * h
            inside = (xx >= x0) & (xx < x0 + rw) & (yy >= y0) & (yy < y0 + rh)
            tone = rng.uniform(0.1, 0.85)
            img[inside] = tone * (1 + 0.1 * (2 * _noise_field(u[inside] * 2, v[inside] * 2, seed + 1) - 1))
        return np.clip(img, 0.0, 1.0).astype(np.float32)

    def _tremor(self, t_s: float) -> tuple[float, float]:
        """Sub-pixel camera shift (x, y) at ``t_s``: zero except during rare short knocks."""
        k = int(t_s / self.tremor_every_s)
        r = np.random.default_rng([self.tremor_seed, k])
        start = k * self.tremor_every_s + r.uniform(0, self.tremor_every_s)
        length = r.uniform(0.03, 0.08)
        if not start <= t_s < start + length:
            return 0.0, 0.0
        envelope = math.sin(math.pi * (t_s - start) / length)
        return float(r.uniform(-0.6, 0.6) * envelope), float(r.uniform(-0.6, 0.6) * envelope)

    def render(self, arms: Sequence[_Arm], t_s: float, parts: np.ndarray | None = None) -> np.ndarray:
        """Frame ``[height, width]`` float32 in [0, 1] with the arms posed as ``arms``.

        ``parts``: an int8 ``[height, width]`` array receiving the part id of every pixel
        (``PART_*``: background, torso, head, the subject's right arm, left arm).
        """
        img = self.background.copy()
        ids = np.zeros(img.shape, np.int8) if parts is None else parts
        ids[...] = PART_BACKGROUND
        body = self.body
        amp, freq, ph = self.sway
        sway = amp * math.sin(2 * math.pi * freq * t_s + ph)
        bamp, bfreq, bph = self.breath
        breath = bamp * math.sin(2 * math.pi * bfreq * t_s + bph)
        s = self.scale
        # The body follows the arms a little: a person leans toward a raised or reaching arm and
        # the trunk recoils from fast strokes (ours: ~1-2 % of the reach, from the wrists' offset
        # from their rest place), so a gesture also moves head and shoulders, as people do.
        lean_x = sum(0.03 * (a[1][0] - m * body.shoulder) for a, m in zip(arms, (-1.0, 1.0), strict=True))
        lean_y = sum(0.02 * min(a[1][1] - body.upper - body.fore, 0.0) for a in arms)
        ox, oy = self.origin[0] + (sway + lean_x) * s, self.origin[1] - (breath * 0.5 - lean_y) * s
        amb = self.lighting.ambient
        lx, ly, lz = (float(v) for v in self.light)
        tex_amp, tex_freq = self.cloth_texture
        seed = self.seed
        # Trunk down past the bottom of the frame, shoulders rounded by the upper arms' caps.
        sw = body.shoulder * s * (1 + breath)
        _draw_torso(img, ids, PART_TORSO, ox, oy - 0.02 * s, oy + 1.0 * s, sw + 0.02 * s, sw * 0.82,
                    self.shirt, tex_amp, tex_freq, self.stripes, seed, s, amb, lx, ly, lz)
        # Neck and head (hair, then the face a little lower), the head nodding with the sway.
        head_x = ox + 0.4 * sway * s
        _draw_limb(img, ids, PART_HEAD, ox, oy, head_x, oy - 0.07 * s, 0.045 * s, 0.04 * s, self.skin * 0.85,
                   0.05, 20.0, 0.0, seed + 11, s, amb, lx, ly, lz)
        hy = oy - (0.05 + body.head) * s
        _draw_blob(img, ids, PART_HEAD, head_x, hy - 0.01 * s, body.head * 0.82 * s, body.head * 1.02 * s,
                   math.pi / 2, self.hair, 0.3, 40.0, seed + 13, s, amb, lx, ly, lz)
        _draw_blob(img, ids, PART_HEAD, head_x, hy + 0.012 * s, body.head * 0.9 * s, body.head * 0.74 * s,
                   math.pi / 2, self.skin, 0.08, 25.0, seed + 17, s, amb, lx, ly, lz)
        order = sorted(range(2), key=lambda i: arms[i][4])
        for i in order:
            m = -1.0 if i == 0 else 1.0
            self._draw_arm(img, ids, PART_RIGHT_ARM if i == 0 else PART_LEFT_ARM, m, arms[i], ox, oy, s, amb,
                           (lx, ly, lz))
        flicker_amp, flicker_hz = self.flicker
        gain = self.level * (1 + flicker_amp * math.sin(2 * math.pi * flicker_hz * t_s))
        img *= gain
        dx, dy = self._tremor(t_s)
        if dx or dy:
            img = _shift(img, dx, dy)
        np.minimum(img, 1.0, out=img)  # the sensor saturates at full scale
        return img

    def _draw_arm(self, img, ids, part, m, arm: _Arm, ox, oy, s, amb, light) -> None:
        elbow, wrist, hand_angle, fingers, _ = arm
        body = self.body
        amb = amb * 0.6  # a limb in front of the trunk is shaded and shadowed more than the flat trunk
        lx, ly, lz = light
        tex_amp, tex_freq = self.cloth_texture
        seed = self.seed + (31 if m > 0 else 37)
        # The shoulder rises and comes in as the arm goes above it (shoulder girdle elevation).
        lift = min(max(-wrist[1] / (body.upper + body.fore), 0.0), 1.0)
        sx, sy = ox + m * (body.shoulder - 0.02 * lift) * s, oy + (0.01 - 0.05 * lift) * s
        ex, ey = ox + elbow[0] * s, oy + elbow[1] * s
        wx, wy = ox + wrist[0] * s, oy + wrist[1] * s
        r0, r1, r2 = body.arm_r * s, body.arm_r * 0.82 * s, body.arm_r * 0.6 * s
        _draw_limb(img, ids, part, sx, sy, ex, ey, r0, r1, self.shirt * 1.05, tex_amp, tex_freq, self.stripes,
                   seed, s, amb, lx, ly, lz)
        fore_tone = self.shirt * 1.05 if self.long_sleeves else self.skin * 0.95
        fore_tex = tex_amp if self.long_sleeves else 0.08
        _draw_limb(img, ids, part, ex, ey, wx, wy, r1 * 0.95, r2, fore_tone, fore_tex, tex_freq, 0.0, seed + 1, s,
                   amb, lx, ly, lz)
        # The hand: palm, four fingers fanned around its direction, thumb to the side.
        ca, sa = math.cos(hand_angle), math.sin(hand_angle)
        palm = body.hand * 0.55 * s
        px_, py_ = wx + ca * palm * 0.8, wy + sa * palm * 0.8
        _draw_blob(img, ids, part, px_, py_, palm * 0.75, palm * 0.62, hand_angle, self.skin, 0.06, 30.0, seed + 2,
                   s, amb, lx, ly, lz)
        finger_len = body.hand * 0.5 * s * fingers
        finger_r = max(body.hand * 0.075 * s, 0.45)
        for k in range(4):
            spread = (k - 1.5) * 0.16
            a = hand_angle + spread
            bx, by = px_ + math.cos(a) * palm * 0.55 - sa * (k - 1.5) * palm * 0.28, \
                py_ + math.sin(a) * palm * 0.55 + ca * (k - 1.5) * palm * 0.28
            length = finger_len * (1.0 - 0.15 * abs(k - 1.2))
            _draw_limb(img, ids, part, bx, by, bx + math.cos(a) * length, by + math.sin(a) * length, finger_r,
                       finger_r * 0.85, self.skin * 0.97, 0.0, 1.0, 0.0, seed, s, amb, lx, ly, lz)
        ta = hand_angle - m * 1.0
        tx, ty = px_ - m * sa * palm * 0.5, py_ + m * ca * palm * 0.5
        _draw_limb(img, ids, part, tx, ty, tx + math.cos(ta) * finger_len * 0.75, ty + math.sin(ta) * finger_len * 0.75,
                   finger_r * 1.1, finger_r * 0.9, self.skin * 0.95, 0.0, 1.0, 0.0, seed, s, amb, lx, ly, lz)


def _noise_field(u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """Vectorised two-octave value noise (the static room's texture)."""
    out = np.empty(u.shape, np.float32)
    _noise_fill(u.ravel().astype(np.float64), v.ravel().astype(np.float64), seed, out.reshape(-1))
    return out


@njit(cache=True, nogil=True)
def _noise_fill(u, v, seed, out):
    for i in range(len(u)):
        out[i] = 0.65 * _value_noise(u[i], v[i], seed) + 0.35 * _value_noise(u[i] * 2.7, v[i] * 2.7, seed + 7)


def _shift(img: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``img`` moved by a sub-pixel (dx, dy) with bilinear interpolation (edges repeat)."""
    out = img
    if dx:
        nb = np.concatenate([img[:, :1], img[:, :-1]], axis=1) if dx > 0 else np.concatenate([img[:, 1:], img[:, -1:]], axis=1)
        out = (1 - abs(dx)) * out + abs(dx) * nb
    if dy:
        nb = np.concatenate([out[:1], out[:-1]], axis=0) if dy > 0 else np.concatenate([out[1:], out[-1:]], axis=0)
        out = (1 - abs(dy)) * out + abs(dy) * nb
    return out.astype(np.float32)


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
        wobble = (float(child.uniform(0.02, 0.1)), float(child.uniform(0.1, 0.4)), float(child.uniform(0, 2 * math.pi)))
        self.segments.append(_Segment(int(label), start, start + int(duration_us), rng.uniform(0.75, 1.3),
                                      rng.uniform(0.8, 1.2), rng.uniform(0, 2 * math.pi), other, reach, arms, wobble))
        self.t_end_us = start + int(duration_us)

    def add_at(self, label: int, t_start_us: int, t_end_us: int) -> None:
        """Append gesture ``label`` (0-based) performed from ``t_start_us`` to ``t_end_us`` (µs).

        The same as :meth:`add` with the rest before it measured from the timeline's end, so a
        caller with a schedule (``python main.py collect --synthetic``) places each gesture where
        its prompt says. Raises ConfigError for a start before the timeline's end or an empty span.
        """
        if int(t_start_us) < self.t_end_us:
            raise ConfigError(f"gesture at {t_start_us} µs starts before the previous one ends ({self.t_end_us} µs)")
        self.add(label, int(t_end_us) - int(t_start_us), int(t_start_us) - self.t_end_us)

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

    def _pose(self, t_us: int) -> list[_Arm]:
        body = self.scene.body
        rest = [_rest_arm(body, -1.0), _rest_arm(body, 1.0)]
        for seg in reversed(self.segments):  # newest first: an endless timeline stays O(1) per frame
            if seg.t_end <= t_us:
                break
            if seg.t_start <= t_us:
                tau = (t_us - seg.t_start) * 1e-6
                length = (seg.t_end - seg.t_start) * 1e-6
                ramp = min(0.35, length / 3)
                w = _smoothstep(tau / ramp) * _smoothstep((length - tau) / ramp)
                active = _gesture_arms(seg, tau, body)
                return [(r[0] + w * (a[0] - r[0]), r[1] + w * (a[1] - r[1]), _blend_angle(r[2], a[2], w),
                         r[3] + w * (a[3] - r[3]), a[4]) for r, a in zip(rest, active, strict=True)]
        return rest

    def frame(self, t_us: int, parts: np.ndarray | None = None) -> np.ndarray:
        """The rendered frame at ``t_us``: ``[height, width]`` float32 linear intensity in [0, 1].

        ``parts``: optional int8 ``[height, width]`` array that receives each pixel's body part
        (``PART_*`` ids; see :meth:`GestureScene.render`).
        """
        return self.scene.render(self._pose(int(t_us)), t_us * 1e-6, parts)

    def frames(self, fps: float, t_start_us: int = 0, t_end_us: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(t_us, frame)`` at ``fps`` from ``t_start_us`` to ``t_end_us`` (default: timeline end)."""
        fps = _check_fps(fps)
        t_end_us = self.t_end_us if t_end_us is None else int(t_end_us)
        i = 0
        while (t := t_start_us + round(i * 1e6 / fps)) <= t_end_us:
            yield t, self.frame(t)
            i += 1


def _blend_angle(a: float, b: float, w: float) -> float:
    d = (b - a + math.pi) % (2 * math.pi) - math.pi
    return a + w * d


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


def warm_up() -> None:
    """Compile the renderer's and the emulator's numba kernels now (about 6 s on a fresh install,
    cached on disk after that), so a live synthetic source does not stall its first frames."""
    size = SensorSize(16, 16)
    seq = GestureSequence(size, seed=0, lighting="lab")
    seq.add(0, 100_000)
    emulator = DvsEmulator(size, seed=0)
    for t in (0, 10_000):
        emulator.push(seq.frame(t), t)


def sensor_emulator(sensor_size: SensorSize, rng: np.random.Generator, level: float = 1.0) -> DvsEmulator:
    """A :class:`DvsEmulator` with a real DVS128's noise, drawn per recording.

    Calibrated to a real DVS128-family chip (``bench/realism.py``; two eDVS recordings measured in
    Dec 2026: background ≈ 0.006 Hz per pixel in the quietest 10 % of the time, p99 0.4 Hz, no
    pixel above 10 Hz, ON fraction 0.33-0.51): shot noise 0.0015-0.004 Hz per pixel (more in dim
    light), leak 0.0003-0.0015 Hz, about one hot pixel per 16 k pixels at 1-8 Hz, contrast
    thresholds 0.17-0.25 with ON/OFF asymmetry (OFF thresholds 0.9-1.2x ON) and 3 % per-pixel
    mismatch, refractory 0.2-1 ms.
    """
    threshold = rng.uniform(0.17, 0.25)
    area = sensor_size.width * sensor_size.height
    return DvsEmulator(sensor_size, pos_threshold=threshold, neg_threshold=threshold * rng.uniform(0.9, 1.2),
                       threshold_sigma=0.03, refractory_us=int(rng.uniform(200, 1000)),
                       leak_rate_hz=rng.uniform(0.0003, 0.0015),
                       shot_noise_rate_hz=rng.uniform(0.0015, 0.004) / min(max(level, 0.3), 1.5),
                       hot_pixels=int(rng.poisson(area / 16384)), hot_pixel_rate_hz=rng.uniform(1.0, 8.0),
                       seed=int(rng.integers(0, 2**63)))


def synthesize_recording(
    sensor_size: SensorSize,
    gestures: Sequence[int] | int,
    seed: int = 0,
    fps: float = 100.0,
    *,
    lighting: str | Lighting | None = None,
    gesture_s: tuple[float, float] = (4.0, 8.0),
    rest_s: tuple[float, float] = (0.5, 1.5),
    emulator: DvsEmulator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render a labelled recording and convert it to events.

    Args:
        sensor_size: output geometry, e.g. ``SensorSize(128, 128)``.
        gestures: 0-based classes in order, or a count (balanced shuffled rounds of all classes).
        seed: seeds everything; the same arguments give the same events.
        fps: render rate, Hz (event times are interpolated between frames).
        lighting: see :class:`GestureScene`.
        gesture_s: range of gesture durations, s (uniform); the default 4-8 s is the real
            protocol's (each gesture repeated continuously for about 6 s); shorter is allowed.
        rest_s: range of the rest before each gesture and after the last, s.
        emulator: the emulator; default :func:`sensor_emulator` (a real DVS128's noise).

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
        emulator = sensor_emulator(sensor_size, rng, seq.scene.level)
    parts = [emulator.push(frame, t) for t, frame in seq.frames(fps, 0, end)]
    return concatenate(parts), seq.labels()
