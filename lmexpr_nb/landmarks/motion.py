"""Motion transfer: another face's expression as a change from its own reference (neutral) frame.

Shape transfer (the paper's Fig. 8; landmarks/align.py's `align_shape`) gives the source face the
donor's whole shape, moved onto the source by the kit's one similarity alignment: where the two
faces differ in shape the generator is asked for the donor's jaw, eye spacing and mouth width.
Motion transfer keeps the source's own shape and adds only what the donor's face *did*:

    target = source + A (donor* - reference)

- `reference` is the donor's reference frame (its neutral frame, the first frame of a driving
  sequence), `donor` the frame whose expression is wanted;
- donor* is the donor frame with its head pose relative to the reference taken out: `align_shape(donor,
  reference)`, the one similarity alignment fitted on the STABLE points. A driver that nods,
  turns or moves toward the camera does not move the generated face; only the expression moves;
- A is the rotation and uniform scale of the similarity taking the reference onto the source
  (`similarity_fit(reference, source)`): displacements transform without the translation
  (`Similarity.apply_vectors`), so the donor's motion is expressed at the source's size and tilt.
- `region_scale=True` (labelled "per-region scaling" wherever it is used) further multiplies each
  region's displacement (jaw, brows, nose, eyes, mouth; REGIONS) by the ratio of the region's size
  on the source to its size on the reference mapped onto the source (RMS distance of the region's
  points to their centroid): a wide mouth opens as wide, relative to itself, as the donor's narrow one.

A donor frame equal to its reference is no motion, and gives the source's landmarks exactly (the
source as its own donor and every frame of a still driver).
"""
from __future__ import annotations

import numpy as np

from lmexpr_nb.landmarks.align import STABLE, align_shape, face_frame, similarity_fit

REGIONS = {"jaw": tuple(range(17)), "brows": tuple(range(17, 27)), "nose": tuple(range(27, 36)),
           "eyes": tuple(range(36, 48)), "mouth": tuple(range(48, 68))}
TRANSFERS = {"shape": "take the donor's face shape", "motion": "take the donor's expression"}


def _shape(name: str, pts) -> np.ndarray:
    a = np.asarray(pts, dtype=np.float64)
    if a.shape != (68, 2) or not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (68, 2) landmarks, got shape {a.shape}")
    return a


def donor_motion(donor, reference, points=STABLE) -> np.ndarray:
    """(68, 2) the donor's expression change from its reference frame, in the reference's pixels,
    with the head pose between the two frames taken out (module doc); exactly 0 for donor == reference."""
    donor, reference = _shape("donor", donor), _shape("reference", reference)
    if np.array_equal(donor, reference):
        return np.zeros_like(reference)
    return align_shape(donor, reference, points) - reference


def region_ratios(source, reference, points=STABLE) -> dict[str, float]:
    """Per region (REGIONS): size on the source / size on the reference mapped onto the source."""
    source, reference = _shape("source", source), _shape("reference", reference)
    mapped = similarity_fit(reference, source, points).apply(reference)
    out = {}
    for name, idx in REGIONS.items():
        s, r = (np.sqrt(np.mean(np.sum((p[list(idx)] - p[list(idx)].mean(0)) ** 2, axis=1))) for p in (source, mapped))
        out[name] = float(s / r) if r > 1e-9 else 1.0
    return out


def motion_transfer(source, donor, reference, points=STABLE, region_scale: bool = False) -> np.ndarray:
    """(68, 2) float64 target landmarks: `source` + the donor's motion from `reference`, mapped into
    the source's frame by the similarity's rotation and scale (module doc)."""
    source = _shape("source", source)
    d = donor_motion(donor, reference, points)
    if not d.any():
        return source.copy()
    reference = np.asarray(reference, dtype=np.float64)
    d = similarity_fit(reference, source, points).apply_vectors(d)
    if region_scale:
        for name, ratio in region_ratios(source, reference, points).items():
            d[list(REGIONS[name])] *= ratio
    return source + d


def transfer_target(mode: str, source, donor, reference=None, region_scale: bool = False) -> np.ndarray:
    """Target landmarks for `source` from a donor frame: mode "shape" = the donor's shape aligned onto
    the source (align_shape, the paper's Fig. 8), "motion" = motion_transfer from `reference`."""
    if mode == "shape":
        return align_shape(_shape("donor", donor), _shape("source", source))
    if mode == "motion":
        if reference is None:
            raise ValueError("motion transfer needs the donor's reference (neutral) frame")
        return motion_transfer(source, donor, reference, region_scale=region_scale)
    raise ValueError(f"transfer must be one of {', '.join(TRANSFERS)}, got {mode!r}")


def motion_magnitude(donor, reference) -> float:
    """How far the donor frame moved from its reference: RMS point displacement (head pose taken
    out) in the reference's inter-ocular distances."""
    d = donor_motion(donor, reference)
    return float(np.sqrt(np.mean(np.sum(d ** 2, axis=1))) / face_frame(reference)[2])
