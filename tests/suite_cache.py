"""What the tests build once and reuse, kept outside the repository and keyed by what made it.

    folder = cached("tiny-model", key, build)    # build(folder) runs once per key, under a lock

The root is $LMEXPR_TEST_CACHE, else $XDG_CACHE_HOME/lmexpr-nb-tests, else ~/.cache/lmexpr-nb-tests.
Each entry is ROOT/<name>-<key>/ with a COMPLETE marker written last: a build that died half way is
rebuilt, never reused. A blocking lock file per entry (fcntl) makes pytest-xdist workers, test
files and concurrent sessions (other checkouts on the same machine) build an entry once and wait
for it; the holder's pid is in the lock file. Entries of the same name unused for PRUNE_DAYS are
removed when a new one is built (only those no process holds).

The key hashes the sources the entry is made from: `source_closure(modules)` follows the package's
imports (absolute `lmexpr_nb` imports at module top, the house rule) from the given modules and
returns every package file they load, so a change to any module the build imports makes a new key,
with no hand-kept list to go stale.
"""
from __future__ import annotations

import ast
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

from lmexpr_nb.common.files import exclusive_lock

try:
    import fcntl
except ImportError:          # not POSIX: no lock (one worker at a time is then the user's care)
    fcntl = None
PKG_NAME = "lmexpr_nb"
PRUNE_DAYS = 14


def cache_root() -> Path:
    if os.environ.get("LMEXPR_TEST_CACHE"):
        return Path(os.environ["LMEXPR_TEST_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lmexpr-nb-tests"


def package_dir() -> Path:
    import lmexpr_nb
    return Path(lmexpr_nb.__file__).parent


def _module_file(pkg: Path, dotted: str) -> Path | None:
    """lmexpr_nb.a.b -> pkg/a/b.py or pkg/a/b/__init__.py (None when neither exists)."""
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    for cand in (pkg / rel.with_suffix(".py") if rel.parts else None, pkg / rel / "__init__.py"):
        if cand is not None and cand.is_file():
            return cand
    return None


def imports_of(path: Path) -> set[str]:
    """Package modules `path` imports (`import lmexpr_nb.x`, `from lmexpr_nb.x import y` where y may
    be a module), with the packages above each (Python runs their __init__ too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == PKG_NAME:
                found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found


def source_closure(modules: list[str], pkg: Path | None = None) -> list[Path]:
    """Every package source file that importing `modules` (dotted names) loads, sorted."""
    pkg = pkg or package_dir()
    todo, seen = list(modules), set()
    files = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(pkg, name)
        if path is None:
            continue              # `from lmexpr_nb.x import SOME_NAME`: a name, not a module
        files.add(path)
        todo += sorted(imports_of(path) - seen)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]
    return sorted(files)


def content_key(*parts, files=()) -> str:
    """12 hex digits of the sha1 of `parts` (repr) and the bytes of `files` (named relative to the
    package, so two checkouts of the same code share the key)."""
    h = hashlib.sha1(repr(parts).encode())
    pkg = package_dir()
    for f in sorted(Path(p) for p in files):
        h.update(str(f.relative_to(pkg) if f.is_relative_to(pkg) else f.name).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def _prune(root: Path, name: str, keep: Path) -> None:
    """Remove other entries of `name` unused for PRUNE_DAYS, when no process holds them."""
    cutoff = time.time() - PRUNE_DAYS * 86400
    for done in root.glob(f"{name}-*/COMPLETE"):
        folder = done.parent
        if folder == keep or done.stat().st_mtime > cutoff:
            continue
        with open(folder.with_suffix(".lock"), "a+") as f:
            if fcntl is not None:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
            shutil.rmtree(folder, ignore_errors=True)


def cached(name: str, key: str, build, root: Path | None = None, log=None) -> tuple[Path, bool]:
    """(ROOT/<name>-<key>, reused): build(folder) runs there once, under the entry's lock."""
    root = Path(root) if root is not None else cache_root()
    folder = root / f"{name}-{key}"
    log = log or (lambda msg: print(msg, file=sys.stderr))
    root.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(folder.with_suffix(".lock"), "test cache build",
                        on_busy=lambda pid: log(f"waiting for pid {pid}, which builds {folder}")):
        done = folder / "COMPLETE"
        if done.is_file():
            done.touch()          # last use, for pruning
            return folder, True
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        build(folder)
        done.write_text(f"built by pid {os.getpid()} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        _prune(root, name, folder)
    return folder, False
