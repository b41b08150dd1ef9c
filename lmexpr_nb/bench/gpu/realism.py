"""The realism numbers of `bench gpu`'s learning check: the metrics the kit's Table 5 reports beside
PSNR and SSIM, by their names in metrics/registry.py, in ONE tuple, `REALISM`.

Where each is computed follows from the registry: a per-image metric (one with `scores`, such as
"sharpness") is computed on the device, in the learning section, for ours, copy source and the warp
(`realism_on_device`); a metric of whole sets ("fid": FD-dlib and KID-dlib, dlib's face descriptor
standing in for Inception as Table 5 runs it without the Inception weights) needs dlib, which the
device machine lacks, so `bench gpu --finish` computes it from eval.npz (`realism_in_finish`).

eval.npz holds what such a metric can ask for (`finish_inputs` passes it all, by the registry's
input names): the generated faces (fake) and their real targets (real), the source images, the target
landmarks and target expression labels (fake_labels), subject ids (fake_ids, real_ids), and the
training subjects' real peak frames with their labels (train_images, train_labels). A metric that
needs a `classifier` (registry "expression_accuracy") gets one trained there, once, on those frames
of the training subjects only (`expression_classifier`). Adding a metric to the learning check is
adding its registry name to REALISM.
"""
from __future__ import annotations

import numpy as np

from lmexpr_nb.config import EvalConfig
from lmexpr_nb.metrics import registry
from lmexpr_nb.metrics.expression import train_expression_classifier

REALISM = ("sharpness", "fid")
FD_CONFIG = EvalConfig(fid_features="dlib-standin")      # FD-dlib / KID-dlib, named so, never "FID"


def on_device(name: str) -> bool:
    """Is this realism metric computed on the device (per image), or in --finish (whole sets)?"""
    return registry.get(name).scores is not None


def realism_on_device(fake, real, target_landmarks) -> dict:
    """{metric name: {value, std, n, n_images, unit, ...counts}} of REALISM's per-image metrics."""
    out = {}
    for name in REALISM:
        if on_device(name):
            r = registry.summarise(name, registry.scores(name, fake=fake, real=real,
                                                         target_landmarks=target_landmarks))
            out[name] = {"value": r.value, "std": r.std, "n": r.n, "unit": r.unit, **r.extra}
    return out


def expression_classifier(d: dict):
    """The kit's expression classifier (metrics/expression.py), trained on eval.npz's real peak frames
    of the training subjects, seed 0."""
    return train_expression_classifier(d["train_peaks"], d["train_peak_labels"], seed=0)


def finish_inputs(d: dict, fake, classifier=None) -> dict:
    """Every input a registry metric may ask for, from eval.npz's arrays `d`, for the generated set `fake`."""
    return {"fake": fake, "real": d["real"], "target_landmarks": d["target_landmarks"],
            "fake_labels": d["target_labels"], "fake_ids": d["subjects"], "real_ids": d["subjects"],
            "source": d["source"], "train_images": d["train_peaks"], "train_labels": d["train_peak_labels"],
            "classifier": classifier, "cfg": FD_CONFIG, "device": "cpu"}


def realism_in_finish(d: dict, methods: dict) -> dict:
    """{method: {result name: {value, std, n, provenance, ...}}} of REALISM's whole-set metrics, for each
    {method: eval.npz key} of `methods`."""
    names = [n for n in REALISM if not on_device(n)]
    need = any("classifier" in registry.get(n).needs for n in names)
    classifier = expression_classifier(d) if need else None
    out = {}
    for method, key in methods.items():
        row = {}
        for name in names:
            for r in registry.compute(name, **finish_inputs(d, d[key], classifier)):
                row[r.name] = {"value": r.value, "std": r.std, "n": r.n, "provenance": r.provenance,
                               **{k: v for k, v in r.extra.items() if np.isscalar(v)}}
        out[method] = row
    return out
