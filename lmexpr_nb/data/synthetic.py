"""The embedded default dataset: procedural faces written in the real CK+ layout.

Why it exists: so that the whole kit (CK+ reader, dlib preprocessing, training,
every notebook) runs anywhere in minutes without a licensed dataset. It is not a
substitute for real faces; the tree carries a `SYNTHETIC.md` marker and every
output made from it is labelled synthetic.

How a frame is made:
1. an identity (`random_identity`) = a neutral 68-point shape in face units
   (`neutral_shape`) plus appearance (skin, hair, eyes, brows, glasses, beard);
2. an expression moves the landmarks (`expression_displacements`), scaled by an
   eased intensity from 0 (first frame) to 1 (last frame);
3. a small head pose (roll, yaw, pitch, translation, scale) maps face units to
   pixels (`pose_points`);
4. the face is rendered FROM those final landmarks (`render_frame`): the jaw is
   the face contour, 36-47 are the eye openings, 48-67 the lips, 17-26 the top
   edge of the brows, 27-35 the nose, so the landmark file is exact.

Face units: those of `MEAN_SHAPE`, a 68-point mean shape in the iBUG point scheme
that we construct from a few face proportions (`FaceProportions`, `mean_shape`),
centred on its box, 0.9 units wide (jaw 0 to jaw 16); x to the right, y down, like
image coordinates. Landmark files use 0-based pixel coordinates with pixel centres on
integers (dlib's convention).

The layout is CK+'s: `cohn-kanade-images/S001/003/S001_003_00000001.png`,
`Emotion/S001/003/S001_003_00000010_emotion.txt` (last frame only, one float
1..7), `Landmarks/S001/003/S001_003_00000001_landmarks.txt` (every frame, 68 lines).
"""
from __future__ import annotations

import functools
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from ..io import write_text
from .records import CLASSES

GENERATOR_VERSION = "1.1"      # 1.1: our own constructed mean shape
MARKER = "SYNTHETIC.md"
EXPRESSIONS: tuple[str, ...] = CLASSES[1:]      # CK+ emotion codes 1..7, in code order

# ---------------------------------------------------------------------------------------
# The 68-point mean shape (iBUG 300-W point scheme): our own construction
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FaceProportions:
    """Readable proportions of an average adult face, in face units, from which the
    mean shape is drawn. Origin on the midline at eye level (the line through the eye
    corners), x to the right, y down.

    They follow the classical drawing canons, not any landmark data set: the eye centres
    are 0.4 of the face width apart and an eye is a little narrower than the gap between
    the eyes; facial thirds put the base of the nose (33) midway between the brows and
    the chin, and the lip line a third of the way from there down to the chin; the nose
    tip (30) sits a little above the nose base."""
    face_width: float = 0.90          # jaw 0 to jaw 16 (temple to temple)
    chin: float = 0.74                # chin (8) below the eye line
    jaw_top: float = 0.0              # jaw ends (0, 16) below the eye line
    jaw_squareness: float = 2.1       # superellipse exponent: 2 elliptic, larger squarer
    eye_spacing: float = 0.40         # eye centre to eye centre, fraction of face_width
    eye_width: float = 0.15           # corner to corner
    eye_upper: float = 0.034          # upper lid's rise above the corner-to-corner line
    eye_lower: float = 0.022          # lower lid's drop below it
    canthal_tilt: float = 0.008       # outer eye corners this much higher than the inner
    brow_height: float = 0.085        # brows' inner ends above the eye line
    brow_arch: float = 0.045          # brow peak above the inner end
    brow_peak: float = 0.55           # where the peak is: 0 inner end, 1 outer end
    brow_tail_drop: float = 0.015     # outer ends this much lower than the inner ones
    brow_inner: float = 0.075         # inner ends from the midline
    brow_outer: float = 0.35          # outer ends from the midline
    nose_top: float = 0.0             # top of the bridge (27) below the eye line
    nose_tip_above_base: float = 0.075  # nose tip (30) above the nose base (33)
    nostril_half_width: float = 0.085   # 31 and 35 from the midline
    nostril_rise: float = 0.03        # 31 and 35 above 33 (a shallow arc)
    mouth_width: float = 0.35         # corner 48 to corner 54
    upper_lip: float = 0.048          # upper lip height at its peaks (50, 52)
    cupid_dip: float = 0.008          # the upper lip's centre (51) this much below the peaks
    lower_lip: float = 0.075          # lower lip height at its centre (57)
    lip_gap: float = 0.008            # inner lips slightly apart (a relaxed mouth)


def mean_shape(p: FaceProportions = FaceProportions()) -> np.ndarray:
    """The 68-point mean shape (68, 2) drawn from `p`, centred on its bounding box.

    Our own procedural construction (no landmark data from elsewhere): each feature is a
    simple curve placed by the proportions in `p`:
    - jaw 0-16: the lower half of a superellipse (a U with straight-ish sides and a broad
      chin) from the subject's right temple (image left) down round the chin to the left
      temple, the 17 points equally spaced along it;
    - brows 17-21 / 22-26: arches, from outer to inner end on the image left and inner to
      outer on the right;
    - bridge 27-30: a vertical line from eye level to the nose tip; nostril base 31-35: a
      shallow arc (parabola) through the nose base 33;
    - eyes 36-41 / 42-47: almonds (corner, two upper-lid points, corner, two lower-lid
      points, the lid points over the thirds of the corner-to-corner line);
    - outer lips 48-59: corners on the lip line, a bowed upper lip (peaks 50/52 over a
      slight dip at 51) and a fuller, parabolic lower lip; inner lips 60-67: a thin closed
      curve along the lip line with its corners just inside 48/54.
    """
    s = np.zeros((68, 2))
    # brows first: their mean height anchors the facial thirds
    u = np.linspace(0, 1, 5)                                  # 0 inner end, 1 outer end
    arch = np.sin(np.pi * u ** (np.log(0.5) / np.log(p.brow_peak)))   # 1 at u = brow_peak
    bx = p.brow_inner + (p.brow_outer - p.brow_inner) * u
    by = -(p.brow_height + p.brow_arch * arch) + p.brow_tail_drop * u
    s[R_BROW] = np.stack([-bx, by], 1)[::-1]
    s[L_BROW] = np.stack([bx, by], 1)
    nose_base = (by.mean() + p.chin) / 2                      # facial thirds
    lip_line = nose_base + (p.chin - nose_base) / 3

    # jaw: a superellipse |x/a|^n + |(y - top)/b|^n = 1, lower half, resampled by arc length
    t = np.linspace(0, np.pi, 2001)
    e = 2 / p.jaw_squareness
    curve = np.stack([-p.face_width / 2 * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** e,
                      p.jaw_top + (p.chin - p.jaw_top) * np.abs(np.sin(t)) ** e], 1)
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))]
    at = np.linspace(0, arc[-1], 17)
    s[JAW] = np.stack([np.interp(at, arc, curve[:, 0]), np.interp(at, arc, curve[:, 1])], 1)

    # nose
    s[BRIDGE] = np.stack([np.zeros(4), np.linspace(p.nose_top, nose_base - p.nose_tip_above_base, 4)], 1)
    nx = np.linspace(-p.nostril_half_width, p.nostril_half_width, 5)
    s[NOSTRILS] = np.stack([nx, nose_base - p.nostril_rise * (nx / p.nostril_half_width) ** 2], 1)

    # eyes: the image-left eye's outer corner is 36, the image-right eye's is 45
    cx = p.eye_spacing * p.face_width / 2
    lid = np.sin(np.pi / 3)                                   # lid height over the thirds
    for eye, side in ((R_EYE, -1), (L_EYE, 1)):
        a = np.array([side * cx - p.eye_width / 2, side * p.canthal_tilt / 2])    # left corner
        b = np.array([side * cx + p.eye_width / 2, -side * p.canthal_tilt / 2])   # right corner
        at_ = lambda f: a + (b - a) * f                        # noqa: E731
        s[eye] = [a, at_(1 / 3) - [0, p.eye_upper * lid], at_(2 / 3) - [0, p.eye_upper * lid],
                  b, at_(2 / 3) + [0, p.eye_lower * lid], at_(1 / 3) + [0, p.eye_lower * lid]]

    # lips
    hw = p.mouth_width / 2
    ux = np.array([-1, -0.6, -0.28, 0, 0.28, 0.6, 1])          # 48..54, fractions of hw
    upper = p.upper_lip * ((1 - ux ** 2) / (1 - 0.28 ** 2)) ** 0.4   # = upper_lip at 50/52
    upper[3] -= p.cupid_dip
    lx = np.array([0.62, 0.28, 0, -0.28, -0.62])               # 55..59
    s[48:55] = np.stack([ux * hw, lip_line - upper], 1)
    s[55:60] = np.stack([lx * hw, lip_line + p.lower_lip * (1 - lx ** 2)], 1)
    ix = np.array([-0.93, -0.28, 0, 0.28, 0.93, 0.28, 0, -0.28])   # 60..67
    iy = np.array([0, -1, -1, -1, 0, 1, 1, 1]) * (p.lip_gap / 2) * np.sqrt(1 - ix ** 2)
    s[INNER_LIPS] = np.stack([ix * hw, lip_line + iy], 1)
    return s - (s.min(0) + s.max(0)) / 2


