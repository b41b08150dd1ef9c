"""The paper's figures: Fig. 6 (the preprocessed faces) and the qualitative Figs. 7, 8 and 9
(Sec. IV-C, on the validation subjects).

    expression_grid           figures/fig6_preprocessed.png      (Fig. 6: crops per expression, landmarks dotted)
    method_grid               figures/fig6_dataset_landmark_frames.png (frames kept with the dataset's landmarks)
    figure_same_identity      figures/fig9_same_identity.png     (Fig. 9: input / target / generated)
    figure_landmark_transfer  figures/fig8_landmark_transfer.png (Fig. 8: input / donor / generated)
    figure_comparison         figures/fig7_comparison.png        (Fig. 7: ours vs ground truth vs baselines)

Figs. 7 and 9 show neutral -> expression pairs of the primary protocol (experiments/evalset.py):
a subject's neutral frame given the landmarks and label of one of its own peak frames.

Fig. 8 asks the generator for ANOTHER person's landmarks. Raw donor landmarks sit where the
donor's head was in the donor's crop and have the donor's size; the generator, trained on
same-person pairs, cannot move or rescale a head. By default the donor's 68 points are moved onto
the input face by the kit's one similarity alignment (landmarks/align.py: rotation, uniform scale,
translation, fitted on the points expressions hardly move). The donor's shape and expression are
kept; only its placement and size follow the input. `align="none"` uses the raw donor points. The
target label is the donor frame's label.

A second, labelled block of rows shows **motion transfer** (landmarks/motion.py): the input's own
landmarks plus the donor's change from the neutral start of its sequence (data/frames.py's
reference_frame), mapped onto the input by the same similarity's rotation and scale; the input keeps
its face shape and takes only the donor's expression. The shape rows are the paper's setting,
unchanged.
"""
from __future__ import annotations

import textwrap

import numpy as np

from lmexpr_nb.common.viz import footer_text, image_grid, save_figure
from lmexpr_nb.data.frames import neutral_frame, peak_frames, reference_frame, subjects_in
from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.experiments.evalset import OURS, PRIMARY, WARP, generator_method, methods
from lmexpr_nb.landmarks.align import align_shape
from lmexpr_nb.landmarks.motion import motion_transfer


def expression_grid(cache, per_class: int = 4, footer: str | None = None, seed: int = 0):
    """Fig. 6 style: one row per expression class present, `per_class` crops from different
    subjects where possible, landmarks overlaid."""
    rng = np.random.default_rng(seed)
    rows, lms, titles = [], [], []
    for k, name in enumerate(CLASSES):
        idx = np.flatnonzero(np.asarray(cache.labels) == k)
        if idx.size == 0:
            continue
        rng.shuffle(idx)
        seen, pick = set(), []
        for i in idx:  # one frame per subject first, then fill up
            if cache.subjects[i] not in seen:
                seen.add(cache.subjects[i]), pick.append(i)
        pick += [i for i in idx if i not in pick]
        pick = pick[:per_class]
        rows.append([cache.images[i] for i in pick])
        lms.append([cache.landmarks[i] for i in pick])
        titles.append(f"{name} (n={idx.size})")
    return image_grid(rows, row_titles=titles, landmarks=lms, footer=footer)


def method_grid(cache, method: str = "dataset", n: int = 8, per_row: int = 8, footer: str | None = None):
    """The crops kept by one landmark method, landmarks overlaid; by default the frames where
    dlib found no face and the dataset's own landmarks were used (check them by eye). None when
    there are none."""
    idx = np.flatnonzero(np.asarray(cache.method).astype(str) == method)[:n]
    if idx.size == 0:
        return None
    rows = [list(idx[i:i + per_row]) for i in range(0, idx.size, per_row)]
    return image_grid([[cache.images[i] for i in r] for r in rows],
                      col_titles=[f"{cache.subjects[i]} {CLASSES[int(cache.labels[i])]}" for i in rows[0]],
                      landmarks=[[cache.landmarks[i] for i in r] for r in rows], footer=footer)


def _footer(provenance: dict, ncols: int) -> str:
    """The provenance footer, wrapped to the figure's width (it would otherwise widen the PNG)."""
    return textwrap.fill(footer_text(provenance), width=max(70, int(ncols * 1.6 * 13)))


