"""Figures and tables for the notebooks: grids of faces with landmarks, tables as Markdown.

Every figure saved here gets a footer naming what made it (data, profile, stand-ins), so a
figure copied out of context still says whether its faces are real or synthetic.
"""
from __future__ import annotations

import csv
import re
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from lmexpr_nb.common.files import atomic_path


def to_uint8(img) -> np.ndarray:
    """(3,H,W) or (H,W,3) float in [-1,1] (tensor or array), or uint8 -> (H,W,3) uint8."""
    a = img.detach().cpu().float().numpy() if hasattr(img, "detach") else np.asarray(img)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):
        a = a.transpose(1, 2, 0)
    if a.dtype != np.uint8:
        a = np.clip((a + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return a


def image_grid(rows: list[list], row_titles: list[str] | None = None, col_titles: list[str] | None = None,
               landmarks: list[list] | None = None, cell: float = 1.6, footer: str | None = None):
    """A matplotlib figure of images (each [-1,1] float or uint8), optional landmark dots per image."""
    nr, nc = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nr, nc, figsize=(cell * nc, cell * nr + (0.3 if footer else 0)), squeeze=False)
    for i in range(nr):
        for j in range(nc):
            ax = axes[i][j]
            ax.set_xticks([]), ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j >= len(rows[i]) or rows[i][j] is None:
                continue
            ax.imshow(to_uint8(rows[i][j]))
            if landmarks is not None and landmarks[i][j] is not None:
                lm = np.asarray(landmarks[i][j])
                ax.scatter(lm[:, 0], lm[:, 1], s=2, c="#00ff66", linewidths=0)
            if i == 0 and col_titles and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=8)
            if j == 0 and row_titles and i < len(row_titles):
                ax.set_ylabel(row_titles[i], fontsize=8)
    if footer:
        add_footer(fig, footer)
    fig.tight_layout(rect=(0, 0.03 if footer else 0, 1, 1))
    return fig


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png", bbox_inches="tight")
    return path


def short_recipe(recipe) -> str:
    """config.Config.recipe for a footer: the settings' names only (their values are in the
    tables' recipe column and in the profile file)."""
    if not isinstance(recipe, str) or " (" not in recipe:
        return recipe
    name, _, rest = recipe.partition(" (")
    keys = re.findall(r"([a-z_]+\.[a-z_0-9]+)=", rest)
    return f"{name}, differs from the paper's recipe in {', '.join(keys)} (values: the tables' recipe column)"


def footer_text(provenance: dict) -> str:
    return " | ".join(f"{k}: {', '.join(v) if isinstance(v, (list, tuple)) else (short_recipe(v) if k == 'recipe' else v)}"
                      for k, v in provenance.items())


def add_footer(fig, footer: str, fontsize: int = 7) -> None:
    """The provenance footer under the figure, wrapped to its width (a long line would widen the PNG)."""
    width = max(60, int(fig.get_figwidth() * 72 / (0.55 * fontsize)))
    fig.text(0.5, 0.0, textwrap.fill(footer, width=width), ha="center", va="top", fontsize=fontsize,
             color="#555555")


def markdown_table(rows: list[dict], columns: list[str] | None = None, floatfmt: str = ".4g") -> str:
    """rows of dicts -> a GitHub Markdown table (the notebooks display it, tables/*.md store it)."""
    if not rows:
        return "(no rows)"
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))

    def fmt(v):
        if isinstance(v, float):
            return "nan" if v != v else format(v, floatfmt)
        if isinstance(v, (list, tuple)):
            return ", ".join(map(str, v))
        return "" if v is None else str(v)
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(fmt(r.get(c)).replace("|", "/") for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def show_table(rows: list[dict], columns: list[str] | None = None, title: str | None = None):
    """Display rows as a rendered Markdown table in Jupyter (plain text elsewhere). Returns None,
    so a cell ending in it shows the table once (markdown_table gives the text)."""
    md = (f"**{title}**\n\n" if title else "") + markdown_table(rows, columns)
    try:
        from IPython.display import Markdown, display  # lazy: only inside a notebook
        display(Markdown(md))
    except ImportError:
        print(md)


def report_rows(report: dict, prefix: str = "") -> list[dict]:
    """Flatten a (nested) report dict into {item, value} rows for show_table."""
    rows = []
    for k, v in report.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and all(not isinstance(x, dict) for x in v.values()) and len(v) <= 12:
            rows.append({"item": key, "value": ", ".join(f"{a}: {b}" for a, b in v.items())})
        elif isinstance(v, dict):
            rows.extend(report_rows(v, key + "."))
        elif isinstance(v, list) and len(v) > 12:
            rows.append({"item": key, "value": f"{len(v)} entries"})
        else:
            rows.append({"item": key, "value": v})
    return rows


def loss_curves(csv_path: str | Path, footer: str | None = None, smooth: int = 5):
    """Loss terms over steps from train's losses.csv (moving average of `smooth` log rows)."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{csv_path} has no rows yet: train first")
    steps = np.array([float(r["step"]) for r in rows])
    terms = [k for k in rows[0] if k not in ("step", "lr", "seconds", "time")]
    groups = [[t for t in terms if t.startswith("d_")], [t for t in terms if not t.startswith("d_")]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, group, title in zip(axes, groups, ("discriminators", "generator")):
        for t in group:
            y = np.array([float(r[t]) for r in rows])
            k = max(1, min(smooth, len(y)))
            ax.plot(steps[k - 1:], np.convolve(y, np.ones(k) / k, mode="valid"), label=t)
        ax.set_title(title), ax.set_xlabel("step"), ax.legend(fontsize=7)
    if footer:
        add_footer(fig, footer)
    fig.tight_layout(rect=(0, 0.04 if footer else 0, 1, 1))
    return fig


def mask_figure(source, target, generated, masks, footer: str | None = None):
    """The masks M_t (Eq. 1) of every migration unit block for one example, channel-averaged."""
    n = len(masks)
    fig, axes = plt.subplots(1, 3 + n, figsize=(1.7 * (3 + n), 2.2))
    for ax, img, title in zip(axes, (source, target, generated), ("source", "target", "generated")):
        ax.imshow(to_uint8(img)), ax.set_title(title, fontsize=8)
    for t, (ax, m) in enumerate(zip(axes[3:], masks), start=1):
        m = m.detach().float().cpu().numpy() if hasattr(m, "detach") else np.asarray(m)
        ax.imshow(m.reshape(-1, *m.shape[-2:]).mean(0), cmap="magma", vmin=0, vmax=1)
        ax.set_title(f"M_{t}", fontsize=8)
    for ax in axes:
        ax.set_xticks([]), ax.set_yticks([])
    if footer:
        add_footer(fig, footer)
    fig.tight_layout(rect=(0, 0.06 if footer else 0, 1, 1))
    return fig


def show_image(path: str | Path):
    """Display a saved PNG inline in Jupyter (its path elsewhere)."""
    try:
        from IPython.display import Image, display  # lazy: only inside a notebook
        display(Image(filename=str(path)))
    except ImportError:
        print(path)


def show_video(path: str | Path):
    """Display a saved MP4 inline in Jupyter as an HTML5 video with a play control, looping (its
    path elsewhere)."""
    try:
        from IPython.display import Video, display  # lazy: only inside a notebook
        display(Video(str(path), embed=True, html_attributes="controls loop muted"))
    except ImportError:
        print(path)
