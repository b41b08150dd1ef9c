"""The realism measures (metrics/sharpness.py, metrics/expression_change.py) on constructed images.

Faces: synthetic subjects rendered at CK+'s quarter size and cropped to 64 px as preprocessing
crops them (exact landmarks, no dlib needed for the crop); the classifier and the descriptors use
dlib as the kit does.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lmexpr_nb.data.cache import FaceCache
from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.data.synthetic.render import render_sequence, sequence_order
from lmexpr_nb.landmarks.detect import crop_and_resize, crop_box
from lmexpr_nb.metrics import registry
from lmexpr_nb.metrics.expression_change import face_landmarks, train_expression_change_classifier
from lmexpr_nb.metrics.recognisers import DlibRecogniser
from lmexpr_nb.metrics.sharpness import hull_mask, sharpness_ratio

SIZE = 64
SUBJECTS = 5                    # 4 train + 1 val
EXPRESSIONS = ("happy", "surprise", "disgust")


@pytest.fixture(scope="module")
def faces():
    """A FaceCache of neutral (frames 1-2) and peak (last 2 of 6) 64 px crops of three expressions."""
    imgs, lms, labels, subj, seqs, frames, split = [], [], [], [], [], [], []
    for s in range(1, SUBJECTS + 1):
        order = sequence_order(0, s)
        for name in EXPRESSIONS:
            q = order.index(name) + 1
            for f, img, lm, _ in render_sequence(0, s, q, frames=6, size=(320, 245)):
                if f in (3, 4):
                    continue
                crop, tr = crop_and_resize(img, crop_box(lm, 0.25), SIZE)
                imgs.append(crop), lms.append(tr.apply(lm))
                labels.append(0 if f <= 2 else CLASSES.index(name))
                subj.append(f"S{s:03d}"), seqs.append(f"{q:03d}"), frames.append(f)
                split.append("val" if s == SUBJECTS else "train")
    n = len(imgs)
    return FaceCache(images=np.stack(imgs), landmarks=np.stack(lms).astype(np.float32),
                     labels=np.array(labels, np.int64), subjects=np.array(subj), sequences=np.array(seqs),
                     frames=np.array(frames, np.int64), paths=np.array([f"t/{i}" for i in range(n)]),
                     split=np.array(split), method=np.array(["dataset"] * n), meta={"image_size": SIZE})


def _val_pairs(c):
    """(source, target) indices: the val subject's first neutral frame -> each of its peak frames."""
    val = np.asarray(c.split) == "val"
    labels = np.asarray(c.labels)
    src = np.where(val & (labels == 0))[0][0]
    tgt = np.where(val & (labels > 0))[0]
    return np.full(len(tgt), src), tgt


