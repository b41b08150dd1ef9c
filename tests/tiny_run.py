"""A tiny trained explorer run in seconds, for tests that need a real checkpoint + cache.

`tiny_run(folder)` renders a few synthetic subjects (lmexpr_nb.data.synthetic.render, small frames,
exact landmarks: no dlib), crops them as preprocessing does (landmarks.crop_box /
crop_and_resize at 32 px), saves the cache, and trains a 1-block, 4-channel generator for
8 steps with the smoke profile's stand-ins. The model is useless as a face editor; it is a
real checkpoint with real provenance (synthetic), which is what the explorer's wiring needs.

Why lr 0.02 and 8 steps: a generator at its initialisation ignores the target landmarks (the
migration-unit masks gate a near-zero image-path residual: an output difference of ~1e-10
between two landmark sets), so a donor change would leave the image byte-identical. A few
large steps teach it enough landmark dependence that a donor changes hundreds of pixels.

`tiny_model()` keeps one such run in the tests' cache outside the repository (suite_cache.py),
keyed by the tiny settings, the library versions that decide its numbers, the profiles it starts
from and every package source that this module's imports load (suite_cache.source_closure: the
trainer, its devices and AMP, heatmaps, pairs, the landmark crop, the renderer ...): a rerun, another
test file or another xdist worker reuses it in a second (the first builds it under a lock, the rest
wait); a change to any of those sources trains a new one.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL
import torch
from suite_cache import cached, content_key, imports_of, package_dir, source_closure

SIZE = 32
SUBJECTS = 4          # 3 train + 1 val: the val face has three donors
FRAME = (320, 245)    # rendered frame size: a quarter of CK+'s, ~4x faster to draw
TRAIN = {"steps": 8, "batch_size": 4, "lr": 0.02, "checkpoint_every": 8, "sample_every": 8, "log_every": 2}


def tiny_cache(folder: Path):
    from lmexpr_nb.data.cache import FaceCache, save_cache
    from lmexpr_nb.data.records import CLASSES
    from lmexpr_nb.data.synthetic.render import render_sequence, sequence_order
    from lmexpr_nb.landmarks.detect import crop_and_resize, crop_box
    imgs, lms, labels, subj, seqs, frames, split = [], [], [], [], [], [], []
    for s in range(1, SUBJECTS + 1):
        order = sequence_order(0, s)
        for q in (order.index("happy") + 1, order.index("surprise") + 1):
            for f, img, lm, _ in render_sequence(0, s, q, frames=2, size=FRAME):
                crop, tr = crop_and_resize(img, crop_box(lm, 0.25), SIZE)
                imgs.append(crop), lms.append(tr.apply(lm))
                labels.append(0 if f == 1 else CLASSES.index(order[q - 1]))
                subj.append(f"S{s:03d}"), seqs.append(f"{q:03d}"), frames.append(f)
                split.append("val" if s == SUBJECTS else "train")
    n = len(imgs)
    cache = FaceCache(images=np.stack(imgs), landmarks=np.stack(lms).astype(np.float32),
                      labels=np.array(labels, np.int64), subjects=np.array(subj), sequences=np.array(seqs),
                      frames=np.array(frames, np.int64), paths=np.array([f"tiny/{i}" for i in range(n)]),
                      split=np.array(split), method=np.array(["dataset"] * n),
                      meta={"dataset": "synthetic", "synthetic": True, "image_size": SIZE,
                            "val_subjects": [f"S{SUBJECTS:03d}"], "classes": list(CLASSES)})
    return save_cache(Path(folder) / "cache.npz", cache)


def tiny_run(folder) -> dict:
    """{'cache_dir', 'train_dir', 'checkpoint'} of a freshly trained tiny model under `folder`."""
    from lmexpr_nb.config import load_profile
    from lmexpr_nb.train.trainer import train
    folder = Path(folder)
    tiny_cache(folder / "cache")
    cfg = load_profile("smoke", {
        "data": {"image_size": SIZE},
        # n_downsampling pinned: at 0 (the smoke recipe's) 8 steps of lr 0.02 saturate the output
        # to one flat colour, and no control would change the picture
        "model": {"image_size": SIZE, "ngf": 4, "ndf": 4, "n_blocks": 1, "n_downsampling": 1},
        "train": TRAIN})
    train(cfg, folder / "cache", folder / "train", progress=False)
    return {"cache_dir": folder / "cache", "train_dir": folder / "train",
            "checkpoint": folder / "train" / "checkpoints" / "last.pt"}


def tiny_model_key() -> str:
    """The cache key of the tiny model: settings, library versions, profiles and every package
    source file that this module's imports load."""
    sources = source_closure(sorted(imports_of(Path(__file__))))
    return content_key(SIZE, SUBJECTS, FRAME, TRAIN, torch.__version__, np.__version__, PIL.__version__,
                       files=[*sources, *sorted((package_dir() / "profiles").glob("*.yaml"))])


def tiny_model(root=None) -> dict:
    """tiny_run in the tests' cache (root: another cache folder), built once per key (see the module doc)."""
    folder, reused = cached("tiny-model", tiny_model_key(), tiny_run, root=root)
    return {"cache_dir": folder / "cache", "train_dir": folder / "train",
            "checkpoint": folder / "train" / "checkpoints" / "last.pt", "reused": reused}
