"""`bench gpu`'s learning check: does the paper configuration learn on the synthetic default, and how fast?

1. The data: the synthetic default's generator (data.synthetic, seed 0: the same identities,
   sequences and frames as `lmexpr synth`), rendered straight into memory and preprocessed as
   preprocess.py does it, except that the crop box comes from the generator's exact landmarks (the
   device machine has no dlib; preprocess falls back to these landmarks where dlib finds no face):
   the first 3 (neutral) and last 3 (peak) frames of every sequence, square crops with the kit's
   margin resized to the model's size, a seeded subject-disjoint split (`val_fraction`).
2. Training: the kit's training step (train.TrainCore: G update, then both Ds; Eq. 7 loss) on
   random batches of its training pairs (data.pairs.PairDataset), bf16 autocast + channels_last on
   CUDA (fp32 on CPU), at a constant learning rate (no decay: the length is a time budget), with
   the stand-in VGG19 for the perceptual loss (no ImageNet weights travel to the device), for the
   seconds the budget leaves.
3. Snapshots at fixed fractions of that time (and at step 0): the generator on M fixed validation
   pairs of the primary protocol (neutral -> expression), PSNR, SSIM (scikit-image) and the
   per-image realism metrics (realism.py: sharpness) on the spot, the images kept for the landmark
   NME that `bench gpu --finish` computes with dlib. At least one training step is taken whatever
   the clock says, so the curve always has a trained point.
4. At the end, Table 5's numbers on F primary pairs for ours, copy source and the landmark warp
   (PSNR, both SSIMs, and realism.py's per-image metrics), a sample grid PNG, and one .npz, written
   atomically (at most `NPZ_LIMIT` bytes of images, sized before writing), with what --finish needs
   (realism.py says what): the fakes, real targets, sources, target landmarks and labels, subject
   ids, the identity gallery (one real neutral frame per validation subject) and P real peak frames
   of the training subjects with their labels.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import matplotlib
import matplotlib.pyplot
import matplotlib.pyplot as plt
import numpy as np
import torch

from lmexpr_nb.bench.gpu.data import warp_rows
from lmexpr_nb.bench.gpu.realism import realism_on_device
from lmexpr_nb.bench.gpu.sections import precision_state
from lmexpr_nb.common.files import atomic_path
from lmexpr_nb.common.viz import image_grid, save_figure
from lmexpr_nb.data.frames import neutral_frame
from lmexpr_nb.data.pairs import PairDataset
from lmexpr_nb.experiments.evalset import union_pairs
from lmexpr_nb.experiments.table6 import identity_gallery
from lmexpr_nb.metrics.psnr_ssim import psnr_batch, ssim_batch
from lmexpr_nb.metrics.result import mean_std
from lmexpr_nb.model.generate import synthesize
from lmexpr_nb.train.core import TrainCore

NPZ_LIMIT = 15 * 2**20            # bytes of image arrays in eval.npz (the device returns files of <= 16 MiB)
SNAPSHOT_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


# ----------------------------------------------------------------------------- training and snapshots

def _pairs_budget(image_size: int, n_primary: int, n_gallery: int, snapshots: int,
                  n_peaks: int = 0) -> tuple[int, int, int]:
    """(F final pairs, M snapshot pairs, P training peak frames) so that the npz's images (4 F: ours, real,
    source, warp; `snapshots` x M; the gallery; P) stay under NPZ_LIMIT."""
    per = image_size * image_size * 3
    room = NPZ_LIMIT // per - n_gallery
    p = max(0, min(n_peaks, room // 3))
    room -= p
    m = max(1, min(16, n_primary, room // (4 * snapshots)))
    f = max(1, min(64, n_primary, (room - snapshots * m) // 4))
    return f, min(m, f), p


def training_neutrals(cache, peaks) -> np.ndarray:
    """Cache indices of one neutral frame (data.frames.neutral_frame) of each training subject among
    `peaks` that has one: what the expression-change classifier reads a peak frame against."""
    subjects = np.asarray(cache.subjects).astype(str)
    labels = np.asarray(cache.labels)
    picks = [neutral_frame(cache, s, "train") for s in sorted(set(subjects[peaks]))]
    return np.array([i for i in picks if labels[i] == 0], np.int64)


def training_peaks(cache, limit: int, seed: int = 0) -> np.ndarray:
    """Cache indices of the training subjects' real peak frames, the last frame of each sequence, at
    most `limit` of them (a seeded pick): what an expression classifier for --finish is trained on."""
    split, labels = np.asarray(cache.split), np.asarray(cache.labels)
    last: dict = {}
    for i in np.flatnonzero((split == "train") & (labels > 0)):
        key = (cache.subjects[i], cache.sequences[i])
        if key not in last or cache.frames[i] > cache.frames[last[key]]:
            last[key] = int(i)
    pick = np.array(sorted(last.values()), np.int64)
    if len(pick) > limit:
        pick = np.sort(np.random.default_rng(seed).choice(pick, limit, replace=False))
    return pick


class _Warps:
    """The warp baseline of the final pairs (it does not depend on the model): on a GPU machine in a
    small process pool while the GPU trains, else in the final step."""

    def __init__(self, images, src_lm, tgt_lm, workers: int):
        self.args, self.futures, self.pool = (images, src_lm, tgt_lm), None, None
        if workers > 0:
            self.pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
            k = max(1, -(-len(images) // (2 * workers)))
            self.futures = [self.pool.submit(warp_rows, images[i:i + k], src_lm[i:i + k], tgt_lm[i:i + k])
                            for i in range(0, len(images), k)]

    def result(self) -> np.ndarray:
        if self.futures is None:
            return warp_rows(*self.args)[0]
        try:
            return np.concatenate([f.result()[0] for f in self.futures])
        finally:
            self.pool.shutdown()


def _quality(fake, real, target_landmarks) -> dict:
    """PSNR, both SSIMs and the per-image realism metrics (realism.py) of generated images."""
    p = psnr_batch(fake, real)
    return {"psnr": mean_std(p[np.isfinite(p)])[0], "ssim_wang": mean_std(ssim_batch(fake, real, "wang"))[0],
            "ssim_skimage": mean_std(ssim_batch(fake, real, "skimage"))[0], "n": len(real),
            "n_identical": int(np.isinf(p).sum()), **realism_on_device(fake, real, target_landmarks)}


def _point(step: int, train_s: float, imgs: int, q: dict) -> dict:
    """One point of the learning curve from _quality's numbers."""
    return {"step": step, "train_seconds": round(train_s, 2), "images_seen": imgs, "psnr": q["psnr"],
            "ssim_wang": q["ssim_wang"], "ssim_skimage": q["ssim_skimage"],
            **{k: v["value"] for k, v in q.items() if isinstance(v, dict)},
            "landmark_nme": "computed by bench gpu --finish"}


