"""The one similarity alignment of two 68-point shapes (iBUG order, (x, y) pixels).

Every place that puts one face's landmarks onto another face uses this module: the paper's
cross-identity landmark transfer (Fig. 8, experiments/figures.py), the explorer's landmark donor
(explore/state.py), photo editing with a donor photo (explore/infer.py), Table 4's donor rows
(experiments/table4.py), motion transfer (landmarks/motion.py: a donor's change from its neutral
frame, rotated and scaled onto the source) and the expression model, which moves every face into one
reference frame before it averages displacements (explore/expressions.py).

A similarity (rotation, uniform scale, translation; no reflection) is written as complex numbers,
z -> a z + t with a = s e^{i theta}. `similarity_fit(src, dst, points)` is the least-squares fit
of src[points] onto dst[points] (Umeyama 1991 in the plane: a = sum conj(x_c) y_c / sum |x_c|^2
over the centred points, t = mean(y) - a mean(x)).

`STABLE` are the points expressions hardly move: the nose (27-35), the outer and inner eye
corners (36, 39, 42, 45) and the upper jaw beside the ears (0, 1, 15, 16), which give the fit
the face's width; lids, brows, lips and the lower jaw are left out because expressions move them.
`align_shape(shape, onto)` is a shape moved onto another face: its own shape and expression are
kept, only its placement, size and rotation follow `onto`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RIGHT_EYE, LEFT_EYE = tuple(range(36, 42)), tuple(range(42, 48))   # the subject's right is the image's left
STABLE = (0, 1, 15, 16, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)


@dataclass(frozen=True)
class Similarity:
    a: complex = 1 + 0j
    t: complex = 0j

    def apply(self, pts) -> np.ndarray:
        z = _to_complex(pts)
        return _from_complex(self.a * z + self.t)

    def apply_vectors(self, vecs) -> np.ndarray:
        """Displacements transform without the translation."""
        return _from_complex(self.a * _to_complex(vecs))

    def inverse(self) -> "Similarity":
        return Similarity(1 / self.a, -self.t / self.a)

    @property
    def scale(self) -> float:
        return float(abs(self.a))

    @property
    def angle(self) -> float:
        return float(np.angle(self.a))


def _to_complex(pts) -> np.ndarray:
    p = np.asarray(pts, dtype=np.float64)
    return p[..., 0] + 1j * p[..., 1]


def _from_complex(z) -> np.ndarray:
    return np.stack([z.real, z.imag], axis=-1)


def similarity_fit(src, dst, points=STABLE) -> Similarity:
    """Least-squares similarity (no reflection) taking src[points] onto dst[points]."""
    x, y = _to_complex(np.asarray(src)[list(points)]), _to_complex(np.asarray(dst)[list(points)])
    mx, my = x.mean(), y.mean()
    xc, yc = x - mx, y - my
    den = float(np.sum(np.abs(xc) ** 2))
    if den <= 1e-12:
        raise ValueError("degenerate landmarks: the alignment points coincide")
    a = complex(np.sum(np.conj(xc) * yc) / den)
    return Similarity(a, complex(my - a * mx))


def align_shape(shape, onto, points=STABLE) -> np.ndarray:
    """`shape` (68, 2) moved onto the face whose landmarks are `onto` by the similarity fitted on
    `points` (float64)."""
    return similarity_fit(shape, onto, points).apply(shape)


def canonical_transform(lm, points=STABLE) -> Similarity:
    """Eye line horizontal, stable-point centroid at 0, their RMS radius 1."""
    lm = np.asarray(lm, dtype=np.float64)
    eye = lm[list(LEFT_EYE)].mean(0) - lm[list(RIGHT_EYE)].mean(0)
    z = _to_complex(lm[list(points)])
    c = z.mean()
    rms = float(np.sqrt(np.mean(np.abs(z - c) ** 2)))
    if rms <= 1e-9 or np.hypot(*eye) <= 1e-9:
        raise ValueError("degenerate landmarks: cannot normalise this shape")
    a = np.exp(-1j * np.arctan2(eye[1], eye[0])) / rms
    return Similarity(complex(a), complex(-a * c))


def face_frame(lm) -> tuple[np.ndarray, np.ndarray, float]:
    """(unit vector along the eye line toward the subject's left, unit 'down' vector, inter-ocular distance)."""
    lm = np.asarray(lm, dtype=np.float64)
    e = lm[list(LEFT_EYE)].mean(0) - lm[list(RIGHT_EYE)].mean(0)
    iod = float(np.hypot(*e))
    if iod <= 1e-9:
        raise ValueError("degenerate landmarks: the eyes coincide")
    ex = e / iod
    return ex, np.array([-ex[1], ex[0]]), iod
