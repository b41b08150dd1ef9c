"""The paper's evaluation figures and tables (Sec. IV-C): Figs. 7-9, Tables 5-6, landmark error.

The methods (copy source, warp to target landmarks, our method), the two pair protocols and the
shared generated images live in `evalset` (re-exported here): `evaluation_sets` runs every method
once on the union of the protocols' validation pairs, primary neutral-to-expression (the paper's
Fig. 9 task) and secondary all-ordered-pairs (PATN's list), and returns one EvalSet per protocol;
Tables 5 and 6 both read them, every table with a `protocol` column, the primary block first.
Figs. 7 and 9 show neutral -> expression pairs of the primary protocol only. With `store=` the
images are written to disk, so notebook 06 reuses what 05 generated.

What each builder writes (under the notebook context's figures/ and tables/):
    figure_same_identity      figures/fig9_same_identity.png     (Fig. 9: input / target / generated)
    figure_landmark_transfer  figures/fig8_landmark_transfer.png (Fig. 8: input / donor / generated)
    figure_comparison         figures/fig7_comparison.png        (Fig. 7: ours vs ground truth vs baselines)
    table5_quality            tables/table5.csv|md  PSNR, both SSIMs, FID or FD-dlib, KID, landmark NME
                                                    (module table5, re-exported here)
    table5_per_expression     tables/table5_per_expression.csv|md  NME and SSIM per target expression
    table6_identity           tables/table6.csv|md  Rank-1, TAR@FAR=1%, 0.1% per recogniser and protocol

Choices (documented here and in the tables' notes):
- Fig. 8 asks the generator for ANOTHER person's landmarks. Raw donor landmarks sit where the
  donor's head was in the donor's crop and have the donor's size; the generator, trained on
  same-person pairs, cannot move or rescale a head. By default the donor's 68 points are mapped
  onto the input face by the similarity transform (rotation, uniform scale, translation; no
  reflection, Umeyama's least squares) fitted on points that expressions hardly move (nose
  27-35, eye corners 36/39/42/45, upper jaw 0/1/15/16). The donor's shape and expression are kept;
  only its placement and size follow the input. `align="none"` uses the raw donor points.
  The target label is the donor frame's label.
- Table 5: see the module `table5` (FD named as the metric reports it, landmark NME, floor row).
- Table 6: gallery = ONE real image per validation subject (its first neutral frame, by
  sequence then frame); probes = the other frames. "original" probes are the real targets of the
  evaluation pairs; the methods' probes are their outputs for the same pairs. Pairs whose source
  or target is a gallery image are left out for every method, so no probe is (or is copied
  from) its own gallery image: "original" is not 100% by construction, unlike the paper's
  (whose protocol is not printed). Verification pairs are all probe x gallery pairs: one genuine
  per probe, (subjects - 1) impostors per probe; fewer than 1000 impostors flags TAR@FAR=0.1%.
  Numbers are percentages, like the paper's. One block of rows per protocol; real frames are
  embedded once (a per-image memo), so images the two protocols share are scored once.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .data.records import CLASSES
from .evalset import (COPY, METHOD_ORDER, OURS, PRIMARY, ROLE, SECONDARY, WARP, WHY_PRIMARY,  # noqa: F401
                      BaselineMethod, EvalSet, PairImages, as_sets, evaluation_set, evaluation_sets,
                      generator_method, methods)
from .paper import TABLE6_COLUMNS, TABLE6_IDENTITY
from .table5 import (PAPER_ONLY, PAPER_PROTOCOL, THIS_RUN, _printed, table5_per_expression,  # noqa: F401
                     table5_quality)
from .tables import write_table

# points that expressions hardly move: nose (27-35), eye corners, upper jaw
STABLE_POINTS = (0, 1, 15, 16, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
RECOGNISER_WEIGHTS = {"lightcnn": ("lightcnn29v2", "lightcnn_weights"), "vggface": ("vggface", "vggface_weights")}
PAPER_RECOGNISERS = ("VGG-Face", "Light CNN")


class NoTrainedModel(RuntimeError):
    """No checkpoint to evaluate: run 03_training first."""


def trained_generator(ctx, checkpoint=None):
    """(G in eval mode, description of its weights) from `checkpoint` or the run's last one.
    Without one: NoTrainedModel with a one-line message (run 03_training first)."""
    path = Path(checkpoint) if checkpoint else ctx.checkpoint
    if not path.is_file():
        raise NoTrainedModel(f"no trained generator at {path}: run notebooks/03_training.ipynb first "
                             f"(`lmexpr run --profile {ctx.profile} --only 03`), or set checkpoint = "
                             f"'<path to last.pt>'")
    G, _ = ctx.generator(path)
    from .checkpoint import load_checkpoint
    ck = load_checkpoint(path)
    trained_with = [str(s) for s in (ck.get("provenance") or {}).get("standins") or [] if "FID" not in str(s)]
    now = [s for s in ctx.cfg.uses_standins if "FID" not in s]
    desc = f"generator {path.name} step {ck.get('step', '?')}"
    if trained_with != now and trained_with != ["none"]:   # a checkpoint made under other settings says so
        desc += " (trained with: " + ("; ".join(trained_with) or "no stand-ins") + ")"
    return G, desc


# ----------------------------------------------------------------------------- choosing frames

def _order(cache, idx: np.ndarray) -> np.ndarray:
    seq = np.asarray(cache.sequences).astype(str)[idx]
    frames = np.asarray(cache.frames)[idx]
    return idx[np.lexsort((frames, seq))]


def split_subjects(cache, split: str = "val") -> list[str]:
    s = np.asarray(cache.subjects).astype(str)
    return sorted(set(s[np.asarray(cache.split) == split]))


def neutral_frame(cache, subject: str, split: str | None = None) -> int:
    """The subject's first neutral (label 0) frame by (sequence, frame); its first frame if none."""
    mine = np.asarray(cache.subjects).astype(str) == subject
    if split is not None:
        mine &= np.asarray(cache.split) == split
    idx = np.flatnonzero(mine & (np.asarray(cache.labels) == 0))
    if idx.size == 0:
        idx = np.flatnonzero(mine)
    if idx.size == 0:
        raise ValueError(f"subject {subject} has no frames")
    return int(_order(cache, idx)[0])


