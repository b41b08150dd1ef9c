"""`lmexpr bench preprocess`: frames/s of preprocessing, tracked vs naive (the synthetic set, or --data).

Same frames, same run: (a) the kit's path, detecting once per sequence (on a 320 px wide copy) and tracking
the face with the shape predictor; (b) the naive path, running dlib's HOG detector at full
resolution on every frame.
Both read and decode the PNG frames, find landmarks, crop and resize. Reported twice: end to
end (with image decoding, which both pay alike) and for the landmark stage alone.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from lmexpr_nb.common.files import write_json
from lmexpr_nb.config import DataConfig
from lmexpr_nb.data.readers import read_dataset
from lmexpr_nb.data.synthetic.write import write_synthetic_ckplus
from lmexpr_nb.landmarks.detect import LandmarkDetector, read_image, track_sequence
from lmexpr_nb.landmarks.preprocess import preprocess_dataset


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def bench_preprocess(out_json: str | Path = "outputs/bench/preprocess.json", subjects: int = 6, frames: int = 10,
                     workers: int = 2, data: str | Path | None = None) -> dict:

    root = Path(data) if data else Path("data") / f"bench-synthetic-{subjects}x{frames}"
    if not (root / "SYNTHETIC.md").is_file() and not data:
        write_synthetic_ckplus(root, subjects=subjects, frames=frames, seed=0)
    # every frame of every sequence, so tracking runs through whole sequences
    cfg = DataConfig(first_k=frames // 2, last_k=frames - frames // 2)
    records = read_dataset("ckplus", root, cfg).records
    n = len(records)
    if data:        # say what this tree is: real unless it carries the synthetic marker
        kind = "synthetic" if (root / "SYNTHETIC.md").is_file() else "real"
        label = (f"{kind} CK+-layout tree {root} ({len({r.subject for r in records})} subjects, "
                 f"{len({(r.subject, r.sequence) for r in records})} sequences, {n} frames)")
    else:
        label = f"synthetic ({subjects} subjects x 7 sequences x {frames} frames, 640x490)"
    result = {"data": label,
              "frames": n, "workers": workers, "cores": os.cpu_count(), "machine": platform.processor() or platform.machine()}
    for name, track in (("tracked", True), ("naive", False)):
        out = Path("/tmp") / f"lmexpr-bench-cache-{name}"
        rep, sec = _timed(lambda: preprocess_dataset("ckplus", root, out, cfg, workers=workers, progress=False,
                                                     force=True, track=track))
        result[f"{name}_frames_per_s"] = round(n / sec, 1)
        result[f"{name}_by_method"] = rep["frames_by_method"]
    # landmark stage alone, one process: decode first, then time detection/tracking only
    seqs = {}
    for r in records:
        seqs.setdefault((r.subject, r.sequence), []).append(r)
    decoded = [[read_image(r.path) for r in sorted(v, key=lambda r: r.frame)] for v in list(seqs.values())[:14]]
    m = sum(len(s) for s in decoded)
    for name, track in (("tracked", True), ("naive", False)):
        det = LandmarkDetector(detect_width=320 if track else 0)
        _, sec = _timed(lambda: [list(track_sequence(det, s, track=track)) for s in decoded])
        result[f"{name}_landmark_stage_frames_per_s_1proc"] = round(m / sec, 1)
    result["speedup_end_to_end"] = round(result["tracked_frames_per_s"] / result["naive_frames_per_s"], 2)
    result["speedup_landmark_stage"] = round(result["tracked_landmark_stage_frames_per_s_1proc"]
                                             / result["naive_landmark_stage_frames_per_s_1proc"], 2)
    write_json(out_json, result)
    return result


def bench_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lmexpr bench preprocess", description=(
        "Preprocessing throughput on the synthetic set: the tracked path vs naive per-frame detection, "
        "same frames, same run; prints frames/s and writes JSON."))
    ap.add_argument("--subjects", type=int, default=6, help="synthetic subjects (default 6)")
    ap.add_argument("--frames", type=int, default=10, help="frames per sequence (default 10)")
    ap.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    ap.add_argument("--data", default=None, help="use this CK+-layout tree instead of generating one")
    ap.add_argument("--out", default="outputs/bench/preprocess.json", help="JSON output path")
    a = ap.parse_args(argv)
    r = bench_preprocess(a.out, a.subjects, a.frames, a.workers, a.data)
    print(json.dumps(r, indent=1))
    print(f"\npreprocess on {r['data']}: tracked {r['tracked_frames_per_s']} frames/s vs naive "
          f"{r['naive_frames_per_s']} frames/s ({r['speedup_end_to_end']}x end to end, {r['workers']} workers, "
          f"{r['cores']} cores); landmark stage alone {r['speedup_landmark_stage']}x. JSON: {a.out}")
    return 0
