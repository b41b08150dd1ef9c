"""Frames and sequences: a posed identity rendered from its final landmarks.

`render_frame` poses the expression-moved landmarks (`canvas.pose_points`), adds the
points that are drawn but not written (skull, hair, ears, neck: `_aux_points`), paints
the head (`parts._draw_head`) over the subject's static background (`_static_assets`:
wall, shoulders, shirt, neckline; cached per subject by `_subject_assets`) and lights
the frame. `render_sequence` yields one neutral -> peak sequence with a drifting head
pose and lighting; `sequence_order` is a subject's seeded order of expressions.
"""
from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

from lmexpr_nb.data.synthetic.canvas import Pose, _Canvas, _ellipse_pts, _spline, _stroke, _texture, pose_points
from lmexpr_nb.data.synthetic.expression import EXPRESSIONS, ease, expression_shape
from lmexpr_nb.data.synthetic.identity import Identity, make_identity
from lmexpr_nb.data.synthetic.parts import _cues, _draw_head
from lmexpr_nb.data.synthetic.shape import DEPTH


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
