"""The metrics the kit reports, by name: every table computes its numbers through this registry.

    get(name) -> Metric          list_metrics()          register(name, Metric)
    compute(name, **inputs)      -> [MetricResult]       compute_many(names, **inputs)
    scores(name, **inputs)       -> (N,) one value per generated image (per-image metrics)
    summarise(name, values)      -> MetricResult, the reported number from per-image values

Per-image metrics (psnr, ssim_skimage, ssim_wang, landmark_error, sharpness) score each generated image on
its own. A table keeps each image's score once (experiments/evalset.py's memo, shared by the pair
protocols) and summarises each protocol's rows: the mean over the images that could be scored
(NaN marks one that could not, e.g. no face found), the population std, N, and the count of the
others. `compute` on a per-image metric is exactly `summarise(scores(...))`; "ssim" is both SSIM
variants at once.
Metrics of whole sets: "fid" (FID with Inception, or the labelled FD-dlib stand-in, with KID) and
"identity" (Rank-1, TAR@FAR) compare features. Their `features` makes the embedding (by config:
the FID network or dlib's descriptor; a face recogniser by name) and `compare` turns features into
the reported numbers, so a table embeds every image once and compares any subset of them;
`compute` embeds and compares in one call. "expression_accuracy" scores a trained classifier.

Inputs are keywords, and a metric takes the ones it needs (a missing one is a TypeError naming it):
    fake, real          generated images and their real targets, same order (uint8 (N,H,W,3) RGB,
                        or [-1,1] floats)
    cfg, device         an EvalConfig (or a Config), the torch device of network features
    target_landmarks    (N,68,2) landmarks the generator was given (landmark_error); `detector`
    fake_ids, real_ids  identities (identity; gallery = real, probe = fake); `recognisers`
    fake_labels, classifier   expected expression labels, a metrics/expression.py classifier (Table 4) or
                        a metrics/expression_change.py one (expression_correct, which also needs `source`:
                        the pair's neutral frame)

To add a metric: a short module in metrics/ with its function, one entry in REGISTRY below, and
the table that reports it asks for it by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from lmexpr_nb.metrics.expression import expression_accuracy_metric
from lmexpr_nb.metrics.expression_change import expression_change_scores
from lmexpr_nb.metrics.fid import fd_kid_from_features, feature_extractor, fid_metric
from lmexpr_nb.metrics.identity import identity_metric, identity_summary
from lmexpr_nb.metrics.landmark_error import nme_scores
from lmexpr_nb.metrics.psnr_ssim import SKIMAGE_PROVENANCE, SSIM_VARIANTS, psnr_batch, ssim_batch
from lmexpr_nb.metrics.recognisers import load_recogniser
from lmexpr_nb.metrics.result import MetricResult, mean_std, require
from lmexpr_nb.metrics.sharpness import sharpness_scores


@dataclass(frozen=True)
class Metric:
    """One registered metric; see the module doc for the two kinds."""
    label: str                                   # the column heading of its number in a table
    result_name: str = ""                        # MetricResult.name (as printed outside tables)
    needs: tuple[str, ...] = ()                  # inputs it cannot do without
    scores: Callable[..., np.ndarray] | None = None        # per-image: (**inputs) -> (N,)
    unit: str = ""
    provenance: str = ""
    counts: Callable[[np.ndarray], dict] | None = None     # per-image: extra counts for MetricResult.extra
    compute: Callable[..., list[MetricResult]] | None = None     # whole sets: (**inputs) -> results
    features: Callable | None = None             # whole sets: the embedding (see the module doc)
    compare: Callable | None = None              # whole sets: features -> the reported numbers


def _psnr(*, fake=None, real=None, **_) -> np.ndarray:
    return psnr_batch(fake, real)


def _ssim(variant: str):
    def scores(*, fake=None, real=None, **_) -> np.ndarray:
        return ssim_batch(fake, real, variant)
    return scores


def _ssim_both(**inputs) -> list[MetricResult]:
    return compute_many(["ssim_skimage", "ssim_wang"], **inputs)


REGISTRY: dict[str, Metric] = {
    "psnr": Metric("PSNR (dB)", "PSNR", ("fake", "real"), _psnr, "dB", SKIMAGE_PROVENANCE,
                   counts=lambda v: {"n_identical": int(np.isinf(v).sum())}),     # Eq. 8
    "ssim_skimage": Metric(SSIM_VARIANTS["skimage"]["label"], SSIM_VARIANTS["skimage"]["label"], ("fake", "real"),
                           _ssim("skimage"), "", SKIMAGE_PROVENANCE),               # Eq. 9
    "ssim_wang": Metric(SSIM_VARIANTS["wang"]["label"], SSIM_VARIANTS["wang"]["label"], ("fake", "real"),
                        _ssim("wang"), "", SKIMAGE_PROVENANCE),
    "ssim": Metric("SSIM (both variants)", needs=("fake", "real"), compute=_ssim_both),
    "landmark_error": Metric("landmark NME (inter-ocular)", "Landmark NME (inter-ocular)",
                             ("fake", "target_landmarks"), nme_scores, "fraction",
                             "dlib HOG + 68-point predictor re-detected on each image (metrics/landmark_error.py)",
                             counts=lambda v: {"n_no_face": int(np.isnan(v).sum())}),
    "sharpness": Metric("sharpness (Laplacian var., fake / real)", "Sharpness (Laplacian variance, fake / real)",
                        ("fake", "real", "target_landmarks"), sharpness_scores, "ratio",
                        "3x3 Laplacian of luma, variance over the target landmarks' hull (metrics/sharpness.py)",
                        counts=lambda v: {"n_flat_target": int(np.isnan(v).sum())}),
    "fid": Metric("FID or FD-dlib, KID", needs=("fake", "real"), compute=fid_metric,   # Eq. 10
                  features=feature_extractor, compare=fd_kid_from_features),
    "identity": Metric("Rank-1, TAR@FAR", needs=("fake", "real", "fake_ids", "real_ids"), compute=identity_metric,
                       features=load_recogniser, compare=identity_summary),          # Table 6
    "expression_accuracy": Metric("expression accuracy", needs=("fake", "fake_labels", "classifier"),
                                  compute=expression_accuracy_metric),               # Table 4
    "expression_correct": Metric("expression accuracy", "Expression accuracy",
                                 ("fake", "fake_labels", "classifier", "source"), expression_change_scores,
                                 "fraction", "expression-change classifier trained on the training subjects' real "
                                 "frames (metrics/expression_change.py)"),          # Table 5 realism
}


def register(name: str, metric: Metric) -> None:
    """Add a metric under a new name."""
    if name in REGISTRY:
        raise KeyError(f"metric {name!r} is already registered")
    REGISTRY[name] = metric


def list_metrics() -> list[str]:
    return sorted(REGISTRY)


def get(name: str) -> Metric:
    if name not in REGISTRY:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(list_metrics())}")
    return REGISTRY[name]


def scores(name: str, **inputs) -> np.ndarray:
    """One value per generated image of a per-image metric (NaN where it could not be scored)."""
    m = get(name)
    if m.scores is None:
        raise TypeError(f"metric {name!r} is computed over whole sets, not per image: use compute()")
    require(inputs, *m.needs, metric=name)
    return np.asarray(m.scores(**inputs), dtype=np.float64)


def summarise(name: str, values, provenance: str | None = None) -> MetricResult:
    """The reported number of a per-image metric from its per-image values: the mean and population
    std over the values that are not NaN (inf kept), N = their count; `extra` says how many images
    there were and the metric's own counts (identical pairs for PSNR, no face for landmark NME)."""
    m = get(name)
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    mean, std = mean_std(v[ok])
    extra = {"n_images": int(v.size), **(m.counts(v) if m.counts else {})}
    return MetricResult(m.result_name, mean, int(ok.sum()), std if ok.any() else None, m.unit,
                        m.provenance if provenance is None else provenance, extra)


def compute(name: str, **inputs) -> list[MetricResult]:
    m = get(name)
    if m.compute is None:                    # a per-image metric: its summary over the images
        detector = inputs.get("detector")
        return [summarise(name, scores(name, **inputs),
                          None if detector is None else getattr(detector, "name", type(detector).__name__))]
    require(inputs, *m.needs, metric=name)
    return list(m.compute(**inputs))


def compute_many(names, **inputs) -> list[MetricResult]:
    results: list[MetricResult] = []
    for name in names:
        results.extend(compute(name, **inputs))
    return results
