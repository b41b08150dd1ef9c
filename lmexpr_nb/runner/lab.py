"""`make lab`: JupyterLab on the notebooks, with notebooks that open unmodified.

    python -m lmexpr_nb.runner.lab [NOTEBOOK_DIR] [jupyter lab options ...]

Why a notebook showed the "modified" dot the moment it opened: when its kernel connects,
JupyterLab writes the kernel's own metadata into the open notebook, and any difference from
the file marks it modified. The committed notebooks differ in two ways: `kernelspec.display_name`
("Python 3" vs the registered "Python 3 (lmexpr-nb)") and `language_info` (the file keeps
only {"name": "python"}; ipykernel reports seven fields, among them this interpreter's exact
version, e.g. "3.11.7"). The version cannot be committed: it is the user's Python, not the kit's.

So the server started here uses `KitContentsManager`, which hands a notebook to the browser
with the metadata its kernel is about to report (the registered kernel's display name; the
language_info of ipykernel in this interpreter when the kernel runs this interpreter).
Nothing is written to disk: the file changes only when the user saves, as in any Jupyter.
Opening a notebook still makes a `.ipynb_checkpoints/` folder (JupyterLab's), which
.gitignore covers.

JupyterLab refuses to run as root without --allow-root (Docker images, many GPU servers):
`lab_command` adds it only when the effective user is root, and says so.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager

REPO = Path(__file__).resolve().parents[2]
CONTENTS_MANAGER = "lmexpr_nb.runner.lab.KitContentsManager"


def kernel_metadata(spec_name: str, display_name: str, argv: list[str] | None, language: str = "python") -> dict:
    """{'kernelspec': ..., 'language_info': ...} as JupyterLab writes them when the kernel
    `spec_name` connects; language_info only when that kernel is ipykernel in this very
    interpreter (its version is this interpreter's)."""
    out = {"kernelspec": {"name": spec_name, "display_name": display_name, "language": language}}
    exe = argv[0] if argv else None
    same = exe in ("python", "python3", "{python}") or (
        exe is not None and os.path.realpath(exe) == os.path.realpath(sys.executable))
    if same and argv and "ipykernel_launcher" in " ".join(argv):
        from ipykernel.ipkernel import IPythonKernel  # lazy: Jupyter, for `make lab` only
        out["language_info"] = dict(IPythonKernel.language_info)
    return out


def align_metadata(nb_metadata: dict, kernel_meta: dict) -> bool:
    """Put `kernel_meta` into a notebook's metadata when the notebook names that kernel; True if changed."""
    spec = nb_metadata.get("kernelspec") or {}
    if spec.get("name") != kernel_meta["kernelspec"]["name"]:
        return False
    changed = False
    for key, value in kernel_meta.items():
        if nb_metadata.get(key) != value:
            nb_metadata[key] = value
            changed = True
    return changed


class KitContentsManager(AsyncLargeFileManager):
    """Jupyter's default contents manager, except that a notebook arrives in the browser with
    its kernel's metadata already in place (see the module doc)."""

    _kernel_meta: dict | None = None

    async def get(self, path, content=True, type=None, format=None, **kwargs):
        model = await super().get(path, content=content, type=type, format=format, **kwargs)
        if content and model.get("type") == "notebook" and model.get("content") is not None:
            meta = self._meta_for(model["content"].get("metadata", {}).get("kernelspec", {}).get("name"))
            if meta:
                align_metadata(model["content"]["metadata"], meta)
        return model

    def _meta_for(self, name: str | None) -> dict | None:
        if not name:
            return None
        cache = self._kernel_meta if self._kernel_meta is not None else {}
        if name not in cache:
            try:
                ksm = getattr(self.parent, "kernel_spec_manager", None)
                spec = ksm.get_kernel_spec(name) if ksm is not None else None
                cache[name] = (kernel_metadata(name, spec.display_name, spec.argv, spec.language)
                               if spec else None)
            except Exception:              # unknown kernel: leave the notebook as it is
                cache[name] = None
            self._kernel_meta = cache
        return cache[name]


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def lab_command(notebook_dir=None, extra: list[str] | None = None, log=print) -> list[str]:
    """The `jupyter lab` command line (this interpreter's JupyterLab, the kit's contents manager)."""
    cmd = [sys.executable, "-m", "jupyterlab", f"--ServerApp.contents_manager_class={CONTENTS_MANAGER}"]
    if is_root():
        log("lmexpr lab: running as root, so adding --allow-root (JupyterLab refuses root without it)")
        cmd.append("--allow-root")
    cmd += list(extra or [])
    if notebook_dir is not None:
        cmd.append(str(notebook_dir))
    return cmd


def lab_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    folder = argv.pop(0) if argv and not argv[0].startswith("-") else str(REPO / "notebooks")
    if not Path(folder).is_dir():
        print(f"lmexpr lab: {folder}: no such folder", file=sys.stderr)
        return 2
    cmd = lab_command(folder, argv)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)       # JupyterLab replaces this process: Ctrl-C and exit codes are its own
    return 0                    # not reached


if __name__ == "__main__":
    sys.exit(lab_main())
