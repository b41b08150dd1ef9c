"""One call from a photo to an edited photo: detect, crop, generate, paste back.

    from lmexpr_nb.explore.infer import load_model
    editor = load_model("outputs/paper/train/checkpoints/last.pt")
    res = editor.edit(photo, "happy", intensity=0.8)     # or edit_face(photo, "happy", generator=G, cfg=cfg, ...)
    res.crop    # (S,S,3) uint8, the generated face at the model's size (cfg.image_size)
    res.frame   # photo-sized uint8, the result pasted back with a feathered mask

`target` is one of
- an expression (name or class index) with `intensity` in [0, 1]: the source's landmarks moved
  by intensity x that expression's mean displacement (expressions.ExpressionModel, learned from a
  training cache; `load_model` finds `expressions.npz` beside the checkpoint), label planes
  blended (1-i) onehot(source_label) + i onehot(expression);
- explicit landmarks, a (68,2) array, in the photo's pixels (`landmarks_in="crop"` for crop
  pixels); label = `label` (default: source_label);
- a donor photo (H,W,3) uint8: its face's landmarks, aligned to the source's face by a similarity
  on stable points (paper Fig. 8); label = `label` (default: source_label).
`regions={"mouth": .5, "smile": ...}` edits the target landmarks further (expressions.edit_regions).

The crop is the preprocessing crop (landmarks/detect.py's crop_box with the data config's margin,
crop_and_resize to the model's size), so the generator sees faces framed as in
training. Paste-back samples the generated crop at every photo pixel of the crop's footprint
(bilinear, through the crop transform) and blends it with a mask that is 1 inside and falls
smoothly to 0 over the outer `feather` fraction of the crop (mask="box"), or follows the
landmarks' hull (mask="face"); pixels outside the footprint are returned unchanged.
For video, pass `source_landmarks` (photo pixels, e.g. from a tracker) to skip detection.

Arguments are checked before any work, each with a one-line ValueError naming it:
- `intensity` a real number (not text, not NaN/inf) in [0, 1]. Above 1 or below 0 only with
  `extrapolate=True`, in [-1, 2]: the landmarks then move by intensity x the mean displacement
  (2 = twice the typical expression, -1 = its opposite) while the label planes stay at the
  clipped blend, since the label space has nothing beyond "fully happy";
- landmarks (68, 2) finite; source landmarks inside the photo (a margin of a quarter of its
  size allowed), target landmarks inside the model's crop extended by half a crop per side:
  farther out the generator has never seen a face and would paint nothing useful;
- `regions` only mouth/smile/brow/eyes, each a finite number in [-1, 1]; `feather` in (0, 0.5].
"""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage
from scipy.spatial import ConvexHull
from skimage.draw import polygon

from lmexpr_nb.config import Config, DataConfig
from lmexpr_nb.data.cache import load_cache
from lmexpr_nb.explore import expressions as ex
from lmexpr_nb.landmarks.align import align_shape, face_frame
from lmexpr_nb.landmarks.detect import BadImage, LandmarkDetector, crop_and_resize, crop_box, to_rgb_uint8
from lmexpr_nb.model.generate import synthesize
from lmexpr_nb.model.trained import load_trained


class NoFaceError(ValueError):
    """No face was found in an image."""


@dataclass
class Face:
    """A detected face: the model-sized crop, landmarks in crop and photo pixels, the crop box in
    the photo, and the 3x3 matrix taking photo pixel coordinates (x, y, 1) to crop pixels."""
    crop: np.ndarray
    landmarks: np.ndarray
    frame_landmarks: np.ndarray
    box: tuple
    to_crop: np.ndarray
    frame_shape: tuple

    def crop_to_frame(self, pts) -> np.ndarray:
        return _apply(np.linalg.inv(self.to_crop), pts)

    def frame_to_crop(self, pts) -> np.ndarray:
        return _apply(self.to_crop, pts)


@dataclass
class EditResult:
    crop: np.ndarray                  # (S,S,3) generated face
    frame: np.ndarray                 # the photo with the face pasted back
    source_crop: np.ndarray           # (S,S,3) what the generator saw
    source_landmarks: np.ndarray      # (68,2) crop pixels
    target_landmarks: np.ndarray      # (68,2) crop pixels
    label: np.ndarray                 # (K,) soft label given to the label planes
    face: Face
    mask: np.ndarray | None = None    # (h,w) float blend weights over `window` (y0, y1, x0, x1)
    window: tuple | None = None


# --------------------------------------------------------------------------------------
# Images and faces

