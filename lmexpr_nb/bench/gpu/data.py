"""`bench gpu`'s data, without torch (its process-pool workers import only this): the synthetic
default rendered into memory (see learn.py's doc), and the landmark-warp baseline in chunks."""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from lmexpr_nb.config import DataConfig
from lmexpr_nb.data.cache import FaceCache
from lmexpr_nb.data.readers import first_last
from lmexpr_nb.data.synthetic.expression import EXPRESSIONS
from lmexpr_nb.data.synthetic.render import render_sequence, sequence_order
from lmexpr_nb.experiments.baselines import warp_to_landmarks
from lmexpr_nb.landmarks.detect import crop_and_resize, crop_box
from lmexpr_nb.landmarks.preprocess import choose_validation_subjects


def _render(job):
    """Worker: one sequence -> [(frame index, crop, crop landmarks, is_peak)] of its first/last frames."""
    seed, subject, sequence, frames, size, image_size, margin, first_k, last_k = job
    rendered = list(render_sequence(seed, subject, sequence, frames, size))
    out = []
    for _, (f, img, lm, _), peak in first_last(rendered, first_k, last_k):
        crop, tr = crop_and_resize(img, crop_box(lm, margin), image_size)
        out.append((f, crop, tr.apply(lm).astype(np.float32), peak))
    return out


def synthetic_cache(image_size: int, subjects: int = 24, frames: int = 10, size=(640, 490), seed: int = 0,
                    val_fraction: float = 0.25, workers: int = 1):
    """A FaceCache of the synthetic default (see the module doc), built in memory without dlib."""
    d = DataConfig()
    jobs = [(seed, s, q, frames, tuple(size), image_size, d.crop_margin, d.first_k, d.last_k)
            for s in range(1, subjects + 1) for q in range(1, len(EXPRESSIONS) + 1)]
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_render, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    else:
        results = [_render(j) for j in jobs]
    cols = {k: [] for k in ("images", "landmarks", "labels", "subjects", "sequences", "frames")}
    for (_, s, q, *_), res in zip(jobs, results):
        code = EXPRESSIONS.index(sequence_order(seed, s)[q - 1]) + 1      # CK+ code = kit label
        for f, crop, lm, peak in res:
            cols["images"].append(crop), cols["landmarks"].append(lm), cols["labels"].append(code if peak else 0)
            cols["subjects"].append(f"S{s:03d}"), cols["sequences"].append(f"{q:03d}"), cols["frames"].append(f)
    val = choose_validation_subjects(cols["subjects"], val_fraction, d.split_seed)
    n = len(cols["labels"])
    return FaceCache(images=np.stack(cols["images"]), landmarks=np.stack(cols["landmarks"]),
                     labels=np.asarray(cols["labels"], np.int64), subjects=np.asarray(cols["subjects"]),
                     sequences=np.asarray(cols["sequences"]), frames=np.asarray(cols["frames"], np.int64),
                     paths=np.asarray([""] * n),
                     split=np.asarray(["val" if s in val else "train" for s in cols["subjects"]]),
                     method=np.asarray(["dataset"] * n),
                     meta={"dataset": "synthetic", "synthetic": True, "image_size": image_size,
                           "val_subjects": sorted(val), "built": "bench gpu: in memory, generator landmarks (no dlib)",
                           "subjects": subjects, "frames": frames, "frame_size": list(size)})


def warp_rows(images, src_lm, tgt_lm) -> tuple[np.ndarray, np.ndarray]:
    """The landmark-warp baseline (baselines.warp_to_landmarks) on a chunk of pairs -> (images, failed):
    a degenerate triangulation gives the source image back, as evalset.BaselineMethod does."""
    out = np.empty_like(np.asarray(images))
    failed = np.zeros(len(out), bool)
    for i in range(len(out)):
        try:
            out[i] = warp_to_landmarks(images[i], src_lm[i], tgt_lm[i])
        except RuntimeError:
            out[i], failed[i] = images[i], True
    return out, failed
