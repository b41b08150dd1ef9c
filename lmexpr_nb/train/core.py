"""One training step, free of data and files: TrainCore (G, both Ds, the perceptual loss, three
Adams), the learning-rate schedule and the GAN switch. bench train/learn/gpu use this alone;
train.trainer.Trainer wraps it with data, logs, checkpoints and samples."""
from __future__ import annotations

import dataclasses
import random
from contextlib import nullcontext

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP

from lmexpr_nb.config import Config
from lmexpr_nb.data.pairs import PairDataset
from lmexpr_nb.landmarks.heatmaps import landmark_heatmaps
from lmexpr_nb.model.losses import PerceptualLoss, discriminator_losses, generator_loss
from lmexpr_nb.model.nets import build_discriminators, build_generator
from lmexpr_nb.model.trained import weights_problem
from lmexpr_nb.train.device import DistInfo, _flag, amp_dtype

G_TERMS = ("total", "gan", "gan_image", "gan_geometry", "perceptual", "pixel")
TERMS = tuple(f"g_{t}" for t in G_TERMS) + ("d_image", "d_geometry")


class NonFiniteLossError(RuntimeError):
    """A loss term became NaN or inf, or the weights an update left are unsound (TrainCore.unsound);
    the run stopped and kept its last good checkpoint."""


# --------------------------------------------------------------------------------------
# Small pieces

def lr_at(step: int, cfg) -> float:
    """Learning rate of (0-based) step `step` of cfg.steps: constant, then linear to 0 [PATN]."""
    total = max(int(cfg.steps), 1)
    start = int(round(cfg.lr_decay_start * total))
    if step < start or start >= total:
        return float(cfg.lr)
    return float(cfg.lr) * max(total - step, 0) / (total - start)


def gan_on(step: int, cfg) -> bool:
    """Is the GAN term (and so the discriminators' update) on at (0-based) `step`? Off for the
    first `gan_start` fraction of cfg.steps (an L1/perceptual warm-up), and never when
    loss.lambda_gan is 0 (then the discriminators are not trained at all: no time wasted)."""
    if not cfg.loss.lambda_gan:
        return False
    return step >= int(round(float(cfg.train.gan_start) * max(int(cfg.train.steps), 1)))


def training_pairs(cache, cfg: Config, max_pairs: int | None = None):
    """The training split's pair list by cfg.train.pairs (data.pairs.protocol_pairs)."""
    return PairDataset(cache, "train", max_pairs=max_pairs, seed=cfg.train.seed, protocol=cfg.train.pairs)


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(flag)


def _without_gan(loss_cfg):
    return dataclasses.replace(loss_cfg, lambda_gan=0.0)


# --------------------------------------------------------------------------------------
# Models, optimisers and one step, free of data and files (the benchmark uses this alone)