def read_photo(image) -> np.ndarray:
    """uint8 (H,W,3) RGB from an array (gray, RGB, RGBA, 16-bit), a PIL image, a path or encoded
    bytes (an upload); EXIF orientation applied. landmarks.BadImage (a ValueError) otherwise."""
    try:
        if isinstance(image, (bytes, bytearray, memoryview)):
            image = Image.open(io.BytesIO(bytes(image)))
        elif isinstance(image, (str, Path)):
            image = Image.open(image)
    except (OSError, ValueError) as e:
        raise BadImage(f"unreadable image ({type(e).__name__}: {str(e).splitlines()[0][:80]})") from None
    if isinstance(image, Image.Image):
        image = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    return to_rgb_uint8(image)


@functools.lru_cache(maxsize=2)
def photo_detector(upsample: int = 0):
    return LandmarkDetector(upsample=upsample)


def prepare_face(image, image_size: int, margin: float | None = None, detector=None,
                 source_landmarks=None) -> Face:
    """Detect the face (dlib HOG + 68-point predictor) unless `source_landmarks` (photo pixels) are
    given, and crop it as preprocessing does. Raises NoFaceError with a one-line message."""
    image = read_photo(image)
    margin = DataConfig().crop_margin if margin is None else margin
    if source_landmarks is None:
        found = (detector or photo_detector()).locate(image)
        if found is None:
            h, w = image.shape[:2]
            raise NoFaceError(f"no face found in the {w}x{h} image (dlib HOG detector): "
                              f"give a frontal, well-lit face at least 80 px wide")
        pts = np.asarray(found[1], dtype=np.float64)
    else:
        pts = np.asarray(source_landmarks, dtype=np.float64)
    box = crop_box(pts, margin)
    crop, transform = crop_and_resize(image, box, image_size)
    M = _to_crop_matrix(transform)
    return Face(np.array(crop, dtype=np.uint8), _apply(M, pts), pts, tuple(np.asarray(box).tolist()), M,
                image.shape[:2])


def _to_crop_matrix(transform) -> np.ndarray:
    """3x3 matrix photo -> crop pixels of a landmarks/detect.py CropTransform: (p - origin + 0.5) * scale - 0.5."""
    s = float(transform.scale)
    return np.array([[s, 0.0, (0.5 - transform.x0) * s - 0.5],
                     [0.0, s, (0.5 - transform.y0) * s - 0.5],
                     [0.0, 0.0, 1.0]])


def _apply(M, pts) -> np.ndarray:
    p = np.asarray(pts, dtype=np.float64)
    return p @ M[:2, :2].T + M[:2, 2]


# --------------------------------------------------------------------------------------
# Targets