def peak_frames(cache, subject: str, split: str | None = None) -> dict[int, int]:
    """{expression label: the subject's last frame with that label} for every non-neutral label."""
    mine = np.asarray(cache.subjects).astype(str) == subject
    if split is not None:
        mine &= np.asarray(cache.split) == split
    labels = np.asarray(cache.labels)
    out = {}
    for k in sorted(set(labels[mine].tolist()) - {0}):
        out[int(k)] = int(_order(cache, np.flatnonzero(mine & (labels == k)))[-1])
    return out


def identity_gallery(cache, split: str = "val") -> np.ndarray:
    """Table 6's gallery: one real image per subject of `split`, its first neutral frame."""
    return np.array([neutral_frame(cache, s, split) for s in split_subjects(cache, split)], dtype=np.int64)


def align_landmarks(donor, reference, points=STABLE_POINTS) -> np.ndarray:
    """`donor` (68,2) mapped by the similarity transform that best fits its `points` onto
    `reference`'s (least squares, Umeyama 1991, no reflection)."""
    d, r = np.asarray(donor, np.float64), np.asarray(reference, np.float64)
    a, b = d[list(points)], r[list(points)]
    ma, mb = a.mean(0), b.mean(0)
    a0, b0 = a - ma, b - mb
    u, s, vt = np.linalg.svd(b0.T @ a0)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rot = u @ sign @ vt
    scale = np.trace(np.diag(s) @ sign) / max((a0 ** 2).sum(), 1e-12)
    return ((d - ma) @ rot.T * scale + mb).astype(np.float32)


# ----------------------------------------------------------------------------- figures

