"""Notebooks are committed clean and papermill-ready; the runner names a failing cell."""
import json
from pathlib import Path

import nbformat
import pytest

from lmexpr_nb.runner import run

NOTEBOOKS = sorted(run.NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_exist_in_order():
    names = [p.stem for p in NOTEBOOKS]
    assert names[:2] == ["00_setup", "01_preprocessing"]
    assert len({n[:2] for n in names}) == len(names), "two notebooks share a number"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_parameterised(path):
    nb = json.loads(path.read_text())
    nbformat.validate(nbformat.reads(path.read_text(), as_version=4))
    # nbformat 4.5 cells carry ids; JupyterLab adds missing ones on open (the "modified" dot)
    assert all(c.get("id") for c in nb["cells"]), "every cell needs an id"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert nb["metadata"]["kernelspec"]["language"] == "python"
    assert nb["metadata"]["language_info"]["name"] == "python"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    src = "".join(tagged[0]["source"])
    for name in ("profile", "out_dir", "dataset", "data_root", "interactive", "metrics_path"):
        assert f"{name} =" in src, f"parameters cell lacks {name}"
    assert all(len("".join(c["source"]).splitlines()) <= 15 for c in code), "logic belongs in lmexpr_nb"
    # papermill must understand every line of the parameters cell (a '=' in a comment breaks it)
    from papermill.translators import PythonTranslator
    parsed = {p.name for p in PythonTranslator.inspect(nbformat.v4.new_code_cell(src))}
    assigned = {line.split("=")[0].strip() for line in src.splitlines() if "=" in line.split("#")[0]}
    assert assigned == parsed, f"papermill cannot parse: {assigned - parsed}"


def _notebook(path: Path, sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    cells = [nbformat.v4.new_code_cell(s) for s in sources]
    cells[0].metadata["tags"] = ["parameters"]
    nb.cells = cells
    nbformat.write(nb, str(path))


def test_failing_notebook_stops_the_run_and_names_the_cell(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _notebook(nbs / "00_fine.ipynb", ["profile = 'smoke'", "x = 1"])
    _notebook(nbs / "01_broken.ipynb", ["steps = 1", "y = 2", "raise ValueError(f'bad steps {steps}')"])
    _notebook(nbs / "02_after.ipynb", ["profile = 'smoke'", "z = 3"])
    data = tmp_path / "data"
    data.mkdir()
    (data / "SYNTHETIC.md").write_text("test tree")
    with pytest.raises(run.NotebookFailed) as e:
        run.run_profile("smoke", out=tmp_path / "out", data=data, notebooks_dir=nbs, log=lambda *a: None)
    msg = str(e.value)
    assert "01_broken" in msg and "code cell 3" in msg and "ValueError: bad steps 1" in msg
    summary = json.loads((tmp_path / "out" / "run.json").read_text())
    status = {n["notebook"]: n["status"] for n in summary["notebooks"]}
    assert status == {"00_fine": "ok", "01_broken": "failed", "02_after": "not run"}


# calls whose value is what the cell is for (they display, or return None)
SHOWN_ON_PURPOSE = {"print", "display", "Markdown", "show_table", "show_image", "show_video", "show"}


def _repr_ending(src: str):
    """The last statement when its value would print as Out[n] (a PosixPath, a dict...), else None."""
    import ast
    tree = ast.parse(src)
    if not tree.body or not isinstance(tree.body[-1], ast.Expr) or src.rstrip().endswith(";"):
        return None
    v = tree.body[-1].value
    v = v.body if isinstance(v, ast.IfExp) else v
    f = v.func if isinstance(v, ast.Call) else None
    name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
    return None if name in SHOWN_ON_PURPOSE else ast.unparse(tree.body[-1])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_cell_ends_in_a_raw_repr(path):
    nb = nbformat.reads(path.read_text(), as_version=4)
    bad = [e for c in nb.cells if c.cell_type == "code" for e in [_repr_ending(c.source)] if e]
    assert not bad, f"cells ending in a value Jupyter would print raw (end them with ';' or display it): {bad}"


def test_repr_check_catches_what_it_should():
    assert _repr_ending("x = 1\nctx.provenance()") == "ctx.provenance()"
    assert _repr_ending("viz.save_figure(fig, p)") == "viz.save_figure(fig, p)"
    assert _repr_ending("viz.save_figure(fig, p);") is None
    assert _repr_ending("viz.show_table(rows)") is None and _repr_ending("if a:\n    f()") is None


def test_show_table_shows_the_table_once(monkeypatch, capsys):
    """What a notebook cell shows: one rendered Markdown table with the title, the columns asked
    for in their order, floats to 4 significant digits, a '|' in a value kept from splitting the
    cell, and no Out[] value; without IPython, the same text printed."""
    import sys

    import IPython.display

    from lmexpr_nb.common import viz
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kw: shown.extend(objs))
    rows = [{"method": "ours", "NME": 0.0412345, "note": "a|b"}, {"method": "copy", "NME": 0.0671, "note": None}]
    assert viz.show_table(rows, columns=["NME", "method", "note"], title="Table 5") is None
    want = ("**Table 5**\n\n"
            "| NME | method | note |\n"
            "|---|---|---|\n"
            "| 0.04123 | ours | a/b |\n"
            "| 0.0671 | copy |  |")
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Markdown) and shown[0].data == want
    assert capsys.readouterr().out == ""
    monkeypatch.setitem(sys.modules, "IPython.display", None)          # no IPython: printed instead
    assert viz.show_table(rows, columns=["NME", "method", "note"], title="Table 5") is None
    assert capsys.readouterr().out == want + "\n" and len(shown) == 1
