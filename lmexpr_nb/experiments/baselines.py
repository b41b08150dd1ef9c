"""Two baselines that cost nothing, rows beside the model in Tables 5-7.

Both take the same arguments, so a table can loop over BASELINES:

    fn(source_uint8 (H, W, 3), source_landmarks (68, 2), target_landmarks (68, 2)) -> uint8 (H, W, 3)

- `copy_source`: the source image unchanged (what a generator that ignores the target
  scores; a strong row for PSNR/SSIM and identity when the expression change is small);
- `warp_to_landmarks`: the source warped so that its landmarks land on the target's, by a
  piecewise affine map (skimage.transform.PiecewiseAffineTransform) over a Delaunay
  triangulation of the 68 landmarks plus 16 fixed border points (the 4 corners and 3 more
  points on each side, identical in source and target). The border points make the
  triangulation cover the whole image, so every output pixel is defined and the image
  outside the face stays where it was; inside the landmarks' hull each triangle moves with
  its three landmarks. Output has the source's size and dtype; bilinear interpolation
  (order 1), edge pixels replicated where a map reaches outside the source.
Landmarks are (x, y) pixel coordinates, pixel centres at integers (the kit's convention).
"""
from __future__ import annotations

import numpy as np
from skimage.transform import PiecewiseAffineTransform, warp


def copy_source(source, source_landmarks=None, target_landmarks=None) -> np.ndarray:
    """Baseline 1: the source image itself (landmarks ignored)."""
    return np.array(source, copy=True)


def border_points(h: int, w: int, per_side: int = 3) -> np.ndarray:
    """(4 + 4 * per_side, 2) (x, y) points: the corners and `per_side` evenly spaced points per edge."""
    xs = np.linspace(0, w - 1, per_side + 2)
    ys = np.linspace(0, h - 1, per_side + 2)
    pts = [(x, 0) for x in xs] + [(x, h - 1) for x in xs]
    pts += [(0, y) for y in ys[1:-1]] + [(w - 1, y) for y in ys[1:-1]]
    return np.array(pts, dtype=np.float64)


def _piecewise_affine(src_pts: np.ndarray, dst_pts: np.ndarray):
    if hasattr(PiecewiseAffineTransform, "from_estimate"):      # scikit-image >= 0.26
        tf = PiecewiseAffineTransform.from_estimate(src_pts, dst_pts)
        ok = bool(tf)
    else:
        tf = PiecewiseAffineTransform()
        ok = tf.estimate(src_pts, dst_pts)
    if not ok:
        raise RuntimeError("piecewise affine estimation failed (degenerate landmark triangles)")
    return tf


def warp_to_landmarks(source, source_landmarks, target_landmarks, border_per_side: int = 3) -> np.ndarray:
    """Baseline 2: warp `source` so that `source_landmarks` move onto `target_landmarks`."""
    img = np.asarray(source)
    h, w = img.shape[:2]
    src = np.asarray(source_landmarks, np.float64)[:, :2]
    dst = np.asarray(target_landmarks, np.float64)[:, :2]
    if src.shape != dst.shape:
        raise ValueError(f"landmark shapes differ: {src.shape} vs {dst.shape}")
    # landmarks outside the frame would fall outside the border points' hull: clamp them
    # into the image (only those points move; the warp stays defined everywhere)
    lim = np.array([w - 1, h - 1], np.float64)
    src, dst = np.clip(src, 0, lim), np.clip(dst, 0, lim)
    border = border_points(h, w, border_per_side)
    # skimage's warp wants the inverse map, output (target) coordinates -> input (source) ones
    tf = _piecewise_affine(np.vstack([dst, border]), np.vstack([src, border]))
    out = warp(img, tf, output_shape=img.shape, order=1, mode="edge", preserve_range=True)
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(img.dtype)
    return out.astype(img.dtype)


BASELINES = {
    "copy source": copy_source,
    "warp (piecewise affine)": warp_to_landmarks,
}
