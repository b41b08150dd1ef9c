"""Preprocessing (paper Sec. IV-A): records -> dlib landmarks -> square crops at image_size ->
a subject-disjoint train/validation split -> the cache (data/cache.py) + a JSON report.

Per sequence, faces are detected once and tracked (landmarks.track_sequence). Where dlib
finds no face, the dataset's own landmarks are used when it ships them (CK+, the synthetic
set), after two checks that the image holds something face-like there: the points lie inside
the image, and the landmarks' box is neither flat (grey-level std < FLAT_STD) nor noise-like
(neighbouring pixels of its 64x64 grey copy correlate < NOISE_CORRELATION; faces, even noisy
or dark ones, are > 0.75, pixel noise ~0). Frames kept this way are method "dataset", counted
in the report and listed (`dataset_landmark_frames`) so that notebook 01 can show them;
otherwise the frame is skipped with its reason. Unreadable, truncated or odd images
are skips with a reason, never a crash and never a silently wrong sample.
The cache is reused while the inputs (paths, sizes, mtimes, labels, landmarks) and the
settings are unchanged; `force` rebuilds it. A truncated or damaged cache is rebuilt.
The report travels inside the cache archive (data/cache.py), so a reused cache always comes
with its own report. One preprocess at a time writes into a folder (an fcntl lock on
`<out>/.preprocess.lock`); a second one is refused at once with a one-line message.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from lmexpr_nb import __version__
from lmexpr_nb.common.files import exclusive_lock, writable_dir, write_json
from lmexpr_nb.config import DataConfig, check_settings
from lmexpr_nb.data.cache import CacheError, FaceCache, load_cache, load_report, save_cache
from lmexpr_nb.data.readers import read_dataset
from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.landmarks.detect import (
    BadImage,
    LandmarkDetector,
    crop_and_resize,
    crop_box,
    max_pixels,
    read_image,
    track_sequence,
)

FLAT_STD = 2.0            # grey levels (of 255) in the landmarks' box: below this there is nothing there
NOISE_CORRELATION = 0.4   # mean neighbour correlation of the box's 64x64 grey copy: below this, pixel noise
LOCK = ".preprocess.lock"
# part of the cache key: bumped when the same files give other frames (2: EXIF orientation applied, the
# most confident face taken, one image reader for the kit), so that an older cache is rebuilt, not reused
READING = 2


def cache_key(dataset: str, records, cfg: DataConfig) -> str:
    h = hashlib.sha256(json.dumps([dataset, asdict(cfg), __version__, READING]).encode())
    for r in records:
        try:
            st = os.stat(r.path)
            h.update(f"{r.path}|{st.st_size}|{st.st_mtime_ns}|{r.label}".encode())
        except OSError:
            h.update(f"{r.path}|missing|{r.label}".encode())
        if r.landmarks is not None:
            h.update(np.ascontiguousarray(r.landmarks).tobytes())
    return h.hexdigest()[:16]


def choose_validation_subjects(subjects, val_fraction: float, seed: int) -> set[str]:
    """Validation subjects: round(val_fraction * n), at least 1 when there are >= 2 subjects; seeded."""
    subjects = sorted(set(subjects))
    if len(subjects) < 2 or val_fraction <= 0:
        return set()
    n_val = min(len(subjects) - 1, max(1, int(round(val_fraction * len(subjects)))))
    return set(np.random.default_rng(seed).choice(subjects, n_val, replace=False).tolist())


def dataset_landmarks_problem(image: np.ndarray, pts: np.ndarray) -> str | None:
    """Why a dataset's landmarks cannot stand in for dlib's on this frame (None: they can)."""
    h, w = image.shape[:2]
    slack = 0.02 * max(h, w)
    if (pts[:, 0].min() < -slack or pts[:, 1].min() < -slack or pts[:, 0].max() > w - 1 + slack
            or pts[:, 1].max() > h - 1 + slack):
        return "no face found by dlib, and the dataset's landmarks lie outside the image"
    x0, y0 = max(int(np.floor(pts[:, 0].min())), 0), max(int(np.floor(pts[:, 1].min())), 0)
    x1, y1 = min(int(np.ceil(pts[:, 0].max())) + 1, w), min(int(np.ceil(pts[:, 1].max())) + 1, h)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return "no face found by dlib, and the dataset's landmarks span less than 4 pixels"
    g = np.asarray(Image.fromarray(image[y0:y1, x0:x1]).convert("L").resize((64, 64), Image.BOX), np.float64)
    if g.std() < FLAT_STD:
        return f"no face found by dlib, and the image is flat where the dataset's landmarks are (std {g.std():.1f})"
    a = g - g.mean()
    corr = 0.5 * ((a[:, 1:] * a[:, :-1]).sum() + (a[1:] * a[:-1]).sum()) / (a * a).sum()
    if corr < NOISE_CORRELATION:
        return (f"no face found by dlib, and the image is noise-like where the dataset's landmarks are "
                f"(neighbour correlation {corr:.2f})")
    return None


def _frames(records, bad: dict):
    for i, r in enumerate(records):
        try:
            yield read_image(r.path)
        except BadImage as e:
            bad[i] = str(e)
            yield None


def process_sequence(records, cfg: DataConfig, track: bool = True, detector: LandmarkDetector | None = None):
    """One sequence's records -> list of (crop uint8 | None, crop landmarks | None, method, skip reason)."""
    # the naive baseline (track=False) is what a plain script does: full-resolution detection per frame
    detector = detector or LandmarkDetector(upsample=cfg.detector_upsample, detect_width=320 if track else 0)
    bad: dict[int, str] = {}
    images = []

    def frames():
        for k, img in enumerate(_frames(records, bad)):
            images.append(img)
            yield img if img is not None else np.zeros((16, 16, 3), np.uint8)
    out = []
    for k, (pts, how) in enumerate(track_sequence(detector, frames(), track=track)):
        r, img = records[k], images[k]
        if img is None:
            out.append((None, None, "skipped", bad[k]))
            continue
        if pts is None and r.landmarks is not None:
            problem = dataset_landmarks_problem(img, r.landmarks)
            if problem:
                out.append((None, None, "skipped", problem))
                continue
            pts, how = r.landmarks, "dataset"
        if pts is None:
            why = (f"no face found, and the dataset's landmarks for it were not used ({r.landmarks_problem})"
                   if r.landmarks_problem else "no face found and the dataset has no landmarks")
            out.append((None, None, "skipped", why))
            continue
        crop, tr = crop_and_resize(img, crop_box(pts, cfg.crop_margin), cfg.image_size)
        out.append((crop, tr.apply(pts), how, None))
        images[k] = None  # free the full frame early
    return out


