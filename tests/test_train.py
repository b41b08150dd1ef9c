"""Training: pairs, the resumable stream, a tiny model learning, exact resume, checkpoints,
the NaN guard, missing VGG weights, the CSV log."""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from lmexpr_nb.common import checkpoint as ckpt_io
from lmexpr_nb.config import load_profile
from lmexpr_nb.data.pairs import PairDataset, PairStream
from lmexpr_nb.model import losses
from lmexpr_nb.model.trained import load_trained
from lmexpr_nb.train import device, trainer
from lmexpr_nb.train.cli import train_main
from lmexpr_nb.train.core import NonFiniteLossError, TrainCore, lr_at
from lmexpr_nb.train.device import amp_dtype
from lmexpr_nb.train.trainer import train

# --------------------------------------------------------------------------------------
# An in-memory stand-in with the shape of data.cache.FaceCache

@dataclass
class FakeCache:
    images: np.ndarray
    landmarks: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    sequences: np.ndarray
    frames: np.ndarray
    split: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.images)

    def subset(self, split):
        keep = self.split == split
        return FakeCache(*(getattr(self, k)[keep] for k in
                           ("images", "landmarks", "labels", "subjects", "sequences", "frames", "split")),
                         meta=dict(self.meta))


def make_cache(frames_per_subject=(3, 3, 2), val_subjects=1, size=32, seed=0) -> FakeCache:
    """Smooth random faces-ish images (a blob that moves with the 'expression'), landmarks
    on a jittered ring, labels per frame; the last `val_subjects` subjects are validation."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    imgs, lms, labels, subj, seqs, frs, split = [], [], [], [], [], [], []
    n_subj = len(frames_per_subject)
    base = rng.uniform(0.3, 0.7, size=(68, 2)) * size
    for s, nf in enumerate(frames_per_subject):
        colour = rng.uniform(40, 215, size=3)
        for f in range(nf):
            label = f % 8
            cx, cy = size * (0.35 + 0.3 * f / max(nf - 1, 1)), size * (0.4 + 0.05 * s)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (size / 6) ** 2))
            img = colour[None, None, :] * (0.4 + 0.6 * blob[..., None]) + rng.normal(0, 3, (size, size, 3))
            imgs.append(np.clip(img, 0, 255).astype(np.uint8))
            lms.append((base + rng.normal(0, 0.5, base.shape) + [cx - size / 2, 0]).astype(np.float32))
            labels.append(label)
            subj.append(f"S{s:03d}")
            seqs.append(f"S{s:03d}_{f // 2:03d}")
            frs.append(f)
            split.append("val" if s >= n_subj - val_subjects else "train")
    return FakeCache(np.stack(imgs), np.stack(lms), np.asarray(labels, np.int64), np.asarray(subj),
                     np.asarray(seqs), np.asarray(frs, np.int64), np.asarray(split),
                     meta={"dataset": "fake-test", "synthetic": True, "image_size": size})


def tiny_cfg(steps=6, **train):
    t = dict(steps=steps, batch_size=4, checkpoint_every=2, sample_every=3, log_every=1, num_workers=0,
             deterministic=True, device="cpu", lr_decay_start=0.5, pairs="all-ordered-pairs")
    t.update(train)
    return load_profile("smoke", {
        "data": {"image_size": 32},
        "model": {"image_size": 32, "ngf": 8, "ndf": 8, "n_blocks": 1, "heatmap_sigma": 1.5},
        "loss": {"vgg_standin": True, "lambda_gan": 5.0},   # the full step (both Ds), whatever the smoke recipe
        "train": t})


def weights_of(path) -> dict:
    c = ckpt_io.load_checkpoint(path)
    return {f"{m}.{k}": v for m, sd in c["models"].items() for k, v in sd.items()}


def csv_rows(out) -> list[dict]:
    with open(Path(out) / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------------------
# Pairs and the stream

def test_pairs_are_same_subject_and_exhaustive():
    cache = make_cache(frames_per_subject=(3, 4, 1, 2), val_subjects=1)
    ds = PairDataset(cache, "train")
    sub = cache.subset("train")
    expected = {(i, j) for i in range(len(sub)) for j in range(len(sub))
                if i != j and sub.subjects[i] == sub.subjects[j]}
    got = {tuple(map(int, p)) for p in ds.pairs}
    assert got == expected and len(ds) == len(expected) == 3 * 2 + 4 * 3   # the 1-frame subject has none
    item = ds[5]
    i, j = int(item["source_index"]), int(item["target_index"])
    assert sub.subjects[i] == sub.subjects[j] and i != j
    assert item["source"].shape == (3, 32, 32) and item["source"].dtype == torch.float32
    assert -1.0 <= float(item["source"].min()) and float(item["target"].max()) <= 1.0
    assert torch.allclose(item["target"], torch.from_numpy(sub.images[j]).permute(2, 0, 1).float() / 127.5 - 1)
    assert torch.equal(item["target_landmarks"], torch.from_numpy(sub.landmarks[j]))
    assert torch.equal(item["source_landmarks"], torch.from_numpy(sub.landmarks[i]))
    assert int(item["target_label"]) == sub.labels[j] and item["target_label"].dtype == torch.int64
    batch = ds.__getitems__([0, 5, 7])
    assert batch["source"].shape == (3, 3, 32, 32) and torch.equal(batch["target"][1], item["target"])
    # validation split: only the val subject's pairs
    val = PairDataset(cache, "val")
    assert len(val) == 2 and set(val.cache.subjects) == {"S003"}
    # max_pairs: a seeded subset
    a, b = PairDataset(cache, "train", max_pairs=5, seed=1), PairDataset(cache, "train", max_pairs=5, seed=1)
    assert len(a) == 5 and np.array_equal(a.pairs, b.pairs) and {tuple(p) for p in a.pairs} <= got


def test_stream_is_seeded_sharded_and_resumable():
    n, b = 7, 3
    one = PairStream(n, b, seed=3)
    it = iter(one)
    first = [next(it) for _ in range(5)]
    flat = sum(first, [])
    assert sorted(flat[:7]) == list(range(7)) and sorted(flat[7:14]) == list(range(7))   # epochs are permutations
    # resume from a position continues the same stream
    again = iter(PairStream(n, b, seed=3, position=2 * b))
    assert [next(again) for _ in range(3)] == first[2:]
    # two ranks: disjoint consecutive blocks of each global batch; together the 1-rank stream
    r0, r1 = (iter(PairStream(n, b, seed=3, rank=r, world_size=2)) for r in (0, 1))
    both = sum([next(r0) + next(r1) for _ in range(2)], [])
    assert both == flat[:12]
    assert one.state(12) == {"position": 12, "epoch": 1, "n": 7, "batch_size": 3, "world_size": 1, "seed": 3}


def test_lr_schedule_constant_then_linear_to_zero():
    t = tiny_cfg(steps=10).train
    lrs = [lr_at(s, t) for s in range(10)]
    assert lrs[:5] == [t.lr] * 5 and lrs[5] == pytest.approx(t.lr) and lrs[9] == pytest.approx(t.lr / 5)
    assert all(a > b for a, b in zip(lrs[5:], lrs[6:]))


def test_d_lr_sets_the_discriminators_rate_through_the_whole_schedule():
    """train.d_lr (non-paper): the Ds follow the same schedule, scaled; None keeps one lr for all."""
    def lrs(cfg, step):
        core = TrainCore(cfg, torch.device("cpu"), amp=None)
        cache = make_cache()
        ds = PairDataset(cache, "train", protocol="all-ordered-pairs")
        batch = torch.utils.data.default_collate([ds[0], ds[1]])
        core.step(batch, step)
        return {name: opt.param_groups[0]["lr"] for name, opt in core.optimizers().items()}
    same = lrs(tiny_cfg(steps=10, lr=1e-3), 8)
    assert same == {"generator": pytest.approx(4e-4), "d_image": pytest.approx(4e-4), "d_geometry": pytest.approx(4e-4)}
    slow = lrs(tiny_cfg(steps=10, lr=1e-3, d_lr=2e-4), 8)
    assert slow == {"generator": pytest.approx(4e-4), "d_image": pytest.approx(8e-5), "d_geometry": pytest.approx(8e-5)}
    assert "train.d_lr=0.0002 (paper: None)" in tiny_cfg(d_lr=2e-4).recipe


def cpu_flags_say_bf16() -> bool | None:
    """Does the kernel report AVX512-BF16 or AMX for this CPU (/proc/cpuinfo's flags)? None where
    there is no such file (not Linux): then nothing independent of torch says."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    flags = next((set(ln.split(":", 1)[1].split()) for ln in lines if ln.startswith("flags")), None)
    return None if flags is None else bool(flags & {"avx512_bf16", "amx_tile"})


def test_native_bf16_agrees_with_the_cpu_flags_the_kernel_reports():
    """native_bf16 asks torch's CPU probes; the kernel's own list of CPU features must agree."""
    want = cpu_flags_say_bf16()
    if want is None:
        pytest.skip("no /proc/cpuinfo here: no source independent of torch to compare with")
    assert device.native_bf16(torch.device("cpu")) is want
    assert device.native_bf16(torch.device("meta")) is False


@pytest.mark.parametrize("native", [True, False])
def test_amp_modes_pick_the_dtype_and_bf16_native_follows_the_hardware(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    cfg = tiny_cfg(steps=1)
    want = {"auto": (None, torch.bfloat16), "bf16-native": (torch.bfloat16 if native else None, torch.bfloat16),
            "bf16": (torch.bfloat16, torch.bfloat16), "fp32": (None, None)}
    for mode, (on_cpu, on_cuda) in want.items():
        cfg.train.amp = mode
        assert (amp_dtype(cfg, cpu), amp_dtype(cfg, cuda)) == (on_cpu, on_cuda), mode
    cfg.train.amp = "fp16"
    with pytest.raises(ValueError, match="bf16-native"):
        amp_dtype(cfg, cpu)
    # the precision is part of the recipe every output names; the paper profile's is "auto"
    assert "train.amp=bf16-native (paper: auto)" in load_profile("paper").updated(
        {"train": {"amp": "bf16-native"}}).recipe
    # a run records the dtype it really used
    cfg.train.amp = "bf16-native"
    core = TrainCore(cfg, cpu)
    assert core.dtype_name == ("bfloat16 autocast" if native else "float32")


# --------------------------------------------------------------------------------------
# Training

def test_tiny_model_learns_and_writes_its_outputs(tmp_path):
    cache = make_cache(frames_per_subject=(3, 3, 2), val_subjects=1)
    cfg = tiny_cfg(steps=30, checkpoint_every=30, sample_every=15, log_every=5, deterministic=False,
                   lr=1e-3, lr_decay_start=1.0)
    s = train(cfg, cache, tmp_path / "run", progress=False)
    rows = csv_rows(tmp_path / "run")
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20, 25, 30]
    pix = [float(r["g_pixel"]) for r in rows]
    assert pix[-1] < 0.7 * pix[0], pix                                     # the pixel loss falls clearly
    assert s["status"] == "complete" and s["final_step"] == 30 and s["pairs"] == 12
    assert s["synthetic"] is True and s["dataset"] == "fake-test" and s["device"] == "cpu"
    # the smoke profile's amp is bf16-native: bf16 on this CPU only if the kernel reports AVX512-BF16 or AMX
    native = cpu_flags_say_bf16()
    assert s["dtype"] in (("bfloat16 autocast", "float32") if native is None else
                          ("bfloat16 autocast" if native else "float32",)) and s["images_per_second"] > 0
    assert "stand-in" in s["perceptual_weights"] and "stand-in" in s["perceptual"]
    assert any("stand-in" in x for x in s["standins"])
    samples = sorted((tmp_path / "run" / "samples").glob("*.png"))
    assert [p.name for p in samples] == ["step_000015.png", "step_000030.png"]
    from PIL import Image
    w, h = Image.open(samples[0]).size
    assert w == 3 * 34 * 4 and h == (14 + 34) * 4         # source | target | generated, x4; the one val subject
    import json
    on_disk = json.loads((tmp_path / "run" / "train_summary.json").read_text())
    assert on_disk["final_step"] == 30 and on_disk["perceptual_weights"] == s["perceptual_weights"]


@pytest.mark.parametrize("workers", [0, 1])
def test_resume_is_bit_identical_and_the_log_has_no_duplicates(tmp_path, monkeypatch, workers):
    cache = make_cache()
    cfg = tiny_cfg(steps=6, checkpoint_every=2, log_every=1, sample_every=100, num_workers=workers)
    train(cfg, cache, tmp_path / "straight", progress=False)

    # the same run, killed during step 5 (after step 4's checkpoint and log rows up to 4) ...
    real_step = TrainCore.step
    calls = {"n": 0}

    def dying_step(self, batch, step_index):
        calls["n"] += 1
        if step_index == 4:
            raise KeyboardInterrupt("simulated crash")
        return real_step(self, batch, step_index)

    monkeypatch.setattr(TrainCore, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, cache, tmp_path / "crashed", progress=False)
    monkeypatch.setattr(TrainCore, "step", real_step)
    assert ckpt_io.load_checkpoint(tmp_path / "crashed/checkpoints/last.pt")["step"] == 4
    # ... also killed once more right after a checkpoint, with a stale extra log row
    with open(tmp_path / "crashed/losses.csv", "a") as f:
        f.write("5,1,1,1,1,1,1,1,1,0.0002,9\n")
    # without --resume an existing run is not overwritten
    with pytest.raises(FileExistsError):
        train(cfg, cache, tmp_path / "crashed", progress=False)
    s = train(cfg, cache, tmp_path / "crashed", resume=True, progress=False)
    assert s["start_step"] == 4 and s["final_step"] == 6

    a, b = weights_of(tmp_path / "straight/checkpoints/last.pt"), weights_of(tmp_path / "crashed/checkpoints/last.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    ca = ckpt_io.load_checkpoint(tmp_path / "straight/checkpoints/last.pt")
    cb = ckpt_io.load_checkpoint(tmp_path / "crashed/checkpoints/last.pt")
    for name in ca["optimizers"]:
        for k, st in ca["optimizers"][name]["state"].items():
            assert all(torch.equal(v, cb["optimizers"][name]["state"][k][n]) for n, v in st.items())
    assert ca["sampler"] == cb["sampler"]

    ra, rb = csv_rows(tmp_path / "straight"), csv_rows(tmp_path / "crashed")
    assert [int(r["step"]) for r in rb] == [1, 2, 3, 4, 5, 6]                 # no duplicates, none missing
    drop = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in ra] == \
           [{k: v for k, v in r.items() if k not in drop} for r in rb]
    # resuming a finished run does nothing and says so
    again = train(cfg, cache, tmp_path / "crashed", resume=True, progress=False)
    assert again["steps_this_run"] == 0 and again["reused"] and len(csv_rows(tmp_path / "crashed")) == 6
    assert again["images_per_second"] == s["images_per_second"]             # the finished run's summary


def test_checkpoint_loads_with_weights_only_and_gives_a_generator(tmp_path):
    cache = make_cache()
    cfg = tiny_cfg(steps=2, checkpoint_every=2)
    train(cfg, cache, tmp_path / "run", progress=False)
    path = tmp_path / "run/checkpoints/last.pt"
    raw = torch.load(path, map_location="cpu", weights_only=True)             # no arbitrary pickles
    assert raw["format"] == ckpt_io.FORMAT and raw["step"] == 2
    assert set(raw["models"]) == {"generator", "d_image", "d_geometry"}
    assert set(raw["optimizers"]) == {"generator", "d_image", "d_geometry"}
    assert isinstance(raw["config"], dict) and raw["config"]["model"]["ngf"] == 8
    assert raw["provenance"]["perceptual_standin"] is True and raw["provenance"]["synthetic"] is True
    assert isinstance(raw["rng"][0]["torch"], torch.Tensor) and raw["sampler"]["position"] == 8
    model = load_trained(path, "cpu")
    g, cfg2 = model.generator, model.config
    assert not g.training and cfg2.model == cfg.model
    sd = raw["models"]["generator"]
    assert all(torch.equal(v, sd[k]) for k, v in g.state_dict().items())
    batch = PairDataset(cache, "val").batch([0, 1])
    from lmexpr_nb.landmarks.heatmaps import landmark_heatmaps
    hm = lambda lm: landmark_heatmaps(lm, 32, cfg.model.heatmap_sigma)    # noqa: E731
    with torch.no_grad():
        out = g(batch["source"], hm(batch["source_landmarks"]), hm(batch["target_landmarks"]), batch["target_label"])
    assert out.shape == (2, 3, 32, 32) and torch.isfinite(out).all()
    # rng states round-trip
    state = ckpt_io.rng_state()
    x = (np.random.rand(), torch.rand(1))
    ckpt_io.set_rng_state(state)
    assert (np.random.rand(), torch.rand(1)) == x


@pytest.mark.parametrize("log_every", [1, 5])
def test_nan_guard_stops_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, log_every):
    cache = make_cache()
    cfg = tiny_cfg(steps=8, checkpoint_every=2, log_every=log_every, sample_every=100)
    real_pixel = losses.pixel_loss
    calls = {"n": 0}

    def poisoned(fake, target):
        calls["n"] += 1
        v = real_pixel(fake, target)
        return v * float("nan") if calls["n"] == 3 else v                 # step 3 goes bad

    monkeypatch.setattr(losses, "pixel_loss", poisoned)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"step 3: g_pixel") as e:
        train(cfg, cache, out, progress=False)
    assert "\n" not in str(e.value) and "last good checkpoint kept" in str(e.value)
    c = ckpt_io.load_checkpoint(out / "checkpoints/last.pt")
    assert c["step"] == 2                                                    # not overwritten at step 4
    assert all(torch.isfinite(v).all() for sd in c["models"].values() for v in sd.values() if v.is_floating_point())
    assert all(int(r["step"]) <= 2 for r in csv_rows(out))
    import json
    assert json.loads((out / "train_summary.json").read_text())["status"].startswith("failed: non-finite loss at step 3")


