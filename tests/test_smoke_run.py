"""The headless papermill run of the smoke profile: every notebook, in order, on the synthetic
default, into a temporary output folder; then what a user would look for is there. The synthetic
default is made once in the tests' cache (suite_cache.py), never in the repository's data/."""
import csv
import json
import os

import numpy as np
import PIL
import pytest
from suite_cache import cached, content_key, source_closure

from lmexpr_nb.config import read_profile
from lmexpr_nb.data.synthetic.write import GENERATOR_VERSION
from lmexpr_nb.experiments.evalset import COPY, OURS, PRIMARY
from lmexpr_nb.experiments.table5 import EXPR_COL, NME_COL, REAL, SHARP_COL
from lmexpr_nb.runner import context, run

SSIM_COL = "SSIM (Wang, Gaussian 1.5)"
# What the seeded smoke run must reach, so that a regression fails CI, on either precision path a CI
# machine may take (bf16 where the CPU computes it natively, fp32 elsewhere). The recipe with the blend
# output and the GAN term (lambda 2, last half), same data and seed, 1300 steps, bf16 / fp32: NME
# 0.0378 / 0.0353; SSIM (Wang) 0.747 / 0.750 against copy-source's 0.685; faces 100 % / 100 %; Rank-1
# 98.9 / 100 %; mouth change happy 9.35 / 9.04, surprise 17.1 / 17.5; sharpness 0.70 / 0.64 (copy 0.88,
# warp 0.38); FD-dlib 0.053 / 0.056 (copy 0.053, warp 0.043); expression accuracy 71.9 / 56.3 % (copy
# 13.5 %, warp 79.2 %, real targets 93.8 %). Bars, with their margins from the worse path: NME <= 0.045 (0.0072),
# SSIM above copy's (both 0.06 above it), faces >= 98 % and Rank-1 >= 95 % (3.9 points), mouth change
# >= 8 (the issue-8 bar; 1.0 above fp32's happy), sharpness >= 0.55 (0.09 below fp32's; the recipe
# before the GAN term reached 0.23), FD-dlib <= 0.070 (0.014 above fp32's; before: 0.075), expression
# accuracy >= copy's + 0.30 (fp32 is 0.43 above copy). The README carries the numbers themselves.
# The expression classifier (3-scale landmarks; its ceiling does not depend on the precision path: it
# reads the real targets) must be informative: its accuracy on the real validation targets >= 85 %
# (the bar; measured 93.8 %, copy-source 13.5 %).
QUALITY = {"nme": 0.045, "ssim_over_copy": 0.0, "face_found": 0.98, "rank1": 95.0, "mouth_change": 8.0,
           "classifier_ceiling": 0.85, "sharpness": 0.55, "fd": 0.070, "expression_over_copy": 0.30}


@pytest.fixture
def synthetic_default(monkeypatch):
    """run_profile's synthetic default made in (and read from) the tests' cache, keyed by the
    profile's synth settings and the generator's sources."""
    key = content_key(read_profile("smoke").get("synth"), GENERATOR_VERSION, np.__version__, PIL.__version__,
                      files=source_closure(["lmexpr_nb.data.synthetic.write"]))

    def build(folder):
        monkeypatch.setattr(context, "DATA_DIR", folder)
        context.ensure_synthetic("smoke")
    folder, _ = cached("synthetic-default", key, build)
    monkeypatch.setattr(context, "DATA_DIR", folder)          # where run_profile looks for it
    return context.synthetic_root("smoke")