def _checkerboard(img, period=2, amp=40):
    yy, xx = np.mgrid[:img.shape[0], :img.shape[1]]
    board = np.where(((yy // period + xx // period) % 2) == 0, amp, -amp)[..., None]
    return np.clip(img.astype(np.int16) + board, 0, 255).astype(np.uint8)


def _noise(img, sd=25, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0, sd, img.shape), 0, 255).astype(np.uint8)


def _blur(img, sigma=1.5):
    return ndimage.gaussian_filter(img.astype(np.float64), (sigma, sigma, 0)).round().astype(np.uint8)


# ----------------------------------------------------------------------------- sharpness

def test_sharpness_is_one_for_the_real_target_and_orders_blur(faces):
    img, lm = faces.images[5], faces.landmarks[5]
    assert sharpness_ratio(img, img, lm) == pytest.approx(1.0)
    s = [sharpness_ratio(_blur(img, sigma), img, lm) for sigma in (0.5, 1.0, 2.0)]
    assert 1.0 > s[0] > s[1] > s[2] > 0


def test_sharpness_counts_only_the_face_hull(faces):
    img, lm = faces.images[5], faces.landmarks[5]
    mask = hull_mask(lm, img.shape[:2])
    hull = ndimage.binary_dilation(mask)              # the 3x3 Laplacian of a mask pixel reads the hull only
    outside = img.copy()
    outside[~hull] = _noise(img)[~hull]               # noise outside the face: no change
    assert sharpness_ratio(outside, img, lm) == pytest.approx(1.0)
    inside = img.copy()
    inside[mask] = _noise(img)[mask]
    assert sharpness_ratio(inside, img, lm) > 2


def test_sharpness_is_size_independent(faces):
    """The same blur at 64 and at 128 px (both images resized alike) gives a similar ratio."""
    from PIL import Image
    img, lm = faces.images[5], faces.landmarks[5]
    big = np.asarray(Image.fromarray(img).resize((128, 128), Image.BICUBIC))
    s64 = sharpness_ratio(_blur(img, 1.0), img, lm)
    s128 = sharpness_ratio(_blur(big, 2.0), big, lm * 2)
    assert abs(np.log(s64 / s128)) < np.log(2.0), (s64, s128)


def test_sharpness_flat_target_is_not_scored():
    flat = np.full((32, 32, 3), 128, np.uint8)
    lm = np.stack(np.meshgrid(np.linspace(8, 24, 17), [8.0, 24.0]), -1).reshape(-1, 2)[:68]
    lm = np.concatenate([lm, lm[:34] + 1])[:68]
    assert np.isnan(sharpness_ratio(flat, flat, lm))
    r = registry.summarise("sharpness", registry.scores("sharpness", fake=flat[None], real=flat[None],
                                                        target_landmarks=lm[None]))
    assert r.n == 0 and r.extra["n_flat_target"] == 1


# ----------------------------------------------------------------------------- all measures together

@pytest.fixture(scope="module")
def scored(faces):
    """Each constructed set of val targets scored on every realism measure."""
    clf = train_expression_change_classifier(faces)
    src, tgt = _val_pairs(faces)
    real = faces.images[tgt]
    lm = faces.landmarks[tgt]
    labels = np.asarray(faces.labels)[tgt]
    sets = {"real": real, "blurred": np.stack([_blur(x) for x in real]),
            "noise": np.stack([_noise(x, seed=i) for i, x in enumerate(real)]),
            "checkerboard": np.stack([_checkerboard(x) for x in real])}
    rec = DlibRecogniser()
    e_real = rec.embed(real)
    out = {}
    for name, ims in sets.items():
        sharp = registry.scores("sharpness", fake=ims, real=real, target_landmarks=lm)
        expr = registry.scores("expression_correct", fake=ims, fake_labels=labels, classifier=clf,
                               source=faces.images[src])
        dist = np.linalg.norm(rec.embed(ims) - e_real, axis=1)     # per-image dlib descriptor shift
        out[name] = {"sharpness": float(np.mean(sharp)), "expression": float(np.mean(expr)),
                     "descriptor_shift": float(np.mean(dist))}
    return out


def test_the_classifier_recognises_the_real_targets(scored):
    assert scored["real"]["expression"] == 1.0


def test_each_corruption_scores_worse_on_some_measure_and_only_real_scores_well_on_all(scored):
    """Well = sharpness within 20 % of the real target's (1.0), expression accuracy at the real
    targets' level, and a dlib descriptor that moved less than 0.1 (a tenth of dlib's same-person
    threshold of 0.6 ... its distance scale) from the real target's."""
    def good(s):
        return {"sharpness": 0.8 <= s["sharpness"] <= 1.25,
                "expression": s["expression"] >= scored["real"]["expression"],
                "descriptor": s["descriptor_shift"] < 0.1}
    assert all(good(scored["real"]).values()), scored["real"]
    for name in ("blurred", "noise", "checkerboard"):
        verdict = good(scored[name])
        assert not all(verdict.values()), (name, scored[name])
    assert scored["blurred"]["sharpness"] < 0.8                 # blur: too soft
    assert scored["noise"]["sharpness"] > 1.25                  # noise: detail the face does not have
    assert scored["checkerboard"]["sharpness"] > 1.25


def test_expression_change_classifier_needs_a_reference_per_image(faces):
    clf = train_expression_change_classifier(faces)
    with pytest.raises(ValueError, match="sources"):
        registry.scores("expression_correct", fake=faces.images[:3], fake_labels=faces.labels[:3], classifier=clf,
                        source=faces.images[:2])
    # no face at all: counted as not recognised, never as a class
    blank = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    assert np.isnan(face_landmarks(blank, clf.detector)).all()
    assert (clf.predict(blank, faces.images[:2]) == -1).all()
