"""The paper's evaluation figures and tables (Sec. IV-C): Figs. 7-9, Tables 5-6, landmark error.

Methods compared, all with ONE call shape (a `Method`):

    method(source uint8 (N,S,S,3), source_landmarks (N,68,2), target_landmarks (N,68,2),
           target_labels (N,)) -> uint8 (N,S,S,3)

    "copy source"               baselines.copy_source: the input face, unchanged
    "warp to target landmarks"  baselines.warp_to_landmarks: piecewise affine warp of the input
    "our method"                the trained generator (generate.synthesize, the checkpoint's model config)

`evaluation_set` runs every method once on the validation pairs (every ordered pair of distinct
frames of one validation subject, PATN's test list; seeded cap `eval.max_pairs`) and keeps the
fakes with the real targets, subject ids and target landmarks; Tables 5 and 6 both read it. With
`store=` it is also written to disk (keyed by the pairs, the images and the generator's weights),
so notebook 06 reuses what 05 generated instead of generating it again.

What each builder writes (under the notebook context's figures/ and tables/):
    figure_same_identity      figures/fig9_same_identity.png     (Fig. 9: input / target / generated)
    figure_landmark_transfer  figures/fig8_landmark_transfer.png (Fig. 8: input / donor / generated)
    figure_comparison         figures/fig7_comparison.png        (Fig. 7: ours vs ground truth vs baselines)
    table5_quality            tables/table5.csv|md  PSNR, both SSIMs, FID or FD-dlib, KID, landmark NME
    table6_identity           tables/table6.csv|md  Rank-1, TAR@FAR=1%, 0.1% per recogniser

Choices (documented here and in the tables' notes):
- Fig. 8 asks the generator for ANOTHER person's landmarks. Raw donor landmarks sit where the
  donor's head was in the donor's crop and have the donor's size; the generator, trained on
  same-person pairs, cannot move or rescale a head. By default the donor's 68 points are mapped
  onto the input face by the similarity transform (rotation, uniform scale, translation; no
  reflection, Umeyama's least squares) fitted on points that expressions hardly move (nose
  27-35, eye corners 36/39/42/45, upper jaw 0/1/15/16). The donor's shape and expression are kept;
  only its placement and size follow the input. `align="none"` uses the raw donor points.
  The target label is the donor frame's label.
- Table 5's FD column is named as the metric reports it: "ours: FID" with the Inception network,
  "ours: FD-dlib" with the stand-in; the paper's FID stays in its own "paper: FID" column, so a
  stand-in number never sits under the paper's heading. The real set of the Frechet distance
  is the pairs' real targets (same N as the fakes).
- Landmark error (inter-ocular NME of dlib landmarks re-detected on each image vs the target
  landmarks) is a column of Table 5, with the number of images where dlib found no face; a
  "real target" row gives the detector's own error on real frames (the floor).
- Table 6: gallery = ONE real image per validation subject (its first neutral frame, by
  sequence then frame); probes = the other frames. "original" probes are the real targets of the
  evaluation pairs; the methods' probes are their outputs for the same pairs. Pairs whose source
  or target is a gallery image are left out for every method, so no probe is (or is copied
  from) its own gallery image: "original" is not 100% by construction, unlike the paper's
  (whose protocol is not printed). Verification pairs are all probe x gallery pairs: one genuine
  per probe, (subjects - 1) impostors per probe; fewer than 1000 impostors flags TAR@FAR=0.1%.
  Numbers are percentages, like the paper's.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import generate
from .baselines import copy_source, warp_to_landmarks
from .data.records import CLASSES
from .io import atomic_path
from .metrics.landmark_error import default_detector
from .paper import TABLE5_QUALITY, TABLE6_COLUMNS, TABLE6_IDENTITY
from .tables import write_table

OURS = "our method"
COPY = "copy source"
WARP = "warp to target landmarks"
METHOD_ORDER = (COPY, WARP, OURS)
PAPER_ONLY = "paper only"
THIS_RUN = "this run"
# points that expressions hardly move: nose (27-35), eye corners, upper jaw
STABLE_POINTS = (0, 1, 15, 16, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
RECOGNISER_WEIGHTS = {"lightcnn": ("lightcnn29v2", "lightcnn_weights"), "vggface": ("vggface", "vggface_weights")}
PAPER_RECOGNISERS = ("VGG-Face", "Light CNN")

Method = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


class NoTrainedModel(RuntimeError):
    """No checkpoint to evaluate: run 03_training first."""


# ----------------------------------------------------------------------------- methods

class BaselineMethod:
    """A per-image baseline (baselines.py signature) as a batched Method. A warp that fails on
    a degenerate triangulation returns the source image and is counted in `failures`."""

    def __init__(self, fn):
        self.fn = fn
        self.failures = 0

    def __call__(self, source, source_landmarks, target_landmarks, target_labels=None) -> np.ndarray:
        out = np.empty_like(np.asarray(source))
        for i in range(len(out)):
            try:
                out[i] = self.fn(source[i], source_landmarks[i], target_landmarks[i])
            except RuntimeError:
                out[i] = source[i]
                self.failures += 1
        return out


def generator_method(G, batch_size: int = 32) -> Method:
    """The generator as a Method (its own model config, its own device)."""
    def ours(source, source_landmarks, target_landmarks, target_labels):
        return generate.synthesize(G, source, source_landmarks, target_landmarks, target_labels, G.cfg,
                                   batch_size=batch_size)
    return ours


def methods(G=None, batch_size: int = 32) -> dict[str, Method]:
    """{name: Method} in table order: the two baselines, then ours when a generator is given."""
    out: dict[str, Method] = {COPY: BaselineMethod(copy_source), WARP: BaselineMethod(warp_to_landmarks)}
    if G is not None:
        out[OURS] = generator_method(G, batch_size)
    return out


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


# ----------------------------------------------------------------------------- the evaluation set

@dataclass
class EvalSet:
    """Every method's output on the same validation pairs, and what the tables need beside it."""
    src_idx: np.ndarray
    tgt_idx: np.ndarray
    source: np.ndarray               # uint8 (N,S,S,3)
    real: np.ndarray                 # real targets, uint8 (N,S,S,3)
    ids: np.ndarray                  # subject of each pair
    target_landmarks: np.ndarray     # (N,68,2)
    target_labels: np.ndarray        # (N,)
    fakes: dict[str, np.ndarray]     # method -> uint8 (N,S,S,3)
    weights: str = ""                # the generator's weights (checkpoint, step)
    n_all_pairs: int = 0             # validation pairs before the cap
    notes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    reused: bool = False             # loaded from `store`
    device: str = "cpu"              # where the generator ran; the tables' networks run there too

    @property
    def n(self) -> int:
        return len(self.src_idx)


