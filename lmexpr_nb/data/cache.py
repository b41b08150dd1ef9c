"""The preprocessing cache every later stage reads: one `cache.npz` + `report.json` per dataset.

Arrays (N frames): images uint8 (N,S,S,3); landmarks float32 (N,68,2) in crop pixels; labels
int64 (kit label space, records.CLASSES); subjects, sequences, paths, split ('train'/'val'),
method ('detected'|'tracked'|'dataset') as str arrays; frames int64; meta: a JSON string
(dataset, synthetic flag, image_size, the DataConfig, validation subjects, class names,
kit version, created, cache key). Written atomically (temp file + rename).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io import atomic_path

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


def save_cache(path, cache: FaceCache) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a path
            np.savez(f, **{k: np.asarray(getattr(cache, k)) for k in ARRAYS}, meta=np.array(json.dumps(cache.meta)))
    return path


def load_cache(folder) -> FaceCache:
    """Load `<folder>/cache.npz` (or the .npz path itself) written by preprocess."""
    folder = Path(folder)
    path = folder if folder.suffix == ".npz" else folder / "cache.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no preprocessing cache at {path}: run `lmexpr preprocess` or notebook 01 first")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in ARRAYS + ("meta",) if k not in z.files]
        if missing:
            raise ValueError(f"{path} is not a lmexpr-nb cache (missing {missing}); rebuild it with --force")
        return FaceCache(**{k: z[k] for k in ARRAYS}, meta=json.loads(str(z["meta"])))
