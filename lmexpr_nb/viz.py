"""Figures and tables for the notebooks: grids of faces with landmarks, tables as Markdown.

Every figure saved here gets a footer naming what made it (data, profile, stand-ins), so a
figure copied out of context still says whether its faces are real or synthetic.
"""
from __future__ import annotations

import re

from pathlib import Path

import numpy as np


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
    import matplotlib.pyplot as plt
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
    from .io import atomic_path
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
    import textwrap
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
        from IPython.display import Markdown, display
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


def expression_grid(cache, per_class: int = 4, footer: str | None = None, seed: int = 0):
    """Fig. 6 style: one row per expression class present, `per_class` crops from different
    subjects where possible, landmarks overlaid."""
    from .data.records import CLASSES
    rng = np.random.default_rng(seed)
    rows, lms, titles = [], [], []
    for k, name in enumerate(CLASSES):
        idx = np.flatnonzero(np.asarray(cache.labels) == k)
        if idx.size == 0:
            continue
        rng.shuffle(idx)
        seen, pick = set(), []
        for i in idx:  # one frame per subject first, then fill up
            if cache.subjects[i] not in seen:
                seen.add(cache.subjects[i]), pick.append(i)
        pick += [i for i in idx if i not in pick]
        pick = pick[:per_class]
        rows.append([cache.images[i] for i in pick])
        lms.append([cache.landmarks[i] for i in pick])
        titles.append(f"{name} (n={idx.size})")
    return image_grid(rows, row_titles=titles, landmarks=lms, footer=footer)


def method_grid(cache, method: str = "dataset", n: int = 8, per_row: int = 8, footer: str | None = None):
    """The crops kept by one landmark method, landmarks overlaid; by default the frames where
    dlib found no face and the dataset's own landmarks were used (check them by eye). None when
    there are none."""
    from .data.records import CLASSES
    idx = np.flatnonzero(np.asarray(cache.method).astype(str) == method)[:n]
    if idx.size == 0:
        return None
    rows = [list(idx[i:i + per_row]) for i in range(0, idx.size, per_row)]
    return image_grid([[cache.images[i] for i in r] for r in rows],
                      col_titles=[f"{cache.subjects[i]} {CLASSES[int(cache.labels[i])]}" for i in rows[0]],
                      landmarks=[[cache.landmarks[i] for i in r] for r in rows], footer=footer)


def loss_curves(csv_path: str | Path, footer: str | None = None, smooth: int = 5):
    """Loss terms over steps from train's losses.csv (moving average of `smooth` log rows)."""
    import csv
    import matplotlib.pyplot as plt
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
    import matplotlib.pyplot as plt
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
        from IPython.display import Image, display
        display(Image(filename=str(path)))
    except ImportError:
        print(path)
