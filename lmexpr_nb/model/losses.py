"""The training losses of Li, Qi & Sun (IEEE Access 2021), Sec. III-B, Eq. 4-7.

    gan_loss             Eq. 4, BCE with real = 1, fake = 0 (or the non-paper least-squares form)
    pixel_loss           Eq. 5, L1
    PerceptualLoss       Eq. 6, L1 between VGG19 conv1_2 features (Sec. IV-B: l = conv_{1,2})
    generator_loss       Eq. 7, 5 L_GAN + 10 L_per + 10 L_pixel; the GAN term averages the
                         image and the geometry discriminator [PATN]
    discriminator_loss   0.5 (real + fake) per discriminator [PATN]

Usage (one training step, G first, then both Ds [PATN]):

    from lmexpr_nb import losses, nets
    G = nets.build_generator(cfg.model)
    D_img, D_geo = nets.build_discriminators(cfg.model)
    perceptual = losses.PerceptualLoss(cfg.loss).to(device)   # MissingWeightsError if no VGG19
    fake = G(src, src_hm, tgt_hm, label)
    g = losses.generator_loss(fake, tgt, src, tgt_hm, D_img, D_geo, perceptual, cfg.loss)
    opt_g.zero_grad(); g["total"].backward(); opt_g.step()     # g: total, gan, gan_image, ...
    d = losses.discriminator_losses(D_img, D_geo, tgt, fake, src, tgt_hm)   # detaches fake
    opt_d.zero_grad(); d["total"].backward(); opt_d.step()     # also clears D grads of the G step

Numerics: the discriminators end in a sigmoid (Table 3); the losses ask a PatchDiscriminator
for its logits (`return_logits=True`, the BN5 output, or the last conv without BN5) and
use BCE-with-logits, which equals BCE on the sigmoid outputs exactly but never takes
log(0) and keeps its gradient where the sigmoid saturates. Any other D (a test's, a
user's) is taken to output probabilities, clamped to [1e-7, 1 - 1e-7]. All loss arithmetic
is in float32, so the losses are safe under bf16 autocast (torch's binary_cross_entropy
refuses autocast; ours does not use it).

When the discriminators keep Table 3's BN before the sigmoid (ModelConfig.d_bn_before_sigmoid),
real and fake go through a discriminator as ONE concatenated batch, in the D step and in
the G step alike; with separate batches BN5 would normalise each to the same statistics
and hide the real/fake difference. `joint_batch=None` reads this from the discriminator.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from lmexpr_nb.common import weights
from lmexpr_nb.config import LossConfig
from lmexpr_nb.model.nets import PatchDiscriminator

EPS = 1e-7
STANDIN_SEED = 0
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG_LAYERS = {"conv1_2": 3, "relu1_2": 4}   # torchvision vgg19().features[:n]


# --------------------------------------------------------------------------------------
# Adversarial loss: Eq. 4

def gan_loss(pred: torch.Tensor, is_real: bool, logits: bool = False, objective: str = "bce") -> torch.Tensor:
    """Eq. 4 as a binary cross-entropy, mean over the patch map: target 1 for real, 0 for fake.

    pred: D's sigmoid outputs (Table 3), clamped to [EPS, 1 - EPS]; or, with logits=True,
    the pre-sigmoid values, through the exact log-sigmoid form (preferred: stable).
    objective "lsgan" [non-paper; Mao et al., ICCV 2017; config.LossConfig.gan_objective]: the
    mean of (pred - target)^2 on the same values (the pre-sigmoid ones with logits=True, as
    LSGAN's D has no sigmoid); its gradient does not vanish for fakes D already rejects."""
    pred = pred.float()
    if objective == "lsgan":
        return (pred - float(is_real)).pow(2).mean()
    if objective != "bce":
        raise ValueError(f"objective must be 'bce' or 'lsgan', got {objective!r}")
    if logits:
        return F.binary_cross_entropy_with_logits(pred, torch.full_like(pred, float(is_real)))
    p = pred.clamp(EPS, 1.0 - EPS)
    return -(torch.log(p) if is_real else torch.log1p(-p)).mean()


def _inner(d: nn.Module) -> nn.Module:
    """The module behind DistributedDataParallel (.module) and torch.compile (._orig_mod)."""
    while True:
        if isinstance(d, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            d = d.module
        elif isinstance(getattr(d, "_orig_mod", None), nn.Module):   # torch.compile's OptimizedModule
            d = d._orig_mod
        else:
            return d


def _speaks_logits(d: nn.Module) -> bool:
    return isinstance(_inner(d), PatchDiscriminator)


def _bn_before_sigmoid(d: nn.Module) -> bool:
    return bool(getattr(_inner(d), "bn_before_sigmoid", False))


def _d_scores(d: nn.Module, real: torch.Tensor | None, fake: torch.Tensor, joint_batch: bool):
    """D's outputs for real and fake (real may be None), through one batch when joint_batch.
    Returns (real_out, fake_out, logits?). Calls `d` itself (not d.module), so DDP and
    torch.compile wrappers see the call."""
    logits = _speaks_logits(d)
    run = (lambda x: d(x, return_logits=True)) if logits else d
    if real is None:
        return None, run(fake), logits
    if joint_batch:
        out = run(torch.cat([real, fake], dim=0))
        real_out, fake_out = out.split([real.shape[0], fake.shape[0]], dim=0)
        return real_out, fake_out, logits
    return run(real), run(fake), logits


def discriminator_inputs(image: torch.Tensor, source: torch.Tensor, target_heatmaps: torch.Tensor):
    """The pairs the two discriminators judge (Sec. III-A, [PATN] pairing):
    (image || source) for D_image (6 ch), (image || target heatmaps) for D_geometry (3 + 68 ch)."""
    return torch.cat([image, source], dim=1), torch.cat([image, target_heatmaps], dim=1)


def discriminator_loss(d: nn.Module, real_input: torch.Tensor, fake_input: torch.Tensor,
                       joint_batch: bool | None = None, objective: str = "bce") -> torch.Tensor:
    """One discriminator's loss, 0.5 * (BCE(D(real), 1) + BCE(D(fake), 0)) [PATN]; Eq. 4 from D's side.

    real_input / fake_input are the pairs D judges (see discriminator_inputs); the caller
    detaches the fake. joint_batch (default: on when D has Table 3's BN before the sigmoid):
    real and fake go through D as one concatenated batch."""
    if joint_batch is None:
        joint_batch = _bn_before_sigmoid(d)
    real_out, fake_out, logits = _d_scores(d, real_input, fake_input, joint_batch)
    return 0.5 * (gan_loss(real_out, True, logits, objective) + gan_loss(fake_out, False, logits, objective))


def discriminator_losses(d_image: nn.Module, d_geometry: nn.Module, target: torch.Tensor, fake: torch.Tensor,
                         source: torch.Tensor, target_heatmaps: torch.Tensor,
                         joint_batch: bool | None = None, objective: str = "bce") -> dict[str, torch.Tensor]:
    """Both discriminators' losses for one batch; detaches `fake`. {"d_image", "d_geometry", "total"}.
    objective: cfg.loss.gan_objective (gan_loss)."""
    real_i, real_g = discriminator_inputs(target, source, target_heatmaps)
    fake_i, fake_g = discriminator_inputs(fake.detach(), source, target_heatmaps)
    li = discriminator_loss(d_image, real_i, fake_i, joint_batch, objective)
    lg = discriminator_loss(d_geometry, real_g, fake_g, joint_batch, objective)
    return {"d_image": li, "d_geometry": lg, "total": li + lg}


# --------------------------------------------------------------------------------------
# Reconstruction loss: Eq. 5

def pixel_loss(fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 5: L1 between generated and real target, the mean over pixels (and channels, batch)."""
    return (fake.float() - target.float()).abs().mean()


# --------------------------------------------------------------------------------------
# Perception loss: Eq. 6

class PerceptualLoss(nn.Module):
    """Eq. 6: mean |phi_l(fake) - phi_l(target)| with phi_l = ImageNet VGG19 up to conv1_2 (Sec. IV-B).

    cfg.vgg_layer "conv1_2" [paper] = torchvision vgg19().features[:3]; "relu1_2" [PATN] =
    features[:4]. Inputs in [-1, 1] are mapped to [0, 1] and ImageNet-normalised. Frozen,
    always in eval mode; only the kept layers are stored.

    Weights: weights.locate("vgg19", cfg.vgg_weights) (the config's path, $LMEXPR_WEIGHTS or
    torch's hub cache); when they are missing, MissingWeightsError says which file and where
    to put it. cfg.vgg_standin=True explicitly asks for the offline stand-in instead: a
    seeded random-init VGG19 (torchvision's own init scheme), used whether or not real
    weights exist, so that a stand-in run gives the same numbers on every machine and the
    label that Config.uses_standins puts on its outputs is always true. `self.standin` and
    `self.description` say which one this is; log the description.
    """

    def __init__(self, cfg: LossConfig):
        super().__init__()

        if cfg.vgg_layer not in VGG_LAYERS:
            raise ValueError(f"vgg_layer must be one of {sorted(VGG_LAYERS)}, got {cfg.vgg_layer!r}")
        n = VGG_LAYERS[cfg.vgg_layer]
        with torch.device("meta"):                       # torchvision's VGG19 structure, no memory, no init
            reference = torchvision.models.vgg19(weights=None)
        features = reference.features[:n].to_empty(device="cpu")
        self.standin = bool(cfg.vgg_standin)
        if self.standin:
            _standin_init(features, STANDIN_SEED)
            self.description = (f"VGG19 {cfg.vgg_layer}: random-init stand-in, not ImageNet VGG19 "
                                f"(seed {STANDIN_SEED}); perceptual-loss numbers are not the paper's")
        else:
            path = weights.locate("vgg19", cfg.vgg_weights)
            _load_vgg_features(features, reference, path)
            self.description = f"ImageNet VGG19 {cfg.vgg_layer} ({path}, sha256 {weights.file_sha256(path)[:16]})"
        self.features = features.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        return super().train(False)                      # frozen feature extractor: always eval

    def _phi(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 1.0) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.features(x)

    def forward(self, fake: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = self._phi(target)
        return (self._phi(fake).float() - t.float()).abs().mean()

    def extra_repr(self) -> str:
        return self.description


def _standin_init(features: nn.Sequential, seed: int) -> None:
    """torchvision's VGG init (kaiming normal, fan_out, ReLU gain; zero bias) from a private seeded RNG."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in features:
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_out) ** 0.5)
                m.bias.zero_()


def _load_vgg_features(features: nn.Sequential, reference: nn.Module, path) -> None:
    """Load the kept layers from a torchvision VGG19 state dict file (weights_only, mmap when it can).

    The file's keys and shapes are checked against torchvision's VGG19 (so another net's
    weights are refused with a message); keys of layers beyond the kept ones may be absent."""
    sd = weights.load_state_file(path, "VGG19 weights", mmap=True)   # never unpickles; one-line refusal
    if not isinstance(sd, dict):
        raise weights.MissingWeightsError(f"{path} does not hold a state dict (found {type(sd).__name__}); "
                                          f"expected torchvision's vgg19-dcbb9e9d.pth")
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    needed = [f"features.{k}" for k in features.state_dict()]
    problems = [f"unexpected key {k}" for k in sd if k not in expected]
    problems += [f"{k} has shape {tuple(sd[k].shape)}, VGG19's is {expected[k]}"
                 for k in sd if k in expected and tuple(sd[k].shape) != expected[k]]
    problems += [f"missing key {k}" for k in needed if k not in sd]
    if problems:
        raise weights.MissingWeightsError(f"{path} is not a torchvision VGG19 state dict: "
                                          f"{'; '.join(problems[:5])}; expected vgg19-dcbb9e9d.pth")
    features.load_state_dict({k[len("features."):]: sd[k] for k in needed}, strict=True)


# --------------------------------------------------------------------------------------
# Overall generator loss: Eq. 7

def generator_loss(fake: torch.Tensor, target: torch.Tensor, source: torch.Tensor, target_heatmaps: torch.Tensor,
                   d_image: nn.Module, d_geometry: nn.Module, perceptual: PerceptualLoss | None,
                   cfg: LossConfig, joint_batch: bool | None = None) -> dict[str, torch.Tensor]:
    """Eq. 7: total = lambda_gan L_GAN + lambda_perceptual L_per + lambda_pixel L_pixel (5, 10, 10).

    L_GAN = 0.5 (BCE(D_image(fake || source), 1) + BCE(D_geometry(fake || target_hm), 1)) [PATN].
    With joint_batch (default: when the Ds have BN before the sigmoid) each D sees
    (real || fake) as one batch, as in the D step, and the fake half is scored.
    `perceptual` may be None only when cfg.lambda_perceptual is 0, and the discriminators only when
    cfg.lambda_gan is 0 (the GAN terms are then 0 and nothing is asked of any D).
    Returns {"total", "gan", "gan_image", "gan_geometry", "perceptual", "pixel"} (0-dim tensors;
    "total" carries the graph)."""
    if d_image is None or d_geometry is None:
        if cfg.lambda_gan:
            raise ValueError("cfg.lambda_gan is not 0: give both discriminators")
        gan = gan_i = gan_g = torch.zeros((), device=fake.device)
    else:
        fake_i, fake_g = discriminator_inputs(fake, source, target_heatmaps)
        real_i = real_g = None
        jb_i = _bn_before_sigmoid(d_image) if joint_batch is None else joint_batch
        jb_g = _bn_before_sigmoid(d_geometry) if joint_batch is None else joint_batch
        if jb_i or jb_g:
            real_i, real_g = discriminator_inputs(target.detach(), source, target_heatmaps)
        _, out_i, logits_i = _d_scores(d_image, real_i if jb_i else None, fake_i, jb_i)
        _, out_g, logits_g = _d_scores(d_geometry, real_g if jb_g else None, fake_g, jb_g)
        gan_i = gan_loss(out_i, True, logits_i, cfg.gan_objective)
        gan_g = gan_loss(out_g, True, logits_g, cfg.gan_objective)
        gan = 0.5 * (gan_i + gan_g)
    pix = pixel_loss(fake, target)
    if perceptual is not None:
        per = perceptual(fake, target)
    elif cfg.lambda_perceptual:
        raise ValueError("cfg.lambda_perceptual is not 0: give a PerceptualLoss")
    else:
        per = torch.zeros((), device=fake.device)
    total = cfg.lambda_gan * gan + cfg.lambda_perceptual * per + cfg.lambda_pixel * pix
    return {"total": total, "gan": gan, "gan_image": gan_i, "gan_geometry": gan_g, "perceptual": per, "pixel": pix}
