"""Paste a generated crop back into the photo it came from (explore/infer.py's last step).

Paste-back samples the generated crop at every photo pixel of the crop's footprint (bilinear,
through the photo -> crop matrix) and blends it with a mask that is 1 inside and falls smoothly
to 0 over the outer `feather` fraction of the crop (`feather_mask`, mask="box"), or follows the
landmarks' hull (`face_mask`, mask="face"); pixels outside the footprint are returned unchanged.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull
from skimage.draw import polygon

from lmexpr_nb.landmarks.align import face_frame


def apply_matrix(M, pts) -> np.ndarray:
    """Points (..., 2) through the 3x3 affine matrix M."""
    p = np.asarray(pts, dtype=np.float64)
    return p @ M[:2, :2].T + M[:2, 2]


def feather_mask(size: int, feather: float = 0.12) -> np.ndarray:
    """(size,size) weights: 1 inside, smoothstep to 0 over the outer `feather` fraction of the crop."""
    c = np.arange(size, dtype=np.float64) + 0.5
    edge = np.minimum(c, size - c)                      # distance to the nearest border, per axis
    d = np.minimum(edge[:, None], edge[None, :]) / max(feather * size, 1e-6)
    return _smoothstep(d)


def _smoothstep(x) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def face_mask(size: int, landmarks_list, feather: float = 0.12, grow: float = 0.08) -> np.ndarray:
    """(size,size) weights from the convex hull of the landmarks (extended up to cover the forehead),
    grown by `grow` x size and blurred over `feather` x size, times the box mask."""
    pts = np.concatenate([np.asarray(p, dtype=np.float64) for p in landmarks_list])
    brows = np.concatenate([np.asarray(p, dtype=np.float64)[17:27] for p in landmarks_list])
    _, down, iod = face_frame(landmarks_list[0])
    pts = np.concatenate([pts, brows - 0.6 * iod * down])
    hull = pts[ConvexHull(pts).vertices]
    m = np.zeros((size, size), np.float64)
    rr, cc = polygon(hull[:, 1], hull[:, 0], (size, size))
    m[rr, cc] = 1.0
    if grow > 0:
        m = ndimage.binary_dilation(m > 0, iterations=max(1, int(round(grow * size)))).astype(np.float64)
    m = ndimage.gaussian_filter(m, sigma=max(feather * size / 3, 0.5))
    return np.clip(m, 0, 1) * feather_mask(size, feather / 2)


def paste_back(frame: np.ndarray, crop: np.ndarray, to_crop: np.ndarray, mask: np.ndarray):
    """Blend `crop` (S,S,3) into `frame` through the photo->crop matrix with `mask` (S,S) weights.
    Returns (new frame, per-pixel weights over the window, window (y0, y1, x0, x1))."""
    h, w = frame.shape[:2]
    s = crop.shape[0]
    inv = np.linalg.inv(to_crop)
    corners = apply_matrix(inv, np.array([[-0.5, -0.5], [s - 0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5]]))
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [w, h])
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out, np.zeros((0, 0)), (0, 0, 0, 0)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    uv = apply_matrix(to_crop, np.stack([xs, ys], axis=-1))          # crop (x, y) of every window pixel
    coords = [uv[..., 1], uv[..., 0]]
    # weights: the mask sampled there, 0 outside the crop square
    wgt = ndimage.map_coordinates(mask, coords, order=1, mode="constant", cval=0.0)
    inside = (uv[..., 0] >= -0.5) & (uv[..., 0] <= s - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= s - 0.5)
    wgt = np.where(inside, np.clip(wgt, 0, 1), 0.0)
    gen = np.stack([ndimage.map_coordinates(crop[..., c].astype(np.float64), coords, order=1, mode="nearest")
                    for c in range(3)], axis=-1)
    region = out[y0:y1, x0:x1].astype(np.float64)
    blended = region + wgt[..., None] * (gen - region)
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out, wgt, (int(y0), int(y1), int(x0), int(x1))
