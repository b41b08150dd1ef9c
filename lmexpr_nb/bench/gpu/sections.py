"""`bench gpu`'s measuring sections: the device, training throughput, inference, the compile child.

Each returns its JSON dict; GPU-only paths are {"status": UNMEASURED} on the CPU. See main.py's doc.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

from lmexpr_nb.bench.infer import _reference_outputs, fold_batchnorm, time_infer_path as infer_path
from lmexpr_nb.bench.train import _with_flops, count_step_flops, gpu_peak, time_train_path as train_path
from lmexpr_nb.model.nets import build_generator

UNMEASURED = "unmeasured: no GPU"


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


def device_section(device: torch.device, peak_tflops: float | None) -> dict:
    d = {"status": "ok", "type": device.type, "torch": torch.__version__, "python": platform.python_version(),
         "host": platform.node(), "cpu_count": os.cpu_count(), "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = peak_tflops * 1e12 if peak_tflops else gpu_peak(name)
        p = torch.cuda.get_device_properties(device)
        d.update(name=name, gpus=torch.cuda.device_count(), capability=list(torch.cuda.get_device_capability(device)),
                 memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                 peak_bf16_dense_tflops=round(peak / 1e12, 1) if peak else None,
                 peak_source="--peak-tflops" if peak_tflops else ("table (bench.train.PEAK_BF16_DENSE, datasheet)"
                                                                  if peak else "unknown GPU: pass --peak-tflops"))
    else:
        d.update(name=platform.processor() or platform.machine(), gpus=0, peak_bf16_dense_tflops=UNMEASURED)
    return d


def train_section(cfg, device: torch.device, peak: float | None) -> dict:
    b = cfg.train.batch_size
    cuda = device.type == "cuda"
    r = {"status": "ok", "what": "train.TrainCore.step (G fwd+bwd+Adam, both Ds, perceptual) on random "
                                 "in-memory batches", "batch": b, "paths": {}}
    # FLOPs are counted once on the GPU (an instrumented step costs seconds on a small CPU, and MFU is GPU-only)
    flops = count_step_flops(cfg, b, device) / b if cuda else None
    r["flops_per_image"] = flops if cuda else "not counted on CPU"
    n, w = (10, 3) if cuda else (1, 1)
    for name, amp, cl in (("fp32_eager", None, False), ("bf16_channels_last", torch.bfloat16, True)):
        if not cuda and name != "fp32_eager":
            r["paths"][name] = {"status": UNMEASURED}
            continue
        try:                  # one failing path keeps the others' numbers
            _reset_peak(device)
            p = train_path(cfg, b, device, amp=amp, channels_last=cl, compile=False, warmup=w, steps=n)
            p = _with_flops(p, flops, peak) if flops else p
            p.update(status="ok", peak_memory_gib=_peak_gib(device))
            if not cuda:
                p["mfu_of_bf16_peak"] = UNMEASURED
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            p = {"status": _err(e)}
        r["paths"][name] = p
    r["paths"]["bf16_channels_last_compile"] = {"status": "pending: compile child" if cuda else UNMEASURED}
    if cuda and all("images_per_second" in r["paths"][k] for k in ("fp32_eager", "bf16_channels_last")):
        f = r["paths"]["fp32_eager"]["images_per_second"]
        r["speedup_bf16_cl_vs_fp32"] = round(r["paths"]["bf16_channels_last"]["images_per_second"] / f, 3)
    return r


def infer_section(cfg, device: torch.device) -> dict:
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    G = build_generator(cfg.model).to(device).eval()
    kw = dict(runs=100, warmup=10, batch=64, iters=10) if cuda else dict(runs=3, warmup=1, batch=4, iters=1)
    r = {"status": "ok", "what": "generator forward, random weights, eval mode, inputs on the device",
         "batch1_runs": kw["runs"], "batch": kw["batch"], "paths": {}}
    if cuda:
        torch.backends.cudnn.benchmark = True
    ref = _reference_outputs(G, cfg.model, device, kw["batch"]) if cuda else None
    folded = fold_batchnorm(G).to(dtype=torch.bfloat16, memory_format=torch.channels_last) if cuda else None
    plan = [("fp32_eager", G, torch.float32, False, "eager", None),
            ("bf16_bn_folded", folded, torch.bfloat16, True, "eager", ref),
            ("bf16_cudagraph", folded, torch.bfloat16, True, "cudagraph", ref)]
    for name, model, dtype, cl, mode, reference in plan:
        if not cuda and name != "fp32_eager":
            r["paths"][name] = {"status": UNMEASURED}
            continue
        try:                  # one failing path keeps the others' numbers
            _reset_peak(device)
            p = infer_path(name, model, cfg.model, device, dtype=dtype, channels_last=cl, mode=mode,
                          reference=reference, **kw)
            p.update(status="ok", peak_memory_gib=_peak_gib(device))
        except Exception as e:  # noqa: BLE001
            traceback.print_exc()
            p = {"status": _err(e)}
        r["paths"][name] = p
    r["paths"]["bf16_compile"] = {"status": "pending: compile child" if cuda else UNMEASURED}
    return r


def compile_child(cfg, device: torch.device, peak: float | None, mode: str, out_json: Path,
                  flops: float | None = None) -> None:
    """In a child process: the two torch.compile paths, inference first (the cheaper compile); the JSON
    is rewritten after each one, so a timeout during the second keeps the first."""
    out: dict = {}

    def save():
        out_json.write_text(json.dumps(out))
    try:
        torch.manual_seed(0)
        torch.backends.cudnn.benchmark = True
        G = build_generator(cfg.model).to(device).eval()
        ref = _reference_outputs(G, cfg.model, device, 64)
        Gc = torch.compile(fold_batchnorm(G).to(dtype=torch.bfloat16, memory_format=torch.channels_last),
                           mode=mode, dynamic=False)
        _reset_peak(device)
        p = infer_path("bf16_compile", Gc, cfg.model, device, dtype=torch.bfloat16, channels_last=True,
                       mode="compile", reference=ref, runs=100, warmup=10, batch=64, iters=10)
        out["infer"] = dict(p, status="ok", compile_mode=mode, peak_memory_gib=_peak_gib(device))
        del G, Gc, ref
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        out["infer"] = {"status": _err(e)}
    save()
    try:
        b = cfg.train.batch_size
        flops = flops or count_step_flops(cfg, b, device) / b
        _reset_peak(device)
        p = _with_flops(train_path(cfg, b, device, amp=torch.bfloat16, channels_last=True, compile=True, warmup=5,
                                   steps=10), flops, peak)
        out["train"] = dict(p, status="ok" if p["compile"] else "error: compiled path fell back",
                            peak_memory_gib=_peak_gib(device))
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        out["train"] = {"status": _err(e)}
    save()


def run_compile_child(args, timeout_s: float, tmp: Path, flops: float | None = None) -> dict:
    out = tmp / "compile.json"
    cmd = [sys.executable, "-m", "lmexpr_nb.bench.gpu.main", "--child-compile", str(out), "--config", args.config,
           "--compile-mode", args.compile_mode, "--device", "cuda"] + (["--flops", str(flops)] if flops else [])
    if args.peak_tflops:
        cmd += ["--peak-tflops", str(args.peak_tflops)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=timeout_s, cwd=os.getcwd())
        status = "ok" if proc.returncode == 0 else f"error: child exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        status = f"error: timed out after {timeout_s:.0f} s"
    got = json.loads(out.read_text()) if out.is_file() else {}
    for k in ("train", "infer"):
        got.setdefault(k, {"status": status if status != "ok" else "error: no result"})
    got["status"], got["seconds"], got["timeout_s"] = status, round(time.perf_counter() - t0, 1), round(timeout_s)
    return got


