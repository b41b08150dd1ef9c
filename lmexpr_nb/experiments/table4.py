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
     of Fig. 8 (landmarks/align.py). Drawn uniformly, in blocks of N_real seeded by (seed, block).
The classifier (metrics.expression, the kit's small CNN) is trained from scratch for every factor
with the same epochs and seed, on the dataset's classes, and scored on the REAL validation peak
frames: accuracy with its binomial standard error, per-class accuracy (recall) and the confusion
matrix, all from the metrics registry's "expression_accuracy".

    recognition_classes(cache)                  the dataset's own expression labels
    augmentation_plan(cache, factor, seed)      (source, target frame, kind) rows, factor x N_real
    generate_augmentation(G, cache, ...)        the generated faces and their target labels
    run_augmentation(G, cache, factors, ...)    one classifier per factor -> result dicts
    write_table4(folder, results, provenance, dataset)   tables/table4.csv|md (accuracy ± binomial SE per
                                                factor, the paper's beside) and tables/table4_per_class.csv|md
    accuracy_figure(results)                    bars: accuracy (± SE) vs factor, paper dots
    confusion_figure(results)                   one row-normalised confusion matrix per factor
    example_grid(cache, generated)              source / generated / target frame
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from lmexpr_nb.common.paper import TABLE4_AUGMENTATION
from lmexpr_nb.common.viz import image_grid
from lmexpr_nb.data.pairs import neutral_expression_pairs
from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.experiments.tables import write_table
from lmexpr_nb.landmarks.align import align_shape
from lmexpr_nb.metrics import registry
from lmexpr_nb.metrics.expression import train_expression_classifier
from lmexpr_nb.model.generate import synthesize

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


def plan_target_landmarks(cache, src, tgt, kind) -> np.ndarray:
    """(M, 68, 2): the target frame's own landmarks for same-subject rows; the donor's aligned onto
    the source face (similarity transform, as Fig. 8) for donor rows."""
    lm = np.asarray(cache.landmarks, np.float32)
    out = lm[tgt].copy()
    for r in np.flatnonzero(np.asarray(kind) == DONOR):
        out[r] = align_shape(lm[tgt[r]], lm[src[r]])
    return out


def generate_augmentation(G, cache, factor: int, seed: int, model_cfg, chunk: int = 512,
                          batch_size: int = 64) -> GeneratedSet:
    """Generate the plan's faces (chunked, so memory is the uint8 output, not float inputs)."""
    src, tgt, kind = augmentation_plan(cache, factor, seed)
    labels = np.asarray(cache.labels).astype(np.int64)
    s = model_cfg.image_size
    out = np.empty((len(src), s, s, 3), dtype=np.uint8)
    for a in range(0, len(src), chunk):
        i, j, k = src[a:a + chunk], tgt[a:a + chunk], kind[a:a + chunk]
        out[a:a + len(i)] = synthesize(G, cache.images[i], cache.landmarks[i], plan_target_landmarks(cache, i, j, k),
                                       labels[j], model_cfg, batch_size=batch_size)
    return GeneratedSet(out, labels[tgt], src, tgt, kind)


def run_augmentation(G, cache, factors, epochs: int, seed: int, model_cfg, device="cpu",
                     input_size: int = 64, log=print) -> dict:
    """Train one classifier per factor on the real training peak frames + factor x N_real generated
    faces, on the dataset's own classes, and score it on the real validation peak frames.
    Returns {"results": [...], "generated": GeneratedSet, "classes": [kit labels]}."""
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
        [res] = registry.compute("expression_accuracy", fake=val_x, fake_labels=val_y, classifier=clf)
        acc, conf = res.value, res.extra["confusion"]
        n_donor = int((g.kind == DONOR).sum()) if len(g) and g.kind is not None else 0
        results.append({"factor": k, "n_real": len(tr), "n_generated": len(g), "n_generated_donor": n_donor,
                        "n_train": len(y), "n_val": len(va), "classes": names,
                        "accuracy": acc, "accuracy_se": math.sqrt(acc * (1 - acc) / len(va)),
                        "per_class_accuracy": {c: (None if v != v else v)        # None: no test image of the class
                                               for c, v in zip(names, res.extra["per_class_accuracy"].tolist())},
                        "per_class_n": dict(zip(names, conf.sum(1).astype(int).tolist())),
                        "confusion": conf.tolist(),
                        "train_acc": clf.history[-1]["train_acc"] if clf.history else float("nan"),
                        "epochs": epochs, "seed": seed, "input_size": input_size,
                        "seconds": round(time.perf_counter() - t0, 1)})
        log(f"factor {k}: {len(tr)} real + {len(g)} generated -> accuracy {acc:.3f} on {len(va)} real val "
            f"peak frames ({len(classes)} classes)")
    return {"results": results, "generated": gen, "classes": list(classes)}


# ----------------------------------------------------------------------------- tables and figures


DATASET_NAMES = {"oulu": "Oulu-CASIA", "ckplus": "CK+", "folder": "image folder",
                 "synthetic": "synthetic default (CK+ layout; not real faces)"}


def dataset_label(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def table4_rows(results: list[dict], dataset: str) -> list[dict]:
    return [{"Times": r["factor"], "accuracy (%)": 100 * r["accuracy"], "± SE (%)": 100 * r["accuracy_se"],
             "paper: Acc (%)": TABLE4_AUGMENTATION.get(r["factor"], ""), "classes": len(r["classes"]),
             "real train images": r["n_real"], "generated images": r["n_generated"],
             "of which donor rows": r.get("n_generated_donor", 0), "dataset": dataset_label(dataset),
             "N": r["n_val"]} for r in results]


def table4_per_class_rows(results: list[dict], dataset: str) -> list[dict]:
    """One row per factor: accuracy (recall, %) of each class on its validation peak frames."""
    rows = []
    for r in results:
        row = {"Times": r["factor"]}
        for name, acc in r["per_class_accuracy"].items():
            row[f"{name} (%, n={r['per_class_n'][name]})"] = None if acc is None or acc != acc else 100 * acc
        row.update({"accuracy (%)": 100 * r["accuracy"], "dataset": dataset_label(dataset), "N": r["n_val"]})
        rows.append(row)
    return rows


def table4_note(results: list[dict], dataset: str, checkpoint: str | None = None) -> str:
    r = results[0]
    where = ("" if dataset == "oulu" else
             f" Ours is NOT on Oulu-CASIA but on {dataset_label(dataset)}: the paper's column is a reference only.")
    return (f"Paper: Oulu-CASIA, six expressions, classifier not described.{where} Task as the paper's: the "
            f"dataset's own {len(r['classes'])} expression classes ({', '.join(r['classes'])}) on PEAK frames; "
            "neutral is not a class and no neutral frame is trained on or tested. Ours: the kit's small expression "
            f"CNN (lmexpr_nb.metrics.expression) trained from scratch for every factor with the same {r['epochs']} "
            f"epochs and seed {r['seed']} (so larger sets get more gradient steps), input {r['input_size']} px; "
            "accuracy on the real validation peak frames (N; subjects disjoint from training). ± is the binomial "
            "standard error sqrt(p(1-p)/N): differences within it are noise. Times k adds k x (real training peak "
            "frames) generated faces, labelled by their target: first a training subject's neutral frame given one "
            "of its own peak frames' landmarks and label (every such pair, seeded order), then, beyond those pairs, "
            "any training frame given another training subject's peak landmarks (aligned onto the face) and label "
            "(`of which donor rows`), seeded" + (f"; generator: {checkpoint}" if checkpoint else "")
            + ". Per-class accuracy: table4_per_class; confusion matrices: figures/table4_confusion.png.")


def _table_provenance(provenance: dict) -> dict:
    # only the stand-ins behind these numbers: the FD-dlib metric stand-in plays no part here
    return dict(provenance, standins=[s for s in provenance.get("standins") or ["none"]
                                      if not s.startswith("FD-dlib")] or ["none"])


def write_table4(folder: str | Path, results: list[dict], provenance: dict, dataset: str,
                 checkpoint: str | None = None):
    """tables/table4.csv|md and tables/table4_per_class.csv|md; returns table4's two paths."""
    prov = _table_provenance(provenance)
    paths = write_table(folder, "table4", table4_rows(results, dataset), prov,
                        title=f"Table 4: expression recognition vs augmentation ({dataset_label(dataset)}; "
                              "paper: Oulu-CASIA)", note=table4_note(results, dataset, checkpoint))
    write_table(folder, "table4_per_class", table4_per_class_rows(results, dataset), prov,
                title=f"Table 4 per class: accuracy of each expression ({dataset_label(dataset)})",
                note="Accuracy (recall) of each class on its real validation peak frames (n per class in the "
                     "header), per augmentation factor; `accuracy (%)` is over all N. A class with few test images "
                     "has a large error: with n images the binomial SE is up to 50/sqrt(n) %.")
    return paths


def accuracy_figure(results: list[dict], footer: str | None = None):
    """Bars: our accuracy (± SE) per factor; dots: the paper's where it printed that factor."""
    ks = [r["factor"] for r in results]
    x = np.arange(len(ks))
    fig, ax = plt.subplots(figsize=(1.2 * len(ks) + 2.5, 3.2))
    ax.bar(x, [100 * r["accuracy"] for r in results], yerr=[100 * r["accuracy_se"] for r in results],
           color="#4C72B0", capsize=4, label=f"ours (± SE), {len(results[0]['classes'])} classes")
    pk = [(i, TABLE4_AUGMENTATION[k]) for i, k in enumerate(ks) if k in TABLE4_AUGMENTATION]
    if pk:
        ax.plot(*zip(*pk), "o", color="#DD8452", label="paper (Oulu-CASIA, 6 classes)")
    chance = 100 / len(results[0]["classes"])
    ax.axhline(chance, color="#999999", lw=0.8, ls="--", label=f"chance ({chance:.0f}%)")
    ax.set_xticks(x, [str(k) for k in ks]), ax.set_xlabel("training set enlarged k times")
    ax.set_ylabel("accuracy on peak frames (%)"), ax.set_ylim(0, 100), ax.legend(fontsize=7, loc="lower right")
    if footer:
        fig.text(0.5, 0.005, footer, ha="center", va="bottom", fontsize=6, color="#555555", wrap=True)
    fig.tight_layout(rect=(0, 0.08 if footer else 0, 1, 1))
    return fig


def confusion_figure(results: list[dict], footer: str | None = None):
    """One panel per factor: the confusion matrix (rows = true class, columns = predicted), colour =
    row-normalised %, text = counts."""
    names = results[0]["classes"]
    c = len(names)
    side = 0.42 * c + 1.2
    fig, axes = plt.subplots(1, len(results), figsize=(side * len(results), side + 0.6), squeeze=False)
    for ax, r in zip(axes[0], results):
        m = np.asarray(r["confusion"], np.float64)
        pct = 100 * m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(pct, vmin=0, vmax=100, cmap="Blues")
        for i in range(c):
            for j in range(c):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if pct[i, j] > 55 else "black")
        ax.set_xticks(range(c), names, rotation=60, fontsize=6), ax.set_yticks(range(c), names, fontsize=6)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_title(f"k = {r['factor']}: {100 * r['accuracy']:.1f}% (N={r['n_val']})", fontsize=8)
    axes[0][0].set_ylabel("true (validation peak frames)", fontsize=7)
    if footer:
        fig.text(0.5, 0.005, footer, ha="center", va="bottom", fontsize=6, color="#555555", wrap=True)
    fig.tight_layout(rect=(0, 0.1 if footer else 0, 1, 1))
    return fig


def example_grid(cache, gen, n: int = 6, footer: str | None = None):
    """Rows: source frame, generated face, the real frame whose landmarks and label it got (for donor
    rows: the other subject's frame); spread over same-subject and donor rows."""
    pick = np.linspace(0, len(gen) - 1, min(n, len(gen))).astype(int)
    rows = [[cache.images[gen.src[i]] for i in pick], [gen.images[i] for i in pick],
            [cache.images[gen.tgt[i]] for i in pick]]
    kind = gen.kind if gen.kind is not None else ["same-subject"] * len(gen)
    return image_grid(rows, row_titles=["source", "generated", "target frame"],
                      col_titles=[f"-> {CLASSES[gen.labels[i]]}" + ("\n(donor)" if kind[i] == "donor" else "")
                                  for i in pick], footer=footer)
