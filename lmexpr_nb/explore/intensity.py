"""Does the explorer's intensity slider visibly change the generated face?

A person who moves the intensity slider 0 -> 1 for happy or surprise must see the mouth change.
`intensity_response` measures exactly that on a trained generator with the explorer's own code
path (state.ExplorerState -> state.generate_states: no donor, no region slider), and notebook
09 records it; the smoke run's test holds it to >= 8 grey levels of 255.
"""
from __future__ import annotations

import numpy as np

from lmexpr_nb.data.frames import neutral_frame, subjects_in
from lmexpr_nb.explore import expressions as ex
from lmexpr_nb.explore.state import ExplorerState, generate_states, source_from_cache

MOUTH = slice(48, 68)


def intensity_response(generator, model_cfg, cache, expressions: ex.ExpressionModel,
                       classes=("happy", "surprise"), split: str = "val", margin: int = 2,
                       device=None) -> dict:
    """How much the generated mouth changes when intensity goes 0 -> 1, per expression.

    For every `split` subject's first neutral frame (data/frames.py's neutral_frame) as the source, the
    face is generated at intensity 0 and 1 of each expression (explorer defaults: no donor, no
    region slider) and the mean absolute difference of the two images is taken, in grey levels
    of 255 over the three channels, inside the mouth's landmark box (points 48-67; the union of
    the box at intensity 0 and at 1, grown by `margin` pixels, clipped to the image).
    Returns {expression: {"mean": over subjects, "min": ..., "per_subject": {subject: value}},
    "n_sources": ..., "box": "mouth points 48-67 (union of intensity 0 and 1), margin px"}."""
    out: dict = {}
    subjects = subjects_in(cache, split)
    sources = [source_from_cache(cache, neutral_frame(cache, s, split)) for s in subjects]
    s_px = int(model_cfg.image_size)
    for name in classes:
        if name not in expressions.available():
            continue
        states = []
        for src in sources:
            base = ExplorerState(generator, model_cfg, expressions, src, expression=name, device=device)
            states += [base.replace(intensity=0.0), base.replace(intensity=1.0)]
        imgs, lms, _ = generate_states(states)
        per = {}
        for i, subj in enumerate(subjects):
            a, b = imgs[2 * i].astype(np.float64), imgs[2 * i + 1].astype(np.float64)
            pts = np.concatenate([lms[2 * i][MOUTH], lms[2 * i + 1][MOUTH]])
            x0, y0 = np.floor(pts.min(0) - margin).astype(int).clip(0, s_px - 1)
            x1, y1 = np.ceil(pts.max(0) + margin).astype(int).clip(0, s_px - 1)
            per[subj] = float(np.abs(a[y0:y1 + 1, x0:x1 + 1] - b[y0:y1 + 1, x0:x1 + 1]).mean())
        vals = list(per.values())
        out[name] = {"mean": float(np.mean(vals)), "min": float(np.min(vals)), "per_subject": per}
    out["n_sources"] = len(sources)
    out["box"] = f"mouth points 48-67 (union of intensity 0 and 1), {margin} px margin"
    return out
