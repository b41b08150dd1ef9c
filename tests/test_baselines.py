"""Baselines: copy the source; warp the source onto the target landmarks (piecewise affine)."""
import numpy as np
import pytest

from lmexpr_nb.experiments.baselines import BASELINES, border_points, copy_source, warp_to_landmarks


@pytest.fixture(scope="module")
def astronaut():
    """A real face photo that ships with scikit-image, and its dlib 68 landmarks."""
    import skimage.data

    from lmexpr_nb.landmarks.detect import LandmarkDetector
    img = skimage.data.astronaut()
    det = LandmarkDetector()
    found = det.locate(img)
    assert found is not None
    return img, found[1], det


def _similarity(pts, deg, scale, shift):
    th = np.deg2rad(deg)
    r = scale * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    c = pts.mean(0)
    return (pts - c) @ r.T + c + np.asarray(shift, float)


def test_same_signature_and_shapes(astronaut):
    img, pts, _ = astronaut
    small = img[::4, ::4]
    for name, fn in BASELINES.items():
        out = fn(small, pts / 4, _similarity(pts / 4, 5, 1.0, (2, 1)))
        assert out.shape == small.shape and out.dtype == np.uint8, name
    c = copy_source(small, pts, pts)
    assert np.array_equal(c, small) and c is not small


def test_warp_identity_when_landmarks_agree(astronaut):
    img, pts, _ = astronaut
    assert np.array_equal(warp_to_landmarks(img, pts, pts), img)


def test_border_points_cover_the_frame():
    b = border_points(10, 20, per_side=3)
    assert len(b) == 16
    assert {(0.0, 0.0), (19.0, 0.0), (0.0, 9.0), (19.0, 9.0)} <= set(map(tuple, b))


@pytest.mark.parametrize("deg,scale,shift", [(6, 1.06, (8, -5)), (-10, 0.92, (-12, 6))])
def test_warp_moves_source_landmarks_onto_target(astronaut, deg, scale, shift):
    """Warp a real photo by a known similarity of its landmarks; dlib, re-run on the output,
    finds the landmarks where the target put them (inter-ocular NME ~0.01, vs ~0.15-0.25
    for the unwarped image)."""
    from lmexpr_nb.metrics.landmark_error import landmark_error
    img, pts, det = astronaut
    tgt = _similarity(pts, deg, scale, shift)
    out = warp_to_landmarks(img, pts, tgt)
    r = landmark_error([out, img], np.stack([tgt, tgt]), det)
    assert r.n_missing == 0
    assert r.errors[0] < 0.05
    assert r.errors[1] > 3 * r.errors[0]


def test_warp_handles_float_images_and_landmarks_off_frame():
    rng = np.random.default_rng(0)
    img = rng.uniform(-1, 1, (64, 64, 3)).astype(np.float32)
    src = rng.uniform(10, 54, (68, 2))
    dst = src + rng.normal(0, 2, src.shape)
    dst[:3] = [[-5, 10], [70, 30], [20, 66]]          # outside the frame: clamped, still defined
    out = warp_to_landmarks(img, src, dst)
    assert out.shape == img.shape and out.dtype == np.float32 and np.isfinite(out).all()
