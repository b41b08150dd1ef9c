"""What drives an animation: a folder of frames, a video file, or a sequence of a preprocessing cache.

    driver = open_driver("clips/smile.mp4")              # a folder, a video, or "S005/003" with cache=
    driver.describe()      # "video clips/smile.mp4: 48 frames, 640x480, 30 fps"
    track = track_driver(driver)                         # 68 landmarks per frame, lost frames filled

- a **folder** of frames (PNG, JPEG, ...; data/readers.py's frame order: the last number in each
  name). Every frame must have the first one's size: that is checked from the files' headers before
  any work. A CK+-layout sequence folder (<root>/cohn-kanade-images/<S>/<Q>) brings its expression
  from its Emotion file (data/readers.py's ckplus_sequence_label);
- a **video** file, decoded by the ffmpeg that the imageio-ffmpeg wheel ships (MP4, AVI, MOV,
  MKV, WebM, animated GIF, ...); its frame count is read exactly (ffmpeg decodes it once);
- **SUBJECT/SEQUENCE** of a preprocessing cache (`cache=`): its frames are crops whose landmarks
  preprocessing already tracked (the same tracker) and whose labels the dataset annotated.

Folders and videos are tracked here by the preprocessing tracker (landmarks/detect.py's
track_sequence). The first frame must show a face; a frame where the face is lost later is filled
with the last tracked frame's landmarks, and `DriverTrack.lost` counts them (never dropped).
Every bad input is a `BadDriver` (a ValueError) with a one-line message.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from tqdm.auto import tqdm

from lmexpr_nb.data.readers import IMAGE_EXTS, ckplus_sequence_label, frame_files
from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.landmarks.detect import BadImage, LandmarkDetector, read_image, to_rgb_uint8, track_sequence

VIDEO_EXTS = {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"}


class BadDriver(ValueError):
    """A driving source that cannot be used; the message says why, in one line."""


@dataclass
class Driver:
    """A driving sequence. `frames()` yields its (H, W, 3) uint8 frames in order; `landmarks`
    (N, 68, 2) are given for a cache sequence (None: track them); `labels` (N,) the dataset's
    per-frame labels where it has them, `label` the sequence's expression (None: unknown)."""
    kind: str                                   # "frames" | "video" | "cache"
    name: str
    n_frames: int
    size: tuple[int, int]                       # (width, height)
    read: Callable[[], Iterator[np.ndarray]] = field(repr=False)
    fps: float | None = None
    landmarks: np.ndarray | None = field(default=None, repr=False)
    labels: np.ndarray | None = None
    label: int | None = None
    label_source: str = ""

    def frames(self) -> Iterator[np.ndarray]:
        return self.read()

    def describe(self) -> str:
        w, h = self.size
        what = {"frames": "folder of frames", "video": "video", "cache": "cache sequence"}[self.kind]
        text = f"{what} {self.name}: {self.n_frames} frames, {w}x{h}"
        text += f", {self.fps:g} fps" if self.fps else ""
        if self.label is not None:
            text += f"; expression {CLASSES[self.label]} ({self.label_source})"
        return text


@dataclass
class DriverTrack:
    """Landmarks (N, 68, 2) float64 in the driver's frame pixels, how each frame got them
    ("detected" | "tracked" | "given" | "filled"), and how many were filled (face lost)."""
    landmarks: np.ndarray
    how: list[str]
    lost: int = 0

    def summary(self) -> str:
        n = len(self.how)
        if self.lost == 0:
            return f"driver: a face in all {n} frames"
        first = self.how.index("filled")
        return (f"driver: the face was lost in {self.lost} of {n} frames (first: frame {first}); "
                f"each was filled with the last tracked frame's landmarks")


def open_driver(spec, cache=None) -> Driver:
    """A Driver from a folder, a video file, or SUBJECT/SEQUENCE of `cache` (module doc)."""
    text = str(spec)
    path = Path(text)
    if path.is_dir():
        return _folder(path)
    if path.is_file():
        return _video(path)
    if cache is not None and text.count("/") == 1:
        return _cache_sequence(cache, *text.split("/"))
    hint = "" if cache is not None else " (for SUBJECT/SEQUENCE of a cache, give the cache: --data CACHE)"
    raise BadDriver(f"driver {text}: no such folder or file{hint}")


