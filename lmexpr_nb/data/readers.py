"""Dataset readers: CK+, Oulu-CASIA NIR&VIS and a generic folder tree, each from its own published
layout (never renamed by the user), each returning `Record`s plus the skips it recorded.

Paper Sec. IV-A: of each sequence (neutral -> peak) the first three frames are used as neutral
and the last three as the sequence's expression (`DataConfig.first_k`, `last_k`). CK+ keeps
only the sequences that have an Emotion file (327 of 593).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lmexpr_nb.common.files import not_regular
from lmexpr_nb.config import DataConfig
from lmexpr_nb.data.records import CLASSES, Record, class_index

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".webp", ".gif", ".avif"}
# image formats a folder may hold that Pillow cannot decode (HEIC/HEIF phone photos, camera raw, vector)
UNREADABLE_EXTS = {".heic", ".heif", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raw", ".svg"}
SYNTHETIC_MARKER = "SYNTHETIC.md"


@dataclass
class ReadResult:
    records: list[Record]
    skipped: list[dict] = field(default_factory=list)   # {"path", "reason"}
    dataset: str = ""
    synthetic: bool = False


def _frame_number(p: Path) -> int:
    nums = re.findall(r"\d+", p.stem)
    return int(nums[-1]) if nums else 0


def frame_files(folder, out: ReadResult | None = None) -> list[Path]:
    """The images of a folder of frames, in frame order (the last number in each name, then the
    name). Everything else in it except hidden files and sub-folders is left out, and with `out` a
    recorded skip there: anything named like an image that is not a regular file, a format the kit
    does not read, any other file."""
    folder = Path(folder)
    out = out if out is not None else ReadResult([], [], "frames", False)
    keep = []
    for p in sorted(folder.iterdir()):
        ext = p.suffix.lower()
        if p.name.startswith(".") or (p.is_dir() and ext not in IMAGE_EXTS):
            continue                                  # hidden files, sub-folders
        problem = not_regular(p)
        if problem:
            out.skipped.append({"path": str(p), "reason": problem})
        elif ext in IMAGE_EXTS:
            keep.append(p)
        elif ext in UNREADABLE_EXTS:
            out.skipped.append({"path": str(p), "reason": f"{ext} images are not a format the kit reads: "
                                                          f"convert them to JPEG or PNG"})
        else:
            out.skipped.append({"path": str(p), "reason": f"not an image file ({ext or 'no extension'})"})
    return sorted(keep, key=lambda p: (_frame_number(p), p.name))


def first_last(frames: list, first_k: int, last_k: int) -> list[tuple[int, object, bool]]:
    """(index, frame, is_peak) for the first_k (neutral) and last_k (peak) frames, never overlapping."""
    n = len(frames)
    first = list(range(min(first_k, n)))
    last = list(range(max(len(first), n - last_k), n))
    return [(i, frames[i], False) for i in first] + [(i, frames[i], True) for i in last]


def _need_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise ValueError(f"no {path.name}/ under {path.parent}: is this the {what} root?")
    return path


def read_landmark_file(path: Path) -> np.ndarray | None:
    """CK+ landmark file: 68 lines of 'x y' floats (e.g. '   2.5100000e+02   2.3400000e+02').
    None when there is no such file; a ValueError whose message is the recorded skip's reason
    when there is one the kit cannot use (not a regular file, not 68 points, NaN or infinite)."""
    if not os.path.lexists(path):
        return None
    problem = not_regular(path)
    if problem:
        raise ValueError(f"Landmarks file {problem}")
    try:
        a = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (OSError, ValueError):
        raise ValueError("unreadable Landmarks file (not lines of 'x y' numbers)") from None
    if a.shape != (68, 2):
        raise ValueError(f"Landmarks file holds {a.shape[0]} lines of {a.shape[1]} numbers, not 68 points (x y)")
    bad = int((~np.isfinite(a).all(axis=1)).sum())
    if bad:
        raise ValueError(f"Landmarks file has NaN or infinite coordinates ({bad} of 68 points): not used")
    return a


def read_emotion_file(path: Path) -> int:
    """A CK+ Emotion file's code 1..7 (= the kit's label, data/records.py); a ValueError saying why not."""
    try:
        code = float(Path(path).read_text().split()[0])
    except (ValueError, IndexError, OSError):
        raise ValueError("unreadable Emotion file") from None
    if not math.isfinite(code) or code != int(code) or not 1 <= int(code) <= 7:   # nan, inf: skips too
        raise ValueError(f"Emotion code {code} outside 1..7")
    return int(code)


def ckplus_sequence_label(folder) -> int | None:
    """The expression of a CK+-layout sequence folder (<root>/cohn-kanade-images/<S>/<Q>) from its
    Emotion file (<root>/Emotion/<S>/<Q>/*_emotion.txt); None when the folder is not laid out so or
    has no readable Emotion file."""
    folder = Path(folder).resolve()
    if len(folder.parts) < 4 or folder.parent.parent.name != "cohn-kanade-images":
        return None
    emo = sorted((folder.parents[2] / "Emotion" / folder.parent.name / folder.name).glob("*_emotion.txt"))
    try:
        return read_emotion_file(emo[-1]) if emo else None
    except ValueError:
        return None


def read_ckplus(root, cfg: DataConfig | None = None) -> ReadResult:
    """CK+: cohn-kanade-images/S005/001/*.png, Emotion/S005/001/*_emotion.txt, Landmarks/S005/001/*_landmarks.txt."""
    cfg = cfg or DataConfig()
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"CK+ root {root} does not exist")
    images = _need_dir(root / "cohn-kanade-images", "CK+")
    if not (root / "Emotion").is_dir():
        raise ValueError(f"no Emotion/ under {root}: CK+'s labels are needed (Emotion/S005/001/*_emotion.txt)")
    emotions = root / "Emotion"
    synthetic = (root / SYNTHETIC_MARKER).is_file()
    out = ReadResult([], [], "ckplus", synthetic)
    for subj in sorted(p for p in images.iterdir() if p.is_dir()):
        for seq in sorted(p for p in subj.iterdir() if p.is_dir()):
            emo = sorted((emotions / subj.name / seq.name).glob("*_emotion.txt"))
            if not emo:
                out.skipped.append({"path": str(seq), "reason": "no Emotion file (unlabelled sequence)"})
                continue
            problem = not_regular(emo[-1])
            if problem:
                out.skipped.append({"path": str(emo[-1]), "reason": f"Emotion file {problem}"})
                continue
            try:
                code = read_emotion_file(emo[-1])
            except ValueError as e:
                out.skipped.append({"path": str(emo[-1]), "reason": str(e)})
                continue
            frames = frame_files(seq, out)
            for _, p, peak in first_last(frames, cfg.first_k, cfg.last_k):
                lm_path = root / "Landmarks" / subj.name / seq.name / f"{p.stem}_landmarks.txt"
                try:
                    lm, problem = read_landmark_file(lm_path), None
                except ValueError as e:       # the file is named in its skip; the frame may still be found by dlib
                    lm, problem = None, str(e)
                    out.skipped.append({"path": str(lm_path), "reason": problem})
                out.records.append(Record("ckplus", subj.name, seq.name, _frame_number(p), p,
                                          code if peak else 0, lm, synthetic, problem))
    if not out.records:
        raise ValueError(f"no labelled CK+ sequences under {root} (none has an Emotion file with frames)")
    return out


def _expression_folders(base: Path, out: ReadResult):
    """(subject dir, expression dir, label) for base/<subject>/<expression>/; folders with an
    unknown expression name are recorded as skips in `out`."""
    for subj in sorted(p for p in base.iterdir() if p.is_dir()):
        for expr in sorted(p for p in subj.iterdir() if p.is_dir()):
            try:
                yield subj, expr, class_index(expr.name)
            except ValueError:
                out.skipped.append({"path": str(expr), "reason": f"unknown expression folder {expr.name!r}"})


def read_oulu(root, cfg: DataConfig | None = None) -> ReadResult:
    """Oulu-CASIA NIR&VIS: OriginalImg/<VL|NI>/<Strong|Weak|Dark>/P001/<Expression>/000.jpeg."""
    cfg = cfg or DataConfig()
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"Oulu-CASIA root {root} does not exist")
    base = _need_dir(root / "OriginalImg", "Oulu-CASIA")
    base = base / cfg.oulu_camera / cfg.oulu_illumination
    if not base.is_dir():
        raise ValueError(f"no {cfg.oulu_camera}/{cfg.oulu_illumination}/ under {root / 'OriginalImg'} "
                         f"(camera VL|NI, illumination Strong|Weak|Dark)")
    out = ReadResult([], [], "oulu", (root / SYNTHETIC_MARKER).is_file())
    for subj, expr, label in _expression_folders(base, out):
        for _, p, peak in first_last(frame_files(expr, out), cfg.first_k, cfg.last_k):
            out.records.append(Record("oulu", subj.name, expr.name, _frame_number(p), p, label if peak else 0,
                                      None, out.synthetic))
    if not out.records:
        raise ValueError(f"no Oulu-CASIA sequences under {base}")
    return out


def read_folder(root, cfg: DataConfig | None = None) -> ReadResult:
    """Generic <root>/<subject>/<expression>/<image>: every image takes its folder's label."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"folder dataset root {root} does not exist")
    out = ReadResult([], [], "folder", (root / SYNTHETIC_MARKER).is_file())
    for subj, expr, label in _expression_folders(root, out):
        for i, p in enumerate(frame_files(expr, out)):
            out.records.append(Record("folder", subj.name, expr.name, i, p, label, None, out.synthetic))
    if not out.records:
        raise ValueError(f"no images under {root} in the layout <subject>/<expression>/<image> "
                         f"(expressions: {', '.join(CLASSES)})")
    return out


READERS = {"ckplus": read_ckplus, "oulu": read_oulu, "folder": read_folder}


def read_dataset(name: str, root, cfg: DataConfig | None = None) -> ReadResult:
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}; use one of {', '.join(READERS)}")
    return READERS[name](root, cfg)
