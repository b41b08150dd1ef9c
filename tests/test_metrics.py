"""Metrics: closed-form vectors, cross-checks against independent formulas, weight loading.

Everything runs on CPU without network; networks use random weights (no pretrained file is
needed) and the real-weight loaders are checked by strict reloads of state dicts saved here.
"""
import dataclasses
import math

import numpy as np
import pytest
import torch

from lmexpr_nb.common.weights import MissingWeightsError
from lmexpr_nb.config import EvalConfig
from lmexpr_nb.metrics import fid as fidm, identity as idm, psnr_ssim as ps, registry as metrics


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """No weight file anywhere: empty $LMEXPR_WEIGHTS and $TORCH_HOME, no download."""
    (tmp_path / "w").mkdir()
    (tmp_path / "th").mkdir()
    monkeypatch.setenv("LMEXPR_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("LMEXPR_NO_DOWNLOAD", "1")
    return tmp_path


@pytest.fixture(scope="module")
def faces():
    """Face crops of scikit-image's astronaut photo (the only real face shipped offline)."""
    import skimage.data
    from skimage.transform import resize
    img = skimage.data.astronaut()
    crops = []
    for dx, dy, s in [(0, 0, 200), (10, 5, 190), (-8, 4, 210), (5, -6, 200), (0, 8, 180), (-5, -5, 220)]:
        x0, y0 = 125 + dx, 25 + dy
        c = img[y0:y0 + s, x0:x0 + s]
        crops.append((resize(c, (128, 128), anti_aliasing=True) * 255).round().astype(np.uint8))
    return np.stack(crops)


# ----------------------------------------------------------------------------- Frechet distance, KID

def test_frechet_identical_statistics_is_zero():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(50, 6))
    mu, s = fidm.feature_stats(f)
    assert abs(fidm.frechet_distance(mu, s, mu, s)) < 1e-9


def test_frechet_mean_shift_only():
    assert fidm.frechet_distance(np.zeros(4), np.eye(4), np.ones(4), np.eye(4)) == pytest.approx(4.0, abs=1e-12)


def test_frechet_closed_form_2x2():
    s1, s2 = np.array([[2.0, 1.0], [1.0, 2.0]]), np.diag([1.0, 4.0])
    expected = 9 - 2 * math.sqrt(10 + 4 * math.sqrt(3))
    assert expected == pytest.approx(0.7712204476543, abs=1e-12)
    fd, det = fidm.frechet_distance(np.zeros(2), s1, np.zeros(2), s2, return_details=True)
    assert fd == pytest.approx(expected, abs=1e-9)
    assert det["fd_eig"] == pytest.approx(expected, abs=1e-9)       # eigenvalue cross-check agrees
    assert det["eps_added"] == 0.0


def test_frechet_eigen_crosscheck_random_and_singular():
    rng = np.random.default_rng(1)
    for n, d in [(400, 8), (20, 32)]:              # the second: N < D, singular covariances
        a, b = rng.normal(size=(n, d)), 0.3 + 1.5 * rng.normal(size=(n, d))
        fd, det = fidm.frechet_distance_features(a, b, return_details=True)
        assert np.isfinite(fd)
        assert det["rel_diff"] < 1e-6
        assert det["crosscheck_method"] == ("eigvals" if n > d else "low-rank SVD (N < D)")
        # an independent route: Tr sqrt(S1 S2) = Tr sqrt(S1^1/2 S2 S1^1/2), all symmetric
        mu1, s1 = fidm.feature_stats(a)
        mu2, s2 = fidm.feature_stats(b)
        w, v = np.linalg.eigh(s1)
        r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
        tr = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
        ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr
        assert fd == pytest.approx(ref, rel=1e-6, abs=1e-6)


def test_frechet_feature_stats_is_unbiased_covariance():
    f = np.random.default_rng(2).normal(size=(30, 3))
    mu, s = fidm.feature_stats(f)
    np.testing.assert_allclose(mu, f.mean(0))
    np.testing.assert_allclose(s, (f - mu).T @ (f - mu) / 29)


