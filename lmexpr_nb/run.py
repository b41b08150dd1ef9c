"""Run the notebooks in order, headlessly, with papermill; and what each notebook calls first.

`run_profile("smoke")` makes sure the data exists (the synthetic default is generated when
no real dataset is given), then executes `notebooks/NN_*.ipynb` in order with an explicit
kernel (`python3`, this environment's own) into `outputs/<profile>/`:

    outputs/<profile>/notebooks/NN_name.ipynb        executed copy
    outputs/<profile>/notebooks/NN_name.metrics.json  numbers the notebook saved (never scraped)
    outputs/<profile>/figures/, tables/, cache/, train/  what the notebooks write
    outputs/<profile>/run.json                       per-notebook status, seconds, provenance

Parameters given to every notebook: profile, out_dir, dataset, data_root, cache_dir,
interactive (False under papermill), metrics_path, plus the profile's `notebooks:` entries.
A failing notebook stops the run with its name, the failing cell and the error.

Paths (a profile file, --data, --out) are resolved against the caller's working directory
before anything runs, since the notebooks execute in the output folder. The profile is loaded
(every setting type-checked) and the output folder checked writable before the first notebook.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .config import Config, load_profile, notebook_parameters, read_profile
from .io import writable_dir, write_json

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = REPO / "notebooks"
DATA_DIR = REPO / "data"
DATASETS = ("synthetic", "ckplus", "oulu", "folder")


class NotebookFailed(RuntimeError):
    """A notebook raised: carries the notebook, the failing cell and the error."""


def synthetic_root(profile: str | Path) -> Path:
    """Where the profile's synthetic CK+-layout set lives (generated once, reused)."""
    s = read_profile(profile).get("synth") or {}
    return DATA_DIR / f"synthetic-{s.get('subjects', 24)}x{s.get('frames', 10)}-seed{s.get('seed', 0)}"


def ensure_synthetic(profile: str | Path, log=print) -> Path:
    """The profile's synthetic set, generated if missing or made by another generator version."""
    from .data.synthetic import GENERATOR_VERSION, MARKER, write_synthetic_ckplus
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
        return _mkdir(self.out_dir / "figures")

    @property
    def tables(self) -> Path:
        return _mkdir(self.out_dir / "tables")

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

    def generator(self, checkpoint: str | Path | None = None, allow_untrained: bool = False):
        """(generator in eval mode, trained?) from `checkpoint` or this run's last one. Without one,
        a seeded untrained generator of the profile's config when allow_untrained, else an error
        that says to run 03_training first."""
        path = Path(checkpoint) if checkpoint else self.checkpoint
        if path.is_file():
            from .checkpoint import load_generator
            G, _ = load_generator(path, device="auto")
            return G, True
        if not allow_untrained:
            raise FileNotFoundError(f"no trained model at {path}: run 03_training (or give a checkpoint)")
        import torch
        from .nets import build_generator
        torch.manual_seed(self.cfg.train.seed)
        return build_generator(self.cfg.model).eval(), False

    def save_metrics(self, name: str, values: dict) -> dict:
        """Record numbers under `name` in this notebook's metrics JSON (merged, written atomically)."""
        if self.metrics_path is None:
            return values
        path = Path(self.metrics_path)
        data = json.loads(path.read_text()) if path.is_file() else {}
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
    return NotebookContext(cfg=cfg, profile=cfg.profile, out_dir=_mkdir(out), dataset=dataset,
                           reader="ckplus" if dataset == "synthetic" else dataset, data_root=root,
                           cache_dir=Path(cache_dir) if cache_dir else out / "cache",
                           metrics_path=Path(metrics_path) if metrics_path else None,
                           interactive=bool(interactive), extra=extra)


def list_notebooks(only: list[str] | None = None, folder: Path | None = None) -> list[Path]:
    nbs = sorted(Path(folder or NOTEBOOK_DIR).glob("[0-9][0-9]_*.ipynb"))
    if only:
        nbs = [p for p in nbs if any(p.stem.startswith(o) or p.stem == o for o in only)]
        if not nbs:
            raise ValueError(f"no notebook matches {only}")
    return nbs


