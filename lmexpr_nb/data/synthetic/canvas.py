"""The raster side: curves, strokes, polygon fills, head pose, the painting canvas, textures.

`_spline` passes through every point it is given, so outlines drawn through landmarks
run exactly along them; `_stroke` turns a curve into a thick-line polygon and
`_polygon_idx` fills polygons. `pose_points` maps face units to pixels under a head
`Pose`; `_Canvas` is a float RGB region of the frame that paints polygons and soft blobs
and knows every pixel's head-frame coordinates (the pose undone) for shading fields and
textures (`_texture`, `_sample`) that move with the head.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


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
