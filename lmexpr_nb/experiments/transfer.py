"""Shape vs motion transfer across identities: what each does to identity and to the landmarks.

    rows = transfer_comparison(cache, G, cfg, weights=model.weights)   # one row per way of making the target
    write_transfer_table(ctx.tables, rows, provenance)                # tables/transfer_shape_vs_motion.csv|md

Pairs: every cross-identity pair of the `split`'s subjects: input = a subject's neutral frame,
donor = the peak frame of every expression of every OTHER subject of the split (Fig. 8's setting,
all of it instead of six columns). Each pair is generated with target landmarks made
- "shape transfer (paper Fig. 8)": the donor's landmarks aligned onto the input (landmarks/align.py);
- "motion transfer": the input's landmarks + the donor's change from its sequence's neutral frame
  (landmarks/motion.py; data/frames.py's reference_frame);
- "motion transfer, per-region scaling": the same with each region's motion scaled by its size ratio,
and the donor frame's label. Scores, all through metrics/registry.py:
- identity: dlib's face descriptor (the registry's "identity" features); the mean cosine of each
  generated face to its input ("cosine to input") and to the donor frame ("cosine to donor": how
  far it drifted toward the donor), and Rank-1 against a gallery of one real neutral frame per
  subject of the split, a frame other than the input (another sequence's where there is one);
- landmark NME: the registry's "landmark_error", landmarks re-detected on each generated face
  against the targets it was given (inter-ocular), faces not found counted.
A "copy input" row scores the input itself as a reference point (its NME against the motion targets).
"""
from __future__ import annotations

import numpy as np

from lmexpr_nb.data.frames import neutral_frame, peak_frames, reference_frame, subjects_in
from lmexpr_nb.experiments.tables import write_table
from lmexpr_nb.landmarks.motion import transfer_target
from lmexpr_nb.metrics import registry
from lmexpr_nb.metrics.identity import cosine_scores
from lmexpr_nb.metrics.landmark_error import nme_detector
from lmexpr_nb.model.generate import synthesize

# key: (row name, transfer, per-region scaling)
MODES = {"shape": ("shape transfer (paper Fig. 8)", "shape", False), "motion": ("motion transfer", "motion", False),
         "motion-regions": ("motion transfer, per-region scaling", "motion", True)}
COPY = "copy input (reference)"


def cross_identity_pairs(cache, split: str = "val") -> list[tuple[int, int]]:
    """(input neutral frame, donor peak frame) for every ordered pair of different `split` subjects
    and every expression the donor shows."""
    subjects = subjects_in(cache, split)
    return [(neutral_frame(cache, s, split), p) for s in subjects for d in subjects if d != s
            for p in peak_frames(cache, d, split).values()]


def identity_gallery_frames(cache, split: str = "val") -> np.ndarray:
    """One real neutral frame per `split` subject that is not its neutral_frame (the inputs): the first
    neutral frame of another sequence, else another neutral frame, else the neutral frame itself."""
    subj, seqs = np.asarray(cache.subjects).astype(str), np.asarray(cache.sequences).astype(str)
    labels, sp, frames = np.asarray(cache.labels), np.asarray(cache.split), np.asarray(cache.frames)
    out = []
    for s in subjects_in(cache, split):
        first = neutral_frame(cache, s, split)
        mine = np.flatnonzero((subj == s) & (sp == split) & (labels == 0) & (np.arange(len(labels)) != first))
        other = mine[seqs[mine] != seqs[first]]
        pool = other if other.size else mine
        out.append(int(pool[np.lexsort((frames[pool], seqs[pool]))[0]]) if pool.size else first)
    return np.array(out)


