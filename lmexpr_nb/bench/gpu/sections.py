"""`bench gpu`'s measuring sections in this process: the device, training throughput, inference.

Each returns its JSON dict; a GPU-only path is {"status": UNMEASURED} on the CPU, unless `gpu_paths`
asks for it there (the tests run the GPU paths' code on the CPU that way; CUDA graphs need CUDA).

Settings are the same for every path compared: cuDNN's autotuner (`torch.backends.cudnn.benchmark`)
is on for the whole run on CUDA, as the kit's trainer has it (main.py sets it once; warm-up steps and
calls keep the autotuning out of the timings); the fp32 baselines run with TF32 off for convolutions
and matrix products (`tf32_mode(False)`: true fp32) and the "fp32_tf32" rows beside them with TF32 on;
the bf16 paths run with PyTorch's defaults. Every figure records the state it ran under
(`precision_state`: cudnn_benchmark, tf32_convolutions, tf32_matmul).

MFU: achieved FLOP/s (FLOPs per training image, counted once with torch.utils.flop_counter, x img/s)
over the dense bf16 peak of the datasheet (bench.train.PEAK_BF16_DENSE, by exact GPU model, or
--peak-tflops) and over the bf16 peak measured in this call (`measure_matmul_peak`: large bf16
matrix products, about a second), which is what the card really reaches.
"""
from __future__ import annotations

import os
import platform
import time
import traceback
from contextlib import contextmanager

import torch

from lmexpr_nb.bench.infer import _reference_outputs, fold_batchnorm, time_infer_path as infer_path
from lmexpr_nb.bench.train import _with_flops, count_step_flops, gpu_peak, time_train_path as train_path
from lmexpr_nb.config import load_profile
from lmexpr_nb.model.nets import build_generator

UNMEASURED = "unmeasured: no GPU"
TINY = {"data": {"image_size": 32}, "train": {"batch_size": 4},
        "model": {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "heatmap_sigma": 1.5}}
TRAIN_PATHS = ("fp32_eager", "fp32_tf32_eager", "bf16_channels_last", "bf16_channels_last_compile")
INFER_PATHS = ("fp32_eager", "fp32_tf32_eager", "bf16_bn_folded", "bf16_cudagraph", "bf16_compile")


def bench_config(name: str, device: torch.device):
    """The paper config (ModelConfig defaults at 128 px, batch 16) or the tiny CPU check config, with
    the stand-in VGG19 (no weights travel to the device) and a constant learning rate."""
    over = {"loss": {"vgg_standin": True}, "train": {"device": device.type, "lr_decay_start": 1.0, "num_workers": 0}}
    if name == "tiny":
        over = {**over, **{k: {**over.get(k, {}), **v} for k, v in TINY.items()}}
    elif name != "paper":
        raise ValueError(f"--config must be paper or tiny, got {name!r}")
    cfg = load_profile("paper", over)
    cfg.profile = f"bench-gpu-{name}"
    return cfg


def _err(e: BaseException) -> str:
    msg = str(e).strip().splitlines()
    return f"error: {type(e).__name__}: {msg[0][:300] if msg else ''}"


def _peak_gib(device) -> float | str:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else UNMEASURED


def _reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


