"""Table 5 (image quality, paper Sec. IV-C, Eq. 8-10) on the evaluation sets, and its per-expression table.

    table5_quality(evs, cfg, folder, provenance)          tables/table5.csv|md
        one block of rows per protocol (column `protocol`): the primary neutral-to-expression block
        first, then the secondary all-ordered-pairs block; per block copy source, warp, ours and the
        detector floor ("real target"); then the paper's peers as "paper only" rows.
    table5_per_expression(ev, cfg, folder, provenance)    tables/table5_per_expression.csv|md
        the primary protocol broken down by target expression: N, SSIM (Wang) and landmark NME of
        every method, and the detector's own NME on the real targets.

Every number comes from the metrics registry (metrics/registry.py: psnr, ssim_skimage, ssim_wang,
landmark_error, fid, sharpness, expression_correct). Per-image scores (PSNR, SSIM, NME, FD features,
sharpness, expression hits) are computed once per generated image of the union of the protocols'
pairs (evalset.PairImages.cached) and each protocol summarises its rows, so a pair that two protocols share is scored once and counts in
both. Columns and choices:
- PSNR/SSIM: scikit-image on uint8 RGB, data_range=255; SSIM in two labelled variants (the paper
  does not say which).
- "ours: FID" with the Inception network, "ours: FD-dlib" with the stand-in (as the metric names
  itself); the paper's FID stays in its own "paper: FID" column, so a stand-in number never sits under
  the paper's heading. The real set of the Frechet distance is the protocol's real targets (same N).
- Landmark NME: dlib's 68 points re-detected on each image vs the target landmarks / the target's
  outer-eye-corner distance; images without a detected face are counted in `no face found` and left
  out of the mean; the "real target (detector floor)" row is the detector's error on real frames.
"""
from __future__ import annotations

import numpy as np

from lmexpr_nb.common.paper import TABLE5_QUALITY
from lmexpr_nb.data.records import CLASSES
from lmexpr_nb.experiments.evalset import METHOD_ORDER, OURS, PRIMARY, WHY_PRIMARY, EvalSet, as_sets
from lmexpr_nb.experiments.tables import PAPER_ONLY, PAPER_PROTOCOL, THIS_RUN, printed, write_table
from lmexpr_nb.metrics import registry
from lmexpr_nb.metrics.landmark_error import nme_detector
from lmexpr_nb.metrics.result import eval_config

REAL = "real target (detector floor)"
NME_COL = registry.get("landmark_error").label
PIXEL_METRICS = ("psnr", "ssim_skimage", "ssim_wang")     # registry names, in column order
SHARP_COL = registry.get("sharpness").label
EXPR_COL = registry.get("expression_correct").label


def _num(v):
    """A plain float (the table writer formats it: CSV 6 significant digits, Markdown 4)."""
    return None if v is None else float(v)


REALISM_NOTE = (
    "Realism without downloads: `sharpness` is the variance of the 3x3 Laplacian of the face's luma over the "
    "target landmarks' hull, generated / real target (1 = as sharp as the real frame; below = soft or ghosted, "
    "above = noise or pattern the real face does not have); `expression accuracy` is the share of images that "
    "an independent expression classifier, trained only on the training subjects' real frames, gives the "
    "target label, reading the change of the face's re-detected landmarks from the pair's neutral source "
    "(primary protocol only: its sources are neutral; the real-target row is its ceiling). FD/KID say whether the "
    "faces' distribution matches; "
    "noise can buy sharpness but not FD, KID or expression accuracy.")


def _paper5(method: str) -> dict:
    p = TABLE5_QUALITY[method]
    return {f"paper: {k}": printed(p[k]) for k in ("PSNR", "SSIM", "FID")}


# ----------------------------------------------------------------------------- per-image scores

def pixel_scores(ev: EvalSet, method: str) -> dict[str, np.ndarray]:
    """{registry name: per-pair array on ev's rows} for PIXEL_METRICS (PSNR, both SSIMs)."""
    u = ev.union
    return {n: ev.scores((n, method), lambda n=n: registry.scores(n, fake=u.fakes[method], real=u.real))
            for n in PIXEL_METRICS}


