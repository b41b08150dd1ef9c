"""The run report gathers every notebook, every table and the figures, and says what did not run."""
import json

import numpy as np
from PIL import Image

from lmexpr_nb.report import write_report


def test_report_lists_every_notebook_and_table(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "figures").mkdir()
    (tmp_path / "notebooks").mkdir()
    for t in ("table5", "table6"):
        (tmp_path / "tables" / f"{t}.csv").write_text("method,PSNR,paper PSNR\nours,21.5,23.004\n")
        (tmp_path / "tables" / f"{t}.md").write_text(f"| method | PSNR |\n|---|---|\n| ours-{t} | 21.5 |\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "figures" / "fig9_same_identity.png")
    (tmp_path / "notebooks" / "05_quality_table.metrics.json").write_text(json.dumps(
        {"table5": {"values": {}, "provenance": {"data": "synthetic (not real faces)"}}}))
    run = {"profile": "smoke", "dataset": "synthetic", "notebooks": [
        {"notebook": "00_setup", "status": "ok", "seconds": 3.0, "executed": str(tmp_path / "notebooks/00_setup.ipynb")},
        {"notebook": "05_quality_table", "status": "failed", "seconds": 1.0, "error": "code cell 4: KeyError: 'x'",
         "executed": str(tmp_path / "notebooks/05_quality_table.ipynb")},
        {"notebook": "06_identity", "status": "not run"}]}
    (tmp_path / "run.json").write_text(json.dumps(run))
    md_path, html_path = write_report(tmp_path)
    md, page = md_path.read_text(), html_path.read_text()
    for text in (md, page):
        for nb in ("00_setup", "05_quality_table", "06_identity"):
            assert nb in text
        assert "code cell 4: KeyError" in text and "not run" in text
        assert "synthetic" in text
    assert "ours-table5" in md and "ours-table6" in md
    assert page.count("<h3>") == 2 and "data:image/png;base64," in page
    assert "Did not complete:** 05_quality_table, 06_identity" in md