@pytest.mark.slow
def test_smoke_profile_runs_every_notebook(tmp_path, synthetic_default):
    out = tmp_path / "smoke"
    summary = run.run_profile("smoke", out=out, log=print)
    assert summary["data_root"] == str(synthetic_default.resolve())        # the cache's, not the repository's
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
    # Tables 5-7: the primary neutral-to-expression block first, the all-ordered-pairs block after it
    order = ["neutral-to-expression", "all-ordered-pairs"]
    for t in ("table5", "table6", "table7"):
        blocks = [r["protocol"] for r in csv.DictReader(open(out / "tables" / f"{t}.csv")) if r["protocol"] in order]
        assert blocks and blocks[0] == order[0] and set(blocks) == set(order), t
        assert blocks == sorted(blocks, key=order.index), t
    per_expr = list(csv.DictReader(open(out / "tables" / "table5_per_expression.csv")))
    assert {r["protocol"] for r in per_expr} == {order[0]} and per_expr[-1]["target expression"] == "all"
    # Table 4: the synthetic default's 7 expressions on peak frames (neutral is not a class)
    t4 = list(csv.DictReader(open(out / "tables" / "table4.csv")))
    assert t4 and all(r["classes"] == "7" for r in t4)
    assert (out / "tables" / "table4_per_class.csv").is_file()
    report = (out / "report.md").read_text()
    assert all(n in report for n in names) and "synthetic" in report
    assert (out / "report.html").stat().st_size > 10_000
    pre = json.loads((out / "notebooks" / "01_preprocessing.metrics.json").read_text())["preprocessing"]
    assert pre["values"]["synthetic"] is True and pre["provenance"]["data"].startswith("synthetic")
    figs = {p.name for p in (out / "figures").iterdir()}
    for f in ("fig6_preprocessed.png", "fig9_same_identity.png", "fig8_landmark_transfer.png", "losses.png",
              "table4_confusion.png"):
        assert f in figs, f
    assert any(f.endswith(".gif") for f in figs)
    assert os.path.getsize(out / "train" / "checkpoints" / "last.pt") > 0
    # the trained smoke model does the task, measured from this run's own outputs
    # (primary neutral -> expression pairs of the validation subjects; thresholds: see QUALITY)
    t5 = {r["method"]: r for r in csv.DictReader(open(out / "tables" / "table5.csv"))
          if r["protocol"] == PRIMARY and "(paper)" not in r["data"]}
    ours, copy = t5[OURS], t5[COPY]
    assert ours["recipe"].startswith("smoke (") and "train.pairs=neutral-to-expression" in ours["recipe"]
    assert "train.amp=bf16-native" in ours["recipe"]     # the precision is part of the recipe it names
    assert "model.output=blend" in ours["recipe"] and "loss.lambda_gan=2.0" in ours["recipe"]
    nme, missing, n = float(ours[NME_COL]), int(ours["no face found"]), int(ours["N"])
    assert nme <= QUALITY["nme"], (nme, float(copy[NME_COL]))
    assert float(ours[SSIM_COL]) > float(copy[SSIM_COL]) + QUALITY["ssim_over_copy"], (ours[SSIM_COL], copy[SSIM_COL])
    assert 1 - missing / n >= QUALITY["face_found"], (missing, n)
    real = next(r for r in csv.DictReader(open(out / "tables" / "table5.csv"))
                if r["protocol"] == PRIMARY and r["method"] == REAL)
    for r in (ours, copy, real):
        assert r[SHARP_COL] != "" and r[EXPR_COL] != "", r["method"]
    assert float(real[SHARP_COL]) == pytest.approx(1.0)
    assert float(real[EXPR_COL]) >= QUALITY["classifier_ceiling"], (real[EXPR_COL], copy[EXPR_COL])
    # realism: sharper than the old L1 model by far, FD-dlib not worse than copying the source by much
    # (before the GAN term it was 0.075), and the expression there for an independent classifier
    fd_col = next(c for c in ours if c.startswith("ours: FD"))
    assert float(ours[SHARP_COL]) >= QUALITY["sharpness"], (ours[SHARP_COL], copy[SHARP_COL])
    assert float(ours[fd_col]) <= QUALITY["fd"], (ours[fd_col], copy[fd_col])
    assert float(ours[EXPR_COL]) >= float(copy[EXPR_COL]) + QUALITY["expression_over_copy"], (ours[EXPR_COL],
                                                                                              copy[EXPR_COL])
    t6 = [r for r in csv.DictReader(open(out / "tables" / "table6.csv"))
          if r["protocol"] == PRIMARY and r.get("recogniser") == "dlib" and r["method"] == OURS]
    assert t6 and float(t6[0]["Rank-1 (%)"]) >= QUALITY["rank1"], t6
    resp = json.loads((out / "notebooks" / "09_explorer.metrics.json").read_text())["explorer"]["values"]
    resp = resp["intensity_response"]
    for e in ("happy", "surprise"):
        assert resp[e]["mean"] >= QUALITY["mouth_change"], (e, resp[e])