def pair_nme(ev: EvalSet, method: str | None, detector) -> np.ndarray:
    """Per-pair NME on ev's rows (NaN where no face was found); method None = the real targets."""
    u = ev.union
    images = u.real if method is None else u.fakes[method]
    return ev.scores(("nme", method or "real"), lambda: registry.scores(
        "landmark_error", fake=images, target_landmarks=u.target_landmarks, detector=detector))


def fd_kid(ev: EvalSet, method: str, cfg, device: str = "cpu"):
    """[FD (FID or FD-dlib), KID] MetricResults of the method vs the real targets on ev's rows; every
    image is embedded once for all protocols."""
    fid = registry.get("fid")
    ecfg = eval_config(cfg)
    u = ev.union
    key = ("extractor", ecfg.fid_features, device)
    if key not in u.memo:
        u.memo[key] = fid.features(ecfg, device)
    embed, fd_name, kid_name, prov = u.memo[key]
    fr = ev.scores(("features", fd_name, "real"), lambda: embed(u.real))
    ff = ev.scores(("features", fd_name, method), lambda: embed(u.fakes[method]))
    return fid.compare(fr, ff, fd_name, kid_name, prov, ecfg)


def pair_sharpness(ev: EvalSet, method: str | None) -> np.ndarray:
    """Per-pair sharpness (metrics/sharpness.py) on ev's rows; method None = the real targets (1.0)."""
    u = ev.union
    images = u.real if method is None else u.fakes[method]
    return ev.scores(("sharpness", method or "real"), lambda: registry.scores(
        "sharpness", fake=images, real=u.real, target_landmarks=u.target_landmarks))


def pair_expression(ev: EvalSet, method: str | None, classifier) -> np.ndarray:
    """Per-pair 1.0 / 0.0: does the expression classifier (trained on the training subjects' real
    frames, never on generated ones) give the image its target label? method None = the real
    targets, the classifier's ceiling."""
    u = ev.union
    images = u.real if method is None else u.fakes[method]
    return ev.scores(("expression", method or "real"), lambda: registry.scores(
        "expression_correct", fake=images, fake_labels=u.target_labels, classifier=classifier, source=u.source))


def _realism_cols(ev: EvalSet, method: str | None, classifier) -> dict:
    row = {SHARP_COL: _num(registry.summarise("sharpness", pair_sharpness(ev, method)).value)}
    if classifier is not None and ev.protocol == PRIMARY:     # neutral sources, expression targets only
        row[EXPR_COL] = _num(registry.summarise("expression_correct", pair_expression(ev, method, classifier)).value)
    return row


def _nme_cols(errs: np.ndarray) -> dict:
    r = registry.summarise("landmark_error", errs)
    return {NME_COL: _num(r.value) if r.n else None, "no face found": r.extra["n_no_face"]}


# ----------------------------------------------------------------------------- Table 5

def detector_for(evs, landmark_error: bool = True):
    """The landmark detector (loaded once for every row), or None."""
    if not landmark_error:
        return None
    return nme_detector(as_sets(evs)[0].real.shape[1])


