"""What every metric returns (`MetricResult`), and the helpers the metric modules share."""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lmexpr_nb.config import EvalConfig


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


def eval_config(cfg):
    """EvalConfig from an EvalConfig, a Config (uses .eval) or None (defaults)."""
    if cfg is None:
        return EvalConfig()
    return getattr(cfg, "eval", cfg)


def require(inputs: dict, *keys: str, metric: str) -> None:
    missing = [k for k in keys if inputs.get(k) is None]
    if missing:
        raise TypeError(f"metric {metric!r} needs the input(s) {', '.join(missing)}")


def mean_std(values) -> tuple[float, float]:
    """Mean and population std (ddof=0); NaN for an empty set, inf kept as inf."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # inf - inf in std when a PSNR is inf
        return float(v.mean()), float(v.std())
