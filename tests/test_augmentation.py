"""Table 4 augmentation (issue 4): factor k adds exactly k x N_train generated faces of the same
subjects with the intended (other-expression) labels, factor 0 adds none, the table has one
row per factor with its counts, and everything is deterministic given the seed."""
from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
import torch

from lmexpr_nb import augmentation, nets
from lmexpr_nb.config import ModelConfig
from lmexpr_nb.paper import TABLE4_AUGMENTATION

from test_ablation import fake_cache

CFG = ModelConfig(image_size=32, ngf=4, ndf=4, n_blocks=1, heatmap_sigma=1.5)



@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return nets.build_generator(CFG).eval()


@pytest.fixture(scope="module")
def cache():
    c = fake_cache(subjects=4, frames=5, val_subjects=1)   # labels f % 4: 0,1,2,3,0 per subject
    return c


def test_plan_sizes_subjects_and_labels(cache):
    train = np.flatnonzero(cache.split == "train")
    src0, tgt0 = augmentation.augmentation_plan(cache, 0, seed=3)
    assert len(src0) == len(tgt0) == 0
    for k in (1, 3):
        src, tgt = augmentation.augmentation_plan(cache, k, seed=3)
        assert len(src) == len(tgt) == k * len(train)
        assert Counter(src.tolist()) == {int(i): k for i in train}           # every real frame k times
        assert all(cache.split[t] == "train" for t in tgt)
        assert all(cache.subjects[s] == cache.subjects[t] for s, t in zip(src, tgt))  # same identity
        assert all(cache.labels[s] != cache.labels[t] for s, t in zip(src, tgt))      # another expression
    big_s, big_t = augmentation.augmentation_plan(cache, 3, seed=3)
    s1, t1 = augmentation.augmentation_plan(cache, 1, seed=3)
    np.testing.assert_array_equal(big_t[:len(t1)], t1)                      # nested: k's plan starts k'>k's
    np.testing.assert_array_equal(augmentation.augmentation_plan(cache, 3, seed=3)[1], big_t)
    assert not np.array_equal(augmentation.augmentation_plan(cache, 3, seed=4)[1], big_t)
    with pytest.raises(ValueError, match="non-negative integer"):
        augmentation.augmentation_plan(cache, 1.5)


def test_single_expression_subject_falls_back_to_its_other_frames():
    c = fake_cache(subjects=2, frames=3, val_subjects=1)
    c.labels[:] = 2
    src, tgt = augmentation.augmentation_plan(c, 2, seed=0)
    assert all(c.subjects[s] == c.subjects[t] and s != t for s, t in zip(src, tgt))


def test_generated_set_has_intended_labels(G, cache):
    gen = augmentation.generate_augmentation(G, cache, 2, seed=1, model_cfg=CFG, chunk=7, batch_size=3)
    n = int((cache.split == "train").sum())
    assert gen.images.shape == (2 * n, 32, 32, 3) and gen.images.dtype == np.uint8
    np.testing.assert_array_equal(gen.labels, cache.labels[gen.tgt])
    assert all(gen.labels != cache.labels[gen.src])
    from lmexpr_nb.generate import synthesize
    one = synthesize(G, cache.images[gen.src[5:6]], cache.landmarks[gen.src[5:6]], cache.landmarks[gen.tgt[5:6]],
                     cache.labels[gen.tgt[5:6]], CFG)
    np.testing.assert_array_equal(gen.images[5], one[0])                     # chunking changes nothing


def test_run_table4_and_determinism(G, cache, tmp_path):
    kw = dict(epochs=1, seed=0, model_cfg=CFG, input_size=32, log=lambda *a: None)
    a = augmentation.run_augmentation(G, cache, [0, 1, 2], **kw)
    b = augmentation.run_augmentation(G, cache, [0, 1, 2], **kw)
    n_tr, n_va = int((cache.split == "train").sum()), int((cache.split == "val").sum())
    res = a["results"]
    assert [r["factor"] for r in res] == [0, 1, 2]
    assert [r["n_generated"] for r in res] == [0, n_tr, 2 * n_tr]
    assert all(r["n_real"] == n_tr and r["n_val"] == n_va and r["n_train"] == r["n_real"] + r["n_generated"]
               for r in res)
    assert [r["accuracy"] for r in res] == [r["accuracy"] for r in b["results"]]
    np.testing.assert_array_equal(a["generated"].images, b["generated"].images)
    augmentation.write_table4(tmp_path, res, {"data": "synthetic (not real faces)", "profile": "test",
                                              "standins": ["VGG19 perceptual loss: random-init stand-in",
                                                           "FD-dlib (dlib descriptor) in place of Inception FID"]},
                              "synthetic")
    with open(tmp_path / "table4.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["Times"]) for r in rows] == [0, 1, 2]
    assert [int(r["generated images"]) for r in rows] == [0, n_tr, 2 * n_tr]
    assert all(int(r["real train images"]) == n_tr and int(r["N"]) == n_va for r in rows)
    assert all("VGG19" in r["weights"] and "FD-dlib" not in r["weights"] for r in rows)
    assert [r["paper: Acc (%)"] for r in rows] == [str(TABLE4_AUGMENTATION[0]), str(TABLE4_AUGMENTATION[1]), ""]
    md = (tmp_path / "table4.md").read_text()
    assert "NOT on Oulu-CASIA" in md and "synthetic" in md
    fig = augmentation.accuracy_figure(res)
    assert fig.axes
    grid = augmentation.example_grid(cache, a["generated"], n=3)
    assert len(grid.axes) == 9


def test_each_row_is_the_classifier_its_training_set_makes(G, cache):
    """Row k is a classifier trained on the real training frames plus the first k x N generated
    faces, scored on the real validation frames: rebuilt here from those sets, it gives the same
    accuracy (training is deterministic given the seed)."""
    from lmexpr_nb.metrics.expression import accuracy, train_expression_classifier
    kw = dict(epochs=2, seed=0, input_size=32)
    out = augmentation.run_augmentation(G, cache, [0, 1], model_cfg=CFG, log=lambda *a: None, **kw)
    tr, va = np.flatnonzero(cache.split == "train"), np.flatnonzero(cache.split == "val")
    gen = out["generated"].first(len(tr))
    sets = {0: (cache.images[tr], cache.labels[tr]),
            1: (np.concatenate([cache.images[tr], gen.images]), np.concatenate([cache.labels[tr], gen.labels]))}
    for r in out["results"]:
        x, y = sets[r["factor"]]
        clf = train_expression_classifier(x, y, **kw)
        assert r["accuracy"] == accuracy(clf, cache.images[va], cache.labels[va])
        assert r["train_acc"] == clf.history[-1]["train_acc"]
