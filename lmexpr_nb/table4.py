"""Table 4's tables and figures (the experiment itself is augmentation.py).

    write_table4(folder, results, provenance, dataset)   tables/table4.csv|md (accuracy ± binomial SE per
                                                         factor, the paper's beside) and
                                                         tables/table4_per_class.csv|md (accuracy of
                                                         each expression class per factor)
    accuracy_figure(results)                             bars: accuracy (± SE) vs factor, paper dots
    confusion_figure(results)                            one row-normalised confusion matrix per factor
    example_grid(cache, generated)                       source / generated / target frame
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

DATASET_NAMES = {"oulu": "Oulu-CASIA", "ckplus": "CK+", "folder": "image folder",
                 "synthetic": "synthetic default (CK+ layout; not real faces)"}


def dataset_label(dataset: str) -> str:
    return DATASET_NAMES.get(dataset, dataset)


def table4_rows(results: list[dict], dataset: str) -> list[dict]:
    from .paper import TABLE4_AUGMENTATION
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
    from .tables import write_table
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
    import matplotlib.pyplot as plt
    from .paper import TABLE4_AUGMENTATION
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
    import matplotlib.pyplot as plt
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
    from .data.records import CLASSES
    from .viz import image_grid
    pick = np.linspace(0, len(gen) - 1, min(n, len(gen))).astype(int)
    rows = [[cache.images[gen.src[i]] for i in pick], [gen.images[i] for i in pick],
            [cache.images[gen.tgt[i]] for i in pick]]
    kind = gen.kind if gen.kind is not None else ["same-subject"] * len(gen)
    return image_grid(rows, row_titles=["source", "generated", "target frame"],
                      col_titles=[f"-> {CLASSES[gen.labels[i]]}" + ("\n(donor)" if kind[i] == "donor" else "")
                                  for i in pick], footer=footer)
