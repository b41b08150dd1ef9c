"""Table 7 ablation: three settings with the right switches, one budget and seed,
finished runs reused untouched, a run made with other settings refused, the table written
with the paper's FID in its own column."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from lmexpr_nb.common.checkpoint import load_checkpoint
from lmexpr_nb.common.paper import TABLE7_ABLATION
from lmexpr_nb.config import load_profile
from lmexpr_nb.experiments import table7
from lmexpr_nb.model.trained import load_trained
from lmexpr_nb.train.trainer import train


@dataclass
class FakeCache:
    """In-memory stand-in with the fields of data.cache.FaceCache that training and evaluation use."""
    images: np.ndarray
    landmarks: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    split: np.ndarray
    meta: dict = field(default_factory=lambda: {"dataset": "fake-test", "synthetic": True})

    def __len__(self):
        return len(self.images)

    def subset(self, split):
        keep = self.split == split
        return FakeCache(self.images[keep], self.landmarks[keep], self.labels[keep], self.subjects[keep],
                         self.split[keep], dict(self.meta))


def fake_cache(subjects=3, frames=4, val_subjects=1, size=32, seed=0) -> FakeCache:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.uniform(0.3, 0.7, (68, 2)) * size
    imgs, lms, labels, subj, split = [], [], [], [], []
    for s in range(subjects):
        colour = rng.uniform(40, 215, 3)
        for f in range(frames):
            cx = size * (0.35 + 0.3 * f / max(frames - 1, 1))
            blob = np.exp(-((xx - cx) ** 2 + (yy - size / 2) ** 2) / (2 * (size / 6) ** 2))
            img = colour * (0.4 + 0.6 * blob[..., None]) + rng.normal(0, 3, (size, size, 3))
            imgs.append(np.clip(img, 0, 255).astype(np.uint8))
            lms.append((base + rng.normal(0, 0.5, base.shape) + [cx - size / 2, 0]).astype(np.float32))
            labels.append(f % 4)
            subj.append(f"S{s:03d}")
            split.append("val" if s >= subjects - val_subjects else "train")
    return FakeCache(np.stack(imgs), np.stack(lms), np.asarray(labels, np.int64), np.asarray(subj), np.asarray(split))


def tiny_cfg(steps=2):
    return load_profile("smoke", {
        "data": {"image_size": 32},
        "model": {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "heatmap_sigma": 1.5},
        "loss": {"vgg_standin": True},
        "train": {"steps": steps, "batch_size": 4, "checkpoint_every": 100, "sample_every": 100, "log_every": 1,
                  "num_workers": 0, "device": "cpu", "deterministic": True},
        "eval": {"fid_features": "dlib-standin", "kid_subset_size": 4, "kid_subsets": 5}})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The three settings trained once (2 steps each) for the tests below."""
    root = tmp_path_factory.mktemp("out") / "ablation"
    cfg, cache = tiny_cfg(), fake_cache()
    runs = table7.run_ablation(cfg, cache, root, steps=2, log=lambda *a: None)
    return cfg, cache, root, runs


