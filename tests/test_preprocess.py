"""Readers on real-layout fixtures, dlib landmarks and tracking, crop geometry, split, cache, bad input."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from lmexpr_nb.config import DataConfig
from lmexpr_nb.data.cache import load_cache
from lmexpr_nb.data.readers import read_dataset
from lmexpr_nb.landmarks.detect import LandmarkDetector, crop_and_resize, crop_box, read_image, track_sequence
from lmexpr_nb.landmarks.heatmaps import landmark_heatmaps
from lmexpr_nb.landmarks.preprocess import choose_validation_subjects, preprocess_dataset

ASTRO = skimage.data.astronaut()


def _frame(shift=0, gray=False):
    img = np.roll(ASTRO, shift, axis=1)
    return img.mean(-1).astype(np.uint8) if gray else img


def _lm_text(pts):
    return "".join(f"{x:16.7e}{y:16.7e}\n" for x, y in pts)


def make_ckplus(root: Path, subjects=("S005", "S010"), frames=7, gray_subject="S010"):
    """A tiny CK+ tree: per subject one labelled sequence (001), one without Emotion (002),
    one with an empty Emotion folder (003); the gray subject's frames are 8-bit grayscale."""
    det = LandmarkDetector()
    for s_i, s in enumerate(subjects):
        for seq in ("001", "002", "003"):
            d = root / "cohn-kanade-images" / s / seq
            d.mkdir(parents=True)
            (root / "Landmarks" / s / seq).mkdir(parents=True)
            for f in range(1, frames + 1):
                img = _frame(2 * f, gray=(s == gray_subject))
                name = f"{s}_{seq}_{f:08d}"
                Image.fromarray(img).save(d / f"{name}.png")
                pts = det.locate(_frame(2 * f))[1]
                (root / "Landmarks" / s / seq / f"{name}_landmarks.txt").write_text(_lm_text(pts))
        (root / "Emotion" / s / "001").mkdir(parents=True)
        (root / "Emotion" / s / "001" / f"{s}_001_{frames:08d}_emotion.txt").write_text(f"{5 + s_i:16.7e}\n")
        (root / "Emotion" / s / "003").mkdir(parents=True)
    return root


@pytest.fixture(scope="module")
def ckplus(tmp_path_factory):
    return make_ckplus(tmp_path_factory.mktemp("ck") / "CK+")


# ------------------------------------------------------------------------------ readers

def test_ckplus_reader_first_last_rule_and_labels(ckplus):
    r = read_dataset("ckplus", ckplus, DataConfig())
    assert not r.synthetic and len(r.records) == 2 * 6
    s5 = [x for x in r.records if x.subject == "S005"]
    assert [x.frame for x in s5] == [1, 2, 3, 5, 6, 7]
    assert [x.label for x in s5] == [0, 0, 0, 5, 5, 5]           # happy = 5, first three neutral
    assert {x.label for x in r.records if x.subject == "S010"} == {0, 6}
    assert all(x.landmarks.shape == (68, 2) for x in r.records)
    reasons = [s["reason"] for s in r.skipped]
    assert reasons.count("no Emotion file (unlabelled sequence)") == 4  # 002 and the empty 003, per subject


def test_ckplus_reader_parses_real_number_notation(tmp_path):
    root = make_ckplus(tmp_path / "ck", subjects=("S001",), frames=6)
    (root / "Emotion/S001/001/S001_001_00000006_emotion.txt").write_text("   3.0000000e+00\n")
    assert {x.label for x in read_dataset("ckplus", root).records} == {0, 3}


def test_oulu_and_folder_readers(tmp_path):
    base = tmp_path / "oulu" / "OriginalImg" / "VL" / "Strong"
    for p in ("P001", "P002"):
        for e in ("Anger", "Happiness"):
            (base / p / e).mkdir(parents=True)
            for f in range(8):
                Image.fromarray(_frame(f)).save(base / p / e / f"{f:03d}.jpeg")
    r = read_dataset("oulu", tmp_path / "oulu")
    assert len(r.records) == 2 * 2 * 6 and {x.label for x in r.records} == {0, 1, 5}
    assert all(x.landmarks is None for x in r.records)
    with pytest.raises(ValueError, match="NI/Strong"):
        read_dataset("oulu", tmp_path / "oulu", DataConfig(oulu_camera="NI"))
    f = tmp_path / "folder"
    for subj, expr in (("alice", "happy"), ("alice", "Sad"), ("bob", "surprised"), ("bob", "bored")):
        (f / subj / expr).mkdir(parents=True)
        Image.fromarray(_frame()).save(f / subj / expr / "a.jpg")
    r = read_dataset("folder", f)
    assert sorted(x.label_name for x in r.records) == ["happy", "sadness", "surprise"]
    assert r.skipped[0]["reason"] == "unknown expression folder 'bored'"