JAW, R_BROW, L_BROW = np.arange(0, 17), np.arange(17, 22), np.arange(22, 27)
BRIDGE, NOSTRILS = np.arange(27, 31), np.arange(31, 36)
R_EYE, L_EYE = np.arange(36, 42), np.arange(42, 48)
OUTER_LIPS, INNER_LIPS = np.arange(48, 60), np.arange(60, 68)
MEAN_SHAPE = mean_shape()


def _depth() -> np.ndarray:
    """Rough depth (face units, towards the camera) of each landmark, for yaw and pitch."""
    z = np.zeros(68)
    k = np.arange(17)
    z[JAW] = -0.38 + 0.40 * np.sin(np.pi * k / 16) ** 1.5    # sides far back, chin forward
    z[17:27] = [-0.06, 0.0, 0.04, 0.06, 0.07, 0.07, 0.06, 0.04, 0.0, -0.06]
    z[BRIDGE] = [0.06, 0.10, 0.15, 0.21]
    z[NOSTRILS] = [0.08, 0.12, 0.14, 0.12, 0.08]
    z[36:48] = [-0.04, 0.0, 0.01, 0.0, 0.0, 0.0, 0.0, 0.01, 0.0, -0.04, 0.0, 0.0]
    z[OUTER_LIPS] = [0.02, 0.07, 0.10, 0.11, 0.10, 0.07, 0.02, 0.06, 0.08, 0.09, 0.08, 0.06]
    z[INNER_LIPS] = [0.03, 0.08, 0.09, 0.08, 0.03, 0.07, 0.08, 0.07]
    return z


DEPTH = _depth()


# ---------------------------------------------------------------------------------------
# Identity
# ---------------------------------------------------------------------------------------
SKIN_TONES = np.array([(0.97, 0.82, 0.72), (0.93, 0.74, 0.61), (0.87, 0.66, 0.52), (0.78, 0.57, 0.42),
                       (0.66, 0.46, 0.32), (0.50, 0.34, 0.23), (0.38, 0.25, 0.18)])
HAIR_COLOURS = np.array([(0.06, 0.05, 0.05), (0.16, 0.10, 0.07), (0.30, 0.19, 0.11), (0.45, 0.22, 0.10),
                         (0.74, 0.60, 0.36), (0.58, 0.57, 0.56)])
EYE_COLOURS = np.array([(0.30, 0.18, 0.09), (0.18, 0.11, 0.06), (0.28, 0.45, 0.65), (0.30, 0.45, 0.30),
                        (0.42, 0.33, 0.18), (0.45, 0.50, 0.55)])
HAIR_STYLES = ("short", "long", "bald", "bangs", "curly", "receding")
BEARDS = ("none", "stubble", "beard", "moustache")


@dataclass
class Identity:
    """One synthetic person: a neutral shape in face units plus appearance parameters."""
    shape: np.ndarray            # (68, 2) neutral landmarks, face units
    scale: float                 # pixels per face unit
    skin: np.ndarray             # RGB in [0, 1]
    lips: np.ndarray
    hair_colour: np.ndarray
    brow_colour: np.ndarray
    eye_colour: np.ndarray
    hair_style: str
    hair_volume: float           # face units of hair outside the skull
    hairline: float              # forehead height above the brows, face units
    cranium: float               # skull height above the jaw ends (eye level), face units
    brow_width: float            # brow thickness, face units
    glasses: dict | None
    beard: str
    contempt_side: int           # +1: the image-right mouth corner lifts, -1: the left one
    background: np.ndarray
    shirt: np.ndarray
    body_dx: float               # horizontal offset of the body from the frame centre, px
    tex_seed: int


def neutral_shape(rng: np.random.Generator) -> np.ndarray:
    """A random identity's neutral 68-point shape in face units (mean shape, deformed).

    Varies face width, jaw width, chin length, lower-face length, eye size, spacing and
    openness, brow height, nose length and width, mouth width and lip thickness, plus a
    little asymmetry. The inner lips are closed (the mean shape's are slightly apart).
    """
    s = MEAN_SHAPE.copy()
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    # closed mouth: inner upper and lower lip meet on the line between them
    for a, b in ((61, 67), (62, 66), (63, 65)):
        m = (s[a, 1] + s[b, 1]) / 2
        s[a, 1] = s[b, 1] = m
    s[[60, 64], 1] = (s[48, 1] + s[60, 1]) / 2, (s[54, 1] + s[64, 1]) / 2
    s[60, 0], s[64, 0] = s[48, 0] + 0.012, s[54, 0] - 0.012
    # face width (whole face), jaw width (lower jaw only), chin shape
    s[:, 0] *= u(0.90, 1.06)
    k = np.arange(17)
    lower = np.clip(np.sin(np.pi * k / 16), 0, 1) ** 2
    s[JAW, 0] *= 1 + (u(0.86, 1.08) - 1) * lower
    chin = np.exp(-((k - 8) / 2.2) ** 2)
    s[JAW, 1] += u(-0.02, 0.05) * chin
    s[8, 1] += u(-0.005, 0.02)
    # lower face length: everything below the eyes stretches
    below = s[:, 1] > -0.25
    s[below, 1] = -0.25 + (s[below, 1] + 0.25) * u(0.93, 1.07)
    # eyes: size, openness, spacing
    es, eo, sp = u(0.85, 1.15), u(0.8, 1.25), u(-0.02, 0.02)
    for eye, side in ((R_EYE, -1), (L_EYE, 1)):
        c = s[eye].mean(0)
        d = s[eye] - c
        s[eye] = c + d * [es, es * eo] + [side * sp, 0]
    # brows: height and arch
    s[17:27, 1] += u(-0.025, 0.02)
    s[[18, 19, 20, 23, 24, 25], 1] -= u(0.0, 0.02)
    # nose length and width
    nl = u(0.9, 1.12)
    s[28:36, 1] = s[27, 1] + (s[28:36, 1] - s[27, 1]) * nl
    nw = u(0.85, 1.3)
    s[31:36, 0] = s[33, 0] + (s[31:36, 0] - s[33, 0]) * nw
    # mouth width and lip thickness (keep the mouth below the nose)
    mc = s[48:68].mean(0)
    s[48:68, 0] = mc[0] + (s[48:68, 0] - mc[0]) * u(0.85, 1.15)
    s[48:68, 1] += (s[33, 1] - MEAN_SHAPE[33, 1])
    line = (s[61, 1] + s[67, 1]) / 2
    up, lo = u(0.7, 1.35), u(0.7, 1.35)
    s[49:54, 1] = line + (s[49:54, 1] - line) * up
    s[55:60, 1] = line + (s[55:60, 1] - line) * lo
    s += rng.normal(0, 0.003, s.shape)           # asymmetry
    return s


