"""Table 6 of the paper: identity preservation (Rank-1, TAR@FAR=1%, TAR@FAR=0.1%), per recogniser.

    table6_identity(evs, cache, cfg, folder, provenance)   tables/table6.csv|md

Gallery = ONE real image per validation subject (its first neutral frame, by sequence then frame,
data/frames.py); probes = the other frames. "original" probes are the real targets of the
evaluation pairs; the methods' probes are their outputs for the same pairs (experiments/evalset.py).
Pairs whose source or target is a gallery image are left out for every method, so no probe is (or
is copied from) its own gallery image: "original" is not 100% by construction, unlike the paper's
(whose protocol is not printed). Verification pairs are all probe x gallery pairs: one genuine per
probe, (subjects - 1) impostors per probe; fewer than 1000 impostors flags TAR@FAR=0.1%. Numbers
are percentages, like the paper's. One block of rows per protocol; every image is embedded once (a
per-image memo), so images the two protocols share are scored once. The scores come from the
metrics registry's "identity" entry (metrics/identity.py).
"""
from __future__ import annotations

import hashlib

import numpy as np

from lmexpr_nb.common.paper import TABLE6_COLUMNS, TABLE6_IDENTITY
from lmexpr_nb.common.weights import MissingWeightsError, locate
from lmexpr_nb.data.frames import neutral_frame, subjects_in
from lmexpr_nb.experiments.evalset import METHOD_ORDER, OURS, PRIMARY, WHY_PRIMARY, EvalSet, as_sets
from lmexpr_nb.experiments.tables import PAPER_ONLY, PAPER_PROTOCOL, THIS_RUN, printed, write_table
from lmexpr_nb.metrics import registry
from lmexpr_nb.metrics.result import eval_config

RECOGNISER_WEIGHTS = {"lightcnn": ("lightcnn29v2", "lightcnn_weights"), "vggface": ("vggface", "vggface_weights")}
PAPER_RECOGNISERS = ("VGG-Face", "Light CNN")


def identity_gallery(cache, split: str = "val") -> np.ndarray:
    """Table 6's gallery: one real image per subject of `split`, its first neutral frame."""
    return np.array([neutral_frame(cache, s, split) for s in subjects_in(cache, split)], dtype=np.int64)


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
        out.append((name, registry.get("identity").features(name, cfg, device), ""))
    return out


def _paper6(method: str | None) -> dict:
    row = {}
    for rec in PAPER_RECOGNISERS:
        vals = TABLE6_IDENTITY.get(method, {}).get(rec) if method else None
        for col, v in zip(TABLE6_COLUMNS, vals or (None,) * 3):
            row[f"paper {rec}: {col}"] = printed(v)
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
    ecfg = eval_config(cfg)
    identity = registry.get("identity")
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
                s = identity.compare(g, proto["gallery_ids"], embed(probes), proto["probe_ids"])
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