def _files(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_setting_config_switches_and_budget():
    cfg = tiny_cfg().updated({"model": {"use_label_planes": False}})
    full = table7.setting_config(cfg, "all together", 7)
    assert full.model.use_feature_init and full.model.use_label_planes and full.train.steps == 7
    assert not table7.setting_config(cfg, "w/o feature initialize network").model.use_feature_init
    assert not table7.setting_config(cfg, "w/o expression label smooth").model.use_label_planes
    with pytest.raises(KeyError, match="unknown ablation setting"):
        table7.setting_config(cfg, "w/o everything")


def test_three_settings_trained_with_their_switches(trained):
    cfg, _, root, runs = trained
    assert list(runs) == list(table7.SETTINGS)
    want = {"all together": (True, True), "w/o feature initialize network": (False, True),
            "w/o expression label smooth": (True, False)}
    for setting, run in runs.items():
        assert Path(run["dir"]) == root / table7.SETTINGS[setting]["slug"]
        ckpt = load_checkpoint(Path(run["dir"]) / "checkpoints" / "last.pt")
        assert ckpt["step"] == 2 and ckpt["config"]["train"]["seed"] == cfg.train.seed
        model = load_trained(run["dir"])
        G, gcfg = model.generator, model.config
        assert (gcfg.model.use_feature_init, gcfg.model.use_label_planes) == want[setting]
        assert (G.cfg.use_feature_init, G.cfg.use_label_planes) == want[setting]
        assert not run["reused"]
    # the switch really changes the network: no learned parameters in the fixed downsampling
    G = load_trained(runs["w/o feature initialize network"]["dir"]).generator
    assert sum(p.numel() for p in G.init_image.parameters()) == 0


def test_finished_runs_are_reused_untouched(trained, monkeypatch):
    cfg, cache, root, _ = trained
    before = _files(root)

    def no_training(*a, **k):
        raise AssertionError("a finished run must not be trained again")
    monkeypatch.setattr(table7, "train", no_training)
    runs = table7.run_ablation(cfg, cache, root, steps=2, log=lambda *a: None)
    assert all(r["reused"] for r in runs.values())
    assert _files(root) == before


def test_other_budget_is_refused_then_retrained(tmp_path):
    cfg, cache = tiny_cfg(), fake_cache()
    one = ["all together"]
    table7.run_ablation(cfg, cache, tmp_path, steps=1, settings=one, log=lambda *a: None)
    with pytest.raises(ValueError, match="other settings.*train.steps"):
        table7.run_ablation(cfg, cache, tmp_path, steps=2, settings=one, log=lambda *a: None)
    runs = table7.run_ablation(cfg, cache, tmp_path, steps=2, settings=one, retrain=True, log=lambda *a: None)
    assert load_checkpoint(Path(runs["all together"]["dir"]) / "checkpoints" / "last.pt")["step"] == 2


def test_partial_run_is_resumed(tmp_path):
    cfg, cache = tiny_cfg(steps=2), fake_cache()
    folder = tmp_path / "all"
    train(table7.setting_config(cfg, "all together", 2), cache, folder, stop_after=1, progress=False)
    assert table7.run_state(folder, table7.setting_config(cfg, "all together", 2))[:2] == ("partial", 1)
    runs = table7.run_ablation(cfg, cache, tmp_path, steps=2, settings=["all together"], log=lambda *a: None)
    assert runs["all together"]["resumed_from"] == 1
    assert load_checkpoint(folder / "checkpoints" / "last.pt")["step"] == 2


def test_evaluation_and_table7(trained, tmp_path):
    cfg, cache, _, runs = trained
    ev = table7.evaluate_ablation(runs, cache, cfg, max_pairs=6, seed=0, device="cpu", log=lambda *a: None)
    src, tgt = ev["pairs"]      # the primary protocol: 1 val subject x 1 neutral frame x 3 expression frames
    assert len(src) == 3 and all(cache.split[i] == "val" for i in np.r_[src, tgt])
    assert all(cache.labels[src] == 0) and all(cache.labels[tgt] != 0)
    res = ev["results"]
    assert [r["setting"] for r in res][:3] == list(table7.SETTINGS)
    assert [r["protocol"] for r in res] == ["neutral-to-expression"] * 5 + ["all-ordered-pairs"] * 5
    assert [r["n"] for r in res] == [3] * 5 + [6] * 5 and all(r["fd_name"] == "FD-dlib" for r in res)
    assert all(np.isfinite(r["kid_std"]) for r in res)
    copy_row = res[3]
    assert copy_row["setting"] == "baseline: copy source" and copy_row["kind"] == "baseline"
    sec = ev["sets"]["all-ordered-pairs"]
    from lmexpr_nb.metrics.psnr_ssim import psnr_batch
    assert res[8]["psnr"] == pytest.approx(np.mean(psnr_batch(sec.source, sec.real)))   # copy, secondary block
    table7.write_table7(tmp_path, res, {"data": "synthetic (not real faces)", "profile": "test",
                                          "standins": ["FD-dlib"]}, cfg, steps=2)
    with open(tmp_path / "table7.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["setting"] for r in rows[:3]] == list(table7.SETTINGS)
    assert [r["protocol"] for r in rows] == ["neutral-to-expression"] * 5 + ["all-ordered-pairs"] * 5
    assert all(r["paper: FID"] == "" for r in rows[5:])          # the paper's FID beside the primary block only
    rows = rows[:5]
    assert "ours: FD-dlib" in rows[0] and "paper: FID" in rows[0]
    assert not [c for c in rows[0] if "FID" in c and c != "paper: FID"], "a stand-in never under a FID heading"
    for r in rows[:3]:
        assert float(r["paper: FID"]) == TABLE7_ABLATION[r["setting"]] and r["N"] == "3" and r["steps"] == "2"
    assert all(r["paper: FID"] == "" and r["weights"].startswith("no model") for r in rows[3:])
    md = (tmp_path / "table7.md").read_text()
    assert "NOT FID" in md and "noise" in md and "std" in md and "primary" in md
    fig = table7.sample_grid(cache, ev, n=2)
    assert len(fig.axes) == 2 * (2 + 5)


def _psnr(a, b) -> np.ndarray:
    """Per-image PSNR (dB, 8-bit), written out here independently of metrics.psnr_ssim."""
    mse = ((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2).reshape(len(a), -1).mean(1)
    return 10 * np.log10(255.0 ** 2 / mse)


def test_table7_rows_are_the_images_they_name(trained):
    """Each row's numbers come from its own setting's images on the shared pairs: copy-source is
    exactly the source frames, the settings' images differ (the switches change the network), and
    every row's PSNR is that of its images against the real targets."""
    from lmexpr_nb.common.checkpoint import last_checkpoint
    from lmexpr_nb.model.generate import synthesize_pairs
    cfg, cache, _, runs = trained
    ev = table7.evaluate_ablation(runs, cache, cfg, max_pairs=6, seed=0, device="cpu", log=lambda *a: None)
    src, tgt = ev["pairs"]
    real = cache.images[tgt]
    np.testing.assert_array_equal(ev["fakes"]["baseline: copy source"], cache.images[src])
    fakes = [ev["fakes"][s] for s in table7.SETTINGS]
    assert all(not np.array_equal(a, b) for i, a in enumerate(fakes) for b in fakes[i + 1:])
    for s in table7.SETTINGS:                               # the images are the setting's own generator's
        model = load_trained(last_checkpoint(runs[s]["dir"]))
        G, gcfg = model.generator, model.config
        np.testing.assert_array_equal(ev["fakes"][s], synthesize_pairs(G, cache, src, tgt, gcfg.model))
    primary = [r for r in ev["results"] if r["protocol"] == "neutral-to-expression"]   # ev["fakes"]: its pairs
    assert len(primary) == len(table7.SETTINGS) + 2
    for r in primary:
        assert r["psnr"] == pytest.approx(_psnr(ev["fakes"][r["setting"]], real).mean(), rel=1e-9)
    copy_row = next(r for r in primary if r["setting"] == "baseline: copy source")
    assert copy_row["psnr"] > max(r["psnr"] for r in primary if r["kind"] == "model")   # 2 steps: worse than copying
