"""Frechet distance (paper Eq. 10), KID, and the FID / FD-dlib choice.

    FD = |mu_1 - mu_2|^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

Written once, for any features:
- `scipy.linalg.sqrtm` without the `disp` argument (deprecated, then removed in scipy 1.18);
- when the product S_1 S_2 is singular (fewer samples than feature dimensions, the normal
  case for CK+ with 2048-d Inception features), sqrtm may fail or come back inaccurate:
  then eps is added to both diagonals and it is recomputed (reported in the details);
- a complex square root is checked: a large imaginary part on the diagonal raises, else
  the real part is kept (the paper: "only the real part is taken");
- cross-check: Tr (S_1 S_2)^(1/2) = sum_i sqrt(lambda_i(S_1 S_2)), the eigenvalues of the
  product being real and >= 0 (it is similar to the PSD matrix S_1^(1/2) S_2 S_1^(1/2));
  from features with N < D the same eigenvalues come from a small N1 x N2 SVD.
  At D = 2048, sqrtm takes tens of seconds on a small CPU; the Frechet distance of a few
  hundred images is dominated by it, not by the network.

KID (Binkowski et al. 2018): the unbiased MMD^2 estimate with the cubic polynomial kernel
k(x, y) = (x.y / d + 1)^3, averaged over seeded random subsets (sampling without
replacement inside each subset), reported with its std over subsets. Values are raw (not
x1000 as some papers print them).

`fid_or_standin` picks the features by config, never silently:
    EvalConfig.fid_features == "inception":    pytorch-fid's Inception weights; when they are
                                               missing, MissingWeightsError propagates;
    EvalConfig.fid_features == "dlib-standin": dlib's 128-d face descriptor, reported as
                                               "FD-dlib" (and "KID-dlib"), never as FID.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import linalg

from lmexpr_nb.metrics.inception import inception_features, load_fid_inception
from lmexpr_nb.metrics.recognisers import DlibRecogniser
from lmexpr_nb.metrics.result import MetricResult, eval_config, require

STANDIN_NAME = "FD-dlib"


def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased, ddof=1, rows = samples) of an (N, D) feature array."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need an (N, D) feature array with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _sqrtm(m: np.ndarray) -> tuple[np.ndarray, float]:
    """scipy sqrtm (no `disp`) and its relative residual |X X - M| / |M|."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # "matrix is singular ..." is judged by the residual below
        x = linalg.sqrtm(m)
    x = np.asarray(x)
    if not np.isfinite(x).all():
        return x, math.inf
    denom = max(np.linalg.norm(m), 1e-300)
    return x, float(np.linalg.norm(x @ x - m) / denom)


def trace_sqrt_product_eig(sigma1, sigma2) -> float:
    """Tr (S1 S2)^(1/2) as the sum of the square roots of the eigenvalues of S1 S2."""
    ev = np.linalg.eigvals(np.asarray(sigma1, np.float64) @ np.asarray(sigma2, np.float64))
    return float(np.sqrt(np.clip(ev.real, 0.0, None)).sum())


