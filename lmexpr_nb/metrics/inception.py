"""The FID Inception-v3 network and 2048-d pool features, as pytorch-fid defines them.

The standard FID network is TensorFlow's 2015-12-05 Inception graph, ported to PyTorch by
pytorch-fid as `pt_inception-2015-12-05-6726825d.pth`. Its state dict is that of
torchvision's `Inception3(num_classes=1008, aux_logits=False)` (1008 TF classes in `fc`),
and its graph differs from torchvision's in four block kinds (the weights are the same
shapes; only the forward differs):
  - Mixed_5b/5c/5d (InceptionA), Mixed_6b..6e (InceptionC), Mixed_7b (InceptionE, first):
    the pool branch averages with count_include_pad=False (TF's average pool ignores the
    zero padding);
  - Mixed_7c (InceptionE, second): the pool branch is a 3x3 stride-1 MAX pool.
Features are the output of the final adaptive average pool, (N, 2048).

Preprocessing (pytorch-fid): images as float in [0, 1] (uint8 / 255), bilinear resize to
299x299 with align_corners=False and no antialiasing, then x -> 2x - 1. torchmetrics'
default (antialias=True) differs; so would resizing with PIL first.

Weights come only from `weights.locate("inception-fid", path)` (user path, $LMEXPR_WEIGHTS,
torch's hub cache; sha256 prefix 6726825d checked there). There is no silent fallback.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import inception as tvi

from lmexpr_nb.common.weights import SPECS, describe, load_state_file, locate
from lmexpr_nb.metrics.psnr_ssim import to_uint8_hwc

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_NUM_CLASSES = 1008


def _avg_pool_no_pad(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(tvi.InceptionA):
    """InceptionA with TF's average pool (padding not counted)."""

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_no_pad(x))
        return torch.cat([b1, b5, b3, bp], 1)


class FIDInceptionC(tvi.InceptionC):
    """InceptionC with TF's average pool (padding not counted)."""

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_avg_pool_no_pad(x))
        return torch.cat([b1, b7, bd, bp], 1)


class _FIDInceptionE(tvi.InceptionE):
    def _pool(self, x):
        raise NotImplementedError

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(self._pool(x))
        return torch.cat([b1, b3, bd, bp], 1)


class FIDInceptionE1(_FIDInceptionE):
    """Mixed_7b: TF's average pool (padding not counted)."""

    def _pool(self, x):
        return _avg_pool_no_pad(x)


class FIDInceptionE2(_FIDInceptionE):
    """Mixed_7c: max pool in the pool branch (as in the TF graph FID uses)."""

    def _pool(self, x):
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class FIDInceptionV3(tvi.Inception3):
    """torchvision's Inception3 with the FID blocks; `forward(x in [0,1]) -> (N, 2048)`.

    Its state dict has exactly the keys and shapes of pt_inception-2015-12-05-6726825d.pth
    (torchvision Inception3 without AuxLogits, fc 2048 -> 1008), so that file loads strict.
    """

    def __init__(self):
        super().__init__(num_classes=FID_NUM_CLASSES, aux_logits=False, transform_input=False,
                         init_weights=False)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7b = FIDInceptionE1(1280)
        self.Mixed_7c = FIDInceptionE2(2048)
        self.eval()

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        """[0, 1] NCHW -> 299x299 in [-1, 1] (pytorch-fid: bilinear, align_corners=False, no antialias)."""
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=False)
        return 2 * x - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = self.preprocess(x)
        x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
        x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                     "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)
        return torch.flatten(self.avgpool(x), 1)


def load_fid_inception(path=None, device="cpu") -> tuple[FIDInceptionV3, str]:
    """(network with the FID weights, provenance string). Missing file -> MissingWeightsError."""
    p = locate("inception-fid", path)
    state = load_state_file(p, "FID Inception weights")
    net = FIDInceptionV3()
    net.load_state_dict(state, strict=True)
    net.requires_grad_(False)
    checked = SPECS["inception-fid"].sha256_prefix
    return net.to(device).eval(), (f"{describe(p)} (pytorch-fid Inception"
                                   f"{f', release hash {checked} checked' if checked else ''})")


def _to_unit_float(batch) -> torch.Tensor:
    """uint8 (N,H,W,3) / list of images / [-1,1] floats -> float32 NCHW in [0, 1]."""
    if isinstance(batch, (list, tuple)):
        a = np.stack([to_uint8_hwc(im) for im in batch])
    else:
        a = to_uint8_hwc(batch)
        if a.ndim == 3:
            a = a[None]
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0


@torch.no_grad()
def inception_features(images, model: FIDInceptionV3, batch_size: int = 50, device="cpu") -> np.ndarray:
    """(N, 2048) float64 pool features of uint8 RGB images (or [-1,1] floats, quantised to
    uint8 first, as when images are saved and read back as pytorch-fid does)."""
    n = len(images)
    out = []
    model = model.to(device).eval()
    for i in range(0, n, batch_size):
        x = _to_unit_float(images[i:i + batch_size]).to(device)
        out.append(model(x).double().cpu().numpy())
    if not out:
        return np.zeros((0, 2048))
    return np.concatenate(out)
