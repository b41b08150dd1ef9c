"""Table 4 of the paper: expression recognition with the training set enlarged by generated faces.

Paper, Sec. IV-C and Table 4 (Oulu-CASIA): accuracy 67.3 / 68.6 / 71.4 / 76.2 / 76.2 % when the
training set is enlarged 0 / 1 / 5 / 10 / 100 times with generated faces, "by given a facial
input image, we can use our method to generate corresponding different poses and expressions
new facial images", under "the same expression classifier" (which one is not said).

The recognition task is the paper's: the dataset's OWN expression classes on PEAK frames.
Neutral is not a class and no neutral frame is trained on or scored: `recognition_classes` are the
non-neutral kit labels present in the cache (six on Oulu-CASIA, seven on CK+ and the synthetic
default; contempt only where the data has it). Real training set = the training subjects' peak
frames (N_real); test set = the validation subjects' peak frames (subject-disjoint, as the split).

What "enlarged k times" means here: k x N_real generated faces are added to the real ones. Each
generated face is labelled by its TARGET label (always an expression, never neutral). The plan
(`augmentation_plan`) is one seeded sequence of rows, and factor k takes its first k x N_real rows
(so the plan for k is the start of the plan for any larger factor):
  1. "same-subject" rows first: every (neutral source, peak target) pair of one training subject
     (data.pairs.neutral_expression_pairs, the evaluation's primary rule on the training split), in
     a seeded random order: a training subject's neutral frame given one of its own expressions
     (that frame's landmarks and label). There are (neutral frames x peak frames) per subject.
  2. when k x N_real exceeds those pairs (factors above the number of distinct targets, e.g. 100),
     "donor" rows, the paper's "different poses and expressions": the source is any training frame
     (neutral or peak) of a training subject, the target landmarks and label those of a peak frame of
     ANOTHER training subject (the donor; the same subject's other frames only when there is one
     training subject), the donor's 68 points mapped onto the source face by the similarity transform
     of Fig. 8 (evaluate.align_landmarks). Drawn uniformly, in blocks of N_real seeded by (seed, block).
The classifier (metrics.expression, the kit's small CNN) is trained from scratch for every factor
with the same epochs and seed, on the dataset's classes, and scored on the REAL validation peak
frames: accuracy with its binomial standard error, per-class accuracy (recall) and the confusion
matrix (tables and figures: module table4).

    recognition_classes(cache)                  the dataset's own expression labels
    augmentation_plan(cache, factor, seed)      (source, target frame, kind) rows, factor x N_real
    generate_augmentation(G, cache, ...)        the generated faces and their target labels
    run_augmentation(G, cache, factors, ...)    one classifier per factor -> result dicts
    write_table4, accuracy_figure, confusion_figure, example_grid   (from table4, re-exported)
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .table4 import (DATASET_NAMES, accuracy_figure, confusion_figure, dataset_label, example_grid,  # noqa: F401
                     table4_note, table4_per_class_rows, table4_rows, write_table4)

SAME = "same-subject"
DONOR = "donor"


def _arrays(cache):
    return np.asarray(cache.labels).astype(np.int64), np.asarray(cache.subjects).astype(str), np.asarray(cache.split)


def recognition_classes(cache) -> tuple[int, ...]:
    """The dataset's own expression classes: the sorted non-neutral kit labels present in the cache
    (any split). Six on Oulu-CASIA, seven on CK+ and the synthetic default."""
    labels = np.asarray(cache.labels).astype(np.int64)
    return tuple(int(k) for k in sorted(set(labels[labels != 0].tolist())))


def peak_rows(cache, split: str) -> np.ndarray:
    """Cache indices of `split`'s peak (expression, label != 0) frames: Table 4's images."""
    labels, _, sp = _arrays(cache)
    return np.flatnonzero((sp == split) & (labels != 0))


def augmentation_plan(cache, factor: int, seed: int = 0, split: str = "train"):
    """(src, tgt, kind) for factor x N_real rows (N_real = `split`'s peak frames): cache index of the
    source frame, of the frame whose landmarks and label are the target, and "same-subject" or
    "donor" (see the module doc)."""
    from .data.pairs import neutral_expression_pairs
    if int(factor) != factor or factor < 0:
        raise ValueError(f"augmentation factor must be a non-negative integer, got {factor!r}")
    labels, subjects, sp = _arrays(cache)
    rows = np.flatnonzero(sp == split)
    peaks = peak_rows(cache, split)
    if len(peaks) == 0:
        raise ValueError(f"no {split} peak (expression) frames in the cache: Table 4 recognises expressions")
    n_real, total = len(peaks), int(factor) * len(peaks)
    same = rows[neutral_expression_pairs(subjects[rows], labels[rows])]
    same = same[np.random.default_rng([int(seed), 0]).permutation(len(same))]
    src, tgt = list(same[:total, 0]), list(same[:total, 1])
    kind = [SAME] * len(src)
    block = 0
    while len(src) < total:
        rng = np.random.default_rng([int(seed), 1, block])
        s = rows[rng.integers(len(rows), size=n_real)]
        for i, u in zip(s, rng.random(n_real)):
            donors = peaks[subjects[peaks] != subjects[i]]
            if len(donors) == 0:              # one training subject: its own other peak frames
                donors = peaks[peaks != i] if len(peaks) > 1 else peaks
            src.append(int(i)), tgt.append(int(donors[min(int(u * len(donors)), len(donors) - 1)]))
            kind.append(DONOR)
        block += 1
    return (np.asarray(src[:total], np.int64), np.asarray(tgt[:total], np.int64), np.asarray(kind[:total], dtype=str))


@dataclass
class GeneratedSet:
    images: np.ndarray      # uint8 (M, S, S, 3)
    labels: np.ndarray      # int64 (M,), the target labels (kit label space; never neutral)
    src: np.ndarray         # cache index of each source frame
    tgt: np.ndarray         # cache index of the frame whose landmarks and label were used
    kind: np.ndarray = None  # "same-subject" | "donor" (landmarks aligned onto the source)

    def __len__(self):
        return len(self.labels)

    def first(self, m: int) -> "GeneratedSet":
        return GeneratedSet(self.images[:m], self.labels[:m], self.src[:m], self.tgt[:m],
                            None if self.kind is None else self.kind[:m])


def target_landmarks(cache, src, tgt, kind) -> np.ndarray:
    """(M, 68, 2): the target frame's own landmarks for same-subject rows; the donor's aligned onto
    the source face (similarity transform, as Fig. 8) for donor rows."""
    from .evaluate import align_landmarks
    lm = np.asarray(cache.landmarks, np.float32)
    out = lm[tgt].copy()
    for r in np.flatnonzero(np.asarray(kind) == DONOR):
        out[r] = align_landmarks(lm[tgt[r]], lm[src[r]])
    return out


def generate_augmentation(G, cache, factor: int, seed: int, model_cfg, chunk: int = 512,
                          batch_size: int = 64) -> GeneratedSet:
    """Generate the plan's faces (chunked, so memory is the uint8 output, not float inputs)."""
    from .generate import synthesize
    src, tgt, kind = augmentation_plan(cache, factor, seed)
    labels = np.asarray(cache.labels).astype(np.int64)
    s = model_cfg.image_size
    out = np.empty((len(src), s, s, 3), dtype=np.uint8)
    for a in range(0, len(src), chunk):
        i, j, k = src[a:a + chunk], tgt[a:a + chunk], kind[a:a + chunk]
        out[a:a + len(i)] = synthesize(G, cache.images[i], cache.landmarks[i], target_landmarks(cache, i, j, k),
                                       labels[j], model_cfg, batch_size=batch_size)
    return GeneratedSet(out, labels[tgt], src, tgt, kind)


def run_augmentation(G, cache, factors, epochs: int, seed: int, model_cfg, device="cpu",
                     input_size: int = 64, log=print) -> dict:
    """Train one classifier per factor on the real training peak frames + factor x N_real generated
    faces, on the dataset's own classes, and score it on the real validation peak frames.
    Returns {"results": [...], "generated": GeneratedSet, "classes": [kit labels]}."""
    from .data.records import CLASSES
    from .metrics.expression import confusion_matrix, per_class_accuracy, train_expression_classifier
    factors = [int(k) for k in factors]
    labels, _, _ = _arrays(cache)
    classes = recognition_classes(cache)
    if len(classes) < 2:
        raise ValueError(f"Table 4 needs at least two expression classes; the cache has {len(classes)}")
    index = {k: i for i, k in enumerate(classes)}
    tr, va = peak_rows(cache, "train"), peak_rows(cache, "val")
    if len(va) == 0:
        raise ValueError("no validation peak frames: accuracy is measured on the real validation expression images")
    t0 = time.perf_counter()
    gen = generate_augmentation(G, cache, max(factors), seed, model_cfg)
    log(f"generated {len(gen)} faces ({max(factors)} x {len(tr)} training peak frames) in "
        f"{time.perf_counter() - t0:.1f} s")
    cls = lambda lab: np.array([index[int(k)] for k in lab], np.int64)   # noqa: E731  kit label -> class index
    real_x, real_y = np.asarray(cache.images[tr]), cls(labels[tr])
    val_x, val_y = np.asarray(cache.images[va]), cls(labels[va])
    names = [CLASSES[k] for k in classes]
    results = []
    for k in factors:
        t0 = time.perf_counter()
        g = gen.first(k * len(tr))
        x = np.concatenate([real_x, g.images]) if len(g) else real_x
        y = np.concatenate([real_y, cls(g.labels)]) if len(g) else real_y
        clf = train_expression_classifier(x, y, epochs=epochs, seed=seed, device=device, input_size=input_size,
                                          num_classes=len(classes))
        conf = confusion_matrix(clf, val_x, val_y)
        acc = float(np.trace(conf) / conf.sum())
        n_donor = int((g.kind == DONOR).sum()) if len(g) and g.kind is not None else 0
        results.append({"factor": k, "n_real": len(tr), "n_generated": len(g), "n_generated_donor": n_donor,
                        "n_train": len(y), "n_val": len(va), "classes": names,
                        "accuracy": acc, "accuracy_se": math.sqrt(acc * (1 - acc) / len(va)),
                        "per_class_accuracy": {c: (None if v != v else v)        # None: no test image of the class
                                               for c, v in zip(names, per_class_accuracy(conf).tolist())},
                        "per_class_n": dict(zip(names, conf.sum(1).astype(int).tolist())),
                        "confusion": conf.tolist(),
                        "train_acc": clf.history[-1]["train_acc"] if clf.history else float("nan"),
                        "epochs": epochs, "seed": seed, "input_size": input_size,
                        "seconds": round(time.perf_counter() - t0, 1)})
        log(f"factor {k}: {len(tr)} real + {len(g)} generated -> accuracy {acc:.3f} on {len(va)} real val "
            f"peak frames ({len(classes)} classes)")
    return {"results": results, "generated": gen, "classes": list(classes)}