def trace_sqrt_product_lowrank(feats1, feats2) -> float:
    """Tr (S1 S2)^(1/2) from the features themselves, exact and cheap when N < D.

    With centred features A (N1 x D), B (N2 x D), S1 = A'A / (N1-1), S2 = B'B / (N2-1): the
    nonzero eigenvalues of S1 S2 are those of (A B')(A B')' / ((N1-1)(N2-1)), so the sum of
    the square roots of the eigenvalues of S1 S2 is the sum of the singular values of the
    small N1 x N2 matrix A B', divided by sqrt((N1-1)(N2-1)).
    """
    a = np.asarray(feats1, np.float64)
    b = np.asarray(feats2, np.float64)
    a, b = a - a.mean(0), b - b.mean(0)
    sv = np.linalg.svd(a @ b.T, compute_uv=False)
    return float(sv.sum() / math.sqrt((len(a) - 1) * (len(b) - 1)))


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, imag_atol: float = 1e-3,
                     residual_tol: float = 1e-5, return_details: bool = False, crosscheck: bool = True):
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Eq. 10).

    Returns the distance, or (distance, details) with details = {eps_added, residual,
    max_imag, trace_sqrt (used)} and, with `crosscheck`, {trace_sqrt_eig, fd_eig, rel_diff}
    (the eigenvalue route; it costs about half as much as sqrtm again at D = 2048).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape}/{mu2.shape}, sigma {s1.shape}/{s2.shape}")
    diff = mu1 - mu2

    covmean, residual = _sqrtm(s1 @ s2)
    eps_added = 0.0
    if not residual <= residual_tol:
        # sqrtm failed or is inaccurate on a singular product: offset the diagonals, recompute
        offset = np.eye(s1.shape[0]) * eps
        covmean, residual = _sqrtm((s1 + offset) @ (s2 + offset))
        eps_added = eps
        if not np.isfinite(covmean).all():
            raise FloatingPointError("sqrtm of the covariance product is not finite even with "
                                     f"eps={eps} on the diagonal")
    max_imag = 0.0
    if np.iscomplexobj(covmean):
        max_imag = float(np.max(np.abs(np.diagonal(covmean).imag)))
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=imag_atol):
            raise ValueError(f"sqrtm of the covariance product has a large imaginary component "
                             f"({max_imag:.3g} > {imag_atol}); the statistics are not valid covariances")
        covmean = covmean.real
    tr_covmean = float(np.trace(covmean))
    base = float(diff @ diff) + float(np.trace(s1) + np.trace(s2))
    fd = base - 2.0 * tr_covmean
    if not return_details:
        return fd
    details = dict(eps_added=eps_added, residual=residual, max_imag=max_imag, trace_sqrt=tr_covmean)
    if crosscheck:
        off = np.eye(s1.shape[0]) * eps_added
        details.update(_crosscheck(base, tr_covmean, trace_sqrt_product_eig(s1 + off, s2 + off), "eigvals"))
    return fd, details


def _crosscheck(base, tr_used, tr_check, method) -> dict:
    return dict(trace_sqrt_eig=tr_check, fd_eig=base - 2.0 * tr_check, crosscheck_method=method,
                rel_diff=abs(tr_check - tr_used) / max(abs(tr_used), 1e-12))


