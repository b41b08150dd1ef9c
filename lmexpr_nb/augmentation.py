"""Table 4 of the paper: expression recognition with the training set enlarged by generated faces.

Paper, Sec. IV-C and Table 4 (Oulu-CASIA): accuracy 67.3 / 68.6 / 71.4 / 76.2 / 76.2 % when the
training set is enlarged 0 / 1 / 5 / 10 / 100 times with generated faces, "by given a facial
input image, we can use our method to generate corresponding different poses and expressions
new facial images", under "the same expression classifier" (which one is not said).

What "enlarged k times" means here: k x |train| generated faces are added to the |train| real
ones. Each generated face is a same-identity transfer: a real training frame i is the source;
the target is a frame j of the SAME subject with ANOTHER expression (the expression drawn
uniformly among the subject's other expressions in the split, then the frame uniformly among
the subject's frames of it); the generator gets j's landmarks and label, and the generated face
carries j's label. Round r (r = 0 .. k-1) draws one target for every training frame, in order,
with the generator seeded by (seed, r): so the plan for k is the first k rounds of the plan for
any larger k (made once for the largest factor and sliced), and every source is used k times.
(A subject with a single expression falls back to its other frames, one with a single frame to
itself.) The classifier (metrics.expression, the kit's small CNN) is trained from scratch for
every factor with the same epochs and seed, and scored on the REAL validation images.

    augmentation_plan(cache, factor, seed)      (source, target) cache indices, factor x |train|
    generate_augmentation(G, cache, ...)        the generated faces and their intended labels
    run_augmentation(G, cache, factors, ...)    one classifier per factor -> result dicts
    write_table4(folder, results, ...)          tables/table4.csv|md, the paper's accuracy beside
    accuracy_figure / example_grid              a bar chart of accuracy vs factor; examples
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATASET_NAMES = {"oulu": "Oulu-CASIA", "ckplus": "CK+", "folder": "image folder",
                 "synthetic": "synthetic default (CK+ layout; not real faces)"}


def _arrays(cache):
    return np.asarray(cache.labels).astype(np.int64), np.asarray(cache.subjects).astype(str), np.asarray(cache.split)


def augmentation_plan(cache, factor: int, seed: int = 0, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(src, tgt) int64 cache indices, factor x |split| rows (see the module docstring)."""
    if int(factor) != factor or factor < 0:
        raise ValueError(f"augmentation factor must be a non-negative integer, got {factor!r}")
    labels, subjects, sp = _arrays(cache)
    rows = np.flatnonzero(sp == split)
    if len(rows) == 0:
        raise ValueError(f"no {split} frames in the cache")
    by_label: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    for s in sorted(set(subjects[rows])):
        mine = rows[subjects[rows] == s]
        for lab in sorted(set(labels[mine])):
            by_label[s][int(lab)] = mine[labels[mine] == lab]
    src, tgt = [], []
    for r in range(int(factor)):
        rng = np.random.default_rng([int(seed), r])
        t = np.empty(len(rows), dtype=np.int64)
        for j, i in enumerate(rows):
            groups = by_label[subjects[i]]
            others = [lab for lab in groups if lab != labels[i]]
            if others:
                frames = groups[others[rng.integers(len(others))]]
            else:   # one expression only: another frame of the subject, else the frame itself
                mine = np.concatenate(list(groups.values()))
                frames = mine[mine != i] if len(mine) > 1 else mine
            t[j] = frames[rng.integers(len(frames))]
        src.append(rows), tgt.append(t)
    if not src:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(src).astype(np.int64), np.concatenate(tgt)


@dataclass
class GeneratedSet:
    images: np.ndarray      # uint8 (M, S, S, 3)
    labels: np.ndarray      # int64 (M,), the intended (target) labels
    src: np.ndarray         # cache index of each source frame
    tgt: np.ndarray         # cache index of the frame whose landmarks and label were used

    def __len__(self):
        return len(self.labels)

    def first(self, m: int) -> "GeneratedSet":
        return GeneratedSet(self.images[:m], self.labels[:m], self.src[:m], self.tgt[:m])


def generate_augmentation(G, cache, factor: int, seed: int, model_cfg, chunk: int = 512,
                          batch_size: int = 64) -> GeneratedSet:
    """Generate the plan's faces (chunked, so memory is the uint8 output, not float inputs)."""
    from .generate import synthesize
    src, tgt = augmentation_plan(cache, factor, seed)
    labels = np.asarray(cache.labels).astype(np.int64)
    s = model_cfg.image_size
    out = np.empty((len(src), s, s, 3), dtype=np.uint8)
    for a in range(0, len(src), chunk):
        i, j = src[a:a + chunk], tgt[a:a + chunk]
        out[a:a + len(i)] = synthesize(G, cache.images[i], cache.landmarks[i], cache.landmarks[j], labels[j],
                                       model_cfg, batch_size=batch_size)
    return GeneratedSet(out, labels[tgt], src, tgt)


