"""Table 4 augmentation: the paper's recognition task on peak frames with the dataset's
own classes (no neutral class, no neutral frame in the test set); factor k adds exactly k x N_real
generated faces, first every same-subject neutral -> expression pair, then donor rows; the table
has one row per factor with its counts, per-class accuracy and a confusion figure; deterministic."""
from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
import torch
from test_table7 import fake_cache

from lmexpr_nb.common.paper import TABLE4_AUGMENTATION
from lmexpr_nb.config import ModelConfig
from lmexpr_nb.experiments import table4
from lmexpr_nb.model import nets

CFG = ModelConfig(image_size=32, ngf=4, ndf=4, n_blocks=1, heatmap_sigma=1.5)


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return nets.build_generator(CFG).eval()


@pytest.fixture(scope="module")
def cache():
    # labels f % 4 per subject: 0,1,2,3,0 -> 2 neutral and 3 peak frames; 3 training subjects
    return fake_cache(subjects=4, frames=5, val_subjects=1)


def _same_subject_pairs(cache):
    idx = np.flatnonzero(cache.split == "train")
    return {(int(i), int(j)) for i in idx for j in idx
            if cache.subjects[i] == cache.subjects[j] and cache.labels[i] == 0 and cache.labels[j] != 0}


def test_class_count_follows_the_dataset(cache):
    assert table4.recognition_classes(cache) == (1, 2, 3)
    c = fake_cache(subjects=7, frames=2, val_subjects=1)
    c.labels[:] = np.resize([0, 1, 3, 4, 5, 6, 7], len(c.labels))       # Oulu-CASIA: no contempt (2)
    assert len(table4.recognition_classes(c)) == 6
    c.labels[:] = np.resize([0, 1, 2, 3, 4, 5, 6, 7], len(c.labels))    # CK+ / synthetic: with contempt
    assert table4.recognition_classes(c) == (1, 2, 3, 4, 5, 6, 7)


def test_plan_same_subject_pairs_first_then_donors(cache):
    peaks = table4.peak_rows(cache, "train")
    n = len(peaks)
    assert n == 9 and all(cache.labels[peaks] != 0)
    assert len(table4.augmentation_plan(cache, 0, seed=3)[0]) == 0
    rule = _same_subject_pairs(cache)
    assert len(rule) == 3 * 2 * 3
    s2, t2, k2 = table4.augmentation_plan(cache, 2, seed=3)
    assert len(s2) == 2 * n and set(k2) == {"same-subject"}
    assert set(zip(s2.tolist(), t2.tolist())) == rule                  # factor 2 = every pair, each once
    s, t, k = table4.augmentation_plan(cache, 5, seed=3)
    assert len(s) == 5 * n and Counter(k.tolist()) == {"same-subject": 18, "donor": 27}
    np.testing.assert_array_equal(s[:18], s2), np.testing.assert_array_equal(t[:18], t2)   # nested
    donor = k == "donor"
    assert all(cache.split[i] == "train" for i in np.r_[s, t])
    assert all(cache.subjects[a] != cache.subjects[b] for a, b in zip(s[donor], t[donor]))  # another person
    assert all(cache.labels[t] != 0)                                   # every target is an expression
    assert set(cache.labels[s[donor]].tolist()) > {0}                  # donor rows start from any frame
    s3, t3, _ = table4.augmentation_plan(cache, 3, seed=3)
    np.testing.assert_array_equal(t[:len(t3)], t3)                     # the plan for 3 starts the plan for 5
    np.testing.assert_array_equal(table4.augmentation_plan(cache, 5, seed=3)[1], t)
    assert not np.array_equal(table4.augmentation_plan(cache, 5, seed=4)[1], t)
    with pytest.raises(ValueError, match="non-negative integer"):
        table4.augmentation_plan(cache, 1.5)


def test_single_training_subject_uses_its_own_other_peaks():
    c = fake_cache(subjects=2, frames=5, val_subjects=1)
    s, t, k = table4.augmentation_plan(c, 3, seed=0)
    donor = k == "donor"
    assert donor.any() and all(c.subjects[a] == c.subjects[b] and c.labels[b] != 0 for a, b in zip(s, t))


def test_generated_set_has_target_labels_and_aligned_donor_landmarks(G, cache):
    from lmexpr_nb.landmarks.align import align_shape
    from lmexpr_nb.model.generate import synthesize
    gen = table4.generate_augmentation(G, cache, 3, seed=1, model_cfg=CFG, chunk=7, batch_size=3)
    n = len(table4.peak_rows(cache, "train"))
    assert gen.images.shape == (3 * n, 32, 32, 3) and gen.images.dtype == np.uint8
    np.testing.assert_array_equal(gen.labels, cache.labels[gen.tgt])
    assert all(gen.labels != 0)
    r = int(np.flatnonzero(gen.kind == "donor")[0])
    i, j = gen.src[r:r + 1], gen.tgt[r:r + 1]
    one = synthesize(G, cache.images[i], cache.landmarks[i], align_shape(cache.landmarks[j[0]],
                     cache.landmarks[i[0]])[None], cache.labels[j], CFG)
    np.testing.assert_array_equal(gen.images[r], one[0])               # donor landmarks aligned; chunking inert
    one = synthesize(G, cache.images[gen.src[5:6]], cache.landmarks[gen.src[5:6]], cache.landmarks[gen.tgt[5:6]],
                     cache.labels[gen.tgt[5:6]], CFG)
    np.testing.assert_array_equal(gen.images[5], one[0])