def test_frechet_large_imaginary_part_raises():
    with pytest.raises(ValueError, match="imaginary"):
        fidm.frechet_distance(np.zeros(2), np.diag([1.0, -1.0]), np.zeros(2), np.eye(2))


def test_frechet_eps_offset_when_sqrtm_fails(monkeypatch):
    real_sqrtm, calls = fidm._sqrtm, []

    def failing_once(m):
        calls.append(1)
        if len(calls) == 1:
            return np.full_like(m, np.nan), math.inf
        return real_sqrtm(m)

    monkeypatch.setattr(fidm, "_sqrtm", failing_once)
    fd, det = fidm.frechet_distance(np.zeros(2), np.diag([1.0, 0.0]), np.zeros(2), np.diag([1.0, 0.0]),
                                    return_details=True)
    assert det["eps_added"] == 1e-6 and len(calls) == 2
    assert fd == pytest.approx(0.0, abs=1e-5)


def test_kid_closed_form():
    mean, std, m = fidm.kid(np.array([[0.0], [1.0]]), np.array([[1.0], [2.0]]), subset_size=2, num_subsets=1)
    assert mean == pytest.approx(9.5, abs=1e-12) and m == 2


def test_kid_same_distribution_near_zero_and_seeded():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    k1 = fidm.kid(x, y, 50, 20, seed=5)
    assert k1 == fidm.kid(x, y, 50, 20, seed=5)
    assert abs(k1[0]) < k1[1]                          # unbiased: centred on 0 for equal laws
    assert fidm.kid(x, y + 1.0, 50, 20)[0] > 10 * abs(k1[0])


def test_kid_matches_pairwise_definition():
    rng = np.random.default_rng(12)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3)) + 0.5
    k = lambda u, v: (u @ v / 3 + 1) ** 3   # noqa: E731
    m = 7
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / m ** 2
    assert fidm.kid(x, y, subset_size=7, num_subsets=3)[0] == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


# ----------------------------------------------------------------------------- identity

IMPOSTOR = np.arange(1000) / 1250
GENUINE = np.array([0.95, 0.85, 0.799, 0.795, 0.5])


def test_tar_at_far_closed_form():
    assert idm.tar_at_far(GENUINE, IMPOSTOR, 0.01) == pytest.approx(0.8)
    assert idm.tar_at_far(GENUINE, IMPOSTOR, 0.001) == pytest.approx(0.6)
    assert idm.tar_at_far(GENUINE, IMPOSTOR, 1.0) == 1.0


def _roc_max_tpr(gen, imp, far):
    """Brute-force step ROC (sklearn roc_curve's rule): thresholds = every distinct score
    and +inf, accept score >= t; max tpr over fpr <= far."""
    thr = np.concatenate([[np.inf], np.unique(np.concatenate([gen, imp]))])
    best = 0.0
    for t in thr:
        fpr = np.sum(imp >= t) / imp.size
        if fpr <= far:
            best = max(best, np.sum(gen >= t) / gen.size)
    return best


def test_tar_at_far_matches_step_roc_with_ties():
    rng = np.random.default_rng(4)
    for trial in range(30):
        imp = np.round(rng.normal(0, 1, rng.integers(50, 400)), 1)      # heavy ties
        gen = np.round(rng.normal(1.5, 1, rng.integers(5, 60)), 1)
        for far in (0.0, 0.001, 0.01, 0.05, 0.1, 0.5):
            assert idm.tar_at_far(gen, imp, far) == pytest.approx(_roc_max_tpr(gen, imp, far)), (trial, far)


def test_rank1_closed_form():
    probes = np.array([[0.9, 0.1, 0], [0.2, 0.8, 0.1], [0.1, 0.6, 0.5], [0, 0.1, 0.95]])
    assert idm.rank1(np.eye(3), [0, 1, 2], probes, [0, 1, 2, 2]) == pytest.approx(0.75)


