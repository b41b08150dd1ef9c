"""`bench gpu --finish DIR`: what the device could not compute, computed where dlib is.

Reads DIR/bench_gpu.json and DIR/eval.npz (written by `bench gpu`), then with dlib:
  - landmark NME (inter-ocular; metrics.landmark_error, the kit's detector) of every snapshot's
    images against their target landmarks: the learning curve's NME against wall seconds;
  - landmark NME of the final images of ours, copy source and the warp, and of the real targets
    (the detector floor), with the number of images where no face was found;
  - the realism metrics that need dlib (realism.py's REALISM: FD-dlib and KID-dlib against the real
    targets, and expression accuracy by Table 5's expression-change classifier, trained on the
    training subjects' real frames in eval.npz) of ours, copy source, the warp and the real targets
    (FD 0 and the classifier's ceiling);
  - identity preservation with dlib's ResNet face descriptor: gallery = one real neutral frame per
    validation subject, probes = the final pairs whose source and target are not gallery images
    ("original" = the real targets): Rank-1 and TAR@FAR=1% (%), metrics.identity.
Writes bench_gpu.json (with learning.finished) and summary.md into `out` (default DIR; a
read-only DIR, such as the device tool's download folder, needs --out) and prints the summary.
A folder whose learning check did not finish (no eval.npz, or one without the final images) is
refused with one line naming what is missing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lmexpr_nb.bench.gpu.realism import realism_in_finish
from lmexpr_nb.bench.gpu.summary import JSON_NAME, LOCK_NAME, SUMMARY_NAME, clean, summary_markdown, summary_rows
from lmexpr_nb.common.files import exclusive_lock, write_text
from lmexpr_nb.metrics.identity import identity_summary
from lmexpr_nb.metrics.landmark_error import landmark_error, nme_detector
from lmexpr_nb.metrics.recognisers import DlibRecogniser


def _nme(images, targets, detector) -> dict:
    r = landmark_error(images, targets, detector=detector)
    return {"mean": None if r.mean != r.mean else float(r.mean), "no_face": int(r.n_missing), "n": int(r.n)}


NPZ_KEYS = ("snap_fakes", "snap_pairs", "real", "source", "warp", "ours", "target_landmarks", "target_labels",
            "subjects", "probe_keep", "gallery", "gallery_ids", "train_peaks", "train_peak_labels",
            "train_peak_subjects", "train_neutrals", "train_neutral_subjects")
METHODS = {"our method": "ours", "copy source": "source", "warp to target landmarks": "warp"}


def _partial(folder: Path, res: dict, have: list[str]) -> str | None:
    """One line naming what a bench gpu folder lacks for --finish, or None if it has it all."""
    le = res.get("sections", {}).get("learning", {})
    missing = []
    lacking = [k for k in NPZ_KEYS if k not in have]
    if not have:
        missing.append("eval.npz")
    elif lacking:
        missing.append(f"eval.npz's {', '.join(lacking)}")
    if not le.get("curve"):
        missing.append(f"the learning curve in {JSON_NAME}")
    if not missing:
        return None
    return (f"{folder} holds a partial bench gpu run (learning check: {le.get('status', 'absent')}): it lacks "
            f"{' and '.join(missing)}; nothing to finish")


def finish(folder: Path, out: Path | None = None, say=print) -> dict:
    folder = Path(folder)
    if not (folder / JSON_NAME).is_file():
        raise FileNotFoundError(f"{folder} holds no bench gpu results ({JSON_NAME} and eval.npz): run "
                                "`python -m lmexpr_nb bench gpu --out DIR` first")
    res = json.loads((folder / JSON_NAME).read_text())
    d: dict = {}
    if (folder / "eval.npz").is_file():
        try:
            with np.load(folder / "eval.npz", allow_pickle=False) as z:
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as e:
            raise ValueError(f"{folder / 'eval.npz'} cannot be read ({type(e).__name__}): rerun bench gpu") from None
    why = _partial(folder, res, list(d) if d else [])
    if why:
        raise ValueError(why)
    out = Path(out) if out is not None else folder
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".bench_gpu_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write to {out} ({e.strerror or e}): give --out DIR for the finished results") \
            from None
    with exclusive_lock(out / LOCK_NAME, "bench gpu run"):
        return _finish(res, d, out, say)


def _finish(res: dict, d: dict, out: Path, say) -> dict:
    size = d["real"].shape[1]
    det = nme_detector(size)
    m = int(d["snap_pairs"])
    fin = {"detector": getattr(det, "name", type(det).__name__), "nme": {}, "identity": {}}
    curve = res["sections"]["learning"]["curve"]
    for c, fakes in zip(curve, d["snap_fakes"]):
        c["landmark_nme"] = _nme(fakes, d["target_landmarks"][:m], det)["mean"]
    for name, key in {**METHODS, "real target": "real"}.items():
        fin["nme"][name] = _nme(d[key], d["target_landmarks"], det)
    fin["realism"] = realism_in_finish(d, {**METHODS, "real target": "real"})
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
    write_text(out / JSON_NAME, json.dumps(clean(res), indent=1, allow_nan=False) + "\n")
    md = summary_markdown(res)
    write_text(out / SUMMARY_NAME, md + "\n")
    say(md)
    return res