def test_run_table4_peak_frames_only_and_determinism(G, cache, tmp_path, monkeypatch):
    from lmexpr_nb.metrics import expression
    seen = {}
    real_conf, real_train = expression.confusion_matrix, expression.train_expression_classifier

    def spy_conf(model, images, labels):
        seen.setdefault("test", []).append(np.asarray(images))
        return real_conf(model, images, labels)

    def spy_train(images, labels, **kw):
        seen.setdefault("train", []).append((np.asarray(images), kw["num_classes"]))
        return real_train(images, labels, **kw)
    monkeypatch.setattr(expression, "confusion_matrix", spy_conf)
    monkeypatch.setattr(table4, "train_expression_classifier", spy_train)
    kw = dict(epochs=1, seed=0, model_cfg=CFG, input_size=32, log=lambda *a: None)
    a = table4.run_augmentation(G, cache, [0, 1, 3], **kw)
    b = table4.run_augmentation(G, cache, [0, 1, 3], **kw)
    neutral = {im.tobytes() for im in cache.images[cache.labels == 0]}
    val_peaks = {im.tobytes() for im in cache.images[(cache.split == "val") & (cache.labels != 0)]}
    for test_images in seen["test"]:
        keys = [im.tobytes() for im in test_images]
        assert not set(keys) & neutral and set(keys) == val_peaks       # no neutral frame in the test set
    first_train, n_classes = seen["train"][0]
    assert n_classes == 3 and not {im.tobytes() for im in first_train} & neutral
    n_tr, n_va = 9, 3
    res = a["results"]
    assert a["classes"] == [1, 2, 3] and all(r["classes"] == ["anger", "contempt", "disgust"] for r in res)
    assert [r["n_generated"] for r in res] == [0, n_tr, 3 * n_tr] and res[2]["n_generated_donor"] == 9
    assert all(r["n_real"] == n_tr and r["n_val"] == n_va and r["n_train"] == r["n_real"] + r["n_generated"]
               for r in res)
    for r in res:
        m = np.asarray(r["confusion"])
        assert m.shape == (3, 3) and m.sum() == n_va and r["accuracy"] == pytest.approx(np.trace(m) / n_va)
        assert sum(r["per_class_n"].values()) == n_va
        assert r["per_class_accuracy"]["anger"] == pytest.approx(m[0, 0] / m[0].sum())
    assert [r["accuracy"] for r in res] == [r["accuracy"] for r in b["results"]]
    np.testing.assert_array_equal(a["generated"].images, b["generated"].images)
    table4.write_table4(tmp_path, res, {"data": "synthetic (not real faces)", "profile": "test",
                                              "standins": ["VGG19 perceptual loss: random-init stand-in",
                                                           "FD-dlib (dlib descriptor) in place of Inception FID"]},
                              "synthetic")
    with open(tmp_path / "table4.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["Times"]) for r in rows] == [0, 1, 3]
    assert [int(r["generated images"]) for r in rows] == [0, n_tr, 3 * n_tr]
    assert all(int(r["real train images"]) == n_tr and int(r["N"]) == n_va and r["classes"] == "3" for r in rows)
    assert all("VGG19" in r["weights"] and "FD-dlib" not in r["weights"] for r in rows)
    assert [r["paper: Acc (%)"] for r in rows] == [str(TABLE4_AUGMENTATION[0]), str(TABLE4_AUGMENTATION[1]), ""]
    md = (tmp_path / "table4.md").read_text()
    assert "NOT on Oulu-CASIA" in md and "synthetic" in md and "no neutral frame" in md
    with open(tmp_path / "table4_per_class.csv", newline="") as f:
        per = list(csv.DictReader(f))
    assert [c for c in per[0] if c.endswith(")") and "%, n=" in c] == ["anger (%, n=1)", "contempt (%, n=1)",
                                                                       "disgust (%, n=1)"]
    fig = table4.accuracy_figure(res)
    assert fig.axes
    conf = table4.confusion_figure(res)
    assert len(conf.axes) == 3
    grid = table4.example_grid(cache, a["generated"], n=3)
    assert len(grid.axes) == 9


def test_each_row_is_the_classifier_its_training_set_makes(G, cache):
    """Row k is a classifier trained on the real training PEAK frames plus the first k x N generated
    faces, on the dataset's expression classes (neutral excluded), scored on the real validation
    peak frames: rebuilt here from those sets, it gives the same accuracy (deterministic training)."""
    from lmexpr_nb.metrics.expression import accuracy, train_expression_classifier
    kw = dict(epochs=2, seed=0, input_size=32)
    out = table4.run_augmentation(G, cache, [0, 1], model_cfg=CFG, log=lambda *a: None, **kw)
    classes = sorted(set(cache.labels.tolist()) - {0})
    index = {k: i for i, k in enumerate(classes)}
    to_cls = lambda lab: np.array([index[int(k)] for k in lab], np.int64)   # noqa: E731
    tr = np.flatnonzero((cache.split == "train") & (cache.labels != 0))
    va = np.flatnonzero((cache.split == "val") & (cache.labels != 0))
    gen = out["generated"].first(len(tr))
    sets = {0: (cache.images[tr], to_cls(cache.labels[tr])),
            1: (np.concatenate([cache.images[tr], gen.images]),
                np.concatenate([to_cls(cache.labels[tr]), to_cls(gen.labels)]))}
    for r in out["results"]:
        x, y = sets[r["factor"]]
        clf = train_expression_classifier(x, y, num_classes=len(classes), **kw)
        assert r["accuracy"] == accuracy(clf, cache.images[va], to_cls(cache.labels[va]))
        assert r["train_acc"] == clf.history[-1]["train_acc"]