def test_verification_scores_and_summary_warning():
    rng = np.random.default_rng(5)
    g, p = rng.normal(size=(6, 8)), rng.normal(size=(10, 8))
    gid, pid = np.array([0, 0, 1, 1, 2, 2]), rng.integers(0, 3, 10)
    gen, imp = idm.verification_scores(g, gid, p, pid)
    assert gen.size == 2 * 10 and imp.size == 4 * 10
    s = idm.cosine_scores(p, g)
    assert np.all(np.abs(s) <= 1 + 1e-12)
    summ = idm.identity_summary(g, gid, p, pid)
    assert summ.n_genuine == 20 and summ.n_impostor == 40 and summ.far_0_1_warning
    assert "not meaningful" in summ.message
    big = idm.identity_summary(rng.normal(size=(40, 8)), np.arange(40) % 20, rng.normal(size=(40, 8)),
                               np.arange(40) % 20)
    assert big.n_impostor == 40 * 38 and not big.far_0_1_warning


def test_identity_metric_through_registry():
    class OneHot:                                    # a recogniser that knows the identities
        name, dim, provenance = "oracle", 3, "test oracle"

        def embed(self, images):
            return np.eye(3)[np.asarray(images)[:, 0, 0, 0] % 3]

    ids = np.array([0, 1, 2, 0, 1, 2])
    ims = np.zeros((6, 4, 4, 3), np.uint8)
    ims[:, 0, 0, 0] = ids
    res = metrics.compute("identity", fake=ims, real=ims, fake_ids=ids, real_ids=ids, recognisers=[OneHot()])
    names = [r.name for r in res]
    assert names == ["Rank-1 (oracle)", "TAR@FAR=1% (oracle)", "TAR@FAR=0.1% (oracle)"]
    assert res[0].value == 1.0 and res[0].n == 6 and res[0].extra["far_0_1_warning"]


# ----------------------------------------------------------------------------- PSNR, SSIM

def test_psnr_constant_offset():
    a = np.random.default_rng(6).integers(0, 200, (32, 40, 3)).astype(np.uint8)
    assert ps.psnr(a, a + 5) == pytest.approx(34.1514, abs=1e-4)
    assert ps.psnr(a, a + 5) == pytest.approx(20 * math.log10(255 / 5), abs=1e-9)


def test_psnr_matches_eq8():
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 256, (2, 24, 24, 3)).astype(np.uint8)
    mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
    assert ps.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=1e-9)
    assert ps.psnr(a, a) == math.inf


def test_ssim_constant_images_both_variants():
    a = np.full((32, 32, 3), 100, np.uint8)
    b = np.full((32, 32, 3), 110, np.uint8)
    for v in ("skimage", "wang"):
        assert ps.ssim(a, b, v) == pytest.approx(0.9954764, abs=1e-7)


def test_ssim_wang_matches_eq9_gaussian_window():
    """Eq. 9 written out with an 11x11 Gaussian window (sigma 1.5), population statistics,
    borders of 5 px dropped, mean over pixels and channels."""
    from scipy.ndimage import gaussian_filter
    rng = np.random.default_rng(8)
    a = rng.integers(0, 256, (40, 36, 3)).astype(np.uint8)
    b = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for ch in range(3):
        x, y = a[..., ch].astype(float), b[..., ch].astype(float)
        f = lambda z: gaussian_filter(z, 1.5, truncate=3.5)   # noqa: E731  radius 5 -> 11x11
        mx, my = f(x), f(y)
        sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
        vals.append(m[5:-5, 5:-5].mean())
    assert ps.ssim(a, b, "wang") == pytest.approx(np.mean(vals), abs=1e-6)
    assert ps.ssim(a, b, "skimage") != pytest.approx(ps.ssim(a, b, "wang"), abs=1e-4)


