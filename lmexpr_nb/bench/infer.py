"""`python -m lmexpr_nb bench infer`: generator latency (batch 1) and throughput (batched).

What is timed is one generator forward, G(source image, source heatmaps, target heatmaps,
label), on inputs already on the device (the 2 x 68 heatmaps are made on the device from
landmarks beforehand; their own cost is reported separately as `heatmaps_ms`). The weights are
random (ModelConfig() defaults = the paper config unless told otherwise): speed does not
depend on them. Eval mode (BatchNorm running statistics, no dropout), no autograd.

- latency: `runs` single-image calls after `warmup` untimed ones, each call timed on its own
  with the device synchronised: median, p90, mean, min (ms) and frames/s = 1000 / median;
- throughput: `iters` back-to-back calls at batch `batch`, synchronised once: images/s.

On CPU (no GPU): path "fp32_eager" only (plus "fp32_eager_bn_folded", the same net with each
BatchNorm folded into the preceding conv), and the smoke config for comparison; GPU figures
are reported as unmeasured. On CUDA, in the same run:
  (a) fp32_eager:            fp32, NCHW, eager;
  (b) bf16_cl_eager:         bf16 weights and activations (a pure-bf16 copy of the net rather
                             than autocast: no per-op casts, which matter at batch 1),
                             channels_last, BatchNorm folded into the convs, eager;
  (c) bf16_cl_cudagraph:     (b) captured once per batch size as a CUDA graph and replayed;
  (d) bf16_cl_compile:       (b) through torch.compile(mode="max-autotune") (Inductor's own
                             CUDA graphs included); warm-up includes compiling.
Every optimised path is checked against (a): max |difference| of the output images and the
relative error ||y - y_a|| / ||y_a|| (meaningful where the outputs are near zero).
Goal: batch-1 latency <= 3 ms (>= 300 frames/s) on one H100.
"""
from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from lmexpr_nb.common.files import write_json
from lmexpr_nb.config import ModelConfig, load_profile
from lmexpr_nb.landmarks.heatmaps import landmark_heatmaps
from lmexpr_nb.model.describe import count_flops, count_params
from lmexpr_nb.model.nets import build_generator

