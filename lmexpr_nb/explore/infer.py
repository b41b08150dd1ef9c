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
training; paste.py blends the generated crop back into the photo (mask="box" or "face").
The photo is read by landmarks/detect.py's read_image (a path, bytes, a PIL image or an array;
EXIF orientation applied where there is one). When dlib finds several faces, the most confident
is edited (`face=1` edits the next, and so on) and a UserWarning says how many were found.
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
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmexpr_nb.config import Config, DataConfig
from lmexpr_nb.data.cache import load_cache
from lmexpr_nb.explore import expressions as ex
from lmexpr_nb.explore.paste import apply_matrix, face_mask, feather_mask, paste_back
from lmexpr_nb.landmarks.align import align_shape
from lmexpr_nb.landmarks.detect import LandmarkDetector, crop_and_resize, crop_box, read_image
from lmexpr_nb.model.generate import synthesize
from lmexpr_nb.model.trained import load_trained


class NoFaceError(ValueError):
    """No face was found in an image."""


@dataclass
class Face:
    """A detected face: the model-sized crop, landmarks in crop and photo pixels, the crop box in
    the photo, and the 3x3 matrix taking photo pixel coordinates (x, y, 1) to crop pixels; the
    decoded photo (upright), how many faces dlib found in it (0: landmarks were given), which one
    this is (0 = the most confident) and its dlib HOG score."""
    crop: np.ndarray
    landmarks: np.ndarray
    frame_landmarks: np.ndarray
    box: tuple
    to_crop: np.ndarray
    frame_shape: tuple
    frame: np.ndarray | None = None
    faces: int = 0
    index: int = 0
    score: float | None = None

    def crop_to_frame(self, pts) -> np.ndarray:
        return apply_matrix(np.linalg.inv(self.to_crop), pts)

    def frame_to_crop(self, pts) -> np.ndarray:
        return apply_matrix(self.to_crop, pts)


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

@functools.lru_cache(maxsize=2)
def photo_detector(upsample: int = 0):
    return LandmarkDetector(upsample=upsample)


ARRAY_HINT = ("an array carries no EXIF orientation, so a photo its camera stored sideways stays sideways: "
              "pass the file's path (or its bytes) instead, e.g. edit('photo.jpg', ...)")


def no_face_message(image, frame: np.ndarray, what: str = "image") -> str:
    """The one-line NoFaceError message for `frame` (decoded from `image`, as the user gave it)."""
    h, w = frame.shape[:2]
    msg = f"no face found in the {w}x{h} {what} (dlib HOG detector): give a frontal, well-lit face at least 80 px wide"
    return f"{msg}; {ARRAY_HINT}" if isinstance(image, np.ndarray) else msg


def prepare_face(image, image_size: int, margin: float | None = None, detector=None,
                 source_landmarks=None, face: int = 0) -> Face:
    """Read `image` (landmarks/detect.py's read_image: a path, bytes, a PIL image or an array), find
    its faces (dlib HOG + 68-point predictor, most confident first) unless `source_landmarks` (photo
    pixels) are given, and crop face number `face` as preprocessing does. Raises NoFaceError with a
    one-line message, ValueError for a `face` that was not found."""
    frame = read_image(image)
    h, w = frame.shape[:2]
    margin = DataConfig().crop_margin if margin is None else margin
    found, score = [], None
    if source_landmarks is None:
        det = detector or photo_detector()
        found = det.detections(frame)
        if not found:
            raise NoFaceError(no_face_message(image, frame))
        face = _face_index(face, len(found), f"the {w}x{h} photo")
        box, score = found[face]
        pts = np.asarray(det.shape(frame, box), dtype=np.float64)
    else:
        if face != 0:
            raise ValueError(f"face={face!r} picks one of the faces dlib finds; with source_landmarks "
                             f"nothing is detected")
        pts = _points("source_landmarks", source_landmarks, (-0.25 * w, -0.25 * h, 1.25 * w, 1.25 * h),
                      f"the {w}x{h} photo")
    box = crop_box(pts, margin)
    crop, transform = crop_and_resize(frame, box, image_size)
    M = _to_crop_matrix(transform)
    return Face(np.array(crop, dtype=np.uint8), apply_matrix(M, pts), pts, tuple(np.asarray(box).tolist()), M,
                frame.shape[:2], frame, len(found), face, score)