def test_to_uint8_and_batches():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 4).expand(3, 4, 4).clone()   # CHW
    u = ps.to_uint8_hwc(x)
    assert u.shape == (4, 4, 3) and u.dtype == np.uint8
    assert list(u[0, :, 0]) == [0, 128, 255, 255]
    batch = torch.rand(5, 3, 16, 16) * 2 - 1
    assert ps.to_uint8_hwc(batch).shape == (5, 16, 16, 3)
    real = ps.to_uint8_hwc(batch)
    fake = np.clip(real.astype(int) + 5, 0, 255).astype(np.uint8)
    assert ps.psnr_batch(fake, real).shape == (5,)
    res = metrics.compute_many(["psnr", "ssim"], fake=fake, real=list(real))
    assert [r.name for r in res] == ["PSNR", "SSIM (skimage 7x7)", "SSIM (Wang, Gaussian 1.5)"]
    assert all(r.n == 5 for r in res) and res[0].unit == "dB"


def test_registry():
    names = metrics.list_metrics()
    for n in ("psnr", "ssim", "ssim_wang", "ssim_skimage", "fid", "identity", "expression_accuracy",
              "landmark_error"):
        assert n in names
    with pytest.raises(KeyError):
        metrics.get("nope")
    with pytest.raises(TypeError, match="real"):
        metrics.compute("psnr", fake=np.zeros((1, 8, 8, 3), np.uint8))


# ----------------------------------------------------------------------------- Inception (FID)

def test_fid_inception_layout_matches_torchvision_inception3():
    from torchvision.models.inception import Inception3

    from lmexpr_nb.metrics.inception import FIDInceptionE2, FIDInceptionV3
    net = FIDInceptionV3()
    ref = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert ours == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert not any(k.startswith("AuxLogits") for k in ours) and ours["fc.weight"] == (1008, 2048)
    assert isinstance(net.Mixed_7c, FIDInceptionE2)


def test_fid_blocks_differ_from_torchvision_only_in_pool_branch():
    from torchvision.models import inception as tvi

    from lmexpr_nb.metrics.inception import FIDInceptionA
    a, b = FIDInceptionA(16, 8).eval(), tvi.InceptionA(16, 8).eval()
    b.load_state_dict(a.state_dict())
    x = torch.rand(1, 16, 9, 9)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya[:, :-8], yb[:, :-8])            # 1x1, 5x5, 3x3dbl branches agree
    assert not torch.allclose(ya[:, -8:, 0, 0], yb[:, -8:, 0, 0])  # border average ignores padding


def test_inception_preprocessing_is_pytorch_fid():
    import torch.nn.functional as F

    from lmexpr_nb.metrics.inception import FIDInceptionV3
    x = torch.rand(2, 3, 64, 64)
    ref = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
    torch.testing.assert_close(FIDInceptionV3.preprocess(x), ref)


def test_inception_features_shape_and_strict_reload(tmp_path, monkeypatch):
    from lmexpr_nb.common import weights
    from lmexpr_nb.metrics.inception import FID_WEIGHTS_FILE, FIDInceptionV3, inception_features, load_fid_inception
    torch.manual_seed(0)
    net = FIDInceptionV3()
    path = tmp_path / FID_WEIGHTS_FILE
    torch.save(net.state_dict(), path)
    # the real file is hash-checked: a random-weight file under its name is refused ...
    with pytest.raises(MissingWeightsError, match="expected"):
        load_fid_inception(path)
    # ... so for this test only, drop the hash so the strict load path itself is exercised
    spec = weights.SPECS["inception-fid"]
    monkeypatch.setitem(weights.SPECS, "inception-fid", dataclasses.replace(spec, sha256_prefix=None))
    loaded, prov = load_fid_inception(path)
    assert FID_WEIGHTS_FILE in prov
    ims = np.random.default_rng(9).integers(0, 256, (2, 48, 48, 3)).astype(np.uint8)
    f = inception_features(ims, loaded, batch_size=1)
    assert f.shape == (2, 2048) and np.isfinite(f).all()
    np.testing.assert_allclose(f, inception_features(ims, net.eval()), rtol=1e-5, atol=1e-6)
    # the FID setting's extractor is this network, named FID/KID, its provenance naming the file's hash
    embed, fd_name, kid_name, prov = fidm._extractor(EvalConfig(fid_features="inception",
                                                                inception_weights=str(path)), "cpu", 1)
    assert (fd_name, kid_name) == ("FID", "KID") and weights.file_sha256(path)[:16] in prov
    np.testing.assert_allclose(embed(ims), f, rtol=1e-5, atol=1e-6)


