"""The networks of Li, Qi & Sun (IEEE Access 2021), Sec. III-A, read top to bottom.

    source image ──E_ini──► F^P_0 ─┐                                  ┌─ label planes (Fig. 4)
                                    ├─ T migration unit blocks ─► F^P_T ┴─► decoder (Table 2) ─► image
    source||target heatmaps ─E_ini─► F^S_0 ┘   (Eq. 1-3, Table 1)

    D_image(image || source), D_geometry(image || target heatmaps): PatchGANs (Table 3)

The paper prints Eq. 1-3 and Tables 1-3; where it is silent the layers are PATN's (Zhu et
al., CVPR 2019), from which this generator descends (config.ModelConfig marks each such choice [PATN]).
Each equation, table and figure has one home below, and that home's docstring cites it:

    feature_init_net      E_ini (paper names it, layers [PATN])
    FixedDownsample       its stand-in for the Table 7 ablation "without E_ini"
    MigrationUnitBlock    Table 1 (layers), Eq. 1-3 (forward)
    label_planes          Fig. 4, the "expression label smooth" step
    decoder               Table 2
    Generator             Fig. 1, the whole generator
    PatchDiscriminator    Table 3
    init_weights          Sec. IV-B, N(0, 0.02)

Conventions: a conv followed by BatchNorm has no bias (BN's shift makes it redundant);
every other conv has one. Everything is driven by one `ModelConfig` (config.py), whose
switches select the ablations; nothing here is forked per ablation.

Sizes for the paper config (128x128, ngf 64, 9 blocks, 8 classes): the generator has
41.6 M parameters (PATN reports 41.36 M for its 18-keypoint version, the same design) and
costs about 100 GFLOP per image forward; each discriminator has 2.8 M parameters.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from lmexpr_nb.config import ModelConfig

# --------------------------------------------------------------------------------------
# Feature initialisation: E_ini, or a fixed downsampling for the Table 7 ablation

def feature_init_net(in_ch: int, ngf: int = 64, n_down: int = 2) -> nn.Sequential:
    """E_ini, the feature initialize network (paper Sec. III-A names it; layers [PATN]).

    ReflectionPad3, Conv7 in->ngf, BN, ReLU; then n_down x (Conv3 s2 p1 -> 2x channels, BN,
    ReLU). 128x128x{3 | 136} -> 32x32x256 with the defaults. One per stream: the image
    stream (3 channels) and the landmark stream (136 = source||target heatmaps, or 68).
    """
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ngf, 7, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True)]
    ch = ngf
    for _ in range(n_down):
        layers += [nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * ch), nn.ReLU(True)]
        ch *= 2
    return nn.Sequential(*layers)


class FixedDownsample(nn.Module):
    """What replaces E_ini in the Table 7 ablation "without feature initialize network".

    The paper only says the module is removed; the migration blocks still need a
    (S/f) x (S/f) x d input, so something must bring the input there, and it must not
    learn (else it is an E_ini again). Ours: area (average) pooling by f, then a fixed
    1x1 channel map in_ch -> out_ch that is a seeded random *semi-orthogonal* matrix:
    - with out_ch >= in_ch (3 -> 256, 136 -> 256) its columns are orthonormal, so no
      information is lost (unlike truncation) and no channel is a copy or a constant
      (unlike repetition or zero padding, which would leave many conv_s/conv_p inputs
      dead or redundant); it is scaled by sqrt(out/in) so that each output channel has
      the mean energy of an input channel, a scale similar to E_ini's BN'd output;
    - with out_ch < in_ch (tiny configs) its rows are orthonormal: a random projection.
    The matrix is a buffer (saved with the model, moved with .to()), never a parameter:
    this module has no trainable parameters.
    """

    def __init__(self, in_ch: int, out_ch: int, factor: int, seed: int = 0):
        super().__init__()
        self.in_ch, self.out_ch, self.factor = in_ch, out_ch, factor
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(max(in_ch, out_ch), min(in_ch, out_ch), generator=g, dtype=torch.float64)
        q, r = torch.linalg.qr(a)                       # q: orthonormal columns
        q = q * torch.sign(torch.diagonal(r))           # unique sign, so the same on any LAPACK
        w = q if out_ch >= in_ch else q.T               # (out_ch, in_ch)
        w = w * math.sqrt(max(out_ch / in_ch, 1.0))
        self.register_buffer("projection", w.float()[:, :, None, None].contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor > 1:
            x = F.avg_pool2d(x, self.factor)
        return F.conv2d(x, self.projection.to(x.dtype))

    def extra_repr(self) -> str:
        return f"{self.in_ch} -> {self.out_ch}, avg-pool /{self.factor}, fixed semi-orthogonal 1x1 (not trained)"


# --------------------------------------------------------------------------------------
# Migration unit block: Table 1 and Eq. 1-3

def _two_convs(c_in: int, c_out: int, dropout: float, norm_at_end: bool) -> nn.Sequential:
    """One path of Table 1: Pad1, Conv3 c_in->c_in, BN, ReLU, Dropout, Pad1, Conv3 c_in->c_out[, BN].

    Dropout is always present (p = 0 makes it the identity) so that layer indices match
    Table 1's rows whatever the config.
    """
    layers = [nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_in, 3, bias=False), nn.BatchNorm2d(c_in), nn.ReLU(True),
              nn.Dropout(dropout),
              nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3, bias=not norm_at_end)]
    if norm_at_end:
        layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers)


class MigrationUnitBlock(nn.Module):
    """One geometric information migration unit block (Fig. 2; layers Table 1; update Eq. 1-3).

    conv_p (Table 1 rows 1_1-1_8), image path:    Pad1, Conv3 d->d, BN, ReLU, Dropout, Pad1, Conv3 d->d, BN.
    conv_s (Table 1 rows 2_1-2_7), landmark path: Pad1, Conv3 c->c, BN, ReLU, Dropout, Pad1, Conv3 c->d,
        with no norm at the end (Table 1 ends the path at 2_7 Conv2) so the mask logits are free.
    c = d in the first block, 2d afterwards (F^S carries conv_s's output || F^P, Eq. 3).
    """

    def __init__(self, dim: int, landmark_ch: int, dropout: float = 0.5):
        super().__init__()
        self.conv_p = _two_convs(dim, dim, dropout, norm_at_end=True)
        self.conv_s = _two_convs(landmark_ch, dim, dropout, norm_at_end=False)

    def forward(self, f_p: torch.Tensor, f_s: torch.Tensor):
        """(F^P_{t-1}, F^S_{t-1}) -> (F^P_t, F^S_t, M_t):

        M_t   = sigmoid(conv_s(F^S_{t-1}))                 (Eq. 1)
        F^P_t = M_t * conv_p(F^P_{t-1}) + F^P_{t-1}         (Eq. 2)
        F^S_t = conv_s(F^S_{t-1}) || F^P_t                  (Eq. 3; conv_s before the sigmoid [PATN])
        """
        s = self.conv_s(f_s)
        mask = torch.sigmoid(s)
        f_p_new = mask * self.conv_p(f_p) + f_p
        f_s_new = torch.cat([s, f_p_new], dim=1)
        return f_p_new, f_s_new, mask


# --------------------------------------------------------------------------------------
# Expression label planes: Fig. 4

def label_planes(label: torch.Tensor, num_classes: int, size: int, label_range: str = "pm1") -> torch.Tensor:
    """The "expression label smooth" step (Sec. III-A, Fig. 4): label -> K constant size x size planes.

    `label` is a LongTensor (B,) of class indices (one-hot encoded here) or a float (B, K)
    vector (a soft label, e.g. a blend of two expressions for intensity sliders).
    label_range "pm1" [paper]: v -> 2v - 1, so a one-hot 0 becomes -1 and 1 stays 1, the
    range of the image pixels; "01": planes keep v in [0, 1]. Returns (B, K, size, size) float.
    """
    if label.dtype.is_floating_point:
        if label.dim() != 2 or label.shape[1] != num_classes:
            raise ValueError(f"a soft label must be (B, {num_classes}), got {tuple(label.shape)}")
        v = label.float()
    else:
        if label.dim() != 1:
            raise ValueError(f"class labels must be (B,), got {tuple(label.shape)}")
        v = F.one_hot(label.long(), num_classes).float()
    if label_range == "pm1":
        v = 2.0 * v - 1.0
    elif label_range != "01":
        raise ValueError(f"label_range must be 'pm1' or '01', got {label_range!r}")
    return v[:, :, None, None].expand(-1, -1, size, size).contiguous()


# --------------------------------------------------------------------------------------
# Decoder: Table 2

def decoder(in_ch: int, ngf: int = 64, n_up: int = 2, out_ch: int = 3) -> nn.Sequential:
    """The facial decoder, Table 2 (= PATN's): rows 1-9 are this Sequential's layers 0-8.

    n_up x (ConvT3 s2 p1 op1 -> half the channels, BN, ReLU): 32x32x(256+K) -> 64x64x128
    -> 128x128x64; then ReflectionPad3, Conv7 ngf->3 (with bias), Tanh -> 128x128x3 in [-1, 1].
    in_ch = ngf * 2**n_up + K with label planes, ngf * 2**n_up without. out_ch 4: the non-paper
    "blend" output (Generator), a 4th Tanh channel that becomes the attention.
    """
    layers = []
    ch = in_ch
    for i in range(n_up):
        out = ngf * 2 ** (n_up - i - 1)
        layers += [nn.ConvTranspose2d(ch, out, 3, stride=2, padding=1, output_padding=1, bias=False),
                   nn.BatchNorm2d(out), nn.ReLU(True)]
        ch = out
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_ch, 7), nn.Tanh()]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------
# Generator: Fig. 1

class Generator(nn.Module):
    """The generator (Fig. 1): E_ini per stream, T migration unit blocks, label planes, decoder.

    forward(source_image (B,3,S,S) in [-1,1], source_heatmaps (B,68,S,S), target_heatmaps
    (B,68,S,S), target_label (B,) long or (B,K) float) -> image (B,3,S,S) in [-1,1], and the
    list of the T masks M_t (B,d,S/f,S/f), f = 2**n_downsampling (4 in the paper), when
    return_masks. Only the image stream is decoded; the last landmark features are dropped [PATN]. Switches (ModelConfig):
    landmark_stream_sees_source (136 vs 68 heatmap channels), use_feature_init (E_ini vs
    FixedDownsample), use_label_planes (planes concatenated or not; without them the label
    is ignored and may be None), label_range, output.

    output "blend" [non-paper; GANimation, Pumarola et al. ECCV 2018]: the decoder's last conv has
    a 4th channel; with y its Tanh outputs, A = (y_4 + 1) / 2 (= sigmoid of twice the logit) and
    image = A * source + (1 - A) * y_1..3. Where the face does not change, copying the source's
    pixels is then one number per pixel, not a 7x7 encode-decode the generator must learn to
    invert; where it changes (mouth, brows), A falls and the decoded colour shows.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        f = 2 ** cfg.n_downsampling
        if cfg.image_size % f:
            raise ValueError(f"image_size {cfg.image_size} is not divisible by 2**n_downsampling = {f}")
        self.feature_size = cfg.image_size // f
        d = cfg.ngf * f
        lm_in = cfg.num_landmarks * (2 if cfg.landmark_stream_sees_source else 1)
        if cfg.use_feature_init:
            self.init_image = feature_init_net(3, cfg.ngf, cfg.n_downsampling)
            self.init_landmark = feature_init_net(lm_in, cfg.ngf, cfg.n_downsampling)
        else:
            self.init_image = FixedDownsample(3, d, f, seed=0)
            self.init_landmark = FixedDownsample(lm_in, d, f, seed=1)
        self.blocks = nn.ModuleList(MigrationUnitBlock(d, d if t == 0 else 2 * d, cfg.dropout)
                                    for t in range(cfg.n_blocks))
        self.decoder = decoder(d + (cfg.num_classes if cfg.use_label_planes else 0), cfg.ngf, cfg.n_downsampling,
                               out_ch=4 if cfg.output == "blend" else 3)

    def forward(self, source_image, source_heatmaps, target_heatmaps, target_label=None, return_masks=False):
        cfg = self.cfg
        if cfg.landmark_stream_sees_source:
            landmarks = torch.cat([source_heatmaps, target_heatmaps], dim=1)
        else:
            landmarks = target_heatmaps
        f_p = self.init_image(source_image)
        f_s = self.init_landmark(landmarks)
        masks = []
        for block in self.blocks:
            f_p, f_s, m = block(f_p, f_s)
            masks.append(m)
        if cfg.use_label_planes:
            if target_label is None:
                raise ValueError("this generator uses label planes: give target_label")
            planes = label_planes(target_label.to(f_p.device), cfg.num_classes, f_p.shape[-1], cfg.label_range)
            f_p = torch.cat([f_p, planes.to(f_p.dtype)], dim=1)
        image = self.decoder(f_p)
        if cfg.output == "blend":
            attention = (image[:, 3:] + 1.0) * 0.5
            image = attention * source_image.to(image.dtype) + (1.0 - attention) * image[:, :3]
        return (image, masks) if return_masks else image


# --------------------------------------------------------------------------------------
# Discriminator: Table 3

class PatchDiscriminator(nn.Module):
    """The discriminator, Table 3 (pix2pix's 3-layer NLayer PatchGAN): rows 1-14 = `layers` 0-13.

    Conv4 s2 p1 ndf, LReLU 0.2; Conv4 s2 p1 2ndf, BN, LReLU; Conv4 s2 p1 4ndf, BN, LReLU;
    Conv4 s1 p1 8ndf, BN, LReLU; Conv4 s1 p1 1, [BN5], Sigmoid.
    128x128 -> 64x64x64, 32x32x128, 16x16x256, 15x15x512, 14x14x1 (the printed sizes).
    bn_before_sigmoid keeps Table 3's BN5 (row 13); then real and fake must go through D
    as one batch (losses.discriminator_loss does), or BN5 normalises each batch on its own
    and hides the difference. forward returns probabilities (Table 3); return_logits=True
    skips the sigmoid so that the losses can use the exact, stable BCE-with-logits.
    """

    def __init__(self, in_ch: int, ndf: int = 64, bn_before_sigmoid: bool = True):
        super().__init__()
        self.bn_before_sigmoid = bn_before_sigmoid
        c1, c2, c3, c4 = ndf, 2 * ndf, 4 * ndf, 8 * ndf
        layers = [nn.Conv2d(in_ch, c1, 4, 2, 1), nn.LeakyReLU(0.2, True),
                  nn.Conv2d(c1, c2, 4, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.LeakyReLU(0.2, True),
                  nn.Conv2d(c2, c3, 4, 2, 1, bias=False), nn.BatchNorm2d(c3), nn.LeakyReLU(0.2, True),
                  nn.Conv2d(c3, c4, 4, 1, 1, bias=False), nn.BatchNorm2d(c4), nn.LeakyReLU(0.2, True),
                  nn.Conv2d(c4, 1, 4, 1, 1, bias=not bn_before_sigmoid)]
        if bn_before_sigmoid:
            layers.append(nn.BatchNorm2d(1))
        layers.append(nn.Sigmoid())
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, return_logits: bool = False) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = layer(x)
        return x if return_logits else self.layers[-1](x)


# --------------------------------------------------------------------------------------
# Building and initialising

def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Sec. IV-B: "all variables initialized with normal distribution 0.02" [paper + PATN]:
    conv and transposed-conv weights N(0, gain), BatchNorm weights N(1, gain), all biases 0.
    Buffers (e.g. FixedDownsample's projection) are left alone."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)
    return net


def build_generator(cfg: ModelConfig) -> Generator:
    return init_weights(Generator(cfg), cfg.init_gain)


def build_discriminators(cfg: ModelConfig) -> tuple[PatchDiscriminator, PatchDiscriminator]:
    """(d_image, d_geometry): same Table 3 structure, different pairs (Sec. III-A, [PATN] pairing).
    d_image sees (image || source image) = 6 channels; d_geometry sees (image || target
    heatmaps) = 3 + num_landmarks channels. See losses.discriminator_inputs."""
    d_image = PatchDiscriminator(6, cfg.ndf, cfg.d_bn_before_sigmoid)
    d_geometry = PatchDiscriminator(3 + cfg.num_landmarks, cfg.ndf, cfg.d_bn_before_sigmoid)
    return init_weights(d_image, cfg.init_gain), init_weights(d_geometry, cfg.init_gain)