def _footer(provenance: dict, ncols: int) -> str:
    """The provenance footer, wrapped to the figure's width (it would otherwise widen the PNG)."""
    import textwrap
    from .viz import footer_text
    return textwrap.fill(footer_text(provenance), width=max(70, int(ncols * 1.6 * 13)))


def _save(fig, path):
    from .viz import save_figure
    save_figure(fig, path)
    return fig


def figure_same_identity(cache, G, path, provenance: dict, split: str = "val", n_subjects: int = 2):
    """Fig. 9: per subject three rows (input = its neutral frame, target = the peak frame of each
    expression, generated from the input with the target's landmarks and label), one column per
    expression: pairs of the primary neutral-to-expression protocol. Returns (figure, {"subjects",
    "columns"})."""
    from .viz import image_grid
    ours = generator_method(G)
    subjects = [s for s in split_subjects(cache, split) if peak_frames(cache, s, split)][:n_subjects]
    if not subjects:
        raise ValueError(f"no {split} subject has a non-neutral frame")
    expressions = sorted(set().union(*(peak_frames(cache, s, split) for s in subjects)))
    cols = [CLASSES[k] for k in expressions]
    labels = np.asarray(cache.labels)
    rows, titles = [], []
    for s in subjects:
        src, peaks = neutral_frame(cache, s, split), peak_frames(cache, s, split)
        tgt = np.array(list(peaks.values()))
        srcs = np.full(len(tgt), src)
        gen = dict(zip(peaks, ours(cache.images[srcs], cache.landmarks[srcs], cache.landmarks[tgt], labels[tgt])))
        rows += [[cache.images[src] if k in peaks else None for k in expressions],
                 [cache.images[peaks[k]] if k in peaks else None for k in expressions],
                 [gen.get(k) for k in expressions]]
        titles += [f"{s}\ninput", "target", "generated"]
    fig = image_grid(rows, row_titles=titles, col_titles=cols, footer=_footer(provenance, len(rows[0])))
    fig.suptitle(f"Fig. 9 style: same identity (input / target / generated; {PRIMARY} pairs)", fontsize=9, y=1.0)
    return _save(fig, path), {"subjects": subjects, "columns": cols}


def transfer_examples(cache, split: str = "val", n_examples: int = 6, seed: int = 0) -> list[tuple[int, int]]:
    """(input frame, landmark donor frame) pairs for Fig. 8: input = a subject's neutral frame,
    donor = a peak frame of ANOTHER subject (of `split` when it has two or more, else any other
    subject of the cache), expressions cycling so that the columns differ."""
    rng = np.random.default_rng(seed)
    subjects = split_subjects(cache, split)
    if not subjects:
        raise ValueError(f"no {split} subjects")
    donors_pool = subjects if len(subjects) > 1 else sorted(set(np.asarray(cache.subjects).astype(str)))
    out = []
    for i in range(n_examples):
        s = subjects[i % len(subjects)]
        others = [d for d in donors_pool if d != s]
        if not others:
            raise ValueError("Fig. 8 needs a second subject as landmark donor")
        d = others[int(rng.integers(len(others)))]
        peaks = peak_frames(cache, d, split if d in subjects else None)
        if not peaks:
            continue
        ks = sorted(peaks)
        out.append((neutral_frame(cache, s, split), peaks[ks[i % len(ks)]]))
    return out