def random_identity(rng: np.random.Generator) -> Identity:
    """Sample a whole synthetic person (shape and appearance) from `rng`."""
    shape = neutral_shape(rng)
    tone = rng.uniform(0, len(SKIN_TONES) - 1)
    i = int(tone)
    skin = SKIN_TONES[i] + (SKIN_TONES[min(i + 1, len(SKIN_TONES) - 1)] - SKIN_TONES[i]) * (tone - i)
    skin = np.clip(skin * rng.uniform(0.96, 1.04, 3), 0, 1)
    lips = np.clip(skin * [0.80, 0.58, 0.58] + [0.05, 0.0, 0.02], 0, 1)
    hair = np.clip(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15), 0, 1)
    style = HAIR_STYLES[rng.integers(len(HAIR_STYLES))]
    brow = np.clip(hair * min(1.0, 0.45 / hair.max()) * 0.75 + skin * 0.12, 0, 1)   # blonde -> light brown brows
    beard = BEARDS[rng.choice(len(BEARDS), p=[0.55, 0.2, 0.15, 0.1])]
    glasses = None
    if rng.random() < 0.3:
        glasses = {"colour": np.array((0.05, 0.05, 0.06)) if rng.random() < 0.6 else
                   np.array((0.35, 0.22, 0.12)), "round": bool(rng.random() < 0.4),
                   "width": float(rng.uniform(0.010, 0.018))}
    # background: a neutral grey that contrasts with the skin (CK+ walls are plain)
    lum = float(skin.mean())
    g = rng.uniform(0.62, 0.80) if lum < 0.6 else rng.uniform(0.30, 0.52) if rng.random() < 0.5 \
        else rng.uniform(0.80, 0.92)
    background = np.clip(g * rng.uniform(0.95, 1.05, 3), 0, 1)
    return Identity(
        shape=shape, scale=float(rng.uniform(255, 295)), skin=skin, lips=lips, hair_colour=hair,
        brow_colour=brow, eye_colour=np.clip(EYE_COLOURS[rng.integers(len(EYE_COLOURS))]
                                             * rng.uniform(0.85, 1.15), 0, 1),
        hair_style=style, hair_volume=float(rng.uniform(0.02, 0.07) * (2.2 if style == "curly" else 1)),
        hairline=float(rng.uniform(0.22, 0.30) + (0.12 if style == "receding" else 0)),
        cranium=float(rng.uniform(0.60, 0.68)), brow_width=float(rng.uniform(0.016, 0.032)),
        glasses=glasses, beard=beard, contempt_side=int(rng.choice([-1, 1])), background=background,
        shirt=np.clip(rng.uniform(0.1, 0.8, 3), 0, 1), body_dx=float(rng.uniform(-25, 25)),
        tex_seed=int(rng.integers(2**31)))


# ---------------------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------------------
def ease(t: float) -> float:
    """Smootherstep 0 -> 1: holds near neutral at the start and near the peak at the end,
    so CK+'s first-3 / last-3 frame rule picks neutral and peak frames."""
    t = min(max(float(t), 0.0), 1.0)
    return t * t * t * (t * (6 * t - 15) + 10)


def _lids(s: np.ndarray, d: np.ndarray, upper: float, lower: float) -> None:
    """Open (+) or narrow (-) the eyelids by a fraction of their height above/below the
    corner-to-corner line."""
    for eye in (R_EYE, L_EYE):
        c0, c1 = s[eye[0]], s[eye[3]]
        for i, f in ((1, upper), (2, upper), (4, lower), (5, lower)):
            p = s[eye[i]]
            t = (p[0] - c0[0]) / (c1[0] - c0[0])
            line_y = c0[1] + t * (c1[1] - c0[1])
            d[eye[i], 1] += f * (p[1] - line_y)       # moves away from (+) / towards (-) the line


def _brows(d: np.ndarray, inner: float, middle: float, outer: float, together: float = 0.0) -> None:
    """Raise (+) or lower (-) the brows, inner/middle/outer parts; pull them together (+)."""
    prof = np.array([outer, (outer + middle) / 2, middle, (middle + inner) / 2, inner])
    d[R_BROW, 1] -= prof
    d[L_BROW, 1] -= prof[::-1]
    pull = together * np.linspace(0.3, 1.0, 5)
    d[R_BROW, 0] += pull
    d[L_BROW, 0] -= pull[::-1]


def _corners(d: np.ndarray, side: int, out: float, up: float) -> None:
    """Move one mouth corner (side -1 = image left 48/60, +1 = image right 54/64) outwards
    and up; neighbouring lip points follow part of the way."""
    corner, inner, near = (48, 60, (49, 59, 61, 67)) if side < 0 else (54, 64, (53, 55, 63, 65))
    v = np.array([side * out, -up])
    d[corner] += v
    d[inner] += v
    for i in near:
        d[i] += 0.45 * v


def _open_mouth(d: np.ndarray, amount: float, jaw: float = 0.8) -> None:
    """Part the lips by `amount`: the lower lip drops 3/4 of it, the upper lip lifts 1/4,
    and the corners end up near mid-height, so the opening is an oval, not a V hanging
    from the corners. The chin follows the lower lip by `jaw`."""
    lower = {55: 0.8, 56: 0.97, 57: 1.0, 58: 0.97, 59: 0.8, 65: 0.93, 66: 1.0, 67: 0.93}
    for i, f in lower.items():
        d[i, 1] += 0.75 * amount * f
    for i, f in {61: 0.9, 62: 1.0, 63: 0.9, 49: 0.5, 50: 0.8, 51: 0.9, 52: 0.8, 53: 0.5}.items():
        d[i, 1] -= 0.25 * amount * f
    for i in (48, 54, 60, 64):
        d[i, 1] += 0.3 * amount
    k = np.arange(17)
    d[JAW, 1] += 0.75 * amount * jaw * np.exp(-((k - 8) / 3.0) ** 2)


def _lip_raise(d: np.ndarray, amount: float) -> None:
    """Raise the upper lip (outer and inner), most in the middle."""
    for i, f in {49: 0.6, 50: 0.9, 51: 1.0, 52: 0.9, 53: 0.6, 61: 0.8, 62: 0.9, 63: 0.8}.items():
        d[i, 1] -= amount * f


def expression_displacements(shape68: np.ndarray, expression: str, intensity: float = 1.0,
                             contempt_side: int = 1) -> np.ndarray:
    """Landmark displacements (68, 2), face units, for `expression` at `intensity` in [0, 1].

    Prototypes follow the FACS descriptions of the six basic emotions plus contempt:
    surprise = brows up, lids wide, jaw drop; fear = brows up and together, lids wide,
    mouth stretched open; anger = brows down and together, lids narrowed, lips pressed;
    disgust = upper lip raised, nose wrinkled, corners down, brows down; happy = corners
    up and out, cheeks push the lower lids up, lips part; sadness = inner brows up, corners
    down, lower lip up; contempt = one corner up and back. The eyelid terms depend on
    `shape68` (they scale the current lid height), the rest is additive.
    """
    if expression not in CLASSES:
        raise ValueError(f"unknown expression {expression!r}; known: {CLASSES}")
    s = np.asarray(shape68, float)
    d = np.zeros((68, 2))
    e = expression
    if e == "surprise":
        _brows(d, 0.055, 0.070, 0.050)
        _lids(s, d, 0.65, 0.15)
        _open_mouth(d, 0.14, jaw=0.9)
        _corners(d, -1, -0.03, 0.0)
        _corners(d, 1, -0.03, 0.0)
        _lip_raise(d, 0.01)
    elif e == "fear":
        _brows(d, 0.050, 0.035, 0.015, together=0.015)
        _lids(s, d, 0.60, 0.10)
        _open_mouth(d, 0.06, jaw=0.7)
        _corners(d, -1, 0.03, -0.012)
        _corners(d, 1, 0.03, -0.012)
        _lip_raise(d, 0.008)
    elif e == "anger":
        _brows(d, -0.040, -0.025, -0.008, together=0.022)
        _lids(s, d, -0.25, -0.40)
        for i in range(49, 54):
            d[i, 1] += 0.008                     # lips pressed thin
        for i in range(55, 60):
            d[i, 1] -= 0.012
        _corners(d, -1, -0.012, -0.006)
        _corners(d, 1, -0.012, -0.006)
        d[31, 0] -= 0.008
        d[35, 0] += 0.008                        # nostrils flare
    elif e == "disgust":
        _brows(d, -0.030, -0.020, -0.008, together=0.012)
        _lids(s, d, -0.25, -0.45)
        _lip_raise(d, 0.030)
        d[31:36, 1] -= 0.015                     # nose wrinkles up
        d[29:31, 1] -= 0.008
        _corners(d, -1, -0.005, -0.018)
        _corners(d, 1, -0.005, -0.018)
        for i in (56, 57, 58):
            d[i, 1] += 0.008
    elif e == "happy":
        _brows(d, 0.0, 0.005, 0.0)
        _lids(s, d, -0.12, -0.45)
        _corners(d, -1, 0.035, 0.045)
        _corners(d, 1, 0.035, 0.045)
        _lip_raise(d, 0.010)
        _open_mouth(d, 0.03, jaw=0.5)
        for i in (1, 2, 3):
            d[i, 0] -= 0.006                     # cheeks bulge
        for i in (13, 14, 15):
            d[i, 0] += 0.006
    elif e == "sadness":
        _brows(d, 0.050, 0.010, -0.012, together=0.012)
        _lids(s, d, -0.25, 0.0)
        _corners(d, -1, -0.010, -0.040)
        _corners(d, 1, -0.010, -0.040)
        for i, f in {56: 0.7, 57: 1.0, 58: 0.7, 66: 0.5}.items():
            d[i, 1] -= 0.012 * f                 # chin raiser pushes the lower lip up
        d[7:10, 1] -= 0.006
    elif e == "contempt":
        _corners(d, contempt_side, 0.030, 0.035)
        _lids(s, d, -0.10, -0.10)
    return d * float(intensity)


