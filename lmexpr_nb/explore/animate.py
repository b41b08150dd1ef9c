"""Drive one photo by another face's expressions, frame by frame (`python -m lmexpr_nb animate`).

    editor = infer.load_model("outputs/smoke/train")             # generator, config, expressions.npz
    driver = drive.open_driver("clip.mp4")                       # or a folder, or "S005/003" with cache=
    anim = animate_photo(editor, photo, driver, label="happy")   # anim.frames: photo-sized uint8 frames
    write_animation(anim.frames, "out.mp4", fps=anim.fps)        # H.264 MP4, or a .gif

Per frame t of the driver, with its landmarks tracked (drive.track_driver):
- target landmarks: **motion transfer** (landmarks/motion.py) of the driver's change from its
  reference frame (frame 0, or `reference`) onto the photo's face: the photo keeps its face shape;
  the driver's head pose relative to its reference is taken out, so only the expression moves;
- label: the expression (`label`, else the driver's annotation: a cache sequence's, a CK+ folder's
  Emotion file; a cache frame annotated neutral keeps the photo's own label), blended with the photo's own expression (`source_label`, neutral unless said) by
  an intensity from the motion's size, as the explorer's intensity slider blends it
  (expressions.blend_label): i_t = min(1, m_t / m_k), m_t the RMS motion of frame t and m_k that of
  the expression's mean displacement in the model's expressions.npz (explore/expressions.py), both
  in inter-ocular distances; without expressions.npz m_k is the driver's largest m_t;
- generated in batches (model/generate.py's synthesize) and pasted back into the full photo
  (explore/infer.py's paste_back, the box mask feathered; mask="face" follows the landmarks).
A still driver gives exactly the photo's landmarks in every frame, so a still output.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import imageio_ffmpeg
import numpy as np
from tqdm.auto import tqdm

from lmexpr_nb.common.files import atomic_path, exclusive_lock, writable_dir
from lmexpr_nb.config import Config
from lmexpr_nb.data.cache import load_cache
from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.explore import expressions as ex
from lmexpr_nb.explore.drive import Driver, DriverTrack, open_driver, track_driver
from lmexpr_nb.explore.infer import load_model, prepare_face
from lmexpr_nb.explore.paste import face_mask, feather_mask, paste_back
from lmexpr_nb.landmarks.align import face_frame
from lmexpr_nb.landmarks.detect import read_image
from lmexpr_nb.landmarks.motion import motion_magnitude, motion_transfer
from lmexpr_nb.model.generate import synthesize

FORMATS = (".mp4", ".gif")
DEFAULT_FPS = 10.0         # frames and cache sequences carry no frame rate


@dataclass
class AnimationPlan:
    """What the generator is given for each frame: target landmarks (N, 68, 2) in the source crop's
    pixels, soft labels (N, K), the intensity (N,) behind them, the expression and the reference frame."""
    targets: np.ndarray
    labels: np.ndarray
    intensity: np.ndarray
    expression: int
    reference: int


@dataclass
class Animation:
    frames: list = field(repr=False)          # photo-sized uint8 frames (empty when streamed to a sink)
    plan: AnimationPlan = field(repr=False)
    track: DriverTrack = field(repr=False)
    driver: str = ""
    fps: float = DEFAULT_FPS
    size: tuple[int, int] = (0, 0)            # (width, height) of the output frames
    n_frames: int = 0


def expression_magnitude(expressions: ex.ExpressionModel | None, k: int) -> float | None:
    """RMS size of expression k's mean displacement in inter-ocular distances (None: unknown)."""
    if expressions is None or k == 0 or expressions.subjects[k] == 0:
        return None
    d = np.asarray(expressions.displacements[k], np.float64)
    return float(np.sqrt(np.mean(np.sum(d ** 2, axis=1))) / face_frame(expressions.reference)[2])


