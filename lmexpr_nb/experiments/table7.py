"""Table 7 of the paper: the module ablation, trained with one budget and evaluated alike.

Paper, Sec. IV-C and Table 7 (FID on CK+): "w/o feature initialize network" 76.85,
"w/o expression label smooth" 69.48, "all together" 67.69. The two ablations are config
switches of the one generator (ModelConfig.use_feature_init = False: a fixed, non-learned
downsampling in place of E_ini, see nets.FixedDownsample; use_label_planes = False: no
label planes before the decoder), never copies of the code.

    run_ablation(cfg, cache_dir, root, steps)   trains every setting into root/<slug>/
                                                (root = <out>/ablation beside <out>/train),
                                                same steps, seed and data; resumable, and a
                                                finished run is reused without touching it
    evaluate_ablation(runs, cache, cfg, ...)    the same validation pairs for every setting
                                                (and the two free baselines), per pair protocol
                                                (primary neutral-to-expression, then the secondary
                                                all-ordered-pairs; evalset): FID or FD-dlib (named
                                                as reported) with KID and its spread, PSNR and
                                                SSIM for context
    write_table7(folder, results, provenance)   tables/table7.csv|md, the paper's FID beside
    sample_grid(...)                            the settings side by side on a few pairs

Files per setting: root/<slug>/checkpoints/last.pt (train's), root/<slug>/ablation_run.json
(setting, switches, steps, train summary, seconds, whether it was reused).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from lmexpr_nb.common.checkpoint import checkpoint_config, last_checkpoint, load_checkpoint
from lmexpr_nb.common.files import write_json
from lmexpr_nb.common.paper import TABLE7_ABLATION
from lmexpr_nb.common.viz import image_grid
from lmexpr_nb.config import Config
from lmexpr_nb.data.pairs import PROTOCOLS
from lmexpr_nb.experiments.evalset import PRIMARY, WHY_PRIMARY, EvalSet, PairImages, methods, union_pairs
from lmexpr_nb.experiments.table5 import fd_kid, pixel_scores
from lmexpr_nb.experiments.tables import write_table
from lmexpr_nb.metrics import registry
from lmexpr_nb.model.generate import pick_device, synthesize_pairs
from lmexpr_nb.model.trained import load_trained
from lmexpr_nb.train.trainer import train

# setting (as printed in Table 7) -> folder name and ModelConfig switches; paper's row order
SETTINGS: dict[str, dict] = {
    "w/o feature initialize network": {"slug": "no_feature_init", "model": {"use_feature_init": False}},
    "w/o expression label smooth": {"slug": "no_label_planes", "model": {"use_label_planes": False}},
    "all together": {"slug": "all", "model": {}},
}
RUN_FILE = "ablation_run.json"
# train settings that change what is learned: a run made with others is not this budget's run
_TRAIN_KEYS = ("steps", "batch_size", "lr", "beta1", "beta2", "lr_decay_start", "seed")


def ablation_root(train_dir: str | Path) -> Path:
    """<out>/ablation, beside the main run's <out>/train."""
    return Path(train_dir).parent / "ablation"


def setting_config(cfg: Config, setting: str, steps: int | None = None) -> Config:
    """`cfg` with the setting's switches and the budget (train.steps = steps, if given)."""
    if setting not in SETTINGS:
        raise KeyError(f"unknown ablation setting {setting!r}; known: {', '.join(SETTINGS)}")
    base = {"use_feature_init": True, "use_label_planes": True}     # "all together" = the full model
    base.update(SETTINGS[setting]["model"])
    over: dict = {"model": base}
    if steps is not None:
        over["train"] = {"steps": int(steps)}
    return cfg.updated(over)


def switches(model_cfg) -> dict:
    """How a generator config stands on the two Table 7 switches, in words."""
    return {"E_ini": "learned E_ini" if model_cfg.use_feature_init else "fixed downsampling",
            "label planes": "yes" if model_cfg.use_label_planes else "no"}


def _differences(want: Config, have: Config) -> list[str]:
    diffs = []
    for section in ("model", "loss"):
        a, b = getattr(want, section).__dict__, getattr(have, section).__dict__
        diffs += [f"{section}.{k}: {b.get(k)!r} (want {v!r})" for k, v in a.items()
                  if b.get(k) != v and k != "vgg_weights"]       # where the weights file lives does not matter
    diffs += [f"train.{k}: {getattr(have.train, k)!r} (want {getattr(want.train, k)!r})"
              for k in _TRAIN_KEYS if getattr(have.train, k) != getattr(want.train, k)]
    return diffs


def run_state(folder: str | Path, cfg: Config) -> tuple[str, int, list[str]]:
    """("none" | "partial" | "finished" | "different", steps done, differences) of a setting's folder."""
    path = last_checkpoint(folder)
    if not path.is_file():
        return "none", 0, []
    ckpt = load_checkpoint(path)
    done = int(ckpt["step"])
    diffs = _differences(cfg, checkpoint_config(ckpt))
    if diffs:
        return "different", done, diffs
    return ("finished" if done >= cfg.train.steps else "partial"), done, []


