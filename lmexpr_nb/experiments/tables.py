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

import numpy as np

from lmexpr_nb.common.files import write_text
from lmexpr_nb.common.viz import markdown_table

PROVENANCE_COLUMNS = ("data", "profile", "weights", "recipe", "N")
# the `source` column: a number this run made, or one the paper printed for a method not run here
THIS_RUN = "this run"
PAPER_ONLY = "paper only"
PAPER_PROTOCOL = "paper (not printed)"      # the `protocol` of the paper's own rows


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


def numbers(rows: list[dict], keys=("protocol", "recogniser", "method")) -> dict:
    """{"<protocol>/<recogniser>/<method>": {column: number}} of this run's rows (the key columns a row
    has, in `keys` order), for ctx.save_metrics
    (NaN / inf, e.g. no face found anywhere, become None: the file stays strict JSON)."""
    out = {}
    for r in rows:
        if r.get("source") != THIS_RUN:
            continue
        k = "/".join(str(r[c]) for c in keys if c in r)
        out[k] = {c: (float(v) if np.isfinite(v) else None) if isinstance(v, (float, np.floating)) else int(v)
                  for c, v in r.items() if isinstance(v, (int, float, np.integer, np.floating))
                  and not isinstance(v, bool) and not c.startswith("paper")}
    return out


def printed(v) -> str | None:
    """The paper's number as text with its printed digits (the Markdown writer would cut 23.004 to 23)."""
    return None if v is None else f"{v:g}"
