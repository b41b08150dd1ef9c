"""Identity preservation (paper Table 6): verification maths in numpy.

Gallery = real images, probes = generated ones (paper: "gallery images are non-transformed
images and probe images are transformed results"). Embeddings are L2-normalised and
compared by cosine similarity (their dot product).

- Rank-1: the fraction of probes whose most similar gallery image has the probe's identity
  (ties: the first gallery index, as argmax).
- Verification pairs: every (probe, gallery image) pair; genuine when the ids agree.
- TAR@FAR by the step-ROC rule, no interpolation. A pair is accepted when its score is
  >= the threshold (sklearn's roc_curve convention). The best threshold at FAR <= f is the
  lowest one that accepts at most k impostors, k = the largest count with k / N_imp <= f;
  that is: accept iff score > s_(k+1), the (k+1)-th highest impostor score. Then
      TAR@FAR=f = #{genuine > s_(k+1)} / N_gen      (= 1 when k = N_imp)
  which equals max(tpr[fpr <= f]) of sklearn.metrics.roc_curve, ties included (a threshold
  equal to a tied impostor score accepts all of the tied scores at once).
- FAR = 0.1% needs >= 1000 impostor pairs to mean anything; below that the summary sets a
  warning (k is then 0: the threshold is the highest impostor score).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from lmexpr_nb.metrics.recognisers import load_recogniser
from lmexpr_nb.metrics.result import MetricResult, eval_config, require

MIN_IMPOSTORS_FOR_FAR_0_1 = 1000


def l2_normalise(x, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got {x.shape}")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def cosine_scores(probes, gallery) -> np.ndarray:
    """(N_probe, N_gallery) cosine similarities."""
    return l2_normalise(probes) @ l2_normalise(gallery).T


def rank1(gallery, gallery_ids, probes, probe_ids) -> float:
    """Fraction of probes whose nearest gallery embedding (cosine) has the same id."""
    s = cosine_scores(probes, gallery)
    gids = np.asarray(gallery_ids)
    pred = gids[np.argmax(s, axis=1)]
    return float(np.mean(pred == np.asarray(probe_ids)))


def verification_scores(gallery, gallery_ids, probes, probe_ids) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine scores over all probe x gallery pairs."""
    s = cosine_scores(probes, gallery)
    same = np.asarray(probe_ids)[:, None] == np.asarray(gallery_ids)[None, :]
    return s[same], s[~same]


def far_threshold(impostor, far: float) -> tuple[float, int]:
    """(t, accepted): the step-ROC threshold for FAR <= far and the impostors it accepts.

    With k the largest count such that k / N_imp <= far, t is the (k+1)-th highest impostor
    score (or -inf when all N_imp may be accepted); a score is accepted iff score > t, which
    accepts at most k impostors (fewer when impostor scores tie at t).
    """
    imp = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    n = imp.size
    if n == 0:
        raise ValueError("no impostor scores: TAR@FAR is undefined")
    counts = np.arange(n + 1)
    k = int(counts[counts / n <= far].max())   # float comparison as roc_curve's fpr <= far
    if k >= n:
        return -np.inf, n
    t = float(imp[k])
    return t, int(np.sum(imp > t))


def tar_at_far(genuine, impostor, far: float) -> float:
    """True accept rate at false accept rate <= far (step ROC, no interpolation)."""
    gen = np.asarray(genuine, dtype=np.float64)
    if gen.size == 0:
        raise ValueError("no genuine scores: TAR is undefined")
    t, _ = far_threshold(impostor, far)
    return float(np.mean(gen > t))


@dataclass
class IdentitySummary:
    rank1: float
    tar_far_1: float         # TAR@FAR=1%
    tar_far_0_1: float       # TAR@FAR=0.1%
    n_probes: int
    n_gallery: int
    n_genuine: int
    n_impostor: int
    far_0_1_warning: bool    # fewer than 1000 impostor pairs: TAR@FAR=0.1% is not meaningful
    message: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def identity_summary(gallery, gallery_ids, probes, probe_ids) -> IdentitySummary:
    gen, imp = verification_scores(gallery, gallery_ids, probes, probe_ids)
    warn = imp.size < MIN_IMPOSTORS_FOR_FAR_0_1
    msg = (f"only {imp.size} impostor pairs (< {MIN_IMPOSTORS_FOR_FAR_0_1}): TAR@FAR=0.1% is not "
           f"meaningful" if warn else "")
    return IdentitySummary(
        rank1=rank1(gallery, gallery_ids, probes, probe_ids),
        tar_far_1=tar_at_far(gen, imp, 0.01), tar_far_0_1=tar_at_far(gen, imp, 0.001),
        n_probes=len(probe_ids), n_gallery=len(gallery_ids), n_genuine=int(gen.size),
        n_impostor=int(imp.size), far_0_1_warning=warn, message=msg)


def identity_metric(*, fake=None, real=None, fake_ids=None, real_ids=None, cfg=None, device="cpu",
                    recognisers=None, **_):
    """Registry entry: Rank-1, TAR@FAR=1%, TAR@FAR=0.1% for each configured recogniser.

    `recognisers` (names or objects with .embed) overrides cfg.recognisers.
    """
    require(dict(fake=fake, real=real, fake_ids=fake_ids, real_ids=real_ids),
            "fake", "real", "fake_ids", "real_ids", metric="identity")
    cfg = eval_config(cfg)
    out = []
    for rec in (recognisers or cfg.recognisers):
        rec = load_recogniser(rec, cfg, device) if isinstance(rec, str) else rec
        g, p = rec.embed(real), rec.embed(fake)
        s = identity_summary(g, real_ids, p, fake_ids)
        extra = dict(s.as_dict(), recogniser=rec.name, **getattr(rec, "last_stats", {}))
        for label, v in (("Rank-1", s.rank1), ("TAR@FAR=1%", s.tar_far_1), ("TAR@FAR=0.1%", s.tar_far_0_1)):
            out.append(MetricResult(f"{label} ({rec.name})", v, s.n_probes, None, "fraction",
                                    rec.provenance, dict(extra)))
    return out
