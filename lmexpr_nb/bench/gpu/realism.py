"""The realism numbers of `bench gpu`'s learning check: the metrics the kit's Table 5 reports beside
PSNR and SSIM, by their names in metrics/registry.py, in ONE tuple, `REALISM`.

Where each is computed follows from the registry: a per-image metric that needs no classifier (one
with `scores`, such as "sharpness") is computed on the device, in the learning section, for ours, copy
source and the warp (`realism_on_device`); a metric of whole sets ("fid": FD-dlib and KID-dlib, dlib's
face descriptor standing in for Inception as Table 5 runs it without the Inception weights) or one
that needs a classifier ("expression_correct": its classifier reads dlib landmarks) needs dlib, which
the device machine lacks, so `bench gpu --finish` computes it from eval.npz (`realism_in_finish`),
for each method and for the real targets (the classifier's ceiling).

eval.npz holds what such a metric can ask for (`finish_inputs` passes it all, by the registry's
input names): the generated faces (fake) and their real targets (real), the source images, the target
landmarks and target expression labels (fake_labels), subject ids (fake_ids, real_ids), and the
training subjects' real peak frames with their labels and subjects and one neutral frame per training
subject. A metric that needs a `classifier` (registry "expression_correct") gets Table 5's
expression-change classifier (metrics/expression_change.py), trained there, once, on those real frames
of the training subjects only (`expression_classifier`). Adding a metric to the learning check is
adding its registry name to REALISM.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from lmexpr_nb.config import EvalConfig
from lmexpr_nb.metrics import registry
from lmexpr_nb.metrics.expression_change import train_expression_change_classifier

REALISM = ("sharpness", "fid", "expression_correct")
FD_CONFIG = EvalConfig(fid_features="dlib-standin")      # FD-dlib / KID-dlib, named so, never "FID"


def on_device(name: str) -> bool:
    """Is this realism metric computed on the device (per image, no classifier), or in --finish?"""
    m = registry.get(name)
    return m.scores is not None and "classifier" not in m.needs


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
    """Table 5's expression-change classifier, trained on eval.npz's real frames of the training
    subjects: their peak frames (train_peaks, train_peak_labels, train_peak_subjects), each against
    its subject's neutral frame (train_neutrals, train_neutral_subjects)."""
    peaks, neutrals = d["train_peaks"], d["train_neutrals"]
    frames = SimpleNamespace(
        images=np.concatenate([peaks, neutrals]),
        labels=np.concatenate([d["train_peak_labels"], np.zeros(len(neutrals), np.int64)]),
        subjects=np.concatenate([d["train_peak_subjects"], d["train_neutral_subjects"]]).astype(str),
        split=np.array(["train"] * (len(peaks) + len(neutrals))))
    return train_expression_change_classifier(frames)


def finish_inputs(d: dict, fake, classifier=None) -> dict:
    """Every input a registry metric may ask for, from eval.npz's arrays `d`, for the generated set `fake`."""
    return {"fake": fake, "real": d["real"], "target_landmarks": d["target_landmarks"],
            "fake_labels": d["target_labels"], "fake_ids": d["subjects"], "real_ids": d["subjects"],
            "source": d["source"], "train_images": d["train_peaks"], "train_labels": d["train_peak_labels"],
            "classifier": classifier, "cfg": FD_CONFIG, "device": "cpu"}


def realism_in_finish(d: dict, methods: dict) -> dict:
    """{method: {result name: {value, std, n, provenance, ...}}} of REALISM's whole-set metrics, for each
    {method: eval.npz key} of `methods` (give the real targets too: their row is the classifier's ceiling)."""
    names = [n for n in REALISM if not on_device(n)]
    classifier, skipped = None, {}
    if any("classifier" in registry.get(n).needs for n in names):
        try:
            classifier = expression_classifier(d)
        except ValueError as e:            # no training subject with a neutral and a peak face: a recorded skip
            skipped = {registry.get(n).result_name: {"value": None, "skipped": str(e)}
                       for n in names if "classifier" in registry.get(n).needs}
            names = [n for n in names if "classifier" not in registry.get(n).needs]
    out = {}
    for method, key in methods.items():
        row = dict(skipped)
        for name in names:
            for r in registry.compute(name, **finish_inputs(d, d[key], classifier)):
                row[r.name] = {"value": r.value, "std": r.std, "n": r.n, "provenance": r.provenance,
                               **{k: v for k, v in r.extra.items() if np.isscalar(v)}}
        out[method] = row
    return out
