"""What a training run leaves to look at: losses.csv and the sample grids under samples/.

    losses.csv   step, the loss terms (means over the log_every steps up to `step`), lr, seconds
    samples/step_NNNNNN.png   source | target | generated for a few fixed pairs
    train_summary.json        what ran, on what, with which weights, how fast (run_summary)

A resumed run keeps only the rows up to its checkpoint's step (a crash may have logged a few
more), so no step appears twice and the file equals an uninterrupted run's.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from lmexpr_nb.common.files import atomic_path
from lmexpr_nb.train.core import TERMS

LOSSES_CSV = "losses.csv"
CSV_FIELDS = ("step",) + TERMS + ("lr", "seconds")
SAMPLE_ROWS = 4


def start_loss_csv(path: Path, step: int) -> None:
    """Fresh run (step 0): a new file with the header. Resume: keep only rows up to `step`."""
    rows = []
    if step > 0 and path.is_file():
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("step") and int(r["step"]) <= step]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            for r in rows:
                w.writerow({k: r.get(k, "") for k in CSV_FIELDS})


def loss_row(step: int, window: dict, lr: float, seconds: float) -> dict:
    """The CSV row of the loss-log window ({"sum": per term, "count": steps}): each term's mean."""
    n = max(window["count"], 1)
    return {"step": step, **{t: f"{s / n:.6g}" for t, s in zip(TERMS, window["sum"])},
            "lr": f"{lr:.6g}", "seconds": f"{seconds:.2f}"}


def append_loss_row(path: Path, row: dict) -> None:
    with open(path, "a", newline="") as f:
        csv.DictWriter(f, fieldnames=CSV_FIELDS).writerow(row)


def sample_rows(pairs: np.ndarray, subjects) -> list[int]:
    """Rows of `pairs` ((P, 2) source, target) shown in the sample grids: up to SAMPLE_ROWS subjects
    spread over the list, for each its first frame -> its last frame (in a neutral -> peak
    sequence, the largest change)."""
    subj = np.asarray(subjects).astype(str)[pairs[:, 0]]
    firsts = []
    for name in dict.fromkeys(subj.tolist()):             # subjects in pair-list order
        rows = np.flatnonzero(subj == name)
        p = pairs[rows]
        best = np.lexsort((-p[:, 1], p[:, 0]))[0]           # smallest source, then largest target
        firsts.append(int(rows[best]))
    pick = np.unique(np.linspace(0, len(firsts) - 1, min(SAMPLE_ROWS, len(firsts))).round().astype(int))
    return [firsts[i] for i in pick]


def sample_picture(cols: list[np.ndarray], which: str, step: int) -> Image.Image:
    """Three columns of uint8 (N,S,S,3) images (source, target, generated) as one captioned picture;
    crops under 128 px are enlarged (nearest) so they can be seen."""
    n, s = cols[0].shape[0], cols[0].shape[1]
    head, pad = 14, 2
    grid = np.full((head + n * (s + pad), 3 * (s + pad), 3), 255, np.uint8)
    for r in range(n):
        for c in range(3):
            y, x = head + r * (s + pad), c * (s + pad)
            grid[y:y + s, x:x + s] = cols[c][r]
    img = Image.fromarray(grid)
    if s < 128:
        f = 128 // s
        img = img.resize((img.width * f, img.height * f), Image.NEAREST)
    ImageDraw.Draw(img).text((2, 1), f"source | target | generated ({which} pairs), step {step}", fill=(0, 0, 0))
    return img


def run_summary(tr, prov: dict, saved_step: int | None, status: str, start_step: int, seconds: float) -> dict:
    """What train_summary.json holds for trainer `tr` (train/trainer.py's Trainer, its provenance
    `prov` and last checkpoint's step) after a run that started at `start_step` and trained for
    `seconds`: the status, the data, the recipe's settings, the device, the speed and where the
    checkpoint, the log and the samples are."""
    t = tr.cfg.train
    done = tr.step - start_step
    imgs = done * t.batch_size * tr.dist.world_size
    return {
        "status": status,
        "profile": tr.cfg.profile,
        "dataset": prov["dataset"],
        "synthetic": prov["synthetic"],
        "data_note": ("synthetic procedural faces, not real ones: numbers show the pipeline works, "
                      "they are not the paper's") if prov["synthetic"] else "real faces",
        "cache": str(tr.cache_path) if tr.cache_path else "in-memory cache",
        "out_dir": str(tr.out_dir),
        "pairs": len(tr.dataset),
        "steps": int(t.steps),
        "start_step": int(start_step),
        "final_step": int(tr.step),
        "steps_this_run": int(done),
        "batch_size": int(t.batch_size),
        "world_size": tr.dist.world_size,
        "perceptual": prov["perceptual"],
        "perceptual_weights": "stand-in (random init, not ImageNet VGG19)" if prov["perceptual_standin"]
        else "ImageNet VGG19",
        "standins": prov["standins"] or ["none"],
        "device": prov["device"],
        "device_name": torch.cuda.get_device_name(tr.device) if tr.device.type == "cuda" else "cpu",
        "dtype": prov["dtype"],
        "channels_last": tr.core.channels_last,
        "compile": tr.core.compiled,
        "deterministic": bool(t.deterministic),
        "cpu_threads": torch.get_num_threads() if tr.device.type == "cpu" else None,
        "seconds": round(seconds, 3),
        "total_seconds": round(tr.elapsed, 3),
        "images_per_second": round(imgs / seconds, 3) if seconds > 0 and done else None,
        "final_losses": {k: round(v, 6) for k, v in (getattr(tr, "last_losses", None) or {}).items()},
        "checkpoint": str(tr.ckpt_path) if saved_step is not None else None,
        "checkpoint_step": saved_step,
        "losses_csv": str(tr.out_dir / LOSSES_CSV),
        "samples": tr.samples_written[-3:],
        "torch": torch.__version__,
    }
