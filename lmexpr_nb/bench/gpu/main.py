"""`python -m lmexpr_nb bench gpu`: one prepared call that measures everything the GPU goals need.

A GPU is lent now and then, for minutes: this command finishes inside `--minutes` (default 8.0,
so the whole call, Python's start-up included, stays under 9 minutes) and writes everything into one folder (`--out`), at most
eight files of simple names, none over 16 MiB:

    bench_gpu.json   every section's numbers (below), the device, the config, the summary rows
    summary.md       the summary table printed at the end
    eval.npz         the learning check's generated validation images (for --finish)
    samples.png      sample grid of the learning check (source / target / warp / ours over time)

Sections, in this order (each one guarded: a failure is recorded and the next one runs):
  train_throughput  the kit's training step (train/core.py's TrainCore) on the PAPER config at batch 16:
                    fp32 eager; bf16 autocast + channels_last; + torch.compile. img/s, MFU against
                    the device's dense bf16 peak (bench.train.PEAK_BF16_DENSE by device name, or
                    --peak-tflops), peak GPU memory of each. FLOPs counted once (torch.utils.flop_counter).
  inference         the generator forward: batch-1 latency (median, p90) and throughput at batch 64,
                    fp32 eager; bf16 + BatchNorm folded into the convs; that captured as a CUDA graph;
                    through torch.compile. Peak memory of each; max |diff| against fp32.
  ddp               DistributedDataParallel on NCCL with every visible GPU (one is enough: the NCCL
                    path still runs; bench/gpu/ddp.py), in child processes with a timeout.
  compile           the two torch.compile paths run in a child process with a timeout (a compile that
                    hangs cannot eat the window), inference first; their numbers land in the two
                    sections above.
  learning          a short paper-architecture training on the synthetic default at 128 px (bf16) for
                    the minutes left, snapshots of PSNR/SSIM against wall seconds, then Table 5's numbers
                    on the validation subjects beside copy and warp (bench/gpu/learn.py).
On CPU (`--device cpu`, e.g. `--minutes 0.5`) the same command runs with the tiny config: what the
CPU can run is measured, and every GPU-only figure (bf16, channels_last, CUDA graphs, compile, NCCL,
MFU, GPU memory) is written as "unmeasured: no GPU". Nothing here needs dlib or papermill (the
device machine has neither): `bench gpu --finish DIR`, run afterwards where dlib is, adds the
landmark NME of every snapshot and of the final images, and identity (Rank-1, TAR@FAR) with dlib's
face descriptor (bench/gpu/finish.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import torch

from lmexpr_nb.bench.gpu.data import synthetic_cache
from lmexpr_nb.bench.gpu.ddp import run_ddp
from lmexpr_nb.bench.gpu.finish import finish
from lmexpr_nb.bench.gpu.learn import learning_check
from lmexpr_nb.bench.gpu.sections import (
    UNMEASURED,
    _err,
    compile_child,
    device_section,
    infer_section,
    run_compile_child,
    train_section,
)
from lmexpr_nb.bench.gpu.summary import JSON_NAME, SUMMARY_NAME, clean, summary_markdown, summary_rows
from lmexpr_nb.bench.train import gpu_peak
from lmexpr_nb.config import load_profile

SECTIONS = ("device", "data", "train_throughput", "inference", "ddp", "learning")
TRAIN_PATHS = ("fp32_eager", "bf16_channels_last", "bf16_channels_last_compile")
INFER_PATHS = ("fp32_eager", "bf16_bn_folded", "bf16_cudagraph", "bf16_compile")
TINY = {"data": {"image_size": 32}, "train": {"batch_size": 4},
        "model": {"image_size": 32, "ngf": 4, "ndf": 4, "n_blocks": 1, "heatmap_sigma": 1.5}}


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


def _write(out: Path, res: dict, say=print) -> None:
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
    res = {"what": "bench gpu: training/inference speed, DDP, and a short learning check (see lmexpr_nb.bench.gpu.main)",
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
        cuda = dev.type == "cuda"
        r = run_ddp(cfg, cfg.train.batch_size, 3 if cuda else 1, 10 if cuda else 1, tmp / "ddp.json",
                    timeout_s=max(30.0, min(120.0, budget.left() * 0.2)))
        return r if cuda else {"status": UNMEASURED, "backend": "nccl", "cpu_gloo_check": r}
    _guard(res, "ddp", ddp_sec, say)
    if dev.type == "cuda" and not args.no_compile:
        fl = res["sections"].get("train_throughput", {}).get("flops_per_image")
        c = run_compile_child(args, max(45.0, min(args.compile_timeout, budget.left() * 0.35)), tmp,
                              fl if isinstance(fl, float) else None)
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
        if "cache" not in cache_box:
            raise RuntimeError("no data (the data section failed)")
        margin = 10.0 if dev.type == "cuda" else 1.5          # writing the JSON and the summary
        say(f"[learning] until {budget.left() - margin:.0f} s from now ({args.config} config, batch "
            f"{cfg.train.batch_size})", flush=True)
        progress = res["sections"]["learning"] = {"status": "running"}
        return learning_check(cfg, cache_box["cache"], dev, budget.t0 + budget.total - margin, out,
                     max_train_seconds=args.learn_seconds, progress=progress, log=lambda m: say(m, flush=True))
    _guard(res, "learning", learn_sec, say)
    with lock:
        timer.cancel()
        res["seconds_total"] = round(budget.elapsed(), 1)
        _write(out, res, say)
    shutil.rmtree(tmp, ignore_errors=True)
    return res


def bench_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="lmexpr bench gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="folder for the (at most 8) result files (default outputs/bench/gpu; "
                                                "with --finish: where the finished results go, default DIR)")
    ap.add_argument("--device", default="auto", help="auto | cuda | cpu")
    ap.add_argument("--minutes", type=float, default=8.0,
                    help="wall-time budget of the sections (default 8.0: with start-up the call stays under 9 min)")
    ap.add_argument("--config", choices=("paper", "tiny"), default=None,
                    help="model config: paper (default on CUDA) or tiny (default on CPU)")
    ap.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of this GPU (else the table's)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile paths")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode for inference (default 'default')")
    ap.add_argument("--compile-timeout", type=float, default=180.0, help="seconds for the compile child at most")
    ap.add_argument("--learn-seconds", type=float, default=None,
                    help="at most this many seconds of training in the learning check (default: what the budget leaves)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (default: 1 with --device cpu, else torch's choice)")
    ap.add_argument("--finish", metavar="DIR", default=None,
                    help="after a run: add landmark NME and identity (needs dlib) to DIR's results")
    ap.add_argument("--child-compile", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--flops", type=float, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.argv = argv
    prog = "lmexpr bench gpu"
    if a.threads:
        torch.set_num_threads(a.threads)
    elif a.device == "cpu" and not a.finish:
        torch.set_num_threads(1)      # the tiny CPU check: small convolutions run fastest on one thread
    try:
        if a.child_compile:
            dev = torch.device("cuda")
            cfg = bench_config(a.config or "paper", dev)
            peak = a.peak_tflops * 1e12 if a.peak_tflops else gpu_peak(torch.cuda.get_device_name(dev))
            compile_child(cfg, dev, peak, a.compile_mode, Path(a.child_compile), a.flops)
            return 0
        if a.finish:
            finish(Path(a.finish), Path(a.out) if a.out else None)
            return 0
        if a.minutes <= 0:
            raise ValueError("--minutes must be > 0")
        a.out = a.out or "outputs/bench/gpu"
        res = bench_gpu(a)
    except (FileNotFoundError, ValueError, RuntimeError, PermissionError) as e:
        print(f"{prog}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    bad = [k for k, v in res["sections"].items() if str(v.get("status", "")).startswith("error")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(bench_main())
