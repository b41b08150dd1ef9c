"""The evaluation set of Tables 5-7: the methods, the pair protocols and the generated images.

Methods compared, all with ONE call shape (a `Method`):

    method(source uint8 (N,S,S,3), source_landmarks (N,68,2), target_landmarks (N,68,2),
           target_labels (N,)) -> uint8 (N,S,S,3)

    "copy source"               baselines.copy_source: the input face, unchanged
    "warp to target landmarks"  baselines.warp_to_landmarks: piecewise affine warp of the input
    "our method"                the trained generator (model/generate.py's synthesize, the checkpoint's model config)

Pair protocols (data.pairs.protocol_pairs), both on the validation subjects only:

    neutral-to-expression  PRIMARY. Source = one of the subject's neutral frames (the first frames
                           of its sequences), target = a peak frame of one of its expression
                           sequences: the paper's Fig. 9 task (a neutral face given a new
                           expression). Every such pair; a seeded subsample when capped.
    all-ordered-pairs      SECONDARY. Every ordered pair of distinct frames of one subject (PATN's
                           test list). About a quarter are neutral -> neutral and many are
                           near-duplicate frames of one sequence, so copy-source looks strong and
                           PSNR/SSIM/FID are flattered; kept as a labelled second block of rows.

`evaluation_sets` draws each protocol's pairs (seeded cap `max_pairs` per protocol, 0 = all),
runs every method ONCE on the union of the pair lists (a pair that two protocols share is
generated once, and its per-image scores are computed once: `PairImages.cached`), and returns
one `EvalSet` per protocol, a view of the shared images. With `store=` the generated images are
also written to disk (keyed by the pairs, the images and the generator's weights), so notebook 06
reuses what 05 generated. A protocol without pairs (no neutral frames in the split, say) is left
out and its reason recorded in `PairImages.skipped`; no pair at all is an error.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np

from lmexpr_nb.common.files import atomic_path
from lmexpr_nb.data.pairs import PROTOCOLS, evaluation_pairs
from lmexpr_nb.experiments.baselines import copy_source, warp_to_landmarks
from lmexpr_nb.model.generate import synthesize

OURS = "our method"
COPY = "copy source"
WARP = "warp to target landmarks"
METHOD_ORDER = (COPY, WARP, OURS)
PRIMARY, SECONDARY = PROTOCOLS          # "neutral-to-expression", "all-ordered-pairs"
ROLE = {PRIMARY: "primary", SECONDARY: "secondary"}
WHY_PRIMARY = ("neutral-to-expression is the primary protocol (the paper's Fig. 9 task: a neutral input, a "
               "target of another expression of the same person); all-ordered-pairs (PATN's list) is secondary: "
               "about a quarter of its pairs are neutral -> neutral and many are near-duplicate frames of one "
               "sequence, which flatters copy-source and PSNR/SSIM/FID")

Method = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------- methods

class BaselineMethod:
    """A per-image baseline (baselines.py signature) as a batched Method. A warp that fails on
    a degenerate triangulation returns the source image; `failed` marks those rows of the last call
    and `failures` counts them over all calls."""

    def __init__(self, fn):
        self.fn = fn
        self.failures = 0
        self.failed = np.zeros(0, bool)

    def __call__(self, source, source_landmarks, target_landmarks, target_labels=None) -> np.ndarray:
        out = np.empty_like(np.asarray(source))
        self.failed = np.zeros(len(out), bool)
        for i in range(len(out)):
            try:
                out[i] = self.fn(source[i], source_landmarks[i], target_landmarks[i])
            except RuntimeError:
                out[i] = source[i]
                self.failed[i] = True
        self.failures += int(self.failed.sum())
        return out


def generator_method(G, batch_size: int = 32) -> Method:
    """The generator as a Method (its own model config, its own device)."""
    def ours(source, source_landmarks, target_landmarks, target_labels):
        return synthesize(G, source, source_landmarks, target_landmarks, target_labels, G.cfg, batch_size=batch_size)
    return ours


def methods(G=None, batch_size: int = 32) -> dict[str, Method]:
    """{name: Method} in table order: the two baselines, then ours when a generator is given."""
    out: dict[str, Method] = {COPY: BaselineMethod(copy_source), WARP: BaselineMethod(warp_to_landmarks)}
    if G is not None:
        out[OURS] = generator_method(G, batch_size)
    return out


# ----------------------------------------------------------------------------- pairs of the protocols

def union_pairs(cache, protocols=PROTOCOLS, max_pairs: int = 0, seed: int = 0, split: str = "val"):
    """(src, tgt, {protocol: rows into (src, tgt)}, {protocol: pairs before the cap}, {protocol: skip reason}).

    Each protocol's pairs are drawn by data.pairs.evaluation_pairs (seeded cap per protocol);
    the union keeps the first protocol's pairs in order, then the others' new pairs."""
    protocols = list(dict.fromkeys(protocols))
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"unknown pair protocol(s) {unknown or protocols}; known: {', '.join(PROTOCOLS)}")
    where: dict[tuple[int, int], int] = {}
    src, tgt, rows, n_all, skipped = [], [], {}, {}, {}
    for p in protocols:
        s_all, _ = evaluation_pairs(cache, split, 0, seed, protocol=p)
        if len(s_all) == 0:
            skipped[p] = (f"no {p} pairs among the {split} frames"
                          + (" (no neutral frame, or no expression frame, of one subject)" if p == PRIMARY else ""))
            continue
        n_all[p] = len(s_all)
        s, t = evaluation_pairs(cache, split, max_pairs, seed, protocol=p)
        r = []
        for a, b in zip(s.tolist(), t.tolist()):
            if (a, b) not in where:
                where[(a, b)] = len(src)
                src.append(a), tgt.append(b)
            r.append(where[(a, b)])
        rows[p] = np.asarray(r, np.int64)
    if not rows:
        raise ValueError(f"no evaluation pairs in the {split} split: {'; '.join(skipped.values())}")
    return np.asarray(src, np.int64), np.asarray(tgt, np.int64), rows, n_all, skipped


# ----------------------------------------------------------------------------- the generated images

@dataclass
class PairImages:
    """Every method's output on the union of the protocols' pairs, and what the tables need beside it."""
    src_idx: np.ndarray
    tgt_idx: np.ndarray
    source: np.ndarray               # uint8 (U,S,S,3)
    real: np.ndarray                 # real targets, uint8 (U,S,S,3)
    ids: np.ndarray                  # subject of each pair
    source_landmarks: np.ndarray     # (U,68,2)
    target_landmarks: np.ndarray     # (U,68,2)
    target_labels: np.ndarray        # (U,)
    fakes: dict[str, np.ndarray]     # method -> uint8 (U,S,S,3)
    failed: dict[str, np.ndarray] = field(default_factory=dict)   # method -> bool (U,): baseline fell back
    weights: str = ""                # the generator's weights (checkpoint, step)
    seconds: dict[str, float] = field(default_factory=dict)
    reused: bool = False             # loaded from `store`
    device: str = "cpu"              # where the generator ran; the tables' networks run there too
    skipped: dict[str, str] = field(default_factory=dict)   # protocol -> why it has no pairs
    memo: dict = field(default_factory=dict, repr=False)    # per-image scores, see `cached`

    @property
    def n(self) -> int:
        return len(self.src_idx)

    def cached(self, key, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """A per-image score array over the union (e.g. ("psnr", method)), computed once."""
        if key not in self.memo:
            self.memo[key] = np.asarray(compute())
        return self.memo[key]


@dataclass
class EvalSet:
    """One protocol's pairs: a view (`rows`) of the shared PairImages."""
    protocol: str
    rows: np.ndarray
    n_all_pairs: int                 # this protocol's validation pairs before the cap
    union: PairImages = field(repr=False)

    @property
    def n(self) -> int:
        return len(self.rows)

    @property
    def role(self) -> str:
        return ROLE.get(self.protocol, "")

    def _take(self, a: np.ndarray) -> np.ndarray:
        return a[self.rows]

    @cached_property
    def src_idx(self) -> np.ndarray:
        return self._take(self.union.src_idx)

    @cached_property
    def tgt_idx(self) -> np.ndarray:
        return self._take(self.union.tgt_idx)

    @cached_property
    def source(self) -> np.ndarray:
        return self._take(self.union.source)

    @cached_property
    def real(self) -> np.ndarray:
        return self._take(self.union.real)

    @cached_property
    def ids(self) -> np.ndarray:
        return self._take(self.union.ids)

    @cached_property
    def source_landmarks(self) -> np.ndarray:
        return self._take(self.union.source_landmarks)

    @cached_property
    def target_landmarks(self) -> np.ndarray:
        return self._take(self.union.target_landmarks)

    @cached_property
    def target_labels(self) -> np.ndarray:
        return self._take(self.union.target_labels)

    @cached_property
    def fakes(self) -> dict[str, np.ndarray]:
        return {m: self._take(a) for m, a in self.union.fakes.items()}

    @property
    def weights(self) -> str:
        return self.union.weights

    @property
    def device(self) -> str:
        return self.union.device

    @property
    def reused(self) -> bool:
        return self.union.reused

    @property
    def seconds(self) -> dict[str, float]:
        return self.union.seconds

    @property
    def notes(self) -> dict[str, str]:
        """method -> what went wrong on this protocol's pairs (failed warps)."""
        out = {}
        for m, f in self.union.failed.items():
            k = int(np.asarray(f)[self.rows].sum())
            if k:
                out[m] = f"{k} of {self.n} warps failed (degenerate triangles): source image used"
        return out

    def scores(self, key, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """This protocol's rows of a per-image score over the union (computed once for all protocols)."""
        return self.union.cached(key, compute)[self.rows]


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


def evaluation_sets(cache, G=None, *, protocols=PROTOCOLS, max_pairs: int = 0, seed: int = 0,
                    split: str = "val", weights: str = "", store: str | Path | None = None,
                    batch_size: int = 32, log=print) -> dict[str, EvalSet]:
    """{protocol: EvalSet} in `protocols` order (the primary first by default); every method runs once
    on the union of the pairs. `store`: an .npz path, reused when it holds the same pairs, images and
    generator weights. See the module doc."""
    src, tgt, rows, n_all, skipped = union_pairs(cache, protocols, max_pairs, seed, split)
    images, lms = cache.images, np.asarray(cache.landmarks, np.float32)
    labels, subjects = np.asarray(cache.labels), np.asarray(cache.subjects).astype(str)
    u = PairImages(src, tgt, images[src], images[tgt], subjects[tgt], lms[src], lms[tgt], labels[tgt], {},
                   weights=weights, skipped=skipped,
                   device=str(next(G.parameters()).device) if G is not None else "cpu")
    sets = {p: EvalSet(p, r, n_all[p], u) for p, r in rows.items()}
    for p, why in skipped.items():
        log(f"protocol {p}: skipped ({why})")
    fns = methods(G, batch_size)
    key = _digest(src, tgt, u.source, u.real, u.source_landmarks, u.target_landmarks, u.target_labels,
                  np.frombuffer(("|".join(fns) + _model_digest(G)).encode(), np.uint8))
    if store is not None and Path(store).is_file():
        with np.load(store, allow_pickle=False) as z:
            if "key" in z.files and str(z["key"]) == key:
                u.fakes = {m: z[f"fake_{i}"] for i, m in enumerate(fns)}
                u.failed = {m: z[f"failed_{i}"] for i, m in enumerate(fns) if f"failed_{i}" in z.files}
                u.reused = True
                log(f"reusing the {u.n} generated validation pairs in {store}")
                return sets
    if u.n > 2000 and u.device == "cpu":
        log(f"{u.n} pairs on the CPU: this takes a while (set eval.max_pairs, or the notebook's max_pairs, to cap)")
    for name, fn in fns.items():
        t0 = time.perf_counter()
        u.fakes[name] = fn(u.source, u.source_landmarks, u.target_landmarks, u.target_labels)
        u.seconds[name] = round(time.perf_counter() - t0, 2)
        if isinstance(fn, BaselineMethod):
            u.failed[name] = fn.failed
    log(f"{u.n} validation pairs generated for " + ", ".join(f"{p} ({s.n} of {s.n_all_pairs})"
                                                              for p, s in sets.items())
        + f"; seconds per method: {u.seconds}")
    if store is not None:
        with atomic_path(store) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, key=np.array(key), **{f"fake_{i}": u.fakes[m] for i, m in enumerate(fns)},
                         **{f"failed_{i}": u.failed[m] for i, m in enumerate(fns) if m in u.failed})
    return sets


def evaluation_set(cache, G=None, *, protocol: str = PRIMARY, **kw) -> EvalSet:
    """One protocol's EvalSet (default the primary, neutral-to-expression); see evaluation_sets."""
    sets = evaluation_sets(cache, G, protocols=(protocol,), **kw)
    if protocol not in sets:
        raise ValueError(f"no {protocol} pairs in the {kw.get('split', 'val')} split")
    return sets[protocol]


def as_sets(evs) -> list[EvalSet]:
    """An EvalSet, a list of them or a {protocol: EvalSet} dict -> a list, primary first."""
    if isinstance(evs, EvalSet):
        return [evs]
    evs = list(evs.values()) if isinstance(evs, dict) else list(evs)
    order = {p: i for i, p in enumerate(PROTOCOLS)}
    return sorted(evs, key=lambda e: order.get(e.protocol, len(order)))