def save_eval(path: Path, **arrays) -> None:
    """eval.npz, compressed, written atomically: a run stopped mid-write leaves the old file or none,
    never a torn zip that --finish cannot read."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:        # a file object: numpy would add ".npz" to the temporary's name
            np.savez_compressed(fh, **arrays)


def learning_check(cfg, cache, device: torch.device, deadline: float, out_dir: Path, seed: int = 0,
                   max_train_seconds: float | None = None, progress: dict | None = None, log=print,
                   min_steps: int = 1) -> dict:
    """Train until the final numbers can still be made by `deadline` (a time.perf_counter() value), with
    snapshots, then the final Table 5 numbers; writes out_dir/eval.npz and out_dir/samples.png. The time
    the final step needs is estimated from the first snapshot and a warp. At least `min_steps` training
    steps are taken. Returns the section's JSON; `progress` (a dict) holds the curve so far, for a run
    the budget cuts short."""
    progress = {} if progress is None else progress
    matplotlib.use("Agg")
    t_start = time.perf_counter()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    core = TrainCore(cfg, device, amp=torch.bfloat16 if cuda else None, channels_last=cuda, compile=False)
    ds = PairDataset(cache, "train")
    src, tgt, rows, n_all, _ = union_pairs(cache, ("neutral-to-expression",), 0, seed, "val")
    gallery = identity_gallery(cache, "val")
    all_peaks = training_peaks(cache, len(cache), seed)
    n_train_subjects = len(set(np.asarray(cache.subjects)[np.asarray(cache.split) == "train"]))
    f, m, n_peaks = _pairs_budget(cfg.model.image_size, len(src), len(gallery) + n_train_subjects,
                                  len(SNAPSHOT_FRACTIONS), len(all_peaks))     # + one neutral frame per subject
    if not cuda:
        f, m = min(f, 8), min(m, 4)           # a small CPU: the final step (and --finish) must stay short
    peaks = training_peaks(cache, n_peaks, seed)
    neutrals = training_neutrals(cache, peaks)
    pick = np.random.default_rng(seed).choice(len(src), f, replace=False)    # random order: subjects mix
    fs, ft = src[pick], tgt[pick]                 # the final pairs; the first m are the snapshot pairs
    lm = np.asarray(cache.landmarks, np.float32)
    labels = np.asarray(cache.labels)
    G = core.generator

    def generate(s, t):
        return synthesize(G, cache.images[s], lm[s], lm[t], labels[t], cfg.model, batch_size=64)

    rng = np.random.default_rng(seed)
    snaps, curve = [], []
    progress.update(status="cut short by the time budget (the curve so far)", curve=curve)
    train_s, step, imgs = 0.0, 0, 0
    b = cfg.train.batch_size
    workers = min(6, (os.cpu_count() or 1) - 2) if cuda else 0
    warps = _Warps(cache.images[fs], lm[fs], lm[ft], workers)
    _quality(generate(fs[:1], ft[:1]), cache.images[ft[:1]], lm[ft[:1]])      # warm-up: first calls, imports
    t_warp = 0.0
    if not workers:
        warp_rows(cache.images[fs[:1]], lm[fs[:1]], lm[ft[:1]])
        times = []
        for _ in range(2):                    # the slower of two: a busy CPU must not run past the deadline
            t0 = time.perf_counter()
            warp_rows(cache.images[fs[:1]], lm[fs[:1]], lm[ft[:1]])
            times.append(time.perf_counter() - t0)
        t_warp = max(times)
    t0 = time.perf_counter()
    snaps.append(generate(fs[:m], ft[:m]))
    q = _quality(snaps[0], cache.images[ft[:m]], lm[ft[:m]])
    t_snap = time.perf_counter() - t0
    # the final step: ours on f pairs and the metrics of 3 methods (~ 3 f/m snapshots), the warps, the grid
    reserve = 1.3 * (3 * t_snap * f / m + t_warp * f) + 4.0        # + the sample grid (matplotlib) and the npz
    t_begin = time.perf_counter()
    t_end = deadline - reserve
    if max_train_seconds is not None:
        t_end = min(t_end, t_begin + max_train_seconds)
    span = max(t_end - t_begin, 1e-6)
    log(f"  learn: {max(t_end - t_begin, 0):.0f} s of training; {reserve:.1f} s kept for the final {f} pairs")
    curve.append(_point(0, 0.0, 0, q))
    log(f"  learn: step      0,     0.0 s: PSNR {q['psnr']:.2f} dB, SSIM {q['ssim_wang']:.3f} "
        f"(on {m} validation pairs)")
    next_snap = list(SNAPSHOT_FRACTIONS[1:])
    core.train_mode(True)
    interval = time.perf_counter()        # training time is wall time between snapshots (no per-step sync)
    while True:
        now = time.perf_counter()
        frac = 1.0 - (t_end - now) / span
        if step >= min_steps and next_snap and (frac >= next_snap[0] or now >= t_end):
            while next_snap and (frac >= next_snap[0] or now >= t_end):
                next_snap.pop(0)           # fractions passed since the last step: one snapshot for them all
            if step == curve[-1]["step"]:  # no step since the last snapshot (no time to train)
                if not next_snap:
                    break
                interval = time.perf_counter()
                continue
            if cuda:
                torch.cuda.synchronize(device)
            train_s += time.perf_counter() - interval
            fake = generate(fs[:m], ft[:m])
            q = _quality(fake, cache.images[ft[:m]], lm[ft[:m]])
            snaps.append(fake)
            curve.append(_point(step, train_s, imgs, q))
            log(f"  learn: step {step:6d}, {train_s:7.1f} s: PSNR {q['psnr']:.2f} dB, SSIM {q['ssim_wang']:.3f} "
                f"(on {m} validation pairs)")
            progress.update(steps=step, train_seconds=round(train_s, 2))
            if not next_snap:
                break
            interval = time.perf_counter()
            continue
        batch = ds.batch(rng.integers(len(ds), size=b))
        if cuda:
            batch = {k: v.pin_memory() for k, v in batch.items()}
        terms = core.step(batch, step)
        step, imgs = step + 1, imgs + b
        if step % 50 == 0 and not bool(torch.isfinite(terms).all()):
            raise FloatingPointError(f"non-finite loss at step {step}")
    finite = bool(torch.isfinite(terms).all()) if step else True
    progress["status"] = "cut short by the time budget in the final step (the curve so far)"
    # the final numbers: ours (the last snapshot's weights) and the two baselines on F pairs
    ours = generate(fs, ft)
    base = {"copy source": cache.images[fs].copy(), "warp to target landmarks": warps.result()}
    real = cache.images[ft]
    table5 = {"our method": _quality(ours, real, lm[ft]), **{k: _quality(v, real, lm[ft]) for k, v in base.items()}}
    keep = ~np.isin(fs, gallery) & ~np.isin(ft, gallery)
    subjects = np.asarray(cache.subjects).astype(str)
    save_eval(out_dir / "eval.npz", snap_fakes=np.stack(snaps), snap_steps=np.array([c["step"] for c in curve]),
              snap_seconds=np.array([c["train_seconds"] for c in curve]), snap_pairs=np.int64(m),
              real=real, source=cache.images[fs], warp=base["warp to target landmarks"], ours=ours,
              source_landmarks=lm[fs], target_landmarks=lm[ft], target_labels=labels[ft],
              subjects=subjects[ft], probe_keep=keep, gallery=cache.images[gallery],
              gallery_ids=subjects[gallery], train_peaks=cache.images[peaks],
              train_peak_labels=labels[peaks], train_peak_subjects=subjects[peaks],
              train_neutrals=cache.images[neutrals], train_neutral_subjects=subjects[neutrals])
    _sample_grid(cache, fs, ft, base, snaps, curve, out_dir / "samples.png", cfg)
    return {"status": "ok", "train_seconds": round(train_s, 2), "steps": step, "batch": b,
            "images_per_second": round(imgs / train_s, 2) if train_s else None, "losses_finite": finite,
            "dtype": core.dtype_name, "channels_last": core.channels_last, "precision": precision_state(),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if cuda else
            "unmeasured: no GPU",
            "data": {"frames": len(cache), "train_frames": int((cache.split == "train").sum()),
                     "val_subjects": cache.meta.get("val_subjects"), "training_pairs": len(ds),
                     "primary_val_pairs": int(n_all.get("neutral-to-expression", 0)),
                     "final_pairs": int(f), "snapshot_pairs": int(m), "gallery": len(gallery),
                     "identity_probes": int(keep.sum()), "training_peak_frames": int(len(peaks)),
                     "training_neutral_frames": int(len(neutrals)),
                     "training_peak_sequences": int(len(all_peaks))},
            "curve": curve, "table5": table5, "files": ["eval.npz", "samples.png"],
            "final_reserve_seconds": round(reserve, 1),
            "wall_seconds": round(time.perf_counter() - t_start, 1),
            "perceptual": "random-init VGG19 stand-in (no ImageNet weights on the device)",
            "lr": "constant (time budget, no decay)"}


def _sample_grid(cache, fs, ft, base, snaps, curve, path, cfg) -> None:
    n = min(6 if cfg.model.image_size >= 64 else 3, len(snaps[0]))
    cols = [list(cache.images[fs[:n]]), list(cache.images[ft[:n]]), list(base["warp to target landmarks"][:n])]
    cols += [list(s[:n]) for s in snaps]
    rows = [[c[i] for c in cols] for i in range(n)]
    titles = ["source", "target", "warp"] + [f"step {c['step']}\n{c['train_seconds']:.0f} s" for c in curve]
    footer = (f"bench gpu learning check: synthetic default (not real faces), {cfg.model.image_size} px, "
              f"{cfg.model.n_blocks} blocks, stand-in VGG19; neutral -> expression validation pairs")
    fig = image_grid(rows, col_titles=titles, footer=footer)
    save_figure(fig, path)
    plt.close(fig)
