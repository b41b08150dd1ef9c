"""`python -m lmexpr_nb bench train`: training throughput and model FLOP utilisation.

What is timed is the real training step (train.TrainCore.step: G forward, Eq. 7 loss with
both discriminators and the perceptual net, G backward + Adam, then both D updates),
on fixed random batches of the right shapes already in host memory (loading and
preprocessing are benchmarked elsewhere), with the device synchronised around the timed
steps. FLOPs per training image are counted once with torch.utils.flop_counter on one
eager fp32 step (forward and backward of every conv / matmul; 2 FLOPs per multiply-add)
and divided by the batch; achieved FLOP/s = FLOPs per image x images per second.

On CUDA, for the paper config at its batch (16), in one run:
  (a) plain loop: fp32, eager, contiguous (NCHW) tensors;
  (b) optimised:  bf16 autocast, channels_last, torch.compile.
Utilisation = achieved FLOP/s / peak, with the dense bf16 tensor-core peak of the GPU
(PEAK_BF16_DENSE by device name, e.g. H100 SXM 989.4 TFLOP/s; or --peak-tflops), for both paths.
On CPU (no GPU): path (a) only, a couple of steps of the paper config at batch 2 and the
smoke config at its own batch; achieved GFLOP/s, no utilisation; the GPU figures are
reported as unmeasured. The perceptual net uses the stand-in weights (same cost as
ImageNet VGG19), so the benchmark needs no downloads.
"""
from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from lmexpr_nb.common.files import write_json
from lmexpr_nb.config import Config, load_profile
from lmexpr_nb.model.describe import count_params
from lmexpr_nb.model.nets import build_discriminators, build_generator
from lmexpr_nb.train.core import TrainCore

# Dense (no sparsity) bf16 tensor-core peaks by GPU model: NVIDIA's datasheet figure "with sparsity" / 2
# (H100 SXM = 132 SMs x 1830 MHz x 4096 FLOP/clock). Matched against torch.cuda.get_device_name in this
# order, most specific first ("NVIDIA H100 80GB HBM3" is the SXM card, "NVIDIA H100 PCIe" and the HBM2e
# cards the PCIe one); an H100 or H200 the table cannot place exactly gets no figure, never a neighbour's.
PEAK_BF16_DENSE = (
    (r"GH200", 989.4e12, "GH200 (Hopper, SXM-class)"),
    (r"H200 NVL", 835.5e12, "H200 NVL"),
    (r"H200", 989.4e12, "H200 SXM"),
    (r"H100 NVL", 835.5e12, "H100 NVL"),
    (r"H100 PCIe|H100\b.*HBM2e", 756.4e12, "H100 PCIe"),
    (r"H100 SXM|H100\b.*HBM3", 989.4e12, "H100 SXM"),
    (r"H800 PCIe", 756.4e12, "H800 PCIe"),
    (r"H800\b.*(SXM|HBM3)", 989.4e12, "H800 SXM"),
    (r"A100|A800", 312e12, "A100"),
    (r"L40S", 362.05e12, "L40S"),
    (r"L40\b", 181.05e12, "L40"),
    (r"A30\b", 165e12, "A30"),
    (r"A10\b", 125e12, "A10"),
    (r"L4\b", 121e12, "L4"),
)


def gpu_peak(name: str) -> tuple[float | None, str]:
    """(dense bf16 peak in FLOP/s, the model it was read for) of a GPU by its device name, from
    PEAK_BF16_DENSE; (None, why) where the table has no exact entry (then give --peak-tflops)."""
    for pattern, peak, model in PEAK_BF16_DENSE:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return peak, f"datasheet, {model}"
    return None, f"no datasheet entry for {name!r}: pass --peak-tflops"


def random_batches(cfg: Config, batch: int, n: int = 2, seed: int = 0) -> list[dict]:
    """Batches shaped like data.pairs.PairDataset's, random content (speed does not depend on it)."""
    g = torch.Generator().manual_seed(seed)
    s, k, c = cfg.model.image_size, cfg.model.num_landmarks, cfg.model.num_classes
    out = []
    for _ in range(n):
        lm_s = torch.rand(batch, k, 2, generator=g) * (s - 1)
        out.append({"source": torch.rand(batch, 3, s, s, generator=g) * 2 - 1,
                    "target": torch.rand(batch, 3, s, s, generator=g) * 2 - 1,
                    "source_landmarks": lm_s, "target_landmarks": (lm_s + torch.randn(batch, k, 2, generator=g)),
                    "source_label": torch.randint(0, c, (batch,), generator=g),
                    "target_label": torch.randint(0, c, (batch,), generator=g)})
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_step_flops(cfg: Config, batch: int, device: torch.device) -> int:
    """FLOPs of one eager fp32 training step (forward + backward, G and both Ds, perceptual) at `batch`."""
    core = TrainCore(cfg, device, amp=None, channels_last=False, compile=False)
    b = random_batches(cfg, batch, 1)[0]
    counter = FlopCounterMode(display=False)
    with counter:
        core.step(b, 0)
    _sync(device)
    return int(counter.get_total_flops())