@pytest.mark.parametrize("name", ["ckplus", "oulu", "folder"])
def test_wrong_or_empty_root_is_one_line_error(tmp_path, name):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError) as e:
        read_dataset(name, tmp_path / "empty")
    assert "\n" not in str(e.value) and str(tmp_path / "empty") in str(e.value)


# ------------------------------------------------------------------------------ dlib, crop, heatmaps

def test_astronaut_one_face_68_points_in_box():
    det = LandmarkDetector(upsample=0)
    boxes = det.detect(ASTRO)
    assert len(boxes) == 1
    l, t, r, b = boxes[0]
    pts = det.shape(ASTRO, boxes[0])
    assert pts.shape == (68, 2)
    pad = 0.1 * (r - l)
    assert (pts[:, 0] >= l - pad).all() and (pts[:, 0] <= r + pad).all()
    assert (pts[:, 1] >= t - pad).all() and (pts[:, 1] <= b + pad).all()


def test_tracking_matches_full_detection_on_shifted_frames():
    det = LandmarkDetector()
    frames = [_frame(s) for s in (0, 4, 8, 12)]
    tracked = list(track_sequence(det, frames))
    assert [h for _, h in tracked] == ["detected", "tracked", "tracked", "tracked"]
    for img, (pts, _) in zip(frames, tracked):
        full = det.locate(img)[1]
        assert np.abs(pts - full).mean() < 2.0


def test_crop_transform_round_trip_and_heatmap_peak():
    pts = LandmarkDetector().locate(ASTRO)[1]
    crop, tr = crop_and_resize(ASTRO, crop_box(pts, 0.25), 64)
    assert crop.shape == (64, 64, 3)
    np.testing.assert_allclose(tr.invert(tr.apply(pts)), pts, atol=1e-3)
    inside = tr.apply(pts)
    assert (inside > 0).all() and (inside < 63).all()
    # a point's pixel in the crop shows the same content as in the original
    x, y = np.round(inside[30]).astype(int)
    ox, oy = np.round(tr.invert([[x, y]])[0]).astype(int)
    assert np.abs(crop[y, x].astype(int) - ASTRO[oy, ox]).max() < 40
    hm = landmark_heatmaps(inside, 64, 1.5)
    peak = np.unravel_index(int(hm[30].argmax()), (64, 64))
    assert abs(peak[1] - inside[30, 0]) <= 0.5 and abs(peak[0] - inside[30, 1]) <= 0.5


def test_crop_outside_frame_is_edge_padded():
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, :20] = 200
    crop, tr = crop_and_resize(img, (-20, 0, 40), 40)
    assert crop.shape == (40, 40, 3) and crop[:, :5].min() == 200


def test_grayscale_and_16bit_images_read_as_rgb(tmp_path):
    Image.fromarray(_frame(gray=True)).save(tmp_path / "g.png")
    a16 = (_frame(gray=True).astype(np.uint16) * 257)
    Image.fromarray(a16).save(tmp_path / "w.png")
    g, w = read_image(tmp_path / "g.png"), read_image(tmp_path / "w.png")
    assert g.shape == w.shape == (512, 512, 3) and g.dtype == w.dtype == np.uint8
    np.testing.assert_array_equal(g, w)


# ------------------------------------------------------------------------------ preprocess + cache

def test_split_is_subject_disjoint_and_seeded():
    subs = [f"S{i:03d}" for i in range(30)]
    a, b = choose_validation_subjects(subs, 0.1, 0), choose_validation_subjects(subs, 0.1, 0)
    assert a == b and len(a) == 3 and choose_validation_subjects(subs, 0.1, 1) != a
    assert choose_validation_subjects(["S1"], 0.1, 0) == set()


def test_preprocess_cache_report_reuse_and_rebuild(ckplus, tmp_path):
    cfg = DataConfig(image_size=64, val_fraction=0.5)
    out = tmp_path / "cache"
    rep = preprocess_dataset("ckplus", ckplus, out, cfg, progress=False)
    assert rep["frames_kept"] == 12 and rep["frames_by_method"] == {"detected": 2, "tracked": 10}
    c = load_cache(out)
    assert c.images.shape == (12, 64, 64, 3) and c.landmarks.shape == (12, 68, 2)
    assert set(c.subjects[c.split == "val"]).isdisjoint(c.subjects[c.split == "train"])
    assert c.meta["synthetic"] is False and c.meta["image_size"] == 64
    assert json.loads((out / "report.json").read_text())["split"]["val"]["subjects"] == 1
    mtime = (out / "cache.npz").stat().st_mtime_ns
    assert preprocess_dataset("ckplus", ckplus, out, cfg, progress=False)["reused"] is True
    assert (out / "cache.npz").stat().st_mtime_ns == mtime
    assert preprocess_dataset("ckplus", ckplus, out, DataConfig(image_size=32, val_fraction=0.5),
                              progress=False)["reused"] is False
    assert load_cache(out).images.shape[1] == 32