def _worker(args):
    records, cfg, track = args
    return process_sequence(records, cfg, track)


def preprocess_dataset(dataset: str, root, out_dir, cfg: DataConfig | None = None, workers: int = 1,
                       progress: bool = True, force: bool = False, track: bool = True) -> dict:
    """Build (or reuse) `<out_dir>/cache.npz` and `<out_dir>/report.json`; returns the report.

    The output folder is checked before any work; a second call into the same folder while one
    runs raises io.BusyError (a ValueError) at once."""
    cfg = check_settings(cfg or DataConfig(), "data")
    max_pixels()                      # a bad $LMEXPR_MAX_PIXELS stops here, before any work
    out_dir = writable_dir(out_dir, "preprocessing output folder")
    with exclusive_lock(out_dir / LOCK, "preprocess"):
        return _preprocess(dataset, root, out_dir, cfg, workers, progress, force, track)


def _reusable(out_dir: Path, key: str) -> dict | None:
    """The report of the cache in out_dir when it matches `key` and is whole, else None (rebuild)."""
    try:
        cache = load_cache(out_dir)
        report = load_report(out_dir)
    except (FileNotFoundError, CacheError):
        return None            # none yet, or truncated / damaged: rebuild
    if cache.meta.get("cache_key") != key:
        return None
    if report is None:         # written before the report was kept in the archive: trust report.json
        try:                   # only when it describes this very cache
            report = json.loads((out_dir / "report.json").read_text())
        except (OSError, ValueError):
            return None
        if report.get("cache_key") != key or report.get("frames_kept") != len(cache):
            return None
    report = dict(report, reused=True, cache=str(out_dir / "cache.npz"))
    on_disk = None
    try:
        on_disk = json.loads((out_dir / "report.json").read_text())
    except (OSError, ValueError):
        pass
    if on_disk != dict(report, reused=False):
        write_json(out_dir / "report.json", dict(report, reused=False))   # the readable copy, repaired
    return report


