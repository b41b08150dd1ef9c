"""The training recipe's switches: heatmaps without denormals, the GAN warm-up that
trains no discriminator, the training pair rule, and `bench learn` end to end on a tiny cache."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_train import make_cache, tiny_cfg

from lmexpr_nb.bench import learn as learn_mod
from lmexpr_nb.landmarks.heatmaps import TAIL, landmark_heatmaps
from lmexpr_nb.train.core import TERMS, TrainCore, gan_on, training_pairs


def test_heatmaps_hold_no_denormal_floats_and_stay_within_the_tail_of_the_gaussian():
    rng = np.random.default_rng(3)
    lm = rng.uniform(-4, 68, size=(5, 68, 2)).astype(np.float32)
    sigma = 1.5
    h = landmark_heatmaps(lm, 64, sigma)
    nz = h[h != 0]
    assert nz.numel() and float(nz.abs().min()) >= torch.finfo(torch.float32).tiny   # no denormals
    g = torch.arange(64, dtype=torch.float64)
    t = torch.as_tensor(lm, dtype=torch.float64)
    exact = torch.exp(-((g[None, None, None, :] - t[..., 0, None, None]) ** 2
                        + (g[None, None, :, None] - t[..., 1, None, None]) ** 2) / (2 * sigma ** 2))
    assert float((h.double() - exact).abs().max()) < TAIL
    # the peak is untouched and the cut is where the 1-D profile drops below TAIL
    assert float(landmark_heatmaps(np.array([[10.0, 20.0]]), 32, sigma)[0, 20, 10]) == 1.0
    cut = sigma * math.sqrt(-2 * math.log(TAIL))
    one = landmark_heatmaps(np.array([[10.0, 10.0]]), 32, sigma)[0, 10]
    assert float(one[10 + int(cut)]) > 0 and float(one[10 + int(cut) + 1]) == 0


def _params(m):
    return [p.detach().clone() for p in m.parameters()]


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _core_and_batches(cfg, n=4):
    cache = make_cache((4, 4, 3), val_subjects=1, size=32)
    ds = training_pairs(cache, cfg)
    core = TrainCore(cfg, torch.device("cpu"))
    core.train_mode(True)
    return core, [ds.batch([i % len(ds), (i + 1) % len(ds)]) for i in range(n)]


def test_without_the_gan_term_no_discriminator_is_trained():
    cfg = tiny_cfg(steps=4).updated({"loss": {"lambda_gan": 0.0}})
    core, batches = _core_and_batches(cfg)
    d0, g0 = _params(core.d_image) + _params(core.d_geometry), _params(core.generator)
    terms = core.step(batches[0], 0)
    named = dict(zip(TERMS, terms.tolist()))
    assert named["g_gan"] == 0 and named["d_image"] == 0 and named["d_geometry"] == 0
    assert _same(d0, _params(core.d_image) + _params(core.d_geometry))      # Ds untouched
    assert not _same(g0, _params(core.generator))                           # G learned


def test_gan_warm_up_switches_the_discriminators_on_at_its_step():
    cfg = tiny_cfg(steps=4).updated({"train": {"gan_start": 0.5}, "loss": {"lambda_gan": 5.0}})
    assert [gan_on(s, cfg) for s in range(4)] == [False, False, True, True]
    core, batches = _core_and_batches(cfg)
    d0 = _params(core.d_image)
    core.step(batches[0], 0)
    core.step(batches[1], 1)
    assert _same(d0, _params(core.d_image))
    terms = dict(zip(TERMS, core.step(batches[2], 2).tolist()))
    assert not _same(d0, _params(core.d_image)) and terms["g_gan"] > 0 and terms["d_image"] > 0
    assert not gan_on(0, cfg.updated({"loss": {"lambda_gan": 0.0}, "train": {"gan_start": 0.0}}))


@pytest.mark.parametrize("rule", ["neutral-to-expression", "all-ordered-pairs"])
def test_training_pairs_follow_train_pairs(rule):
    cache = make_cache((5, 4, 3), val_subjects=1, size=32)
    ds = training_pairs(cache, tiny_cfg().updated({"train": {"pairs": rule}}))
    tr = cache.subset("train")
    s, t = ds.pairs[:, 0], ds.pairs[:, 1]
    assert np.all(tr.subjects[s] == tr.subjects[t]) and np.all(s != t)
    if rule == "neutral-to-expression":
        assert np.all(tr.labels[s] == 0) and np.all(tr.labels[t] != 0)
        expected = sum(int(((tr.subjects == x) & (tr.labels == 0)).sum()) * int(((tr.subjects == x) & (tr.labels != 0)).sum())
                       for x in set(tr.subjects))
    else:
        expected = sum(n * (n - 1) for n in np.unique(tr.subjects, return_counts=True)[1])
    assert len(ds) == expected and ds.protocol == rule


def test_bench_learn_trains_evaluates_and_compares(tmp_path):
    cache = make_cache((4, 4, 4, 4), val_subjects=2, size=32)
    cfg = tiny_cfg(steps=4).updated({"train": {"pairs": "neutral-to-expression"}})
    ev = learn_mod.Evaluator(cache, cfg, max_pairs=6)
    assert ev.n == 6 and ev.n_all == 2 * 1 * 3      # per val subject: 1 neutral frame x 3 expression frames
    assert np.all(cache.labels[ev.src] == 0) and np.all(cache.labels[ev.tgt] != 0)
    base = ev.baselines()
    assert base["copy source"]["identity"] > 0.99 and set(base["copy source"]) == set(learn_mod.METRICS)
    fit = learn_mod.Evaluator(cache, cfg, max_pairs=6, split="train")
    assert set(np.asarray(cache.subjects)[fit.tgt]).isdisjoint(np.asarray(cache.subjects)[ev.tgt])
    rec = learn_mod.learn(cfg, cache, budget=1.0, points=2, evaluator=ev, steps=4, log=lambda *_: None, name="t",
                          train_evaluator=fit)
    assert [p["step"] for p in rec["curve"]] == [2, 4]
    assert set(rec["train_subjects"]) == set(learn_mod.METRICS) and 0 <= rec["train_subjects"]["rank1"] <= 1
    assert all(p["train_seconds"] > 0 and 0 <= p["rank1"] <= 1 for p in rec["curve"])
    rec.update(overrides={"train": {"pairs": "neutral-to-expression"}}, baselines=base,
               data={"seed": 9, "eval_pairs": ev.n})
    (tmp_path / "t.json").write_text(json.dumps(rec))
    text = learn_mod.compare(tmp_path)
    assert "| t | train.pairs=neutral-to-expression | 4 |" in text and (tmp_path / "compare.png").is_file()


def test_bench_learn_budget_plans_from_steps_after_the_first(monkeypatch):
    """A slow first step (warm-up) must not shrink the plan: with a 0.5 s first step and 1/32 s
    steps after it, a 1 s budget plans 32 steps (counted in, it would plan 6), and training stops
    when the budget's training seconds are spent: 4 probe steps (0.59375 s) + 13 steps of 1/32 s.
    The seconds are a fake clock that only the steps advance: machine load changes nothing."""
    now = [100.0]
    calls = []

    def fake_step(self, batch, step_index):
        now[0] += 0.5 if not calls else 1 / 32
        calls.append(step_index)
        return torch.zeros(len(TERMS))

    monkeypatch.setattr(TrainCore, "step", fake_step)
    cache = make_cache((4, 4, 4, 4), val_subjects=2, size=32)
    cfg = tiny_cfg(steps=4).updated({"train": {"pairs": "neutral-to-expression"}})
    rec = learn_mod.learn(cfg, cache, budget=1.0, points=1, evaluator=learn_mod.Evaluator(cache, cfg, max_pairs=2),
                          log=lambda *_: None, name="b", clock=lambda: now[0])
    assert rec["planned_steps"] == 32
    assert rec["steps"] == len(calls) == learn_mod.PROBE_STEPS + 13 and calls == list(range(len(calls)))
    assert [(p["step"], p["train_seconds"]) for p in rec["curve"]] == [(17, 1.0)]


def test_bench_learn_refuses_a_bad_setting_in_one_line(capsys):
    assert learn_mod.bench_main(["--set", "train.nope=1"]) == 2
    assert learn_mod.bench_main(["--set", "lr=1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "train.nope" in err[0] and "section.key=value" in err[1]
    assert learn_mod.parse_sets(["train.lr=1e-3", "model.dropout=0"]) == {"train": {"lr": 1e-3},
                                                                        "model": {"dropout": 0}}