def _save(fig, path):
    save_figure(fig, path)
    return fig


def figure_same_identity(cache, G, path, provenance: dict, split: str = "val", n_subjects: int = 2):
    """Fig. 9: per subject three rows (input = its neutral frame, target = the peak frame of each
    expression, generated from the input with the target's landmarks and label), one column per
    expression: pairs of the primary neutral-to-expression protocol. Returns (figure, {"subjects",
    "columns"})."""
    ours = generator_method(G)
    subjects = [s for s in subjects_in(cache, split) if peak_frames(cache, s, split)][:n_subjects]
    if not subjects:
        raise ValueError(f"no {split} subject has a non-neutral frame")
    expressions = sorted(set().union(*(peak_frames(cache, s, split) for s in subjects)))
    cols = [CLASSES[k] for k in expressions]
    labels = np.asarray(cache.labels)
    rows, titles = [], []
    for s in subjects:
        src, peaks = neutral_frame(cache, s, split), peak_frames(cache, s, split)
        tgt = np.array(list(peaks.values()))
        srcs = np.full(len(tgt), src)
        gen = dict(zip(peaks, ours(cache.images[srcs], cache.landmarks[srcs], cache.landmarks[tgt], labels[tgt])))
        rows += [[cache.images[src] if k in peaks else None for k in expressions],
                 [cache.images[peaks[k]] if k in peaks else None for k in expressions],
                 [gen.get(k) for k in expressions]]
        titles += [f"{s}\ninput", "target", "generated"]
    fig = image_grid(rows, row_titles=titles, col_titles=cols, footer=_footer(provenance, len(rows[0])))
    fig.suptitle(f"Fig. 9 style: same identity (input / target / generated; {PRIMARY} pairs)", fontsize=9, y=1.0)
    return _save(fig, path), {"subjects": subjects, "columns": cols}


def transfer_examples(cache, split: str = "val", n_examples: int = 6, seed: int = 0) -> list[tuple[int, int]]:
    """(input frame, landmark donor frame) pairs for Fig. 8: input = a subject's neutral frame,
    donor = a peak frame of ANOTHER subject (of `split` when it has two or more, else any other
    subject of the cache), expressions cycling so that the columns differ."""
    rng = np.random.default_rng(seed)
    subjects = subjects_in(cache, split)
    if not subjects:
        raise ValueError(f"no {split} subjects")
    donors_pool = subjects if len(subjects) > 1 else sorted(set(np.asarray(cache.subjects).astype(str)))
    out = []
    for i in range(n_examples):
        s = subjects[i % len(subjects)]
        others = [d for d in donors_pool if d != s]
        if not others:
            raise ValueError("Fig. 8 needs a second subject as landmark donor")
        d = others[int(rng.integers(len(others)))]
        peaks = peak_frames(cache, d, split if d in subjects else None)
        if not peaks:
            continue
        ks = sorted(peaks)
        out.append((neutral_frame(cache, s, split), peaks[ks[i % len(ks)]]))
    return out


def transfer_landmarks(cache, examples, align: str = "similarity") -> np.ndarray:
    """(N, 68, 2) target landmarks of Fig. 8's (input, donor) examples: the donor frame's landmarks
    moved onto the input face by the one similarity alignment (landmarks/align.py), or the raw
    donor points with align="none"; align="motion": motion transfer (the module doc)."""
    if align not in ("similarity", "none", "motion"):
        raise ValueError(f"align must be 'similarity', 'none' or 'motion', got {align!r}")
    lm = np.asarray(cache.landmarks, np.float32)
    if align == "motion":
        return np.stack([motion_transfer(lm[s], lm[d], lm[reference_frame(cache, d)]) for s, d in examples])
    return np.stack([align_shape(lm[d], lm[s]) if align == "similarity" else lm[d] for s, d in examples])