def _digest(*arrays) -> str:
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _model_digest(G) -> str:
    if G is None:
        return "none"
    return _digest(*[t.detach().cpu().numpy() for t in G.state_dict().values()])


def evaluation_set(cache, G=None, *, max_pairs: int = 0, seed: int = 0, split: str = "val", weights: str = "",
                   store: str | Path | None = None, batch_size: int = 32, log=print) -> EvalSet:
    """Run every method once on the `split` pairs (seeded cap `max_pairs`, 0 = all).
    `store`: an .npz path; reused when it holds the same pairs, images and generator weights."""
    src, tgt = generate.evaluation_pairs(cache, split, 0, seed)
    n_all = len(src)
    if 0 < max_pairs < n_all:
        src, tgt = generate.evaluation_pairs(cache, split, max_pairs, seed)
    images, lms = cache.images, np.asarray(cache.landmarks, np.float32)
    labels, subjects = np.asarray(cache.labels), np.asarray(cache.subjects).astype(str)
    ev = EvalSet(src, tgt, images[src], images[tgt], subjects[tgt], lms[tgt], labels[tgt], {}, weights, n_all,
                 device=str(next(G.parameters()).device) if G is not None else "cpu")
    fns = methods(G, batch_size)
    key = _digest(src, tgt, ev.source, ev.real, lms[src], ev.target_landmarks, ev.target_labels,
                  np.frombuffer(("|".join(fns) + _model_digest(G)).encode(), np.uint8))
    if store is not None and Path(store).is_file():
        with np.load(store, allow_pickle=False) as z:
            if str(z["key"]) == key:
                ev.fakes = {m: z[f"fake_{i}"] for i, m in enumerate(fns)}
                ev.notes = dict(zip(z["note_keys"].tolist(), z["note_values"].tolist()))
                ev.reused = True
                log(f"reusing the {ev.n} generated validation pairs in {store}")
                return ev
    if ev.n > 2000 and ev.device == "cpu":
        log(f"{ev.n} pairs on the CPU: this takes a while (set eval.max_pairs, or the notebook's max_pairs, to cap)")
    for name, fn in fns.items():
        t0 = time.perf_counter()
        ev.fakes[name] = fn(ev.source, lms[src], ev.target_landmarks, ev.target_labels)
        ev.seconds[name] = round(time.perf_counter() - t0, 2)
        if getattr(fn, "failures", 0):
            ev.notes[name] = f"{fn.failures} of {ev.n} warps failed (degenerate triangles): source image used"
    log(f"{ev.n} validation pairs (of {n_all}), seconds per method: {ev.seconds}")
    if store is not None:
        with atomic_path(store) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(key), note_keys=np.array(list(ev.notes), dtype=str),
                         note_values=np.array(list(ev.notes.values()), dtype=str),
                         **{f"fake_{i}": ev.fakes[m] for i, m in enumerate(fns)})
    return ev


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
    expression. Returns (figure, {"subjects", "columns"})."""
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
    fig.suptitle("Fig. 9 style: same identity (input / target / generated)", fontsize=9, y=1.0)
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
    """(neutral source, peak target) pairs of the same subject; subjects and expressions cycle
    (column i: subject i mod n, expression i mod its count), so the columns show different expressions."""
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
    fig.suptitle("Fig. 7 style: generated vs ground truth vs baselines", fontsize=9, y=1.0)
    return _save(fig, path), pairs


# ----------------------------------------------------------------------------- Table 5

def _num(v):
    """A plain float (the table writer formats it: CSV 6 significant digits, Markdown 4)."""
    return None if v is None else float(v)


def table5_quality(ev: EvalSet, cfg, folder, provenance: dict, device=None, landmark_error: bool = True,
                   name: str = "table5") -> list[dict]:
    """Table 5 (CK+: PSNR, SSIM, FID) for each method of `ev`, our numbers beside the paper's.

    Writes <folder>/table5.csv and .md; returns the rows. Columns: PSNR (dB), both SSIM variants,
    "ours: FID" or "ours: FD-dlib" (as the metric names itself) and KID, landmark NME, then
    "paper: PSNR / SSIM / FID" (the paper's "our method" beside ours; its three peers as
    "paper only" rows). See the module doc for the choices."""
    from .metrics import compute, eval_config
    ecfg = eval_config(cfg)
    device = ev.device if device is None else str(device)
    rows, fd_col, kid_col = [], None, None
    detector = default_detector(ev.real.shape[1]) if landmark_error else None   # loaded once for every row
    for m in [m for m in METHOD_ORDER if m in ev.fakes]:
        fake = ev.fakes[m]
        pixel = compute("psnr", fake=fake, real=ev.real) + compute("ssim", fake=fake, real=ev.real)
        fd, kd = compute("fid", fake=fake, real=ev.real, cfg=ecfg, device=device)
        fd_col, kid_col = f"ours: {fd.name}", f"ours: {kd.name}"
        row = {"method": m, "source": THIS_RUN}
        row.update({f"{r.name} (dB)" if r.unit == "dB" else r.name: _num(r.value) for r in pixel})
        row.update({fd_col: _num(fd.value), kid_col: _num(kd.value), "KID std": _num(kd.std)})
        identical = sum(int(r.extra.get("n_identical", 0)) for r in pixel)
        if landmark_error:
            row.update(_nme(fake, ev.target_landmarks, detector))
        if m == OURS:
            row.update(_paper5("our method"))
        row["note"] = "; ".join(x for x in (ev.notes.get(m, ""), "" if m != OURS else ev.weights,
                                            f"{identical} pairs identical to the target (PSNR inf)" if identical
                                            else "") if x)
        row["N"] = ev.n
        if m != OURS:
            row["weights"] = "no model (baseline)" + (f"; {fd.name}: stand-in features" if fd.name != "FID" else "")
        rows.append(row)
    if landmark_error:
        rows.append({"method": "real target (detector floor)", "source": THIS_RUN,
                     **_nme(ev.real, ev.target_landmarks, detector),
                     "note": "dlib on the real target frames: the error of the detector itself",
                     "N": ev.n, "weights": "no model"})
    for peer in TABLE5_QUALITY:
        if peer != "our method":
            rows.append({"method": peer, "source": PAPER_ONLY, **_paper5(peer), "N": "not printed",
                         "data": "CK+ (paper)", "profile": "paper", "weights": "paper"})
    fd_name = fd_col.split(": ", 1)[1] if fd_col else "FID"
    note = (f"Same-identity transfer on the validation subjects: {ev.n} ordered pairs of distinct frames of one "
            f"subject (of {ev.n_all_pairs}; seeded subsample when capped by eval.max_pairs). "
            f"PSNR/SSIM: scikit-image on uint8 RGB, data_range=255; SSIM in two labelled variants (the paper "
            f"does not say which). `{fd_col}` and `{kid_col}`: {fd_name} of the generated images vs the real "
            f"targets" + (" computed with the dlib 128-d face descriptor as a STAND-IN for Inception features: "
                          "not comparable to the paper's FID column" if fd_name != "FID" else
                          ("; FID is biased upward at N < 2048, compare KID" if ev.n < 2048 else "")) +
            ". KID is unbiased (raw, not x1000). Landmark NME: 68 points re-detected on each image "
            f"({getattr(detector, 'name', type(detector).__name__) if detector else 'not computed'}) vs "
            "the target landmarks / target outer-eye-corner distance; images without a detected face are "
            "counted in `no face found` and left out of the mean. `paper:` columns are printed numbers "
            "(Li, Qi & Sun 2021, Table 5, CK+ at 128 px); peers' rows are the paper's, not run here.")
    write_table(folder, name, rows, provenance, title="Table 5: image quality (ours beside the paper's)", note=note)
    return rows


def _nme(images, target_landmarks, detector) -> dict:
    from .metrics.landmark_error import landmark_error
    r = landmark_error(images, target_landmarks, detector=detector)
    return {"landmark NME (inter-ocular)": _num(r.mean), "no face found": r.n_missing}


def _paper5(method: str) -> dict:
    p = TABLE5_QUALITY[method]
    return {f"paper: {k}": _printed(p[k]) for k in ("PSNR", "SSIM", "FID")}


def _printed(v) -> str | None:
    """The paper's number as text with its printed digits (the Markdown writer would cut 23.004 to 23)."""
    return None if v is None else f"{v:g}"


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