def plan_animation(source_landmarks, driver_landmarks, expression, reference: int = 0, source_label=0,
                   expressions: ex.ExpressionModel | None = None, num_classes: int = len(CLASSES),
                   region_scale: bool = False, frame_labels=None) -> AnimationPlan:
    """Targets, labels and intensities for every driver frame (module doc). `frame_labels` (N,): the
    dataset's per-frame annotation; a frame annotated neutral (0) gets the photo's own label
    (intensity 0), whatever its motion."""
    lms = np.asarray(driver_landmarks, np.float64)
    ref = lms[reference]
    k = ex.as_class(expression)
    targets = np.stack([motion_transfer(source_landmarks, lm, ref, region_scale=region_scale) for lm in lms])
    m = np.array([motion_magnitude(lm, ref) for lm in lms])
    scale = expression_magnitude(expressions, k) or (float(m.max()) if m.max() > 0 else None)
    intensity = np.clip(m / scale, 0.0, 1.0) if scale else np.zeros(len(lms))
    if frame_labels is not None:
        intensity[np.asarray(frame_labels) == 0] = 0.0
    labels = np.stack([ex.blend_label(source_label, k, i, num_classes) for i in intensity])
    return AnimationPlan(targets, labels, intensity, k, int(reference))


def generate_animation(generator, model_cfg, source_crop, source_landmarks, plan: AnimationPlan,
                       batch_size: int = 16, device=None, progress: bool = False) -> Iterator[np.ndarray]:
    """The generated faces (B, S, S, 3) uint8, one batch of frames at a time, in frame order."""
    n = len(plan.targets)
    crops = np.repeat(np.asarray(source_crop, np.uint8)[None], min(batch_size, n), axis=0)
    lms = np.repeat(np.asarray(source_landmarks, np.float32)[None], min(batch_size, n), axis=0)
    with tqdm(total=n, desc="generating", unit="frame", disable=not progress) as bar:
        for i in range(0, n, batch_size):
            b = min(batch_size, n - i)
            yield synthesize(generator, crops[:b], lms[:b], plan.targets[i:i + b], plan.labels[i:i + b], model_cfg,
                             batch_size=b, device=device)
            bar.update(b)


def driver_expression(driver: Driver, label=None) -> int:
    """The expression the animation shows: `label`, else the driver's annotated one; a one-line
    ValueError when neither is known."""
    if label is not None:
        return ex.as_class(label)
    if driver.label is None:
        raise ValueError(f"the driver ({driver.kind} {driver.name}) has no expression annotation: give the "
                         f"expression to show (--label, e.g. happy; one of {', '.join(CLASSES[1:])})")
    return int(driver.label)


def animate_photo(editor, photo, driver: Driver, *, label=None, reference: int = 0, source_label=0,
                  mask: str = "box", batch_size: int = 16, progress: bool = False, detector=None,
                  region_scale: bool = False, sink=None, track: DriverTrack | None = None) -> Animation:
    """Animate the face in `photo` (any size) by `driver` (module doc). `editor`: infer.load_model's
    FaceEditor (generator, cfg, expressions). `sink(frame)`: called with each output frame instead
    of keeping them (a writer); `track`: the driver's landmarks when already tracked."""
    if mask not in ("box", "face"):
        raise ValueError(f"mask must be 'box' or 'face', got {mask!r}")
    cfg = editor.cfg
    model_cfg = cfg.model if isinstance(cfg, Config) else cfg
    frame = read_image(photo)
    face = prepare_face(frame, model_cfg.image_size, cfg.data.crop_margin if isinstance(cfg, Config) else None,
                        detector)
    k = driver_expression(driver, label)
    track = track or track_driver(driver, detector, reference, progress)
    plan = plan_animation(face.landmarks, track.landmarks, k, reference, source_label, editor.expressions,
                          model_cfg.num_classes, region_scale, driver.labels if label is None else None)
    s = model_cfg.image_size
    box = feather_mask(s) if mask == "box" else None
    frames = []
    t = 0
    for batch in generate_animation(editor.generator, model_cfg, face.crop, face.landmarks, plan, batch_size,
                                    progress=progress):
        for crop in batch:
            m = box if box is not None else face_mask(s, [face.landmarks, plan.targets[t]])
            out = paste_back(frame, crop, face.to_crop, m)[0]
            (sink or frames.append)(out)
            t += 1
    h, w = frame.shape[:2]
    return Animation(frames, plan, track, driver.describe(), driver.fps or DEFAULT_FPS, (w, h), t)


