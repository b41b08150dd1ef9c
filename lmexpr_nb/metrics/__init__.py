"""Evaluation metrics of the paper's Sec. IV-C, one short module per metric, one registry.

Modules (each importable on its own; heavy imports happen inside functions):
    psnr_ssim       PSNR (Eq. 8), SSIM (Eq. 9) in two labelled variants, [-1,1] -> uint8 helper
    fid             Frechet distance (Eq. 10), feature statistics, KID; `fid_or_standin`
    inception       the FID Inception-v3 (pytorch-fid layout and preprocessing), 2048-d features
    identity        verification maths in numpy: cosine scores, Rank-1, TAR@FAR (step ROC)
    recognisers     dlib ResNet descriptor (default), Light CNN-29 v2, VGG-Face: `embed(images)`
    expression      small expression CNN trained on real training images; accuracy of generated ones
    landmark_error  dlib landmarks re-detected on generated images vs target, inter-ocular NME

Registry (stylegan2-ada `metric_main` style): `compute(name, **inputs)` runs one metric and
returns a list of `MetricResult`s; `compute_many(names, **inputs)` runs several. Every
metric takes keyword inputs and uses the ones it needs:
    fake               generated images (uint8 (N,H,W,3) RGB, or [-1,1] float CHW/HWC)
    real               the corresponding real (target) images, same order as `fake`
    cfg                an EvalConfig (or a Config, whose .eval is used)
    device             torch device for network features ("cpu" by default)
    fake_ids, real_ids identities (identity metric; gallery = real, probe = fake)
    fake_labels        expected expression labels of `fake` (expression metric)
    classifier         a model from expression.train_expression_classifier
    target_landmarks   (N, 68, 2) target landmarks of `fake` (landmark metric)
A `MetricResult` carries the value, the name as reported ("FID" or "FD-dlib", never one for
the other), N, and provenance (which weights, or which stand-in).
"""
from __future__ import annotations

import importlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable


@dataclass
class MetricResult:
    """One reported number.

    name:        as printed in a table ("PSNR", "SSIM (Wang, Gaussian 1.5)", "FID", "FD-dlib", ...)
    value:       the number (mean over images for per-image metrics)
    n:           how many images (or pairs, or probes) it is computed from
    std:         spread over images / KID subsets where meaningful, else None
    unit:        "dB", "fraction", "" ...
    provenance:  what it was computed with: weights file (and hash check) or the stand-in used
    extra:       anything else a table may show (counts of fallbacks, warnings, N of each set)
    """
    name: str
    value: float
    n: int
    std: float | None = None
    unit: str = ""
    provenance: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_row(self) -> dict[str, Any]:
        row = asdict(self)
        extra = row.pop("extra")
        row.update({f"extra.{k}": v for k, v in extra.items()})
        return row

    def __str__(self) -> str:
        std = "" if self.std is None or not math.isfinite(self.std) else f" +- {self.std:.4g}"
        unit = f" {self.unit}" if self.unit and self.unit != "fraction" else ""
        return f"{self.name}: {self.value:.6g}{std}{unit} (N={self.n}; {self.provenance})"


# name -> "module:function"; imported on first use so that `import lmexpr_nb.metrics` stays light.
_REGISTRY: dict[str, str] = {
    "psnr": "psnr_ssim:psnr_metric",
    "ssim": "psnr_ssim:ssim_metric",                  # both labelled SSIM variants
    "ssim_skimage": "psnr_ssim:ssim_skimage_metric",
    "ssim_wang": "psnr_ssim:ssim_wang_metric",
    "fid": "fid:fid_metric",                          # FID (Inception) or FD-dlib by config, with KID
    "identity": "identity:identity_metric",           # Rank-1, TAR@FAR=1%, 0.1% per recogniser
    "expression_accuracy": "expression:expression_accuracy_metric",
    "landmark_error": "landmark_error:landmark_error_metric",
}


def register(name: str, target: str | Callable) -> None:
    """Add a metric: `target` is a callable or "module:function" inside lmexpr_nb.metrics."""
    if name in _REGISTRY:
        raise KeyError(f"metric {name!r} is already registered")
    _REGISTRY[name] = target  # type: ignore[assignment]


def list_metrics() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str) -> Callable[..., list[MetricResult]]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(list_metrics())}")
    target = _REGISTRY[name]
    if callable(target):
        return target
    mod, fn = target.split(":")
    return getattr(importlib.import_module(f"{__name__}.{mod}"), fn)


def compute(name: str, **inputs) -> list[MetricResult]:
    out = get(name)(**inputs)
    return [out] if isinstance(out, MetricResult) else list(out)


def compute_many(names, **inputs) -> list[MetricResult]:
    results: list[MetricResult] = []
    for name in names:
        results.extend(compute(name, **inputs))
    return results


def eval_config(cfg):
    """EvalConfig from an EvalConfig, a Config (uses .eval) or None (defaults)."""
    from ..config import EvalConfig
    if cfg is None:
        return EvalConfig()
    return getattr(cfg, "eval", cfg)


def require(inputs: dict, *keys: str, metric: str) -> None:
    missing = [k for k in keys if inputs.get(k) is None]
    if missing:
        raise TypeError(f"metric {metric!r} needs the input(s) {', '.join(missing)}")


__all__ = ["MetricResult", "register", "list_metrics", "get", "compute", "compute_many", "eval_config"]
