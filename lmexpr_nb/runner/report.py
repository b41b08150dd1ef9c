"""The run report: one Markdown and one self-contained HTML page per `lmexpr run`.

Gathers from `outputs/<profile>/`: run.json (what ran, status, seconds, versions, device),
every table (tables/*.csv + .md), the key figures (figures/*.png, embedded in the HTML), the
provenance each notebook recorded in its metrics JSON, and the executed notebooks. A notebook
that failed or did not run is listed as such, with the error.

A run that executed only some notebooks (`lmexpr run --only 05`) into the folder of an earlier
run leaves that run's tables and figures in place; the report shows them, each marked "Earlier
run <run id> (started <time>), not remade by this run", with a line under the notebook
table saying how many there are (runner/ledger.py records which run made each output). They are
shown rather than hidden because a partial run usually redoes one step of a whole run, whose
other results still stand; unmarked, they would pass for this run's.

What a reader gets (choices where the issue was silent):
- each table compacted (report_tables.compact_table): ours beside the paper's in few columns,
  rounded numbers, a short "made by" note under it (data, profile, weights, N), the table's
  method note folded in a <details>, and links to the full CSV / Markdown;
- each figure captioned with what it shows and which paper figure or table it mirrors
  (FIGURE_CAPTIONS, by file-name prefix; an unknown figure is captioned with its file name);
- the executed notebooks as HTML pages (nbconvert, notebooks/NN_name.html, written here),
  with the .ipynb linked beside; where nbconvert fails the .ipynb is linked alone. The pages
  work offline: the CDN scripts nbconvert links (require.js, MathJax) are left out, as the
  kit's notebooks use neither widgets under papermill nor $math$;
- the page fits a 1400 px window: text is at most 1100 px wide, tables wrap their cells,
  images shrink to the page (tests/test_browser.py checks it in Chromium).
"""
from __future__ import annotations

import base64
import csv
import html
import json
import re
from pathlib import Path

from lmexpr_nb.common.files import write_text
from lmexpr_nb.runner.ledger import earlier_run
from lmexpr_nb.runner.report_tables import compact_table, markdown, split_markdown

