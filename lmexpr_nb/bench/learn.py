"""`python -m lmexpr_nb bench learn`: how fast does a training recipe learn the task?

A recipe is a profile (default: smoke) plus `--set section.key=value` overrides. It is trained
on the TRAINING subjects of a synthetic dataset made with a separate seed (default synth seed 1,
not the smoke run's seed 0), so choosing a recipe never looks at the subjects the kit reports
on. At several points of a wall-time budget the generator is evaluated on that dataset's
validation subjects, on the task itself: neutral -> expression pairs of one subject
(data.pairs.neutral_expression_pairs; a seeded subset of `--pairs`), against the two baselines
(copy the source; warp it to the target landmarks). Measured per point:

    PSNR, SSIM (Wang)      against the real target frame
    NME                    inter-ocular error of dlib landmarks re-detected on the output vs the
                           target landmarks (metrics.landmark_error, the kit's detector)
    face found             fraction of outputs where dlib finds a face at all
    identity               mean cosine of the output's dlib descriptor to its subject's neutral frame
    Rank-1                 the output's nearest subject (gallery: one neutral frame per subject)
    sharpness              Laplacian variance of the output over the target's landmark hull / the real
                           target's (metrics/sharpness.py; 1.0 = as sharp as the real frame)
    FD, KID                Frechet distance and KID of the outputs to the real targets in the features
                           Table 5 uses (the recipe's eval.fid_features: FD-dlib on the smoke profile)
    expression accuracy    share of outputs the expression-change classifier (trained on this dataset's
                           training subjects' real frames; metrics/expression_change.py) gives the
                           target label; the "real target" baseline row is its ceiling

Training time counts only the training steps (evaluations are excluded); `cpu_seconds` is the
process CPU time spent in them. The learning-rate schedule is the recipe's (constant, then linear
decay from train.lr_decay_start), laid over the number of steps the budget affords, which is
estimated from the speed of probe steps 2-4 (or given with --steps).

Writes OUT/NAME.json (every point), OUT/NAME.png (quality against training seconds),
OUT/NAME_samples.png (source | target | generated at the last point, synthetic faces), and
refreshes OUT/compare.md and OUT/compare.png with every recipe JSON in OUT, side by side.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
import yaml
from PIL import Image

from lmexpr_nb.common.files import write_json
from lmexpr_nb.config import DataConfig, load_profile, read_profile
from lmexpr_nb.data.cache import load_cache
from lmexpr_nb.data.frames import neutral_frame, subjects_in
from lmexpr_nb.data.pairs import PairStream, evaluation_pairs
from lmexpr_nb.data.synthetic.write import write_synthetic_ckplus
from lmexpr_nb.experiments.evalset import methods
from lmexpr_nb.landmarks.preprocess import preprocess_dataset
from lmexpr_nb.metrics import registry
from lmexpr_nb.metrics.expression_change import train_expression_change_classifier
from lmexpr_nb.metrics.fid import fd_kid_from_features, feature_extractor
from lmexpr_nb.metrics.landmark_error import landmark_error, nme_detector
from lmexpr_nb.metrics.psnr_ssim import psnr_batch, ssim_batch
from lmexpr_nb.metrics.recognisers import DlibRecogniser
from lmexpr_nb.metrics.result import eval_config
from lmexpr_nb.model.generate import synthesize
from lmexpr_nb.train.core import TERMS, TrainCore, seed_all, training_pairs
from lmexpr_nb.train.device import resolve_device

DEFAULT_OUT = Path("outputs/bench/learn")
METRICS = ("psnr", "ssim", "nme", "face_found", "identity", "rank1", "sharpness", "fd", "kid", "expression")
PROBE_STEPS = 4       # budget mode: steps run to plan the schedule's length (the first, warm-up, not timed)


def parse_sets(items) -> dict:
    """["train.lr=1e-3", "model.dropout=0"] -> {"train": {"lr": 0.001}, "model": {"dropout": 0.0}}
    (values parsed as YAML scalars; a ValueError naming the item for one that is no YAML; the
    settings themselves are checked where every config is, config.load_profile)."""
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ValueError(f"--set wants section.key=value, got {item!r}")
        section, name = key.split(".", 1)
        try:
            v = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"--set {item}: {value!r} is not a value (YAML: {getattr(e, 'problem', None) or e})") \
                from None
        if isinstance(v, str):                    # YAML 1.1 reads "1e-3" as a string
            try:
                v = float(v)
            except ValueError:
                pass
        out.setdefault(section, {})[name] = v
    return out


def ensure_cache(folder: Path, subjects: int, frames: int, seed: int, image_size: int, val_fraction: float,
                 log=print):
    """The recipe-selection dataset: synthetic, its own seed, preprocessed once into folder."""
    root = folder / f"synthetic-{subjects}x{frames}-seed{seed}"
    cache_dir = folder / f"cache-{subjects}x{frames}-seed{seed}-{image_size}px"
    if not (root / "SYNTHETIC.md").is_file():
        log(f"bench learn: generating synthetic seed {seed} ({subjects} subjects) into {root}")
        write_synthetic_ckplus(root, subjects=subjects, frames=frames, seed=seed, workers=2)
    if not (cache_dir / "cache.npz").is_file():
        cfg = DataConfig(image_size=image_size, val_fraction=val_fraction)
        preprocess_dataset("ckplus", root, cache_dir, cfg, workers=2, progress=False)
    return load_cache(cache_dir)


class Evaluator:
    """Quality of generated faces on fixed neutral -> expression pairs of the validation subjects."""

    def __init__(self, cache, cfg, max_pairs: int = 120, seed: int = 0, split: str = "val", classifier=None):
        self.cache = cache
        self.fid_cfg = eval_config(cfg)            # the recipe's eval settings: which features FD/KID use
        src, tgt = evaluation_pairs(cache, split, 0, seed, protocol="neutral-to-expression")
        self.n_all = len(src)
        self.src, self.tgt = evaluation_pairs(cache, split, max_pairs, seed, protocol="neutral-to-expression")
        self.detector = nme_detector(int(cache.images.shape[1]))
        self.recogniser = DlibRecogniser()
        subjects = subjects_in(cache, split)
        gallery = np.array([neutral_frame(cache, s, split) for s in subjects])
        self.gallery_subjects = np.array(subjects)
        self.gallery = self._unit(self.recogniser.embed(cache.images[gallery]))
        self.pair_subjects = np.asarray(cache.subjects).astype(str)[self.tgt]
        self.own = np.array([subjects.index(s) for s in self.pair_subjects])
        self.embed, self.fd_name, self.kid_name, self.fd_provenance = feature_extractor(self.fid_cfg)
        self.real_features = self.embed(cache.images[self.tgt])
        try:                                       # a cache without neutral + peak faces: a recorded skip
            self.classifier = classifier or train_expression_change_classifier(cache)   # trained on "train" always
            self.expression_skipped = ""
        except ValueError as e:
            self.classifier, self.expression_skipped = None, str(e)

    @staticmethod
    def _unit(e):
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)

    @property
    def n(self) -> int:
        return len(self.src)

    def inputs(self):
        c = self.cache
        return c.images[self.src], c.landmarks[self.src], c.landmarks[self.tgt], np.asarray(c.labels)[self.tgt]

    def score(self, images) -> dict:
        real = self.cache.images[self.tgt]
        lm = landmark_error(images, self.cache.landmarks[self.tgt], self.detector)
        emb = self._unit(self.recogniser.embed(images))
        sims = emb @ self.gallery.T
        fd, kd = fd_kid_from_features(self.real_features, self.embed(images), self.fd_name, self.kid_name,
                                      self.fd_provenance, self.fid_cfg)
        sharp = registry.summarise("sharpness", registry.scores(
            "sharpness", fake=images, real=real, target_landmarks=self.cache.landmarks[self.tgt]))
        labels = np.asarray(self.cache.labels)[self.tgt]
        expression = None if self.classifier is None else registry.scores(
            "expression_correct", fake=images, fake_labels=labels, classifier=self.classifier,
            source=self.cache.images[self.src])
        return {"psnr": float(np.mean(psnr_batch(images, real))),
                "ssim": float(np.mean(ssim_batch(images, real, "wang"))),
                "nme": lm.mean, "face_found": float(1.0 - lm.n_missing / max(lm.n, 1)),
                "identity": float(np.mean(sims[np.arange(len(sims)), self.own])),
                "rank1": float(np.mean(sims.argmax(1) == self.own)),
                "sharpness": sharp.value, "fd": fd.value, "kid": kd.value,
                "expression": None if expression is None else float(np.mean(expression))}

    def baselines(self) -> dict:
        out = {}
        args = self.inputs()
        for name, m in methods().items():
            out[name] = self.score(m(*args))
        out["real target"] = self.score(self.cache.images[self.tgt])      # the measures' own ceilings
        return out

    def generator(self, G) -> dict:
        self.last_images = synthesize(G, *self.inputs(), G.cfg)
        return self.score(self.last_images)

    def sample_grid(self, path: Path, n: int = 8) -> Path:
        """source | target | generated (last evaluation) for n evenly spread pairs, 2x enlarged."""
        pick = np.linspace(0, self.n - 1, min(n, self.n)).round().astype(int)
        c = self.cache
        rows = [np.concatenate([c.images[self.src[i]], c.images[self.tgt[i]], self.last_images[i]], axis=1)
                for i in pick]
        grid = np.concatenate(rows, axis=0)
        img = Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST)
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        return path


def _line(point: dict) -> str:
    return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in point.items())


def learn(cfg, cache, budget: float, points: int, evaluator: Evaluator, steps: int | None = None,
          log=print, name: str = "recipe", train_evaluator: Evaluator | None = None,
          clock=time.perf_counter) -> dict:
    """Train cfg's recipe for `budget` training seconds (or `steps`), evaluating at `points` evenly
    spaced times; returns the record that NAME.json holds. With `train_evaluator` (an Evaluator on
    split "train"), the last point is also scored on the TRAINING subjects' neutral -> expression
    pairs (record key "train_subjects"): blurred faces there too mean the recipe underfits, sharp
    ones there and blurred ones on validation mean it does not generalise to new identities.
    `clock` (seconds) measures the training time the budget counts."""

    device = resolve_device(cfg.train.device)
    dataset = training_pairs(cache, cfg)
    torch.manual_seed(cfg.train.seed)
    core = TrainCore(cfg, device)
    stream = iter(PairStream(len(dataset), cfg.train.batch_size, cfg.train.seed))
    seed_all(cfg.train.seed)
    core.train_mode(True)

    def one(step):
        return core.step(dataset.batch(next(stream)), step)

    # speed probe: 4 steps, then the schedule's length from the budget. The first step (allocator and
    # kernel warm-up) is left out of the estimate: counted in, a 340 s budget planned 839 smoke steps,
    # which took 162 s (0.19 s a step, not the probe's 0.40)
    t0, c0 = clock(), time.process_time()
    if steps is None:
        core.cfg = cfg.updated({"train": {"steps": 10 ** 9}})      # constant lr while probing
        one(0)
        t_warm = clock()
        for s in range(1, PROBE_STEPS):
            one(s)
        per_step = (clock() - t_warm) / (PROBE_STEPS - 1)
        total = max(int(budget / per_step), PROBE_STEPS + 1)
        done = PROBE_STEPS
    else:
        total, done = int(steps), 0
    core.cfg = cfg.updated({"train": {"steps": total}})
    train_s = clock() - t0
    cpu_s = time.process_time() - c0
    marks = [round(total * (i + 1) / points) for i in range(points)]
    curve = []
    last_terms = None
    log(f"bench learn {name}: {len(dataset)} training pairs, {total} steps planned "
        f"({'budget %.0f s' % budget if steps is None else 'fixed steps'}), eval on {evaluator.n} pairs")
    for mark in marks:
        t1, c1 = clock(), time.process_time()
        while done < mark:
            last_terms = one(done)
            done += 1
            if steps is None and train_s + (clock() - t1) >= budget:
                break
        train_s += clock() - t1
        cpu_s += time.process_time() - c1
        q = evaluator.generator(core.generator)
        core.train_mode(True)
        row = {"step": done, "train_seconds": round(train_s, 2), "cpu_seconds": round(cpu_s, 2), **q}
        curve.append(row)
        log("  " + _line(row))
        if steps is None and train_s >= budget:
            break
    fit = {}
    if train_evaluator is not None:
        fit = {"train_subjects": train_evaluator.generator(core.generator)}
        log("  training subjects: " + _line(fit["train_subjects"]))
    return {"name": name, **fit, "profile": cfg.profile, "config": cfg.to_dict(), "standins": cfg.uses_standins,
            "steps": done, "planned_steps": total, "budget_seconds": budget, "threads": torch.get_num_threads(),
            "final_losses": dict(zip(TERMS, [round(float(x), 5) for x in last_terms])) if last_terms is not None
            else {}, "curve": curve}


def plot(records: list[dict], baselines: dict, path: Path, title: str) -> Path:
    matplotlib.use("Agg")
    keys = ("nme", "ssim", "sharpness", "fd")
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4))
    for ax, k in zip(axes, keys):
        for r in records:
            xs = [p["train_seconds"] for p in r["curve"]]
            ax.plot(xs, [p.get(k, np.nan) for p in r["curve"]], marker="o", label=r["name"])
        for (bname, b), ls in zip(baselines.items(), ("--", ":", "-.")):
            if k in b:
                ax.axhline(b[k], color="grey", ls=ls, label=bname)
        ax.set_title(k + (" (lower is better)" if k in ("nme", "fd") else ""))
        ax.set_xlabel("training seconds (CPU)")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


COLUMNS = {"psnr": "PSNR", "ssim": "SSIM", "nme": "NME", "face_found": "face found", "identity": "identity",
           "rank1": "Rank-1", "sharpness": "sharpness", "fd": "FD", "kid": "KID", "expression": "expression acc."}


def _cells(point: dict) -> str:
    """One compare.md row's metric cells; '-' for a metric the record predates."""
    fmt = {"psnr": "{:.2f}", "nme": "{:.4f}", "kid": "{:.4f}", "face_found": "{:.0%}", "rank1": "{:.0%}",
           "expression": "{:.0%}"}
    return " | ".join("-" if point.get(k) is None else fmt.get(k, "{:.3f}").format(point[k]) for k in COLUMNS)