@contextmanager
def tf32_mode(enabled: bool | None):
    """TF32 for fp32 convolutions (cuDNN) and matrix products (cuBLAS) on or off for the block, then as
    before; None leaves both as they are."""
    old = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    if enabled is not None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def precision_state() -> dict:
    """The settings a figure ran under (recorded beside every figure)."""
    return {"cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
            "tf32_convolutions": bool(torch.backends.cudnn.allow_tf32),
            "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32)}


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(device: torch.device, n: int = 8192, per_round: int = 20, rounds: int = 6,
                        warmup: int = 3) -> dict:
    """bf16 n x n x n matrix products on random data: the best and the median TFLOP/s over `rounds`
    rounds of `per_round` back-to-back products (after `warmup`; about a second at n = 8192 on an H100)."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, generator=g, device=device, dtype=torch.bfloat16)
    for _ in range(warmup):
        c = a @ b
    _sync(device)
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(per_round):
            c = a @ b
        _sync(device)
        rates.append(2 * n ** 3 * per_round / (time.perf_counter() - t0) / 1e12)
    del a, b, c
    rates.sort()
    return {"tflops_best": float(f"{rates[-1]:.4g}"), "tflops_median": float(f"{rates[len(rates) // 2]:.4g}"),
            "matrix": n, "products": per_round * rounds, "dtype": "bfloat16", "data": "random normal"}


def device_section(device: torch.device, peak_tflops: float | None) -> dict:
    d = {"status": "ok", "type": device.type, "torch": torch.__version__, "python": platform.python_version(),
         "host": platform.node(), "cpu_count": os.cpu_count(), "cpu_threads": torch.get_num_threads(),
         "precision_default": precision_state()}
    if device.type != "cuda":
        d.update(name=platform.processor() or platform.machine(), gpus=0, peak_bf16_dense_tflops=UNMEASURED,
                 measured_bf16_tflops=UNMEASURED)
        return d
    name = torch.cuda.get_device_name(device)
    p = torch.cuda.get_device_properties(device)
    peak, source = (peak_tflops * 1e12, "--peak-tflops") if peak_tflops else gpu_peak(name)
    d.update(name=name, gpus=torch.cuda.device_count(), capability=list(torch.cuda.get_device_capability(device)),
             multiprocessors=p.multi_processor_count, memory_gib=round(p.total_memory / 2**30, 1),
             cuda=torch.version.cuda, peak_bf16_dense_tflops=round(peak / 1e12, 1) if peak else None,
             peak_source=source)
    try:
        m = measure_matmul_peak(device)
        d.update(measured_bf16_tflops=m["tflops_best"], measured_peak=m)
    except Exception as e:  # noqa: BLE001 -- the datasheet MFU still stands
        traceback.print_exc()
        d["measured_bf16_tflops"] = None
        d["measured_peak"] = {"status": _err(e)}
    return d


def peaks_of(dev_section: dict) -> tuple[float | None, float | None]:
    """(datasheet, measured) dense bf16 peaks in FLOP/s from the device section (None where unknown)."""
    def flops(v):
        return v * 1e12 if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    return flops(dev_section.get("peak_bf16_dense_tflops")), flops(dev_section.get("measured_bf16_tflops"))


def train_section(cfg, device: torch.device, peaks: tuple, gpu_paths: bool | None = None) -> dict:
    """fp32 eager (TF32 off), fp32 eager with TF32, bf16 autocast + channels_last: img/s, MFU, memory."""
    b = cfg.train.batch_size
    cuda = device.type == "cuda"
    gpu = cuda if gpu_paths is None else gpu_paths
    r = {"status": "ok", "what": "train.TrainCore.step (G fwd+bwd+Adam, both Ds, perceptual) on random "
                                 "in-memory batches", "batch": b, "paths": {},
         "goal": "compiled >= 3x fp32 eager, >= 40 % of the bf16 dense peak (one H100)"}
    # FLOPs are counted once on the GPU (an instrumented step costs seconds on a small CPU, and MFU is GPU-only)
    flops = count_step_flops(cfg, b, device) / b if cuda else None
    r["flops_per_image"] = flops if cuda else "not counted on CPU"
    n, w = (10, 3) if cuda else (1, 1)
    for name, amp, cl, tf32 in (("fp32_eager", None, False, False), ("fp32_tf32_eager", None, False, True),
                                ("bf16_channels_last", torch.bfloat16, True, None)):
        if name != "fp32_eager" and not gpu:
            r["paths"][name] = {"status": UNMEASURED}
            continue
        p = _measured(device, tf32, lambda: train_path(cfg, b, device, amp=amp, channels_last=cl, compile=False,
                                                       warmup=w, steps=n))
        if p["status"] == "ok":
            p = _with_flops(p, flops, *peaks) if flops else p
            if not cuda:
                p["mfu_of_bf16_peak"] = p["mfu_of_measured_bf16_peak"] = UNMEASURED
        r["paths"][name] = p
    r["paths"]["bf16_channels_last_compile"] = {"status": "pending: compile child" if cuda else UNMEASURED}
    return r


def _measured(device: torch.device, tf32, run) -> dict:
    """One timed path: run() under the TF32 setting, with its precision state, status and peak memory;
    a failure is its status (one failing path keeps the others' numbers)."""
    try:
        _reset_peak(device)
        with tf32_mode(tf32):
            p = run()
            p["precision"] = precision_state()
        p.update(status="ok", peak_memory_gib=_peak_gib(device))
        return p
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        return {"status": _err(e)}


def infer_section(cfg, device: torch.device, gpu_paths: bool | None = None) -> dict:
    """Generator forward: fp32 (TF32 off, the reference), fp32 with TF32, bf16 with BatchNorm folded,
    that as a CUDA graph; batch-1 latency and throughput, relative error against the reference."""
    cuda = device.type == "cuda"
    gpu = cuda if gpu_paths is None else gpu_paths
    torch.manual_seed(0)
    G = build_generator(cfg.model).to(device).eval()
    kw = dict(runs=100, warmup=10, batch=64, iters=30) if cuda else dict(runs=30, warmup=2, batch=4, iters=30)
    r = {"status": "ok", "what": "generator forward, random weights, eval mode, inputs on the device",
         "batch1_runs": kw["runs"], "batch": kw["batch"], "throughput_iters": kw["iters"],
         "reference": "fp32 eager with TF32 off, same inputs", "paths": {}}
    with tf32_mode(False):
        ref = _reference_outputs(G, cfg.model, device, kw["batch"]) if gpu else None
    folded = fold_batchnorm(G).to(dtype=torch.bfloat16, memory_format=torch.channels_last) if gpu else None
    plan = [("fp32_eager", G, torch.float32, False, "eager", None, False),
            ("fp32_tf32_eager", G, torch.float32, False, "eager", ref, True),
            ("bf16_bn_folded", folded, torch.bfloat16, True, "eager", ref, None),
            ("bf16_cudagraph", folded, torch.bfloat16, True, "cudagraph", ref, None)]
    for name, model, dtype, cl, mode, reference, tf32 in plan:
        if (name != "fp32_eager" and not gpu) or (mode == "cudagraph" and not cuda):
            r["paths"][name] = {"status": UNMEASURED}
            continue
        r["paths"][name] = _measured(device, tf32, lambda: infer_path(
            name, model, cfg.model, device, dtype=dtype, channels_last=cl, mode=mode, reference=reference, **kw))
    r["paths"]["bf16_compile"] = {"status": "pending: compile child" if cuda else UNMEASURED}
    return r