def _block(ev: EvalSet, cfg, device, detector, classifier) -> tuple[list[dict], str, str]:
    rows, fd_col, kid_col = [], None, None
    for m in [m for m in METHOD_ORDER if m in ev.fakes]:
        pix = pixel_scores(ev, m)
        fd, kd = fd_kid(ev, m, cfg, device)
        fd_col, kid_col = f"ours: {fd.name}", f"ours: {kd.name}"
        row = {"protocol": ev.protocol, "method": m, "source": THIS_RUN}
        row.update({registry.get(n).label: _num(registry.summarise(n, v).value) for n, v in pix.items()})
        row.update({fd_col: _num(fd.value), kid_col: _num(kd.value), "KID std": _num(kd.std)})
        row.update(_realism_cols(ev, m, classifier))
        if detector is not None:
            row.update(_nme_cols(pair_nme(ev, m, detector)))
        if m == OURS and ev.protocol == PRIMARY:       # the paper's numbers beside the primary block only
            row.update(_paper5("our method"))
        identical = int(np.isinf(pix["psnr"]).sum())
        row["note"] = "; ".join(x for x in (ev.notes.get(m, ""), "" if m != OURS else ev.weights,
                                            f"{identical} pairs identical to the target (PSNR inf)" if identical
                                            else "") if x)
        row["N"] = ev.n
        if m != OURS:
            row["weights"] = "no model (baseline)" + (f"; {fd.name}: stand-in features" if fd.name != "FID" else "")
        rows.append(row)
    if detector is not None or classifier is not None:
        rows.append({"protocol": ev.protocol, "method": REAL, "source": THIS_RUN,
                     **(_nme_cols(pair_nme(ev, None, detector)) if detector is not None else {}),
                     **_realism_cols(ev, None, classifier),
                     "note": "the real target frames: the detector's own error (NME) and the expression "
                             "classifier's ceiling; sharpness 1 by definition",
                     "N": ev.n, "weights": "no model"})
    return rows, fd_col, kid_col


def table5_quality(evs, cfg, folder, provenance: dict, device=None, landmark_error: bool = True,
                   name: str = "table5", classifier=None) -> list[dict]:
    """Table 5 (CK+: PSNR, SSIM, FID) for each method and each protocol of `evs` (an EvalSet, a list or
    the {protocol: EvalSet} of evalset.evaluation_sets), our numbers beside the paper's.

    `classifier`: the expression classifier of the realism columns (metrics/expression_change.py's
    `train_expression_change_classifier`); None leaves the expression-accuracy column out.
    Writes <folder>/<name>.csv and .md; returns the rows (see the module doc for the columns)."""
    sets = as_sets(evs)
    device = sets[0].device if device is None else str(device)
    detector = detector_for(sets, landmark_error)
    rows, fd_col, kid_col = [], None, None
    for ev in sets:
        block, fd_col, kid_col = _block(ev, cfg, device, detector, classifier)
        rows += block
    for p, why in sets[0].union.skipped.items():
        rows.append({"protocol": p, "method": "(all)", "source": "skipped", "note": f"skipped: {why}", "N": 0,
                     "weights": "no model"})
    for peer in TABLE5_QUALITY:
        if peer != "our method":
            rows.append({"protocol": PAPER_PROTOCOL, "method": peer, "source": PAPER_ONLY, **_paper5(peer),
                         "N": "not printed", "data": "CK+ (paper)", "profile": "paper", "weights": "paper"})
    fd_name = fd_col.split(": ", 1)[1] if fd_col else "FID"
    counts = "; ".join(f"{e.protocol} ({e.role}): {e.n} pairs of {e.n_all_pairs}" for e in sets)
    note = (f"Same-identity transfer on the validation subjects, two pair protocols (column `protocol`): "
            f"{WHY_PRIMARY}. {counts} (seeded subsample when capped by eval.max_pairs; a pair both protocols "
            f"draw is generated and scored once). PSNR/SSIM: scikit-image on uint8 RGB, data_range=255; SSIM in "
            f"two labelled variants (the paper does not say which). `{fd_col}` and `{kid_col}`: {fd_name} of the "
            f"generated images vs the protocol's real targets"
            + (" computed with the dlib 128-d face descriptor as a STAND-IN for Inception features: "
               "not comparable to the paper's FID column" if fd_name != "FID" else
               ("; FID is biased upward at N < 2048, compare KID" if min(e.n for e in sets) < 2048 else "")) +
            ". KID is unbiased (raw, not x1000). " + REALISM_NOTE +
            " Landmark NME: 68 points re-detected on each image "
            f"({getattr(detector, 'name', type(detector).__name__) if detector else 'not computed'}) vs "
            "the target landmarks / target outer-eye-corner distance; images without a detected face are "
            "counted in `no face found` and left out of the mean. `paper:` columns are printed numbers "
            "(Li, Qi & Sun 2021, Table 5, CK+ at 128 px; their pair protocol is not printed); peers' rows are "
            "the paper's, not run here. Per target expression: table5_per_expression.")
    write_table(folder, name, rows, provenance,
                title=f"Table 5: image quality (ours beside the paper's; primary protocol: {PRIMARY})", note=note)
    return rows