def run_augmentation(G, cache, factors, epochs: int, seed: int, model_cfg, device="cpu",
                     input_size: int = 64, log=print) -> dict:
    """Train one classifier per factor on real train + factor x |train| generated faces and
    score it on the real validation images. Returns {"results": [...], "generated": GeneratedSet}."""
    from .metrics.expression import accuracy, train_expression_classifier
    factors = [int(k) for k in factors]
    labels, _, sp = _arrays(cache)
    tr, va = np.flatnonzero(sp == "train"), np.flatnonzero(sp == "val")
    if len(va) == 0:
        raise ValueError("no validation frames: accuracy is measured on the real validation images")
    t0 = time.perf_counter()
    gen = generate_augmentation(G, cache, max(factors), seed, model_cfg)
    log(f"generated {len(gen)} faces ({max(factors)} x {len(tr)}) in {time.perf_counter() - t0:.1f} s")
    real_x, real_y = np.asarray(cache.images[tr]), labels[tr]
    val_x, val_y = np.asarray(cache.images[va]), labels[va]
    results = []
    for k in factors:
        t0 = time.perf_counter()
        g = gen.first(k * len(tr))
        x = np.concatenate([real_x, g.images]) if len(g) else real_x
        y = np.concatenate([real_y, g.labels]) if len(g) else real_y
        clf = train_expression_classifier(x, y, epochs=epochs, seed=seed, device=device, input_size=input_size)
        acc = accuracy(clf, val_x, val_y)
        results.append({"factor": k, "n_real": len(tr), "n_generated": len(g), "n_train": len(y), "n_val": len(va),
                        "accuracy": acc, "accuracy_se": math.sqrt(acc * (1 - acc) / len(va)),
                        "train_acc": clf.history[-1]["train_acc"] if clf.history else float("nan"),
                        "epochs": epochs, "seed": seed, "input_size": input_size,
                        "seconds": round(time.perf_counter() - t0, 1)})
        log(f"factor {k}: {len(tr)} real + {len(g)} generated -> accuracy {acc:.3f} on {len(va)} real val images")
    return {"results": results, "generated": gen}


# ----------------------------------------------------------------------------- table and figures

def dataset_label(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def table4_rows(results: list[dict], dataset: str) -> list[dict]:
    from .paper import TABLE4_AUGMENTATION
    return [{"Times": r["factor"], "accuracy (%)": 100 * r["accuracy"], "± SE (%)": 100 * r["accuracy_se"],
             "paper: Acc (%)": TABLE4_AUGMENTATION.get(r["factor"], ""), "real train images": r["n_real"],
             "generated images": r["n_generated"], "dataset": dataset_label(dataset), "N": r["n_val"]}
            for r in results]


def table4_note(results: list[dict], dataset: str, checkpoint: str | None = None) -> str:
    r = results[0]
    where = ("" if dataset == "oulu" else
             f" Ours is NOT on Oulu-CASIA but on {dataset_label(dataset)}: the paper's column is a reference only.")
    return (f"Paper: Oulu-CASIA, classifier not described.{where} Ours: the kit's small expression CNN "
            f"(lmexpr_nb.metrics.expression) trained from scratch for every factor with the same {r['epochs']} "
            f"epochs and seed {r['seed']} (so larger sets get more gradient steps), input {r['input_size']} px; "
            "accuracy on the real validation images (N; subjects disjoint from training). ± is the binomial "
            "standard error sqrt(p(1-p)/N): differences within it are noise. Times k adds k x |train| "
            "generated faces: same-identity transfer from a real training frame to that subject's own frame "
            "of another expression (its landmarks and label), seeded"
            + (f"; generator: {checkpoint}" if checkpoint else "") + ".")


def write_table4(folder: str | Path, results: list[dict], provenance: dict, dataset: str,
                 checkpoint: str | None = None):
    from .tables import write_table
    # only the stand-ins behind these numbers: the FD-dlib metric stand-in plays no part here
    provenance = dict(provenance, standins=[s for s in provenance.get("standins") or ["none"]
                                            if not s.startswith("FD-dlib")] or ["none"])
    return write_table(folder, "table4", table4_rows(results, dataset), provenance,
                       title=f"Table 4: expression recognition vs augmentation ({dataset_label(dataset)}; "
                             "paper: Oulu-CASIA)", note=table4_note(results, dataset, checkpoint))


def accuracy_figure(results: list[dict], footer: str | None = None):
    """Bars: our accuracy (± SE) per factor; dots: the paper's where it printed that factor."""
    import matplotlib.pyplot as plt
    from .paper import TABLE4_AUGMENTATION
    ks = [r["factor"] for r in results]
    x = np.arange(len(ks))
    fig, ax = plt.subplots(figsize=(1.2 * len(ks) + 2.5, 3.2))
    ax.bar(x, [100 * r["accuracy"] for r in results], yerr=[100 * r["accuracy_se"] for r in results],
           color="#4C72B0", capsize=4, label="ours (± SE)")
    pk = [(i, TABLE4_AUGMENTATION[k]) for i, k in enumerate(ks) if k in TABLE4_AUGMENTATION]
    if pk:
        ax.plot(*zip(*pk), "o", color="#DD8452", label="paper (Oulu-CASIA)")
    ax.set_xticks(x, [str(k) for k in ks]), ax.set_xlabel("training set enlarged k times")
    ax.set_ylabel("accuracy (%)"), ax.set_ylim(0, 100), ax.legend(fontsize=7, loc="lower right")
    if footer:
        fig.text(0.5, 0.005, footer, ha="center", va="bottom", fontsize=6, color="#555555", wrap=True)
    fig.tight_layout(rect=(0, 0.08 if footer else 0, 1, 1))
    return fig


def example_grid(cache, gen: GeneratedSet, n: int = 6, footer: str | None = None):
    """Rows: source frame, generated face, the real frame whose landmarks and label it got."""
    from .data.records import CLASSES
    from .viz import image_grid
    pick = np.linspace(0, len(gen) - 1, min(n, len(gen))).astype(int)
    rows = [[cache.images[gen.src[i]] for i in pick], [gen.images[i] for i in pick],
            [cache.images[gen.tgt[i]] for i in pick]]
    return image_grid(rows, row_titles=["source", "generated", "target frame"],
                      col_titles=[f"-> {CLASSES[gen.labels[i]]}" for i in pick], footer=footer)
