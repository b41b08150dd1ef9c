"""A synthetic person: a neutral 68-point shape deformed from the mean shape, plus appearance.

`neutral_shape` deforms `shape.MEAN_SHAPE` (face, jaw, chin, eyes, brows, nose, mouth,
a little asymmetry); `random_identity` samples a whole person (that shape, skin, lips,
hair, brows, eyes, glasses, beard, background wall, shirt); `make_identity` is subject
number `subject` under a dataset seed, the same whatever the dataset size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmexpr_nb.data.synthetic.shape import JAW, L_EYE, MEAN_SHAPE, R_EYE

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


def make_identity(seed: int, subject: int) -> Identity:
    """The identity of subject number `subject` (1-based) under `seed`: depends only on
    (seed, subject), so a subject looks the same whatever the dataset size."""
    return random_identity(np.random.default_rng([int(seed), int(subject), 0]))