def expression_shape(shape68: np.ndarray, expression: str, intensity: float = 1.0,
                     contempt_side: int = 1) -> np.ndarray:
    """`shape68` moved by the expression at `intensity` (face units)."""
    return np.asarray(shape68, float) + expression_displacements(shape68, expression, intensity,
                                                                 contempt_side)


# ---------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------
def _spline(pts: np.ndarray, closed: bool = False, n: int = 6) -> np.ndarray:
    """Catmull-Rom curve through every point of `pts` (so drawn outlines pass through the
    landmarks exactly), `n` samples per segment."""
    p = np.asarray(pts, float)
    ext = np.vstack([p[-1], p, p[0], p[1]]) if closed else np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    t = np.linspace(0, 1, n, endpoint=False)[:, None, None]
    p0, p1, p2, p3 = ext[:-3], ext[1:-2], ext[2:-1], ext[3:]
    seg = 0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                 + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3)          # (n, segments, 2)
    out = seg.transpose(1, 0, 2).reshape(-1, 2)
    return out if closed else np.vstack([out, p[-1:]])


def _ellipse_pts(c, a: float, b: float, rot: float = 0.0, n: int = 40) -> np.ndarray:
    """`n` points around an ellipse centred at `c`, semi-axes a, b, rotated by `rot` radians."""
    t = np.linspace(0, 2 * np.pi, n)
    x, y = a * np.cos(t), b * np.sin(t)
    cr, sr = np.cos(rot), np.sin(rot)
    return np.stack([c[0] + x * cr - y * sr, c[1] + x * sr + y * cr], 1)


def _stroke(pts: np.ndarray, width, closed: bool = False) -> np.ndarray:
    """Polygon of a thick line along `pts`; `width` a scalar or one per point."""
    p = np.asarray(pts, float)
    w = np.broadcast_to(np.asarray(width, float), (len(p),))
    nxt = np.roll(p, -1, 0) if closed else np.vstack([p[1:], 2 * p[-1] - p[-2]])
    prv = np.roll(p, 1, 0) if closed else np.vstack([2 * p[0] - p[1], p[:-1]])
    tang = nxt - prv
    tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
    nrm = np.stack([-tang[:, 1], tang[:, 0]], 1) * (w[:, None] / 2)
    return np.vstack([p + nrm, (p - nrm)[::-1]])