def run_ablation(cfg: Config, cache_dir: str | Path, root: str | Path, steps: int | None = None,
                 settings=None, retrain: bool = False, log=print) -> dict[str, dict]:
    """Train every setting with the same budget (`steps`, default cfg.train.steps) and seed.

    A finished run (its last checkpoint has the budget's steps and the same model, loss and
    train settings) is reused as it is: train is not called and no file is written. A partial
    one is resumed from its last checkpoint. A folder holding a run made with other settings
    (another budget, say) is an error unless `retrain`, which deletes that folder and trains
    it again from scratch. Returns {setting: {dir, slug, config, steps, reused, summary, seconds}}.
    """
    steps = int(steps if steps is not None else cfg.train.steps)
    root = Path(root)
    runs = {}
    for setting in (settings or list(SETTINGS)):
        scfg = setting_config(cfg, setting, steps)
        folder = root / SETTINGS[setting]["slug"]
        state, done, diffs = run_state(folder, scfg)
        if state == "different":
            if not retrain:
                raise ValueError(f"{folder} holds a run made with other settings ({'; '.join(diffs)}): "
                                 "give retrain=True to train it again from scratch, or another out_dir")
            log(f"{setting}: removing the run made with other settings ({'; '.join(diffs)})")
            shutil.rmtree(folder)
            state, done = "none", 0
        info_path = folder / RUN_FILE
        if state == "finished":
            info = json.loads(info_path.read_text()) if info_path.is_file() else {}
            info.update(reused=True)
            log(f"{setting}: finished run of {done} steps found in {folder}; reused")
        else:
            log(f"{setting}: training {steps} steps" + (f" (resuming at step {done})" if done else "")
                + f" into {folder}")
            t0 = time.perf_counter()
            summary = train(scfg, cache_dir, folder, resume=True, steps=steps)
            info = {"setting": setting, "slug": SETTINGS[setting]["slug"], "switches": switches(scfg.model),
                    "steps": steps, "seed": scfg.train.seed, "summary": summary,
                    "seconds": round(time.perf_counter() - t0, 1), "resumed_from": done}
            write_json(info_path, info)
            info = dict(info, reused=False)
        runs[setting] = dict(info, dir=str(folder), slug=SETTINGS[setting]["slug"], config=scfg, steps=steps)
    return runs


# ----------------------------------------------------------------------------- evaluation

def _quality(ev, name: str, cfg, device) -> dict:
    """FD/KID (features embedded once per generated image of the union) and PSNR/SSIM of one method
    (setting or baseline) on one protocol's rows."""
    fd, kd = fd_kid(ev, name, cfg, device)
    pix = pixel_scores(ev, name)
    psnr, ssim = registry.summarise("psnr", pix["psnr"]), registry.summarise("ssim_wang", pix["ssim_wang"])
    return {"protocol": ev.protocol, "fd_name": fd.name, "fd": fd.value, "kid_name": kd.name, "kid": kd.value,
            "kid_std": kd.std, "kid_subset": kd.extra.get("subset_size"), "kid_subsets": kd.extra.get("subsets"),
            "psnr": psnr.value, "psnr_std": psnr.std, "ssim": ssim.value, "ssim_std": ssim.std,
            "n": fd.n, "n_real": fd.extra.get("n_real"), "n_all_pairs": ev.n_all_pairs,
            "metric_provenance": fd.provenance}


def evaluate_ablation(runs: dict, cache, cfg: Config, max_pairs: int | None = None, seed: int | None = None,
                      device="auto", baselines: bool = True, protocols=None, log=print) -> dict:
    """Every trained setting (and, with `baselines`, copy-source and the landmark warp) on the
    same validation pairs: same-identity transfer, generated vs real target frame, for each pair
    protocol (evalset: the primary neutral-to-expression first, then all-ordered-pairs). Every
    generator runs once on the union of the protocols' pairs; each protocol scores its rows.

    Returns {"pairs": the primary protocol's (src, tgt), "results": [row dicts, protocol by protocol],
    "fakes": {setting: uint8 images of the primary pairs}, "sets": {protocol: evalset.EvalSet}}.
    """
    max_pairs = cfg.eval.max_pairs if max_pairs is None else max_pairs
    seed = cfg.train.seed if seed is None else seed
    dev = pick_device(cfg.train.device if device == "auto" else device)
    src, tgt, rows, n_all, skipped = union_pairs(cache, protocols or PROTOCOLS, max_pairs, seed, "val")
    for p, why in skipped.items():
        log(f"protocol {p}: skipped ({why})")
    lms, labels = np.asarray(cache.landmarks, np.float32), np.asarray(cache.labels)
    u = PairImages(src, tgt, cache.images[src], np.asarray(cache.images[tgt]), np.asarray(cache.subjects)[tgt],
                   lms[src], lms[tgt], labels[tgt], {}, skipped=skipped, device=str(dev))
    kinds = {}
    for setting, run in runs.items():
        model = load_trained(run["dir"], device=dev)
        u.fakes[setting] = synthesize_pairs(model.generator, cache, src, tgt, model.config.model)
        kinds[setting] = dict(kind="model", steps=run["steps"], **switches(model.config.model))
    if baselines:
        for name, fn in list(methods().items()):
            key = f"baseline: {name}"
            u.fakes[key] = fn(u.source, u.source_landmarks, u.target_landmarks, u.target_labels)
            u.failed[key] = fn.failed
            kinds[key] = {"kind": "baseline", "steps": None, "E_ini": "-", "label planes": "-"}
    sets = {p: EvalSet(p, r, n_all[p], u) for p, r in rows.items()}
    results = []
    for p, ev in sets.items():
        for name, kind in kinds.items():
            q = _quality(ev, name, cfg, str(dev))
            results.append(dict(setting=name, **kind, **q))
            log(f"{p}: {name}: {q['fd_name']} {q['fd']:.4g}, {q['kid_name']} {q['kid']:.4g} +- {q['kid_std']:.2g}")
    first = next(iter(sets.values()))
    return {"pairs": (first.src_idx, first.tgt_idx), "results": results, "fakes": dict(first.fakes), "sets": sets}


