"""Run the notebooks in order, headlessly, with papermill (`python -m lmexpr_nb run`).

`run_profile("smoke")` makes sure the data exists (the synthetic default is generated when
no real dataset is given), then executes `notebooks/NN_*.ipynb` in order with an explicit
kernel (`python3`, this environment's own) into `outputs/<profile>/`:

    outputs/<profile>/notebooks/NN_name.ipynb        executed copy
    outputs/<profile>/notebooks/NN_name.metrics.json  numbers the notebook saved (never scraped)
    outputs/<profile>/notebooks/NN_name.kernel.log    the kernel's own stdout/stderr (not cell outputs)
    outputs/<profile>/figures/, tables/, cache/, train/  what the notebooks write
    outputs/<profile>/run.json                       per-notebook status, seconds, provenance, this
                                                     run's id and which run made each output (ledger.py)

Parameters given to every notebook: profile, out_dir, dataset, data_root, cache_dir,
interactive (False under papermill), metrics_path, plus the profile's `notebooks:` entries.
A failing notebook stops the run with its name, the failing cell and the error. Ctrl-C stops it
with one line ("interrupted during 03_training; rerun to continue", exit status 130); run.json
then says "interrupted" for that notebook and "not run" for the rest, and the report is written.
A notebook's metrics JSON is cleared before it runs, so it holds that execution's numbers only.

Paths (a profile file, --data, --out) are resolved against the caller's working directory
before anything runs, since the notebooks execute in the output folder. The profile is loaded
(every setting type-checked) and the output folder checked writable before the first notebook.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from jupyter_client.manager import AsyncKernelManager

from lmexpr_nb import __version__
from lmexpr_nb.common.files import writable_dir, write_json
from lmexpr_nb.config import load_profile, notebook_parameters
from lmexpr_nb.runner.context import DATASETS, NOTEBOOK_DIR, REPO, ensure_dir, ensure_synthetic
from lmexpr_nb.runner.ledger import new_run_id, outputs_ledger, previous_outputs, snapshot
from lmexpr_nb.runner.report import write_report


class NotebookFailed(RuntimeError):
    """A notebook raised: carries the notebook, the failing cell and the error."""


class RunInterrupted(RuntimeError):
    """Ctrl-C during a notebook: run.json marks it "interrupted" and the rest "not run"."""


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
    import papermill as pm  # lazy: only to execute notebooks

    profile = resolve_profile_arg(profile)
    load_profile(profile)                    # unknown or mistyped settings stop here, before any notebook
    profile_name = Path(str(profile)).stem
    out = Path(out).expanduser() if out else REPO / "outputs" / profile_name
    out = writable_dir(out.resolve(), "output folder")
    nb_out = ensure_dir(out / "notebooks")
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
               "run_id": new_run_id(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "notebooks": []}
    summary.update(_versions())
    notebooks = list_notebooks(only, notebooks_dir)
    before, previous = snapshot(out), previous_outputs(out)

    def save():
        summary["outputs"] = outputs_ledger(out, before, previous, summary["run_id"], summary["started"])
        write_json(out / "run.json", summary)

    stopped = None
    for i, nb in enumerate(notebooks):
        metrics = nb_out / f"{nb.stem}.metrics.json"
        params = {"profile": str(profile), "out_dir": str(out), "dataset": dataset, "data_root": str(data),
                  "cache_dir": str(out / "cache"), "interactive": False, "metrics_path": str(metrics)}
        params.update(notebook_parameters(profile, nb.stem))
        params["dataset"] = dataset
        entry = {"notebook": nb.stem, "executed": str(nb_out / nb.name), "status": "running"}
        summary["notebooks"].append(entry)
        log(f"[{i + 1}/{len(notebooks)}] {nb.name} ...")
        metrics.unlink(missing_ok=True)      # the numbers of this execution only, as in its executed copy
        t0 = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(nb_out / nb.name), parameters=params, kernel_name=kernel,
                                cwd=str(out), progress_bar=False, log_output=False,
                                kernel_manager_class=_kernel_logged_to(nb_out / f"{nb.stem}.kernel.log"))
            entry["status"] = "ok"
        except KeyboardInterrupt:            # Ctrl-C: this notebook and the rest did not finish
            entry["status"] = stopped = "interrupted"
        except Exception as e:  # papermill wraps the kernel's error; name the cell
            entry["status"] = stopped = "interrupted" if getattr(e, "ename", "") == "KeyboardInterrupt" else "failed"
            if stopped == "failed":
                entry["error"] = _describe_failure(nb_out / nb.name, e)
        finally:
            if stopped:
                summary["notebooks"] += [{"notebook": later.stem, "status": "not run"} for later in notebooks[i + 1:]]
            entry["seconds"] = round(time.perf_counter() - t0, 1)
            summary["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
            save()
        log(f"      {entry['status']} in {entry['seconds']} s")
        if stopped:
            break
    try:
        summary["report"] = [str(p) for p in write_report(out)]
    except KeyboardInterrupt:
        if stopped != "interrupted":
            raise
    save()
    if stopped == "interrupted":
        raise RunInterrupted(f"interrupted during {entry['notebook']}; rerun to continue")
    failed = [e for e in summary["notebooks"] if e["status"] == "failed"]
    if failed:
        raise NotebookFailed(f"{failed[0]['notebook']}: {failed[0]['error']} (executed copy: {failed[0]['executed']})")
    return summary


def _kernel_logged_to(path: Path):
    """The kernel manager class papermill starts each notebook's kernel with: the kernel's own
    stdout and stderr (its startup warnings, C-level messages, its noise when the run is
    interrupted) go to `path` (notebooks/NN_name.kernel.log), not to the terminal; cell outputs
    are in the executed notebook as always."""
    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            try:                             # the kernel keeps its own copy of the descriptor
                kw.setdefault("stdout", fd)
                kw.setdefault("stderr", fd)
                return await super().start_kernel(**kw)
            finally:
                os.close(fd)
    return LoggedKernelManager


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
    out["device"] = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
                     else f"CPU ({platform.processor() or platform.machine()})")
    return out


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
    except (RunInterrupted, KeyboardInterrupt) as e:
        print(f"lmexpr run: {str(e) or 'interrupted; rerun to continue'}", file=sys.stderr)
        return 130
    print(f"\nexecuted notebooks: {s['out_dir']}/notebooks/\nfigures: {s['out_dir']}/figures/\n"
          f"tables: {s['out_dir']}/tables/\nrun summary: {s['out_dir']}/run.json")
    for r in s.get("report", []):
        print(f"report: {r}")
    return 0