# ----------------------------------------------------------------------------- per expression

SHORT = {"copy source": "copy", "warp to target landmarks": "warp", OURS: "ours"}


def table5_per_expression(evs, cfg, folder, provenance: dict, landmark_error: bool = True, detector=None,
                          name: str = "table5_per_expression", classifier=None) -> list[dict]:
    """The primary protocol's pairs by target expression: one row per expression (and one for all),
    N, then per method "<m>: SSIM (Wang)", "<m>: NME", "<m>: sharpness" and (with `classifier`)
    "<m>: expression acc.", and "real target: NME" (the detector floor) and "real target: expression acc."
    (the classifier's ceiling).
    Scores are the ones Table 5 averaged (computed once). Writes <folder>/<name>.csv|md."""
    sets = {e.protocol: e for e in as_sets(evs)}
    ev = sets.get(PRIMARY) or next(iter(sets.values()))
    if detector is None:
        detector = detector_for(ev, landmark_error)
    ms = [m for m in METHOD_ORDER if m in ev.fakes]
    ssim = {m: pixel_scores(ev, m)["ssim_wang"] for m in ms}
    nme = {m: pair_nme(ev, m, detector) for m in ms} if detector is not None else {}
    if detector is not None:
        nme["real target"] = pair_nme(ev, None, detector)
    sharp = {m: pair_sharpness(ev, m) for m in ms}
    expr = {m: pair_expression(ev, m, classifier) for m in ms} if classifier is not None else {}
    if classifier is not None:
        expr["real target"] = pair_expression(ev, None, classifier)
    labels = np.asarray(ev.target_labels)
    rows = []
    for k in sorted(set(labels.tolist())) + [None]:
        sel = np.ones(ev.n, bool) if k is None else labels == k
        row = {"protocol": ev.protocol, "target expression": "all" if k is None else CLASSES[int(k)],
               "source": THIS_RUN}
        for m in ms:
            row[f"{SHORT.get(m, m)}: SSIM (Wang)"] = _num(ssim[m][sel].mean())
        for m, e in nme.items():
            ok = np.isfinite(e[sel])
            row[f"{SHORT.get(m, m)}: NME"] = _num(e[sel][ok].mean()) if ok.any() else None
            row[f"{SHORT.get(m, m)}: no face"] = int((~ok).sum())
        for m, v in sharp.items():
            ok = np.isfinite(v[sel])
            row[f"{SHORT.get(m, m)}: sharpness"] = _num(v[sel][ok].mean()) if ok.any() else None
        for m, v in expr.items():
            row[f"{SHORT.get(m, m)}: expression acc."] = _num(v[sel].mean())
        row["N"] = int(sel.sum())
        rows.append(row)
    note = (f"The {ev.protocol} pairs of Table 5 ({ev.role} protocol; {ev.n} pairs) by the target's expression: "
            "SSIM (Wang et al.'s Gaussian window) and landmark NME (inter-ocular; `no face`: images where the "
            "detector found none, left out of the mean) of every method; `real target: NME` is the detector's own "
            "error on the real target frames (the floor). Sharpness and expression accuracy as in Table 5 "
            "(`real target: expression acc.`: the classifier's ceiling). N: pairs with that target expression. "
            "The paper prints no per-expression numbers." + ("" if detector is not None else
                                                             " Landmark NME not computed here."))
    write_table(folder, name, rows, provenance, title="Table 5 by target expression (SSIM, landmark NME, realism)",
                note=note)
    return rows