def _folder(path: Path) -> Driver:
    files = frame_files(path)
    if not files:
        raise BadDriver(f"driver {path}: no image frames in the folder ({', '.join(sorted(IMAGE_EXTS))})")
    sizes = []
    for f in files:                   # decoded once here to check them all (upright, as read_image reads them)
        try:
            h, w = read_image(f).shape[:2]
        except BadImage as e:
            raise BadDriver(f"driver frame {f.name}: {e}") from None
        sizes.append((w, h))
    odd = next((i for i, s in enumerate(sizes) if s != sizes[0]), None)
    if odd is not None:
        raise BadDriver(f"driver {path}: frames of different sizes: {files[odd].name} is "
                        f"{sizes[odd][0]}x{sizes[odd][1]}, {files[0].name} is {sizes[0][0]}x{sizes[0][1]}")

    def read():
        for f in files:
            try:
                yield read_image(f)
            except BadImage as e:
                raise BadDriver(f"driver frame {f.name}: {e}") from None

    label = ckplus_sequence_label(path)
    return Driver("frames", str(path), len(files), sizes[0], read, None, label=label,
                  label_source="the sequence's CK+ Emotion file" if label is not None else "")


def _video(path: Path) -> Driver:
    if path.suffix.lower() not in VIDEO_EXTS:
        raise BadDriver(f"driver {path}: not a folder or a video ({', '.join(sorted(VIDEO_EXTS))})")
    try:
        n, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
    except (OSError, RuntimeError, StopIteration, ValueError) as e:
        raise BadDriver(f"driver {path}: unreadable video ({type(e).__name__}: "
                        f"{str(e).strip().splitlines()[0][:80] if str(e).strip() else 'ffmpeg found no video'})") from None
    w, h = meta["size"]
    if n < 1 or w < 16 or h < 16:
        raise BadDriver(f"driver {path}: no frames of at least 16x16 pixels in the video")

    def read():
        frames = imageio_ffmpeg.read_frames(str(path))
        try:
            next(frames)
            for buf in frames:
                yield to_rgb_uint8(np.frombuffer(buf, np.uint8).reshape(h, w, 3))
        finally:
            frames.close()

    fps = float(meta.get("fps") or 0) or None
    return Driver("video", str(path), int(n), (int(w), int(h)), read, fps)


def _cache_sequence(cache, subject: str, sequence: str) -> Driver:
    subj, seqs = np.asarray(cache.subjects).astype(str), np.asarray(cache.sequences).astype(str)
    idx = np.flatnonzero((subj == subject) & (seqs == sequence))
    if idx.size == 0:
        known = sorted({f"{a}/{b}" for a, b in zip(subj, seqs)})
        raise BadDriver(f"driver {subject}/{sequence}: no such sequence in the cache (e.g. {', '.join(known[:4])})")
    idx = idx[np.argsort(np.asarray(cache.frames)[idx], kind="stable")]
    labels = np.asarray(cache.labels)[idx].astype(int)
    expr = sorted(set(labels.tolist()) - {0})
    images = cache.images

    def read():
        for i in idx:
            yield np.asarray(images[i])

    s = int(images.shape[1])
    return Driver("cache", f"{subject}/{sequence}", len(idx), (s, s), read, None,
                  np.asarray(cache.landmarks, np.float64)[idx], labels, expr[-1] if expr else None,
                  "the cache's annotation" if expr else "")


def track_driver(driver: Driver, detector: LandmarkDetector | None = None, reference: int = 0,
                 progress: bool = False) -> DriverTrack:
    """68 landmarks per frame of `driver` by the preprocessing tracker (given ones for a cache
    sequence). BadDriver when the first frame or the `reference` frame shows no face; later lost
    frames are filled from the last tracked frame and counted."""
    if not 0 <= reference < driver.n_frames:
        raise BadDriver(f"--reference {reference} is outside the driver's frames 0..{driver.n_frames - 1}")
    if driver.landmarks is not None:
        return DriverTrack(np.asarray(driver.landmarks, np.float64), ["given"] * driver.n_frames)
    detector = detector or LandmarkDetector()
    frames = tqdm(driver.frames(), total=driver.n_frames, desc="tracking the driver", unit="frame",
                  disable=not progress)
    lms, how, last = [], [], None
    for t, (pts, h) in enumerate(track_sequence(detector, frames)):
        if pts is None:
            if t == 0:
                raise BadDriver(f"driver {driver.name}: no face in its first frame (dlib HOG detector): "
                                f"start the driver on a frontal, well-lit face")
            if t == reference:
                raise BadDriver(f"driver {driver.name}: no face in frame {t}, the --reference frame")
            pts, h = last, "filled"
        last = np.asarray(pts, np.float64)
        lms.append(last)
        how.append(h)
    if len(lms) != driver.n_frames:            # a video whose header promised more than it decoded
        driver.n_frames = len(lms)
        if reference >= len(lms):
            raise BadDriver(f"--reference {reference} is outside the driver's {len(lms)} decoded frames")
    return DriverTrack(np.stack(lms), how, how.count("filled"))
