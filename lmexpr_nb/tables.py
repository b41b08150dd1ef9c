"""Write a results table as CSV and Markdown, our numbers beside the paper's, with provenance.

Every row carries the columns that say what made it: `data` (real or synthetic), `profile`,
`weights` (pretrained or the named stand-in), `recipe` ("paper", or the profile and every
setting where its recipe differs from the paper's, config.Config.recipe) and `N` (samples behind
the number). A row without N is refused: an unexplained number is worse than none.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from .io import write_text
from .viz import markdown_table

PROVENANCE_COLUMNS = ("data", "profile", "weights", "recipe", "N")


def with_provenance(rows: list[dict], provenance: dict) -> list[dict]:
    """Fill the provenance columns of each row from `provenance` where the row does not set them."""
    out = []
    for r in rows:
        r = dict(r)
        r.setdefault("data", provenance.get("data", "?"))
        r.setdefault("profile", provenance.get("profile", "?"))
        standins = provenance.get("standins") or ["none"]
        r.setdefault("weights", "pretrained" if standins == ["none"] else "stand-in: " + "; ".join(standins))
        if str(r["data"]).endswith("(paper)"):
            r.setdefault("recipe", "paper")
        elif str(r["weights"]).startswith("no model"):
            r.setdefault("recipe", "none (no trained model)")
        r.setdefault("recipe", provenance.get("recipe", "?"))
        if r.get("N") in (None, ""):
            raise ValueError(f"table row {r} has no N (number of samples behind it)")
        out.append(r)
    return out


def write_table(folder: str | Path, name: str, rows: list[dict], provenance: dict,
                title: str | None = None, note: str | None = None) -> tuple[Path, Path]:
    """tables/<name>.csv and tables/<name>.md; returns both paths. Column order: as first seen,
    provenance columns last."""
    rows = with_provenance(rows, provenance)
    cols = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in PROVENANCE_COLUMNS]
    cols += list(PROVENANCE_COLUMNS)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _csv(r.get(c)) for c in cols})
    folder = Path(folder)
    csv_path = write_text(folder / f"{name}.csv", buf.getvalue())
    md = (f"**{title}**\n\n" if title else "") + markdown_table(rows, cols) + (f"\n\n{note}" if note else "") + "\n"
    md_path = write_text(folder / f"{name}.md", md)
    return csv_path, md_path


def _csv(v):
    if isinstance(v, float):
        return "" if v != v else f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "; ".join(map(str, v))
    return "" if v is None else v
