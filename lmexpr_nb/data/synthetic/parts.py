"""The face's parts, painted onto a `canvas._Canvas` from the posed landmarks.

`_draw_head` paints back to front: back hair, neck, ears, the face (jaw contour and
skull), expression folds (`_draw_folds`), beard, hair cap, brows, eyes, nose, mouth and
glasses (`_draw_beard`, `_draw_brows`, `_draw_eyes`, `_draw_nose`, `_draw_mouth`,
`_draw_glasses`). Every feature is drawn from its landmarks (17-26 the top edge of the
brows, 27-35 the nose, 36-47 the eye openings, 48-67 the lips), so the landmark file is
exact. `_cues` turns the landmarks' motion away from neutral into fold depths.
"""
from __future__ import annotations

import numpy as np

from lmexpr_nb.data.synthetic.canvas import _Canvas, _ellipse_pts, _sample, _spline, _stroke
from lmexpr_nb.data.synthetic.identity import Identity
from lmexpr_nb.data.synthetic.shape import INNER_LIPS, JAW, L_BROW, L_EYE, OUTER_LIPS, R_BROW, R_EYE


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
