"""Compact tables for the run report: ours beside the paper's in a few columns, provenance as a note.

The kit's tables/*.csv (tables.write_table) carry every column a number needs: the metric
columns, the paper's printed numbers ("paper: X", "paper VGG-Face: X"), detail counts, notes
and the provenance columns (data, profile, weights, N). Shown as they are, Table 5 has 18
columns and Table 6 21. `compact_table` folds them, by rules that hold for any of those tables:

- provenance columns leave the table for a note under it: a value that is the same on every
  row of this run is said once; differing values are listed with the rows they belong to.
  Rows the paper printed ("paper only", data "... (paper)") are described in one phrase;
  skipped rows (no numbers; their reason is a row note) do not count.
- the columns of one paper group (the text before ":") become ONE column "paper: A / B / C"
  whose cells join the printed numbers with " / ", as printed (never rounded).
- a "± ..." or "... std" column joins the column before it: "54.69 ± 3.12".
- detail columns (counts, dataset) whose value is the same on every row of this run that has
  one go to the note ("gallery: 4"); where they differ they stay. `source` ("this run" /
  "paper only" / "skipped") stays unless every row has the same.
- note / warning columns become numbered row notes (one number per distinct text).
- empty columns are dropped; our numbers are rounded by `fmt_number`.
The full table stays in tables/<name>.csv and .md, which the report links.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

PROVENANCE = ("data", "profile", "weights", "recipe", "N")
NOTES = ("note", "warning")
DETAILS = ("source", "dataset", "steps", "gallery", "genuine pairs", "impostor pairs", "no face found",
           "real train images", "generated images")
PAPER_ROW = "paper only"
SKIPPED = "skipped"


def fmt_number(text: str) -> str:
    """Our numbers, rounded for reading: integers as they are; |x| >= 1000 without decimals;
    >= 1 with 2 decimals; >= 0.001 with 3 significant digits; smaller ones as 1.2e-05.
    Anything that is not a number is returned unchanged."""
    t = str(text).strip()
    if t in ("", "True", "False"):
        return {"True": "yes", "False": "no"}.get(t, t)
    try:
        int(t)
        return t
    except ValueError:
        pass
    try:
        x = float(t)
    except ValueError:
        return t
    if not math.isfinite(x):
        return t
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    a = abs(x)
    if a >= 1000:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.2f}"
    if a >= 0.001:
        return f"{x:.3g}"
    return f"{x:.1e}"


@dataclass
class CompactTable:
    columns: list[str]
    rows: list[list[str]]
    numeric: list[bool]                       # per column: right-align
    paper_rows: list[bool]                    # per row: the paper's printed numbers, not this run's
    row_notes: list[str] = field(default_factory=list)       # numbered notes, [1] = row_notes[0]
    provenance: list[str] = field(default_factory=list)      # note lines under the table


def _paper_group(col: str) -> str | None:
    return col.split(":", 1)[0].strip() if col.startswith("paper") and ":" in col else None


def _is_spread(col: str) -> bool:
    return col.startswith("±") or col.endswith(" std")


def _is_paper_row(r: dict) -> bool:
    return r.get("source") == PAPER_ROW or str(r.get("data", "")).endswith("(paper)")


def _row_key(header: list[str], r: dict, keys: list[str]) -> str:
    first = header[0]
    v = r.get(first, "")
    key = f"{first} {v}" if fmt_number(v) == v and v.replace(".", "", 1).lstrip("-").isdigit() else v
    if len(header) > 1 and keys.count(v) > 1:
        key = f"{v} / {r.get(header[1], '')}"
    return key


def _same(values: list[str]) -> str | None:
    vals = {v for v in values if v != ""}
    return vals.pop() if len(vals) == 1 else None


def compact_table(header: list[str], rows: list[list[str]]) -> CompactTable:
    """Fold a tables/*.csv table (header, rows of strings) by the module doc's rules."""
    recs = [dict(zip(header, r + [""] * (len(header) - len(r)))) for r in rows]
    ours = [r for r in recs if not _is_paper_row(r) and r.get("source") != SKIPPED]
    firsts = [r.get(header[0], "") for r in recs]
    keys = [_row_key(header, r, firsts) for r in recs]
    prov = []
    # 1. columns: details that are the same on every row of this run go to the note
    folded = {}
    for c in header:
        if c in DETAILS:
            v = _same([r.get(c, "") for r in (recs if c == "source" else ours)])
            if v is not None and (c != "source" or all(r.get(c, "") == v for r in recs)):
                folded[c] = v
    plan: list[tuple[str, list[str]]] = []     # (shown name, source columns)
    groups: dict[str, int] = {}
    for c in header:
        if c in PROVENANCE or c in NOTES or c in folded or all(r.get(c, "") == "" for r in recs):
            continue
        g = _paper_group(c)
        if g is not None:
            if g not in groups:
                groups[g] = len(plan)
                plan.append((g, []))
            plan[groups[g]][1].append(c)
        elif _is_spread(c) and plan and _paper_group(plan[-1][1][0]) is None:
            plan[-1][1].append(c)
        else:
            plan.append((c, [c]))
    columns, numeric = [], []
    for name, cols in plan:
        if _paper_group(cols[0]) is not None:
            subs = [c.split(":", 1)[1].strip() for c in cols]
            columns.append(f"{name}: {' / '.join(subs)}")
        else:
            columns.append(name)
        vals = [r.get(cols[0], "") for r in recs if r.get(cols[0], "")]
        numeric.append(bool(vals) and all(_numberlike(v) for v in vals))
    # 2. row notes, numbered once per distinct text
    notes: list[str] = []
    marks: list[list[int]] = []
    for r in recs:
        m = []
        for c in NOTES:
            t = str(r.get(c, "")).strip()
            if t:
                if t not in notes:
                    notes.append(t)
                n = notes.index(t) + 1
                if n not in m:
                    m.append(n)
        marks.append(m)
    # 3. cells
    out_rows = []
    for r, m in zip(recs, marks):
        cells = []
        for (name, cols) in plan:
            if _paper_group(cols[0]) is not None:
                vals = [r.get(c, "") for c in cols]
                cells.append(" / ".join(v or "–" for v in vals) if any(vals) else "")
            elif len(cols) > 1:
                v, spread = fmt_number(r.get(cols[0], "")), fmt_number(r.get(cols[1], ""))
                cells.append(f"{v} ± {spread}" if v and spread else v)
            else:
                cells.append(fmt_number(r.get(cols[0], "")))
        if m and cells:
            cells[0] += " " + "".join(f"[{n}]" for n in m)
        out_rows.append(cells)
    # 4. provenance note
    for c in PROVENANCE:
        if c not in header or not ours:
            continue
        label = "N (samples)" if c == "N" else c
        v = _same([r.get(c, "") for r in ours])
        if v is not None and all(r.get(c, "") == v for r in ours):
            prov.append(f"{label}: {v}")
        else:
            by: dict[str, list[str]] = {}
            for r, k in zip(recs, keys):
                if r in ours:
                    by.setdefault(r.get(c, "") or "–", []).append(k)
            prov.append(f"{label}: " + "; ".join(f"{v} ({', '.join(ks)})" for v, ks in by.items()))
    if folded:
        prov.append(" · ".join(f"{c}: {fmt_number(v)}" for c, v in folded.items()))
    paper = [r for r in recs if _is_paper_row(r)]
    if paper:
        data = (_same([r.get("data", "") for r in paper]) or "the paper's data").replace(" (paper)", "")
        prov.append(f"rows marked '{PAPER_ROW}' are the paper's printed numbers ({data}), not run here")
    return CompactTable(columns, out_rows, numeric, [_is_paper_row(r) for r in recs], notes, prov)


def _numberlike(v: str) -> bool:
    head = str(v).split(" ", 1)[0].split("/", 1)[0]
    try:
        float(head)
        return True
    except ValueError:
        return head in ("–", "nan", "inf", "-inf")


def split_markdown(md: str) -> tuple[str | None, str]:
    """(title, note) of a tables/*.md file (tables.write_table: **title**, the table, the note)."""
    lines = md.strip().splitlines()
    title = None
    if lines and lines[0].startswith("**") and lines[0].endswith("**"):
        title = lines[0].strip("*").strip()
    last = max((i for i, line in enumerate(lines) if line.startswith("|")), default=-1)
    note = "\n".join(lines[last + 1:]).strip() if last >= 0 else ""
    return title, note


def markdown(t: CompactTable) -> str:
    """The compact table as GitHub Markdown, with its notes."""
    if not t.columns:
        return "(no columns)"
    esc = [[c.replace("|", "/") for c in row] for row in t.rows]
    lines = ["| " + " | ".join(t.columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in t.numeric) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc]
    if t.row_notes:
        lines += [""] + [f"- [{i}] {n}" for i, n in enumerate(t.row_notes, 1)]
    if t.provenance:
        lines += ["", "*Made by:* " + " · ".join(t.provenance)]
    return "\n".join(lines)
