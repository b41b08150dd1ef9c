"""The run report: one Markdown and one self-contained HTML page per `lmexpr run`.

Gathers from `outputs/<profile>/`: run.json (what ran, status, seconds, versions, device),
every table (tables/*.csv + .md, which already carry the paper's numbers and provenance
columns), the key figures (figures/*.png, embedded in the HTML), the provenance each
notebook recorded in its metrics JSON, and links to the executed notebooks. A notebook that
failed or did not run is listed as such, with the error.
"""
from __future__ import annotations

import base64
import csv
import html
import json
from pathlib import Path

from .io import write_text

KEY_FIGURES = ("fig6", "fig9", "fig8", "fig7", "masks", "losses", "explorer")


def _load(out: Path) -> dict:
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {"notebooks": []}
    tables = sorted((out / "tables").glob("*.csv")) if (out / "tables").is_dir() else []
    figs = sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
    figs.sort(key=lambda p: next((i for i, k in enumerate(KEY_FIGURES) if p.stem.startswith(k)), len(KEY_FIGURES)))
    prov = {}
    for m in sorted((out / "notebooks").glob("*.metrics.json")) if (out / "notebooks").is_dir() else []:
        try:
            for name, entry in json.loads(m.read_text()).items():
                prov.setdefault(json.dumps(entry.get("provenance", {}), sort_keys=True), []).append(
                    f"{m.name.split('.')[0]}:{name}")
        except (ValueError, AttributeError):
            continue
    return {"run": run, "tables": tables, "figures": figs, "provenance": prov}


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return (rows[0], rows[1:]) if rows else ([], [])


def report_markdown(out: Path) -> str:
    d = _load(out)
    run = d["run"]
    lines = [f"# lmexpr-nb run report: profile `{run.get('profile', '?')}`", "",
             f"Data: **{run.get('dataset', '?')}** from `{run.get('data_root', '?')}`"
             + (" (synthetic faces, not real: numbers show the pipeline works, not the paper's results)"
                if run.get("dataset") == "synthetic" else ""), "",
             f"Device: {run.get('device', '?')} · torch {run.get('torch_version', '?')} · "
             f"kit {run.get('kit_version', '?')} · started {run.get('started', '?')}, finished {run.get('finished', '?')}",
             "", "## Notebooks", "", "| notebook | status | seconds | executed copy |", "|---|---|---|---|"]
    for nb in run.get("notebooks", []):
        link = f"[{Path(nb['executed']).name}](notebooks/{Path(nb['executed']).name})" if nb.get("executed") else ""
        status = nb["status"] + (f": {nb['error']}" if nb.get("error") else "")
        lines.append(f"| {nb['notebook']} | {status} | {nb.get('seconds', '')} | {link} |")
    not_run = [nb["notebook"] for nb in run.get("notebooks", []) if nb["status"] != "ok"]
    if not_run:
        lines += ["", f"**Did not complete:** {', '.join(not_run)}: their tables and figures are missing below."]
    lines += ["", "## Tables (ours beside the paper's)", ""]
    if not d["tables"]:
        lines.append("(no tables were written)")
    for t in d["tables"]:
        md = t.with_suffix(".md")
        lines += [f"### {t.stem}", "", md.read_text().strip() if md.is_file() else f"see `{t.name}`", ""]
    lines += ["## Figures", ""]
    lines += [f"![{f.stem}](figures/{f.name})" for f in d["figures"]] or ["(no figures were written)"]
    lines += ["", "## Provenance recorded by the notebooks", ""]
    for prov, where in d["provenance"].items():
        lines.append(f"- {', '.join(where)}: `{prov}`")
    return "\n".join(lines) + "\n"


def report_html(out: Path) -> str:
    d = _load(out)
    run = d["run"]
    e = html.escape
    parts = [f"<h1>lmexpr-nb run report: profile <code>{e(run.get('profile', '?'))}</code></h1>",
             f"<p>Data: <b>{e(str(run.get('dataset', '?')))}</b> from <code>{e(str(run.get('data_root', '?')))}</code>"
             + (" &mdash; <b>synthetic faces, not real</b>: numbers show the pipeline works, not the paper's results"
                if run.get("dataset") == "synthetic" else "") + "</p>",
             f"<p>Device: {e(str(run.get('device', '?')))} &middot; torch {e(str(run.get('torch_version', '?')))}"
             f" &middot; started {e(str(run.get('started', '?')))}, finished {e(str(run.get('finished', '?')))}</p>",
             "<h2>Notebooks</h2><table><tr><th>notebook</th><th>status</th><th>seconds</th></tr>"]
    for nb in run.get("notebooks", []):
        name = e(nb["notebook"])
        if nb.get("executed"):
            name = f"<a href='notebooks/{e(Path(nb['executed']).name)}'>{name}</a>"
        status = e(nb["status"] + (f": {nb['error']}" if nb.get("error") else ""))
        parts.append(f"<tr><td>{name}</td><td>{status}</td><td>{nb.get('seconds', '')}</td></tr>")
    parts.append("</table><h2>Tables (ours beside the paper's)</h2>")
    for t in d["tables"]:
        head, rows = _read_csv(t)
        parts.append(f"<h3>{e(t.stem)}</h3><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    parts.append("<h2>Figures</h2>")
    for f in d["figures"]:
        b64 = base64.b64encode(f.read_bytes()).decode()
        parts.append(f"<figure><img src='data:image/png;base64,{b64}' alt='{e(f.stem)}'>"
                     f"<figcaption>{e(f.name)}</figcaption></figure>")
    parts.append("<h2>Provenance recorded by the notebooks</h2><ul>")
    parts += [f"<li>{e(', '.join(w))}: <code>{e(p)}</code></li>" for p, w in d["provenance"].items()]
    parts.append("</ul>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>lmexpr-nb report</title><style>{style}</style>" \
           f"</head><body>{''.join(parts)}</body></html>\n"


def write_report(out: str | Path) -> list[Path]:
    out = Path(out)
    return [write_text(out / "report.md", report_markdown(out)), write_text(out / "report.html", report_html(out))]
