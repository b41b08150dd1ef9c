"""The headless papermill run of the smoke profile: every notebook, in order, on the synthetic
default, into a temporary output folder; then what a user would look for is there."""
import csv
import json
import os

import pytest

from lmexpr_nb import run


@pytest.mark.slow
def test_smoke_profile_runs_every_notebook(tmp_path):
    out = tmp_path / "smoke"
    summary = run.run_profile("smoke", out=out, log=print)
    names = [p.stem for p in run.list_notebooks()]
    assert [n["notebook"] for n in summary["notebooks"]] == names
    assert all(n["status"] == "ok" for n in summary["notebooks"]), summary["notebooks"]
    for name in names:
        assert (out / "notebooks" / f"{name}.ipynb").is_file()
        assert (out / "notebooks" / f"{name}.metrics.json").is_file(), f"{name} saved no metrics"
    for t in ("table4", "table5", "table6", "table7"):
        rows = list(csv.DictReader(open(out / "tables" / f"{t}.csv")))
        ours = [r for r in rows if "(paper)" not in r["data"]]       # the paper's own rows say so
        assert ours, t
        assert all(r["data"].startswith("synthetic") and r["profile"] == "smoke" and r["N"] for r in ours), t
        assert (out / "tables" / f"{t}.md").is_file()
    # the stand-ins the smoke profile chose are named, never passed off as the paper's metrics
    t5 = open(out / "tables" / "table5.md").read()
    assert "FD-dlib" in t5
    report = (out / "report.md").read_text()
    assert all(n in report for n in names) and "synthetic" in report
    assert (out / "report.html").stat().st_size > 10_000
    pre = json.loads((out / "notebooks" / "01_preprocessing.metrics.json").read_text())["preprocessing"]
    assert pre["values"]["synthetic"] is True and pre["provenance"]["data"].startswith("synthetic")
    figs = {p.name for p in (out / "figures").iterdir()}
    for f in ("fig6_preprocessed.png", "fig9_same_identity.png", "fig8_landmark_transfer.png", "losses.png"):
        assert f in figs, f
    assert any(f.endswith(".gif") for f in figs)
    assert os.path.getsize(out / "train" / "checkpoints" / "last.pt") > 0