def frechet_distance_features(feats1, feats2, return_details: bool = False, crosscheck: bool = True, **kw):
    """Frechet distance straight from two (N, D) feature arrays.

    The cross-check uses the eigenvalues of S1 S2 when N >= D, and the same eigenvalues via
    the small SVD of `trace_sqrt_product_lowrank` when N < D (exact, and cheap at D = 2048).
    """
    mu1, s1 = feature_stats(feats1)
    mu2, s2 = feature_stats(feats2)
    lowrank = min(len(feats1), len(feats2)) < s1.shape[0]
    out = frechet_distance(mu1, s1, mu2, s2, return_details=return_details,
                           crosscheck=crosscheck and not lowrank, **kw)
    if return_details and crosscheck and lowrank:
        fd, det = out
        base = fd + 2.0 * det["trace_sqrt"]
        det.update(_crosscheck(base, det["trace_sqrt"], trace_sqrt_product_lowrank(feats1, feats2),
                               "low-rank SVD (N < D)"))
    return out


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3, d = feature dimension."""
    d = x.shape[1]
    return (x @ y.T / d + 1.0) ** 3


def kid(feats_real, feats_fake, subset_size: int = 100, num_subsets: int = 100,
        seed: int = 0) -> tuple[float, float, int]:
    """Unbiased MMD^2 with the cubic polynomial kernel over random subsets.

    Returns (mean, std over subsets, m), m = min(subset_size, N_real, N_fake) the subset size
    actually used. Per subset, with Kxx, Kyy, Kxy the kernel matrices:
        MMD^2_u = sum_{i!=j} Kxx / (m (m-1)) + sum_{i!=j} Kyy / (m (m-1)) - 2 sum_{ij} Kxy / m^2
    """
    x_all = np.asarray(feats_real, np.float64)
    y_all = np.asarray(feats_fake, np.float64)
    if x_all.ndim != 2 or y_all.ndim != 2 or x_all.shape[1] != y_all.shape[1]:
        raise ValueError(f"need (N, D) arrays with equal D, got {x_all.shape} and {y_all.shape}")
    m = min(int(subset_size), len(x_all), len(y_all))
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got subset size {m}")
    rng = np.random.default_rng(seed)
    vals = np.empty(int(num_subsets))
    for s in range(int(num_subsets)):
        x = x_all[rng.choice(len(x_all), m, replace=False)]
        y = y_all[rng.choice(len(y_all), m, replace=False)]
        kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        vals[s] = within - 2.0 * kxy.sum() / (m * m)
    return float(vals.mean()), float(vals.std()), m


# ----------------------------------------------------------------------------- FID or FD-dlib

def _extractor(cfg, device, batch_size):
    """(embed: images -> (N, D) features, reported FD name, KID name, provenance) by config."""
    kind = cfg.fid_features
    if kind == "inception":
        model, prov = load_fid_inception(cfg.inception_weights, device=device)
        return lambda ims: inception_features(ims, model, batch_size=batch_size, device=device), \
            "FID", "KID", prov
    if kind == "dlib-standin":
        rec = DlibRecogniser(detect=False)   # whole crop as the face box: deterministic, never "no face"
        return rec.embed, STANDIN_NAME, "KID-dlib", \
            f"STAND-IN: {rec.provenance} features in place of Inception (not comparable to FID)"
    raise ValueError(f"EvalConfig.fid_features must be 'inception' or 'dlib-standin', got {kind!r}")


def fid_or_standin(real_images, fake_images, cfg=None, device: str = "cpu",
                   batch_size: int = 50, kid_seed: int = 0) -> list[MetricResult]:
    """[Frechet distance, KID] of generated vs real images, features chosen by `cfg.fid_features`.

    Names as reported: "FID"/"KID" with Inception, "FD-dlib"/"KID-dlib" with the stand-in.
    N of each set is in the result (n = number of generated images; extra n_real, n_fake).
    """
    cfg = eval_config(cfg)
    embed, fd_name, kid_name, prov = _extractor(cfg, device, batch_size)
    return fd_kid_from_features(np.asarray(embed(real_images)), np.asarray(embed(fake_images)), fd_name, kid_name,
                                prov, cfg, kid_seed)


def feature_extractor(cfg=None, device: str = "cpu", batch_size: int = 50):
    """(embed: images -> (N, D) features, FD name, KID name, provenance) chosen by `cfg.fid_features`,
    for callers that embed each image once and score several subsets (evalset's shared pairs)."""
    return _extractor(eval_config(cfg), device, batch_size)


def fd_kid_from_features(fr, ff, fd_name: str, kid_name: str, prov: str, cfg=None,
                         kid_seed: int = 0) -> list[MetricResult]:
    """[Frechet distance, KID] (as fid_or_standin reports them) from real and generated features."""
    cfg = eval_config(cfg)
    fr, ff = np.asarray(fr), np.asarray(ff)
    fd, det = frechet_distance_features(fr, ff, return_details=True)
    kmean, kstd, m = kid(fr, ff, cfg.kid_subset_size, cfg.kid_subsets, seed=kid_seed)
    dim = fr.shape[1]
    extra = dict(n_real=len(fr), n_fake=len(ff), feature_dim=dim,
                 singular_covariance=bool(min(len(fr), len(ff)) <= dim), eps_added=det["eps_added"],
                 fd_crosscheck=det["fd_eig"], crosscheck_rel_diff=det["rel_diff"])
    if det["rel_diff"] > 1e-3:
        extra["warning"] = (f"trace cross-check differs by {det['rel_diff']:.2g} (relative): "
                            f"the covariance square root is numerically unreliable")
    if min(len(fr), len(ff)) < 2048 and fd_name == "FID":
        extra["note"] = "N < 2048: FID is biased upward at this sample size; compare KID"
    return [MetricResult(fd_name, fd, len(ff), None, "", prov, extra),
            MetricResult(kid_name, kmean, len(ff), kstd, "", prov,
                         dict(n_real=len(fr), n_fake=len(ff), subset_size=m, subsets=cfg.kid_subsets))]


def fid_metric(*, fake=None, real=None, cfg=None, device="cpu", **_) -> list[MetricResult]:
    require(dict(fake=fake, real=real), "fake", "real", metric="fid")
    return fid_or_standin(real, fake, cfg, device=device)