def _polygon_idx(xs: np.ndarray, ys: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixel centres inside a polygon (even-odd rule).

    A vectorised scanline fill: the same pixels as `skimage.draw.polygon` up to ties on
    the boundary, but ~25x faster for the long thin outlines drawn here (skimage tests
    every pixel of the bounding box against every edge)."""
    h, w = shape
    x, y = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    r0, r1 = max(int(np.ceil(y.min())), 0), min(int(np.floor(y.max())), h - 1)
    c0, c1 = max(int(np.floor(x.min())), 0), min(int(np.ceil(x.max())), w - 1)
    if r1 < r0 or c1 < c0:
        return np.empty(0, np.intp), np.empty(0, np.intp)
    xb, yb = np.roll(x, -1), np.roll(y, -1)
    rows = np.arange(r0, r1 + 1, dtype=np.float64)[:, None]
    ri, ei = np.nonzero((rows >= np.minimum(y, yb)) & (rows < np.maximum(y, yb)))
    xc = x[ei] + (rows[ri, 0] - y[ei]) * (xb[ei] - x[ei]) / (yb[ei] - y[ei])
    # toggle the inside/outside state at the first pixel centre right of each crossing
    col = np.clip(np.floor(xc).astype(np.intp) + 1 - c0, 0, c1 - c0 + 1)
    tog = np.zeros((r1 - r0 + 1, c1 - c0 + 2), np.int16)
    np.add.at(tog, (ri, col), 1)
    rr, cc = np.nonzero(np.cumsum(tog, 1)[:, :-1] & 1)
    return rr + r0, cc + c0


@dataclass
class Pose:
    """Head pose of one frame: degrees, pixels and a scale factor."""
    roll: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    cx: float = 320.0
    cy: float = 255.0
    scale: float = 1.0


def pose_points(pts: np.ndarray, depth: np.ndarray, pose: Pose, px_per_unit: float) -> np.ndarray:
    """Face units -> pixels: yaw/pitch as a small 3-D rotation using per-point depth (the
    far side of the face compresses, the nose moves most), then in-plane roll, scale and
    translation."""
    p = np.asarray(pts, float)
    z = np.broadcast_to(np.asarray(depth, float), (len(p),))
    ya, pi, ro = np.radians([pose.yaw, pose.pitch, pose.roll])
    x = p[:, 0] * np.cos(ya) + z * np.sin(ya)
    z2 = -p[:, 0] * np.sin(ya) + z * np.cos(ya)
    y = p[:, 1] * np.cos(pi) - z2 * np.sin(pi)
    s = px_per_unit * pose.scale
    xr = x * np.cos(ro) - y * np.sin(ro)
    yr = x * np.sin(ro) + y * np.cos(ro)
    return np.stack([pose.cx + s * xr, pose.cy + s * yr], 1)


def _aux_points(idt: Identity, shape: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    """Points that are drawn but not written (skull, hair, ears, neck), in face units, each
    with a depth for posing. Built from the current shape so they follow the jaw."""
    j0, j16 = shape[0], shape[16]
    c = (j0 + j16) / 2
    a = (j16[0] - j0[0]) / 2
    t = np.linspace(0, np.pi, 25)
    bulge = 1 + 0.05 * np.sin(t)
    skull = np.stack([c[0] + a * np.cos(t) * bulge, c[1] - idt.cranium * np.sin(t)], 1)
    skull[0], skull[-1] = j16, j0                     # the skull starts where the jaw ends
    aux = {"skull": (skull, -0.1)}
    v = idt.hair_volume
    brow_y = shape[17:27, 1].min()
    if idt.hair_style != "bald":
        drop = 0.30 if idt.hair_style in ("long", "curly") else 0.10
        to = np.linspace(-np.arcsin(min(drop / (idt.cranium + v), 0.9)), np.pi
                         + np.arcsin(min(drop / (idt.cranium + v), 0.9)), 31)
        outer = np.stack([c[0] + (a + v * 0.8) * np.cos(to) * (1 + 0.05 * np.sin(to)),
                          c[1] - (idt.cranium + v) * np.sin(to)], 1)
        # hairline: sideburn bottoms at about eye level, temples, forehead curve
        mid_y = brow_y - idt.hairline
        if idt.hair_style == "bangs":
            mid_y = brow_y - 0.07
        xs = np.linspace(-1, 1, 21)
        hl_y = mid_y + (c[1] - 0.06 - mid_y) * np.abs(xs) ** 3.5
        hairline = np.stack([c[0] + xs * a * 0.97, hl_y], 1)
        sideburn_r = np.array([[j16[0] - 0.015, j16[1] + 0.06]])
        sideburn_l = np.array([[j0[0] + 0.015, j0[1] + 0.06]])
        cap = np.vstack([outer, sideburn_l, hairline, sideburn_r])
        aux["hair_cap"] = (cap, -0.05)
        if idt.hair_style in ("long", "curly"):
            lw = a + v * (1.2 if idt.hair_style == "curly" else 0.8)
            bottom = 0.55 if idt.hair_style == "long" else 0.25
            back = np.vstack([[[c[0] + lw, c[1]], [c[0] + lw * 1.05, bottom], [c[0] + a * 0.6, bottom + 0.04],
                               [c[0] - a * 0.6, bottom + 0.04], [c[0] - lw * 1.05, bottom], [c[0] - lw, c[1]]],
                              outer[::-1]])
            aux["hair_back"] = (back, -0.35)
    else:
        # bald: a horseshoe fringe hugging the skull's sides above the ears (drawn behind
        # the face, so only its outer half shows)
        for side, arc in ((1, skull[:7]), (-1, skull[-7:][::-1])):
            out = arc + (arc - c) * 0.02
            aux[f"fringe{side}"] = (_stroke(_spline(out, n=3), 0.06), -0.3)
    for side, (i0, i1) in ((-1, (0, 3)), (1, (16, 13))):
        ec = np.array([shape[i0, 0] + side * 0.02, (shape[i0, 1] + shape[i1, 1]) / 2 - 0.02])
        aux[f"ear{side}"] = (_ellipse_pts(ec, 0.045, 0.105, rot=side * 0.15, n=24), -0.4)
    nk = np.array([[shape[5, 0] + 0.06, shape[5, 1] - 0.05], [shape[11, 0] - 0.06, shape[11, 1] - 0.05],
                   [shape[11, 0] - 0.05, 1.0], [shape[5, 0] + 0.05, 1.0]])
    aux["neck"] = (nk, -0.3)
    return aux


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------
class _Canvas:
    """A float RGB region of interest of the frame with polygon/blob painting helpers.

    `u, v` are every ROI pixel's coordinates in the head frame (face units, roll and scale
    undone), used for shading fields and textures that move with the head."""

    def __init__(self, img: np.ndarray, x0: int, y0: int, pose: Pose, ppu: float):
        self.img, self.x0, self.y0, self.pose = img, x0, y0, pose
        h, w = img.shape[:2]
        self.s = ppu * pose.scale
        ys, xs = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
        self.u, self.v = self.to_uv(xs, ys)

    def to_uv(self, x, y):
        """Pixel coordinates -> head-frame coordinates (face units)."""
        ro = np.radians(self.pose.roll)
        dx, dy = x - self.pose.cx, y - self.pose.cy
        return (dx * np.cos(ro) + dy * np.sin(ro)) / self.s, (-dx * np.sin(ro) + dy * np.cos(ro)) / self.s

    def mask(self, pts: np.ndarray):
        """(rows, cols) ROI indices of the pixels inside polygon `pts` (x, y pixels)."""
        return _polygon_idx(pts[:, 0] - self.x0, pts[:, 1] - self.y0, self.img.shape[:2])

    def fill(self, pts: np.ndarray, colour, alpha: float = 1.0, idx=None, shade=None):
        rr, cc = self.mask(pts) if idx is None else idx
        col = np.asarray(colour, np.float32)
        if shade is not None:
            col = col * shade(rr, cc)[:, None]
        if np.isscalar(alpha) and alpha >= 1.0:
            self.img[rr, cc] = col
        else:
            a = alpha if np.isscalar(alpha) else alpha[:, None]
            self.img[rr, cc] = self.img[rr, cc] * (1 - a) + col * a
        return rr, cc

    def blob(self, centre_px, su: float, sv: float, strength: float, colour=None, rot: float = 0.0):
        """Soft elliptical Gaussian, sigmas in face units along the head axes (rotated by
        `rot`): darkens (colour None, strength > 0), lightens (< 0) or tints to `colour`."""
        r = 3 * max(su, sv) * self.s
        cx, cy = centre_px[0] - self.x0, centre_px[1] - self.y0
        h, w = self.img.shape[:2]
        r0, r1 = int(max(cy - r, 0)), int(min(cy + r + 1, h))
        c0, c1 = int(max(cx - r, 0)), int(min(cx + r + 1, w))
        if r0 >= r1 or c0 >= c1:
            return
        u0, v0 = self.to_uv(centre_px[0], centre_px[1])
        uu, vv = self.u[r0:r1, c0:c1] - np.float32(u0), self.v[r0:r1, c0:c1] - np.float32(v0)
        if rot:
            uu, vv = uu * np.cos(rot) + vv * np.sin(rot), -uu * np.sin(rot) + vv * np.cos(rot)
        g = np.exp(-0.5 * ((uu / su) ** 2 + (vv / sv) ** 2))[..., None] * abs(strength)
        win = self.img[r0:r1, c0:c1]
        if colour is not None:
            win[:] = win * (1 - g) + np.asarray(colour, np.float32) * g
        elif strength > 0:
            win *= 1 - g
        else:
            win[:] = win + (1 - win) * g


def _texture(seed: int, n: int = 96, streak: float = 0.0) -> np.ndarray:
    """A smooth noise map in [-1, 1] over face units u, v in [-1.2, 1.2] (streaky for hair)."""
    rng = np.random.default_rng(seed)
    t = ndimage.gaussian_filter(rng.normal(size=(n, n)), (1.0 + 4 * streak, 1.0))
    return (t / (np.abs(t).max() + 1e-9)).astype(np.float32)


def _sample(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    n = tex.shape[0]
    i = np.clip(((v + 1.2) / 2.4 * n).astype(np.int32), 0, n - 1)
    j = np.clip(((u + 1.2) / 2.4 * n).astype(np.int32), 0, n - 1)
    return tex[i, j]


SHIRT_TOP = 0.88      # the shirt's top edge, as a fraction of the frame height


@functools.lru_cache(maxsize=4)
def _subject_assets(seed: int, subject: int, size: tuple[int, int]):
    """`_static_assets` of subject (seed, subject), cached across its sequences."""
    return _static_assets(make_identity(seed, subject), size)


def _static_assets(idt: Identity, size: tuple[int, int]):
    """Per-subject static things (the subject sits still, only the head moves): textured
    wall, shoulders with a shirt and the neckline's skin; skin and hair textures."""
    w, h = size
    rng = np.random.default_rng(idt.tex_seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.empty((h, w, 3), np.float32)
    bg[:] = idt.background
    bg *= (1.04 - 0.10 * ys / h)[..., None]                     # wall lit from above
    noise = ndimage.gaussian_filter(rng.normal(size=(-(-h // 4), -(-w // 4))).astype(np.float32), 4.0)
    noise = np.kron(noise, np.ones((4, 4), np.float32))[:h, :w]
    bg *= (1 + 0.035 * noise / (np.abs(noise).max() + 1e-9))[..., None]
    cx, top = w / 2 + idt.body_dx * w / 640, h * SHIRT_TOP
    shirt = ((xs - cx) / (w * 0.42)) ** 2 + ((ys - (h + 40)) / (h + 40 - top)) ** 2 < 1
    bg[shirt] = idt.shirt * (0.85 + 0.15 * (1 - ys[shirt, None] / h))
    zoom = h / 490
    nw = 0.23 * idt.scale * zoom
    dx = (xs - cx) / nw
    # the neckline: skin from just above the shirt's top edge down a U-shaped collar (the
    # per-frame neck is drawn down to top + 15 px and covers the seam)
    neck = (np.abs(dx) < 1) & (ys > top - 5 * zoom) & (ys < top + (8 + 28 * (1 - dx ** 2)) * zoom)
    bg[neck] = idt.skin * (0.72 * (1 - 0.3 * dx[neck, None] ** 2))
    bg = ndimage.gaussian_filter(bg, (0.9, 0.9, 0))
    return bg, _texture(idt.tex_seed + 1), _texture(idt.tex_seed + 2, streak=1.0)


def render_frame(idt: Identity, shape: np.ndarray, pose: Pose, light: tuple[float, float, float],
                 size: tuple[int, int] = (640, 490), assets=None) -> tuple[np.ndarray, np.ndarray]:
    """Render one frame; returns (uint8 image H x W x 3, landmarks (68, 2) in pixels).

    `shape` is the expression-moved landmark set in face units; `light` is (angle radians,
    gradient strength, exposure); `assets` the subject's `_subject_assets` (made on the
    fly when None). Everything is drawn from the posed landmarks.
    """
    w, h = size
    bg, skin_tex, hair_tex = assets if assets is not None else _static_assets(idt, size)
    img = bg.copy()
    ppu = idt.scale
    lm = pose_points(shape, DEPTH, pose, ppu)
    aux = {k: pose_points(p, z, pose, ppu) for k, (p, z) in _aux_points(idt, shape).items()}
    aux["neck"][2:, 1] = h * SHIRT_TOP + 15 * h / 490         # the neck ends in the shirt

    allp = np.vstack([lm] + list(aux.values()))
    x0, y0 = int(max(allp[:, 0].min() - 12, 0)), int(max(allp[:, 1].min() - 12, 0))
    x1, y1 = int(min(allp[:, 0].max() + 12, w)), int(min(allp[:, 1].max() + 12, h))
    cv = _Canvas(img[y0:y1, x0:x1], x0, y0, pose, ppu)
    _draw_head(cv, idt, lm, aux, _cues(idt.shape, shape), skin_tex, hair_tex)
    img[y0:y1, x0:x1] = ndimage.gaussian_filter(cv.img, (0.7, 0.7, 0))   # anti-aliasing

    # lighting: a brightness gradient across the frame plus exposure
    ang, grad, expo = light
    ys, xs = np.ogrid[0:h, 0:w]
    ramp = 255 * expo * (1 + grad * (((xs - w / 2) * np.cos(ang) + (ys - h / 2) * np.sin(ang)) / w))
    img *= ramp[..., None].astype(np.float32)
    img += 0.5
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8), lm


def _cues(neutral: np.ndarray, shape: np.ndarray) -> dict[str, float]:
    """How far the landmarks moved from the identity's neutral, as 0..1 amounts that
    drive skin folds (forehead lines, frown lines, nose wrinkles, smile folds)."""
    d = shape - neutral
    brow_up = -d[17:27, 1].mean()
    inner_down = d[[20, 21, 22, 23], 1].mean()
    together = (d[21, 0] - d[22, 0]) / 2
    corners_up = -d[[48, 54], 1].max()
    return {"forehead": float(np.clip(brow_up / 0.05, 0, 1)),
            "frown": float(np.clip(max(inner_down / 0.03, together / 0.015), 0, 1)),
            "nose": float(np.clip(-d[31:36, 1].mean() / 0.012, 0, 1)),
            "smile": float(np.clip(corners_up / 0.035, 0, 1))}


def _draw_head(cv: _Canvas, idt: Identity, lm: np.ndarray, aux: dict, cues: dict, skin_tex, hair_tex) -> None:
    """Paint the head back to front: back hair, neck, ears, face, folds, beard, hair cap,
    brows, eyes, nose, mouth, glasses."""
    skin, hair = idt.skin.astype(np.float32), idt.hair_colour.astype(np.float32)
    s = cv.s

    def hair_shade(rr, cc):
        return 0.85 + 0.25 * _sample(hair_tex, cv.u[rr, cc] * 3, cv.v[rr, cc] * 1.5)

    def neck_shade(rr, cc):
        return 0.75 * (1 - 0.3 * np.clip(np.abs(cv.u[rr, cc]) / 0.23, 0, 1) ** 2)

    if "hair_back" in aux:
        cv.fill(aux["hair_back"], hair * 0.8, shade=hair_shade)
    for side in (-1, 1):
        if f"fringe{side}" in aux:
            cv.fill(aux[f"fringe{side}"], hair, shade=hair_shade)
    cv.fill(aux["neck"], skin, shade=neck_shade)
    cv.blob(lm[8], 0.15, 0.05, 0.45)              # the jaw shades the neck (face drawn over it)
    for side in (-1, 1):
        e = aux[f"ear{side}"]
        cv.fill(e, skin * 0.86)
        cv.blob(e.mean(0), 0.015, 0.05, 0.25)
        cv.blob(lm[2 if side < 0 else 14], 0.02, 0.06, 0.3)   # contact shadow where ear meets face

    # face: jaw contour + skull, shaded darker towards the edge (the main HOG cue)
    face = np.vstack([_spline(lm[JAW], n=4), aux["skull"][1:-1]])

    def face_shade(rr, cc):
        uu, vv = cv.u[rr, cc], cv.v[rr, cc]
        r2 = uu ** 2 / 0.47 ** 2 + (vv + 0.12) ** 2 / 0.62 ** 2
        return (1.04 - 0.30 * np.clip(r2, 0, 1.3) ** 2 + 0.03 * _sample(skin_tex, uu * 2, vv * 2)
                - 0.08 * np.clip(vv - 0.25, 0, 1) / 0.2)

    cv.fill(face, skin, shade=face_shade)
    _draw_folds(cv, idt, lm, cues)
    _draw_beard(cv, idt, lm, hair_shade)

    # hair over the forehead; a bald scalp gets a highlight instead
    if "hair_cap" in aux:
        cv.fill(aux["hair_cap"], hair, shade=hair_shade)
    else:
        cv.blob(aux["skull"][12] + [0, 0.12 * s], 0.08, 0.05, -0.12)   # scalp highlight

    _draw_brows(cv, idt, lm)
    _draw_eyes(cv, idt, lm)
    _draw_nose(cv, idt, lm, cues)
    _draw_mouth(cv, idt, lm)
    if idt.glasses:
        _draw_glasses(cv, idt, lm)


def _draw_folds(cv: _Canvas, idt: Identity, lm: np.ndarray, cues: dict) -> None:
    """Expression folds, only as deep as the landmark motion: forehead lines when the brows
    rise, vertical frown lines when they lower and pull together (nose wrinkles and smile
    folds are drawn with the nose)."""
    s, fold = cv.s, idt.skin * 0.6
    if cues["forehead"] > 0.05:
        top = lm[17:27, 1].min()
        for k in range(3):
            y = top - (0.035 + 0.03 * k) * s
            xs = np.linspace(lm[18, 0], lm[25, 0], 9)
            ys = y + 0.006 * s * np.cos(np.linspace(-np.pi, np.pi, 9))
            cv.fill(_stroke(np.stack([xs, ys], 1), 0.005 * s), fold, alpha=0.4 * cues["forehead"])
    if cues["frown"] > 0.05:
        for i in (21, 22):
            a = lm[i] + (lm[27] - lm[i]) * 0.35
            cv.fill(_stroke(np.array([a + [0, -0.03 * s], a + [0, 0.03 * s]]), 0.005 * s), fold,
                    alpha=0.5 * cues["frown"])


def _draw_beard(cv: _Canvas, idt: Identity, lm: np.ndarray, hair_shade) -> None:
    """Full beard or stubble over the lower face (fading out upwards on the cheeks), or a
    moustache between nose and upper lip."""
    s, hair = cv.s, idt.hair_colour.astype(np.float32)
    if idt.beard in ("beard", "stubble"):
        cheek_r = lm[14] + (lm[54] - lm[14]) * 0.35 + [0, -0.02 * s]
        cheek_l = lm[2] + (lm[48] - lm[2]) * 0.35 + [0, -0.02 * s]
        top = np.array([cheek_r, lm[35] + [0.02 * s, 0.01 * s], lm[33] + [0, 0.012 * s],
                        lm[31] + [-0.02 * s, 0.01 * s], cheek_l])
        poly = np.vstack([_spline(lm[2:15], n=4), top])
        rr, cc = cv.mask(poly)
        # fade in below the upper boundary (over ~0.05 units for a beard, ~0.12 for
        # stubble) so it does not look pasted on
        full = idt.beard == "beard"
        o = np.argsort(top[:, 0])
        ytop = np.interp(cc + cv.x0, top[o, 0], top[o, 1])
        ramp = np.clip((rr + cv.y0 - ytop) / ((0.05 if full else 0.12) * s), 0, 1).astype(np.float32)
        if full:
            cv.fill(poly, hair * 0.9, alpha=0.9 * ramp, idx=(rr, cc), shade=hair_shade)
        else:
            grain = 0.5 + 0.5 * hair_shade(rr, cc)
            cv.fill(poly, hair * 0.4 + idt.skin * 0.3, alpha=0.35 * ramp * grain, idx=(rr, cc))
    elif idt.beard == "moustache":
        top = _spline(np.array([lm[48] + [-0.005 * s, 0.005 * s], lm[31] + [-0.005 * s, 0.015 * s],
                                lm[33] + [0, 0.01 * s], lm[35] + [0.005 * s, 0.015 * s],
                                lm[54] + [0.005 * s, 0.005 * s]]), n=4)
        bot = _spline(lm[48:55], n=4)[::-1] + [0, -0.004 * s]
        cv.fill(np.vstack([top, bot]), hair * 0.9, alpha=0.9, shade=hair_shade)


def _draw_brows(cv: _Canvas, idt: Identity, lm: np.ndarray) -> None:
    """Brows as tapered strokes whose TOP edge runs along landmarks 17-21 / 22-26 (iBUG
    annotates the brow's upper boundary)."""
    bw = idt.brow_width * cv.s
    for idx, inner_last in ((R_BROW, True), (L_BROW, False)):
        p = _spline(lm[idx], n=5)
        wid = np.linspace(0.55, 1.0, len(p)) if inner_last else np.linspace(1.0, 0.55, len(p))
        wid = wid * bw
        # push the stroke's centre half a width below the landmark line
        tang = np.gradient(p, axis=0)
        tang /= np.maximum(np.linalg.norm(tang, axis=1, keepdims=True), 1e-9)
        down = np.stack([-tang[:, 1], tang[:, 0]], 1)
        down *= np.sign(down[:, 1:2] + 1e-9)
        centre = p + down * (wid[:, None] / 2)
        cv.fill(_stroke(centre, wid), idt.brow_colour, alpha=0.9)
        # socket shadow between brow and eye
        eye = R_EYE if inner_last else L_EYE
        c = (lm[idx].mean(0) + lm[eye].mean(0)) / 2
        cv.blob(c, 0.07, 0.03, 0.18)


def _draw_eyes(cv: _Canvas, idt: Identity, lm: np.ndarray) -> None:
    """Eye openings exactly the landmark polygons 36-41 / 42-47: sclera, iris clipped to
    the opening, pupil, catch-light, dark upper lid line, crease, lower lid."""
    s = cv.s
    for eye in (R_EYE, L_EYE):
        pts = lm[eye]
        c = pts.mean(0)
        ew = np.linalg.norm(pts[3] - pts[0])
        cv.blob(c, 0.06, 0.035, 0.22)                            # eye socket darker
        outline = _spline(pts, closed=True, n=6)
        rr, cc = cv.mask(outline)
        if len(rr) == 0:
            continue
        xs, ys = cc + cv.x0, rr + cv.y0
        cv.img[rr, cc] = np.array([0.88, 0.86, 0.82], np.float32) * (0.72 + 0.25 * idt.skin.mean())
        ic = c + [0, 0.1 * (pts[[1, 2], 1].mean() - c[1])]
        ri = 0.21 * ew
        dist = np.hypot(xs - ic[0], ys - ic[1])
        m = dist < ri
        col = idt.eye_colour.astype(np.float32)[None] * (0.75 + 0.35 * (dist[m, None] / ri))
        cv.img[rr[m], cc[m]] = col
        m2 = dist < ri * 0.42
        cv.img[rr[m2], cc[m2]] = 0.04
        m3 = np.hypot(xs - ic[0] - 0.3 * ri, ys - ic[1] + 0.35 * ri) < max(ri * 0.18, 1.2)
        cv.img[rr[m3], cc[m3]] = 0.95
        # upper lid line (lashes) and a lid crease above it
        up = _spline(pts[[0, 1, 2, 3]], n=6)
        wl = np.concatenate([np.linspace(0.010, 0.006, len(up))]) * s
        if eye[0] == 42:
            wl = wl[::-1]
        cv.fill(_stroke(up, wl), (0.05, 0.04, 0.04), alpha=0.95)
        crease = up + [0, -0.022 * s]
        cv.fill(_stroke(crease[2:-2], 0.004 * s), idt.skin * 0.6, alpha=0.5)
        lo = _spline(pts[[3, 4, 5, 0]], n=6)
        cv.fill(_stroke(lo, 0.004 * s), idt.skin * 0.55, alpha=0.6)


def _draw_nose(cv: _Canvas, idt: Identity, lm: np.ndarray, cues: dict) -> None:
    """Nose from 27-35: side shadows along the bridge, tip highlight, nostrils and the
    lower outline through 31-35, shadow under it."""
    s = cv.s
    for t in (0.35, 0.7):
        p = lm[27] + (lm[30] - lm[27]) * t
        for side in (-1, 1):
            cv.blob(p + [side * 0.045 * s, 0], 0.014, 0.07, 0.16)
    cv.blob(lm[30], 0.025, 0.02, -0.18)                          # tip highlight
    cv.blob(lm[33] + [0, 0.03 * s], 0.05, 0.014, 0.18)          # shadow under the nose
    for i, j in ((31, 32), (35, 34)):
        n = (lm[i] * 0.4 + lm[j] * 0.6) + [0, -0.01 * s]
        cv.blob(n, 0.014, 0.008, 0.75)                          # nostrils
        wing = np.array([lm[i], lm[i] + [(lm[i][0] - lm[33][0]) * 0.25, -0.035 * s],
                         lm[i] + [(lm[i][0] - lm[33][0]) * -0.1, -0.06 * s]])
        cv.fill(_stroke(_spline(wing, n=5), 0.005 * s), idt.skin * 0.55, alpha=0.6)
    cv.fill(_stroke(_spline(lm[31:36], n=5), 0.005 * s), idt.skin * 0.5, alpha=0.65)
    # nasolabial folds, deeper when the corners are pulled up
    for i, k in ((31, 48), (35, 54)):
        a = lm[i] + [(lm[i][0] - lm[33][0]) * 0.5, 0]
        b = lm[k] + [(lm[k][0] - lm[51][0]) * 0.18, 0.015 * s]
        mid = (a + b) / 2 + [(lm[k][0] - lm[51][0]) * 0.18, 0]
        cv.fill(_stroke(_spline(np.array([a, mid, b]), n=6), 0.006 * s), idt.skin * 0.62,
                alpha=0.25 + 0.4 * cues["smile"])
    # nose wrinkles across the bridge (disgust)
    if cues["nose"] > 0.05:
        for t in (0.25, 0.4, 0.55):
            p = lm[27] + (lm[30] - lm[27]) * t
            xs = p[0] + np.array([-0.035, 0.0, 0.035]) * s
            ys = p[1] + np.array([0.006, 0.0, 0.006]) * s
            cv.fill(_stroke(np.stack([xs, ys], 1), 0.004 * s), idt.skin * 0.6, alpha=0.45 * cues["nose"])


def _draw_mouth(cv: _Canvas, idt: Identity, lm: np.ndarray) -> None:
    """Lips = outer polygon 48-59 minus the inner opening 60-67; the opening is dark with
    upper (and a little lower) teeth; a closed mouth gets a dark line along 60-64."""
    s = cv.s
    lips = idt.lips.astype(np.float32)
    outer = _spline(lm[OUTER_LIPS], closed=True, n=6)
    cv.blob(lm[57] + [0, 0.035 * s], 0.05, 0.015, 0.12)        # shadow under the lower lip
    mc = lm[48:60].mean(0)

    def lip_shade(rr, cc):
        yy = rr + cv.y0
        return 0.9 + 0.12 * np.clip((yy - mc[1]) / (0.04 * s), -1, 1)

    cv.fill(outer, lips, shade=lip_shade)
    inner = _spline(lm[INNER_LIPS], closed=True, n=6)
    rr, cc = cv.mask(inner)
    gap = np.linalg.norm(lm[66] - lm[62])
    if len(rr) and gap > 1.5:
        cv.img[rr, cc] = (0.20, 0.07, 0.07)
        xs, ys = cc + cv.x0, rr + cv.y0
        upper = _spline(lm[[60, 61, 62, 63, 64]], n=6)
        lower = _spline(lm[[64, 65, 66, 67, 60]], n=6)[::-1]
        o = np.argsort(upper[:, 0])
        uy = np.interp(xs, upper[o, 0], upper[o, 1])
        o = np.argsort(lower[:, 0])
        ly = np.interp(xs, lower[o, 0], lower[o, 1])
        th = min(0.55 * gap, 0.035 * s)
        # teeth show in the middle of the opening only; its corners stay dark
        half = 0.5 * np.linalg.norm(lm[64] - lm[60])
        mid = np.abs(xs - (lm[60, 0] + lm[64, 0]) / 2) < 0.75 * half
        m = (ys - uy < th) & mid
        cv.img[rr[m], cc[m]] = np.array([0.93, 0.91, 0.84], np.float32) * (0.8 + 0.2 * idt.skin.mean())
        m = (ly - ys < 0.25 * th) & (gap > 0.04 * s) & mid
        cv.img[rr[m], cc[m]] = np.array([0.80, 0.78, 0.72], np.float32)
    cv.fill(_stroke(_spline(lm[[48, 60, 61, 62, 63, 64, 54]], n=5), 0.006 * s), lips * 0.35, alpha=0.85)
    for k in (48, 54):
        cv.blob(lm[k], 0.008, 0.008, 0.4)                       # corner shadows


def _draw_glasses(cv: _Canvas, idt: Identity, lm: np.ndarray) -> None:
    """Frames around the eyes (anchored on the eye corners, which barely move with
    expression), a bridge and temple arms."""
    g, s = idt.glasses, cv.s
    rims = []
    for a, b in ((36, 39), (42, 45)):
        c = (lm[a] + lm[b]) / 2 + [0, -0.005 * s]
        half = np.linalg.norm(lm[b] - lm[a]) * 0.85
        rot = np.arctan2(lm[b][1] - lm[a][1], lm[b][0] - lm[a][0])
        hh = half * (0.85 if g["round"] else 0.62)
        rim = _ellipse_pts(c, half, hh, rot=rot, n=40)
        if not g["round"]:                                    # squarer frames: superellipse
            t = np.linspace(0, 2 * np.pi, 40)
            x, y = np.sign(np.cos(t)) * np.abs(np.cos(t)) ** 0.6 * half, np.sign(np.sin(t)) * np.abs(np.sin(t)) ** 0.6 * hh
            rim = np.stack([c[0] + x * np.cos(rot) - y * np.sin(rot), c[1] + x * np.sin(rot) + y * np.cos(rot)], 1)
        cv.fill(rim, (0.85, 0.9, 0.95), alpha=0.08)           # lens tint
        cv.fill(_stroke(rim, g["width"] * s, closed=True), g["colour"])
        rims.append((c, half, rot))
    (c0, h0, r0), (c1, h1, r1) = rims
    p0 = c0 + h0 * np.array([np.cos(r0), np.sin(r0)])
    p1 = c1 - h1 * np.array([np.cos(r1), np.sin(r1)])
    bridge = np.array([p0, (p0 + p1) / 2 + [0, -0.015 * s], p1])
    cv.fill(_stroke(_spline(bridge, n=4), g["width"] * s * 0.8), g["colour"])
    for c, hw, r, j, sgn in ((c0, h0, r0, lm[0], -1), (c1, h1, r1, lm[16], 1)):
        a = c + sgn * hw * np.array([np.cos(r), np.sin(r)])
        cv.fill(_stroke(np.array([a, j + [-sgn * 0.005 * s, -0.01 * s]]), g["width"] * s * 0.7), g["colour"])


# ---------------------------------------------------------------------------------------
# Sequences and the CK+ tree
# ---------------------------------------------------------------------------------------
def make_identity(seed: int, subject: int) -> Identity:
    """The identity of subject number `subject` (1-based) under `seed`: depends only on
    (seed, subject), so a subject looks the same whatever the dataset size."""
    return random_identity(np.random.default_rng([int(seed), int(subject), 0]))


def sequence_order(seed: int, subject: int) -> list[str]:
    """Expressions of the subject's sequences 001..007, in a seeded shuffled order (CK+
    sequence numbers do not encode the emotion)."""
    rng = np.random.default_rng([int(seed), int(subject), 1])
    return [EXPRESSIONS[i] for i in rng.permutation(len(EXPRESSIONS))]


def render_sequence(seed: int, subject: int, sequence: int, frames: int = 10,
                    size: tuple[int, int] = (640, 490)):
    """Yield (frame number 1-based, uint8 image, landmarks (68, 2) px, intensity) for one
    neutral -> peak sequence, with a drifting head pose and lighting."""
    idt = make_identity(seed, subject)
    expression = sequence_order(seed, subject)[sequence - 1]
    rng = np.random.default_rng([int(seed), int(subject), 100 + int(sequence)])
    w, h = size
    assets = _subject_assets(int(seed), int(subject), (int(w), int(h)))
    # head pose at the start and the end of the sequence; the head drifts between them
    cx = w / 2 + (idt.body_dx + rng.uniform(-8, 8)) * w / 640
    cy = h * (0.53 + rng.uniform(-0.02, 0.02))
    zoom = h / 490                              # faces keep their CK+ proportion of the frame
    start = np.array([rng.uniform(-3, 3), rng.uniform(-6, 6), rng.uniform(-3, 3), cx, cy,
                      zoom * rng.uniform(0.96, 1.04)])
    end = start + [rng.uniform(-2, 2), rng.uniform(-3, 3), rng.uniform(-2, 2),
                   zoom * rng.uniform(-6, 6), zoom * rng.uniform(-5, 5), zoom * rng.uniform(-0.02, 0.02)]
    light0 = np.array([rng.uniform(0, 2 * np.pi), rng.uniform(0.05, 0.3), rng.uniform(0.92, 1.06)])
    light1 = light0 + [rng.uniform(-0.3, 0.3), rng.uniform(-0.05, 0.05), rng.uniform(-0.03, 0.03)]
    for f in range(frames):
        t = f / (frames - 1) if frames > 1 else 1.0
        k = ease(t)
        p = start + (end - start) * t + np.r_[rng.normal(0, 0.2, 3), rng.normal(0, 0.4, 2), 0.0]
        pose = Pose(roll=p[0], yaw=p[1], pitch=p[2], cx=p[3], cy=p[4], scale=p[5])
        shape = expression_shape(idt.shape, expression, k, idt.contempt_side)
        light = tuple(light0 + (light1 - light0) * t)
        img, lm = render_frame(idt, shape, pose, light, size, assets)
        yield f + 1, img, lm, k


def _fmt_landmarks(lm: np.ndarray) -> str:
    return "".join(f"{x:16.7e}{y:16.7e}\n" for x, y in lm)


def _write_sequence(args) -> int:
    """Worker: render one sequence and write its PNGs, landmark files and emotion file."""
    root, seed, subject, sequence, frames, size = args
    sid, qid = f"S{subject:03d}", f"{sequence:03d}"
    img_dir = Path(root, "cohn-kanade-images", sid, qid)
    lm_dir = Path(root, "Landmarks", sid, qid)
    for d in (img_dir, lm_dir):
        d.mkdir(parents=True, exist_ok=True)
    n = 0
    for f, img, lm, _ in render_sequence(seed, subject, sequence, frames, size):
        stem = f"{sid}_{qid}_{f:08d}"
        Image.fromarray(img, "RGB").save(img_dir / f"{stem}.png", compress_level=1)  # fast; ~15% larger than level 3
        (lm_dir / f"{stem}_landmarks.txt").write_text(_fmt_landmarks(lm))
        n += 1
    code = EXPRESSIONS.index(sequence_order(seed, subject)[sequence - 1]) + 1
    emo = Path(root, "Emotion", sid, qid, f"{sid}_{qid}_{frames:08d}_emotion.txt")
    emo.parent.mkdir(parents=True, exist_ok=True)
    emo.write_text(f"{float(code):16.7e}\n")
    return n


def _marker_text(subjects: int, frames: int, seed: int, size: tuple[int, int]) -> str:
    return (
        "# Synthetic CK+-layout dataset (lmexpr-nb embedded default)\n\n"
        "Synthetic: not real faces; every output made from it is labelled synthetic.\n\n"
        "Procedural drawings made by `lmexpr_nb.data.synthetic` (numpy, SciPy,\n"
        "Pillow; nothing downloaded) in the CK+ layout, so that the kit's CK+ reader and\n"
        "preprocessing run without a licensed dataset. Numbers made from it show that the\n"
        "pipeline works, not what the paper's model does on CK+.\n\n"
        f"- generator version: {GENERATOR_VERSION}\n"
        f"- seed: {seed}\n"
        f"- subjects: {subjects} (S001..S{subjects:03d}), 7 sequences each (one per CK+ emotion,\n"
        f"  sequence numbers in a seeded shuffled order), {frames} frames each, neutral -> peak\n"
        f"- frame size: {size[0]} x {size[1]} RGB PNG\n"
        "- Emotion files: last frame of every sequence, CK+ codes 1..7\n"
        "  (anger, contempt, disgust, fear, happy, sadness, surprise)\n"
        "- Landmarks: every frame, 68 iBUG points, 0-based pixel coordinates; exact (the\n"
        "  faces are drawn from them)\n"
    )


def write_synthetic_ckplus(out_dir: str | os.PathLike, subjects: int = 24, frames: int = 10, seed: int = 0,
                           size: tuple[int, int] = (640, 490), workers: int = 1) -> dict:
    """Write the synthetic dataset in the CK+ layout under `out_dir`; return a summary.

    The tree is built in a sibling temporary folder and renamed into place at the end, so
    `out_dir` is either complete (with its `SYNTHETIC.md` marker) or absent. An existing
    `out_dir` is replaced only if it is an earlier synthetic tree (has the marker) or
    empty; anything else (say, a real CK+ copy) is refused.
    """
    if subjects < 1 or frames < 1:
        raise ValueError("subjects and frames must be >= 1")
    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a synthetic dataset (no {MARKER}); "
                              "choose an empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    size = (int(size[0]), int(size[1]))
    try:
        write_text(tmp / MARKER, _marker_text(subjects, frames, seed, size))
        jobs = [(str(tmp), int(seed), s, q, int(frames), size)
                for s in range(1, subjects + 1) for q in range(1, len(EXPRESSIONS) + 1)]
        if workers and workers > 1:
            with ProcessPoolExecutor(max_workers=int(workers)) as ex:
                n = sum(ex.map(_write_sequence, jobs, chunksize=len(EXPRESSIONS)))
        else:
            n = sum(map(_write_sequence, jobs))
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"root": str(out), "synthetic": True, "generator_version": GENERATOR_VERSION, "seed": int(seed),
            "subjects": subjects, "sequences": len(jobs), "frames_per_sequence": frames, "images": n,
            "landmark_files": n, "emotion_files": len(jobs), "size": list(size),
            "seconds": round(time.perf_counter() - t0, 2)}
