"""Training checkpoints: written atomically, read with `torch.load(..., weights_only=True)`.

A checkpoint holds only tensors, numbers, strings, None, lists and dicts, so loading it
never runs arbitrary pickled code. Layout (FORMAT "lmexpr-nb-checkpoint/1"):

    format        "lmexpr-nb-checkpoint/1"
    step          completed training steps
    config        Config.to_dict() with tuples as lists (Config.from_dict restores it)
    models        {"generator", "d_image", "d_geometry": state_dict (fp32, plain keys)}
    optimizers    {"generator", "d_image", "d_geometry": Adam state_dict}
    sampler       PairStream.state(position): position, epoch, n, batch_size, world_size, seed
    rng           one dict per DDP rank: {"python": {...}, "numpy": {...}, "torch": ByteTensor,
                  "cuda": ByteTensor | None}
    log           the loss-log window in progress (so losses.csv is identical after a resume)
    provenance    dataset, synthetic, standins, perceptual, device, dtype, world_size, torch
    elapsed_seconds  training time so far (all runs of this job)

`save_checkpoint` writes to a temporary file beside the target and os.replace()s it, so
a crash mid-write leaves the previous checkpoint whole. model/trained.py's `load_trained`
rebuilds the generator from one for notebooks, tables and inference.
"""
from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import torch

from lmexpr_nb.common.files import atomic_path
from lmexpr_nb.config import Config

FORMAT = "lmexpr-nb-checkpoint/1"
LAST = "last.pt"


def checkpoint_dir(out_dir) -> Path:
    return Path(out_dir) / "checkpoints"


def last_checkpoint(out_dir) -> Path:
    return checkpoint_dir(out_dir) / LAST


def plain(obj):
    """Tuples -> lists, numpy scalars -> Python numbers, recursively (what weights_only accepts)."""
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, (int, str)) else k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (Path, str)) and type(obj) is not str:   # Path, TorchVersion, str enums
        return str(obj)
    return obj


# --------------------------------------------------------------------------------------
# RNG states as tensors and numbers

def rng_state() -> dict:
    """This process's python, numpy, torch (CPU) and current-CUDA-device RNG states."""
    v, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": {"version": int(v), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss": None if gauss is None else float(gauss)},
        "numpy": {"name": str(np_name), "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
    }


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())


# --------------------------------------------------------------------------------------
# Save / load

def save_checkpoint(path, *, step: int, config: Config | dict, models: dict, optimizers: dict,
                    sampler: dict, rng: list[dict], log: dict | None = None, provenance: dict | None = None,
                    elapsed_seconds: float = 0.0) -> Path:
    """Write a checkpoint atomically (temp file + os.replace). `models` / `optimizers` map
    names to modules / optimisers (their state_dicts are taken) or to state dicts."""
    cfg = config.to_dict() if isinstance(config, Config) else config
    obj = {
        "format": FORMAT,
        "step": int(step),
        "config": plain(cfg),
        "models": {k: (m.state_dict() if hasattr(m, "state_dict") else m) for k, m in models.items()},
        "optimizers": {k: plain(o.state_dict() if hasattr(o, "state_dict") else o) for k, o in optimizers.items()},
        "sampler": plain(sampler),
        "rng": rng,
        "log": plain(log or {}),
        "provenance": plain(provenance or {}),
        "elapsed_seconds": float(elapsed_seconds),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


class CheckpointError(ValueError):
    """A file that is not a readable lmexpr-nb checkpoint; the message is one line naming it."""


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint with weights_only=True (no arbitrary pickles); checks the format.
    CheckpointError (a ValueError) with one line naming the file when it is truncated, damaged,
    holds pickled objects (refused, never run) or is no checkpoint at all."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} is not a readable training checkpoint: it holds pickled Python objects "
                              f"besides tensors and numbers (refused, nothing in it was run) or is damaged; "
                              f"the kit's checkpoints never do: restore it, or train into another --out") from None
    except Exception as e:  # zip reader, EOF, legacy-format parser errors (a KeyError on junk)
        raise CheckpointError(f"{path} is not a readable training checkpoint ({type(e).__name__}: truncated or "
                              f"damaged, e.g. by a full disk); restore it from a copy, or train into "
                              f"another --out") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} is not an lmexpr-nb training checkpoint (format {found!r}, "
                              f"expected {FORMAT!r})")
    return ckpt


def checkpoint_config(ckpt: dict) -> Config:
    return Config.from_dict(ckpt["config"])