def figure_landmark_transfer(cache, G, path, provenance: dict, split: str = "val", n_examples: int = 6,
                             align: str = "similarity", seed: int = 0):
    """Fig. 8: rows input / landmark donor (its landmarks dotted) / donor landmarks on the input
    (aligned, see the module doc) / generated, one column per example; target label = donor's.
    Returns (figure, examples [(input, donor)])."""
    from .viz import image_grid
    if align not in ("similarity", "none"):
        raise ValueError(f"align must be 'similarity' or 'none', got {align!r}")
    ex = transfer_examples(cache, split, n_examples, seed)
    src = np.array([a for a, _ in ex])
    don = np.array([b for _, b in ex])
    lm = np.asarray(cache.landmarks, np.float32)
    target = np.stack([align_landmarks(lm[d], lm[s]) if align == "similarity" else lm[d] for s, d in ex])
    labels = np.asarray(cache.labels)[don]
    gen = generator_method(G)(cache.images[src], lm[src], target, labels)
    subj = np.asarray(cache.subjects).astype(str)
    rows = [list(cache.images[src]), list(cache.images[don]), list(cache.images[src]), list(gen)]
    dots = [[None] * len(ex), list(lm[don]), list(target), [None] * len(ex)]
    cols = [f"{subj[s]} <- {subj[d]}\n{CLASSES[k]}" for s, d, k in zip(src, don, labels)]
    titles = ["input", "landmark donor", "target landmarks" + (" (aligned)" if align == "similarity" else ""),
              "generated"]
    fig = image_grid(rows, row_titles=titles, col_titles=cols, landmarks=dots,
                     footer=_footer(provenance, len(rows[0])))
    fig.suptitle(f"Fig. 8 style: landmark transfer across identities (donor shape, {align} alignment)",
                 fontsize=9, y=1.0)
    return _save(fig, path), ex


def comparison_pairs(cache, split: str = "val", n_examples: int = 6) -> list[tuple[int, int]]:
    """(neutral source, peak target) pairs of the same subject, pairs of the primary neutral-to-expression
    protocol (the subject's first neutral frame, the last frame of each expression); subjects and
    expressions cycle (column i: subject i mod n, expression i mod its count), so the columns show
    different expressions."""
    subjects = [s for s in split_subjects(cache, split) if peak_frames(cache, s, split)]
    if not subjects:
        raise ValueError(f"no {split} subject has a non-neutral frame")
    out = []
    for i in range(n_examples):
        s = subjects[i % len(subjects)]
        peaks = peak_frames(cache, s, split)
        ks = sorted(peaks)
        out.append((neutral_frame(cache, s, split), peaks[ks[i % len(ks)]]))
    return out


def figure_comparison(cache, G, path, provenance: dict, split: str = "val", n_examples: int = 6):
    """Fig. 7 style rows: input (= the copy-source baseline) / ground truth / ours / warp baseline,
    one column per validation pair. Returns (figure, pairs)."""
    from .viz import image_grid
    pairs = comparison_pairs(cache, split, n_examples)
    s = np.array([a for a, _ in pairs])
    t = np.array([b for _, b in pairs])
    lm, labels = np.asarray(cache.landmarks, np.float32), np.asarray(cache.labels)
    fns = methods(G)
    out = {m: fns[m](cache.images[s], lm[s], lm[t], labels[t]) for m in (OURS, WARP)}
    rows = [list(cache.images[s]), list(cache.images[t]), list(out[OURS]), list(out[WARP])]
    subj = np.asarray(cache.subjects).astype(str)
    cols = [f"{subj[a]}: {CLASSES[labels[b]]}" for a, b in pairs]
    fig = image_grid(rows, row_titles=["input\n(= copy source)", "ground truth", "ours", "warp baseline"],
                     col_titles=cols, footer=_footer(provenance, len(rows[0])))
    fig.suptitle(f"Fig. 7 style: generated vs ground truth vs baselines ({PRIMARY} pairs)", fontsize=9, y=1.0)
    return _save(fig, path), pairs


# ----------------------------------------------------------------------------- Table 6

def _memo_embedder(rec):
    """embed(images) with a per-image memo (real frames recur across probe sets and pairs)."""
    memo: dict[bytes, np.ndarray] = {}
    stats = {"whole_image_box": 0, "embedded": 0}

    def embed(images) -> np.ndarray:
        keys = [hashlib.sha1(np.ascontiguousarray(im).tobytes()).digest() for im in images]
        todo = list(dict.fromkeys(k for k in keys if k not in memo))
        if todo:
            first = {k: i for i, k in reversed(list(enumerate(keys)))}
            new = rec.embed(np.stack([images[first[k]] for k in todo]))
            memo.update(zip(todo, np.asarray(new)))
            stats["whole_image_box"] += int(getattr(rec, "last_stats", {}).get("whole_image_box", 0) or 0)
            stats["embedded"] += len(todo)
        return np.stack([memo[k] for k in keys])
    return embed, stats


