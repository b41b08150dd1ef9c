"""losses.py: Eq. 4-7, the joint real/fake batch, the VGG19 weights policy, and a tiny overfit."""
import dataclasses
import math

import pytest
import torch
import torch.nn as nn

from lmexpr_nb.common import weights
from lmexpr_nb.config import LossConfig, ModelConfig
from lmexpr_nb.model import losses, nets

TINY = ModelConfig(image_size=32, ngf=8, ndf=8, n_blocks=2)


# ---------------------------------------------------------------- Eq. 4

def test_gan_loss_matches_hand_computed_bce():
    p = torch.tensor([0.2, 0.7, 0.9, 0.5])
    real = -(math.log(0.2) + math.log(0.7) + math.log(0.9) + math.log(0.5)) / 4
    fake = -(math.log(0.8) + math.log(0.3) + math.log(0.1) + math.log(0.5)) / 4
    assert losses.gan_loss(p, True).item() == pytest.approx(real, rel=1e-6)
    assert losses.gan_loss(p, False).item() == pytest.approx(fake, rel=1e-6)
    logit = torch.log(p / (1 - p))
    assert losses.gan_loss(logit, True, logits=True).item() == pytest.approx(real, rel=1e-5)
    assert losses.gan_loss(logit, False, logits=True).item() == pytest.approx(fake, rel=1e-5)


def test_gan_loss_is_finite_when_d_saturates():
    for pred in (torch.tensor([0.0, 1.0]), torch.tensor([1e-30, 1 - 1e-12])):
        for real in (True, False):
            assert torch.isfinite(losses.gan_loss(pred, real))
    z = torch.tensor([-200.0, 200.0], requires_grad=True)
    loss = losses.gan_loss(z, True, logits=True)
    loss.backward()
    assert loss.item() == pytest.approx(100.0)            # (200 + 0) / 2
    assert z.grad[0].item() == pytest.approx(-0.5)         # the wrong side still has a gradient


def test_lsgan_objective_is_least_squares_on_the_same_values():
    """loss.gan_objective "lsgan" (non-paper): mean (pred - 1)^2 for real, pred^2 for fake; its
    gradient grows with the distance, where BCE's vanishes for a saturated sigmoid."""
    z = torch.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    real = losses.gan_loss(z, True, logits=True, objective="lsgan")
    assert real.item() == pytest.approx((9 + 0.25 + 4) / 3)
    assert losses.gan_loss(z, False, logits=True, objective="lsgan").item() == pytest.approx((4 + 0.25 + 9) / 3)
    real.backward()
    assert z.grad.tolist() == pytest.approx([2 * -3 / 3, 2 * -0.5 / 3, 2 * 2 / 3])
    with pytest.raises(ValueError, match="objective"):
        losses.gan_loss(z, True, objective="hinge")
    d = nn.Sequential(nn.Conv2d(2, 1, 1), nn.Sigmoid())
    real_x, fake_x = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    with torch.no_grad():
        expected = 0.5 * ((d(real_x) - 1).pow(2).mean() + d(fake_x).pow(2).mean())
        got = losses.discriminator_loss(d, real_x, fake_x, joint_batch=False, objective="lsgan")
    assert got.item() == pytest.approx(expected.item())


def test_pixel_loss_eq5():
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.5)
    b[0, 0, 0, 0] = -1.5
    assert losses.pixel_loss(a, b).item() == pytest.approx((95 * 0.5 + 1.5) / 96)


# ---------------------------------------------------------------- discriminator loss, joint batch

class CallLog:
    def __init__(self, module):
        self.batches = []
        module.register_forward_hook(lambda m, i, o: self.batches.append(i[0].shape[0]))


def test_discriminator_loss_is_half_real_plus_fake():
    d = nn.Sequential(nn.Conv2d(2, 1, 1), nn.Sigmoid())
    real, fake = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    with torch.no_grad():
        expected = 0.5 * (losses.gan_loss(d(real), True) + losses.gan_loss(d(fake), False))
    assert losses.discriminator_loss(d, real, fake, joint_batch=False).item() == pytest.approx(expected.item())


def test_joint_batch_passes_real_and_fake_as_one_batch():
    # A D whose BN would normalise away a constant shift if real and fake went through it separately.
    d = nn.Sequential(nn.BatchNorm2d(1, affine=False), nn.Sigmoid()).train()
    log = CallLog(d)
    real, fake = torch.full((4, 1, 3, 3), 3.0), torch.full((4, 1, 3, 3), -2.0)
    separate = losses.discriminator_loss(d, real, fake, joint_batch=False)
    assert separate.item() == pytest.approx(math.log(2), rel=1e-4)       # BN maps both to 0: D is blind
    joint = losses.discriminator_loss(d, real, fake, joint_batch=True)
    softplus1 = math.log1p(math.exp(-1))                                 # real -> +1, fake -> -1 after BN
    assert joint.item() == pytest.approx(softplus1, rel=1e-4)
    assert log.batches == [4, 4, 8]