def figure_landmark_transfer(cache, G, path, provenance: dict, split: str = "val", n_examples: int = 6,
                             align: str = "similarity", seed: int = 0, motion: bool = True):
    """Fig. 8: rows input / landmark donor (its landmarks dotted) / donor landmarks on the input
    (aligned, see the module doc) / generated, one column per example; target label = donor's.
    `motion`: two more rows, labelled "motion transfer", with the motion-transfer targets and their
    generated faces (the donor's reference frame is named in the column title).
    Returns (figure, examples [(input, donor)])."""
    ex = transfer_examples(cache, split, n_examples, seed)
    target = transfer_landmarks(cache, ex, align)
    src = np.array([a for a, _ in ex])
    don = np.array([b for _, b in ex])
    lm = np.asarray(cache.landmarks, np.float32)
    labels = np.asarray(cache.labels)[don]
    ours = generator_method(G)
    gen = ours(cache.images[src], lm[src], target, labels)
    subj = np.asarray(cache.subjects).astype(str)
    rows = [list(cache.images[src]), list(cache.images[don]), list(cache.images[src]), list(gen)]
    dots = [[None] * len(ex), list(lm[don]), list(target), [None] * len(ex)]
    cols = [f"{subj[s]} <- {subj[d]}\n{CLASSES[k]}" for s, d, k in zip(src, don, labels)]
    shape = "target landmarks" + (" (aligned)" if align == "similarity" else "")
    titles = ["input", "landmark donor", shape, "generated"]
    if motion:
        moved = transfer_landmarks(cache, ex, "motion")
        rows += [list(cache.images[src]), list(ours(cache.images[src], lm[src], moved, labels))]
        dots += [list(moved), [None] * len(ex)]
        titles = titles[:2] + [f"shape transfer:\n{shape}", "shape transfer:\ngenerated",
                               "motion transfer:\ntarget landmarks", "motion transfer:\ngenerated"]
        frames = np.asarray(cache.frames)
        cols = [f"{c}\n(motion from frame {frames[reference_frame(cache, d)]})" for c, d in zip(cols, don)]
    fig = image_grid(rows, row_titles=titles, col_titles=cols, landmarks=dots,
                     footer=_footer(provenance, len(rows[0])))
    what = f"donor shape, {align} alignment" + ("; below: motion transfer, the input's shape + the donor's "
                                                  "change from its neutral frame" if motion else "")
    fig.suptitle(f"Fig. 8 style: landmark transfer across identities ({what})", fontsize=9, y=1.0)
    return _save(fig, path), ex


def comparison_pairs(cache, split: str = "val", n_examples: int = 6) -> list[tuple[int, int]]:
    """(neutral source, peak target) pairs of the same subject, pairs of the primary neutral-to-expression
    protocol (the subject's first neutral frame, the last frame of each expression); subjects and
    expressions cycle (column i: subject i mod n, expression i mod its count), so the columns show
    different expressions."""
    subjects = [s for s in subjects_in(cache, split) if peak_frames(cache, s, split)]
    if not subjects:
        raise ValueError(f"no {split} subject has a non-neutral frame")
    out = []
    for i in range(n_examples):
        s = subjects[i % len(subjects)]
        peaks = peak_frames(cache, s, split)
        ks = sorted(peaks)
        out.append((neutral_frame(cache, s, split), peaks[ks[i % len(ks)]]))
    return out


def figure_comparison(cache, G, path, provenance: dict, split: str = "val", n_examples: int = 6):
    """Fig. 7 style rows: input (= the copy-source baseline) / ground truth / ours / warp baseline,
    one column per validation pair. Returns (figure, pairs)."""
    pairs = comparison_pairs(cache, split, n_examples)
    s = np.array([a for a, _ in pairs])
    t = np.array([b for _, b in pairs])
    lm, labels = np.asarray(cache.landmarks, np.float32), np.asarray(cache.labels)
    fns = methods(G)
    out = {m: fns[m](cache.images[s], lm[s], lm[t], labels[t]) for m in (OURS, WARP)}
    rows = [list(cache.images[s]), list(cache.images[t]), list(out[OURS]), list(out[WARP])]
    subj = np.asarray(cache.subjects).astype(str)
    cols = [f"{subj[a]}: {CLASSES[labels[b]]}" for a, b in pairs]
    fig = image_grid(rows, row_titles=["input\n(= copy source)", "ground truth", "ours", "warp baseline"],
                     col_titles=cols, footer=_footer(provenance, len(rows[0])))
    fig.suptitle(f"Fig. 7 style: generated vs ground truth vs baselines ({PRIMARY} pairs)", fontsize=9, y=1.0)
    return _save(fig, path), pairs


# ----------------------------------------------------------------------------- Table 6


# ----------------------------------------------------------------------------- numbers for save_metrics

