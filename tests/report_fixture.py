"""A run folder shaped like a smoke run's, for the report tests (no training, no metrics).

Tables 4 and 7 go through the kit's own writers (experiments/table4.py's write_table4,
table7.py's write_table7) with made-up results; Tables 5 and 6 through tables.write_table with
the columns table5_quality / table6_identity write (numbers as unrounded as theirs:
93.1034, -4.82075e-06). Figures are small PNGs under the notebooks' figure names; executed
notebooks are tiny real notebooks with an output, so nbconvert has something to convert.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from lmexpr_nb.common.paper import TABLE5_QUALITY, TABLE6_IDENTITY

PROV = {"dataset": "synthetic", "data": "synthetic (not real faces)", "profile": "smoke",
        "recipe": "lambda_gan=0, lr=0.001",
        "standins": ["VGG19 perceptual loss: random-init stand-in",
                     "FD-dlib (dlib descriptor) in place of Inception FID"]}
FIGURES = ("fig6_preprocessed", "fig9_same_identity", "fig8_landmark_transfer", "fig7_comparison", "masks_m_t",
           "losses", "table7_ablation_samples", "table4_accuracy_vs_factor", "table4_generated_examples",
           "explorer_grid")
NOTEBOOKS = ("00_setup", "01_preprocessing", "02_model", "03_training", "04_qualitative", "05_quality_table",
             "06_identity", "07_ablation", "08_augmentation", "09_explorer")


def _table5(folder):
    from lmexpr_nb.experiments.tables import write_table
    rows = []
    for m, psnr, ssim, fd in (("copy source", 20.9712, 0.714963, 0.0131284), ("warp to target landmarks", 22.2189,
                              0.846138, 0.0219821), ("our method", 19.4512, 0.493107, 0.436977)):
        row = {"method": m, "source": "this run", "PSNR (dB)": psnr, "SSIM (skimage 7x7)": ssim - 0.02,
               "SSIM (Wang, Gaussian 1.5)": ssim, "ours: FD-dlib": fd, "ours: KID-dlib": -4.82075e-06,
               "KID std": 3.1e-05, "landmark NME (inter-ocular)": 0.0831245, "no face found": 0}
        if m == "our method":
            row.update({f"paper: {k}": f"{v:g}" for k, v in TABLE5_QUALITY["our method"].items()})
        long_path = "/home/someone/projects/lmexpr-nb/outputs/smoke/train/checkpoints/last.pt"   # no break points
        row.update(note=f"smoke checkpoint, 200 steps: {long_path}" if m == "our method" else "", N=96)
        if m != "our method":
            row["weights"] = "no model (baseline); FD-dlib: stand-in features"
        rows.append(row)
    rows.append({"method": "real target (detector floor)", "source": "this run", "landmark NME (inter-ocular)": 0.041,
                 "no face found": 0, "note": "dlib on the real target frames", "N": 96, "weights": "no model"})
    for peer, v in TABLE5_QUALITY.items():
        if peer != "our method":
            rows.append({"method": peer, "source": "paper only", **{f"paper: {k}": f"{x:g}" for k, x in v.items()},
                         "N": "not printed", "data": "CK+ (paper)", "profile": "paper", "weights": "paper"})
    write_table(folder, "table5", rows, PROV, title="Table 5: image quality (ours beside the paper's)",
                note="Same-identity transfer on the validation subjects: 96 ordered pairs. `paper:` columns are "
                     "printed numbers (Li, Qi & Sun 2021, Table 5, CK+ at 128 px).")


def _table6(folder):
    from lmexpr_nb.experiments.tables import write_table
    rows = []
    for m, r1, t1, t01 in (("original", 100.0, 93.1034, 70.6897), ("copy source", 100.0, 91.3793, 67.2414),
                           ("warp to target landmarks", 96.5517, 84.4828, 55.1724), ("our method", 35.6322,
                                                                                       12.6437, 2.29885)):
        row = {"recogniser": "dlib", "method": m, "source": "this run", "Rank-1 (%)": r1, "TAR@FAR=1% (%)": t1,
               "TAR@FAR=0.1% (%)": t01, "gallery": 4, "genuine pairs": 87, "impostor pairs": 261,
               "warning": "FAR=0.1% needs >= 1000 impostor pairs; 261 here", "note": "", "N": 87,
               "weights": "dlib ResNet face descriptor"}
        for rec in ("VGG-Face", "Light CNN"):
            vals = TABLE6_IDENTITY.get(m, {}).get(rec)
            for col, v in zip(("Rank-1", "TAR@FAR=1%", "TAR@FAR=0.1%"), vals or (None,) * 3):
                row[f"paper {rec}: {col}"] = None if v is None else f"{v:g}"
        rows.append(row)
    for name in ("lightcnn", "vggface"):
        rows.append({"recogniser": name, "method": "(all)", "source": "skipped", "note": f"skipped: no {name} weights",
                     "N": 0, "weights": "missing"})
    for peer, v in TABLE6_IDENTITY.items():
        if peer not in ("original", "our method"):
            row = {"recogniser": "(paper's)", "method": peer, "source": "paper only", "N": "not printed",
                   "data": "CK+ (paper)", "profile": "paper", "weights": "paper"}
            for rec in ("VGG-Face", "Light CNN"):
                for col, x in zip(("Rank-1", "TAR@FAR=1%", "TAR@FAR=0.1%"), v[rec]):
                    row[f"paper {rec}: {col}"] = f"{x:g}"
            rows.append(row)
    write_table(folder, "table6", rows, PROV, title="Table 6: identity preservation (ours beside the paper's)",
                note="Gallery: one real image per val subject. Values in %.")


def _table4(folder):
    from lmexpr_nb.experiments.table4 import write_table4
    names = ["angry", "happy", "surprise"]
    res = [{"factor": k, "accuracy": a, "accuracy_se": 0.0312, "n_real": 96, "n_generated": 96 * k, "n_val": 64,
            "n_generated_donor": 0, "classes": names, "per_class_accuracy": dict(zip(names, (a, a, None))),
            "per_class_n": dict(zip(names, (32, 32, 0))), "confusion": [[17, 15, 0], [14, 18, 0], [0, 0, 0]],
            "epochs": 15, "seed": 0, "input_size": 32} for k, a in ((0, 0.546875), (1, 0.578125), (2, 0.5625))]
    write_table4(folder, res, dict(PROV, epochs=15, factors="0, 1, 2"), "synthetic")


def _table7(folder):
    from lmexpr_nb.experiments.table7 import write_table7
    res = []
    for s, ei, lp, fd in (("w/o feature initialize network", False, True, 0.512), ("w/o expression label smooth", True,
                          False, 0.498), ("all together", True, True, 0.47713)):
        res.append({"setting": s, "E_ini": ei, "label planes": lp, "steps": 20, "fd_name": "FD-dlib",
                    "kid_name": "KID-dlib", "fd": fd, "kid": 0.0123456, "kid_std": 0.00234, "psnr": 18.91234,
                    "ssim": 0.4123456, "n": 24, "kind": "setting", "kid_subsets": 20, "kid_subset": 20,
                    "metric_provenance": "dlib 128-d descriptor (stand-in)"})
    cfg = SimpleNamespace(train=SimpleNamespace(seed=0, batch_size=8))
    write_table7(folder, res, dict(PROV, steps=20, pairs=24), cfg, 20)


def fake_run(out: Path, failed: str | None = None) -> Path:
    """Write a smoke-run-shaped folder under `out` (see the module doc); returns `out`."""
    import nbformat
    from PIL import Image
    out = Path(out)
    for d in ("tables", "figures", "notebooks"):
        (out / d).mkdir(parents=True, exist_ok=True)
    for t in (_table4, _table5, _table6, _table7):
        t(out / "tables")
    rng = np.random.default_rng(0)
    for f in FIGURES:
        w = 1400 if f in ("losses", "table7_ablation_samples") else 600   # wider than the page: must shrink
        Image.fromarray(rng.integers(0, 255, (200, w, 3), dtype=np.uint8)).save(out / "figures" / f"{f}.png")
    nbs = []
    for name in NOTEBOOKS:
        nb = nbformat.v4.new_notebook()
        nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                       "language_info": {"name": "python"}}
        cell = nbformat.v4.new_code_cell("print('hello from the kit')")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello from the kit\n")]
        nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), cell]
        nbformat.write(nb, str(out / "notebooks" / f"{name}.ipynb"))
        (out / "notebooks" / f"{name}.metrics.json").write_text(json.dumps(
            {name.split("_", 1)[1]: {"values": {}, "provenance": PROV}}))
        status = "failed" if name == failed else "ok"
        nbs.append({"notebook": name, "executed": str(out / "notebooks" / f"{name}.ipynb"), "status": status,
                    "seconds": 12.3, **({"error": "code cell 4: KeyError: 'x'"} if status == "failed" else {})})
    run = {"profile": "smoke", "dataset": "synthetic", "device": "CPU (x86_64)",
           "data_root": "/home/someone/projects/lmexpr-nb/data/synthetic-16x8-seed0/cohn-kanade-images",
           "torch_version": "2.14.1", "kit_version": "0.1.0", "started": "2026-12-01 10:00:00",
           "finished": "2026-12-01 10:12:00", "notebooks": nbs}
    (out / "run.json").write_text(json.dumps(run))
    return out
