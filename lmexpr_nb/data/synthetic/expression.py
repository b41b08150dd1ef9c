"""Expressions as landmark displacements: FACS-style prototypes of the seven CK+ emotions.

`expression_displacements` moves a 68-point shape (face units) towards one of
`EXPRESSIONS` at an intensity in [0, 1] (`expression_shape` applies it); `ease` is the
neutral -> peak intensity curve along a sequence.
"""
from __future__ import annotations

import numpy as np

from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.data.synthetic.shape import JAW, L_BROW, L_EYE, R_BROW, R_EYE

EXPRESSIONS: tuple[str, ...] = CLASSES[1:]      # CK+ emotion codes 1..7, in code order


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