def _preprocess(dataset, root, out_dir: Path, cfg, workers, progress, force, track) -> dict:
    t0 = time.perf_counter()
    read = read_dataset(dataset, root, cfg)
    key = cache_key(dataset, read.records, cfg)
    if not force:
        report = _reusable(out_dir, key)
        if report is not None:
            return report
    seqs = defaultdict(list)
    for r in read.records:
        seqs[(r.subject, r.sequence)].append(r)
    jobs = [(sorted(v, key=lambda r: r.frame), cfg, track) for _, v in sorted(seqs.items())]
    results = _run(jobs, workers, progress)
    keep, skips, methods = [], list(read.skipped), Counter()
    for (recs, _, _), res in zip(jobs, results):
        for r, (crop, lm, how, reason) in zip(recs, res):
            if crop is None:
                skips.append({"path": str(r.path), "reason": reason})
            else:
                keep.append((r, crop, lm, how))
                methods[how] += 1
    if not keep:
        raise ValueError(f"no usable frames under {root}: {Counter(s['reason'] for s in skips).most_common(3)}")
    val = choose_validation_subjects([r.subject for r, *_ in keep], cfg.val_fraction, cfg.split_seed)
    seconds = time.perf_counter() - t0
    meta = {"dataset": "synthetic" if read.synthetic else dataset, "reader": dataset, "synthetic": read.synthetic,
            "root": str(Path(root).resolve()), "image_size": cfg.image_size, "data_config": asdict(cfg),
            "val_subjects": sorted(val), "classes": list(CLASSES), "kit_version": __version__,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"), "cache_key": key}
    cache = FaceCache(
        images=np.stack([c for _, c, _, _ in keep]), landmarks=np.stack([lm for *_, lm, _ in keep]).astype(np.float32),
        labels=np.array([r.label for r, *_ in keep], np.int64), subjects=np.array([r.subject for r, *_ in keep]),
        sequences=np.array([r.sequence for r, *_ in keep]), frames=np.array([r.frame for r, *_ in keep], np.int64),
        paths=np.array([str(r.path) for r, *_ in keep]), split=np.array(["val" if r.subject in val else "train"
                                                                          for r, *_ in keep]),
        method=np.array([h for *_, h in keep]), meta=meta)
    split = {s: {"subjects": len(set(cache.subjects[cache.split == s])), "frames": int((cache.split == s).sum())}
             for s in ("train", "val")}
    report = {"dataset": meta["dataset"], "synthetic": read.synthetic, "root": meta["root"], "reused": False,
              "records": len(read.records), "frames_kept": len(cache), "frames_by_method": dict(methods),
              "dataset_landmark_frames": [str(r.path) for r, *_, how in keep if how == "dataset"][:200],
              "skipped": len(skips), "skips_by_reason": dict(Counter(s["reason"] for s in skips)),
              "split": split, "per_class": {CLASSES[k]: int((cache.labels == k).sum()) for k in range(len(CLASSES))},
              "image_size": cfg.image_size, "workers": workers, "seconds": round(seconds, 2),
              "frames_per_second": round(len(read.records) / seconds, 1), "cache": str(out_dir / "cache.npz"),
              "cache_key": key, "skip_examples": skips[:20]}
    save_cache(out_dir / "cache.npz", cache, report)      # cache and report: one archive, one rename
    write_json(out_dir / "report.json", report)           # the readable copy
    return report


def _run(jobs, workers: int, progress: bool):
    bar = tqdm(total=sum(len(j[0]) for j in jobs), unit="frame", disable=not progress, desc="preprocess")
    results = []
    if workers <= 1:
        detector = LandmarkDetector(upsample=jobs[0][1].detector_upsample, detect_width=320 if jobs[0][2] else 0) \
            if jobs else None
        for recs, cfg, track in jobs:
            results.append(process_sequence(recs, cfg, track, detector))
            bar.update(len(recs))
    else:  # spawn: safe whatever the parent imported (torch, a Jupyter kernel)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for (recs, _, _), res in zip(jobs, pool.map(_worker, jobs, chunksize=max(1, len(jobs) // (8 * workers)))):
                results.append(res)
                bar.update(len(recs))
    bar.close()
    return results


def preprocess_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lmexpr preprocess", description=(
        "dlib face detection (once per sequence, then tracked) + 68 landmarks, square crops around the "
        "landmarks resized to --image-size, pixels kept as uint8 (the loader maps them to [-1, 1]), a "
        "seeded subject-disjoint train/validation split; writes OUT/cache.npz and OUT/report.json."))
    ap.add_argument("--dataset", required=True, choices=("ckplus", "oulu", "folder"),
                    help="layout of --root: ckplus (also the synthetic default), oulu (Oulu-CASIA NIR&VIS), "
                         "folder (<subject>/<expression>/<image>)")
    ap.add_argument("--root", required=True, help="dataset root folder, as published")
    ap.add_argument("--out", required=True, help="cache folder to write")
    ap.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    ap.add_argument("--image-size", type=int, default=DataConfig.image_size, help="crop size in pixels (default 128)")
    ap.add_argument("--val-fraction", type=float, default=DataConfig.val_fraction,
                    help="fraction of subjects for validation (default 0.10)")
    ap.add_argument("--seed", type=int, default=DataConfig.split_seed, help="split seed (default 0)")
    ap.add_argument("--force", action="store_true", help="rebuild even if a matching cache exists")
    a = ap.parse_args(argv)
    prog = "lmexpr preprocess"
    for flag, ok, want in (("--image-size", 16 <= a.image_size <= 4096, "between 16 and 4096"),
                           ("--val-fraction", 0 <= a.val_fraction < 1, "a fraction in [0, 1)"),
                           ("--workers", a.workers >= 1, "at least 1")):
        if not ok:
            value = getattr(a, flag[2:].replace("-", "_"))
            print(f"{prog}: {flag} must be {want}, got {value}", file=sys.stderr)
            return 2
    cfg = DataConfig(image_size=a.image_size, val_fraction=a.val_fraction, split_seed=a.seed)
    try:
        writable_dir(a.out, "--out")
        rep = preprocess_dataset(a.dataset, a.root, a.out, cfg, workers=a.workers, force=a.force)
    except (ValueError, OSError) as e:
        msg = str(e).strip().splitlines()
        print(f"{prog}: {msg[0] if msg else type(e).__name__}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lmexpr preprocess: interrupted; the previous cache (if any) is intact", file=sys.stderr)
        return 130
    print(json.dumps({k: v for k, v in rep.items() if k != "skip_examples"}, indent=1))
    return 0