# ----------------------------------------------------------------------------- table and figure

def table7_rows(results: list[dict]) -> list[dict]:
    """One row per protocol and setting (paper order) then the baselines, the primary protocol's block
    first; ours named as reported ("ours: FID" or "ours: FD-dlib", as Table 5 does), the paper's FID in
    its own "paper: FID" column beside the primary block (empty where the paper has none)."""
    rows = []
    for r in results:
        fd, kid = r["fd_name"], r["kid_name"]
        protocol = r.get("protocol", PRIMARY)
        row = {"protocol": protocol, "setting": r["setting"], "E_ini": r["E_ini"], "label planes": r["label planes"],
               "steps": r["steps"] if r["steps"] is not None else "-",
               f"ours: {fd}": r["fd"], f"ours: {kid}": r["kid"], "KID std": r["kid_std"],
               "PSNR (dB)": r["psnr"], "SSIM (Wang, Gaussian 1.5)": r["ssim"],
               "paper: FID": TABLE7_ABLATION.get(r["setting"], "") if protocol == PRIMARY else "", "N": r["n"]}
        if r["kind"] == "baseline":
            row["weights"] = "no model (baseline)" + (f"; {fd}: stand-in features" if fd != "FID" else "")
        rows.append(row)
    return rows


def table7_note(results: list[dict], cfg: Config, steps: int) -> str:
    fd = results[0]["fd_name"]
    r0 = results[0]
    per = "; ".join(dict.fromkeys(f"{r.get('protocol', '?')}: {r['n']} of {r.get('n_all_pairs', r['n'])} pairs"
                                  for r in results))
    lines = [
        f"Pair protocols (column `protocol`, same-identity transfer, validation subjects only): {WHY_PRIMARY}. "
        f"{per} (seeded subsample when capped; every generator runs once on the union of the pairs).",
        f"Ours: {fd} and {r0['kid_name']} (KID raw, not x1000; std over {r0['kid_subsets']} subsets of "
        f"{r0['kid_subset']}) of generated vs real target frames, on the same N validation pairs for every row "
        f"of a protocol; PSNR and SSIM (Wang et al. window) for context. "
        f"Every setting trained {steps} steps with seed {cfg.train.seed}, batch {cfg.train.batch_size}, "
        f"on the same cache.",
        f"Features: {r0['metric_provenance']}.",
    ]
    if fd != "FID":
        lines.append(f"{fd} is NOT FID (dlib face-descriptor features stand in for Inception): its values "
                     "are not comparable with the paper's FID column, only with each other.")
    lines.append(f"Paper: FID on CK+ (Table 7). With a budget of {steps} steps"
                 + (" (the paper trains for far longer)" if steps < 10_000 else "")
                 + f", differences between settings smaller than the {r0['kid_name']} std are noise; at "
                 "small budgets they are noise-level in any case. N is small: FD is biased upward at "
                 "small N, compare KID.")
    return " ".join(lines)


def write_table7(folder: str | Path, results: list[dict], provenance: dict, cfg: Config, steps: int):
    rows = table7_rows(results)
    return write_table(folder, "table7", rows, provenance,
                       title=f"Table 7: module ablation ({results[0]['fd_name']}; paper: FID on CK+; primary "
                             f"protocol: {results[0].get('protocol', '')})",
                       note=table7_note(results, cfg, steps))


def sample_grid(cache, evaluation: dict, n: int = 4, footer: str | None = None):
    """Rows = n of the evaluation pairs; columns: source, target, then every setting/baseline."""
    src, tgt = evaluation["pairs"]
    pick = np.linspace(0, len(src) - 1, min(n, len(src))).astype(int)
    names = list(evaluation["fakes"])
    rows = [[cache.images[src[i]], cache.images[tgt[i]]] + [evaluation["fakes"][k][i] for k in names] for i in pick]
    short = {"w/o feature initialize network": "w/o E_ini", "w/o expression label smooth": "w/o label planes",
             "all together": "all together"}
    titles = ["source", "target"] + [short.get(k, k.replace("baseline: ", "baseline:\n")) for k in names]
    return image_grid(rows, col_titles=titles, footer=footer)