def resolve_target(face: Face, target, *, intensity: float = 1.0, label=None, source_label=0,
                   expressions: ex.ExpressionModel | None = None, landmarks_in: str = "frame",
                   detector=None, num_classes: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """(target landmarks in crop pixels, soft label (K,)) for any kind of target (module doc)."""
    src = face.landmarks
    arr = None if isinstance(target, (str, int, np.integer)) else np.asarray(target)
    if arr is None:
        if expressions is None:
            raise ValueError("an expression target needs the mean displacements: pass expressions= "
                             "(expressions.learn_displacements(cache) or ExpressionModel.load(path))")
        k = ex.as_class(target)
        return (ex.target_landmarks(src, k, intensity, expressions, source_label),
                ex.blend_label(source_label, k, intensity, num_classes))
    lab = ex.blend_label(source_label, source_label if label is None else label, 1.0, num_classes)
    if arr.shape == (68, 2):
        if landmarks_in not in ("frame", "crop"):
            raise ValueError(f"landmarks_in must be 'frame' or 'crop', got {landmarks_in!r}")
        return (face.frame_to_crop(arr) if landmarks_in == "frame" else arr.astype(np.float64)), lab
    if arr.ndim in (2, 3) and arr.dtype == np.uint8:
        donor = read_photo(arr)
        found = (detector or photo_detector()).locate(donor)
        if found is None:
            h, w = donor.shape[:2]
            raise NoFaceError(f"no face found in the {w}x{h} donor image (dlib HOG detector)")
        return align_shape(np.asarray(found[1], dtype=np.float64), src), lab
    raise ValueError(f"target must be an expression, (68,2) landmarks or a uint8 donor image; got {arr.dtype} "
                     f"{arr.shape}")


# --------------------------------------------------------------------------------------
# Paste back

def feather_mask(size: int, feather: float = 0.12) -> np.ndarray:
    """(size,size) weights: 1 inside, smoothstep to 0 over the outer `feather` fraction of the crop."""
    c = np.arange(size, dtype=np.float64) + 0.5
    edge = np.minimum(c, size - c)                      # distance to the nearest border, per axis
    d = np.minimum(edge[:, None], edge[None, :]) / max(feather * size, 1e-6)
    return _smoothstep(d)


def _smoothstep(x) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def face_mask(size: int, landmarks_list, feather: float = 0.12, grow: float = 0.08) -> np.ndarray:
    """(size,size) weights from the convex hull of the landmarks (extended up to cover the forehead),
    grown by `grow` x size and blurred over `feather` x size, times the box mask."""
    pts = np.concatenate([np.asarray(p, dtype=np.float64) for p in landmarks_list])
    brows = np.concatenate([np.asarray(p, dtype=np.float64)[17:27] for p in landmarks_list])
    _, down, iod = face_frame(landmarks_list[0])
    pts = np.concatenate([pts, brows - 0.6 * iod * down])
    hull = pts[ConvexHull(pts).vertices]
    m = np.zeros((size, size), np.float64)
    rr, cc = polygon(hull[:, 1], hull[:, 0], (size, size))
    m[rr, cc] = 1.0
    if grow > 0:
        m = ndimage.binary_dilation(m > 0, iterations=max(1, int(round(grow * size)))).astype(np.float64)
    m = ndimage.gaussian_filter(m, sigma=max(feather * size / 3, 0.5))
    return np.clip(m, 0, 1) * feather_mask(size, feather / 2)


def paste_back(frame: np.ndarray, crop: np.ndarray, to_crop: np.ndarray, mask: np.ndarray):
    """Blend `crop` (S,S,3) into `frame` through the photo->crop matrix with `mask` (S,S) weights.
    Returns (new frame, per-pixel weights over the window, window (y0, y1, x0, x1))."""
    h, w = frame.shape[:2]
    s = crop.shape[0]
    inv = np.linalg.inv(to_crop)
    corners = _apply(inv, np.array([[-0.5, -0.5], [s - 0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5]]))
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [w, h])
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out, np.zeros((0, 0)), (0, 0, 0, 0)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    uv = _apply(to_crop, np.stack([xs, ys], axis=-1))          # crop (x, y) of every window pixel
    coords = [uv[..., 1], uv[..., 0]]
    # weights: the mask sampled there, 0 outside the crop square
    wgt = ndimage.map_coordinates(mask, coords, order=1, mode="constant", cval=0.0)
    inside = (uv[..., 0] >= -0.5) & (uv[..., 0] <= s - 0.5) & (uv[..., 1] >= -0.5) & (uv[..., 1] <= s - 0.5)
    wgt = np.where(inside, np.clip(wgt, 0, 1), 0.0)
    gen = np.stack([ndimage.map_coordinates(crop[..., c].astype(np.float64), coords, order=1, mode="nearest")
                    for c in range(3)], axis=-1)
    region = out[y0:y1, x0:x1].astype(np.float64)
    blended = region + wgt[..., None] * (gen - region)
    out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out, wgt, (int(y0), int(y1), int(x0), int(x1))


# --------------------------------------------------------------------------------------
# The call