class AnimationWriter:
    """Write frames one at a time through the ffmpeg that the imageio-ffmpeg wheel ships, atomically
    (the file appears whole when the writer closes, or not at all): .mp4 is H.264 (yuv420p; its 4:2:0
    needs even sides, so an odd width or height is padded by one replicated pixel), .gif a looping
    GIF with one palette made for the whole animation. Every frame is kept, identical ones too (a
    still driver's, a lost face's filled frame): the frame count is the driver's. `comment`: what
    made the animation, stamped into an MP4's metadata (GIF has no place for it)."""

    def __init__(self, path, fps: float = DEFAULT_FPS, quality: int = 8, comment: str = ""):
        self.path = Path(path)
        if self.path.suffix.lower() not in FORMATS:
            raise ValueError(f"{self.path.name}: the animation must be {' or '.join(FORMATS)}")
        self.fps, self.quality, self.n, self.comment = float(fps), quality, 0, comment
        self._ffmpeg = self._stack = self._tmp = None

    def __enter__(self) -> Self:
        self._stack = ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        return self

    def _open(self, w: int, h: int):
        if self.path.suffix.lower() == ".gif":
            kw = {"codec": "gif", "pix_fmt_out": "pal8", "quality": None, "output_params": [
                "-f", "gif", "-loop", "0", "-vf", "split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse"]}
        else:
            meta = ["-metadata", f"comment={self.comment}"] if self.comment else []
            kw = {"codec": "libx264", "pix_fmt_out": "yuv420p", "quality": self.quality,
                  "output_params": ["-f", "mp4", *meta]}
        self._ffmpeg = imageio_ffmpeg.write_frames(str(self._tmp), (w, h), fps=self.fps, macro_block_size=1,
                                                   ffmpeg_log_level="error", **kw)
        self._ffmpeg.send(None)
        self._size = (w, h)

    def append(self, frame) -> None:
        frame = np.asarray(frame, np.uint8)
        h, w = frame.shape[:2]
        if self.path.suffix.lower() == ".mp4" and (h % 2 or w % 2):
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        if self._ffmpeg is None:
            self._open(frame.shape[1], frame.shape[0])
        elif (frame.shape[1], frame.shape[0]) != self._size:
            raise ValueError(f"{self.path.name}: frame {self.n} is {w}x{h}, the first was {self._size[0]}x{self._size[1]}")
        self._ffmpeg.send(np.ascontiguousarray(frame))
        self.n += 1

    def _finish(self, ok: bool) -> None:
        if self._ffmpeg is not None:
            self._ffmpeg.close()
        if ok and self.n == 0:
            raise ValueError(f"{self.path.name}: no frames to write")

    def __exit__(self, kind, value, tb):
        try:
            self._finish(ok=kind is None)
        except BaseException:
            if not self._stack.__exit__(*sys.exc_info()):
                raise
            return False
        return self._stack.__exit__(kind, value, tb)


def write_animation(frames, path, fps: float = DEFAULT_FPS, comment: str = "") -> Path:
    """Write `frames` (uint8 (H, W, 3) each) to `path` (.mp4 or .gif; AnimationWriter)."""
    with AnimationWriter(path, fps, comment=comment) as w:
        for f in frames:
            w.append(f)
    return Path(path)


