"""What a notebook calls first: `notebook_context(...)` turns its parameters cell into a
NotebookContext with the config, the paths of this run, the provenance every printed number
carries and the trained model (`ctx.model()`, model/trained.py's one loader).

    outputs/<profile>/figures/, tables/, cache/, train/    where a notebook writes (ctx.figures, ...)
    data/synthetic-<subjects>x<frames>-seed<seed>/          the profile's synthetic default, made once

The synthetic default is generated the first time a profile needs it (and again when the
generator's version changed); a real dataset is read from its own root (data/README.md).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from lmexpr_nb.common.files import write_json
from lmexpr_nb.config import Config, load_profile, read_profile
from lmexpr_nb.data.synthetic.write import GENERATOR_VERSION, MARKER, write_synthetic_ckplus
from lmexpr_nb.model.trained import TrainedModel, load_trained, untrained

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
DATA_DIR = REPO / "data"
DATASETS = ("synthetic", "ckplus", "oulu", "folder")


def synthetic_root(profile: str | Path) -> Path:
    """Where the profile's synthetic CK+-layout set lives (generated once, reused)."""
    s = read_profile(profile).get("synth") or {}
    return DATA_DIR / f"synthetic-{s.get('subjects', 24)}x{s.get('frames', 10)}-seed{s.get('seed', 0)}"


def ensure_synthetic(profile: str | Path, log=print) -> Path:
    """The profile's synthetic set, generated if missing or made by another generator version."""
    root = synthetic_root(profile)
    marker = root / MARKER
    if marker.is_file() and f"generator version: {GENERATOR_VERSION}\n" in marker.read_text():
        return root
    s = read_profile(profile).get("synth") or {}
    log(f"generating the synthetic default dataset into {root} ...")
    write_synthetic_ckplus(root, subjects=s.get("subjects", 24), frames=s.get("frames", 10), seed=s.get("seed", 0))
    return root


@dataclass
class NotebookContext:
    """What a notebook needs after its parameters cell: config, paths and provenance."""
    cfg: Config
    profile: str
    out_dir: Path
    dataset: str                # synthetic | ckplus | oulu | folder
    reader: str                 # the dataset reader that reads data_root
    data_root: Path
    cache_dir: Path
    metrics_path: Path | None
    interactive: bool
    extra: dict = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return self.dataset == "synthetic"

    @property
    def figures(self) -> Path:
        return ensure_dir(self.out_dir / "figures")

    @property
    def tables(self) -> Path:
        return ensure_dir(self.out_dir / "tables")

    @property
    def train_dir(self) -> Path:
        return self.out_dir / "train"

    def provenance(self, **more) -> dict:
        """The facts every printed number carries: data, profile, weights/stand-ins, sizes."""
        p = {"dataset": self.dataset, "data": "synthetic (not real faces)" if self.synthetic else "real",
             "profile": self.profile, "standins": self.cfg.uses_standins or ["none"], "recipe": self.cfg.recipe}
        p.update(more)
        return p

    @property
    def checkpoint(self) -> Path:
        return self.train_dir / "checkpoints" / "last.pt"

    def model(self, checkpoint: str | Path | None = None, allow_untrained: bool = False) -> TrainedModel:
        """The trained generator (model/trained.py's TrainedModel: generator, config, provenance, and
        `weights`, the name tables give it) from `checkpoint` or this run's last one, on CUDA when
        present. Without one: a seeded untrained generator of the profile's config when
        `allow_untrained`, else NoTrainedModel (a FileNotFoundError) saying to run 03_training first."""
        path = Path(checkpoint) if checkpoint else self.checkpoint
        if allow_untrained and not path.is_file():
            return untrained(self.cfg, device="auto")
        return load_trained(path, device="auto", now=self.cfg, hint=(
            f"run notebooks/03_training.ipynb first (`lmexpr run --profile {self.profile} --only 03`), or set "
            f"checkpoint = '<path to last.pt>'"))

    def save_metrics(self, name: str, values: dict) -> dict:
        """Record numbers under `name` in this notebook's metrics JSON (merged, written atomically);
        a file there that is no metrics JSON is a one-line ValueError naming it."""
        if self.metrics_path is None:
            return values
        path = Path(self.metrics_path)
        try:
            data = json.loads(path.read_text()) if path.is_file() else {}
            problem = None if isinstance(data, dict) else f"a JSON {type(data).__name__}, not an object"
        except ValueError as e:             # JSONDecodeError, or bytes that are no text
            problem = (f"{getattr(e, 'msg', None) or type(e).__name__}"
                       + (f", line {e.lineno} column {e.colno}" if hasattr(e, "lineno") else ""))
        if problem:
            raise ValueError(f"{path} is not a readable metrics file ({problem}): delete it and run the notebook "
                             f"again")
        data[name] = {"values": values, "provenance": self.provenance()}
        write_json(path, data)
        return values


def notebook_context(profile: str = "smoke", out_dir: str | None = None, dataset: str = "synthetic",
                     data_root: str | None = None, cache_dir: str | None = None, interactive: bool = True,
                     metrics_path: str | None = None, overrides: dict | None = None, **extra) -> NotebookContext:
    """Build the context from a notebook's parameters; makes the synthetic data when needed."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
    cfg = load_profile(profile, overrides)
    out = Path(out_dir) if out_dir else REPO / "outputs" / Path(str(profile)).stem
    if data_root is None:
        if dataset != "synthetic":
            raise ValueError(f"dataset {dataset!r} needs data_root (see data/README.md for where to put it)")
        root = ensure_synthetic(profile)
    else:
        root = Path(data_root)
    return NotebookContext(cfg=cfg, profile=cfg.profile, out_dir=ensure_dir(out), dataset=dataset,
                           reader="ckplus" if dataset == "synthetic" else dataset, data_root=root,
                           cache_dir=Path(cache_dir) if cache_dir else out / "cache",
                           metrics_path=Path(metrics_path) if metrics_path else None,
                           interactive=bool(interactive), extra=extra)


def ensure_dir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p

