"""The fault suite, images and inputs: which face is edited, EXIF orientation, huge images, odd
pixel formats, files that are no files, odd names, all through the kit's one image reader.

Each case holds what a careful user should get: the right face (the most confident one, with how
many were found and a way to pick another), a recorded skip naming the file, a one-line error
(exit status 2 on the command line), or the right pixels. The photos are skimage's astronaut,
composed into the cases a user meets: two faces in one JPEG, a photo padded with grey, phone
photos stored sideways with an EXIF orientation, a 20000x20000 PNG (written row by row, 1.7 MB).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from lmexpr_nb.config import DataConfig, ModelConfig
from lmexpr_nb.data.cache import load_cache
from lmexpr_nb.data.synthetic.shape import MEAN_SHAPE
from lmexpr_nb.data.synthetic.write import write_synthetic_ckplus
from lmexpr_nb.explore import explorer, expressions as ex, faces, infer, state
from lmexpr_nb.landmarks.detect import BadImage, LandmarkDetector, crop_and_resize, crop_box, read_image
from lmexpr_nb.landmarks.preprocess import preprocess_dataset
from lmexpr_nb.model import nets

REPO = Path(__file__).resolve().parents[1]
ASTRO = data.astronaut()
FACE_BOX = (179, 83, 266, 170)        # dlib's box of her face at full resolution; the mission patch is at ~(123, 330)
CFG = ModelConfig(image_size=64, ngf=4, ndf=4, n_blocks=1, heatmap_sigma=1.5)
ORIENT = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
          7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}   # EXIF orientation -> how it is stored


class Echo(torch.nn.Module):
    """A 'generator' that returns the source crop: an edit then shows which face it took."""
    def forward(self, source, *args, **kw):
        return source


# ----------------------------------------------------------------------------- helpers

def jpeg(img: np.ndarray, quality: int = 75, orientation: int = 1) -> bytes:
    """JPEG bytes of `img`; with an EXIF orientation, the pixels stored as a camera stores them."""
    im = Image.fromarray(img)
    exif = Image.Exif()
    if ORIENT[orientation] is not None:
        im = im.transpose(ORIENT[orientation])
        exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def png(width: int, height: int, rows, bit_depth: int = 8, colour: int = 0) -> bytes:
    """A PNG written row by row (`rows` yields each row's bytes): a huge image without its pixels in memory."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    z = zlib.compressobj(1)
    idat = b"".join(z.compress(b"\0" + r) for r in rows) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def two_faces() -> np.ndarray:
    """The issue's photo: the astronaut and her mirror image side by side, 1024x512, JPEG q75."""
    return np.asarray(Image.open(io.BytesIO(jpeg(np.concatenate([ASTRO, ASTRO[:, ::-1]], 1)))).convert("RGB"))


def padded() -> np.ndarray:
    """The astronaut with 512 px of grey on her right, JPEG q75 (1024x512)."""
    return np.asarray(Image.open(io.BytesIO(jpeg(np.pad(ASTRO, ((0, 0), (0, 512), (0, 0)), constant_values=128))))
                      .convert("RGB"))


def on_her_face(pts, x_offset: float = 0.0) -> bool:
    """The landmarks' centre lies inside her face's box (shifted by x_offset)."""
    cx, cy = np.asarray(pts, float).mean(0)
    return FACE_BOX[0] + x_offset <= cx <= FACE_BOX[2] + x_offset and FACE_BOX[1] <= cy <= FACE_BOX[3]


def one_line(text: str) -> str:
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    assert "Traceback" not in text and len(lines) == 1, text
    return lines[0]


def preprocess_cli(root: Path, out: Path, dataset: str = "folder", timeout: float = 240, env: dict | None = None):
    """`python -m lmexpr_nb preprocess` in a child process (a hang is a failure, not a stuck suite)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    r = subprocess.run([sys.executable, "-m", "lmexpr_nb", "preprocess", "--dataset", dataset, "--root", str(root),
                        "--out", str(out), "--image-size", "32", "--val-fraction", "0"],
                       capture_output=True, text=True, env=env, timeout=timeout, check=False)
    return r, (json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else None)


def skips_of(report: dict) -> dict[str, str]:
    return {Path(s["path"]).name: s["reason"] for s in report["skip_examples"]}


@pytest.fixture(scope="module")
def synth_tree(tmp_path_factory):
    """The synthetic CK+-layout set, 1 subject x 7 sequences x 4 frames (640x490)."""
    root = tmp_path_factory.mktemp("synth") / "tree"
    write_synthetic_ckplus(root, subjects=1, frames=4, seed=0)
    return root


@pytest.fixture(scope="module")
def huge_png(tmp_path_factory) -> Path:
    """A 20000x20000 grey PNG (400 megapixels, 1.7 MB on disk)."""
    p = tmp_path_factory.mktemp("huge") / "huge.png"
    row = bytes(20000)
    p.write_bytes(png(20000, 20000, (row for _ in range(20000))))
    return p


def _explorer(tmp_path, **kw):
    rng = np.random.default_rng(0)
    lms = np.stack([MEAN_SHAPE * 20 + 16 + rng.normal(0, 0.3, MEAN_SHAPE.shape) for _ in range(12)]).astype(np.float32)
    cache = SimpleNamespace(images=rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8), landmarks=lms * 2,
                            labels=np.array([0, 5, 7] * 4), subjects=np.repeat(["S001", "S002", "S003", "S004"], 3),
                            split=np.array(["train"] * 9 + ["val"] * 3), frames=np.arange(12))
    model = ex.learn_displacements(cache, "train")
    torch.manual_seed(0)
    return explorer.ExpressionExplorer(nets.build_generator(CFG).eval(), CFG, cache, model, out_dir=tmp_path, **kw)


@pytest.fixture(scope="module", autouse=True)
def _close_widgets():
    yield
    import ipywidgets
    ipywidgets.Widget.close_all()


# ============================================================================= the wrong face

@pytest.mark.parametrize("make", [two_faces, padded], ids=["two faces", "padded with grey"])
def test_the_most_confident_face_is_edited_not_the_larger_mission_patch(make):
    photo = make()
    f = infer.prepare_face(photo, 64)
    assert on_her_face(f.frame_landmarks), f.box                      # before: the patch on her suit
    assert f.faces == (2 if make is two_faces else 1) and f.index == 0 and f.score > 1.0


def test_edit_says_how_many_faces_and_face_picks_another_in_order_of_confidence():
    photo = two_faces()
    with pytest.warns(UserWarning, match=r"2 faces found in the 1024x512 photo; edited face 0, the most confident"):
        first = infer.edit_face(photo, np.zeros((68, 2)), generator=Echo(), cfg=CFG, landmarks_in="crop")
    with pytest.warns(UserWarning, match="edited face 1"):
        second = infer.edit_face(photo, np.zeros((68, 2)), generator=Echo(), cfg=CFG, landmarks_in="crop", face=1)
    assert on_her_face(first.face.frame_landmarks)
    mirrored = second.face.frame_landmarks.copy()
    mirrored[:, 0] = 1023 - mirrored[:, 0]
    assert on_her_face(mirrored) and second.face.score < first.face.score
    with pytest.raises(ValueError) as e:
        infer.prepare_face(photo, 64, face=2)
    assert "faces 0..1" in one_line(str(e.value)) and "face=2" in str(e.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                              # one face: nothing to say
        infer.edit_face(ASTRO, np.zeros((68, 2)), generator=Echo(), cfg=CFG, landmarks_in="crop")


def test_the_mission_patch_is_no_third_face_beside_two_real_ones():
    det = LandmarkDetector(detect_width=0)
    found = det.detections(two_faces())
    assert len(found) == 2 and all(s > 1.0 for _, s in found)       # the patch (0.18) is no third face
    assert found[0][1] >= found[1][1]


def test_preprocess_folder_keeps_her_face_not_the_mission_patch(tmp_path):
    root = tmp_path / "folder"
    (root / "S001" / "happy").mkdir(parents=True)
    photos = {"two.jpg": two_faces(), "padded.jpg": padded()}
    for name, img in photos.items():
        Image.fromarray(img).save(root / "S001" / "happy" / name, quality=95)
    rep = preprocess_dataset("folder", root, tmp_path / "c", DataConfig(image_size=32, val_fraction=0), progress=False)
    assert rep["frames_kept"] == 2
    c = load_cache(tmp_path / "c")
    det = LandmarkDetector(detect_width=0)
    for crop, path in zip(c.images, c.paths):
        img = read_image(path)
        her = det.shape(img, FACE_BOX)
        want, _ = crop_and_resize(img, crop_box(her, DataConfig().crop_margin), 32)
        assert np.abs(crop.astype(float) - want).mean() < 8, path         # her face's crop, not the patch's


# ============================================================================= EXIF orientation

def test_preprocess_folder_turns_phone_photos_upright_by_their_exif_orientation(tmp_path):
    root = tmp_path / "folder"
    (root / "S001" / "happy").mkdir(parents=True)
    for o in ORIENT:
        (root / "S001" / "happy" / f"o{o}.jpg").write_bytes(jpeg(ASTRO, 90, o))
    rep = preprocess_dataset("folder", root, tmp_path / "c", DataConfig(image_size=32, val_fraction=0), progress=False)
    assert rep["frames_kept"] == 8, rep["skips_by_reason"]                 # before: 2 of 8 (6 skipped)
    crops = load_cache(tmp_path / "c").images.astype(float)
    assert max(np.abs(c - crops[0]).mean() for c in crops) < 10             # the same upright face every time


def test_an_array_of_a_sideways_photo_says_arrays_carry_no_orientation_and_to_pass_the_path(tmp_path):
    p = tmp_path / "phone.jpg"
    p.write_bytes(jpeg(ASTRO, 90, 6))
    as_stored = np.asarray(Image.open(p).convert("RGB"))                    # what np.asarray(Image.open(...)) gives
    with pytest.raises(infer.NoFaceError) as e:
        infer.edit_face(as_stored, np.zeros((68, 2)), generator=Echo(), cfg=CFG, landmarks_in="crop")
    msg = one_line(str(e.value))
    assert "EXIF orientation" in msg and "path" in msg
    with pytest.raises(infer.NoFaceError) as e:                             # a path is turned upright: no hint
        infer.prepare_face(p, 64, detector=LandmarkDetector(min_score=50))
    assert "EXIF" not in str(e.value)


# ============================================================================= huge images

def test_a_20000x20000_png_is_one_line_from_the_reader_and_from_edit(huge_png):
    with pytest.raises(BadImage) as e:
        read_image(huge_png)
    msg = one_line(str(e.value))
    assert "400 megapixels" in msg and "LMEXPR_MAX_PIXELS" in msg
    with pytest.raises(ValueError) as e:
        infer.edit_face(huge_png, np.zeros((68, 2)), generator=Echo(), cfg=CFG, landmarks_in="crop")
    assert "too large" in one_line(str(e.value))


def test_preprocess_skips_a_huge_image_and_goes_on_with_the_others(huge_png, tmp_path):
    root = tmp_path / "folder"
    (root / "S001" / "happy").mkdir(parents=True)
    os.symlink(huge_png, root / "S001" / "happy" / "huge.png")
    (root / "S001" / "happy" / "ok.jpg").write_bytes(jpeg(ASTRO, 90))
    r, rep = preprocess_cli(root, tmp_path / "c")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]     # before: 47 lines, no cache
    assert rep["frames_kept"] == 1 and "too large" in skips_of(rep)["huge.png"]


def test_the_kits_pixel_limit_is_its_own_setting_and_8000x6000_keeps_working(tmp_path, monkeypatch):
    big = tmp_path / "8000x6000.png"
    row = bytes([90]) * 8000
    big.write_bytes(png(8000, 6000, (row for _ in range(6000))))
    img = read_image(big)
    assert img.shape == (6000, 8000, 3) and (img == 90).all()
    pts = np.asarray(infer.prepare_face(ASTRO, 64).frame_landmarks) + [3000, 2000]
    photo = np.full((6000, 8000, 3), 90, np.uint8)
    photo[2000:2512, 3000:3512] = ASTRO
    res = infer.edit_face(photo, np.zeros((68, 2)), generator=Echo(), cfg=CFG, landmarks_in="crop",
                          source_landmarks=pts)
    assert res.frame.shape == photo.shape
    monkeypatch.setenv("LMEXPR_MAX_PIXELS", "40e6")
    with pytest.raises(BadImage, match=r"8000x6000 pixels, 48 megapixels\): the kit reads up to 40 megapixels"):
        read_image(big)
    monkeypatch.setenv("LMEXPR_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="^LMEXPR_MAX_PIXELS must be a positive number"):
        read_image(big)
    r, _ = preprocess_cli(tmp_path / "no-such-root", tmp_path / "c", env={"LMEXPR_MAX_PIXELS": "lots"})
    assert r.returncode == 2 and one_line(r.stderr).startswith("lmexpr preprocess: LMEXPR_MAX_PIXELS must be")


def test_explorer_upload_of_a_huge_image_shows_the_error_and_clears_the_busy_line(huge_png, tmp_path):
    w = _explorer(tmp_path)
    before = w.state.source
    w.on_upload(({"name": "huge.png", "content": memoryview(huge_png.read_bytes())},))
    assert "too large" in w.status.value and w.busy.value == "" and w.state.source is before


# ============================================================================= one image reader

def _gray16(tmp_path) -> Path:
    p = tmp_path / "gray16.png"
    g = np.asarray(Image.fromarray(ASTRO).convert("L")).astype(np.uint16) * 257
    Image.fromarray(g).save(p)
    return p


def test_16bit_grey_png_is_read_the_same_by_edit_the_upload_and_preprocess(tmp_path):
    p = _gray16(tmp_path)
    grey = np.repeat(np.asarray(Image.fromarray(ASTRO).convert("L"))[..., None], 3, -1)
    assert np.abs(read_image(p).astype(int) - grey).max() <= 1
    f = infer.prepare_face(p, 64)                                           # before: 89 % white, no face
    assert np.array_equal(f.frame, read_image(p)) and on_her_face(f.frame_landmarks)
    up = state.source_from_photo(p.read_bytes(), 64)
    assert np.array_equal(up.image, f.crop)


@pytest.mark.parametrize("kind", ["16-bit RGB", "RGBA", "CMYK", "animated GIF", "palette"])
def test_every_pixel_format_reads_as_rgb_in_preprocess_edit_and_upload(kind, tmp_path):
    if kind == "16-bit RGB":
        raw = png(512, 512, (r.astype(">u2").tobytes() for r in ASTRO.astype(np.uint16) * 257), 16, 2)
    else:
        buf = io.BytesIO()
        im = Image.fromarray(ASTRO)
        if kind == "RGBA":
            im.putalpha(200)
            im.save(buf, "PNG")
        elif kind == "CMYK":
            im.convert("CMYK").save(buf, "JPEG", quality=95)
        elif kind == "animated GIF":
            im.save(buf, "GIF", save_all=True, append_images=[Image.new("RGB", (512, 512), (255, 0, 0))])
        else:
            im.quantize(256).save(buf, "PNG")
        raw = buf.getvalue()
    path = tmp_path / "img"
    path.write_bytes(raw)
    img = read_image(path)                                                  # what preprocess reads
    assert img.shape == ASTRO.shape and img.dtype == np.uint8
    assert np.abs(img.astype(float) - ASTRO).mean() < 8, kind
    assert on_her_face(infer.prepare_face(path, 64).frame_landmarks)        # edit(path)
    assert np.array_equal(state.source_from_photo(raw, 64).image, infer.prepare_face(path, 64).crop)  # the upload


def test_exif_orientation_through_edit_path_and_upload_keeps_working(tmp_path):
    p = tmp_path / "phone.jpg"
    for o in (3, 6, 8):
        p.write_bytes(jpeg(ASTRO, 90, o))
        res = infer.edit_face(p, np.zeros((68, 2)), generator=Echo(), cfg=CFG, landmarks_in="crop")
        assert res.frame.shape == ASTRO.shape and on_her_face(res.face.frame_landmarks)
        assert np.array_equal(state.source_from_photo(p.read_bytes(), 64).image, res.face.crop)


def test_the_kit_has_one_image_reader():
    """Every module that opens an image file goes through landmarks/detect.py's read_image."""
    opened = [str(p.relative_to(REPO)) for p in (REPO / "lmexpr_nb").rglob("*.py")
              if "Image.open(" in p.read_text() and p.name != "detect.py"]
    assert opened == []


# ============================================================================= files that are no files

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_fifos_named_like_emotion_landmarks_and_image_files_are_recorded_skips(synth_tree, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(synth_tree, root)
    emo = next((root / "Emotion" / "S001" / "002").glob("*_emotion.txt"))
    frame = min((root / "cohn-kanade-images" / "S001" / "001").glob("*.png"))
    lm = root / "Landmarks" / "S001" / "001" / f"{frame.stem}_landmarks.txt"
    img = root / "cohn-kanade-images" / "S001" / "003" / "S001_003_00000099.png"
    for p in (emo, lm):
        p.unlink()
    for p in (emo, lm, img):
        os.mkfifo(p)
    r, rep = preprocess_cli(root, tmp_path / "c", "ckplus", timeout=240)  # before: waits forever on the FIFO
    assert r.returncode == 0, r.stderr[-3000:]
    skips = skips_of(rep)
    for p in (emo, lm, img):
        assert "not a regular file" in skips[p.name], skips
    with pytest.raises(BadImage, match="not a regular file"):
        infer.prepare_face(img, 64)                                          # edit(path) does not wait either
    assert rep["frames_kept"] == 24                                          # the Emotion FIFO's sequence is out


def test_symlink_loops_are_recorded_and_links_outside_the_root_still_read(tmp_path):
    root = tmp_path / "folder"
    happy = root / "S001" / "happy"
    happy.mkdir(parents=True)
    outside = tmp_path / "elsewhere.jpg"
    outside.write_bytes(jpeg(ASTRO, 90))
    os.symlink(outside, happy / "linked.jpg")
    os.symlink(happy / "loop.png", happy / "loop.png")
    rep = preprocess_dataset("folder", root, tmp_path / "c", DataConfig(image_size=32, val_fraction=0), progress=False)
    assert rep["frames_kept"] == 1 and skips_of(rep) == {"loop.png": "a link loop"}


# ============================================================================= smaller input cases

def test_nan_in_a_ckplus_landmarks_file_is_a_skip_naming_the_file(synth_tree, tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(synth_tree, root)
    frames = sorted((root / "cohn-kanade-images" / "S001" / "001").glob("*.png"))
    lms = [root / "Landmarks" / "S001" / "001" / f"{f.stem}_landmarks.txt" for f in frames[:2]]
    for p in lms:
        pts = np.loadtxt(p)
        pts[30] = np.nan
        p.write_text("".join(f"{x:16.7e}{y:16.7e}\n" for x, y in pts))
    Image.fromarray(np.full((490, 640, 3), 90, np.uint8)).save(frames[0])   # dlib finds nothing here
    rep = preprocess_dataset("ckplus", root, tmp_path / "c", DataConfig(image_size=32, val_fraction=0), progress=False)
    skips = skips_of(rep)
    for p in lms:
        assert "NaN" in skips[p.name] and "1 of 68" in skips[p.name]        # before: the file was never named
    assert "landmarks for it were not used" in skips[frames[0].name] and "NaN" in skips[frames[0].name]
    assert rep["frames_kept"] == 27                                          # the second frame: dlib found it


def test_gif_and_heic_files_in_a_folder_dataset_are_read_or_recorded(tmp_path):
    root = tmp_path / "folder"
    happy = root / "S001" / "happy"
    happy.mkdir(parents=True)
    Image.fromarray(ASTRO).save(happy / "a.gif")
    (happy / "b.heic").write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64))
    (happy / "notes.txt").write_text("taken on 2021-03-04")
    (happy / ".DS_Store").write_bytes(b"\0")
    rep = preprocess_dataset("folder", root, tmp_path / "c", DataConfig(image_size=32, val_fraction=0), progress=False)
    skips = skips_of(rep)
    assert rep["frames_kept"] == 1 and set(skips) == {"b.heic", "notes.txt"}   # before: both dropped unsaid
    assert "convert them to JPEG or PNG" in skips["b.heic"]
    with pytest.raises(BadImage, match="HEIC"):
        read_image((happy / "b.heic").read_bytes())                          # an upload says so too


@pytest.mark.parametrize("name", ["x" * 300 + ".jpg", "../../etc/passwd.jpg", "a\nb\0c<b>d</b>.jpg"])
def test_saving_after_an_upload_with_an_odd_name_saves_in_the_folder_and_says_where(name, tmp_path):
    w = _explorer(tmp_path / "out")
    w.on_upload(({"name": name, "content": memoryview(jpeg(ASTRO, 90))},))
    assert w.state.source.photo, w.status.value
    written = w.save_image()                                                 # before (300 chars): OSError, nothing said
    assert written and all(p.is_file() and p.parent == tmp_path / "out" for p in written)
    assert len(written[0].name) < 120 and "saved" in w.status.value and str(tmp_path / "out") in w.status.value
    gif = w.save_gif(frames=2)
    assert gif is not None and gif.parent == tmp_path / "out"
    assert "<b>" not in w.status.value


def test_explorer_offers_a_face_picker_for_a_photo_with_several_faces(tmp_path):
    w = _explorer(tmp_path)
    assert w.picker.widget.layout.display == "none"
    w.on_upload(({"name": "two.jpg", "content": memoryview(jpeg(two_faces(), 95))},))
    assert w.picker.widget.layout.display != "none"
    assert [i for _, i in w.picker.dropdown.options] == [0, 1] and "most confident" in w.picker.dropdown.options[0][0]
    assert w.picker.overview.value[:4] == b"\x89PNG" and "face 0 of 2" in w.status.value
    first = w.state.source.image.copy()
    w.picker.dropdown.value = 1
    assert w.state.source.face == 1 and "face 1 of 2" in w.status.value
    assert np.abs(w.state.source.image.astype(float) - first).mean() > 5    # another face's crop
    assert "face1" in w.save_image()[0].name
    w.controls["subject"].value = "S004"                                     # a cache frame: no picker
    assert w.picker.widget.layout.display == "none"
    w.on_upload(({"name": "one.jpg", "content": memoryview(jpeg(ASTRO, 95))},))
    assert w.picker.widget.layout.display == "none" and "face 0 of" not in w.status.value
    found = faces.find_faces(jpeg(two_faces(), 95))
    assert len(found) == 2 and [i for _, i in faces.face_choices(found)] == [0, 1]