def test_fid_path_runs_the_real_frechet_distance(monkeypatch):
    """fid_or_standin on the FID setting with the real Frechet routine (only the 2048-d network is
    replaced, by 8 pixel values: sqrtm at 2048-d takes ~50 s here). Fakes are the reals 3 grey
    levels brighter: equal covariances, means 3 apart in each of 8 dimensions, so FID = 8 x 9."""
    embed = lambda ims: np.asarray(ims, np.float64).reshape(len(ims), -1)[:, :8]
    monkeypatch.setattr(fidm, "_extractor", lambda cfg, d, b: (embed, "FID", "KID", "8 pixels (test)"))
    real = np.random.default_rng(3).integers(0, 250, (40, 8, 8, 3)).astype(np.uint8)
    fd, kd = fidm.fid_or_standin(real, real + 3, EvalConfig(fid_features="inception", kid_subset_size=10,
                                                              kid_subsets=5))
    assert (fd.name, kd.name, fd.n) == ("FID", "KID", 40)
    assert fd.value == pytest.approx(72.0, rel=1e-9) and fd.extra["crosscheck_rel_diff"] < 1e-9
    assert not fd.extra["singular_covariance"] and fd.extra["eps_added"] == 0
    same, _ = fidm.fid_or_standin(real, real.copy(), EvalConfig(fid_features="inception", kid_subset_size=10,
                                                                  kid_subsets=5))
    assert abs(same.value) < 1e-9


def test_missing_weights_name_the_files(no_weights):
    from lmexpr_nb.metrics.inception import load_fid_inception
    from lmexpr_nb.metrics.recognisers import LightCNNRecogniser, VggFaceRecogniser
    for load, fname in [(load_fid_inception, "pt_inception-2015-12-05-6726825d.pth"),
                        (LightCNNRecogniser.from_weights, "LightCNN_29Layers_V2_checkpoint.pth.tar"),
                        (VggFaceRecogniser.from_weights, "vgg_face_dag.pth")]:
        with pytest.raises(MissingWeightsError, match=fname.replace(".", r"\.")):
            load()
    # FID does not fall back to anything when Inception weights are missing
    with pytest.raises(MissingWeightsError, match="pt_inception"):
        fidm.fid_or_standin(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8),
                            EvalConfig(fid_features="inception"))
    with pytest.raises(MissingWeightsError, match="LightCNN"):
        metrics.compute("identity", fake=np.zeros((2, 8, 8, 3), np.uint8), real=np.zeros((2, 8, 8, 3), np.uint8),
                        fake_ids=[0, 1], real_ids=[0, 1], cfg=EvalConfig(recognisers=("lightcnn",)))


def test_dlib_standin_only_when_asked_and_labelled(faces, no_weights):
    cfg = EvalConfig(fid_features="dlib-standin", kid_subset_size=3, kid_subsets=4)
    res = metrics.compute("fid", real=faces[:3], fake=faces[3:], cfg=cfg)
    assert [r.name for r in res] == ["FD-dlib", "KID-dlib"]
    assert all("STAND-IN" in r.provenance for r in res)
    assert res[0].n == 3 and res[0].extra["feature_dim"] == 128 and np.isfinite(res[0].value)
    assert "FID" not in res[0].name
    with pytest.raises(ValueError, match="fid_features"):
        fidm.fid_or_standin(faces[:2], faces[2:4], EvalConfig(fid_features="whatever"))


# ----------------------------------------------------------------------------- recognisers