def run_profile(profile: str = "smoke", out: str | Path | None = None, data: str | Path | None = None,
                dataset: str | None = None, only: list[str] | None = None, kernel: str = "python3",
                log=print, notebooks_dir: Path | None = None) -> dict:
    """Execute the notebooks for `profile`; returns (and writes to run.json) what ran and how long."""
    import papermill as pm

    profile = resolve_profile_arg(profile)
    load_profile(profile)                    # unknown or mistyped settings stop here, before any notebook
    profile_name = Path(str(profile)).stem
    out = Path(out).expanduser() if out else REPO / "outputs" / profile_name
    out = writable_dir(out.resolve(), "output folder")
    nb_out = _mkdir(out / "notebooks")
    dataset = dataset or notebook_parameters(profile, "").get("dataset", "synthetic")
    if data is None and dataset != "synthetic":
        raise ValueError(f"profile {profile_name} reads {dataset}: give its root with --data DIR (see data/README.md)")
    if data is None:
        data = ensure_synthetic(profile, log)
    elif not Path(data).expanduser().is_dir():
        raise ValueError(f"--data {data}: no such folder")
    data = Path(data).expanduser().resolve()
    if dataset == "synthetic" and data is not None and not (Path(data) / "SYNTHETIC.md").is_file():
        dataset = "ckplus"  # a real tree given to a synthetic profile is read as CK+, and labelled real
    summary = {"profile": profile_name, "out_dir": str(out), "dataset": dataset, "data_root": str(data),
               "kit_version": __version__, "python": platform.python_version(), "platform": platform.platform(),
               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "notebooks": []}
    summary.update(_versions())
    notebooks = list_notebooks(only, notebooks_dir)
    for i, nb in enumerate(notebooks):
        params = {"profile": str(profile), "out_dir": str(out), "dataset": dataset, "data_root": str(data),
                  "cache_dir": str(out / "cache"), "interactive": False,
                  "metrics_path": str(nb_out / f"{nb.stem}.metrics.json")}
        params.update(notebook_parameters(profile, nb.stem))
        params["dataset"] = dataset
        entry = {"notebook": nb.stem, "executed": str(nb_out / nb.name), "status": "running"}
        summary["notebooks"].append(entry)
        log(f"[{i + 1}/{len(notebooks)}] {nb.name} ...")
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(nb_out / nb.name), parameters=params, kernel_name=kernel,
                                cwd=str(out), progress_bar=False, log_output=False)
            entry["status"] = "ok"
        except Exception as e:  # papermill wraps the kernel's error; name the cell
            entry["status"] = "failed"
            entry["error"] = _describe_failure(nb_out / nb.name, e)
            for later in notebooks[i + 1:]:
                summary["notebooks"].append({"notebook": later.stem, "status": "not run"})
        finally:
            entry["seconds"] = round(time.perf_counter() - t0, 1)
            summary["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
            write_json(out / "run.json", summary)
        log(f"      {entry['status']} in {entry['seconds']} s")
        if entry["status"] == "failed":
            break
    try:
        from .report import write_report
        summary["report"] = [str(p) for p in write_report(out)]
        write_json(out / "run.json", summary)
    except ImportError:
        pass
    failed = [e for e in summary["notebooks"] if e["status"] == "failed"]
    if failed:
        raise NotebookFailed(f"{failed[0]['notebook']}: {failed[0]['error']} (executed copy: {failed[0]['executed']})")
    return summary


def resolve_profile_arg(profile: str | Path) -> str:
    """A profile file given by a relative path becomes absolute (the notebooks run elsewhere);
    a profile name (smoke, paper) stays a name."""
    p = Path(str(profile)).expanduser()
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return str(p.resolve())
    return str(profile)


def _describe_failure(executed: Path, err: Exception) -> str:
    """'cell N: ErrorName: message' from the executed copy (papermill marks the failing cell)."""
    ename = getattr(err, "ename", type(err).__name__)
    evalue = str(getattr(err, "evalue", err)).strip().splitlines()
    evalue = evalue[-1] if evalue else ""
    cell = None
    try:
        nb = json.loads(executed.read_text())
        # number code cells as in the user's notebook: papermill's injected cell is not one of them
        code = [c for c in nb["cells"] if c["cell_type"] == "code"
                and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
        for k, c in enumerate(code):
            if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
                first = "".join(c["source"]).strip().splitlines()
                cell = f"code cell {k + 1} ({first[0][:60] if first else ''})"
                break
    except (OSError, ValueError, KeyError):
        pass
    return f"{cell}: {ename}: {evalue}" if cell is not None else f"{ename}: {evalue}"


def _versions() -> dict:
    out = {}
    for mod in ("torch", "torchvision", "numpy", "skimage", "dlib", "papermill"):
        try:
            out[f"{mod}_version"] = getattr(__import__(mod), "__version__", "?")
        except ImportError:
            out[f"{mod}_version"] = "missing"
    try:
        import torch
        out["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({platform.processor() or platform.machine()})"
    except ImportError:
        pass
    return out


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def run_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lmexpr run", description=(
        "Execute the notebooks in order, headlessly, with papermill (kernel python3 of this environment). "
        "Without --data the profile's synthetic default dataset is generated (once) and used."))
    ap.add_argument("--profile", default="smoke", help="smoke (CPU, minutes, synthetic) | paper (GPU) | a .yaml path")
    ap.add_argument("--out", default=None, help="output folder (default outputs/<profile>/)")
    ap.add_argument("--data", default=None, help="dataset root (CK+, Oulu-CASIA or a folder tree); default: synthetic")
    ap.add_argument("--dataset", choices=DATASETS, default=None,
                    help="how to read --data (default: the profile's; a real tree given to smoke is read as ckplus)")
    ap.add_argument("--only", nargs="*", default=None, help="run only these notebooks (prefixes like 00 03)")
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    a = ap.parse_args(argv)
    try:
        if a.out is not None:
            writable_dir(Path(a.out).expanduser().resolve(), "--out")
        s = run_profile(a.profile, a.out, a.data, a.dataset, a.only, a.kernel)
    except (ValueError, OSError, KeyError, NotebookFailed) as e:
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        msg = text.strip().splitlines()
        print(f"lmexpr run: {msg[0] if msg else type(e).__name__}", file=sys.stderr)
        return 2
    print(f"\nexecuted notebooks: {s['out_dir']}/notebooks/\nfigures: {s['out_dir']}/figures/\n"
          f"tables: {s['out_dir']}/tables/\nrun summary: {s['out_dir']}/run.json")
    for r in s.get("report", []):
        print(f"report: {r}")
    return 0
