"""`python -m lmexpr_nb bench gpu`: one prepared call that measures everything the GPU goals need.

A GPU is lent now and then, for minutes: this command finishes inside `--minutes` (default 8.5,
so the whole call stays under 9 minutes) and writes everything into one folder (`--out`), at most
eight files of simple names, none over 16 MiB:

    bench_gpu.json   every section's numbers (below), the device, the config, the summary rows
    summary.md       the summary table printed at the end
    eval.npz         the learning check's generated validation images (for --finish)
    samples.png      sample grid of the learning check (source / target / warp / ours over time)

Sections, in this order (each one guarded: a failure is recorded and the next one runs):
  train_throughput  the kit's training step (train.TrainCore) on the PAPER config at batch 16:
                    fp32 eager; bf16 autocast + channels_last; + torch.compile. img/s, MFU against
                    the device's dense bf16 peak (bench.train.PEAK_BF16_DENSE by device name, or
                    --peak-tflops), peak GPU memory of each. FLOPs counted once (torch.utils.flop_counter).
  inference         the generator forward: batch-1 latency (median, p90) and throughput at batch 64,
                    fp32 eager; bf16 + BatchNorm folded into the convs; that captured as a CUDA graph;
                    through torch.compile. Peak memory of each; max |diff| against fp32.
  ddp               DistributedDataParallel on NCCL with every visible GPU (one is enough: the NCCL
                    path still runs; bench.gpu_ddp).
  compile           the two torch.compile paths run in a child process with a timeout (a compile that
                    hangs cannot eat the window); their numbers land in the two sections above.
  learning          a short paper-architecture training on the synthetic default at 128 px (bf16) for
                    the minutes left, snapshots of PSNR/SSIM against wall seconds, then Table 5's numbers
                    on the validation subjects beside copy and warp (bench.gpu_learn).
On CPU (`--device cpu`, e.g. `--minutes 0.5`) the same command runs with the tiny config: what the
CPU can run is measured, and every GPU-only figure (bf16, channels_last, CUDA graphs, compile, NCCL,
MFU, GPU memory) is written as "unmeasured: no GPU". Nothing here needs dlib or papermill (the
device machine has neither): `bench gpu --finish DIR`, run afterwards where dlib is, adds the
landmark NME of every snapshot and of the final images, and identity (Rank-1, TAR@FAR) with dlib's
face descriptor (bench.gpu_finish).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import torch

UNMEASURED = "unmeasured: no GPU"
JSON_NAME, SUMMARY_NAME = "bench_gpu.json", "summary.md"
SECTIONS = ("device", "data", "train_throughput", "inference", "ddp", "learning")
TRAIN_PATHS = ("fp32_eager", "bf16_channels_last", "bf16_channels_last_compile")
INFER_PATHS = ("fp32_eager", "bf16_bn_folded", "bf16_cudagraph", "bf16_compile")
TINY = {"data": {"image_size": 32}, "train": {"batch_size": 4},
        "model": {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "heatmap_sigma": 1.5}}


def bench_config(name: str, device: torch.device):
    """The paper config (ModelConfig defaults at 128 px, batch 16) or the tiny CPU check config, with
    the stand-in VGG19 (no weights travel to the device) and a constant learning rate."""
    from ..config import load_profile
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


def _guard(res: dict, key: str, fn, say) -> None:
    """res["sections"][key] = fn(), or an error status (the traceback goes to stderr)."""
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 -- one failing section must not lose the others
        traceback.print_exc()
        out = {"status": _err(e)}
    out.setdefault("section_seconds", round(time.perf_counter() - t0, 1))
    res["sections"][key] = out
    say(f"[{key}] {out.get('status')} ({out['section_seconds']} s)", flush=True)


def _peak_gib(device) -> float | str:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else UNMEASURED


def _reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


# ----------------------------------------------------------------------------- sections

def device_section(device: torch.device, peak_tflops: float | None) -> dict:
    from .train import gpu_peak
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
    from .train import _with_flops, count_step_flops, time_path
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
        _reset_peak(device)
        p = time_path(cfg, b, device, amp=amp, channels_last=cl, compile=False, warmup=w, steps=n)
        p = _with_flops(p, flops, peak) if flops else p
        p.update(status="ok", peak_memory_gib=_peak_gib(device))
        if not cuda:
            p["mfu_of_bf16_peak"] = UNMEASURED
        r["paths"][name] = p
    r["paths"]["bf16_channels_last_compile"] = {"status": "pending: compile child" if cuda else UNMEASURED}
    if cuda and "fp32_eager" in r["paths"]:
        f = r["paths"]["fp32_eager"]["images_per_second"]
        r["speedup_bf16_cl_vs_fp32"] = round(r["paths"]["bf16_channels_last"]["images_per_second"] / f, 3)
    return r


def infer_section(cfg, device: torch.device) -> dict:
    from ..nets import build_generator
    from .infer import _reference_outputs, fold_batchnorm, time_path
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    G = build_generator(cfg.model).to(device).eval()
    kw = dict(runs=100, warmup=10, batch=64, iters=10) if cuda else dict(runs=3, warmup=1, batch=4, iters=1)
    r = {"status": "ok", "what": "generator forward, random weights, eval mode, inputs on the device",
         "batch1_runs": kw["runs"], "batch": kw["batch"], "paths": {}}
    if cuda:
        torch.backends.cudnn.benchmark = True
    ref = _reference_outputs(G, cfg.model, device, kw["batch"])
    dt = torch.bfloat16 if cuda else torch.float32
    folded = fold_batchnorm(G).to(dtype=dt, memory_format=torch.channels_last if cuda else torch.contiguous_format)
    plan = [("fp32_eager", G, torch.float32, False, "eager", None),
            ("bf16_bn_folded", folded, dt, cuda, "eager", ref),
            ("bf16_cudagraph", folded, dt, cuda, "cudagraph", ref)]
    for name, model, dtype, cl, mode, reference in plan:
        if not cuda and name != "fp32_eager":
            r["paths"][name] = {"status": UNMEASURED}
            continue
        _reset_peak(device)
        p = time_path(name, model, cfg.model, device, dtype=dtype, channels_last=cl, mode=mode,
                      reference=reference, **kw)
        p.update(status="ok", peak_memory_gib=_peak_gib(device))
        r["paths"][name] = p
    r["paths"]["bf16_compile"] = {"status": "pending: compile child" if cuda else UNMEASURED}
    return r


def compile_child(cfg, device: torch.device, peak: float | None, mode: str, out_json: Path) -> None:
    """In a child process: the two torch.compile paths; the JSON is rewritten after each one."""
    from ..nets import build_generator
    from .infer import _reference_outputs, fold_batchnorm, time_path as infer_path
    from .train import _with_flops, count_step_flops, time_path as train_path
    out: dict = {}

    def save():
        out_json.write_text(json.dumps(out))
    try:
        b = cfg.train.batch_size
        flops = count_step_flops(cfg, b, device) / b
        _reset_peak(device)
        p = _with_flops(train_path(cfg, b, device, amp=torch.bfloat16, channels_last=True, compile=True, warmup=5,
                                   steps=10), flops, peak)
        out["train"] = dict(p, status="ok" if p["compile"] else "error: compiled path fell back",
                            peak_memory_gib=_peak_gib(device))
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        out["train"] = {"status": _err(e)}
    save()
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
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        out["infer"] = {"status": _err(e)}
    save()


def run_compile_child(args, timeout_s: float, tmp: Path) -> dict:
    out = tmp / "compile.json"
    cmd = [sys.executable, "-m", "lmexpr_nb.bench.gpu", "--child-compile", str(out), "--config", args.config,
           "--compile-mode", args.compile_mode, "--device", "cuda"]
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


# ----------------------------------------------------------------------------- orchestration

def skeleton(device: torch.device) -> dict:
    """Every section and path before anything ran: GPU-only entries are marked unmeasured on the CPU
    from the start, the rest "not run" until their numbers arrive (so a run the budget cuts short
    still writes a complete JSON)."""
    todo = {"status": "not run: the time budget ran out"}
    gpu_only = {"status": UNMEASURED} if device.type != "cuda" else todo
    return {"device": dict(todo), "data": dict(todo),
            "train_throughput": {**todo, "paths": {p: dict(todo if p == "fp32_eager" else gpu_only)
                                                   for p in TRAIN_PATHS}},
            "inference": {**todo, "paths": {p: dict(todo if p == "fp32_eager" else gpu_only) for p in INFER_PATHS}},
            "ddp": dict(gpu_only if device.type != "cuda" else todo), "learning": dict(todo)}


class Budget:
    def __init__(self, minutes: float):
        self.t0, self.total = time.perf_counter(), float(minutes) * 60

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.total - self.elapsed()


def clean(o):
    """JSON-safe copy: NaN / inf become None (strict JSON), numpy scalars plain numbers."""
    import math
    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in list(o.items())}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        try:
            o = o.item()
        except (ValueError, TypeError):
            return str(o)
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o if isinstance(o, (str, int, float, bool)) or o is None else str(o)


def _write(out: Path, res: dict, say=print) -> None:
    from .gpu_summary import summary_markdown, summary_rows
    text = "{}"
    for _ in range(3):            # the watchdog may write while a section adds its numbers: retry
        try:
            res["summary"] = summary_rows(res)
            text = json.dumps(clean(res), indent=1, allow_nan=False)
            break
        except RuntimeError:
            time.sleep(0.05)
    (out / JSON_NAME).write_text(text + "\n")
    md = summary_markdown(res)
    (out / SUMMARY_NAME).write_text(md + "\n")
    say("\n" + md, flush=True)


def bench_gpu(args, say=print) -> dict:
    budget = Budget(args.minutes)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA GPU")
    args.config = args.config or ("paper" if dev.type == "cuda" else "tiny")
    cfg = bench_config(args.config, dev)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"what": "bench gpu: training/inference speed, DDP, and a short learning check (see lmexpr_nb.bench.gpu)",
           "command": " ".join(["python -m lmexpr_nb bench gpu"] + (args.argv or [])), "minutes": args.minutes,
           "config_name": args.config, "gpu_measured": dev.type == "cuda", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "config": {"model": cfg.model.__dict__, "batch": cfg.train.batch_size, "lr": cfg.train.lr,
                      "perceptual": "random-init VGG19 stand-in"},
           "data": "synthetic default (not real faces)", "sections": skeleton(dev)}
    if dev.type != "cuda":
        res["gpu_note"] = (f"{UNMEASURED}: this run is on the CPU; every GPU-only figure (bf16, channels_last, CUDA "
                           "graphs, torch.compile, NCCL, MFU, GPU memory) is marked so")
    lock = threading.Lock()

    def deadline():                 # the hard stop: write what there is, then leave
        with lock:
            res["deadline_hit"] = True
            for tmp_file in out.glob(".*.tmp"):           # a write the stop interrupted
                tmp_file.unlink(missing_ok=True)
            res["seconds_total"] = round(budget.elapsed(), 1)
            _write(out, res, say)
        os._exit(3)
    timer = threading.Timer(max(1.0, budget.total), deadline)
    timer.daemon = True
    timer.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    peak_holder = {}

    def dev_sec():
        d = device_section(dev, args.peak_tflops)
        peak_holder["peak"] = (d["peak_bf16_dense_tflops"] * 1e12 if isinstance(d.get("peak_bf16_dense_tflops"),
                                                                                 float) else None)
        return d
    _guard(res, "device", dev_sec, say)
    cache_box = {}

    def data_sec():
        from .gpu_learn import synthetic_cache
        full = args.config == "paper"
        kw = (dict(subjects=24, frames=10, size=(640, 490), val_fraction=0.25) if full else
              dict(subjects=4, frames=6, size=(128, 98), val_fraction=0.5))
        workers = max(1, min(16, (os.cpu_count() or 1) - 1)) if dev.type == "cuda" else 1
        t0 = time.perf_counter()
        c = synthetic_cache(cfg.model.image_size, workers=workers, **kw)
        cache_box["cache"] = c
        return {"status": "ok", "frames": len(c), "subjects": kw["subjects"], "frames_per_sequence": kw["frames"],
                "val_fraction": kw["val_fraction"],
                "frame_size": list(kw["size"]), "image_size": cfg.model.image_size,
                "val_subjects": c.meta["val_subjects"], "workers": workers,
                "seconds": round(time.perf_counter() - t0, 1), "built": c.meta["built"]}
    _guard(res, "data", data_sec, say)
    _guard(res, "train_throughput", lambda: train_section(cfg, dev, peak_holder.get("peak")), say)
    _guard(res, "inference", lambda: infer_section(cfg, dev), say)

    def ddp_sec():
        from .gpu_ddp import run_ddp
        cuda = dev.type == "cuda"
        r = run_ddp(cfg, cfg.train.batch_size, 3 if cuda else 1, 10 if cuda else 1, tmp / "ddp.json",
                    timeout_s=max(30.0, min(120.0, budget.left() * 0.2)))
        return r if cuda else {"status": UNMEASURED, "backend": "nccl", "cpu_gloo_check": r}
    _guard(res, "ddp", ddp_sec, say)
    if dev.type == "cuda" and not args.no_compile:
        c = run_compile_child(args, max(45.0, min(args.compile_timeout, budget.left() * 0.35)), tmp)
        res["compile_child"] = {k: c[k] for k in ("status", "seconds", "timeout_s")}
        for sec, path, key in (("train_throughput", "bf16_channels_last_compile", "train"),
                               ("inference", "bf16_compile", "infer")):
            if "paths" in res["sections"].get(sec, {}):
                res["sections"][sec]["paths"][path] = c[key]
        say(f"[compile] {c['status']} ({c['seconds']} s)", flush=True)
    elif dev.type == "cuda":
        for sec, path in (("train_throughput", "bf16_channels_last_compile"), ("inference", "bf16_compile")):
            if "paths" in res["sections"].get(sec, {}):
                res["sections"][sec]["paths"][path] = {"status": "skipped: --no-compile"}

    def learn_sec():
        from .gpu_learn import learn
        if "cache" not in cache_box:
            raise RuntimeError("no data (the data section failed)")
        margin = 10.0 if dev.type == "cuda" else 1.5          # writing the JSON and the summary
        say(f"[learning] until {budget.left() - margin:.0f} s from now ({args.config} config, batch "
            f"{cfg.train.batch_size})", flush=True)
        progress = res["sections"]["learning"] = {"status": "running"}
        return learn(cfg, cache_box["cache"], dev, budget.t0 + budget.total - margin, out,
                     max_train_seconds=args.learn_seconds, progress=progress, log=lambda m: say(m, flush=True))
    _guard(res, "learning", learn_sec, say)
    with lock:
        timer.cancel()
        res["seconds_total"] = round(budget.elapsed(), 1)
        _write(out, res, say)
    return res


def bench_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="lmexpr bench gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="outputs/bench/gpu", help="folder for the (at most 8) result files")
    ap.add_argument("--device", default="auto", help="auto | cuda | cpu")
    ap.add_argument("--minutes", type=float, default=8.5, help="wall-time budget for the whole run (default 8.5)")
    ap.add_argument("--config", choices=("paper", "tiny"), default=None,
                    help="model config: paper (default on CUDA) or tiny (default on CPU)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of this GPU (else the table's)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile paths")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode for inference (default 'default')")
    ap.add_argument("--compile-timeout", type=float, default=180.0, help="seconds for the compile child at most")
    ap.add_argument("--learn-seconds", type=float, default=None,
                    help="at most this many seconds of training in the learning check (default: what the budget leaves)")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    ap.add_argument("--finish", metavar="DIR", default=None,
                    help="after a run: add landmark NME and identity (needs dlib) to DIR's results")
    ap.add_argument("--child-compile", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.argv = argv
    prog = "lmexpr bench gpu"
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        if a.child_compile:
            dev = torch.device("cuda")
            cfg = bench_config(a.config or "paper", dev)
            from .train import gpu_peak
            peak = a.peak_tflops * 1e12 if a.peak_tflops else gpu_peak(torch.cuda.get_device_name(dev))
            compile_child(cfg, dev, peak, a.compile_mode, Path(a.child_compile))
            return 0
        if a.finish:
            from .gpu_finish import finish
            finish(Path(a.finish), Path(a.out) if "--out" in argv else None)
            return 0
        if a.minutes <= 0:
            raise ValueError("--minutes must be > 0")
        res = bench_gpu(a)
    except (FileNotFoundError, ValueError, RuntimeError, PermissionError) as e:
        print(f"{prog}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    bad = [k for k, v in res["sections"].items() if str(v.get("status", "")).startswith("error")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(bench_main())
