"""The run report gathers every notebook, every table and the figures, says what did not run,
and reads well: compact tables (ours beside the paper's), rounded numbers, provenance notes,
captions that say what a figure shows, executed notebooks as HTML pages."""
import json
import re

import numpy as np
import pytest
from PIL import Image
from report_fixture import fake_run

from lmexpr_nb.runner.report import figure_caption, write_report
from lmexpr_nb.runner.report_tables import compact_table, fmt_number, split_markdown


def test_report_lists_every_notebook_and_table(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "notebooks").mkdir()
    for t in ("table5", "table6"):
        (tmp_path / "tables" / f"{t}.csv").write_text(f"method,PSNR,paper: PSNR,N\nours-{t},21.5,23.004,8\n")
        (tmp_path / "tables" / f"{t}.md").write_text(f"**Title of {t}**\n\n| method | PSNR |\n|---|---|\n| x | 2 |\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "figures" / "fig9_same_identity.png")
    (tmp_path / "notebooks" / "05_quality_table.metrics.json").write_text(json.dumps(
        {"table5": {"values": {}, "provenance": {"data": "synthetic (not real faces)"}}}))
    run = {"profile": "smoke", "dataset": "synthetic", "notebooks": [
        {"notebook": "00_setup", "status": "ok", "seconds": 3.0,
         "executed": str(tmp_path / "notebooks/00_setup.ipynb")},
        {"notebook": "05_quality_table", "status": "failed", "seconds": 1.0, "error": "code cell 4: KeyError: 'x'",
         "executed": str(tmp_path / "notebooks/05_quality_table.ipynb")},
        {"notebook": "06_identity", "status": "not run"}]}
    (tmp_path / "run.json").write_text(json.dumps(run))
    md_path, html_path = write_report(tmp_path, log=lambda *a: None)
    md, page = md_path.read_text(), html_path.read_text()
    for text in (md, page):
        for nb in ("00_setup", "05_quality_table", "06_identity"):
            assert nb in text
        assert "code cell 4: KeyError" in text and "not run" in text
        assert "synthetic" in text
        assert "ours-table5" in text and "ours-table6" in text and "Title of table5" in text
        assert "N (samples): 8" in text                       # the provenance note under the table
    assert page.count("<h3>") == 2 and "data:image/png;base64," in page
    assert "Did not complete:** 05_quality_table, 06_identity" in md


@pytest.mark.parametrize("text, want", [("93.1034", "93.10"), ("-4.82075e-06", "-4.8e-06"), ("0.493107", "0.493"),
                                        ("0.0131284", "0.0131"), ("96", "96"), ("100.0", "100"), ("1234.56", "1235"),
                                        ("True", "yes"), ("not printed", "not printed"), ("", ""), ("nan", "nan")])
def test_numbers_are_rounded_for_reading(text, want):
    assert fmt_number(text) == want


def test_tables_fold_to_few_columns_with_the_papers_numbers_and_a_provenance_note(tmp_path):
    out = fake_run(tmp_path / "run")
    import csv
    wide = {t: next(csv.reader(open(out / "tables" / f"{t}.csv"))) for t in ("table5", "table6")}
    assert len(wide["table5"]) >= 18 and len(wide["table6"]) >= 21          # what the CSVs keep
    head, rows = wide["table6"], list(csv.reader(open(out / "tables" / "table6.csv")))[1:]
    ct = compact_table(head, rows)
    assert len(ct.columns) <= 8, ct.columns
    assert "paper VGG-Face: Rank-1 / TAR@FAR=1% / TAR@FAR=0.1%" in ct.columns
    ours = next(r for r in ct.rows if r[1] == "our method")
    assert "82.13 / 58.45 / 21.64" in ours and "35.63" in ours               # paper as printed, ours rounded
    assert any("skipped: no lightcnn weights" in n for n in ct.row_notes)
    note = " · ".join(ct.provenance)
    assert "data: synthetic (not real faces)" in note and "N (samples): 87" in note and "gallery: 4" in note
    assert "paper only" in note
    assert ct.paper_rows.count(True) == 2

    write_report(out, log=lambda *a: None)
    page = (out / "report.html").read_text()
    for table in re.findall(r"<h3>.*?</table>", page, flags=re.S):
        header = re.search(r"<thead><tr>(.*?)</tr>", table).group(1)
        assert header.count("<th>") <= 9, header
    assert page.count("<b>Made by:</b>") == len(list((out / "tables").glob("*.csv")))   # one note per table
    assert "23.004 / 0.775 / 67.69" in page and "19.45" in page
    for raw in ("93.1034", "-4.82075e-06", "0.436977", "54.6875"):
        assert raw not in page, raw
    assert "tables/table5.csv" in page


def test_figures_say_what_they_show_and_which_paper_figure_they_mirror(tmp_path):
    out = fake_run(tmp_path / "run")
    write_report(out, log=lambda *a: None)
    page = (out / "report.html").read_text()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(captions) == len(list((out / "figures").glob("*.png")))
    for cap in captions:
        shown = re.sub(r"<span class='file'>.*?</span>", "", cap)
        assert ".png" not in shown and len(shown) > 40, cap              # not the file name
    assert "Mirrors the paper&#x27;s Fig. 9" in page and "Mirrors the paper&#x27;s Table 4" in page
    assert figure_caption("something_else") == ("something_else", None)


def test_executed_notebooks_become_html_pages(tmp_path):
    out = fake_run(tmp_path / "run")
    write_report(out, log=lambda *a: None)
    page = (out / "report.html").read_text()
    nb_html = out / "notebooks" / "05_quality_table.html"
    assert nb_html.is_file() and "hello from the kit" in nb_html.read_text()
    assert nb_html.read_text().lstrip().lower().startswith("<!doctype html")
    assert "href='notebooks/05_quality_table.html'" in page
    assert "(notebooks/05_quality_table.html)" in (out / "report.md").read_text()


def test_split_markdown_reads_what_write_table_writes(tmp_path):
    from lmexpr_nb.experiments.tables import write_table
    _, md = write_table(tmp_path, "t", [{"a": 1.5, "N": 3}], {"data": "synthetic"}, title="My title", note="My note.")
    assert split_markdown(md.read_text()) == ("My title", "My note.")
