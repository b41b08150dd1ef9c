"""generate.py: batched synthesis matches one-by-one, labels hard or soft, evaluation pairs."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lmexpr_nb.config import ModelConfig
from lmexpr_nb.data.pairs import evaluation_pairs
from lmexpr_nb.model import generate, nets

CFG = ModelConfig(image_size=32, ngf=4, ndf=4, n_blocks=1, heatmap_sigma=1.5)


@pytest.fixture
def G():
    torch.manual_seed(0)
    return nets.build_generator(CFG).eval()


def _batch(n, rng=np.random.default_rng(0)):
    imgs = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    lm = rng.uniform(4, 28, (n, 68, 2)).astype(np.float32)
    return imgs, lm


def test_batched_equals_single_and_shapes(G):
    imgs, lm = _batch(5)
    labels = np.array([0, 1, 2, 3, 4])
    out = generate.synthesize(G, imgs, lm, lm[::-1].copy(), labels, CFG, batch_size=2)
    assert out.shape == (5, 32, 32, 3) and out.dtype == np.uint8
    one = generate.synthesize(G, imgs[3:4], lm[3:4], lm[::-1][3:4], labels[3:4], CFG)
    np.testing.assert_array_equal(out[3], one[0])


def test_soft_label_equal_to_one_hot_gives_same_image(G):
    imgs, lm = _batch(2)
    hard = generate.synthesize(G, imgs, lm, lm, np.array([5, 5]), CFG)
    soft = generate.synthesize(G, imgs, lm, lm, np.eye(8, dtype=np.float32)[5], CFG)
    np.testing.assert_array_equal(hard, soft)
    other = generate.synthesize(G, imgs, lm, lm, np.array([1, 1]), CFG)
    assert np.abs(hard.astype(int) - other).max() > 0, "the label must matter"


def test_masks_and_wrong_size(G):
    imgs, lm = _batch(1)
    out, masks = generate.synthesize(G, imgs, lm, lm, [2], CFG, return_masks=True)
    assert len(masks) == CFG.n_blocks and float(masks[0].min()) > 0 and float(masks[0].max()) < 1
    with pytest.raises(ValueError, match="expects 32 px"):
        generate.synthesize(G, np.zeros((1, 64, 64, 3), np.uint8), lm, lm, [0], CFG)


def test_uint8_round_trip():
    a = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, -1)
    np.testing.assert_array_equal(generate.tensor_to_uint8(generate.images_to_tensor(a)), a)


def test_evaluation_pairs_are_same_subject_distinct_and_capped():
    cache = SimpleNamespace(subjects=np.array(["a", "a", "a", "b", "b", "c"]),
                            labels=np.array([0, 3, 5, 0, 0, 2]),
                            split=np.array(["val", "val", "val", "val", "val", "train"]))
    s, t = evaluation_pairs(cache)
    assert len(s) == 3 * 2 + 2 * 1
    assert all(cache.subjects[i] == cache.subjects[j] and i != j for i, j in zip(s, t))
    assert 5 not in s and 5 not in t
    s2, t2 = evaluation_pairs(cache, max_pairs=3, seed=1)
    assert len(s2) == 3 and set(zip(s2, t2)) <= set(zip(s, t))
    # the primary protocol: a's neutral frame to a's two expression frames; b has no expression frame
    s3, t3 = evaluation_pairs(cache, protocol="neutral-to-expression")
    assert list(zip(s3.tolist(), t3.tolist())) == [(0, 1), (0, 2)]
