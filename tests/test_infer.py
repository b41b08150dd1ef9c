"""Real-time inference: edit_face on a real photo (skimage astronaut), paste-back, errors, bench."""
import json

import numpy as np
import pytest
import torch

from lmexpr_nb.config import Config, ModelConfig
from lmexpr_nb.explore import expressions as ex, infer, paste
from lmexpr_nb.model import nets

CFG = Config.from_dict({"model": {"image_size": 64, "ngf": 4, "ndf": 4, "n_blocks": 1, "heatmap_sigma": 1.5}})


class Echo(torch.nn.Module):
    """An identity-like 'generator': returns the source crop it was given."""
    def forward(self, source, *args, **kw):
        return source


class Constant(torch.nn.Module):
    def forward(self, source, *args, **kw):
        return torch.full_like(source, 1.0)        # white


@pytest.fixture(scope="module")
def photo():
    from skimage import data
    return data.astronaut()


@pytest.fixture(scope="module")
def face(photo):
    return infer.prepare_face(photo, 64, CFG.data.crop_margin)


def test_prepare_face_finds_the_astronaut(face, photo):
    assert face.crop.shape == (64, 64, 3) and face.landmarks.shape == (68, 2)
    assert (face.landmarks > 0).all() and (face.landmarks < 64).all()
    np.testing.assert_allclose(face.crop_to_frame(face.landmarks), face.frame_landmarks, atol=1e-6)
    x0, y0 = face.frame_landmarks.min(0)
    x1, y1 = face.frame_landmarks.max(0)
    assert 120 < x0 < x1 < 320 and 40 < y0 < y1 < 260          # her face, upper middle of the photo


