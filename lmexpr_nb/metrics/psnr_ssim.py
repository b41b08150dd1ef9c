"""PSNR (paper Eq. 8) and SSIM (Eq. 9) on uint8 RGB images, via scikit-image.

Conventions (checked against scikit-image and the reference implementations):
- inputs are uint8 (H, W, 3) RGB; generator outputs in [-1, 1] go through `to_uint8_hwc`
  first (x -> round((x + 1) * 127.5), clipped to 0..255), i.e. the images one would save;
- `data_range=255` is always passed (P = 255 in Eq. 8 and 9), `channel_axis=-1`;
- SSIM is computed per channel and averaged over the three channels (scikit-image's rule
  for `channel_axis`), in two labelled variants:
    "SSIM (skimage 7x7)":          scikit-image's defaults: 7x7 uniform window, sample covariance;
    "SSIM (Wang, Gaussian 1.5)":   Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
                                   population covariance (`gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False`).
  The paper does not say which one it used; both are reported.
- PSNR of two identical images is +inf (scikit-image's value); batch means then are +inf
  too, and the count of identical pairs is reported in `extra`.
"""
from __future__ import annotations

import math

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

SSIM_VARIANTS: dict[str, dict] = {
    "skimage": dict(label="SSIM (skimage 7x7)", kwargs={}),
    "wang": dict(label="SSIM (Wang, Gaussian 1.5)",
                 kwargs=dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)),
}
SKIMAGE_PROVENANCE = "scikit-image, uint8 RGB, data_range=255, channel_axis=-1"


def to_uint8_hwc(x, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Image(s) -> uint8 HWC. Accepts torch tensors or arrays, one image or a batch.

    uint8 input is returned as HWC (CHW uint8 is transposed). Float input is mapped from
    `value_range` (default [-1, 1], the generator's tanh range) to 0..255 and rounded.
    Float layout: CHW / NCHW when the channel axis (-3) has 1 or 3 entries and the last
    axis does not; otherwise HWC / NHWC.
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.ndim not in (3, 4):
        raise ValueError(f"expected an image (3-D) or a batch (4-D), got shape {a.shape}")
    chw = a.shape[-3] in (1, 3) and a.shape[-1] not in (1, 3)
    if chw:
        a = np.moveaxis(a, -3, -1)
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == bool or np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"integer images must be uint8, got {a.dtype}")
    lo, hi = value_range
    scaled = (a.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.ascontiguousarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))


def _as_list(images) -> list[np.ndarray]:
    """A list of uint8 HWC images from a list, an (N, ...) array or tensor."""
    if isinstance(images, (list, tuple)):
        return [to_uint8_hwc(im) for im in images]
    a = to_uint8_hwc(images)
    return list(a) if a.ndim == 4 else [a]


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim != 3:
        raise ValueError(f"expected (H, W, C) images, got {a.shape}")


def psnr(a, b) -> float:
    """PSNR in dB of two images (Eq. 8, P = 255)."""
    a, b = to_uint8_hwc(a), to_uint8_hwc(b)
    _check_pair(a, b)
    if np.array_equal(a, b):
        return math.inf
    return float(peak_signal_noise_ratio(a, b, data_range=255))


def ssim(a, b, variant: str = "wang") -> float:
    """SSIM of two images (Eq. 9), variant "skimage" or "wang" (see the module docstring)."""
    if variant not in SSIM_VARIANTS:
        raise ValueError(f"SSIM variant must be one of {sorted(SSIM_VARIANTS)}, got {variant!r}")
    a, b = to_uint8_hwc(a), to_uint8_hwc(b)
    _check_pair(a, b)
    return float(structural_similarity(a, b, data_range=255, channel_axis=-1,
                                       **SSIM_VARIANTS[variant]["kwargs"]))


def psnr_batch(fakes, reals) -> np.ndarray:
    """Per-pair PSNR (dB) over two aligned lists/batches."""
    fa, re = _as_list(fakes), _as_list(reals)
    if len(fa) != len(re):
        raise ValueError(f"{len(fa)} generated vs {len(re)} real images")
    return np.array([psnr(x, y) for x, y in zip(fa, re)], dtype=np.float64)


def ssim_batch(fakes, reals, variant: str = "wang") -> np.ndarray:
    fa, re = _as_list(fakes), _as_list(reals)
    if len(fa) != len(re):
        raise ValueError(f"{len(fa)} generated vs {len(re)} real images")
    return np.array([ssim(x, y, variant) for x, y in zip(fa, re)], dtype=np.float64)
