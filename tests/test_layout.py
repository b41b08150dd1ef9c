"""The package's shape (lmexpr_nb/README.md): every module imports on its own, imports sit at the
top, modules stay readable in size, no two public functions share a name, docstrings cite only
what the project contains.

The fresh-import check: a child interpreter imports the third-party libraries once (torch, numpy,
scipy, ...; never a module of the package), then forks one process per module of the package and
imports that module alone in it. Each fork starts with no module of the package loaded, exactly
as a fresh interpreter would, so an import cycle (A imports B, B imports A) fails there whatever
the order; only the seconds of importing torch are shared.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "lmexpr_nb"
MAX_LINES = 420            # "split what grows past ~400 lines"
LAZY = ("dlib", "papermill", "ipywidgets", "IPython", "ipykernel", "jupyter_server", "jupyterlab", "nbconvert",
        "nbformat")

FRESH_IMPORTS = textwrap.dedent(r'''
    import importlib, os, sys
    from pathlib import Path
    import matplotlib, numpy, PIL, scipy, skimage, torch, torchvision, yaml    # third party, imported once
    root, pkg = Path(sys.argv[1]), sys.argv[2]
    sys.path.insert(0, str(root))
    names = []
    for p in sorted((root / pkg).rglob("*.py")):
        parts = list(p.relative_to(root).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert not [k for k in sys.modules if k == pkg or k.startswith(pkg + ".")]
    for name in names:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:                                  # the child: only this module of the package
            os.close(r)
            try:
                importlib.import_module(name)
                msg = ""
            except BaseException as e:
                msg = f"{name}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            os.write(w, msg.encode())
            os._exit(0)
        os.close(w)
        out = b""
        while chunk := os.read(r, 1 << 16):
            out += chunk
        os.close(r)
        os.waitpid(pid, 0)
        print(out.decode() or f"ok {name}", flush=True)
''')


def fresh_imports(root: Path, pkg: str) -> tuple[list[str], list[str]]:
    """(modules that imported, failures 'module: Error: message') of `pkg` under `root`."""
    r = subprocess.run([sys.executable, "-c", FRESH_IMPORTS, str(root), pkg], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    return [x[3:] for x in lines if x.startswith("ok ")], [x for x in lines if not x.startswith("ok ")]


def modules() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def _inner_imports(tree: ast.Module):
    """Import statements inside a function or class body."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    yield sub


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    ok, failed = fresh_imports(REPO, "lmexpr_nb")
    assert not failed, "\n".join(failed)
    assert len(ok) == len(modules()) and "lmexpr_nb.explore.explorer" in ok


def test_the_fresh_import_check_finds_an_import_cycle(tmp_path):
    """The check above can fail: two modules that import each other fail when imported first."""
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "state.py").write_text("from cyc.explorer import Explorer\nREGIONS = ('mouth',)\n")
    (pkg / "explorer.py").write_text("from cyc.state import REGIONS\nclass Explorer:\n    pass\n")
    (pkg / "fine.py").write_text("X = 1\n")
    ok, failed = fresh_imports(tmp_path, "cyc")
    assert sorted(ok) == ["cyc", "cyc.fine"]
    assert len(failed) == 2 and all("ImportError" in f and "circular" in f for f in failed), failed


def test_imports_sit_at_the_top_except_heavy_optional_ones_that_say_why():
    bad = []
    for path in modules():
        src = path.read_text()
        lines = src.splitlines()
        for node in _inner_imports(ast.parse(src)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            top = {n.split(".")[0] for n in names}
            where = f"{path.relative_to(REPO)}:{node.lineno}: {lines[node.lineno - 1].strip()}"
            if getattr(node, "level", 0) or not top <= set(LAZY):
                bad.append(f"{where}  (import at the module's top)")
            elif "# lazy:" not in lines[node.lineno - 1]:
                bad.append(f"{where}  (say why it is lazy: '# lazy: ...')")
    assert not bad, "\n".join(bad)


def test_modules_stay_under_about_400_lines():
    long = {str(p.relative_to(REPO)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def test_no_two_public_functions_or_classes_share_a_name():
    where = defaultdict(list)
    for path in modules():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                where[node.name].append(str(path.relative_to(REPO)))
    # every bench module's command-line entry point is its bench_main (the dispatcher calls it by name)
    where.pop("bench_main", None)
    assert not {k: v for k, v in where.items() if len(v) > 1}


def test_package_inits_hold_no_code_and_re_export_nothing():
    for path in PKG.rglob("__init__.py"):
        if path.parent == PKG:
            continue
        body = ast.parse(path.read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), path


@pytest.mark.parametrize("where", ["lmexpr_nb", "tests", "notebooks"])
def test_no_docstring_cites_a_missing_file_or_an_issue_number(where):
    bad = []
    for path in sorted((REPO / where).rglob("*.py" if where != "notebooks" else "*.ipynb")):
        text = path.read_text()
        for m in re.finditer(r"DESIGN\.md|\bissues? \d+|\bissue #\d+", text):
            bad.append(f"{path.relative_to(REPO)}: {text[max(0, m.start() - 40):m.end() + 10]!r}")
    assert not bad, "\n".join(bad)


def test_every_file_the_package_names_exists():
    """A docstring or comment that names a .py file (`data/cache.py`, `checkpoint.py`) names one
    the project has."""
    have = [p.relative_to(REPO).as_posix() for p in REPO.rglob("*.py") if ".venv" not in p.parts]
    bad = []
    for path in [*modules(), PKG / "README.md", *sorted((REPO / "notebooks").glob("*.ipynb"))]:
        for m in re.finditer(r"(?<![\w./])(\w[\w/]*\.py)\b", path.read_text()):
            if not any(h == m.group(1) or h.endswith("/" + m.group(1)) for h in have):
                bad.append(f"{path.relative_to(REPO)}: {m.group(1)}")
    assert not bad, "\n".join(bad)


def test_the_package_readme_names_every_stage_folder():
    readme = (PKG / "README.md").read_text()
    folders = sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").is_file())
    assert folders == ["bench", "common", "data", "experiments", "explore", "landmarks", "metrics", "model",
                       "runner", "train"]
    assert all(f"`{f}/`" in readme for f in folders)