def test_dlib_recogniser_embeds_and_counts_fallbacks(faces):
    from lmexpr_nb.metrics.recognisers import DlibRecogniser
    rec = DlibRecogniser()
    e = rec.embed(faces[:2])
    assert e.shape == (2, 128) and np.isfinite(e).all()
    assert np.linalg.norm(rec.embed(faces[:1]) - e[:1]) < 1e-6     # deterministic
    rec.embed(np.full((1, 64, 64, 3), 128, np.uint8))                # no face in a flat image
    assert rec.last_stats["whole_image_box"] == 1
    floats = torch.from_numpy(faces[:1]).permute(0, 3, 1, 2).float() / 127.5 - 1   # [-1,1] CHW input
    assert np.linalg.norm(rec.embed(floats) - e[:1]) < 1e-6
    # a repeated image (a real frame that is the target of several pairs) is computed once, same rows
    flat = np.full_like(faces[0], 128)
    r = rec.embed(np.stack([faces[0], faces[1], faces[0], flat, flat]))
    assert rec.last_computed == 1 and rec.last_stats["whole_image_box"] == 2    # faces seen above; flat once
    assert np.linalg.norm(r[:2] - e) < 1e-6 and np.array_equal(r[2], r[0]) and np.array_equal(r[4], r[3])
    fresh = DlibRecogniser()
    assert np.array_equal(fresh.embed(np.stack([flat, faces[2], faces[2], flat])), rec.embed(
        np.stack([flat, faces[2], faces[2], flat]))) and fresh.last_computed == 2 and rec.last_computed == 1
    assert np.array_equal(r[3], DlibRecogniser().embed(flat[None])[0])


def test_lightcnn_layout_forward_and_strict_checkpoint_reload(tmp_path):
    from lmexpr_nb.metrics.recognisers import LightCNN29v2, LightCNNRecogniser
    torch.manual_seed(0)
    net = LightCNN29v2(num_classes=100).eval()
    sd = net.state_dict()
    # layout of AlfredXiangWu/LightCNN network_29layers_v2 (resblocks [1, 2, 3, 4])
    expect = {"conv1.filter.weight": (96, 1, 5, 5), "block1.0.conv1.filter.weight": (96, 48, 3, 3),
              "group1.conv_a.filter.weight": (96, 48, 1, 1), "group1.conv.filter.weight": (192, 48, 3, 3),
              "block2.1.conv2.filter.weight": (192, 96, 3, 3), "block3.2.conv1.filter.bias": (384,),
              "group3.conv.filter.weight": (256, 192, 3, 3), "block4.3.conv2.filter.weight": (256, 128, 3, 3),
              "group4.conv.filter.weight": (256, 128, 3, 3), "fc.weight": (256, 8192), "fc2.weight": (100, 256)}
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert "fc2.bias" not in sd and len(sd) == 61
    # released checkpoint format: {'state_dict': {'module.<key>': ...}, ...}
    ck = tmp_path / "LightCNN_29Layers_V2_checkpoint.pth.tar"
    torch.save({"epoch": 1, "arch": "LightCNN-29v2", "state_dict": {f"module.{k}": v for k, v in sd.items()}}, ck)
    rec = LightCNNRecogniser.from_weights(ck)
    ims = np.random.default_rng(10).integers(0, 256, (2, 64, 64, 3)).astype(np.uint8)
    e = rec.embed(ims)
    assert e.shape == (2, 256)
    gray = torch.from_numpy(np.rint(ims @ np.array([0.299, 0.587, 0.114]))).float()[:, None] / 255
    import torch.nn.functional as F
    x = F.interpolate(gray, size=(128, 128), mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        np.testing.assert_allclose(e, net(x)[1].double().numpy(), rtol=1e-5, atol=1e-5)


def test_vggface_layout_forward_and_strict_reload(tmp_path):
    from lmexpr_nb.metrics.recognisers import VggFaceDag, VggFaceRecogniser
    torch.manual_seed(0)
    net = VggFaceDag()
    names = [f"conv{b}_{i}" for b, n in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, n + 1)] + ["fc6", "fc7", "fc8"]
    assert list(net.state_dict()) == [f"{n}.{p}" for n in names for p in ("weight", "bias")]
    assert tuple(net.fc6.weight.shape) == (4096, 25088) and tuple(net.fc8.weight.shape) == (2622, 4096)
    e = VggFaceRecogniser(net, "random").embed(np.zeros((1, 128, 128, 3), np.uint8))
    assert e.shape == (1, 4096) and (e >= 0).all()                 # fc7 after ReLU
    del net, e
    # a compact random state dict (each tensor a broadcast random row: small file, same keys and
    # shapes as vgg_face_dag.pth) must load strict through the user-file path
    g = torch.Generator().manual_seed(1)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in VggFaceDag().state_dict().items()}
    sd = {k: torch.randn(shape[-1], generator=g).expand(shape) for k, shape in shapes.items()}
    path = tmp_path / "vgg_face_dag.pth"
    torch.save(sd, path)
    rec = VggFaceRecogniser.from_weights(path)
    assert torch.equal(rec.net.fc7.weight, sd["fc7.weight"].contiguous())
    bad = dict(sd)
    bad.pop("fc8.bias")
    torch.save(bad, path)
    with pytest.raises(RuntimeError, match="fc8.bias"):
        VggFaceRecogniser.from_weights(path)