class TrainCore:
    """G, D_image, D_geometry, the perceptual loss, three Adams and `step(batch, step_index)`.

    The perceptual loss is built first, so missing VGG19 weights stop a run before anything
    else is spent (weights.MissingWeightsError, unless cfg.loss.vgg_standin).
    `generator`, `d_image`, `d_geometry` are the plain modules (what checkpoints store);
    the callables used in the step may be DDP- and/or torch.compile-wrapped (`compile_backend`:
    Inductor, the trainer's; bench gpu's CPU check traces with "eager", which compiles no kernels).
    """

    def __init__(self, cfg: Config, device: torch.device, dist_info: DistInfo | None = None,
                 amp: torch.dtype | None | str = "cfg", channels_last: bool | None = None,
                 compile: bool | None = None, compile_backend: str = "inductor"):

        self.cfg, self.device = cfg, device
        self.dist = dist_info or DistInfo()
        self.amp = amp_dtype(cfg, device) if amp == "cfg" else amp
        self.channels_last = (_flag(cfg.train.channels_last, device.type == "cuda")
                              if channels_last is None else channels_last)
        self.compiled = bool(cfg.train.compile) if compile is None else compile
        self.memory_format = torch.channels_last if self.channels_last else torch.contiguous_format

        self.perceptual = PerceptualLoss(cfg.loss).to(device)
        torch.manual_seed(cfg.train.seed)                 # the same initial weights on every rank
        self.generator = build_generator(cfg.model).to(device, memory_format=self.memory_format)
        d_image, d_geometry = build_discriminators(cfg.model)
        self.d_image = d_image.to(device, memory_format=self.memory_format)
        self.d_geometry = d_geometry.to(device, memory_format=self.memory_format)
        self.perceptual.to(memory_format=self.memory_format)

        t = cfg.train
        fused = {"fused": True} if device.type == "cuda" else {}
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), **fused)
        d_lr = t.lr if t.d_lr is None else t.d_lr        # train.d_lr: non-paper; the paper has one lr
        self.d_lr_scale = d_lr / t.lr
        self.opt_d_image = torch.optim.Adam(self.d_image.parameters(), lr=d_lr, betas=(t.beta1, t.beta2), **fused)
        self.opt_d_geometry = torch.optim.Adam(self.d_geometry.parameters(), lr=d_lr, betas=(t.beta1, t.beta2),
                                               **fused)

        # What the step calls: G and both Ds through DDP for their own updates; in the G step
        # the Ds are frozen and called as plain modules (no DDP reducer, no gradient sync).
        g_run, di_run, dg_run = self.generator, self.d_image, self.d_geometry
        if self.dist.enabled:
            ids = [device.index] if device.type == "cuda" else None
            g_run, di_run, dg_run = (DDP(m, device_ids=ids, output_device=device.index if ids else None)
                                     for m in (g_run, di_run, dg_run))
        di_frozen, dg_frozen = self.d_image, self.d_geometry
        if self.compiled:
            g_run, di_run, dg_run, di_frozen, dg_frozen = (torch.compile(m, backend=compile_backend) for m in
                                                           (g_run, di_run, dg_run, di_frozen, dg_frozen))
        self.g_run, self.di_run, self.dg_run = g_run, di_run, dg_run
        self.di_frozen, self.dg_frozen = di_frozen, dg_frozen

    # -- state ----------------------------------------------------------------------
    def models(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "d_image": self.d_image, "d_geometry": self.d_geometry}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.opt_g, "d_image": self.opt_d_image, "d_geometry": self.opt_d_geometry}

    def load_state(self, ckpt: dict) -> None:
        for name, m in self.models().items():
            m.load_state_dict(ckpt["models"][name])
        for name, o in self.optimizers().items():
            o.load_state_dict(ckpt["optimizers"][name])

    @torch.no_grad()
    def unsound(self, batch: dict) -> str | None:
        """Why the weights as they are now must not be kept as a good checkpoint, or None: a model
        with NaN/inf or diverged weights (model/trained.py's weights_problem), an optimiser state
        with NaN/inf (resuming would diverge at once), or a generator whose outputs on `batch`
        (eval mode, as inference runs it) are not finite. Finite losses say nothing of the
        weights the last update left."""
        for name, m in self.models().items():
            why = weights_problem(m)
            if why:
                return f"{name}: {why}"
        for name, o in self.optimizers().items():
            if any(torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())
                   for state in o.state.values() for v in state.values()):
                return f"the {name} optimiser's state holds NaN or infinite values"
        g = self.generator
        was = g.training
        g.eval()
        try:
            src, _, hm_s, hm_t, label = self.inputs(batch)
            with self.autocast():
                fake = g(src, hm_s, hm_t, label)
        finally:
            g.train(was)
        bad = int((~torch.isfinite(fake)).sum())
        return f"the generator makes NaN or infinite pixels on the sample pairs ({bad} of {fake.numel()})" if bad else None

    def train_mode(self, flag: bool = True) -> None:
        for m in self.models().values():
            m.train(flag)

    # -- one step -------------------------------------------------------------------
    def inputs(self, batch: dict):
        """Batch dict (data.pairs) -> tensors on the device; heatmaps made here, on the device."""
        dev, mf, cfg = self.device, self.memory_format, self.cfg.model
        nb = dev.type == "cuda"
        src = batch["source"].to(dev, non_blocking=nb).contiguous(memory_format=mf)
        tgt = batch["target"].to(dev, non_blocking=nb).contiguous(memory_format=mf)
        lm_s = batch["source_landmarks"].to(dev, non_blocking=nb)
        lm_t = batch["target_landmarks"].to(dev, non_blocking=nb)
        hm_s = landmark_heatmaps(lm_s, cfg.image_size, cfg.heatmap_sigma).contiguous(memory_format=mf)
        hm_t = landmark_heatmaps(lm_t, cfg.image_size, cfg.heatmap_sigma).contiguous(memory_format=mf)
        label = batch["target_label"].to(dev, non_blocking=nb)
        return src, tgt, hm_s, hm_t, label

    def autocast(self):
        if self.amp is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp)

    def step(self, batch: dict, step_index: int) -> torch.Tensor:
        """One training step [PATN]: G update, then both Ds. Returns the detached float32
        vector of TERMS (on the device; nothing here waits for the GPU)."""

        lr = lr_at(step_index, self.cfg.train)
        for name, opt in self.optimizers().items():
            for group in opt.param_groups:
                group["lr"] = lr if name == "generator" else lr * self.d_lr_scale
        src, tgt, hm_s, hm_t, label = self.inputs(batch)

        use_gan = gan_on(step_index, self.cfg)
        loss_cfg = self.cfg.loss if use_gan else _without_gan(self.cfg.loss)

        # G step: Ds frozen (their BN statistics still update, as in PATN)
        set_requires_grad(self.d_image, False)
        set_requires_grad(self.d_geometry, False)
        with self.autocast():
            fake = self.g_run(src, hm_s, hm_t, label)
            g = generator_loss(fake, tgt, src, hm_t, self.di_frozen if use_gan else None,
                               self.dg_frozen if use_gan else None,
                               self.perceptual if loss_cfg.lambda_perceptual else None, loss_cfg)
        self.opt_g.zero_grad(set_to_none=True)
        g["total"].backward()
        self.opt_g.step()

        if use_gan:
            # D step: both discriminators on (real target, detached fake)
            set_requires_grad(self.d_image, True)
            set_requires_grad(self.d_geometry, True)
            with self.autocast():
                d = discriminator_losses(self.di_run, self.dg_run, tgt, fake, src, hm_t,
                                         objective=self.cfg.loss.gan_objective)
            self.opt_d_image.zero_grad(set_to_none=True)
            self.opt_d_geometry.zero_grad(set_to_none=True)
            d["total"].backward()
            self.opt_d_image.step()
            self.opt_d_geometry.step()
        else:
            zero = torch.zeros((), device=fake.device)
            d = {"d_image": zero, "d_geometry": zero}

        return torch.stack([g[t].detach().float() for t in G_TERMS]
                           + [d["d_image"].detach().float(), d["d_geometry"].detach().float()])

    @property
    def dtype_name(self) -> str:
        return "bfloat16 autocast" if self.amp == torch.bfloat16 else (
            "float16 autocast" if self.amp == torch.float16 else "float32")
