"""The preprocessing cache every later stage reads: one `cache.npz` + `report.json` per dataset.

Arrays (N frames): images uint8 (N,S,S,3); landmarks float32 (N,68,2) in crop pixels; labels
int64 (kit label space, records.CLASSES); subjects, sequences, paths, split ('train'/'val'),
method ('detected'|'tracked'|'dataset') as str arrays; frames int64; meta: a JSON string
(dataset, synthetic flag, image_size, the DataConfig, validation subjects, class names,
kit version, created, cache key); report: the preprocessing report as a JSON string, so that
the cache and its report are one unit (report.json beside it is a readable copy, rewritten from
the archive whenever they differ). Written atomically (temp file + rename).

A truncated or damaged archive is a CacheError (a ValueError) naming the file and the fix,
never a zipfile/numpy traceback; arrays are read with allow_pickle=False.
"""
from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmexpr_nb.common.files import atomic_path

ARRAYS = ("images", "landmarks", "labels", "subjects", "sequences", "frames", "paths", "split", "method")


@dataclass
class FaceCache:
    images: np.ndarray
    landmarks: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    sequences: np.ndarray
    frames: np.ndarray
    paths: np.ndarray
    split: np.ndarray
    method: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, split: str) -> "FaceCache":
        """Frames of one split ('train' or 'val'), same meta."""
        keep = np.asarray(self.split) == split
        return self.select(np.flatnonzero(keep))

    def select(self, idx) -> "FaceCache":
        idx = np.asarray(idx)
        return FaceCache(**{k: getattr(self, k)[idx] for k in ARRAYS}, meta=self.meta)

    def images_float(self) -> np.ndarray:
        """float32 (N,3,S,S) in [-1, 1]."""
        return self.images.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0

    @property
    def synthetic(self) -> bool:
        return bool(self.meta.get("synthetic"))


class CacheError(ValueError):
    """A cache file that cannot be used (truncated, damaged, not a kit cache); one-line message."""


def _damaged(path, e) -> CacheError:
    return CacheError(f"the preprocessing cache {path} is damaged or incomplete ({type(e).__name__}); "
                      f"rebuild it: lmexpr preprocess ... --out {Path(path).parent} --force (or rerun notebook 01)")


def save_cache(path, cache: FaceCache, report: dict | None = None) -> Path:
    """Write the arrays, meta and (when given) the report into one archive, atomically."""
    path = Path(path)
    extra = {} if report is None else {"report": np.array(json.dumps(report))}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a path
            np.savez(f, **{k: np.asarray(getattr(cache, k)) for k in ARRAYS}, meta=np.array(json.dumps(cache.meta)),
                     **extra)
    return path


_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError)


def _cache_file(folder) -> Path:
    folder = Path(folder)
    path = folder if folder.suffix == ".npz" else folder / "cache.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no preprocessing cache at {path}: run `lmexpr preprocess` or notebook 01 first")
    return path


def load_cache(folder) -> FaceCache:
    """Load `<folder>/cache.npz` (or the .npz path itself) written by preprocess."""
    path = _cache_file(folder)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ARRAYS + ("meta",) if k not in z.files]
            if missing:
                raise CacheError(f"{path} is not a lmexpr-nb cache (missing {missing}); rebuild it with --force")
            return FaceCache(**{k: z[k] for k in ARRAYS}, meta=json.loads(str(z["meta"])))
    except CacheError:
        raise
    except _READ_ERRORS as e:
        raise _damaged(path, e) from None


def load_report(folder) -> dict | None:
    """The report stored inside the cache archive (None for caches written before it was)."""
    path = _cache_file(folder)
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["report"])) if "report" in z.files else None
    except _READ_ERRORS as e:
        raise _damaged(path, e) from None