def test_echo_generator_pastes_back_in_place(photo):
    res = infer.edit_face(photo, np.zeros((68, 2)), generator=Echo(), cfg=CFG, landmarks_in="crop")
    assert res.crop.shape == (64, 64, 3) and res.frame.shape == photo.shape and res.frame.dtype == np.uint8
    y0, y1, x0, x1 = res.window
    outside = np.ones(photo.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(res.frame[outside], photo[outside])          # nothing outside the crop footprint moves
    # inside the face box: the photo again, up to the 64 px round trip (blur), never shifted
    lx0, ly0 = res.face.frame_landmarks.min(0).astype(int)
    lx1, ly1 = res.face.frame_landmarks.max(0).astype(int)
    a = res.frame[ly0:ly1, lx0:lx1].astype(float)
    b = photo[ly0:ly1, lx0:lx1].astype(float)
    assert np.abs(a - b).mean() < 6.0
    shifted = np.abs(res.frame[ly0:ly1, lx0 + 4:lx1 + 4].astype(float) - b).mean()
    assert shifted > 2 * np.abs(a - b).mean()                          # a 4 px shift would be clearly worse


def test_constant_generator_changes_only_the_face_box(photo):
    res = infer.edit_face(photo, np.zeros((68, 2)), generator=Constant(), cfg=CFG, landmarks_in="crop")
    changed = np.abs(res.frame.astype(int) - photo).max(-1) > 0
    ys, xs = np.nonzero(changed)
    inv = np.linalg.inv(res.face.to_crop)
    corners = paste.apply_matrix(inv, np.array([[-0.5, -0.5], [63.5, 63.5]]))
    assert xs.min() >= corners[0, 0] - 1 and xs.max() <= corners[1, 0] + 1
    assert ys.min() >= corners[0, 1] - 1 and ys.max() <= corners[1, 1] + 1
    cx, cy = res.face.frame_landmarks[30].astype(int)                  # nose tip: fully replaced
    assert (res.frame[cy, cx] == 255).all()
    # the feathered edge: weights rise smoothly from 0 at the footprint's border to 1 inside
    m = res.mask
    assert m.min() == 0 and m.max() == pytest.approx(1) and ((m > 0.1) & (m < 0.9)).mean() > 0.05


def test_no_face_gives_one_line_error():
    gray = np.full((200, 300, 3), 128, np.uint8)
    with pytest.raises(infer.NoFaceError) as e:
        infer.edit_face(gray, "happy", generator=Echo(), cfg=CFG)
    msg = str(e.value)
    assert "no face found in the 300x200 image" in msg and "\n" not in msg
    assert isinstance(e.value, ValueError)


def test_targets_expression_landmarks_and_donor(photo, face):
    torch.manual_seed(0)
    G = nets.build_generator(CFG.model).eval()
    # explicit landmarks in photo pixels: the source's own -> the same crop landmarks
    res = infer.edit_face(photo, face.frame_landmarks, generator=G, cfg=CFG)
    np.testing.assert_allclose(res.target_landmarks, res.source_landmarks, atol=1e-6)
    np.testing.assert_array_equal(res.label, np.eye(8, dtype=np.float32)[0])
    # a donor photo: the same face at another scale -> aligned back onto hers (detector noise only)
    from PIL import Image
    small = np.asarray(Image.fromarray(photo).resize((384, 384), Image.BILINEAR))
    res = infer.edit_face(photo, small, generator=G, cfg=CFG, label="happy")
    assert np.abs(res.target_landmarks - res.source_landmarks).mean() < 1.0
    assert res.label[5] == 1
    # an expression needs the mean displacements
    with pytest.raises(ValueError, match="pass expressions="):
        infer.edit_face(photo, "happy", generator=G, cfg=CFG)
    model = _toy_model()
    res = infer.edit_face(photo, "happy", intensity=0.5, generator=G, cfg=CFG, expressions=model,
                          regions={"mouth": 0.4})
    want = ex.edit_regions(ex.target_landmarks(res.source_landmarks, "happy", 0.5, model), mouth=0.4)
    np.testing.assert_allclose(res.target_landmarks, want)
    assert res.label[0] == pytest.approx(0.5) and res.label[5] == pytest.approx(0.5)


def _toy_model():
    from lmexpr_nb.data.synthetic.shape import MEAN_SHAPE
    d = np.zeros((8, 68, 2))
    d[5, [48, 54], 1] = -0.05
    subjects = np.zeros(8, int)
    subjects[5] = 3
    return ex.ExpressionModel(ex.reference_shape(MEAN_SHAPE[None]), d, subjects)


def test_paste_back_geometry_without_dlib():
    frame = np.zeros((100, 120, 3), np.uint8)
    to_crop = np.array([[0.5, 0, -10], [0, 0.5, -5], [0, 0, 1.0]])     # photo box x 20..84, y 10..74 -> 32 px crop
    crop = np.full((32, 32, 3), 200, np.uint8)
    out, wgt, (y0, y1, x0, x1) = paste.paste_back(frame, crop, to_crop, np.ones((32, 32)))
    assert (out[12:72, 22:82] == 200).all()
    assert (out[:9] == 0).all() and (out[76:] == 0).all() and (out[:, :19] == 0).all() and (out[:, 86:] == 0).all()
    m = paste.feather_mask(32, 0.25)
    assert m[16, 16] == 1 and m[0, 16] < 0.1 and np.allclose(m, m.T)


def test_load_model_finds_expressions(tmp_path):
    from lmexpr_nb.common.checkpoint import save_checkpoint
    torch.manual_seed(0)
    G = nets.build_generator(CFG.model)
    ck = save_checkpoint(tmp_path / "train" / "checkpoints" / "last.pt", step=1, config=CFG, models={"generator": G},
                         optimizers={}, sampler={}, rng=[])
    _toy_model().save(tmp_path / "train" / "expressions.npz")
    ed = infer.load_model(ck, device="cpu")
    assert ed.expressions is not None and ed.expressions.subjects[5] == 3
    assert ed.cfg.model.image_size == 64 and not ed.generator.training


def test_bench_infer_tiny_config(tmp_path):
    from lmexpr_nb.bench.infer import bench_infer, example_batch, fold_batchnorm
    cfg = ModelConfig(image_size=32, ngf=4, n_blocks=1, heatmap_sigma=1.5)
    res = bench_infer(tmp_path / "b.json", "cpu", cfg, runs=3, warmup=1, batch=2, iters=2, smoke=False, verbose=False)
    saved = json.loads((tmp_path / "b.json").read_text())
    lat = saved["paths"]["fp32_eager"]["latency_batch1"]
    assert lat["runs"] == 3 and 0 < lat["median_ms"] <= lat["p90_ms"]
    assert saved["paths"]["fp32_eager"]["throughput"]["batch"] == 2
    assert saved["gpu_measured"] is False and "unmeasured" in saved["gpu_note"]
    assert res["paths"]["fp32_eager_bn_folded"]["max_abs_diff_vs_fp32_latency"] < 1e-4
    G = nets.build_generator(cfg).eval()
    for m in G.modules():                     # non-trivial running statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.5, 2)
    x = example_batch(cfg, 2, "cpu")
    with torch.no_grad():
        assert (G(*x) - fold_batchnorm(G)(*x)).abs().max() < 1e-5


def test_the_one_call_api_of_the_readme(tmp_path, photo):
    """README: editor = load_model(last.pt); editor.edit(photo, "happy", intensity=0.8).frame."""
    from lmexpr_nb.common.checkpoint import save_checkpoint
    torch.manual_seed(0)
    G = nets.build_generator(CFG.model)
    ck = save_checkpoint(tmp_path / "train" / "checkpoints" / "last.pt", step=1, config=CFG,
                         models={"generator": G}, optimizers={}, sampler={}, rng=[])
    model = _toy_model()
    model.save(tmp_path / "train" / "expressions.npz")
    editor = infer.load_model(ck, device="cpu")
    result = editor.edit(photo, "happy", intensity=0.8)
    assert result.frame.shape == photo.shape and result.frame.dtype == np.uint8
    assert result.crop.shape == (64, 64, 3) and not np.array_equal(result.frame, photo)
    want = ex.target_landmarks(result.source_landmarks, "happy", 0.8, model)
    np.testing.assert_allclose(result.target_landmarks, want)
    np.testing.assert_allclose(result.label[[0, 5]], [0.2, 0.8], rtol=1e-6)
    # the same call through edit_face gives the same pixels
    again = infer.edit_face(photo, "happy", intensity=0.8, generator=editor.generator, cfg=editor.cfg,
                            expressions=editor.expressions, device="cpu")
    np.testing.assert_array_equal(again.frame, result.frame)


def test_face_mask_keeps_the_crop_corners_and_replaces_the_face(photo, face):
    box = infer.edit_face(photo, face.frame_landmarks, generator=Constant(), cfg=CFG, mask="box",
                          source_landmarks=face.frame_landmarks)
    hull = infer.edit_face(photo, face.frame_landmarks, generator=Constant(), cfg=CFG, mask="face",
                           source_landmarks=face.frame_landmarks)
    cx, cy = face.frame_landmarks[30].astype(int)                  # nose tip: white in both
    assert (box.frame[cy, cx] == 255).all() and (hull.frame[cy, cx] == 255).all()
    # a point inside the crop footprint near its bottom-left corner, beside the jaw (outside the face):
    # the box mask replaces it, the face mask leaves the photo there
    corner = np.round(paste.apply_matrix(np.linalg.inv(face.to_crop), np.array([[0.15 * 64, 0.85 * 64]]))[0]).astype(int)
    x, y = corner
    assert (box.frame[y, x] == 255).all()
    assert np.array_equal(hull.frame[y, x], photo[y, x])
    assert (hull.mask > 0).sum() < (box.mask > 0).sum()


def test_intensity_beyond_one_needs_extrapolate_and_keeps_the_label_clipped(photo, face):
    model = _toy_model()
    kw = dict(generator=Echo(), cfg=CFG, expressions=model, source_landmarks=face.frame_landmarks)
    with pytest.raises(ValueError, match="extrapolate=True"):
        infer.edit_face(photo, "happy", intensity=1.5, **kw)
    res = infer.edit_face(photo, "happy", intensity=1.5, extrapolate=True, **kw)
    np.testing.assert_allclose(res.target_landmarks, ex.target_landmarks(res.source_landmarks, "happy", 1.5, model))
    assert res.label[5] == 1 and res.label[0] == 0                  # the label planes stay at "fully happy"
    with pytest.raises(ValueError, match=r"outside \[-1, 2\]"):
        infer.edit_face(photo, "happy", intensity=3, extrapolate=True, **kw)
