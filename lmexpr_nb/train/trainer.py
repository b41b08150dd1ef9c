"""Trainer: a whole run on a preprocessed cache (data, the seeded pair stream, checkpoints,
train_summary.json, resume and the NaN guard; losses.csv and the sample grids are written by
log.py's functions; see the package docstring). `train` holds the folder's lock for the run."""
from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from lmexpr_nb.common import checkpoint as ckpt_io
from lmexpr_nb.common.files import atomic_path, exclusive_lock, writable_dir, write_json
from lmexpr_nb.config import Config, check_config
from lmexpr_nb.data.cache import load_cache
from lmexpr_nb.data.pairs import PairDataset, PairStream, collate_batch
from lmexpr_nb.model.generate import tensor_to_uint8
from lmexpr_nb.train.core import TERMS, NonFiniteLossError, TrainCore, lr_at, seed_all, training_pairs
from lmexpr_nb.train.device import resolve_device, setup_distributed
from lmexpr_nb.train.log import (
    LOSSES_CSV,
    append_loss_row,
    loss_row,
    run_summary,
    sample_picture,
    sample_rows,
    start_loss_csv,
)


def _open_cache(cache_dir):
    """A loaded cache object is used as is; a path is read with data.cache.load_cache."""
    if not isinstance(cache_dir, (str, os.PathLike)):
        return cache_dir, getattr(cache_dir, "path", None)
    p = Path(cache_dir)
    if not p.exists():
        raise FileNotFoundError(f"no preprocessed cache at {p}: make one with `python -m lmexpr_nb preprocess` "
                                f"(or run notebook 01)")
    return load_cache(p), p


def _meta(cache) -> dict:
    return dict(getattr(cache, "meta", None) or {})