def _recognisers(cfg, optional, device, log):
    """[(name, recogniser or None, skip reason)]: the configured ones must load (their
    MissingWeightsError propagates); optional ones whose weights are absent are skipped (never
    downloaded)."""
    from .metrics.recognisers import load_recogniser
    from .weights import MissingWeightsError, locate
    required = list(cfg.recognisers)
    out = []
    for name in required + [o for o in optional if o not in required]:
        if name not in required and name in RECOGNISER_WEIGHTS:
            key, attr = RECOGNISER_WEIGHTS[name]
            try:
                locate(key, getattr(cfg, attr), download=False)
            except MissingWeightsError as e:
                log(f"{name}: skipped (optional): {e}")
                out.append((name, None, str(e)))
                continue
        out.append((name, load_recogniser(name, cfg, device), ""))
    return out


def _paper6(method: str | None) -> dict:
    row = {}
    for rec in PAPER_RECOGNISERS:
        vals = TABLE6_IDENTITY.get(method, {}).get(rec) if method else None
        for col, v in zip(TABLE6_COLUMNS, vals or (None,) * 3):
            row[f"paper {rec}: {col}"] = _printed(v)
    return row


def identity_protocol(ev: EvalSet, cache, split: str = "val") -> dict:
    """Gallery and probe selection of Table 6 (see the module doc)."""
    gallery = identity_gallery(cache, split)
    keep = ~np.isin(ev.src_idx, gallery) & ~np.isin(ev.tgt_idx, gallery)
    if len(gallery) < 2:
        raise ValueError(f"Table 6 needs at least 2 {split} subjects (impostor pairs); this cache has {len(gallery)}")
    if not keep.any():
        raise ValueError("no evaluation pair is free of gallery images: raise eval.max_pairs")
    subj = np.asarray(cache.subjects).astype(str)
    return {"gallery": gallery, "gallery_ids": subj[gallery], "keep": keep, "probe_ids": ev.ids[keep]}