def test_failed_write_leaves_old_cache(ckplus, tmp_path, monkeypatch):
    out = tmp_path / "cache"
    preprocess_dataset("ckplus", ckplus, out, DataConfig(image_size=32), progress=False)
    before = (out / "cache.npz").read_bytes()
    import lmexpr_nb.data.cache as cache_mod
    real = np.savez

    def boom(f, **arrays):                       # a real archive, torn half way, then Ctrl-C
        real(f, **arrays)
        f.flush()
        f.truncate(f.tell() // 2)
        raise KeyboardInterrupt("interrupted mid-write")
    monkeypatch.setattr(cache_mod.np, "savez", boom)
    with pytest.raises(KeyboardInterrupt):
        preprocess_dataset("ckplus", ckplus, out, DataConfig(image_size=48), progress=False)
    assert (out / "cache.npz").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_truncated_image_and_no_landmarks_are_recorded_skips(tmp_path):
    root = make_ckplus(tmp_path / "ck", subjects=("S001", "S002"), frames=6)
    frame = root / "cohn-kanade-images/S001/001/S001_001_00000002.png"
    frame.write_bytes(frame.read_bytes()[:200])                       # truncated PNG
    flat = root / "cohn-kanade-images/S002/001/S002_001_00000006.png"
    Image.fromarray(np.full((490, 640), 128, np.uint8)).save(flat)     # no face ...
    (root / "Landmarks/S002/001/S002_001_00000006_landmarks.txt").unlink()  # ... and no landmarks
    rep = preprocess_dataset("ckplus", root, tmp_path / "c", DataConfig(image_size=32), progress=False)
    reasons = rep["skips_by_reason"]
    assert any(k.startswith("unreadable image") for k in reasons)
    assert reasons.get("no face found and the dataset has no landmarks") == 1
    assert rep["frames_kept"] == 10


def test_dataset_landmarks_used_when_dlib_finds_no_face(tmp_path):
    """A face turned sideways: dlib's frontal detector misses it, the dataset's landmarks (turned
    with it) are used, counted and listed; a flat frame with landmarks is no face and is skipped."""
    root = make_ckplus(tmp_path / "ck", subjects=("S001",), frames=6)
    frames = sorted((root / "cohn-kanade-images/S001/001").glob("*.png"))
    w = ASTRO.shape[1]
    upright = np.asarray(Image.open(frames[0]).convert("RGB"))
    upright_lm = np.loadtxt(root / "Landmarks/S001/001" / f"{frames[0].stem}_landmarks.txt")
    for p in frames[:-1]:
        img = np.asarray(Image.open(p).convert("RGB"))
        Image.fromarray(np.ascontiguousarray(np.rot90(img))).save(p)          # 90 degrees counter-clockwise
        lm = root / "Landmarks/S001/001" / f"{p.stem}_landmarks.txt"
        x, y = np.loadtxt(lm).T
        lm.write_text(_lm_text(np.stack([y, w - 1 - x], 1)))
    Image.fromarray(np.full((512, 512), 90, np.uint8)).save(frames[-1])       # nothing there
    rep = preprocess_dataset("ckplus", root, tmp_path / "c", DataConfig(image_size=32), progress=False)
    assert rep["frames_by_method"] == {"dataset": 5}
    assert rep["dataset_landmark_frames"] == [str(p) for p in frames[:-1]]
    assert [s["path"] for s in rep["skip_examples"] if "flat" in s["reason"]] == [str(frames[-1])]
    c = load_cache(tmp_path / "c")
    assert list(c.method) == ["dataset"] * 5
    # the crop is the face the landmarks mark: turned back, it is the upright frame's crop
    want, _ = crop_and_resize(upright, crop_box(upright_lm, DataConfig().crop_margin), 32)
    back = np.rot90(c.images[0], k=-1).astype(float)
    assert np.abs(back - want).mean() < 12 < np.abs(np.roll(back, 4, axis=1) - want).mean()


def test_cli_one_line_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lmexpr_nb", "preprocess", "--dataset", "ckplus",
                        "--root", str(tmp_path), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "cohn-kanade-images" in r.stderr


def test_12bit_data_in_16bit_file_is_not_darkened(tmp_path):
    a12 = (_frame(gray=True).astype(np.uint16) * 16)          # 12-bit values, max 4080
    Image.fromarray(a12).save(tmp_path / "t.png")
    np.testing.assert_allclose(read_image(tmp_path / "t.png").astype(int), np.repeat(_frame(gray=True)[..., None], 3, -1),
                               atol=1)


def test_rgba_and_uint16_arrays_work_in_the_detector():
    det = LandmarkDetector()
    rgba = np.concatenate([ASTRO, np.full(ASTRO.shape[:2] + (1,), 255, np.uint8)], -1)
    assert det.locate(rgba) is not None
    assert det.locate(ASTRO.astype(np.uint16) * 257) is not None
    crop, _ = crop_and_resize(rgba, (100, 50, 200), 32)
    assert crop.shape == (32, 32, 3)
