"""explore/: landmark maths (expressions.py), the explorer's state (state.py) and the widget callbacks
(explorer.py), headless."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from lmexpr_nb.config import ModelConfig
from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.data.synthetic.shape import MEAN_SHAPE
from lmexpr_nb.explore import explorer, expressions as ex, state
from lmexpr_nb.landmarks.align import Similarity, align_shape
from lmexpr_nb.model import nets
from lmexpr_nb.model.generate import synthesize

CFG = ModelConfig(image_size=32, ngf=4, ndf=4, n_blocks=1, heatmap_sigma=1.5)
HAPPY, SURPRISE = CLASSES.index("happy"), CLASSES.index("surprise")


def _displacement(k):
    """A made-up expression in face units that moves only non-stable points."""
    d = np.zeros((68, 2))
    if k == HAPPY:
        d[[48, 60], 0], d[[54, 64], 0] = -0.05, 0.05
        d[[48, 54, 60, 64], 1] = -0.04
    else:  # surprise: mouth open, brows up
        d[list(ex.LOWER_LIP), 1] = 0.08
        d[list(ex.RIGHT_BROW + ex.LEFT_BROW), 1] = -0.05
    return d


def _pose(shape, scale, angle, shift):
    a = scale * np.exp(1j * angle)
    return Similarity(a, complex(*shift)).apply(shape)


def _cache(n_subjects=6, same_shape=True, seed=0):
    """Frames: 3 neutral + 3 happy + 3 surprise per subject, each subject under its own pose."""
    rng = np.random.default_rng(seed)
    lms, labels, subjects, split = [], [], [], []
    for s in range(n_subjects):
        base = MEAN_SHAPE if same_shape else MEAN_SHAPE + rng.normal(0, 0.01, MEAN_SHAPE.shape)
        pose = (rng.uniform(18, 24), rng.uniform(-0.2, 0.2), rng.uniform(14, 18, 2))
        for k in (0, HAPPY, SURPRISE):
            for _ in range(3):
                lms.append(_pose(base + (_displacement(k) if k else 0), *pose))
                labels.append(k), subjects.append(f"S{s:03d}")
                split.append("val" if s >= n_subjects - 2 else "train")
    n = len(lms)
    return SimpleNamespace(images=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                           landmarks=np.array(lms, np.float32), labels=np.array(labels),
                           subjects=np.array(subjects), split=np.array(split))


@pytest.fixture(scope="module")
def cache():
    return _cache()


@pytest.fixture(scope="module")
def model(cache):
    return ex.learn_displacements(cache, "train")


@pytest.fixture(scope="module", autouse=True)
def _close_widgets():
    """Close the explorers' widgets here, not in Widget.__del__ at interpreter exit (which,
    once ipykernel is imported by a later test, prints 'sys.meta_path is None' noise)."""
    yield
    import ipywidgets
    ipywidgets.Widget.close_all()


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return nets.build_generator(CFG).eval()


# ----------------------------------------------------------------------------- expressions

def test_intensity_zero_is_source_and_one_is_the_mean_displacement(model):
    scale, angle = 15.0, 0.4                      # a pose none of the training faces had
    src = _pose(MEAN_SHAPE, scale, angle, (16, 15))
    assert np.array_equal(ex.target_landmarks(src, "happy", 0.0, model), src)
    for k in (HAPPY, SURPRISE):
        want = src + Similarity(scale * np.exp(1j * angle)).apply_vectors(_displacement(k))
        np.testing.assert_allclose(ex.target_landmarks(src, k, 1.0, model), want, atol=1e-4)
        half = ex.target_landmarks(src, CLASSES[k], 0.5, model)
        np.testing.assert_allclose(half, (src + want) / 2, atol=1e-4)
    assert model.subjects[HAPPY] == 4 and model.subjects[0] == 0
    assert np.abs(model.displacements[0]).max() == 0
    with pytest.raises(ValueError, match="no training subject shows 'anger'"):
        ex.target_landmarks(src, "anger", 1.0, model)
    assert model.available() == ["neutral", "happy", "surprise"]


def test_learned_displacement_tolerates_identity_and_pose(tmp_path):
    m = ex.learn_displacements(_cache(n_subjects=10, same_shape=False, seed=1), "train")
    src = _pose(MEAN_SHAPE, 20, -0.1, (16, 16))
    want = src + Similarity(20 * np.exp(-0.1j)).apply_vectors(_displacement(HAPPY))
    got = ex.target_landmarks(src, "happy", 1.0, m)
    assert np.abs(got - want).max() < 0.1 * np.abs(want - src).max() + 0.05
    m.save(tmp_path / "e.npz")
    m2 = ex.ExpressionModel.load(tmp_path / "e.npz")
    np.testing.assert_array_equal(m2.displacements, m.displacements)
    assert m2.classes == m.classes and m2.points == m.points


def test_non_neutral_source_subtracts_its_own_expression(model):
    src = _pose(MEAN_SHAPE + _displacement(HAPPY), 20, 0.0, (16, 16))
    back = ex.target_landmarks(src, "neutral", 1.0, model, source_expression="happy")
    np.testing.assert_allclose(back, _pose(MEAN_SHAPE, 20, 0.0, (16, 16)), atol=1e-4)


@pytest.mark.parametrize("region", state.REGIONS)
@pytest.mark.parametrize("amount", [-1.0, -0.4, 0.5, 1.0])
def test_region_sliders_move_only_their_points(region, amount):
    lm = _pose(MEAN_SHAPE, 20, 0.5, (16, 16))     # a tilted face: edits follow the face's own axes
    lm[list(ex.LOWER_LIP)] += ex.face_frame(lm)[1] * 2.0          # mouth a little open
    out = ex.edit_regions(lm, **{region: amount})
    moved = set(np.flatnonzero(np.abs(out - lm).max(1) > 1e-9))
    assert moved and moved <= set(ex.REGION_POINTS[region]), (region, sorted(moved))
    assert np.array_equal(ex.edit_regions(lm), lm)


def test_region_sliders_do_what_they_say():
    lm = _pose(MEAN_SHAPE, 20, 0.5, (16, 16))
    lm[list(ex.LOWER_LIP)] += ex.face_frame(lm)[1] * 2.0
    ex_, down, iod = ex.face_frame(lm)
    g0 = ex.region_gaps(lm)
    assert ex.region_gaps(ex.edit_regions(lm, mouth=1))["mouth"] == pytest.approx(g0["mouth"] + ex.MOUTH_OPEN * iod)
    assert ex.region_gaps(ex.edit_regions(lm, mouth=-1))["mouth"] == pytest.approx(0, abs=1e-9)
    shut = ex.region_gaps(ex.edit_regions(lm, eyes=-1))
    # (closing the lids moves the eye centres a little, so the measuring axis tilts slightly)
    assert abs(shut["right_eye"]) < 1e-3 * iod and abs(shut["left_eye"]) < 1e-3 * iod
    wide = ex.region_gaps(ex.edit_regions(lm, eyes=1))
    assert wide["left_eye"] == pytest.approx(g0["left_eye"] + ex.EYE_OPEN * iod, rel=1e-3)
    up = ex.edit_regions(lm, brow=1)
    np.testing.assert_allclose((up - lm)[17:27] @ down, -ex.BROW_UP * iod)
    sm = ex.edit_regions(lm, smile=1) - lm
    assert (sm[[48, 54]] @ down < 0).all()                         # corners up
    assert sm[48] @ ex_ < 0 < sm[54] @ ex_                         # and apart


def test_blend_label_and_donor_alignment():
    v = ex.blend_label("neutral", "happy", 0.3)
    assert v.dtype == np.float32 and v.sum() == pytest.approx(1)
    assert v[0] == pytest.approx(0.7) and v[HAPPY] == pytest.approx(0.3)
    np.testing.assert_array_equal(ex.blend_label(0, HAPPY, 1.0), np.eye(8, dtype=np.float32)[HAPPY])
    src = _pose(MEAN_SHAPE, 20, 0.1, (16, 16))
    donor = _pose(MEAN_SHAPE + _displacement(SURPRISE), 90, -0.3, (200, 150))
    np.testing.assert_allclose(align_shape(donor, src), _pose(MEAN_SHAPE + _displacement(SURPRISE), 20, 0.1,
                                                                   (16, 16)), atol=1e-6)


# ----------------------------------------------------------------------------- callbacks

def _state(G, cache, model, **kw):
    src = state.pick_source(cache, "val")
    return state.ExplorerState.from_source(G, CFG, model, src, donors=state.donor_shapes(cache, model), **kw)


def test_render_gives_the_expected_landmarks_and_image(G, cache, model):
    st = _state(G, cache, model, expression="surprise", intensity=0.6, mouth=0.5, brow=-0.3)
    assert st.source.label == 0 and st.source.subject in ("S004", "S005")
    out = state.render(st)
    want = ex.edit_regions(ex.target_landmarks(st.source.landmarks, "surprise", 0.6, model), mouth=0.5, brow=-0.3)
    np.testing.assert_allclose(out["target_landmarks"], want)
    np.testing.assert_allclose(out["label"], ex.blend_label(0, SURPRISE, 0.6))
    direct = synthesize(G, st.source.image[None], st.source.landmarks[None], want[None], out["label"][None], CFG)
    np.testing.assert_array_equal(out["generated"], direct[0])
    assert out["generated"].shape == (32, 32, 3) and out["panel"].shape[0] == 256 and out["panel"].dtype == np.uint8
    zero = state.render(st.replace(intensity=0.0, mouth=0.0, brow=0.0))
    np.testing.assert_array_equal(zero["target_landmarks"], st.source.landmarks)


def test_fig8_and_the_explorers_donor_put_a_donor_frame_in_the_same_place(G, model):
    """One similarity alignment: the paper's Fig. 8 transfer (experiments/figures.py) and the explorer's
    landmark donor (explore/state.py) give the same target landmarks for the same (face, donor frame)."""
    from lmexpr_nb.experiments.figures import transfer_landmarks
    cache = _cache(same_shape=False, seed=4)               # faces of different shapes, each under its own pose
    subjects, labels = cache.subjects.astype(str), cache.labels
    face = int(np.flatnonzero((subjects == "S004") & (labels == 0))[0])
    donor_neutral, donor_happy = (int(np.flatnonzero((subjects == "S001") & (labels == k))[-1]) for k in (0, HAPPY))
    fig8 = transfer_landmarks(cache, [(face, donor_happy)])[0]
    st = state.ExplorerState.from_source(G, CFG, model, state.source_from_cache(cache, face), expression="happy",
                                         intensity=1.0, donor="S001",
                                         donors={"S001": {0: cache.landmarks[donor_neutral], HAPPY: cache.landmarks[donor_happy]}})
    explorer_target, _ = state.state_target(st)
    np.testing.assert_allclose(explorer_target, fig8, atol=1e-9)
    assert np.abs(fig8 - cache.landmarks[donor_happy]).max() > 1          # the alignment did move the donor frame


def test_donor_transfers_the_donors_geometry(G, cache, model):
    st = _state(G, cache, model, expression="happy", donor="S000")
    src = st.source.landmarks
    donor = st.donors["S000"]
    peak, _ = state.state_target(st)
    np.testing.assert_allclose(peak, align_shape(donor[HAPPY], src))
    start, _ = state.state_target(st.replace(intensity=0.0))
    np.testing.assert_allclose(start, align_shape(donor[0], src))
    assert set(donor) == {0, HAPPY, SURPRISE}


def test_save_image_and_gif_frame_count(G, cache, model, tmp_path):
    st = _state(G, cache, model, expression="happy", smile=0.5)
    png, panel = state.save_image(st, tmp_path / "face.png")
    assert Image.open(png).size == (32, 32) and panel.name == "face_panel.png"
    p = state.save_gif(st, tmp_path / "a.gif", frames=7)
    with Image.open(p) as im:
        assert im.n_frames == 7 and im.format == "GIF"

    class Flat(torch.nn.Module):        # every frame the same face: the intensity bar keeps them apart
        def forward(self, x, *a, **k):
            return torch.zeros_like(x)
    p2 = state.save_gif(st.replace(generator=Flat(), device="cpu"), tmp_path / "flat.gif", frames=5)
    with Image.open(p2) as im:
        assert im.n_frames == 5
    frames = state.animation_states(st, 4)
    assert frames[0].intensity == 0 and frames[0].smile == 0 and frames[-1].intensity == 1 and frames[-1].smile == 0.5


def test_expression_intensity_grid(G, cache, model):
    fig = state.expression_intensity_grid(G, CFG, state.pick_source(cache, "val"), model,
                                            intensities=(0, 0.5, 1), footer="synthetic")
    assert len(fig.axes) == 2 * 4          # happy, surprise x (source + 3 intensities)
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_widget_constructs_headless_and_callbacks_update_state(G, cache, model, tmp_path):
    w = explorer.ExpressionExplorer(G, CFG, cache, model, out_dir=tmp_path)
    c = w.controls
    assert all(c[k].continuous_update is False for k in ("intensity",) + state.REGIONS)
    c["intensity"].value = 0.35
    c["mouth"].value = 0.5
    assert w.state.intensity == pytest.approx(0.35) and w.state.mouth == pytest.approx(0.5)
    np.testing.assert_allclose(w.last["target_landmarks"], state.state_target(w.state)[0])
    c["expression"].value = "surprise"
    c["donor"].value = "S001"
    assert w.state.expression == "surprise" and w.state.donor == "S001"
    # subject, then frame: the frame list is that subject's (neutral first)
    assert c["subject"].value == "S004" and [v for _, v in c["subject"].options] == ["S004", "S005"]
    c["subject"].value = "S005"
    rows = [i for _, i in c["source"].options]
    assert set(cache.subjects[rows]) == {"S005"} and cache.labels[rows[0]] == 0 and len(rows) == 9
    c["source"].value = rows[-1]
    assert np.array_equal(w.state.source.image, cache.images[rows[-1]])
    assert c["source_label"].value == cache.labels[rows[-1]]
    assert all(v.value[:4] == b"\x89PNG" for v in w.views) and w.view is w.views[2]
    w.buttons["save_image"].click()
    c["frames"].value = 3
    w.buttons["save_gif"].click()
    assert [p.suffix for p in w.saved] == [".png", ".png", ".gif"] and all(p.is_file() for p in w.saved)
    with Image.open(w.saved[-1]) as im:
        assert im.n_frames == 3
    before = w.state.source
    gray = state.png_bytes(np.full((120, 120, 3), 128, np.uint8))
    w.on_upload(({"name": "gray.png", "content": memoryview(gray)},))
    assert "no face found" in w.status.value and w.state.source is before


def test_status_line_and_file_names_say_every_setting(G, cache, model):
    from lmexpr_nb.explore.explorer import save_stem, status_text
    st = _state(G, cache, model, expression="happy", intensity=0.8)
    assert status_text(st) == f"{st.source.name}: neutral → happy at 0.80"          # no dangling "; regions"
    assert save_stem(st) == f"explorer_{st.source.subject}-{st.source.index}_happy-0.80"
    st = st.replace(donor="S001", mouth=0.5, brow=-0.25)
    assert status_text(st).endswith("; landmark donor S001; regions mouth +0.50, brow -0.25")
    assert save_stem(st) == f"explorer_{st.source.subject}-{st.source.index}_happy-0.80_donor-S001_mouth+0.50_brow-0.25"


def test_busy_indicator_and_saving_feedback_reach_the_widgets(G, cache, model, tmp_path, monkeypatch):
    w = explorer.ExpressionExplorer(G, CFG, cache, model, out_dir=tmp_path)
    seen = []
    real_render, real_gif = state.render, state.save_gif

    def render(state, *a, **k):
        seen.append(("render", w.busy.value))
        return real_render(state, *a, **k)

    def save_gif(*a, **k):
        seen.append(("gif", w.busy.value, w.status.value, w.buttons["save_gif"].disabled))
        return real_gif(*a, **k)
    monkeypatch.setattr(explorer, "render", render)
    monkeypatch.setattr(explorer, "save_gif", save_gif)
    w.controls["intensity"].value = 0.5
    assert "generating" in seen[-1][1] and w.busy.value.startswith("<span") and "ready" in w.busy.value
    assert w.seconds is not None and w.seconds > 0
    w.save_gif(frames=2)
    kind, busy, status, disabled = seen[-1]
    assert kind == "gif" and "saving a 2-frame GIF" in busy and "saving" in status and disabled
    assert not w.buttons["save_gif"].disabled and "saved" in w.status.value and w.busy.value == ""


def test_uploaded_photo_becomes_the_source_and_the_model_says_what_it_knows(G, cache, model, tmp_path):
    from skimage import data

    from lmexpr_nb.explore.explorer import PHOTO, source_note
    w = explorer.ExpressionExplorer(G, CFG, cache, model, out_dir=tmp_path,
                                   trained_on={"dataset": "synthetic", "synthetic": True})
    assert w.note.value == ""                       # a synthetic frame into a synthetic model: nothing to say
    w.on_upload(({"name": "astronaut.png", "content": memoryview(state.png_bytes(data.astronaut()))},))
    c = w.controls
    assert w.state.source.photo and c["subject"].value == PHOTO and c["subject"].options[0] == ("your photo", PHOTO)
    assert c["source"].options == (("astronaut.png", -1),) and c["source"].disabled
    assert c["source_label"].value is None and "neutral assumed" in w.status.value
    assert "never seen a real face" in w.note.value and "paper profile" in w.note.value
    assert "Set <b>source is</b>" in w.note.value
    c["source_label"].value = CLASSES.index("happy")
    assert w.state.source.label == CLASSES.index("happy") and "Set <b>source is</b>" not in w.note.value
    assert w.save_image()[0].name.startswith("explorer_photo-astronaut_happy-1.00")
    c["subject"].value = "S005"                     # back to a frame, then to the photo again
    assert not w.state.source.photo and not c["source"].disabled and w.note.value == ""
    c["subject"].value = PHOTO
    assert w.state.source.photo and w.state.source.label == CLASSES.index("happy")
    real = explorer.ExpressionExplorer(G, CFG, cache, model, trained_on={"dataset": "ckplus", "synthetic": False})
    assert source_note(w.state.source, real.trained_on) == ""
    assert "untrained" in source_note(w.state.source, {"untrained": True})