def test_joint_batch_is_inferred_from_table_3_bn_switch():
    x = torch.randn(2, 6, 32, 32)
    for bn, calls in ((True, [4]), (False, [2, 2])):
        d = nets.PatchDiscriminator(6, 8, bn_before_sigmoid=bn)
        log = CallLog(d)
        losses.discriminator_loss(d, x, x + 1)
        assert log.batches == calls
        # the generator's GAN term sees the same batch composition
        log.batches.clear()
        fake = torch.randn(2, 3, 32, 32, requires_grad=True)
        hm = torch.rand(2, 3, 32, 32)
        out = losses.generator_loss(fake, torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32), hm, d, d, None,
                                    LossConfig(lambda_perceptual=0))
        assert log.batches == ([4, 4] if bn else [2, 2])
        out["total"].backward()
        assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_discriminator_losses_detach_fake():
    di, dg = nets.build_discriminators(TINY)
    fake = torch.randn(2, 3, 32, 32, requires_grad=True)
    out = losses.discriminator_losses(di, dg, torch.randn(2, 3, 32, 32), fake, torch.randn(2, 3, 32, 32),
                                      torch.rand(2, 68, 32, 32))
    out["total"].backward()
    assert fake.grad is None
    assert out["total"].item() == pytest.approx(out["d_image"].item() + out["d_geometry"].item())
    assert all(p.grad is not None for p in di.parameters())


def test_generator_loss_is_eq7():
    cfg = LossConfig(vgg_standin=True)
    per = losses.PerceptualLoss(cfg)
    di, dg = nets.build_discriminators(TINY)
    fake, tgt, src = (torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(3))
    hm = torch.rand(2, 68, 32, 32)
    out = losses.generator_loss(fake, tgt, src, hm, di, dg, per, cfg)
    assert set(out) == {"total", "gan", "gan_image", "gan_geometry", "perceptual", "pixel"}
    assert out["gan"].item() == pytest.approx(0.5 * (out["gan_image"] + out["gan_geometry"]).item())
    assert out["total"].item() == pytest.approx(
        (5 * out["gan"] + 10 * out["perceptual"] + 10 * out["pixel"]).item(), rel=1e-6)
    assert out["pixel"].item() == pytest.approx(losses.pixel_loss(fake, tgt).item())
    with pytest.raises(ValueError):
        losses.generator_loss(fake, tgt, src, hm, di, dg, None, cfg)


# ---------------------------------------------------------------- Eq. 6, VGG19 weights

@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    (tmp_path / "weights").mkdir()
    (tmp_path / "torch").mkdir()
    monkeypatch.setenv("LMEXPR_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LMEXPR_NO_DOWNLOAD", "1")
    return tmp_path


