"""The one way to get a trained generator: from a checkpoint, with its config and provenance.

    model = load_trained("outputs/smoke/train/checkpoints/last.pt")   # or the run's train folder
    model.generator      the Generator in eval mode (on `device`; "auto": CUDA when present)
    model.config         the Config it was trained with (the checkpoint's own, not the caller's)
    model.step           training steps behind the weights
    model.provenance     what it learnt from (dataset, synthetic, stand-ins, device, ...), as saved
    model.weights        how tables and figures name these weights: "generator last.pt step 1300",
                         plus "(trained with: ...)" when the checkpoint's stand-ins differ from the
                         config the caller evaluates with (`now=`)

Everything that uses a trained model goes through `load_trained`: the notebooks (runner/context.py's
NotebookContext.model), the ablation (experiments/table7.py) and photo editing
(explore/infer.py's load_model). A missing checkpoint is `NoTrainedModel` (a FileNotFoundError)
with a one-line message that says how to make one; a damaged or foreign file is the checkpoint
reader's one-line CheckpointError, and so is a generator whose weights a diverged run left
(`weights_problem`: NaN or inf, or beyond WEIGHT_LIMIT), which would paint black faces.
`untrained(cfg, seed)` is the labelled stand-in notebook 02 shows before any training: a seeded
random generator whose `weights` says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmexpr_nb.common.checkpoint import LAST, CheckpointError, checkpoint_config, last_checkpoint, load_checkpoint
from lmexpr_nb.config import Config
from lmexpr_nb.model.generate import pick_device
from lmexpr_nb.model.nets import Generator, build_generator

UNTRAINED = "untrained (seeded random init)"
# The nets start at N(0, 0.02) (BatchNorm scales at 1) and Adam moves a weight by about lr a step
# (2e-4 in the paper): a weight beyond this is what a diverged run leaves, never a trained one.
WEIGHT_LIMIT = 1e6


class NoTrainedModel(FileNotFoundError):
    """No checkpoint where one was expected; the message says how to make one."""


@dataclass
class TrainedModel:
    generator: Generator
    config: Config
    path: Path | None = None          # None: an untrained stand-in
    step: int = 0
    provenance: dict = field(default_factory=dict)
    weights: str = UNTRAINED

    @property
    def trained(self) -> bool:
        return self.path is not None


def checkpoint_path(checkpoint) -> Path:
    """A checkpoint file, or a run's folder (its checkpoints/last.pt, else its last.pt)."""
    p = Path(checkpoint)
    if p.is_dir():
        p = last_checkpoint(p) if last_checkpoint(p).is_file() else p / LAST
    return p


def load_trained(checkpoint, device="cpu", now: Config | None = None, hint: str = "") -> TrainedModel:
    """The generator of a training checkpoint (a last.pt, or a run's folder) with its config and
    provenance (module doc). `now`: the config it will be evaluated with, to name the stand-ins it was
    trained with when they differ. `hint`: how to make the missing checkpoint (for the message)."""
    path = checkpoint_path(checkpoint)
    if not path.is_file():
        raise NoTrainedModel(f"no trained generator at {path}" + (f": {hint}" if hint else ""))
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt)
    G = Generator(cfg.model)
    G.load_state_dict(ckpt["models"]["generator"])
    step = int(ckpt.get("step", 0))
    why = weights_problem(G)
    if why:
        raise CheckpointError(f"{path} (step {step}) holds a broken generator: {why}; the training run that wrote "
                              f"it diverged: train again, or use an earlier checkpoint")
    G = G.to(pick_device(device)).eval()
    G.loaded_from = f"{path} (step {step})"          # named by model/generate.py's synthesize when it fails
    provenance = dict(ckpt.get("provenance") or {})
    return TrainedModel(G, cfg, path, step, provenance, _weights(path, ckpt.get("step", "?"), provenance, now))


def weights_problem(module: torch.nn.Module) -> str | None:
    """Why `module`'s weights are no trained model's (None when they may be one): a parameter or
    buffer holding NaN or inf, or a parameter beyond WEIGHT_LIMIT in size (what a diverged run
    leaves, e.g. one with lr 1e30, even while its losses were still finite)."""
    for name, t in [*module.named_parameters(), *module.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            n = int((~torch.isfinite(t)).sum())
            return f"{n} of {t.numel()} values of {name} are NaN or infinite"
    for name, t in module.named_parameters():
        big = float(t.detach().abs().max()) if t.numel() else 0.0
        if big > WEIGHT_LIMIT:
            return f"{name} reaches {big:.3g} (no trained weight comes near {WEIGHT_LIMIT:g})"
    return None


def _weights(path: Path, step, provenance: dict, now: Config | None) -> str:
    desc = f"generator {path.name} step {step}"
    if now is None:
        return desc
    trained_with = [str(s) for s in provenance.get("standins") or [] if "FID" not in str(s)]
    current = [s for s in now.uses_standins if "FID" not in s]
    if trained_with != current and trained_with != ["none"]:   # a checkpoint made under other settings says so
        desc += " (trained with: " + ("; ".join(trained_with) or "no stand-ins") + ")"
    return desc


def untrained(cfg: Config, device="cpu") -> TrainedModel:
    """A seeded (cfg.train.seed) random generator of cfg.model, labelled untrained."""
    torch.manual_seed(cfg.train.seed)
    return TrainedModel(build_generator(cfg.model).to(pick_device(device)).eval(), cfg)
