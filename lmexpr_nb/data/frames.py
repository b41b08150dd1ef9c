"""Named frames of a preprocessing cache: what a figure, a table or the explorer picks.

Frames are ordered by (sequence, frame) within a subject. A subject's *neutral frame* is its first
frame labelled neutral (0), its first frame if it has none; its *peak frames* are, per expression,
the last frame with that label (the sequence's apex, CK+'s and Oulu-CASIA's convention). A frame's
*reference frame* is the neutral start of its own sequence (motion transfer measures a donor's
expression from it): the sequence's first neutral frame, else the subject's neutral frame.
"""
from __future__ import annotations

import numpy as np


def _order(cache, idx: np.ndarray) -> np.ndarray:
    """`idx` sorted by (sequence, frame)."""
    seq = np.asarray(cache.sequences).astype(str)[idx]
    frames = np.asarray(cache.frames)[idx]
    return idx[np.lexsort((frames, seq))]


def subjects_in(cache, split: str = "val") -> list[str]:
    """The subjects of one split ('train' or 'val'), sorted."""
    s = np.asarray(cache.subjects).astype(str)
    return sorted(set(s[np.asarray(cache.split) == split]))


def neutral_frame(cache, subject: str, split: str | None = None) -> int:
    """The subject's first neutral (label 0) frame by (sequence, frame); its first frame if none."""
    mine = np.asarray(cache.subjects).astype(str) == subject
    if split is not None:
        mine &= np.asarray(cache.split) == split
    idx = np.flatnonzero(mine & (np.asarray(cache.labels) == 0))
    if idx.size == 0:
        idx = np.flatnonzero(mine)
    if idx.size == 0:
        raise ValueError(f"subject {subject} has no frames")
    return int(_order(cache, idx)[0])


def reference_frame(cache, index: int) -> int:
    """The first neutral frame of frame `index`'s own sequence (subject and sequence), else its
    subject's neutral frame (any split)."""
    subjects, seqs = np.asarray(cache.subjects).astype(str), np.asarray(cache.sequences).astype(str)
    i = int(index)
    idx = np.flatnonzero((subjects == subjects[i]) & (seqs == seqs[i]) & (np.asarray(cache.labels) == 0))
    return int(_order(cache, idx)[0]) if idx.size else neutral_frame(cache, subjects[i])


def peak_frames(cache, subject: str, split: str | None = None) -> dict[int, int]:
    """{expression label: the subject's last frame with that label} for every non-neutral label."""
    mine = np.asarray(cache.subjects).astype(str) == subject
    if split is not None:
        mine &= np.asarray(cache.split) == split
    labels = np.asarray(cache.labels)
    out = {}
    for k in sorted(set(labels[mine].tolist()) - {0}):
        out[int(k)] = int(_order(cache, np.flatnonzero(mine & (labels == k)))[-1])
    return out


def example_pair(cache, split: str = "val", source_label: int = 0, seed: int = 0) -> tuple[int, int]:
    """One illustrative same-subject pair: a `source_label` (neutral) frame -> a peak frame of another
    expression, from the first subject of `split` that has both (seeded choice among targets)."""
    labels, subjects, split_arr = np.asarray(cache.labels), np.asarray(cache.subjects), np.asarray(cache.split)
    for s in sorted(set(subjects[split_arr == split])):
        mine = (subjects == s) & (split_arr == split)
        src = np.flatnonzero(mine & (labels == source_label))
        tgt = np.flatnonzero(mine & (labels != source_label))
        if src.size and tgt.size:
            return int(src[0]), int(np.random.default_rng(seed).choice(tgt))
    raise ValueError(f"no {split} subject has both a {source_label} frame and another expression")
