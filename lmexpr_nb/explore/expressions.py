"""Landmark editing for the explorer and inference: expressions, intensity, regions, donors.

The generator is driven by target landmarks and a target label (paper Sec. III-A); this
module makes those targets from a source face's own 68 landmarks (iBUG order):

- `learn_displacements(cache)`: the mean landmark displacement of every expression, learned
  from the training split: each peak frame minus its subject's neutral frames (the same
  sequence's when the cache records sequences), both first normalised by a similarity
  transform (scale, rotation, translation) fitted on *stable* points (nose, eye corners, upper jaw) to
  a reference shape, so that displacements of different faces live in one frame. Per-subject
  means are averaged, so a subject with many sequences does not dominate.
- `target_landmarks(source, expression, intensity, model)`: source + intensity x the mean
  displacement mapped back to the source's own scale and rotation. Intensity 0 returns the
  source's landmarks exactly; 1 the full mean displacement.
- `edit_regions(lm, mouth=, smile=, brow=, eyes=)`: direct edits of one region each, amounts
  in [-1, 1] (0 = unchanged; -1 closes the mouth / eyes fully, 1 opens them wide), measured
  in the face's own frame (eye line and its normal, inter-ocular distance as the unit).
- `blend_label(src, tgt, i)`: the soft label (1-i) onehot(src) + i onehot(tgt) that the
  generator's label planes accept (intensity blending of the "expression label smooth" step).

Faces are put into one frame by the kit's one similarity alignment (landmarks/align.py); another
identity's shape (a landmark donor) is moved onto the source's face by its `align_shape`.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmexpr_nb.common.files import atomic_path
from lmexpr_nb.data.records import CLASSES, class_index
from lmexpr_nb.landmarks.align import STABLE, Similarity, canonical_transform, face_frame, similarity_fit

# iBUG 68-point layout (0-based). "right" is the subject's right (image left).
RIGHT_BROW, LEFT_BROW = tuple(range(17, 22)), tuple(range(22, 27))

UPPER_LIP = (49, 50, 51, 52, 53, 61, 62, 63)
LOWER_LIP = (55, 56, 57, 58, 59, 65, 66, 67)
LIP_CORNERS = (48, 54, 60, 64)
UPPER_LIDS = (37, 38, 43, 44)
LOWER_LIDS = (40, 41, 46, 47)
# which points each region slider may move (tests check that nothing else does)
REGION_POINTS = {
    "mouth": UPPER_LIP + LOWER_LIP,
    "smile": LIP_CORNERS + (49, 53, 55, 59),
    "brow": RIGHT_BROW + LEFT_BROW,
    "eyes": UPPER_LIDS + LOWER_LIDS,
}
# region amounts at +1, in inter-ocular distances
MOUTH_OPEN = 0.45     # extra inner-lip separation
SMILE_OUT, SMILE_UP = 0.08, 0.10
BROW_UP = 0.12
EYE_OPEN = 0.12


# --------------------------------------------------------------------------------------
# The expression model: reference shape + mean displacement per class

def as_class(expression) -> int:
    """A class index from an int or an expression name (any common spelling)."""
    if isinstance(expression, (int, np.integer)):
        k = int(expression)
        if not 0 <= k < len(CLASSES):
            raise ValueError(f"expression index {k} is outside 0..{len(CLASSES) - 1}")
        return k
    return class_index(str(expression))


NPZ_KEYS = ("reference", "displacements", "subjects", "classes", "points")


class BadSideFile(ValueError):
    """A saved expression model that cannot be used; the message is one line naming the file."""


@dataclass
class ExpressionModel:
    """Mean displacement of each expression in a common (reference) frame.

    reference: (68,2) mean neutral shape in the canonical frame (unit RMS radius of the
    stable points); displacements: (K,68,2) in that frame; subjects: (K,) how many training
    subjects each mean averages (0 = the class was not seen; neutral is 0 displacement).
    """
    reference: np.ndarray
    displacements: np.ndarray
    subjects: np.ndarray
    classes: tuple[str, ...] = CLASSES
    points: tuple[int, ...] = STABLE
    meta: dict = field(default_factory=dict)

    def to_reference(self, lm) -> Similarity:
        """The similarity taking this face into the reference frame (fitted on stable points)."""
        return similarity_fit(lm, self.reference, self.points)

    def available(self) -> list[str]:
        return [c for k, c in enumerate(self.classes) if k == 0 or self.subjects[k] > 0]

    def displacement(self, expression, source_lm, source_expression=0) -> np.ndarray:
        """The (68,2) mean displacement from `source_expression` to `expression`, in the
        source's own pixel frame (its scale and rotation)."""
        k, j = as_class(expression), as_class(source_expression)
        for c in (k, j):
            if c != 0 and self.subjects[c] == 0:
                raise ValueError(f"no training subject shows {self.classes[c]!r}: its displacement is unknown "
                                 f"(known: {', '.join(self.available())})")
        d_ref = self.displacements[k] - self.displacements[j]
        return self.to_reference(source_lm).inverse().apply_vectors(d_ref)

    def save(self, path) -> Path:
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, reference=self.reference, displacements=self.displacements, subjects=self.subjects,
                         classes=np.array(self.classes), points=np.array(self.points))
        return path

    @classmethod
    def load(cls, path) -> "ExpressionModel":
        """The model `save` wrote. BadSideFile (a ValueError, one line naming the file and what is
        wrong) for a file that is empty, truncated, no .npz, lacks a key, or holds arrays of
        the wrong shape or NaN/inf: never a traceback, nor NaN target landmarks later."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                missing = [k for k in NPZ_KEYS if k not in z.files]
                if missing:
                    raise BadSideFile(f"{path} is no expression model: it lacks {', '.join(missing)} "
                                      f"(holds {', '.join(z.files) or 'nothing'})")
                a = {k: z[k] for k in NPZ_KEYS}
        except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
            if isinstance(e, BadSideFile):
                raise
            what = "empty" if path.is_file() and path.stat().st_size == 0 else "truncated or not an .npz archive"
            raise BadSideFile(f"{path} is not a readable expression model ({what}: {type(e).__name__}); delete it "
                              f"(notebook 09 writes it again) or pass expressions=") from None
        if tuple(str(c) for c in a["classes"].ravel()) != CLASSES:
            raise BadSideFile(f"{path}: classes must be the kit's {len(CLASSES)} ({', '.join(CLASSES)}), got "
                              f"{a['classes'].ravel().tolist()!r:.80}")
        k = len(CLASSES)
        for key, shape in (("reference", (68, 2)), ("displacements", (k, 68, 2)), ("subjects", (k,))):
            if a[key].shape != shape or a[key].dtype.kind not in "iuf":
                raise BadSideFile(f"{path}: {key} must be {shape} numbers for its {k} classes, got "
                                  f"{a[key].dtype} {a[key].shape}")
            if not np.isfinite(a[key]).all():
                raise BadSideFile(f"{path}: {key} holds NaN or infinite values; delete it (notebook 09 writes it "
                                  f"again) or pass expressions=")
        if a["points"].dtype.kind not in "iu" or a["points"].ndim != 1 or not np.all((0 <= a["points"]) &
                                                                                   (a["points"] < 68)):
            raise BadSideFile(f"{path}: points must be landmark indices in 0..67, got {a['points'].tolist()!r:.60}")
        return cls(a["reference"], a["displacements"], a["subjects"], tuple(str(c) for c in a["classes"]),
                   tuple(int(p) for p in a["points"]))


def reference_shape(shapes, points=STABLE, iterations: int = 3) -> np.ndarray:
    """Generalised Procrustes mean of (N,68,2) shapes in the canonical frame."""
    shapes = np.asarray(shapes, dtype=np.float64)
    ref = np.mean([canonical_transform(s, points).apply(s) for s in shapes], axis=0)
    for _ in range(iterations):
        ref = canonical_transform(ref, points).apply(ref)
        ref = np.mean([similarity_fit(s, ref, points).apply(s) for s in shapes], axis=0)
    return canonical_transform(ref, points).apply(ref)


def learn_displacements(cache, split: str | None = "train", points=STABLE) -> ExpressionModel:
    """Mean displacement of each expression from a cache (images, landmarks, labels, subjects,
    split; `sequences` used when present). Neutral frames are label 0."""
    lms = np.asarray(cache.landmarks, dtype=np.float64)
    labels = np.asarray(cache.labels).astype(int)
    subjects = np.asarray(cache.subjects).astype(str)
    keep = np.ones(len(labels), bool) if split is None else (np.asarray(cache.split).astype(str) == split)
    seqs = getattr(cache, "sequences", None)
    seqs = np.asarray(seqs).astype(str) if seqs is not None else None
    neutral = np.flatnonzero(keep & (labels == 0))
    if neutral.size == 0:
        raise ValueError(f"no neutral (label 0) frames in the {split or 'whole'} cache: cannot learn displacements")
    ref = reference_shape(lms[neutral], points)
    norm = np.stack([similarity_fit(s, ref, points).apply(s) for s in lms])
    K = len(CLASSES)
    per_subject: list[list[np.ndarray]] = [[] for _ in range(K)]
    for s in sorted(set(subjects[keep])):
        mine = keep & (subjects == s)
        if not np.any(mine & (labels == 0)):
            continue
        per_class: dict[int, list[np.ndarray]] = {}
        for i in np.flatnonzero(mine & (labels != 0)):
            base = mine & (labels == 0)
            if seqs is not None and np.any(base & (seqs == seqs[i])):
                base = base & (seqs == seqs[i])
            per_class.setdefault(int(labels[i]), []).append(norm[i] - norm[base].mean(0))
        for k, ds in per_class.items():
            per_subject[k].append(np.mean(ds, axis=0))
    disp = np.zeros((K, 68, 2))
    counts = np.zeros(K, dtype=np.int64)
    for k in range(1, K):
        if per_subject[k]:
            disp[k] = np.mean(per_subject[k], axis=0)
            counts[k] = len(per_subject[k])
    return ExpressionModel(ref, disp, counts, CLASSES, tuple(points),
                           meta={"split": split, "frames": int(keep.sum())})


def displacement_table(model: ExpressionModel) -> list[dict]:
    """Per expression: subjects averaged and mean / max point displacement (in inter-ocular units)."""
    _, _, iod = face_frame(model.reference)
    rows = []
    for k, name in enumerate(model.classes):
        mag = np.hypot(*model.displacements[k].T) / iod
        rows.append({"expression": name, "subjects": int(model.subjects[k]),
                     "mean shift (iod)": float(mag.mean()), "max shift (iod)": float(mag.max()),
                     "most moved point": int(mag.argmax()) if k else None})
    return rows


# --------------------------------------------------------------------------------------
# Targets

def target_landmarks(source_lm, expression, intensity: float, model: ExpressionModel,
                     source_expression=0) -> np.ndarray:
    """source + intensity * mean displacement (source_expression -> expression) in the source's
    frame. intensity 0 returns the source exactly; 1 the full mean displacement."""
    src = np.asarray(source_lm, dtype=np.float64)
    if float(intensity) == 0.0:
        return src.copy()
    return src + float(intensity) * model.displacement(expression, src, source_expression)


def blend_label(source_label, target_label, intensity: float, num_classes: int = len(CLASSES)) -> np.ndarray:
    """Soft label (1-i) onehot(source) + i onehot(target), i clipped to [0, 1]; float32 (K,)."""
    i = float(np.clip(intensity, 0.0, 1.0))
    v = np.zeros(num_classes, np.float32)
    v[as_class(source_label)] += 1.0 - i
    v[as_class(target_label)] += i
    return v


def edit_regions(lm, mouth: float = 0.0, smile: float = 0.0, brow: float = 0.0, eyes: float = 0.0) -> np.ndarray:
    """Region edits in the face's own frame; each moves only REGION_POINTS[region].

    mouth: +1 separates the lips by MOUTH_OPEN inter-ocular distances (lower lip 70%, upper 30%),
           -1 closes the inner lips (mean gap 0). smile: +1 lifts and widens the lip corners
           (their neighbours half as much), -1 the opposite (a frown). brow: +-BROW_UP iod up/down.
    eyes: +1 opens each eye by EYE_OPEN iod (upper lid 70%), -1 closes it (mean lid gap 0).
    """
    out = np.array(lm, dtype=np.float64, copy=True)
    if not (mouth or smile or brow or eyes):
        return out
    ex, down, iod = face_frame(out)

    def gap(upper, lower):
        return float((out[list(lower)] @ down).mean() - (out[list(upper)] @ down).mean())

    if mouth:
        d = mouth * MOUTH_OPEN * iod if mouth > 0 else mouth * max(gap((61, 62, 63), (65, 66, 67)), 0.0)
        out[list(UPPER_LIP)] -= 0.3 * d * down
        out[list(LOWER_LIP)] += 0.7 * d * down
    if smile:
        for idx, w, side in (((48, 60), 1.0, -1), ((54, 64), 1.0, 1), ((49, 59), 0.5, -1), ((53, 55), 0.5, 1)):
            out[list(idx)] += w * smile * iod * (SMILE_OUT * side * ex - SMILE_UP * down)
    if brow:
        out[list(RIGHT_BROW + LEFT_BROW)] -= brow * BROW_UP * iod * down
    if eyes:
        for upper, lower in (((37, 38), (40, 41)), ((43, 44), (46, 47))):
            d = eyes * EYE_OPEN * iod if eyes > 0 else eyes * max(gap(upper, lower), 0.0)
            out[list(upper)] -= 0.7 * d * down
            out[list(lower)] += 0.3 * d * down
    return out


def region_gaps(lm) -> dict[str, float]:
    """Mean inner-lip and eyelid separations along the face's vertical axis (for tests and tables)."""
    lm = np.asarray(lm, dtype=np.float64)
    _, down, _ = face_frame(lm)

    def g(u, l):
        return float((lm[list(l)] @ down).mean() - (lm[list(u)] @ down).mean())
    return {"mouth": g((61, 62, 63), (65, 66, 67)), "right_eye": g((37, 38), (40, 41)),
            "left_eye": g((43, 44), (46, 47))}