KEY_FIGURES = ("fig6", "fig9", "fig8", "fig7", "masks", "losses", "explorer")
# file-name prefix -> (what the figure shows, what of the paper it mirrors)
FIGURE_CAPTIONS = {
    "fig6": ("Preprocessed crops, one row per expression, landmarks dotted: what the generator trains on",
             "the paper's Fig. 6 (processed CK+ / Oulu-CASIA faces)"),
    "fig9": ("Same-identity synthesis: per subject the input frame, the target frame whose landmarks and "
             "label were given, and the generated face", "the paper's Fig. 9 (CK+ expression generation)"),
    "fig8": ("Landmark transfer across identities: a donor's landmarks, aligned to the input face, drive "
             "the generator (shape transfer); below, motion transfer: the input's own landmarks moved by the "
             "donor's change from its neutral frame", "the paper's Fig. 8 (image landmark transfer)"),
    "fig7": ("Generated faces beside the ground truth and the two baselines (copy source, warp to the target "
             "landmarks) on the same pairs", "the paper's Fig. 7 (comparison with other methods)"),
    "masks": ("The masks M_t of every migration unit block for one example, channel-averaged (Eq. 1)",
              "the paper's Fig. 2 (migration unit block)"),
    "losses": ("Training losses over the steps: discriminators (left), generator terms (right)",
               "no paper figure (the paper prints no loss curves)"),
    "table7": ("Ablation samples: the same validation pairs under each setting and the baselines",
               "the paper's Table 7, as pictures"),
    "table4_accuracy": ("Expression-recognition accuracy (± SE) against the augmentation factor; dots: the "
                        "paper's numbers", "the paper's Table 4"),
    "table4_generated": ("Generated faces added to the recogniser's training set: source, generated face, "
                         "the frame whose landmarks and label it got", "the paper's Table 4 augmentation"),
    "table4_confusion": ("Expression-recognition confusion matrix on the peak-frame test set (rows: true "
                         "class; colour: row %)", "the paper's Table 4 (the paper prints accuracies only)"),
    "fig6_dataset_landmark": ("Frames whose landmarks came from the dataset's own files (dlib found no face), "
                              "checked and shown", "no paper figure (preprocessing check)"),
    "explorer": ("The explorer, static: one validation face over the expressions seen in training x "
                 "intensities, target landmarks dotted", "no paper figure (the paper's future work, Sec. V)"),
}
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:.6em 0;max-width:100%}
td,th{border:1px solid #ccc;padding:3px 7px;font-size:13px;vertical-align:top;overflow-wrap:anywhere}
th{background:#f4f4f4;text-align:left;overflow-wrap:break-word}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.paper td{color:#666;font-style:italic;background:#fafafa}
.banner{background:#fff8e1;border-left:4px solid #d08700;padding:6px 10px}
.made{font-size:12px;color:#555;margin:.2em 0 .4em;overflow-wrap:anywhere}
.made b{color:#333}
.notes{font-size:12px;color:#555;margin:.2em 0;padding-left:1.4em;overflow-wrap:anywhere}
details{font-size:12px;color:#555;margin:.2em 0 1.4em;overflow-wrap:anywhere}
summary{cursor:pointer}
figure{margin:1.2em 0}
img{max-width:100%;height:auto}
figcaption{font-size:13px;color:#444}
figcaption .file{color:#888;font-size:11px}
code{font-size:12px;overflow-wrap:anywhere}
h1 code{font-size:inherit}
"""


def _load(out: Path) -> dict:
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {"notebooks": []}
    tables = sorted((out / "tables").glob("*.csv")) if (out / "tables").is_dir() else []
    figs = sorted((out / "figures").glob("*.png")) if (out / "figures").is_dir() else []
    figs.sort(key=lambda p: next((i for i, k in enumerate(KEY_FIGURES) if p.stem.startswith(k)), len(KEY_FIGURES)))
    prov, unreadable = {}, []
    for m in sorted((out / "notebooks").glob("*.metrics.json")) if (out / "notebooks").is_dir() else []:
        earlier = earlier_run(run, f"notebooks/{m.name}")
        try:
            for name, entry in json.loads(m.read_text()).items():
                prov.setdefault(json.dumps(entry.get("provenance", {}), sort_keys=True), []).append(
                    f"{m.name.split('.')[0]}:{name}" + (f" ({earlier})" if earlier else ""))
        except (ValueError, AttributeError):
            unreadable.append(f"notebooks/{m.name}")
    earlier = [p.relative_to(out).as_posix() for p in tables + figs
               if earlier_run(run, p.relative_to(out).as_posix())]
    return {"run": run, "tables": tables, "figures": figs, "provenance": prov, "unreadable": unreadable,
            "earlier": earlier}


def _partial_note(d: dict) -> str | None:
    """The line under the notebook table when tables or figures below are an earlier run's."""
    if not d["earlier"]:
        return None
    ran = ", ".join(nb["notebook"] for nb in d["run"].get("notebooks", [])) or "no notebook"
    return (f"This run ({d['run'].get('run_id')}) executed {ran}; {len(d['earlier'])} of the tables and figures "
            f"below are from earlier runs in this folder and are marked so.")


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return (rows[0], rows[1:]) if rows else ([], [])


def _table(t: Path):
    """(title, compact table, method note) of one tables/*.csv (+ its .md)."""
    head, rows = _read_csv(t)
    md = t.with_suffix(".md")
    title, note = split_markdown(md.read_text()) if md.is_file() else (None, "")
    return title or t.stem, compact_table(head, rows), note


def figure_caption(stem: str) -> tuple[str, str | None]:
    """(what the figure shows, what of the paper it mirrors) by file-name prefix; (stem, None) if unknown."""
    for prefix, cap in sorted(FIGURE_CAPTIONS.items(), key=lambda kv: -len(kv[0])):
        if stem.startswith(prefix):
            return cap
    return stem, None


def _provenance_line(prov_json: str) -> str:
    p = json.loads(prov_json)
    return " · ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in p.items()) or "(none)"


def notebook_pages(out: Path, run: dict, log=print) -> dict[str, Path]:
    """Executed notebooks as HTML pages beside them (nbconvert); {notebook name: page}."""
    pages = {}
    try:
        from nbconvert import HTMLExporter  # lazy: Jupyter, for the notebook pages only
        exporter = HTMLExporter()
    except Exception as e:               # nbconvert missing or broken: link the .ipynb instead
        log(f"report: executed notebooks linked as .ipynb only (nbconvert unavailable: {e})")
        return pages
    for nb in run.get("notebooks", []):
        src = Path(nb.get("executed") or "")
        src = out / "notebooks" / src.name if src.name else src
        if not src.is_file():
            continue
        try:
            body, _ = exporter.from_filename(str(src))
        except Exception as e:           # one unreadable notebook must not cost the report
            log(f"report: could not convert {src.name} to HTML ({type(e).__name__}: {e})")
            continue
        for url in (exporter.require_js_url, exporter.mathjax_url):     # offline pages: no CDN scripts
            body = re.sub(r'<script src="%s">\s*</script>' % re.escape(url), "", body)
        pages[nb["notebook"]] = write_text(src.with_suffix(".html"), body)
    return pages


def report_markdown(out: Path, pages: dict | None = None) -> str:
    d = _load(out)
    run = d["run"]
    pages = pages or {}
    lines = [f"# lmexpr-nb run report: profile `{run.get('profile', '?')}`", "",
             f"Data: **{run.get('dataset', '?')}** from `{run.get('data_root', '?')}`"
             + (" (synthetic faces, not real: numbers show the pipeline works, not the paper's results)"
                if run.get("dataset") == "synthetic" else ""), "",
             f"Device: {run.get('device', '?')} · torch {run.get('torch_version', '?')} · "
             f"kit {run.get('kit_version', '?')} · started {run.get('started', '?')}, "
             f"finished {run.get('finished', '?')}",
             "", "## Notebooks", "", "| notebook | status | seconds | executed copy |", "|---|---|---|---|"]
    for nb in run.get("notebooks", []):
        link = ""
        if nb.get("executed"):
            name = Path(nb["executed"]).name
            link = (f"[{Path(name).stem}.html](notebooks/{Path(name).stem}.html) · " if nb["notebook"] in pages
                    else "") + f"[{name}](notebooks/{name})"
        status = nb["status"] + (f": {nb['error']}" if nb.get("error") else "")
        lines.append(f"| {nb['notebook']} | {status} | {nb.get('seconds', '')} | {link} |")
    not_run = [nb["notebook"] for nb in run.get("notebooks", []) if nb["status"] != "ok"]
    if not_run:
        lines += ["", f"**Did not complete:** {', '.join(not_run)}: their tables and figures are missing below."]
    if _partial_note(d):
        lines += ["", f"**Earlier results:** {_partial_note(d)}"]
    lines += ["", "## Tables (ours beside the paper's)", ""]
    if not d["tables"]:
        lines.append("(no tables were written)")
    for t in d["tables"]:
        title, ct, note = _table(t)
        earlier = earlier_run(run, f"tables/{t.name}")
        lines += [f"### {title}", "", *([f"**{earlier}.**", ""] if earlier else []), markdown(ct), ""]
        if note:
            lines += [f"<details><summary>How these numbers were made</summary>\n\n{note}\n\n</details>", ""]
        lines += [f"All columns: [{t.name}](tables/{t.name})", ""]
    lines += ["## Figures", ""]
    for f in d["figures"]:
        what, mirrors = figure_caption(f.stem)
        earlier = earlier_run(run, f"figures/{f.name}")
        lines += [f"![{what}](figures/{f.name})", "",
                  f"*{what}.*" + (f" Mirrors {mirrors}." if mirrors else "") + f" (`{f.name}`)"
                  + (f" **{earlier}.**" if earlier else ""), ""]
    if not d["figures"]:
        lines.append("(no figures were written)")
    lines += ["", "## Provenance recorded by the notebooks", ""]
    for prov, where in d["provenance"].items():
        lines.append(f"- **{', '.join(where)}**: {_provenance_line(prov)}")
    for m in d["unreadable"]:
        lines.append(f"- `{m}`: not a readable metrics JSON, left out")
    return "\n".join(lines) + "\n"


def _html_table(ct) -> str:
    e = html.escape
    parts = ["<table><thead><tr>" + "".join(f"<th>{e(c)}</th>" for c in ct.columns) + "</tr></thead><tbody>"]
    for row, paper in zip(ct.rows, ct.paper_rows):
        cells = "".join(f"<td class='num'>{e(v)}</td>" if num and j else f"<td>{e(v)}</td>"
                        for j, (v, num) in enumerate(zip(row, ct.numeric)))
        parts.append(f"<tr class='paper'>{cells}</tr>" if paper else f"<tr>{cells}</tr>")
    parts.append("</tbody></table>")
    if ct.row_notes:
        parts.append("<ol class='notes'>" + "".join(f"<li>{e(n)}</li>" for n in ct.row_notes) + "</ol>")
    if ct.provenance:
        parts.append("<p class='made'><b>Made by:</b> " + " · ".join(e(p) for p in ct.provenance) + "</p>")
    return "".join(parts)


def report_html(out: Path, pages: dict | None = None) -> str:
    d = _load(out)
    run = d["run"]
    pages = pages or {}
    e = html.escape
    parts = [f"<h1>lmexpr-nb run report: profile <code>{e(run.get('profile', '?'))}</code></h1>",
             f"<p>Data: <b>{e(str(run.get('dataset', '?')))}</b> from "
             f"<code>{e(str(run.get('data_root', '?')))}</code></p>"]
    if run.get("dataset") == "synthetic":
        parts.append("<p class='banner'><b>Synthetic faces, not real</b>: these numbers show that the pipeline "
                     "works, not the paper's results.</p>")
    parts += [f"<p>Device: {e(str(run.get('device', '?')))} &middot; torch {e(str(run.get('torch_version', '?')))}"
              f" &middot; kit {e(str(run.get('kit_version', '?')))}"
              f" &middot; started {e(str(run.get('started', '?')))}, finished {e(str(run.get('finished', '?')))}</p>",
              "<h2>Notebooks</h2><table><thead><tr><th>notebook</th><th>status</th><th>seconds</th>"
              "<th>executed copy</th></tr></thead><tbody>"]
    for nb in run.get("notebooks", []):
        name, links = e(nb["notebook"]), ""
        if nb.get("executed"):
            ipynb = Path(nb["executed"]).name
            if nb["notebook"] in pages:
                name = f"<a href='notebooks/{e(Path(ipynb).stem)}.html'>{name}</a>"
            links = f"<a href='notebooks/{e(ipynb)}'>{e(ipynb)}</a>"
        status = e(nb["status"] + (f": {nb['error']}" if nb.get("error") else ""))
        parts.append(f"<tr><td>{name}</td><td>{status}</td><td class='num'>{nb.get('seconds', '')}</td>"
                     f"<td>{links}</td></tr>")
    parts.append("</tbody></table>")
    not_run = [nb["notebook"] for nb in run.get("notebooks", []) if nb["status"] != "ok"]
    if not_run:
        parts.append(f"<p><b>Did not complete:</b> {e(', '.join(not_run))}: their tables and figures are missing "
                     "below.</p>")
    if _partial_note(d):
        parts.append(f"<p class='banner'><b>Earlier results:</b> {e(_partial_note(d))}</p>")
    parts.append("<h2>Tables (ours beside the paper's)</h2>")
    if not d["tables"]:
        parts.append("<p>(no tables were written)</p>")
    for t in d["tables"]:
        title, ct, note = _table(t)
        earlier = earlier_run(run, f"tables/{t.name}")
        parts.append(f"<h3>{e(title)}</h3>" + (f"<p class='banner'>{e(earlier)}.</p>" if earlier else "")
                     + _html_table(ct))
        if note:
            parts.append(f"<details><summary>How these numbers were made</summary><p>{e(note)}</p></details>")
        parts.append(f"<p class='made'>All columns: <a href='tables/{e(t.name)}'>{e(t.name)}</a>"
                     + (f" &middot; <a href='tables/{e(t.stem)}.md'>{e(t.stem)}.md</a>"
                        if t.with_suffix(".md").is_file() else "") + "</p>")
    parts.append("<h2>Figures</h2>")
    if not d["figures"]:
        parts.append("<p>(no figures were written)</p>")
    for f in d["figures"]:
        what, mirrors = figure_caption(f.stem)
        earlier = earlier_run(run, f"figures/{f.name}")
        b64 = base64.b64encode(f.read_bytes()).decode()
        parts.append(f"<figure><img src='data:image/png;base64,{b64}' alt='{e(what)}'>"
                     f"<figcaption><b>{e(what)}.</b>" + (f" Mirrors {e(mirrors)}." if mirrors else "")
                     + f" <span class='file'>{e(f.name)}</span>"
                     + (f" <b>{e(earlier)}.</b>" if earlier else "") + "</figcaption></figure>")
    parts.append("<h2>Provenance recorded by the notebooks</h2>")
    for prov, where in d["provenance"].items():
        parts.append(f"<p class='made'><b>{e(', '.join(where))}</b><br>{e(_provenance_line(prov))}</p>")
    for m in d["unreadable"]:
        parts.append(f"<p class='made'><code>{e(m)}</code>: not a readable metrics JSON, left out</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width, initial-scale=1'><title>lmexpr-nb report: {e(run.get('profile', '?'))}"
            f"</title><style>{STYLE}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(out: str | Path, log=print) -> list[Path]:
    """report.md and report.html (and notebooks/NN_name.html, the executed notebooks as pages)."""
    out = Path(out)
    pages = notebook_pages(out, _load(out)["run"], log)
    return [write_text(out / "report.md", report_markdown(out, pages)),
            write_text(out / "report.html", report_html(out, pages))]
