"""The tests' own cache (suite_cache.py): what the tiny model's key covers, one build per entry
while other workers wait, and a half-built entry never reused."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from suite_cache import cached, imports_of, package_dir, source_closure

TESTS = Path(__file__).resolve().parent

LOADED = """
import ast, importlib, json, sys
sys.path.insert(0, sys.argv[1])
tree = ast.parse(open(sys.argv[2]).read())
for node in ast.walk(tree):              # every module tiny_run.py imports, at its top or in a function
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split('.')[0] == 'lmexpr_nb':
        importlib.import_module(node.module)
print(json.dumps(sorted(m.__file__ for k, m in sys.modules.items()
                        if k.split('.')[0] == 'lmexpr_nb' and getattr(m, '__file__', None))))
"""


def test_tiny_model_key_covers_every_package_module_its_training_loads():
    """Import what tiny_run.py imports in a fresh interpreter (the package imports at module top,
    the house rule, so this loads all that its training runs) and list the package modules loaded:
    each must be in the key's sources (the key once missed train/device.py, landmarks/heatmaps.py,
    data/pairs.py and the landmark crop, so a change there reused a stale model)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", LOADED, str(TESTS), str(TESTS / "tiny_run.py")], env=env,
                       capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stderr[-3000:]
    loaded = {Path(f).resolve() for f in json.loads(r.stdout.strip().splitlines()[-1])}
    keyed = {p.resolve() for p in source_closure(sorted(imports_of(TESTS / "tiny_run.py")))}
    assert len(loaded) > 20 and loaded <= keyed, sorted(str(p) for p in loaded - keyed)
    pkg = package_dir().resolve()
    for name in ("train/device.py", "landmarks/heatmaps.py", "data/pairs.py", "landmarks/detect.py"):
        assert pkg / name in keyed, name


def test_source_closure_follows_module_imports_and_skips_names(tmp_path):
    pkg = tmp_path / "lmexpr_nb"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from lmexpr_nb.sub import b\nfrom lmexpr_nb.c import NAME\n")
    (pkg / "sub" / "b.py").write_text("import os\n\ndef f():\n    from lmexpr_nb.d import g  # lazy\n")
    (pkg / "c.py").write_text("NAME = 1\n")
    (pkg / "d.py").write_text("def g():\n    pass\n")
    (pkg / "unused.py").write_text("X = 1\n")
    got = {p.relative_to(pkg).as_posix() for p in source_closure(["lmexpr_nb.a"], pkg)}
    assert got == {"__init__.py", "a.py", "sub/__init__.py", "sub/b.py", "c.py", "d.py"}


def test_an_entry_is_built_once_while_another_worker_waits_for_it(tmp_path):
    building, second_waits = threading.Event(), threading.Event()
    builds, results, errors = [], {}, []

    def build(folder):
        builds.append(folder)
        building.set()
        # hold the entry until the second worker is waiting on its lock (the guard only ends a hang)
        assert second_waits.wait(120), "the second worker never had to wait"
        (folder / "made").write_text("once\n")

    def worker(name, **kw):
        try:
            results[name] = cached("entry", "k", build, root=tmp_path, **kw)
        except BaseException as e:             # noqa: BLE001 (reported by the main thread)
            errors.append(e)

    first = threading.Thread(target=worker, args=("first",))
    first.start()
    assert building.wait(120)
    second = threading.Thread(target=worker, args=("second",), kwargs={"log": lambda msg: second_waits.set()})
    second.start()
    first.join()
    second.join()
    assert not errors, errors
    folder = tmp_path / "entry-k"
    assert builds == [folder] and results == {"first": (folder, False), "second": (folder, True)}
    assert (folder / "made").read_text() == "once\n" and (folder / "COMPLETE").is_file()


def test_a_half_built_entry_is_built_again_not_reused(tmp_path):
    folder = tmp_path / "entry-k"
    folder.mkdir()
    (folder / "partial").write_text("a build that died here\n")          # no COMPLETE marker

    def build(f):
        (f / "made").write_text("whole\n")
    assert cached("entry", "k", build, root=tmp_path) == (folder, False)
    assert not (folder / "partial").exists() and (folder / "made").read_text() == "whole\n"
    assert cached("entry", "k", lambda f: None, root=tmp_path) == (folder, True)