GOAL_MS = 3.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def example_batch(cfg: ModelConfig, batch: int, device, seed: int = 0) -> tuple:
    """(image, source heatmaps, target heatmaps, label) with random content, on `device`."""
    g = torch.Generator().manual_seed(seed)
    s, k = cfg.image_size, cfg.num_landmarks
    img = torch.rand(batch, 3, s, s, generator=g) * 2 - 1
    lm = torch.rand(batch, k, 2, generator=g) * (s * 0.6) + s * 0.2
    lm_t = lm + torch.randn(batch, k, 2, generator=g)
    lab = torch.randint(0, cfg.num_classes, (batch,), generator=g)
    hs = landmark_heatmaps(lm.to(device), s, cfg.heatmap_sigma)
    ht = landmark_heatmaps(lm_t.to(device), s, cfg.heatmap_sigma)
    return img.to(device), hs, ht, lab.to(device)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` (eval mode) with every BatchNorm that directly follows a conv (or a
    transposed conv) inside an nn.Sequential folded into that conv's weights and bias (the
    BatchNorm becomes nn.Identity). Same outputs in eval mode, fewer kernels."""
    m = copy.deepcopy(model).eval()
    for seq in m.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(bn, nn.BatchNorm2d) \
                    and bn.track_running_stats:
                seq[i] = fuse_conv_bn_eval(conv, bn, transpose=isinstance(conv, nn.ConvTranspose2d))
                seq[i + 1] = nn.Identity()
    return m


def _as(inputs: tuple, dtype, channels_last: bool) -> tuple:
    img, hs, ht, lab = inputs
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return tuple(t.to(dtype=dtype, memory_format=fmt) for t in (img, hs, ht)) + (lab,)


def _latency(fn, device, runs: int, warmup: int) -> dict:
    with torch.inference_mode():
        t0 = time.perf_counter()
        for i in range(warmup):
            fn()
            _sync(device)
            if i == 0:
                first = (time.perf_counter() - t0) * 1e3     # includes compiling / autotuning
        ts = []
        for _ in range(runs):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    med = statistics.median(ts)
    p90 = ts[min(len(ts) - 1, max(0, int(round(0.9 * (len(ts) - 1)))))]
    return {"runs": runs, "warmup": warmup, "median_ms": round(med, 4), "p90_ms": round(p90, 4),
            "mean_ms": round(statistics.fmean(ts), 4), "min_ms": round(ts[0], 4),
            "frames_per_second": round(1e3 / med, 2), "first_call_ms": round(first, 2) if warmup else None}


def _throughput(fn, device, batch: int, iters: int, warmup: int) -> dict:
    with torch.inference_mode():
        t0 = time.perf_counter()
        for i in range(warmup):
            fn()
            if i == 0:
                _sync(device)
                first = (time.perf_counter() - t0) * 1e3     # includes compiling / autotuning
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        _sync(device)
        sec = time.perf_counter() - t0
    return {"batch": batch, "iters": iters, "seconds": round(sec, 4),
            "images_per_second": round(batch * iters / sec, 2), "ms_per_batch": round(sec / iters * 1e3, 3),
            "first_call_ms": round(first, 2) if warmup else None}


def make_runner(G: nn.Module, inputs: tuple, mode: str):
    """A no-argument callable running G on `inputs` and returning its output: "eager" calls G;
    "cudagraph" captures one call as a CUDA graph (after 3 warm-up calls on a side stream) and
    replays it, returning the graph's static output tensor."""
    if mode == "eager":
        return lambda: G(*inputs)
    if mode != "cudagraph":
        raise ValueError(mode)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.inference_mode():
        with torch.cuda.stream(s):
            for _ in range(3):       # warm up cuDNN's algorithm choice outside the capture
                G(*inputs)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = G(*inputs)

    def replay():
        graph.replay()
        return out
    return replay


def time_infer_path(name: str, G: nn.Module, cfg: ModelConfig, device, *, dtype, channels_last: bool, mode: str,
                    runs: int, warmup: int, batch: int, iters: int, reference: dict | None, on_result=None) -> dict:
    """Batch-1 latency, then throughput at `batch`, of one path. Against `reference` (fp32 outputs on the
    same inputs): max |y - ref| and the relative error ||y - ref|| / ||ref|| (the one that means something
    when the outputs are near zero). `on_result(r)`, if given, is called after each of the two parts."""
    r = {"path": name, "dtype": str(dtype).replace("torch.", ""), "channels_last": channels_last, "mode": mode}
    for b, key in ((1, "latency_batch1"), (batch, "throughput")):
        inputs = _as(example_batch(cfg, b, device), dtype, channels_last)
        fn = make_runner(G, inputs, mode if mode != "compile" else "eager")
        r[key] = (_latency(fn, device, runs, warmup) if b == 1 and key == "latency_batch1"
                  else _throughput(fn, device, b, iters, max(1, warmup // 2)))
        if reference is not None and key in reference:
            with torch.inference_mode():
                y, ref = fn().float(), reference[key]
            part = key.split('_')[0]
            r[f"max_abs_diff_vs_fp32_{part}"] = round(float((y - ref).abs().max()), 5)
            r[f"rel_err_vs_fp32_{part}"] = float(torch.linalg.vector_norm(y - ref)
                                                 / torch.linalg.vector_norm(ref).clamp_min(1e-30))
        if on_result is not None:
            on_result(r)
    return r


def _reference_outputs(G, cfg, device, batch) -> dict:
    with torch.inference_mode():
        return {"latency_batch1": G(*example_batch(cfg, 1, device)).float(),
                "throughput": G(*example_batch(cfg, batch, device)).float()}


def _heatmaps_ms(cfg: ModelConfig, device, runs: int = 20) -> float:
    lm = (torch.rand(1, cfg.num_landmarks, 2) * cfg.image_size).to(device)
    fn = lambda: (landmark_heatmaps(lm, cfg.image_size, cfg.heatmap_sigma),  # noqa: E731
                  landmark_heatmaps(lm, cfg.image_size, cfg.heatmap_sigma))
    return _latency(fn, device, runs, 3)["median_ms"]


def bench_infer(out_json: str | Path | None = "outputs/bench/infer.json", device: str = "auto",
                config: ModelConfig | None = None, runs: int | None = None, warmup: int | None = None,
                batch: int | None = None, iters: int | None = None, compile: bool = True,
                compile_mode: str = "max-autotune", cuda_graphs: bool = True, smoke: bool = True,
                verbose: bool = True) -> dict:
    """Measure generator latency and throughput (see the module doc); write `out_json`."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    say = print if verbose else (lambda *a, **k: None)
    cfg = config or ModelConfig()
    torch.manual_seed(0)
    G = build_generator(cfg).to(dev).eval()
    try:
        gflop = count_flops(cfg).get("generator", 0) / 1e9
    except Exception:   # noqa: BLE001 -- a FLOP count is a nicety, never a reason to fail
        gflop = None
    res: dict = {
        "what": "generator forward only (inputs on the device: image, 2x68 heatmaps, label), random weights, "
                "eval mode, no autograd; latency = per-call wall clock with device sync",
        "config": {k: getattr(cfg, k) for k in ("image_size", "ngf", "n_blocks", "num_landmarks", "num_classes")},
        "config_name": "paper (ModelConfig defaults)" if config is None else "given",
        "params": count_params(G), "gflop_per_image": round(gflop, 2) if gflop else None,
        "device": str(dev), "torch": torch.__version__, "host": platform.node(),
        "cpu_threads": torch.get_num_threads(), "goal": f"batch-1 latency <= {GOAL_MS} ms on one H100",
        "paths": {},
    }
    if dev.type == "cuda":
        res["device_name"] = torch.cuda.get_device_name(dev)
        runs, warmup = runs or 200, warmup if warmup is not None else 20
        batch, iters = batch or 64, iters or 20
        torch.backends.cudnn.benchmark = True
        res["fp32_convs_use_tf32"] = bool(torch.backends.cudnn.allow_tf32)   # PyTorch's default for convolutions
        ref = _reference_outputs(G, cfg, dev, batch)
        kw = dict(runs=runs, warmup=warmup, batch=batch, iters=iters)
        say(f"bench infer: {res['device_name']}, {_cfg_text(cfg)}, {runs} runs after {warmup} warm-up ...", flush=True)
        res["paths"]["fp32_eager"] = time_infer_path("fp32_eager", G, cfg, dev, dtype=torch.float32,
                                                     channels_last=False, mode="eager", reference=None, **kw)
        _line(say, res["paths"]["fp32_eager"])
        Gb = fold_batchnorm(G).to(dtype=torch.bfloat16, memory_format=torch.channels_last)
        opts = [("bf16_cl_eager", Gb, "eager")]
        if cuda_graphs:
            opts.append(("bf16_cl_cudagraph", Gb, "cudagraph"))
        if compile:
            opts.append(("bf16_cl_compile", None, "compile"))
        for name, model, mode in opts:
            try:
                if mode == "compile":
                    model = torch.compile(Gb, mode=compile_mode, dynamic=False)
                r = time_infer_path(name, model, cfg, dev, dtype=torch.bfloat16, channels_last=True, mode=mode,
                              reference=ref, **{**kw, "warmup": max(warmup, 5)})
                if mode == "compile":
                    r["compile_mode"] = compile_mode
            except Exception as e:  # noqa: BLE001 -- one failing path must not lose the others
                r = {"path": name, "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
            res["paths"][name] = r
            _line(say, r)
        ok = [r for r in res["paths"].values() if "latency_batch1" in r]
        best = min(ok, key=lambda r: r["latency_batch1"]["median_ms"])
        res["best_batch1"] = {"path": best["path"], "median_ms": best["latency_batch1"]["median_ms"]}
        res["goal_met"] = best["latency_batch1"]["median_ms"] <= GOAL_MS
        res["gpu_measured"] = True
        res["heatmaps_ms"] = _heatmaps_ms(cfg, dev)
    else:
        runs, warmup = runs or 5, warmup if warmup is not None else 1
        batch, iters = batch or 4, iters or 2
        kw = dict(runs=runs, warmup=warmup, batch=batch, iters=iters)
        say(f"bench infer: CPU ({torch.get_num_threads()} threads), {_cfg_text(cfg)}, fp32, {runs} runs after "
            f"{warmup} warm-up ...", flush=True)
        res["paths"]["fp32_eager"] = time_infer_path("fp32_eager", G, cfg, dev, dtype=torch.float32,
                                                     channels_last=False, mode="eager", reference=None, **kw)
        _line(say, res["paths"]["fp32_eager"])
        ref = _reference_outputs(G, cfg, dev, batch)
        res["paths"]["fp32_eager_bn_folded"] = time_infer_path("fp32_eager_bn_folded", fold_batchnorm(G), cfg, dev,
                                                         dtype=torch.float32, channels_last=False, mode="eager",
                                                         reference=ref, **kw)
        _line(say, res["paths"]["fp32_eager_bn_folded"])
        res["heatmaps_ms"] = _heatmaps_ms(cfg, dev)
        res["gpu_measured"] = False
        res["gpu_note"] = ("GPU figures unmeasured: no CUDA device in this run. On CUDA the same command times "
                           "fp32 eager vs bf16 + channels_last + BN folding, eagerly, as a CUDA graph and through "
                           f"torch.compile(mode='{compile_mode}'), against the {GOAL_MS} ms goal")
        if smoke:
            scfg = load_profile("smoke").model
            torch.manual_seed(0)
            Gs = build_generator(scfg).eval()
            r = time_infer_path("smoke_fp32_eager", Gs, scfg, dev, dtype=torch.float32, channels_last=False,
                                mode="eager", reference=None, runs=max(runs, 20), warmup=2, batch=8, iters=5)
            r["config"] = {k: getattr(scfg, k) for k in ("image_size", "ngf", "n_blocks")}
            res["smoke_fp32_eager"] = r
            say(f"  smoke config ({_cfg_text(scfg)}):", flush=True)
            _line(say, r)
    if not res.get("gpu_measured"):
        say(f"  {res['gpu_note']}")
    else:
        say(f"  best batch-1: {res['best_batch1']['path']} {res['best_batch1']['median_ms']:.3f} ms "
            f"(goal <= {GOAL_MS} ms: {'met' if res['goal_met'] else 'NOT met'})")
    say(f"  heatmaps (2 x {cfg.num_landmarks} maps, batch 1): {res['heatmaps_ms']:.3f} ms")
    if out_json:
        write_json(out_json, res)
        say(f"wrote {out_json}")
    return res


def _cfg_text(cfg: ModelConfig) -> str:
    return f"{cfg.image_size}px, ngf {cfg.ngf}, {cfg.n_blocks} blocks"


def _line(say, r: dict) -> None:
    if "error" in r:
        say(f"  {r['path']:<22} failed: {r['error']}", flush=True)
        return
    lat, thr = r["latency_batch1"], r["throughput"]
    diff = r.get("max_abs_diff_vs_fp32_latency")
    say(f"  {r['path']:<22} batch 1: median {lat['median_ms']:9.3f} ms, p90 {lat['p90_ms']:9.3f} ms "
        f"({lat['frames_per_second']:.1f} frames/s, N={lat['runs']}) | batch {thr['batch']}: "
        f"{thr['images_per_second']:9.1f} img/s ({r['dtype']}{', channels_last' if r['channels_last'] else ''})"
        + (f" | max|diff| vs fp32 {diff:.4f}" if diff is not None else ""), flush=True)


def bench_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lmexpr bench infer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="outputs/bench/infer.json", help="JSON file to write")
    ap.add_argument("--device", default="auto", help="auto | cuda | cpu")
    ap.add_argument("--profile", default=None,
                    help="time this profile's model config instead of the paper's (ModelConfig defaults)")
    ap.add_argument("--runs", type=int, default=None, help="timed batch-1 calls (default 200 on CUDA, 5 on CPU)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 20 on CUDA, 1 on CPU)")
    ap.add_argument("--batch", type=int, default=None, help="throughput batch (default 64 on CUDA, 4 on CPU)")
    ap.add_argument("--iters", type=int, default=None, help="throughput calls (default 20 on CUDA, 2 on CPU)")
    ap.add_argument("--no-compile", action="store_true", help="CUDA: skip the torch.compile path")
    ap.add_argument("--compile-mode", default="max-autotune", help="torch.compile mode (default max-autotune)")
    ap.add_argument("--no-cuda-graphs", action="store_true", help="CUDA: skip the CUDA-graph path")
    ap.add_argument("--no-smoke", action="store_true", help="CPU: skip the smoke-config measurement")
    a = ap.parse_args(argv)
    try:
        cfg = load_profile(a.profile).model if a.profile else None
        bench_infer(a.out, a.device, cfg, a.runs, a.warmup, a.batch, a.iters, compile=not a.no_compile,
                    compile_mode=a.compile_mode, cuda_graphs=not a.no_cuda_graphs, smoke=not a.no_smoke)
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as e:
        print(f"lmexpr bench infer: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(bench_main())