def animate_main(argv: list[str] | None = None) -> int:
    """`python -m lmexpr_nb animate --model CKPT --photo PHOTO --drive SOURCE --out FILE [...]`;
    bad input: one line, exit status 2."""
    ap = argparse.ArgumentParser(prog="lmexpr animate", description=(
        "Drive a photo by another face's expressions, frame by frame: motion transfer of the driver's "
        "landmarks (tracked as in preprocessing) onto the photo's face, generated, pasted back."))
    ap.add_argument("--model", required=True, help="a checkpoint (last.pt) or a run's train folder")
    ap.add_argument("--photo", required=True, help="the photo to animate (one face)")
    ap.add_argument("--drive", required=True, help="a folder of frames, a video file, or SUBJECT/SEQUENCE of --data")
    ap.add_argument("--data", default=None, help="a preprocessing cache folder, for --drive SUBJECT/SEQUENCE")
    ap.add_argument("--out", required=True, help="the animation to write: .mp4 (H.264) or .gif")
    ap.add_argument("--label", default=None, help="the expression to show (default: the driver's annotation)")
    ap.add_argument("--photo-label", default="neutral", help="the photo's own expression (default neutral)")
    ap.add_argument("--reference", type=int, default=0, help="the driver's reference (neutral) frame (default 0)")
    ap.add_argument("--fps", type=float, default=None, help=f"frame rate (default: the video's, else {DEFAULT_FPS:g})")
    ap.add_argument("--batch", type=int, default=16, help="frames per generator call (default 16)")
    ap.add_argument("--mask", choices=("box", "face"), default="box", help="paste-back mask (default box)")
    ap.add_argument("--region-scale", action="store_true", help="per-region scaling of the motion")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bars")
    a = ap.parse_args(argv)
    prog = "lmexpr animate"
    try:
        out = Path(a.out)
        if out.suffix.lower() not in FORMATS:
            raise ValueError(f"--out {a.out}: the animation must be {' or '.join(FORMATS)}")
        if a.batch < 1 or (a.fps is not None and not 0 < a.fps <= 240):
            raise ValueError("--batch must be >= 1 and --fps in (0, 240]")
        photo_label = ex.as_class(a.photo_label)
        driver = open_driver(a.drive, load_cache(a.data) if a.data else None)
        print(f"driver: {driver.describe()}", flush=True)
        k = driver_expression(driver, a.label)
        if not 0 <= a.reference < driver.n_frames:
            raise ValueError(f"--reference {a.reference} is outside the driver's frames 0..{driver.n_frames - 1}")
        photo = read_image(a.photo)
        editor = load_model(a.model, device=a.device)
        writable_dir(out.parent if str(out.parent) else Path("."), "--out folder")
        fps = a.fps or driver.fps or DEFAULT_FPS
        made = f"lmexpr animate: {driver.describe()}; expression {CLASSES[k]}; model: {editor_provenance(editor)}"
        with exclusive_lock(out.with_name(f".{out.name}.lock"), "animate"), AnimationWriter(out, fps,
                                                                                          comment=made) as w:
            anim = animate_photo(editor, photo, driver, label=k, reference=a.reference,
                                 source_label=photo_label, mask=a.mask, batch_size=a.batch,
                                 progress=not a.no_progress, region_scale=a.region_scale, sink=w.append)
    except (ValueError, OSError, KeyError) as e:
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        print(f"{prog}: {text.strip().splitlines()[0] if text.strip() else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing was written to {a.out}", file=sys.stderr)
        return 130
    print(anim.track.summary())
    prov = editor_provenance(editor)
    print(f"wrote {out}: {anim.n_frames} frames, {anim.size[0]}x{anim.size[1]}, {fps:g} fps; expression "
          f"{CLASSES[k]}, intensity {anim.plan.intensity.min():.2f}..{anim.plan.intensity.max():.2f} from the "
          f"motion (reference frame {a.reference}); model: {prov}")
    return 0


def editor_provenance(editor) -> str:
    """What the animation's faces were made by, in one phrase (weights, data, profile)."""
    model = getattr(editor, "model", None)
    if model is None:
        return "a generator given directly (no checkpoint provenance)"
    prov = model.provenance or {}
    data = "synthetic data" if prov.get("synthetic") else f"{prov.get('dataset') or 'unknown'} data"
    return f"{model.weights} ({data}, profile {prov.get('profile', '?')})"