def test_missing_vgg_weights_stop_with_the_file_name(no_weights):
    with pytest.raises(weights.MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
        losses.PerceptualLoss(LossConfig())
    with pytest.raises(weights.MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
        losses.PerceptualLoss(LossConfig(vgg_weights=str(no_weights / "nowhere")))


def test_standin_only_when_asked_and_labelled(no_weights):
    state = torch.random.get_rng_state()
    per = losses.PerceptualLoss(LossConfig(vgg_standin=True))
    assert torch.equal(state, torch.random.get_rng_state())          # its own seeded RNG
    assert per.standin is True
    assert "random-init stand-in, not ImageNet VGG19" in per.description
    assert "stand-in" in repr(per)
    again = losses.PerceptualLoss(LossConfig(vgg_standin=True))
    assert torch.equal(per.features[0].weight, again.features[0].weight)
    assert len(per.features) == 3 and not any(p.requires_grad for p in per.parameters())
    per.train()
    assert not per.training and not per.features.training
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert per(x, x).item() == 0
    y = (torch.rand(2, 3, 16, 16) * 2 - 1).requires_grad_(True)
    loss = per(y, x)
    loss.backward()
    assert loss.item() > 0 and y.grad.abs().sum() > 0


def _fake_vgg19_state_dict(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"features.0.weight": torch.randn(64, 3, 3, 3, generator=g), "features.0.bias": torch.randn(64, generator=g),
            "features.2.weight": torch.randn(64, 64, 3, 3, generator=g), "features.2.bias": torch.randn(64, generator=g)}


@pytest.fixture
def unhashed_vgg(monkeypatch):
    # A test-made file cannot carry the published sha256 prefix; the hash check is weights.py's, tested there.
    monkeypatch.setitem(weights.SPECS, "vgg19", dataclasses.replace(weights.SPECS["vgg19"], sha256_prefix=None))


@pytest.mark.parametrize("legacy", [False, True])
def test_vgg_state_dict_loads_through_config_path(no_weights, unhashed_vgg, legacy):
    sd = _fake_vgg19_state_dict()
    path = no_weights / "vgg19-dcbb9e9d.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    for layer, n in (("conv1_2", 3), ("relu1_2", 4)):
        per = losses.PerceptualLoss(LossConfig(vgg_weights=str(path), vgg_layer=layer))
        assert per.standin is False and "ImageNet VGG19" in per.description and "stand-in" not in per.description
        assert len(per.features) == n
        assert torch.equal(per.features[0].weight, sd["features.0.weight"])
        assert torch.equal(per.features[2].bias, sd["features.2.bias"])
    # Eq. 6 by hand: map to [0, 1], ImageNet-normalise, conv1_1, ReLU, conv1_2, mean |.|
    a, b = torch.rand(1, 3, 8, 8) * 2 - 1, torch.rand(1, 3, 8, 8) * 2 - 1
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    phi = lambda x: nn.functional.conv2d(torch.relu(nn.functional.conv2d(  # noqa: E731
        ((x + 1) / 2 - mean) / std, sd["features.0.weight"], sd["features.0.bias"], padding=1)),
        sd["features.2.weight"], sd["features.2.bias"], padding=1)
    per = losses.PerceptualLoss(LossConfig(vgg_weights=str(path)))
    assert per(a, b).item() == pytest.approx((phi(a) - phi(b)).abs().mean().item(), rel=1e-5)
    # asking for the stand-in wins even when real weights exist (the run's label must be true)
    assert losses.PerceptualLoss(LossConfig(vgg_weights=str(path), vgg_standin=True)).standin is True


def test_wrong_state_dict_is_refused(no_weights, unhashed_vgg):
    path = no_weights / "vgg19-dcbb9e9d.pth"
    bad = _fake_vgg19_state_dict()
    bad["features.0.weight"] = torch.zeros(32, 3, 3, 3)
    torch.save(bad, path)
    with pytest.raises(weights.MissingWeightsError, match="not a torchvision VGG19"):
        losses.PerceptualLoss(LossConfig(vgg_weights=str(path)))
    torch.save({"conv.weight": torch.zeros(1)}, path)
    with pytest.raises(weights.MissingWeightsError, match="unexpected key"):
        losses.PerceptualLoss(LossConfig(vgg_weights=str(path)))
    with pytest.raises(ValueError):
        losses.PerceptualLoss(LossConfig(vgg_standin=True, vgg_layer="conv5_4"))


# ---------------------------------------------------------------- the whole thing learns

def test_tiny_model_overfits_a_fixed_batch():
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY, dropout=0.0)
    lcfg = LossConfig(vgg_standin=True)
    g = nets.build_generator(cfg)
    di, dg = nets.build_discriminators(cfg)
    per = losses.PerceptualLoss(lcfg)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(list(di.parameters()) + list(dg.parameters()), lr=2e-4, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(1)
    src = torch.rand(4, 3, 32, 32, generator=gen) * 2 - 1
    tgt = (nn.functional.avg_pool2d(torch.rand(4, 3, 32, 32, generator=gen), 5, 1, 2) * 4 - 2).clamp(-1, 1)
    hs, ht = torch.rand(4, 68, 32, 32, generator=gen), torch.rand(4, 68, 32, 32, generator=gen)
    label = torch.tensor([0, 3, 5, 7])
    pix = []
    for _ in range(100):
        fake = g(src, hs, ht, label)
        out = losses.generator_loss(fake, tgt, src, ht, di, dg, per, lcfg)
        opt_g.zero_grad()
        out["total"].backward()
        opt_g.step()
        d = losses.discriminator_losses(di, dg, tgt, fake, src, ht)
        opt_d.zero_grad()
        d["total"].backward()
        opt_d.step()
        assert all(torch.isfinite(v) for v in (*out.values(), *d.values()))
        pix.append(out["pixel"].item())
    print(f"\npixel loss: first {pix[0]:.3f}, last {pix[-1]:.3f}")
    assert sum(pix[-5:]) / 5 < 0.5 * pix[0]
