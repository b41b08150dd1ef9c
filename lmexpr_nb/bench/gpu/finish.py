"""`bench gpu --finish DIR`: what the device could not compute, computed where dlib is.

Reads DIR/bench_gpu.json and DIR/eval.npz (written by `bench gpu`), then with dlib:
  - landmark NME (inter-ocular; metrics.landmark_error, the kit's detector) of every snapshot's
    images against their target landmarks: the learning curve's NME against wall seconds;
  - landmark NME of the final images of ours, copy source and the warp, and of the real targets
    (the detector floor), with the number of images where no face was found;
  - identity preservation with dlib's ResNet face descriptor: gallery = one real neutral frame per
    validation subject, probes = the final pairs whose source and target are not gallery images
    ("original" = the real targets): Rank-1 and TAR@FAR=1% (%), metrics.identity.
Writes bench_gpu.json (with learning.finished) and summary.md into `out` (default DIR; a
read-only DIR, such as the device tool's download folder, needs --out) and prints the summary.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lmexpr_nb.bench.gpu.summary import JSON_NAME, SUMMARY_NAME, clean, summary_markdown, summary_rows
from lmexpr_nb.metrics.identity import identity_summary
from lmexpr_nb.metrics.landmark_error import landmark_error, nme_detector
from lmexpr_nb.metrics.recognisers import DlibRecogniser


def _nme(images, targets, detector) -> dict:
    r = landmark_error(images, targets, detector=detector)
    return {"mean": None if r.mean != r.mean else float(r.mean), "no_face": int(r.n_missing), "n": int(r.n)}


def finish(folder: Path, out: Path | None = None, say=print) -> dict:
    folder = Path(folder)
    if not (folder / JSON_NAME).is_file() or not (folder / "eval.npz").is_file():
        raise FileNotFoundError(f"{folder} holds no bench gpu results ({JSON_NAME} and eval.npz): run "
                                "`python -m lmexpr_nb bench gpu --out DIR` first")
    out = Path(out) if out is not None else folder
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".bench_gpu_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write to {out} ({e.strerror or e}): give --out DIR for the finished results") \
            from None
    res = json.loads((folder / JSON_NAME).read_text())
    with np.load(folder / "eval.npz", allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}
    size = d["real"].shape[1]
    det = nme_detector(size)
    m = int(d["snap_pairs"])
    fin = {"detector": getattr(det, "name", type(det).__name__), "nme": {}, "identity": {}}
    curve = res["sections"]["learning"]["curve"]
    for c, fakes in zip(curve, d["snap_fakes"]):
        c["landmark_nme"] = _nme(fakes, d["target_landmarks"][:m], det)["mean"]
    for name, key in (("our method", "ours"), ("copy source", "source"), ("warp to target landmarks", "warp"),
                      ("real target", "real")):
        fin["nme"][name] = _nme(d[key], d["target_landmarks"], det)
    keep = d["probe_keep"].astype(bool)
    if keep.any() and len(d["gallery_ids"]) >= 2:
        rec = DlibRecogniser()
        g = rec.embed(d["gallery"])
        for name, key in (("original", "real"), ("copy source", "source"), ("warp to target landmarks", "warp"),
                          ("our method", "ours")):
            s = identity_summary(g, d["gallery_ids"], rec.embed(d[key][keep]), d["subjects"][keep])
            fin["identity"][name] = {"rank1": 100 * s.rank1, "tar_far_1": 100 * s.tar_far_1,
                                     "probes": s.n_probes, "gallery": s.n_gallery, "impostors": s.n_impostor,
                                     "warning": s.message}
        fin["identity_recogniser"] = rec.provenance
    else:
        fin["identity"] = {}
        fin["identity_note"] = "skipped: fewer than 2 gallery subjects or no probe free of gallery images"
    res["sections"]["learning"]["finished"] = fin
    res["summary"] = summary_rows(res)
    (out / JSON_NAME).write_text(json.dumps(clean(res), indent=1, allow_nan=False) + "\n")
    md = summary_markdown(res)
    (out / SUMMARY_NAME).write_text(md + "\n")
    say(md)
    return res