def transfer_comparison(cache, G, cfg=None, split: str = "val", recogniser=None, detector=None,
                        batch_size: int = 32, weights: str = "", modes=tuple(MODES)) -> list[dict]:
    """Rows (module doc): method, N pairs, cosine to input / donor (mean), Rank-1 (%), landmark NME,
    no face found, how far the targets moved from the input's landmarks. `cfg`: an EvalConfig or
    Config for the recogniser; `recogniser`, `detector`: given objects instead of dlib's (tests);
    `weights`: how the generator's rows name it (model/trained.py's TrainedModel.weights); `modes`:
    which rows besides the copy row (keys of MODES; each costs a dlib descriptor per pair)."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown transfer mode(s) {unknown}: use {', '.join(MODES)}")
    pairs = cross_identity_pairs(cache, split)
    if not pairs:
        raise ValueError(f"no cross-identity pairs: the {split} split needs two subjects with expressions")
    src, don = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    lm = np.asarray(cache.landmarks, np.float64)
    labels, subj = np.asarray(cache.labels), np.asarray(cache.subjects).astype(str)
    refs = np.array([reference_frame(cache, d) for d in don])
    rec = recogniser if recogniser is not None else registry.get("identity").features("dlib", cfg, "cpu")
    det = detector if detector is not None else nme_detector(cache.images.shape[1])
    gallery = identity_gallery_frames(cache, split)
    g_emb = rec.embed(cache.images[gallery])
    in_emb, don_emb = rec.embed(cache.images[src]), rec.embed(cache.images[don])
    rows = []
    for name, mode, region in [(COPY, None, False)] + [MODES[m] for m in modes]:
        if mode is None:
            fake = cache.images[src]
            targets = np.stack([transfer_target("motion", lm[s], lm[d], lm[r]) for s, d, r in zip(src, don, refs)])
        else:
            targets = np.stack([transfer_target(mode, lm[s], lm[d], lm[r], region)
                                for s, d, r in zip(src, don, refs)])
            fake = synthesize(G, cache.images[src], lm[src], targets, labels[don], G.cfg, batch_size=batch_size)
        emb = rec.embed(fake)
        ident = registry.get("identity").compare(g_emb, subj[gallery], emb, subj[src])
        nme = registry.summarise("landmark_error", registry.scores("landmark_error", fake=fake,
                                                                   target_landmarks=targets, detector=det))
        rows.append({"method": name, "generator": "none (the input itself)" if mode is None else (weights or "given"),
                     "cosine to input": float(np.mean(np.diag(cosine_scores(emb, in_emb)))),
                     "cosine to donor": float(np.mean(np.diag(cosine_scores(emb, don_emb)))),
                     "Rank-1 (%)": 100 * ident.rank1, "landmark NME": nme.value,
                     "no face found": nme.extra.get("n_no_face", 0),
                     "target moved from input (NME)": _mean_nme(targets, lm[src]),
                     "N": len(pairs)})
    return rows


def write_transfer_table(folder, rows: list[dict], provenance: dict):
    """tables/transfer_shape_vs_motion.csv and .md (experiments/tables.py's write_table)."""
    note = ("Cross-identity pairs of the validation subjects: a subject's neutral frame given the landmarks of "
            "another subject's peak frame (shape transfer: its shape aligned onto the input, the paper's Fig. 8) or "
            "the input's own landmarks moved by that subject's change from its neutral frame (motion transfer), "
            "and the peak frame's label. Cosines and Rank-1: dlib's face descriptor (Rank-1 against one other "
            "neutral frame per validation subject). Landmark NME: dlib's landmarks on each generated face against "
            "the targets it was given (the copy row: the input against the motion targets). 'Target moved from "
            "input': how far the targets are from the input's own landmarks. Method: experiments/transfer.py.")
    return write_table(folder, "transfer_shape_vs_motion", rows, provenance,
                       title="Shape vs motion transfer across identities (identity and landmark error)", note=note)


def _mean_nme(a, b) -> float:
    """Mean inter-ocular-normalised point distance between two sets of (N, 68, 2) landmarks."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    iod = np.linalg.norm(b[:, 36:42].mean(1) - b[:, 42:48].mean(1), axis=1)
    return float(np.mean(np.linalg.norm(a - b, axis=2).mean(1) / iod))
