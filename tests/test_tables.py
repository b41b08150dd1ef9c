"""tables.write_table: CSV + Markdown, provenance columns on every row, N required."""
import csv

import pytest

from lmexpr_nb.experiments.tables import write_table

PROV = {"data": "synthetic (not real faces)", "profile": "smoke", "standins": ["FD-dlib in place of FID"],
        "recipe": "smoke (train.lr=0.001 (paper: 0.0002))"}


def test_csv_and_md_carry_provenance(tmp_path):
    rows = [{"method": "ours", "PSNR": 21.23456789, "paper PSNR": 23.004, "N": 40},
            {"method": "copy source", "PSNR": 18.5, "paper PSNR": None, "N": 40, "weights": "none needed"}]
    c, m = write_table(tmp_path, "table5", rows, PROV, title="Table 5")
    got = list(csv.DictReader(open(c)))
    assert list(got[0])[-5:] == ["data", "profile", "weights", "recipe", "N"]
    assert got[0]["recipe"] == PROV["recipe"]
    assert got[0]["data"] == "synthetic (not real faces)" and got[0]["weights"].startswith("stand-in: FD-dlib")
    assert got[1]["weights"] == "none needed" and got[0]["PSNR"] == "21.2346"
    md = m.read_text()
    paper = write_table(tmp_path, "t2", [{"method": "ours", "N": 1, "data": "CK+ (paper)"},
                                         {"method": "copy", "N": 1, "weights": "no model (baseline)"}], PROV)[0]
    assert [r["recipe"] for r in csv.DictReader(open(paper))] == ["paper", "none (no trained model)"]
    assert md.startswith("**Table 5**") and "| ours |" in md and "synthetic" in md


def test_row_without_n_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no N"):
        write_table(tmp_path, "t", [{"method": "ours", "PSNR": 20.0}], PROV)