def compare(out: Path) -> str:
    """compare.md + compare.png from every recipe JSON in `out`: the last point of each."""
    recs = []
    for p in sorted(out.glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except ValueError:
            continue
        if isinstance(r, dict) and r.get("curve"):
            recs.append(r)
    if not recs:
        return ""
    base = recs[-1]["baselines"]
    lines = [f"Recipes on synthetic seed {recs[-1]['data']['seed']} (training subjects; evaluated on its "
             f"{recs[-1]['data']['eval_pairs']} neutral -> expression validation pairs), last point of each:", "",
             "| recipe | overrides | steps | train s | " + " | ".join(COLUMNS.values()) + " |",
             "|---|---|---|---|" + "---|" * len(COLUMNS)]
    for bname, b in base.items():
        lines.append(f"| {bname} | | | | {_cells(b)} |")
    for r in recs:
        p = r["curve"][-1]
        sets = "; ".join(f"{s}.{k}={v}" for s, d in r["overrides"].items() for k, v in d.items())
        lines.append(f"| {r['name']} | {sets} | {p['step']} | {p['train_seconds']:.0f} | {_cells(p)} |")
    text = "\n".join(lines) + "\n"
    (out / "compare.md").write_text(text)
    plot(recs, base, out / "compare.png", "bench learn: recipes side by side (synthetic, separate seed)")
    return text


def bench_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lmexpr bench learn", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="smoke", help="the recipe's base profile (default smoke)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a setting of the profile's config (repeatable)")
    ap.add_argument("--name", default=None, help="recipe name (file names); default: the profile")
    ap.add_argument("--budget", type=float, default=240.0, help="training seconds (default 240)")
    ap.add_argument("--steps", type=int, default=None, help="train exactly this many steps instead of a budget")
    ap.add_argument("--points", type=int, default=4, help="evaluations along the way (default 4)")
    ap.add_argument("--pairs", type=int, default=120, help="evaluation pairs (seeded subset; default 120)")
    ap.add_argument("--synth-seed", type=int, default=1, help="seed of the recipe-selection dataset (default 1; "
                    "the smoke run uses 0)")
    ap.add_argument("--subjects", type=int, default=None, help="synthetic subjects (default: the profile's)")
    ap.add_argument("--also-train", action="store_true",
                    help="also score the last point on the training subjects (underfit or not generalising?)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help=f"folder (default {DEFAULT_OUT})")
    a = ap.parse_args(argv)
    prog = "lmexpr bench learn"
    try:
        overrides = parse_sets(a.set)
        cfg = load_profile(a.profile, overrides)
        if a.budget <= 0 or a.points < 1 or a.pairs < 1:
            raise ValueError("--budget, --points and --pairs must be positive")
    except (ValueError, KeyError, TypeError, FileNotFoundError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    if a.threads:
        torch.set_num_threads(a.threads)
    synth = read_profile(a.profile).get("synth") or {}
    subjects = a.subjects or int(synth.get("subjects", 16))
    frames = int(synth.get("frames", 8))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = ensure_cache(out / "data", subjects, frames, a.synth_seed, cfg.data.image_size, cfg.data.val_fraction)
    ev = Evaluator(cache, cfg, a.pairs, seed=0)
    base_path = out / "data" / f"baselines-seed{a.synth_seed}-{ev.n}-{'-'.join(METRICS)}.json"
    if base_path.is_file():
        baselines = json.loads(base_path.read_text())
    else:
        baselines = ev.baselines()
        write_json(base_path, baselines)
    name = a.name or cfg.profile
    fit_ev = Evaluator(cache, cfg, a.pairs, seed=0, split="train", classifier=ev.classifier) if a.also_train else None
    rec = learn(cfg, cache, a.budget, a.points, ev, steps=a.steps, name=name, train_evaluator=fit_ev)
    rec.update(overrides=overrides, baselines=baselines,
               data={"dataset": "synthetic (procedural faces, not real)", "seed": a.synth_seed, "subjects": subjects,
                     "train_subjects": int(len(set(np.asarray(cache.subjects)[np.asarray(cache.split) == "train"]))),
                     "eval_pairs": ev.n, "eval_pairs_all": ev.n_all, "protocol": "neutral-to-expression",
                     "expression_classifier": ev.expression_skipped or ev.classifier.provenance,
                     "note": "recipe-selection data: a separate synthetic seed, never the smoke run's subjects"})
    write_json(out / f"{name}.json", rec)
    ev.sample_grid(out / f"{name}_samples.png")
    plot([rec], baselines, out / f"{name}.png", f"bench learn {name}: profile {cfg.profile}, synthetic seed "
         f"{a.synth_seed}, {ev.n} neutral->expression pairs; stand-ins: {', '.join(cfg.uses_standins) or 'none'}")
    print(compare(out))
    print(f"wrote {out / (name + '.json')}, {out / (name + '.png')}, {out / 'compare.md'}")
    return 0