def test_missing_vgg_weights_give_the_message_and_the_standin_only_when_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LMEXPR_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("LMEXPR_NO_DOWNLOAD", "1")
    from lmexpr_nb.common.weights import MissingWeightsError
    cache = make_cache()
    cfg = tiny_cfg(steps=1).updated({"loss": {"vgg_standin": False}})
    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
        train(cfg, cache, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
    # the CLI: one line, exit code 2, no traceback (paper profile, which has no stand-in)
    (tmp_path / "cache").mkdir()
    monkeypatch.setattr(trainer, "_open_cache", lambda d: (cache, Path(d)))
    rc = train_main(["--config", str(_yaml(tmp_path, vgg_standin=False)), "--data", str(tmp_path / "cache"),
                               "--out", str(tmp_path / "cli"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "vgg19-dcbb9e9d.pth" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    # asked for: the stand-in, and the summary says so
    rc = train_main(["--config", str(_yaml(tmp_path, vgg_standin=True)), "--data", str(tmp_path / "cache"),
                               "--out", str(tmp_path / "cli2"), "--steps", "1", "--no-progress"])
    out = capsys.readouterr().out
    import json
    s = json.loads((tmp_path / "cli2" / "train_summary.json").read_text())
    assert rc == 0 and s["final_step"] == 1 and s["steps"] == 1 and "stand-in" in s["perceptual_weights"]
    assert "stand-in" in out


def _yaml(tmp_path, vgg_standin):
    import yaml
    cfg = tiny_cfg(steps=3)
    p = tmp_path / f"tiny_{vgg_standin}.yaml"
    p.write_text(yaml.safe_dump({"config": {"model": {"image_size": 32, "ngf": 8, "ndf": 8, "n_blocks": 1},
                                            "data": {"image_size": 32},
                                            "loss": {"vgg_standin": vgg_standin},
                                            "train": {"steps": 3, "batch_size": 2, "num_workers": 0,
                                                      "device": "cpu", "checkpoint_every": cfg.train.checkpoint_every}}}))
    return p


def test_cli_errors_are_one_line(tmp_path, capsys):
    rc = train_main(["--profile", "smoke", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "no preprocessed cache" in err and len(err.strip().splitlines()) == 1
    rc = train_main(["--profile", "nosuch", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert rc == 2 and "no profile" in capsys.readouterr().err


def test_bench_train_runs_and_says_the_gpu_figure_is_unmeasured(tmp_path, capsys):
    from lmexpr_nb.bench.train import bench_main
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine the benchmark times the paper config")
    rc = bench_main(["--profile", str(_yaml(tmp_path, vgg_standin=False)), "--out", str(tmp_path / "b.json"),
                     "--steps", "1", "--warmup", "0", "--no-smoke"])
    out = capsys.readouterr().out
    import json
    r = json.loads((tmp_path / "b.json").read_text())
    assert rc == 0 and r["gpu_measured"] is False and "unmeasured" in r["gpu_note"] and "unmeasured" in out
    assert r["fp32_eager"]["images_per_second"] > 0 and r["flops_per_image"] > 0
    assert r["fp32_eager"]["losses_finite"] and "mfu_of_bf16_peak" not in r["fp32_eager"]
