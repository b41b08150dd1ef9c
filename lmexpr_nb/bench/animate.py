"""`python -m lmexpr_nb bench animate`: how fast and how steady an animation is (explore/animate.py).

Speed, on the CPU (or --device): frames per second of the generator over a batch of driver frames
(one call, `--batch` frames, after a warm-up call), at the smoke and at the paper model size, eager
and with every BatchNorm folded into its conv (bench/infer.py's fold_batchnorm); random weights,
since speed does not depend on them. And the whole per-frame path with the smoke-sized model:
motion transfer, generation, paste-back into a 640x490 photo (frames/s of animate_photo after
tracking; tracking's own frames/s beside it).

Stability, on the synthetic default: a rendered neutral -> peak sequence of one subject (drifting
head, `--frames` frames, landmarks tracked by the preprocessing tracker) drives a rendered photo of
another subject. Reported per method:
- output change: the mean absolute frame-to-frame change of the output, in grey levels of 255,
  inside the photo's face (the convex hull of its landmarks, brows raised to the forehead);
- driver change: the mean frame-to-frame motion of the driver's tracked landmarks, in inter-ocular
  distances (and that of its true, rendered landmarks: the tracker's own jitter is the difference);
- change per motion: output change / driver change (grey levels per inter-ocular distance);
- the same with the driver's true (rendered) landmarks instead of tracked ones: the generator's
  own response, without the tracker's jitter;
- a still driver (the first frame repeated): the output change must be 0.
Methods: the generator (`--model`, default outputs/smoke/train; an untrained stand-in, labelled,
when there is none), and the warp-the-photo baseline (experiments/baselines.py's piecewise-affine
warp of the photo's face crop to the same motion-transfer targets, pasted back the same way).
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time

import numpy as np
import torch

from lmexpr_nb.bench.infer import example_batch, fold_batchnorm
from lmexpr_nb.common.files import write_json
from lmexpr_nb.config import ModelConfig, load_profile
from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.data.synthetic.render import render_sequence, sequence_order
from lmexpr_nb.experiments.baselines import warp_to_landmarks
from lmexpr_nb.explore.animate import animate_photo, plan_animation
from lmexpr_nb.explore.drive import Driver, DriverTrack, track_driver
from lmexpr_nb.explore.infer import FaceEditor, load_model, prepare_face
from lmexpr_nb.explore.paste import feather_mask, paste_back
from lmexpr_nb.landmarks.align import face_frame
from lmexpr_nb.landmarks.detect import LandmarkDetector
from lmexpr_nb.metrics.sharpness import hull_mask
from lmexpr_nb.model.nets import build_generator
from lmexpr_nb.model.trained import NoTrainedModel, untrained

PHOTO_SIZE = (640, 490)


def generator_fps(cfg: ModelConfig, batch: int = 8, iters: int = 2, device="cpu") -> dict:
    """Frames/s of one generator call over `batch` frames, eager and BN-folded (random weights)."""
    torch.manual_seed(0)
    G = build_generator(cfg).to(device).eval()
    inputs = example_batch(cfg, batch, device)
    out = {"config": {k: getattr(cfg, k) for k in ("image_size", "ngf", "n_blocks", "n_downsampling")},
           "batch": batch, "iters": iters}
    for name, net in (("eager", G), ("bn_folded", fold_batchnorm(G))):
        with torch.no_grad():
            net(*inputs)                                         # warm-up
            times = []
            for _ in range(iters):
                t0 = time.perf_counter()
                net(*inputs)
                times.append(time.perf_counter() - t0)
        out[f"{name}_frames_per_s"] = batch / float(np.median(times))
    return out


def _scene(frames: int, seed: int = 0, photo_subject: int = 2, driver_subject: int = 1, expression="happy"):
    """(photo, driver frames, their true landmarks, the driver's expression) of the synthetic default."""
    photo = next(render_sequence(seed, photo_subject, 1, frames=2, size=PHOTO_SIZE))[1]
    q = sequence_order(seed, driver_subject).index(expression) + 1
    seq = list(render_sequence(seed, driver_subject, q, frames=frames, size=PHOTO_SIZE))
    return photo, [f[1] for f in seq], np.stack([f[2] for f in seq]), CLASSES.index(expression)


def _driver(frames, name: str) -> Driver:
    h, w = frames[0].shape[:2]
    return Driver("frames", name, len(frames), (w, h), lambda: iter(frames))


def face_region(landmarks, shape) -> np.ndarray:
    """Boolean (H, W): the convex hull of the landmarks, with the brows raised by 0.6 inter-ocular
    distances to take in the forehead."""
    lm = np.asarray(landmarks, np.float64)
    _, down, iod = face_frame(lm)
    return hull_mask(np.concatenate([lm, lm[17:27] - 0.6 * iod * down]), shape, shrink=0)


def frame_change(frames, region) -> float:
    """Mean |frame t+1 - frame t| inside `region`, grey levels of 255, over the frame pairs."""
    f = np.asarray(frames, np.float64)
    return float(np.mean([np.abs(b - a)[region].mean() for a, b in itertools.pairwise(f)])) if len(f) > 1 else 0.0


def landmark_change(lms) -> float:
    """Mean frame-to-frame landmark motion (mean point distance) in the first frame's inter-ocular distances."""
    lms = np.asarray(lms, np.float64)
    iod = face_frame(lms[0])[2]
    return float(np.mean(np.linalg.norm(np.diff(lms, axis=0), axis=2).mean(1)) / iod) if len(lms) > 1 else 0.0


def warp_frames(photo, face, plan) -> list[np.ndarray]:
    """The warp-the-photo baseline: the photo's face crop warped to each target, pasted back."""
    mask = feather_mask(face.crop.shape[0])
    return [paste_back(photo, warp_to_landmarks(face.crop, face.landmarks, t), face.to_crop, mask)[0]
            for t in plan.targets]


def stability(editor, frames: int = 16, batch: int = 8, seed: int = 0) -> dict:
    """The stability numbers of the module doc, for the generator and the warp baseline."""
    photo, drive_frames, true_lm, k = _scene(frames, seed)
    det = LandmarkDetector()
    face = prepare_face(photo, editor.cfg.model.image_size, editor.cfg.data.crop_margin, det)
    region = face_region(face.frame_landmarks, photo.shape)
    out = {"scene": f"synthetic default (seed {seed}): subject 1's {CLASSES[k]} sequence, {frames} frames "
                    f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, drives subject 2's neutral frame",
           "face_pixels": int(region.sum())}
    t0 = time.perf_counter()
    track = track_driver(_driver(drive_frames, "rendered sequence"), det)
    out["tracking_frames_per_s"] = frames / (time.perf_counter() - t0)
    out["driver_change_tracked_iod"] = landmark_change(track.landmarks)
    out["driver_change_true_iod"] = landmark_change(true_lm)
    out["tracker_error_nme"] = float(np.mean(np.linalg.norm(track.landmarks - true_lm, axis=2).mean(1))
                                     / face_frame(true_lm[0])[2])
    still = _driver([drive_frames[0]] * frames, "still driver")
    exact = DriverTrack(np.asarray(true_lm, np.float64), ["given"] * frames)
    for name, drv, tr in (("sequence", _driver(drive_frames, "rendered sequence"), track),
                          ("sequence, true landmarks", _driver(drive_frames, "rendered sequence"), exact),
                          ("still", still, track_driver(still, det))):
        t0 = time.perf_counter()
        anim = animate_photo(editor, photo, drv, label=k, batch_size=batch, detector=det, track=tr)
        sec = time.perf_counter() - t0
        plan = plan_animation(face.landmarks, tr.landmarks, k, expressions=editor.expressions,
                              num_classes=editor.cfg.model.num_classes)
        warped = warp_frames(photo, face, plan)
        for method, fr in (("generator", anim.frames), ("warp baseline", warped)):
            change = frame_change(fr, region)
            motion = landmark_change(tr.landmarks)
            out[f"{name}/{method}"] = {"output_change_grey": change, "driver_change_iod": motion,
                                       "change_per_iod": change / motion if motion > 0 else None}
        out[f"{name}/generator"]["pipeline_frames_per_s"] = frames / sec
    return out


def bench_animate(out_json="outputs/bench/animate.json", model=None, frames: int = 16, batch: int = 8,
                  iters: int = 2, device: str = "cpu", sizes=("smoke", "paper"), say=print) -> dict:
    """Speed and stability (module doc); prints them and writes `out_json` with their provenance."""
    res = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "cores": os.cpu_count(), "machine": platform.processor() or platform.machine(),
           "load_average_at_start": list(os.getloadavg()),
           "weights_for_speed": "random init (speed does not depend on the weights)"}
    for size in sizes:
        cfg = load_profile("smoke").model if size == "smoke" else ModelConfig()
        r = generator_fps(cfg, batch, iters, device)
        res[f"fps_{size}"] = r
        say(f"{size} size ({cfg.image_size}px, ngf {cfg.ngf}, {cfg.n_blocks} blocks), batch {batch}, {device}: "
            f"{r['eager_frames_per_s']:.1f} frames/s eager, {r['bn_folded_frames_per_s']:.1f} BN folded "
            f"(median of {iters} calls; random weights)", flush=True)
    try:
        editor = load_model(model or "outputs/smoke/train", device=device)
    except NoTrainedModel:
        stand_in = untrained(load_profile("smoke"), device)
        editor = FaceEditor(stand_in.generator, stand_in.config, None, stand_in)
    trained = editor.model
    res["weights_for_stability"] = trained.weights
    res["data_for_stability"] = "synthetic default (rendered here)"
    res["expressions"] = ("expressions.npz beside the checkpoint" if editor.expressions is not None
                          else "none (the driver's own peak is intensity 1)")
    st = stability(editor, frames, batch)
    res["stability"] = st
    say(f"stability on the {st['scene']}; weights: {trained.weights}")
    say(f"  driver's landmarks move {st['driver_change_tracked_iod']:.4f} iod a frame tracked "
        f"({st['driver_change_true_iod']:.4f} true; tracker error {st['tracker_error_nme']:.4f} NME); "
        f"tracking {st['tracking_frames_per_s']:.1f} frames/s")
    for key in [f"{n}/{m}" for n in ("sequence", "sequence, true landmarks", "still")
                for m in ("generator", "warp baseline")]:
        r = st[key]
        per = f", {r['change_per_iod']:.0f} grey levels per iod" if r["change_per_iod"] else ""
        say(f"  {key:<40} output change {r['output_change_grey']:.3f} grey levels a frame inside the face "
            f"({st['face_pixels']} px){per}"
            + (f"; whole path {r['pipeline_frames_per_s']:.1f} frames/s" if "pipeline_frames_per_s" in r else ""))
    res["load_average_at_end"] = list(os.getloadavg())
    busy = max(res["load_average_at_start"][0], res["load_average_at_end"][0]) > (res["cores"] or 1)
    say(f"load average (1 min) at start {res['load_average_at_start'][0]:.1f}, at end "
        f"{res['load_average_at_end'][0]:.1f}, on {res['cores']} cores"
        + (": other processes shared the CPU, so these frames/s are low" if busy else ""))
    if out_json:
        write_json(out_json, res)
        say(f"wrote {out_json}")
    return res


def bench_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lmexpr bench animate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="outputs/bench/animate.json", help="JSON file to write")
    ap.add_argument("--model", default=None, help="checkpoint for the stability numbers (default outputs/smoke/train)")
    ap.add_argument("--frames", type=int, default=16, help="driver frames (default 16)")
    ap.add_argument("--batch", type=int, default=8, help="frames per generator call (default 8)")
    ap.add_argument("--iters", type=int, default=2, help="timed generator calls per size (default 2)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    ap.add_argument("--sizes", default="smoke,paper", help="model sizes to time (default smoke,paper)")
    a = ap.parse_args(argv)
    try:
        if a.frames < 2 or a.batch < 1 or a.iters < 1:
            raise ValueError("--frames must be >= 2, --batch and --iters >= 1")
        sizes = [s for s in a.sizes.split(",") if s]
        if not set(sizes) <= {"smoke", "paper"}:
            raise ValueError(f"--sizes: smoke and/or paper, got {a.sizes}")
        bench_animate(a.out, a.model, a.frames, a.batch, a.iters, a.device, sizes)
    except (OSError, ValueError, RuntimeError) as e:
        print(f"lmexpr bench animate: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(bench_main())
