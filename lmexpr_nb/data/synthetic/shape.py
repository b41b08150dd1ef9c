"""The face's geometry in face units: the 68-point mean shape, its landmark groups, depth.

`MEAN_SHAPE` is a 68-point mean shape in the iBUG 300-W point scheme that we construct
from a few face proportions (`FaceProportions`, `mean_shape`), centred on its box, 0.9
units wide (jaw 0 to jaw 16); x to the right, y down, like image coordinates. The index
groups (`JAW`, `R_BROW`, `L_BROW`, `BRIDGE`, `NOSTRILS`, `R_EYE`, `L_EYE`, `OUTER_LIPS`,
`INNER_LIPS`) name its features; `DEPTH` gives every point a rough depth so that yaw and
pitch can be posed (`canvas.pose_points`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