def table6_identity(ev: EvalSet, cache, cfg, folder, provenance: dict, device=None,
                    optional=("lightcnn", "vggface"), split: str = "val", recognisers=None, log=print,
                    name: str = "table6") -> list[dict]:
    """Table 6 (identity preservation): Rank-1, TAR@FAR=1%, TAR@FAR=0.1% (%) per recogniser for
    "original" (real probes), the baselines and ours, the paper's VGG-Face / Light CNN numbers
    beside. Recognisers: cfg.eval.recognisers (must load) plus `optional` ones, shown as skipped
    rows with the reason when their weights are not here. `recognisers` (list of (name, object))
    replaces both (tests). Writes <folder>/table6.csv and .md; returns the rows."""
    from .metrics import eval_config
    from .metrics.identity import identity_summary
    ecfg = eval_config(cfg)
    proto = identity_protocol(ev, cache, split)
    keep, gal = proto["keep"], proto["gallery"]
    probe_sets = {"original": ev.real[keep], **{m: ev.fakes[m][keep] for m in METHOD_ORDER if m in ev.fakes}}
    recs = ([(n, r, "") for n, r in recognisers] if recognisers is not None
            else _recognisers(ecfg, optional, ev.device if device is None else str(device), log))
    rows, fallbacks = [], {}
    for rec_name, rec, reason in recs:
        if rec is None:
            rows.append({"recogniser": rec_name, "method": "(all)", "source": "skipped",
                         "note": f"skipped: {reason}", "N": 0, "weights": "missing"})
            continue
        embed, stats = _memo_embedder(rec)
        g = embed(cache.images[gal])
        for m, probes in probe_sets.items():
            s = identity_summary(g, proto["gallery_ids"], embed(probes), proto["probe_ids"])
            rows.append({"recogniser": rec_name, "method": m, "source": THIS_RUN,
                         "Rank-1 (%)": 100 * s.rank1, "TAR@FAR=1% (%)": 100 * s.tar_far_1,
                         "TAR@FAR=0.1% (%)": 100 * s.tar_far_0_1, "gallery": s.n_gallery,
                         "genuine pairs": s.n_genuine, "impostor pairs": s.n_impostor,
                         "warning": s.message, **_paper6(m if m in ("original", OURS) else None),
                         "note": ev.weights if m == OURS else ev.notes.get(m, ""), "N": s.n_probes,
                         "weights": getattr(rec, "provenance", rec_name)})
        fallbacks[rec_name] = dict(stats)
    for peer in TABLE6_IDENTITY:
        if peer not in ("original", OURS):
            rows.append({"recogniser": "(paper's)", "method": peer, "source": PAPER_ONLY, **_paper6(peer),
                         "N": "not printed", "data": "CK+ (paper)", "profile": "paper", "weights": "paper"})
    fb = "; ".join(f"{k}: {v['whole_image_box']} of {v['embedded']} distinct images had no detected face "
                   f"(whole crop used as the face box)" for k, v in fallbacks.items() if v["whole_image_box"])
    note = (f"Gallery: one real image per {split} subject (its first neutral frame), {len(gal)} images. Probes: "
            f"the {int(keep.sum())} evaluation pairs (of {ev.n}) whose source and target are not gallery images; "
            f"'original' = the real target frames, the methods = their outputs for the same pairs. Scores: cosine "
            f"of L2-normalised embeddings; every probe x gallery pair is a verification pair; TAR@FAR by the "
            f"step ROC (no interpolation). FAR=0.1% needs >= 1000 impostor pairs (see `warning`). Values in %. "
            f"Recognisers here: {', '.join(n for n, r, _ in recs if r is not None) or 'none'} (see `weights`); "
            f"the `paper VGG-Face:` / `paper Light CNN:` columns are the paper's printed numbers with ITS "
            f"recognisers on CK+ (its gallery/probe protocol is not printed; its 'original' Rank-1 of 100 "
            f"suggests probes included the gallery images), not comparable number for number."
            + (f" {fb}." if fb else ""))
    write_table(folder, name, rows, provenance, title="Table 6: identity preservation (ours beside the paper's)",
                note=note)
    return rows


# ----------------------------------------------------------------------------- numbers for save_metrics

def numbers(rows: list[dict], keys=("recogniser", "method")) -> dict:
    """{"<recogniser>/<method>": {column: number}} of this run's rows, for ctx.save_metrics
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