def time_train_path(cfg: Config, batch: int, device: torch.device, *, amp, channels_last: bool, compile: bool,
                    warmup: int, steps: int, compile_backend: str = "inductor", after_warmup=None) -> dict:
    """Build a TrainCore for this path and time `steps` training steps after `warmup` ones (the first
    of them timed on its own: it includes compiling and cuDNN's autotuning); `after_warmup()`, if given,
    is called between the two (the compile child takes its counts there)."""
    core = TrainCore(cfg, device, amp=amp, channels_last=channels_last, compile=compile,
                     compile_backend=compile_backend)
    batches = random_batches(cfg, batch, 2)
    if device.type == "cuda":
        batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    first = 0.0
    for i in range(warmup):
        terms = core.step(batches[i % 2], i)
        if i == 0:
            _sync(device)
            first = time.perf_counter() - t0
    _sync(device)
    warm_s = time.perf_counter() - t0
    if after_warmup is not None:
        after_warmup()
    t0 = time.perf_counter()
    for i in range(steps):
        terms = core.step(batches[i % 2], warmup + i)
    _sync(device)
    sec = time.perf_counter() - t0
    finite = bool(torch.isfinite(terms).all())
    r = {"batch": batch, "warmup_steps": warmup, "timed_steps": steps, "warmup_seconds": round(warm_s, 3),
         "first_step_seconds": round(first, 3),
         "seconds": round(sec, 4), "seconds_per_step": round(sec / steps, 5),
         "images_per_second": round(batch * steps / sec, 3), "dtype": core.dtype_name,
         "channels_last": core.channels_last, "compile": core.compiled, "losses_finite": finite}
    if device.type == "cuda":
        r["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return r


def _with_flops(r: dict, flops_per_image: float, peak: float | None, measured: float | None = None) -> dict:
    """Achieved FLOP/s of a timed path; utilisation against the datasheet's dense bf16 `peak`
    ("mfu_of_bf16_peak") and, when given, against a `measured` bf16 matmul peak of the same GPU."""
    achieved = flops_per_image * r["images_per_second"]
    r["achieved_tflops"] = round(achieved / 1e12, 4)
    r["achieved_gflops"] = round(achieved / 1e9, 2)
    if peak:
        r["mfu_of_bf16_peak"] = round(achieved / peak, 4)
    if measured:
        r["mfu_of_measured_bf16_peak"] = round(achieved / measured, 4)
    return r


def bench_train(out_json: str | Path | None = "outputs/bench/train.json", profile: str = "paper",
                device: str = "auto", batch: int | None = None, steps: int | None = None,
                warmup: int | None = None, compile: bool = True, peak_tflops: float | None = None,
                smoke: bool = True, verbose: bool = True) -> dict:
    """Measure training img/s and FLOP utilisation (see the module doc); write `out_json`."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    say = print if verbose else (lambda *a, **k: None)
    cfg = load_profile(profile, {"loss": {"vgg_standin": True}, "train": {"device": dev.type}})
    g = build_generator(cfg.model)
    di, dg = build_discriminators(cfg.model)
    res: dict = {
        "what": "training step img/s (G forward+backward+Adam, both Ds forward+backward+Adam, perceptual net) "
                "on random in-memory batches; FLOPs counted by torch.utils.flop_counter on one eager fp32 step",
        "profile": cfg.profile, "image_size": cfg.model.image_size, "n_blocks": cfg.model.n_blocks,
        "ngf": cfg.model.ngf, "ndf": cfg.model.ndf,
        "params": {"generator": count_params(g), "d_image": count_params(di), "d_geometry": count_params(dg)},
        "perceptual": "random-init VGG19 stand-in (same cost as ImageNet VGG19)",
        "device": str(dev), "torch": torch.__version__, "host": platform.node(),
        "cpu_threads": torch.get_num_threads(),
    }
    del g, di, dg
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        peak = peak_tflops * 1e12 if peak_tflops else gpu_peak(name)[0]
        b = batch or cfg.train.batch_size
        res.update(device_name=name, batch=b,
                   peak_bf16_dense_tflops=round(peak / 1e12, 1) if peak else None,
                   peak_note=None if peak else "unknown GPU: pass --peak-tflops for utilisation")
        say(f"bench train: {name}, paper config, batch {b}: counting FLOPs ...", flush=True)
        flops = count_step_flops(cfg, b, dev)
        res["flops_per_image"] = flops / b
        n, w = steps or 20, warmup if warmup is not None else 3
        say("  (a) fp32 eager ...", flush=True)
        res["fp32_eager"] = _with_flops(time_train_path(cfg, b, dev, amp=None, channels_last=False, compile=False,
                                                  warmup=w, steps=n), flops / b, peak)
        say(f"      {res['fp32_eager']['images_per_second']:.1f} img/s", flush=True)
        say(f"  (b) bf16 autocast + channels_last{' + torch.compile' if compile else ''} "
            f"(warm-up includes compiling) ...", flush=True)
        try:
            opt = time_train_path(cfg, b, dev, amp=torch.bfloat16, channels_last=True, compile=compile,
                            warmup=max(w, 5 if compile else w), steps=n)
        except Exception as e:  # a compile failure must not lose the other numbers
            res["optimised_error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            opt = time_train_path(cfg, b, dev, amp=torch.bfloat16, channels_last=True, compile=False, warmup=w, steps=n)
        res["optimised"] = _with_flops(opt, flops / b, peak)
        res["speedup_vs_fp32_eager"] = round(opt["images_per_second"] / res["fp32_eager"]["images_per_second"], 3)
        res["goal"] = ">= 40% of bf16 dense peak and >= 3x the fp32 eager loop (one H100)"
        res["gpu_measured"] = True
    else:
        b = batch or 2
        n, w = steps or 2, warmup if warmup is not None else 1
        res.update(batch=b, gpu_measured=False,
                   gpu_note="GPU figures unmeasured: no CUDA device in this run; on CPU only the fp32 eager "
                            "path is timed (bf16 autocast / channels_last / compile are GPU optimisations)")
        say(f"bench train: CPU ({torch.get_num_threads()} threads), paper config at batch {b}: counting FLOPs ...",
            flush=True)
        flops = count_step_flops(cfg, b, dev)
        res["flops_per_image"] = flops / b
        say(f"  {flops / b / 1e9:.1f} GFLOP per training image; timing {n} steps ...", flush=True)
        res["fp32_eager"] = _with_flops(time_train_path(cfg, b, dev, amp=None, channels_last=False, compile=False,
                                                  warmup=w, steps=n), flops / b, None)
        res["optimised"] = None
        if smoke:
            scfg = load_profile("smoke", {"train": {"device": "cpu"}})
            sb = scfg.train.batch_size
            sflops = count_step_flops(scfg, sb, dev)
            r = time_train_path(scfg, sb, dev, amp=None, channels_last=False, compile=False, warmup=1, steps=max(n, 3))
            res["smoke_fp32_eager"] = {"profile": "smoke", "image_size": scfg.model.image_size,
                                       "n_blocks": scfg.model.n_blocks, "ngf": scfg.model.ngf,
                                       "flops_per_image": sflops / sb, **_with_flops(r, sflops / sb, None)}
    _report(res, say)
    if out_json:
        write_json(out_json, res)
        say(f"wrote {out_json}")
    return res


def _report(res: dict, say) -> None:
    fpi = res["flops_per_image"]
    say(f"paper config ({res['image_size']}px, {res['n_blocks']} blocks, G {res['params']['generator'] / 1e6:.1f} M "
        f"params): {fpi / 1e9:.1f} GFLOP per training image (G+Ds fwd+bwd, perceptual), batch {res['batch']}, "
        f"{res['device']}{' ' + res.get('device_name', '') if res.get('device_name') else ''}")
    for key, label in (("fp32_eager", "(a) fp32 eager"), ("optimised", "(b) bf16+channels_last+compile")):
        r = res.get(key)
        if not r:
            continue
        util = f", {100 * r['mfu_of_bf16_peak']:.1f}% of bf16 dense peak" if "mfu_of_bf16_peak" in r else ""
        say(f"  {label:<34} {r['images_per_second']:9.2f} img/s  {r['achieved_tflops'] * 1e3:9.1f} GFLOP/s{util}  "
            f"({r['timed_steps']} steps, {r['seconds_per_step']:.3f} s/step, {r['dtype']})")
    if "speedup_vs_fp32_eager" in res:
        say(f"  speed-up of (b) over (a): {res['speedup_vs_fp32_eager']:.2f}x")
    if "optimised_error" in res:
        say(f"  note: torch.compile failed ({res['optimised_error']}); (b) ran without it")
    s = res.get("smoke_fp32_eager")
    if s:
        say(f"  smoke config ({s['image_size']}px, {s['n_blocks']} blocks, ngf {s['ngf']}), batch {s['batch']}: "
            f"{s['images_per_second']:.1f} img/s, {s['achieved_gflops']:.1f} GFLOP/s, "
            f"{s['flops_per_image'] / 1e9:.2f} GFLOP per training image")
    if not res.get("gpu_measured"):
        say(f"  {res['gpu_note']}")


def bench_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lmexpr bench train", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="outputs/bench/train.json", help="JSON file to write")
    ap.add_argument("--profile", default="paper", help="profile whose model is timed (default paper)")
    ap.add_argument("--device", default="auto", help="auto | cuda | cpu")
    ap.add_argument("--batch", type=int, default=None, help="default: the profile's on CUDA, 2 on CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on CUDA, 2 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (compile happens here)")
    ap.add_argument("--no-compile", action="store_true", help="path (b) without torch.compile")
    ap.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak of this GPU")
    ap.add_argument("--no-smoke", action="store_true", help="CPU: skip the smoke-config measurement")
    a = ap.parse_args(argv)
    try:
        bench_train(a.out, a.profile, a.device, a.batch, a.steps, a.warmup, compile=not a.no_compile,
                    peak_tflops=a.peak_tflops, smoke=not a.no_smoke)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"lmexpr bench train: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(bench_main())