# ----------------------------------------------------------------------------- expression, landmarks

def _colour_coded(n_per_class, rng, size=64):
    palette = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [220, 220, 40],
                        [220, 40, 220], [40, 220, 220], [128, 128, 128], [250, 150, 60]])
    y = np.repeat(np.arange(8), n_per_class)
    x = np.clip(palette[y][:, None, None, :] + rng.normal(0, 25, (len(y), size, size, 3)), 0, 255)
    return x.astype(np.uint8), y


def test_expression_classifier_learns_colour_codes_deterministically():
    from lmexpr_nb.metrics.expression import accuracy, predict, train_expression_classifier
    rng = np.random.default_rng(11)
    x, y = _colour_coded(8, rng)
    xt, yt = _colour_coded(4, rng)
    state = torch.get_rng_state()
    m1 = train_expression_classifier(x, y, epochs=6, seed=3)
    assert torch.equal(state, torch.get_rng_state())                  # caller's RNG untouched
    assert accuracy(m1, xt, yt) >= 0.95
    a = train_expression_classifier(x[::3], y[::3], epochs=2, seed=3)
    b = train_expression_classifier(x[::3], y[::3], epochs=2, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))
    # [-1,1] float NCHW input at 128 (each pixel a 2x2 block) is averaged back to the same 64x64
    # input as the uint8 images: the same predictions
    xf = torch.from_numpy(xt).permute(0, 3, 1, 2).float() / 127.5 - 1
    xf = torch.nn.functional.interpolate(xf, size=(128, 128), mode="nearest")
    np.testing.assert_array_equal(predict(m1, xf), predict(m1, xt))
    res = metrics.compute("expression_accuracy", fake=xt, fake_labels=yt, classifier=m1)
    assert res[0].name == "Expression accuracy" and res[0].n == len(yt)


def test_landmark_error_counts_missing_faces():
    import skimage.data

    from lmexpr_nb.landmarks.detect import LandmarkDetector
    from lmexpr_nb.metrics.landmark_error import landmark_error
    img = skimage.data.astronaut()
    det = LandmarkDetector()
    _, pts = det.locate(img)
    blank = np.full_like(img, 128)
    # targets a known 3-4-5 offset away from what the detector finds: every point is 5 px off, and
    # the error is that over the target's outer-eye-corner distance (points 36 and 45)
    target = pts.astype(np.float64) + [3.0, 4.0]
    iod = np.hypot(*(pts[36] - pts[45]).astype(np.float64))
    assert 60 < iod < 120                                   # her eyes, not two neighbouring points
    r = landmark_error([img, blank, img], np.stack([target, target, pts]), det)
    assert r.n == 3 and r.n_missing == 1 and np.isnan(r.errors[1])
    assert r.errors[0] == pytest.approx(5.0 / iod, rel=1e-6)
    assert r.errors[2] == pytest.approx(0.0, abs=1e-12)
    assert r.mean == pytest.approx(2.5 / iod, rel=1e-6)     # over the two images with a face