def table6_identity(evs, cache, cfg, folder, provenance: dict, device=None,
                    optional=("lightcnn", "vggface"), split: str = "val", recognisers=None, log=print,
                    name: str = "table6") -> list[dict]:
    """Table 6 (identity preservation): Rank-1, TAR@FAR=1%, TAR@FAR=0.1% (%) per recogniser and
    protocol (`evs`: an EvalSet, a list or evaluation_sets' dict; primary block first) for "original"
    (real probes), the baselines and ours, the paper's VGG-Face / Light CNN numbers beside.
    Recognisers: cfg.eval.recognisers (must load) plus `optional` ones, shown as skipped rows with the
    reason when their weights are not here. `recognisers` (list of (name, object)) replaces both
    (tests). A protocol none of whose pairs is free of gallery images is a skipped row (an error only
    when no protocol has one). Writes <folder>/table6.csv and .md; returns the rows."""
    from .metrics import eval_config
    from .metrics.identity import identity_summary
    ecfg = eval_config(cfg)
    sets = as_sets(evs)
    protos, rows = {}, []
    for ev in sets:
        try:
            protos[ev.protocol] = identity_protocol(ev, cache, split)
        except ValueError as e:
            if "at least 2" in str(e):
                raise
            rows.append({"protocol": ev.protocol, "recogniser": "(all)", "method": "(all)", "source": "skipped",
                         "note": f"skipped: {e}", "N": 0, "weights": "no model"})
    if not protos:
        raise ValueError("no evaluation pair of any protocol is free of gallery images: raise eval.max_pairs")
    dev = sets[0].device if device is None else str(device)
    recs = ([(n, r, "") for n, r in recognisers] if recognisers is not None else _recognisers(ecfg, optional, dev, log))
    fallbacks = {}
    for rec_name, rec, reason in recs:
        if rec is None:
            rows.append({"protocol": "(all)", "recogniser": rec_name, "method": "(all)", "source": "skipped",
                         "note": f"skipped: {reason}", "N": 0, "weights": "missing"})
            continue
        embed, stats = _memo_embedder(rec)          # one memo for every protocol: shared images embed once
        for ev in sets:
            if ev.protocol not in protos:
                continue
            proto = protos[ev.protocol]
            keep = proto["keep"]
            g = embed(cache.images[proto["gallery"]])
            probe_sets = {"original": ev.real[keep], **{m: ev.fakes[m][keep] for m in METHOD_ORDER if m in ev.fakes}}
            for m, probes in probe_sets.items():
                s = identity_summary(g, proto["gallery_ids"], embed(probes), proto["probe_ids"])
                rows.append({"protocol": ev.protocol, "recogniser": rec_name, "method": m, "source": THIS_RUN,
                             "Rank-1 (%)": 100 * s.rank1, "TAR@FAR=1% (%)": 100 * s.tar_far_1,
                             "TAR@FAR=0.1% (%)": 100 * s.tar_far_0_1, "gallery": s.n_gallery,
                             "genuine pairs": s.n_genuine, "impostor pairs": s.n_impostor,
                             "warning": s.message,
                             **_paper6(m if m in ("original", OURS) and ev.protocol == PRIMARY else None),
                             "note": ev.weights if m == OURS else ev.notes.get(m, ""), "N": s.n_probes,
                             "weights": getattr(rec, "provenance", rec_name)})
        fallbacks[rec_name] = dict(stats)
    for peer in TABLE6_IDENTITY:
        if peer not in ("original", OURS):
            rows.append({"protocol": PAPER_PROTOCOL, "recogniser": "(paper's)", "method": peer, "source": PAPER_ONLY,
                         **_paper6(peer), "N": "not printed", "data": "CK+ (paper)", "profile": "paper",
                         "weights": "paper"})
    fb = "; ".join(f"{k}: {v['whole_image_box']} of {v['embedded']} distinct images had no detected face "
                   f"(whole crop used as the face box)" for k, v in fallbacks.items() if v["whole_image_box"])
    gal = next(iter(protos.values()))["gallery"]
    probes = "; ".join(f"{e.protocol} ({e.role}): {int(protos[e.protocol]['keep'].sum())} of its {e.n} pairs"
                       for e in sets if e.protocol in protos)
    note = (f"Protocols (column `protocol`): {WHY_PRIMARY}. "
            f"Gallery: one real image per {split} subject (its first neutral frame), {len(gal)} images. Probes: "
            f"the evaluation pairs whose source and target are not gallery images ({probes}); "
            f"'original' = the real target frames, the methods = their outputs for the same pairs. Scores: cosine "
            f"of L2-normalised embeddings; every probe x gallery pair is a verification pair; TAR@FAR by the "
            f"step ROC (no interpolation). FAR=0.1% needs >= 1000 impostor pairs (see `warning`). Values in %. "
            f"Recognisers here: {', '.join(n for n, r, _ in recs if r is not None) or 'none'} (see `weights`); "
            f"the `paper VGG-Face:` / `paper Light CNN:` columns are the paper's printed numbers with ITS "
            f"recognisers on CK+ (its gallery/probe protocol is not printed; its 'original' Rank-1 of 100 "
            f"suggests probes included the gallery images), not comparable number for number."
            + (f" {fb}." if fb else ""))
    write_table(folder, name, rows, provenance,
                title=f"Table 6: identity preservation (ours beside the paper's; primary protocol: {PRIMARY})",
                note=note)
    return rows


# ----------------------------------------------------------------------------- numbers for save_metrics

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
