"""The CK+ tree on disk: PNG frames, landmark and emotion files, the `SYNTHETIC.md` marker.

The layout is CK+'s: `cohn-kanade-images/S001/003/S001_003_00000001.png`,
`Emotion/S001/003/S001_003_00000010_emotion.txt` (last frame only, one float
1..7), `Landmarks/S001/003/S001_003_00000001_landmarks.txt` (every frame, 68 lines).
Landmark files use 0-based pixel coordinates with pixel centres on integers (dlib's
convention). `write_synthetic_ckplus` builds the tree next to its destination and
renames it into place; `GENERATOR_VERSION` says which generator made a tree.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from lmexpr_nb.common.files import writable_dir, write_text
from lmexpr_nb.data.synthetic.expression import EXPRESSIONS
from lmexpr_nb.data.synthetic.render import render_sequence, sequence_order

GENERATOR_VERSION = "1.1"      # 1.1: our own constructed mean shape
MARKER = "SYNTHETIC.md"


def _fmt_landmarks(lm: np.ndarray) -> str:
    return "".join(f"{x:16.7e}{y:16.7e}\n" for x, y in lm)


def _write_sequence(args) -> int:
    """Worker: render one sequence and write its PNGs, landmark files and emotion file."""
    root, seed, subject, sequence, frames, size = args
    sid, qid = f"S{subject:03d}", f"{sequence:03d}"
    img_dir = Path(root, "cohn-kanade-images", sid, qid)
    lm_dir = Path(root, "Landmarks", sid, qid)
    for d in (img_dir, lm_dir):
        d.mkdir(parents=True, exist_ok=True)
    n = 0
    for f, img, lm, _ in render_sequence(seed, subject, sequence, frames, size):
        stem = f"{sid}_{qid}_{f:08d}"
        Image.fromarray(img, "RGB").save(img_dir / f"{stem}.png", compress_level=1)  # fast; ~15% larger than level 3
        (lm_dir / f"{stem}_landmarks.txt").write_text(_fmt_landmarks(lm))
        n += 1
    code = EXPRESSIONS.index(sequence_order(seed, subject)[sequence - 1]) + 1
    emo = Path(root, "Emotion", sid, qid, f"{sid}_{qid}_{frames:08d}_emotion.txt")
    emo.parent.mkdir(parents=True, exist_ok=True)
    emo.write_text(f"{float(code):16.7e}\n")
    return n


def _marker_text(subjects: int, frames: int, seed: int, size: tuple[int, int]) -> str:
    return (
        "# Synthetic CK+-layout dataset (lmexpr-nb embedded default)\n\n"
        "Synthetic: not real faces; every output made from it is labelled synthetic.\n\n"
        "Procedural drawings made by `lmexpr_nb.data.synthetic` (numpy, SciPy,\n"
        "Pillow; nothing downloaded) in the CK+ layout, so that the kit's CK+ reader and\n"
        "preprocessing run without a licensed dataset. Numbers made from it show that the\n"
        "pipeline works, not what the paper's model does on CK+.\n\n"
        f"- generator version: {GENERATOR_VERSION}\n"
        f"- seed: {seed}\n"
        f"- subjects: {subjects} (S001..S{subjects:03d}), 7 sequences each (one per CK+ emotion,\n"
        f"  sequence numbers in a seeded shuffled order), {frames} frames each, neutral -> peak\n"
        f"- frame size: {size[0]} x {size[1]} RGB PNG\n"
        "- Emotion files: last frame of every sequence, CK+ codes 1..7\n"
        "  (anger, contempt, disgust, fear, happy, sadness, surprise)\n"
        "- Landmarks: every frame, 68 iBUG points, 0-based pixel coordinates; exact (the\n"
        "  faces are drawn from them)\n"
    )


def write_synthetic_ckplus(out_dir: str | os.PathLike, subjects: int = 24, frames: int = 10, seed: int = 0,
                           size: tuple[int, int] = (640, 490), workers: int = 1) -> dict:
    """Write the synthetic dataset in the CK+ layout under `out_dir`; return a summary.

    The tree is built in a sibling temporary folder and renamed into place at the end, so
    `out_dir` is either complete (with its `SYNTHETIC.md` marker) or absent. An existing
    `out_dir` is replaced only if it is an earlier synthetic tree (has the marker) or
    empty; anything else (say, a real CK+ copy) is refused.
    """
    if subjects < 1 or frames < 1:
        raise ValueError("subjects and frames must be >= 1")
    t0 = time.perf_counter()
    out = Path(out_dir)
    if out.exists() and not (out / MARKER).is_file() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a synthetic dataset (no {MARKER}); "
                              "choose an empty or new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    size = (int(size[0]), int(size[1]))
    try:
        write_text(tmp / MARKER, _marker_text(subjects, frames, seed, size))
        jobs = [(str(tmp), int(seed), s, q, int(frames), size)
                for s in range(1, subjects + 1) for q in range(1, len(EXPRESSIONS) + 1)]
        if workers and workers > 1:
            with ProcessPoolExecutor(max_workers=int(workers)) as ex:
                n = sum(ex.map(_write_sequence, jobs, chunksize=len(EXPRESSIONS)))
        else:
            n = sum(map(_write_sequence, jobs))
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return {"root": str(out), "synthetic": True, "generator_version": GENERATOR_VERSION, "seed": int(seed),
            "subjects": subjects, "sequences": len(jobs), "frames_per_sequence": frames, "images": n,
            "landmark_files": n, "emotion_files": len(jobs), "size": list(size),
            "seconds": round(time.perf_counter() - t0, 2)}


def synth_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lmexpr synth", description=(
        "Write the embedded synthetic dataset in the CK+ layout (cohn-kanade-images/, Emotion/, Landmarks/): "
        "procedural faces, not real ones; everything made from it is labelled synthetic."))
    ap.add_argument("--out", required=True, help="folder to write (created)")
    ap.add_argument("--subjects", type=int, default=24, help="number of identities (default 24)")
    ap.add_argument("--frames", type=int, default=10, help="frames per neutral->peak sequence (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical files")
    ap.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    a = ap.parse_args(argv)
    if a.subjects < 1 or a.frames < 2:
        print("lmexpr synth: need --subjects >= 1 and --frames >= 2", file=sys.stderr)
        return 2
    try:
        writable_dir(Path(a.out).expanduser().parent, "the folder of --out")
        if Path(a.out).exists() and not Path(a.out).is_dir():
            raise ValueError(f"--out {a.out} is a file: give a folder to write the dataset into")
        s = write_synthetic_ckplus(a.out, subjects=a.subjects, frames=a.frames, seed=a.seed, workers=a.workers)
    except (OSError, ValueError) as e:
        print(f"lmexpr synth: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    print(f"wrote synthetic CK+-layout dataset to {a.out}: {s}")
    return 0