def _face_index(face, found: int, where: str) -> int:
    """`face` checked against the `found` faces (0 = the most confident), else a one-line ValueError."""
    if isinstance(face, (bool, np.bool_)) or not isinstance(face, (int, np.integer)):
        raise ValueError(f"face must be a whole number (0 = the most confident face), got {face!r}")
    if not 0 <= face < found:
        which = "only face 0" if found == 1 else f"faces 0..{found - 1}"
        raise ValueError(f"face={int(face)}: dlib found {found} face{'s' if found > 1 else ''} in {where} ({which}; "
                         f"0 = the most confident)")
    return int(face)


def _to_crop_matrix(transform) -> np.ndarray:
    """3x3 matrix photo -> crop pixels of a landmarks/detect.py CropTransform: (p - origin + 0.5) * scale - 0.5."""
    s = float(transform.scale)
    return np.array([[s, 0.0, (0.5 - transform.x0) * s - 0.5],
                     [0.0, s, (0.5 - transform.y0) * s - 0.5],
                     [0.0, 0.0, 1.0]])


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
        donor = read_image(arr)
        found = (detector or photo_detector()).locate(donor)
        if found is None:
            raise NoFaceError(no_face_message(arr, donor, "donor image"))
        return align_shape(np.asarray(found[1], dtype=np.float64), src), lab
    raise ValueError(f"target must be an expression, (68,2) landmarks or a uint8 donor image; got {arr.dtype} "
                     f"{arr.shape}")


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
              feather: float = 0.12, device=None, extrapolate: bool = False, face: int = 0) -> EditResult:
    """Edit the face in `image` (a path, bytes, a PIL image or a uint8 array, any size) toward
    `target` (see the module doc).

    cfg: the training Config (its data.crop_margin and model are used) or a ModelConfig (the
    default crop margin is used). generator: a Generator (or any module with its forward).
    face: which face when dlib finds several, 0 = the most confident (the default); a photo with
    several faces gives a UserWarning saying how many and which one was edited.
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
    found = prepare_face(image, model_cfg.image_size, margin, detector, source_landmarks, face)
    if found.faces > 1:
        warnings.warn(several_faces_message(found), stacklevel=2)
    frame = found.frame
    tlm, lab = resolve_target(found, target, intensity=intensity, label=label, source_label=source_label,
                              expressions=expressions, landmarks_in=landmarks_in, detector=detector,
                              num_classes=model_cfg.num_classes)
    if regions:
        tlm = ex.edit_regions(tlm, **regions)
    tlm = _target_in_crop(tlm, model_cfg.image_size)
    if device is None:
        p = next(iter(generator.parameters()), None) if hasattr(generator, "parameters") else None
        device = p.device if p is not None else "cpu"
    out = synthesize(generator, found.crop[None], found.landmarks[None], tlm[None], lab[None], model_cfg,
                     batch_size=1, device=device)[0]
    s = model_cfg.image_size
    if mask == "box":
        m = feather_mask(s, feather)
    else:
        m = face_mask(s, [found.landmarks, tlm], feather)
    pasted, wgt, window = paste_back(frame, out, found.to_crop, m)
    return EditResult(out, pasted, found.crop, found.landmarks, tlm, lab, found, wgt, window)


def several_faces_message(face: Face) -> str:
    """'3 faces found in the 1024x512 photo; edited face 0, the most confident ...': one line."""
    h, w = face.frame_shape
    x0, y0, side = face.box
    which = "the most confident" if face.index == 0 else "by face="
    return (f"{face.faces} faces found in the {w}x{h} photo; edited face {face.index}, {which} (dlib score "
            f"{face.score:.2f}, crop at x {x0}..{x0 + side}, y {y0}..{y0 + side}); face=0..{face.faces - 1} "
            f"picks another, in order of confidence")


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
