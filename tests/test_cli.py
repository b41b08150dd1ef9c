"""README claims about `lmexpr run` and the figures, checked without running the full notebooks:
the profile's per-notebook parameters reach the notebooks that read them (07's steps, 08's
factors), a real tree given to the smoke profile is read and labelled as real, and every
figure the notebooks save carries the provenance footer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lmexpr_nb.common import viz
from lmexpr_nb.config import read_profile
from lmexpr_nb.experiments import figures
from lmexpr_nb.runner import run
from lmexpr_nb.runner.context import notebook_context

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _cells(name: str) -> tuple[str, str]:
    """(parameters cell source, the other code cells' source) of notebooks/<name>.ipynb."""
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    params = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1
    return "".join(params[0]["source"]), "\n".join("".join(c["source"]) for c in code if c is not params[0])


@pytest.fixture
def recorded(monkeypatch, tmp_path):
    """run_profile with papermill replaced by a recorder: {notebook stem: parameters given}."""
    import papermill
    calls = {}

    def record(input_path, output_path, parameters=None, cwd=None, **kw):
        calls[Path(input_path).stem] = dict(parameters, cwd=cwd)
        Path(output_path).write_text(Path(input_path).read_text())
    monkeypatch.setattr(papermill, "execute_notebook", record)
    return calls


def _tree(tmp_path: Path, synthetic: bool) -> Path:
    root = tmp_path / "data"
    (root / "cohn-kanade-images").mkdir(parents=True)
    if synthetic:
        (root / "SYNTHETIC.md").write_text("synthetic\n")
    return root


@pytest.mark.parametrize("notebook,section", [("07_ablation", "07_ablation"), ("08_augmentation", "08_augmentation")])
def test_profile_notebook_parameters_reach_the_notebooks_that_read_them(recorded, tmp_path, notebook, section):
    run.run_profile("smoke", tmp_path / "out", _tree(tmp_path, True), only=[notebook[:2]], log=lambda *a: None)
    given = recorded[notebook]
    wanted = read_profile("smoke")["notebooks"][section]
    assert wanted, "the smoke profile sets parameters for this notebook"
    params, body = _cells(notebook)
    for key, value in wanted.items():
        assert given[key] == value
        assert f"{key} =" in params, f"{notebook} does not declare {key} in its parameters cell"
        assert key in body, f"{notebook} declares {key} but never uses it"
    assert given["profile"] == "smoke" and given["dataset"] == "synthetic"


def test_real_tree_given_to_the_smoke_profile_is_read_and_labelled_as_real(recorded, tmp_path):
    root = _tree(tmp_path, synthetic=False)
    s = run.run_profile("smoke", tmp_path / "out", root, only=["00", "01"], log=lambda *a: None)
    assert s["dataset"] == "ckplus"
    assert [p["dataset"] for p in recorded.values()] == ["ckplus", "ckplus"]
    assert all(p["data_root"] == str(root.resolve()) and p["cwd"] == str((tmp_path / "out").resolve())
               for p in recorded.values())
    ctx = notebook_context("smoke", str(tmp_path / "out"), "ckplus", str(root), interactive=False)
    assert ctx.provenance()["data"] == "real" and not ctx.synthetic
    assert "real" in viz.footer_text(ctx.provenance()) and "synthetic" not in viz.footer_text(ctx.provenance())


def test_every_figure_the_notebooks_save_is_built_with_the_footer():
    """Each cell that saves a figure builds it with footer= (or, for experiments/figures.py's Figs. 7-9,
    hands them the provenance they print as their footer)."""
    saving = 0
    for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        for c in json.loads(p.read_text())["cells"]:
            src = "".join(c["source"])
            if c["cell_type"] != "code":
                continue
            if "viz.save_figure(" in src:
                saving += 1
                assert "footer=" in src, (p.name, src[:200])
            for call in src.split("figures.figure_")[1:]:
                saving += 1
                assert "prov" in call.split(")")[0], (p.name, call[:120])
    assert saving >= 8


def test_figure_builders_put_the_footer_on_the_figure(tmp_path):
    from types import SimpleNamespace

    import matplotlib.pyplot as plt
    footer = viz.footer_text({"dataset": "synthetic", "data": "synthetic (not real faces)", "profile": "smoke",
                              "standins": ["FD-dlib"]})
    rng = np.random.default_rng(0)
    cache = SimpleNamespace(images=rng.integers(0, 255, (4, 16, 16, 3)).astype(np.uint8),
                            landmarks=rng.uniform(2, 14, (4, 68, 2)), labels=np.array([0, 5, 0, 5]),
                            subjects=np.array(["a", "a", "b", "b"]), method=np.array(["dataset"] * 4))
    (tmp_path / "losses.csv").write_text("step,g_total,g_pixel,d_image,d_geometry\n1,2,1,0.7,0.7\n2,1.5,0.8,0.6,0.7\n")
    figs = [figures.expression_grid(cache, per_class=2, footer=footer), figures.method_grid(cache, footer=footer),
            viz.image_grid([[cache.images[0]]], footer=footer), viz.loss_curves(tmp_path / "losses.csv", footer=footer)]
    for fig in figs:
        assert footer in [" ".join(t.get_text().split("\n")) for t in fig.texts]   # wrapped to the width
        assert "synthetic" in footer and "smoke" in footer
        plt.close(fig)