class Trainer:
    """Trains cfg's model on a preprocessed cache, writing into out_dir (see the module doc).

    cache_dir: a cache folder (data.cache.load_cache) or an already loaded cache object.
    resume: continue from out_dir/checkpoints/last.pt when it exists (else start at step 0);
    without resume an existing checkpoint is an error, so no run is overwritten by accident.
    steps: overrides cfg.train.steps (the LR schedule follows the total).
    device: overrides cfg.train.device ("auto" | "cpu" | "cuda" | "cuda:1").
    """

    def __init__(self, cfg: Config, cache_dir, out_dir, resume: bool = False, steps: int | None = None,
                 device: str | None = None, progress: bool = True, max_pairs: int | None = None):
        if steps is not None:
            cfg = cfg.updated({"train": {"steps": int(steps)}})
        if device is not None:
            cfg = cfg.updated({"train": {"device": device}})
        self.cfg = cfg = check_config(cfg)        # a Config built or changed in code, too
        self.out_dir = writable_dir(out_dir, "training output folder")   # before any work
        self.progress = progress
        self.cache, self.cache_path = _open_cache(cache_dir)
        meta = _meta(self.cache)
        size = int(np.asarray(self.cache.images).shape[1]) if len(self.cache) else cfg.model.image_size
        if size != cfg.model.image_size:
            raise ValueError(f"the cache holds {size}x{size} crops but the model expects "
                             f"{cfg.model.image_size}x{cfg.model.image_size}: preprocess with the same profile")

        self.dist = setup_distributed(cfg.train.device)
        self.device = resolve_device(cfg.train.device, self.dist.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)

        # resume or start afresh
        self.ckpt_path = ckpt_io.last_checkpoint(self.out_dir)
        self.resume_ckpt = None
        if self.ckpt_path.is_file():
            if not resume:
                raise FileExistsError(f"{self.out_dir} already holds a training run (checkpoints/last.pt): "
                                      f"pass --resume to continue it or choose another --out")
            self.resume_ckpt = ckpt_io.load_checkpoint(self.ckpt_path)
            old = ckpt_io.checkpoint_config(self.resume_ckpt)
            if old.model != cfg.model:
                raise ValueError(f"{self.ckpt_path} was trained with a different model config; "
                                 f"resume with the same profile, or choose another --out")
        t = cfg.train

        self.dataset = self._pairs("train", max_pairs)
        if len(self.dataset) == 0:
            raise ValueError("no training pairs: every training subject needs at least two frames")
        if int(np.max(np.asarray(self.cache.labels))) >= cfg.model.num_classes:
            raise ValueError(f"cache labels exceed model.num_classes = {cfg.model.num_classes}")

        self.core = TrainCore(cfg, self.device, self.dist)
        self.meta = meta
        self.step = 0
        self.position = 0
        self.elapsed = 0.0
        self.window = {"sum": [0.0] * len(TERMS), "count": 0}
        if self.resume_ckpt is not None:
            c = self.resume_ckpt
            self.core.load_state(c)
            self.step = int(c["step"])
            self.position = int(c["sampler"]["position"])
            self.elapsed = float(c.get("elapsed_seconds", 0.0))
            if c.get("log"):
                self.window = {"sum": [float(x) for x in c["log"]["sum"]], "count": int(c["log"]["count"])}
            s = c["sampler"]
            if (s["n"], s["batch_size"], s["world_size"], s["seed"]) != (len(self.dataset), t.batch_size,
                                                                         self.dist.world_size, t.seed):
                self._say(f"note: pairs/batch/world size/seed changed since the checkpoint "
                          f"({s['n']}/{s['batch_size']}/{s['world_size']}/{s['seed']} -> {len(self.dataset)}/"
                          f"{t.batch_size}/{self.dist.world_size}/{t.seed}): the pair stream continues from "
                          f"position {self.position} but is not the one an uninterrupted run would see")
        self.stream = PairStream(len(self.dataset), t.batch_size, t.seed, self.dist.rank, self.dist.world_size,
                                  self.position)
        self.samples_written: list[str] = []

    # -- helpers -----------------------------------------------------------------------
    def _pairs(self, split, max_pairs=None):
        if split == "train":
            return training_pairs(self.cache, self.cfg, max_pairs)
        return PairDataset(self.cache, split, max_pairs=max_pairs, seed=self.cfg.train.seed)

    def _say(self, msg: str) -> None:
        if self.dist.is_main:
            print(msg, file=sys.stderr, flush=True)

    def _loader(self):
        t = self.cfg.train
        workers = max(int(t.num_workers), 0)
        kw = dict(num_workers=workers, collate_fn=collate_batch, pin_memory=self.device.type == "cuda",
                  generator=torch.Generator().manual_seed(t.seed))      # never touches the global RNG
        if workers:
            kw.update(prefetch_factor=4, persistent_workers=False)
        return DataLoader(self.dataset, batch_sampler=self.stream, **kw)

    def _sample_batch(self):
        """The fixed pairs of the sample grids (train/log.py's sample_rows), from validation subjects
        when there are any, else training ones."""
        try:
            val = self._pairs("val")
        except Exception:
            val = None
        ds = val if val is not None and len(val) else self.dataset
        return ds.batch(sample_rows(ds.pairs, ds.cache.subjects)), ("validation" if ds is val else "training")

    # -- loss bookkeeping ------------------------------------------------------------------
    def _flush(self, pending: list) -> None:
        """Move the pending per-step loss vectors to the host (one transfer; averaged over
        ranks), stop at the first non-finite term, add the rest to the log window."""
        if not pending:
            return
        steps = [s for s, _ in pending]
        vals = torch.stack([v for _, v in pending])
        if self.dist.enabled:
            dist.all_reduce(vals, op=dist.ReduceOp.SUM)
            vals = vals / self.dist.world_size
        vals = vals.cpu().double().numpy()
        pending.clear()
        bad = ~np.isfinite(vals)
        if bad.any():
            i = int(np.argwhere(bad.any(1))[0, 0])
            # name the term that went bad, not the sums it spoils (g_total, g_gan)
            cols = sorted(np.flatnonzero(bad[i]), key=lambda j: TERMS[j] in ("g_total", "g_gan"))
            also = [TERMS[j] for j in cols[1:]]
            raise NonFiniteLossError(
                f"non-finite loss at step {steps[i]}: {TERMS[cols[0]]} = {vals[i, cols[0]]}"
                + (f" (also {', '.join(also)})" if also else "") + f"; stopped, {self._kept()}")
        self.window["sum"] = [a + float(b) for a, b in zip(self.window["sum"], vals.sum(0))]
        self.window["count"] += len(steps)
        self.last_losses = dict(zip(TERMS, (float(x) for x in vals[-1])))

    def _kept(self) -> str:
        return (f"last good checkpoint kept: {self.ckpt_path} (step {self._saved_step})"
                if self._saved_step is not None else "no checkpoint was written")

    def _check_sound(self) -> None:
        """Before a sample grid or a checkpoint: the weights are sound (TrainCore.unsound, on the
        sample pairs; all ranks agree), else NonFiniteLossError and nothing is written."""
        why = self.core.unsound(self._sample_fixed[0])
        if self.dist.enabled:
            flag = torch.tensor([float(why is not None)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            why = why or ("another rank's weights are unsound" if flag.item() else None)
        if why:
            raise NonFiniteLossError(f"unsound weights after step {self.step}: {why}; stopped, {self._kept()}")

    def _csv_path(self) -> Path:
        return self.out_dir / LOSSES_CSV

    def _log_row(self, step: int, lr: float) -> dict:
        row = loss_row(step, self.window, lr, self.elapsed_now())
        self.window = {"sum": [0.0] * len(TERMS), "count": 0}
        if self.dist.is_main:
            append_loss_row(self._csv_path(), row)
        return row

    def elapsed_now(self) -> float:
        return self.elapsed + (time.perf_counter() - self._t_run if getattr(self, "_t_run", None) else 0.0)

    # -- outputs ---------------------------------------------------------------------------
    def _provenance(self) -> dict:
        return {"dataset": self.meta.get("dataset", "unknown"), "synthetic": bool(self.meta.get("synthetic", False)),
                "standins": list(self.cfg.uses_standins), "perceptual": self.core.perceptual.description,
                "perceptual_standin": bool(self.core.perceptual.standin), "device": str(self.device),
                "dtype": self.core.dtype_name, "world_size": self.dist.world_size, "torch": torch.__version__,
                "profile": self.cfg.profile}

    def save(self) -> Path | None:
        """Checkpoint (all ranks give their RNG state; rank 0 writes, atomically)."""
        states = [ckpt_io.rng_state()]
        if self.dist.enabled:
            states = [None] * self.dist.world_size
            dist.all_gather_object(states, ckpt_io.rng_state())
        if not self.dist.is_main:
            self._saved_step = self.step
            return None
        ckpt_io.save_checkpoint(
            self.ckpt_path, step=self.step, config=self.cfg, models=self.core.models(),
            optimizers=self.core.optimizers(), sampler=self.stream.state(self.position), rng=states,
            log=self.window, provenance=self._provenance(), elapsed_seconds=self.elapsed_now())
        self._saved_step = self.step
        return self.ckpt_path

    @torch.no_grad()
    def write_samples(self) -> Path | None:
        if not self.dist.is_main:
            return None
        batch, which = self._sample_fixed
        g = self.core.generator
        was = g.training
        g.eval()
        try:
            src, tgt, hm_s, hm_t, label = self.core.inputs(batch)
            with self.core.autocast():
                fake = g(src, hm_s, hm_t, label)
        finally:
            g.train(was)

        img = sample_picture([tensor_to_uint8(x) for x in (src, tgt, fake)], which, self.step)
        path = self.out_dir / "samples" / f"step_{self.step:06d}.png"
        with atomic_path(path) as tmp:
            img.save(tmp, format="PNG")
        self.samples_written.append(str(path))
        return path

    def _summary(self, status: str, start_step: int, seconds: float) -> dict:
        s = run_summary(self, self._provenance(), self._saved_step, status, start_step, seconds)
        if self.dist.is_main:
            write_json(self.out_dir / "train_summary.json", s)
        return s

    # -- the loop --------------------------------------------------------------------------
    def run(self, stop_after: int | None = None) -> dict:
        """Train up to cfg.train.steps (or stop once step `stop_after` is done and saved, as an
        interruption would). Returns the summary that train_summary.json holds."""
        t = self.cfg.train
        total = int(t.steps)
        start_step = self.step
        self._saved_step = self.step if self.resume_ckpt is not None else None
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.step >= total:
            self._say(f"nothing to do: {self.ckpt_path} is at step {self.step} of {total}")
            old = self.out_dir / "train_summary.json"
            if old.is_file():                    # keep the finished run's summary (its timings)
                try:
                    s = json.loads(old.read_text())
                except ValueError:
                    s = {}
                if s.get("final_step") == self.step and s.get("status") == "complete":
                    return dict(s, steps_this_run=0, reused=True)
            return self._summary("complete", start_step, 0.0)
        if self.resume_ckpt is not None:
            self._say(f"resuming from {self.ckpt_path} at step {self.step}")
        if self.progress:
            self._say(f"training {self.cfg.profile}: {len(self.dataset)} pairs of {self.meta.get('dataset', 'unknown')}"
                      f"{' (synthetic)' if self.meta.get('synthetic') else ''}, {total} steps x {t.batch_size}"
                      f"{f' x {self.dist.world_size} ranks' if self.dist.enabled else ''}, {self.device} "
                      f"{self.core.dtype_name}; perceptual: {self.core.perceptual.description}")

        prev_det = torch.are_deterministic_algorithms_enabled()
        prev_bench = torch.backends.cudnn.benchmark
        if t.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=self.device.type == "cuda")
            torch.backends.cudnn.benchmark = False
        elif self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        try:
            return self._loop(total, start_step, stop_after)
        finally:
            torch.use_deterministic_algorithms(prev_det)
            torch.backends.cudnn.benchmark = prev_bench
            if self.dist.initialised_here:
                dist.destroy_process_group()
                self.dist.initialised_here = False

    def _loop(self, total: int, start_step: int, stop_after: int | None) -> dict:

        t = self.cfg.train
        if self.dist.is_main:
            start_loss_csv(self._csv_path(), self.step)
        self._sample_fixed = self._sample_batch()
        batches = iter(self._loader())
        # RNG: restored from the checkpoint (this rank's entry), else seeded (seed + rank)
        rng = self.resume_ckpt["rng"] if self.resume_ckpt is not None else None
        if rng is not None and len(rng) == self.dist.world_size:
            ckpt_io.set_rng_state(rng[self.dist.rank])
        else:
            seed_all(t.seed + self.dist.rank + (1_000_003 * self.step if rng is not None else 0))
        self.core.train_mode(True)
        self.resume_ckpt = None                                  # free the memory

        end = total if stop_after is None else min(total, max(int(stop_after), self.step))
        bar = tqdm(total=total, initial=self.step, disable=not (self.progress and self.dist.is_main),
                   desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)
        pending: list = []
        self._t_run = time.perf_counter()
        status = "complete"
        try:
            while self.step < end:
                batch = next(batches)
                terms = self.core.step(batch, self.step)
                self.step += 1
                self.position += self.stream.global_batch
                pending.append((self.step, terms))
                s = self.step
                last = s == total
                do_log, do_sample = s % t.log_every == 0 or last, s % t.sample_every == 0 or last
                do_ckpt = s % t.checkpoint_every == 0 or last or s == end
                if do_log or do_sample or do_ckpt:
                    self._flush(pending)
                if do_log:
                    row = self._log_row(s, lr_at(s - 1, t))
                    bar.set_postfix(pixel=row["g_pixel"], g=row["g_total"], d_img=row["d_image"],
                                    d_geo=row["d_geometry"], refresh=False)
                if do_sample or do_ckpt:
                    self._check_sound()
                if do_sample:
                    self.write_samples()
                if do_ckpt:
                    self.save()
                bar.update(1)
            if self.step < total:
                status = f"stopped at step {self.step} of {total} (stop_after); resume to continue"
        except NonFiniteLossError as e:
            seconds = time.perf_counter() - self._t_run
            self.elapsed += seconds
            self._t_run = None
            bar.close()
            self._summary(f"failed: {e}", start_step, seconds)
            raise
        finally:
            bar.close()
        seconds = time.perf_counter() - self._t_run
        self.elapsed += seconds
        self._t_run = None
        return self._summary(status, start_step, seconds)


LOCK = ".train.lock"


def train(cfg: Config, cache_dir, out_dir, resume: bool = False, steps: int | None = None,
          device: str | None = None, progress: bool = True, stop_after: int | None = None,
          max_pairs: int | None = None) -> dict:
    """Train and return the summary dict (also out_dir/train_summary.json). See Trainer.

    One training run at a time writes into out_dir: the run holds an fcntl lock on
    `<out_dir>/.train.lock` from before it reads the checkpoint to its end, and a second one
    (train, train --resume, notebook 03) is refused at once with BusyError (a ValueError naming
    the holder's pid). The lock goes with the process, so one killed by kill -9 leaves none.
    Under torchrun rank 0 holds it for the job."""
    out = writable_dir(out_dir, "training output folder")
    rank = int(os.environ.get("RANK", dist.get_rank() if dist.is_available() and dist.is_initialized() else 0))
    with exclusive_lock(out / LOCK, "training run") if rank == 0 else nullcontext():
        trainer = Trainer(cfg, cache_dir, out, resume=resume, steps=steps, device=device, progress=progress,
                          max_pairs=max_pairs)
        return trainer.run(stop_after=stop_after)