def _number(name: str, value, lo: float, hi: float, hint: str = "") -> float:
    """A finite real number in [lo, hi], else a one-line ValueError naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r} ({type(value).__name__})")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {v}")
    if not lo <= v <= hi:
        raise ValueError(f"{name} {v:g} is outside [{lo:g}, {hi:g}]{hint}")
    return v


def _intensity(value, extrapolate: bool) -> float:
    if extrapolate:
        return _number("intensity", value, -1.0, 2.0, " (the range with extrapolate=True)")
    return _number("intensity", value, 0.0, 1.0, ": pass extrapolate=True to exaggerate (up to 2) or reverse "
                                                 "(down to -1) the expression")


def _points(name: str, pts, box: tuple[float, float, float, float], where: str) -> np.ndarray:
    """(68, 2) finite points inside box (x0, y0, x1, y1), else a one-line ValueError."""
    try:
        a = np.asarray(pts, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (68,2) array of numbers, got {type(pts).__name__}") from None
    if a.shape != (68, 2):
        raise ValueError(f"{name} must be (68,2) landmarks, got shape {a.shape}")
    bad = ~np.isfinite(a).all(1)
    if bad.any():
        raise ValueError(f"{name} must be finite numbers: {int(bad.sum())} of 68 points are NaN or infinite")
    x0, y0, x1, y1 = box
    out = (a[:, 0] < x0) | (a[:, 0] > x1) | (a[:, 1] < y0) | (a[:, 1] > y1)
    if out.any():
        raise ValueError(f"{name}: {int(out.sum())} of 68 points lie outside {where} "
                         f"(x {x0:g}..{x1:g}, y {y0:g}..{y1:g}; e.g. point {int(np.argmax(out))} at "
                         f"{a[np.argmax(out)].round(1).tolist()})")
    return a


def _regions(regions) -> dict:
    if not regions:
        return {}
    if not isinstance(regions, dict):
        raise ValueError(f"regions must be a dict like {{'mouth': 0.5}}, got {type(regions).__name__}")
    known = tuple(ex.REGION_POINTS)
    for k in regions:
        if k not in known:
            raise ValueError(f"unknown region {k!r}: use {', '.join(known)}")
    return {k: _number(f"regions[{k!r}]", v, -1.0, 1.0) for k, v in regions.items()}


def _target_in_crop(tlm, size: int) -> np.ndarray:
    return _points("target landmarks", tlm, (-0.5 * size, -0.5 * size, 1.5 * size, 1.5 * size),
                   f"the face's {size}x{size} crop extended by half a crop (they come out outside the face)")


def edit_face(image, target, *, generator, cfg, intensity: float = 1.0, label=None, source_label=0,
              expressions: ex.ExpressionModel | None = None, regions: dict | None = None,
              landmarks_in: str = "frame", source_landmarks=None, detector=None, mask: str = "box",
              feather: float = 0.12, device=None, extrapolate: bool = False) -> EditResult:
    """Edit the face in `image` (uint8, any size) toward `target` (see the module doc).

    cfg: the training Config (its data.crop_margin and model are used) or a ModelConfig (the
    default crop margin is used). generator: a Generator (or any module with its forward).
    Raises NoFaceError (a ValueError) with a one-line message when no face is found, and a
    one-line ValueError for any argument outside what the module doc allows.
    """
    intensity = _intensity(intensity, extrapolate)
    regions = _regions(regions)
    feather = _number("feather", feather, 1e-3, 0.5)
    if mask not in ("box", "face"):
        raise ValueError(f"mask must be 'box' or 'face', got {mask!r}")
    model_cfg = cfg.model if isinstance(cfg, Config) else cfg
    margin = cfg.data.crop_margin if isinstance(cfg, Config) else None
    frame = read_photo(image)
    if source_landmarks is not None:
        h, w = frame.shape[:2]
        source_landmarks = _points("source_landmarks", source_landmarks, (-0.25 * w, -0.25 * h, 1.25 * w, 1.25 * h),
                                   f"the {w}x{h} photo")
    face = prepare_face(frame, model_cfg.image_size, margin, detector, source_landmarks)
    tlm, lab = resolve_target(face, target, intensity=intensity, label=label, source_label=source_label,
                              expressions=expressions, landmarks_in=landmarks_in, detector=detector,
                              num_classes=model_cfg.num_classes)
    if regions:
        tlm = ex.edit_regions(tlm, **regions)
    tlm = _target_in_crop(tlm, model_cfg.image_size)
    if device is None:
        p = next(iter(generator.parameters()), None) if hasattr(generator, "parameters") else None
        device = p.device if p is not None else "cpu"
    out = synthesize(generator, face.crop[None], face.landmarks[None], tlm[None], lab[None], model_cfg,
                     batch_size=1, device=device)[0]
    s = model_cfg.image_size
    if mask == "box":
        m = feather_mask(s, feather)
    else:
        m = face_mask(s, [face.landmarks, tlm], feather)
    pasted, wgt, window = paste_back(frame, out, face.to_crop, m)
    return EditResult(out, pasted, face.crop, face.landmarks, tlm, lab, face, wgt, window)


@dataclass
class FaceEditor:
    """A loaded model ready for `edit(image, target, **kw)` (same keywords as edit_face)."""
    generator: object
    cfg: object
    expressions: ex.ExpressionModel | None = None
    model: object = None              # model/trained.py's TrainedModel (weights, provenance), from load_model

    def edit(self, image, target, **kw) -> EditResult:
        kw.setdefault("expressions", self.expressions)
        return edit_face(image, target, generator=self.generator, cfg=self.cfg, **kw)


EXPRESSIONS_FILE = "expressions.npz"


def load_model(checkpoint, device="auto", expressions=None) -> FaceEditor:
    """A FaceEditor from a training checkpoint (a last.pt, or a run's train dir). The expression
    displacements come from `expressions` (an ExpressionModel, an .npz path, or a cache folder /
    loaded cache to learn them from), else from expressions.npz in the checkpoint's folder or the
    train dir above it (notebook 09 writes it there); without them only landmark and donor
    targets work."""
    model = load_trained(checkpoint, device=device)
    return FaceEditor(model.generator, model.config, _find_expressions(Path(checkpoint), expressions), model)


def _find_expressions(checkpoint: Path, given):
    if isinstance(given, ex.ExpressionModel):
        return given
    if given is not None:
        p = given if not isinstance(given, (str, Path)) else Path(given)
        if isinstance(p, Path) and p.suffix == ".npz":
            return ex.ExpressionModel.load(p)
        if isinstance(p, Path):
            p = load_cache(p)
        return ex.learn_displacements(p, "train")
    base = checkpoint if checkpoint.is_dir() else checkpoint.parent
    for d in (base, base.parent, base / "checkpoints"):
        if (d / EXPRESSIONS_FILE).is_file():
            return ex.ExpressionModel.load(d / EXPRESSIONS_FILE)
    return None
