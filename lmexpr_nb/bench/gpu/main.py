"""`python -m lmexpr_nb bench gpu`: one prepared call that measures everything the GPU goals need.

A GPU is lent now and then, for minutes: this command finishes inside `--minutes` (default 8.0,
so the whole call, Python's start-up included, stays under 9 minutes) and writes everything into one
folder (`--out`), at most eight files of simple names, none over 16 MiB:

    bench_gpu.json   every section's numbers (below), the device, the config, the summary rows
    summary.md       the summary table printed at the end
    eval.npz         the learning check's generated validation images and what --finish needs
    samples.png      sample grid of the learning check (source / target / warp / ours over time)
    .bench_gpu.lock  held while a run writes (a second run into the same folder is refused)

Sections, in this order (each one guarded: a failure is recorded and the next one runs):
  device            the GPU, its datasheet dense bf16 peak (exact per model, bench.train.PEAK_BF16_DENSE, or
                    --peak-tflops) and the bf16 peak measured now (sections.measure_matmul_peak, ~1 s)
  train_throughput  the kit's training step (train/core.py's TrainCore) on the PAPER config at batch 16:
                    fp32 eager with TF32 off; the same with TF32; bf16 autocast + channels_last; then
                    + torch.compile in a child process (compiled.py) with a floor of time of its own
                    (clock.py), the first compile of the call. img/s, MFU against both peaks, peak GPU
                    memory. FLOPs counted once (torch.utils.flop_counter).
  inference         the generator forward: batch-1 latency (median, p90) and throughput at batch 64 over
                    30 calls: fp32 eager with TF32 off (the reference), with TF32, bf16 + BatchNorm folded
                    into the convs, that captured as a CUDA graph; then through torch.compile in a second
                    child. Peak memory of each; relative error ||y - ref|| / ||ref|| against the reference.
  ddp               DistributedDataParallel on NCCL with every visible GPU (one is enough: the NCCL
                    path still runs; bench/gpu/ddp.py), in child processes with a timeout.
  data              the synthetic default rendered into memory (bench/gpu/data.py).
  learning          a short paper-architecture training on the synthetic default at 128 px (bf16) for
                    the seconds left, snapshots of PSNR/SSIM/sharpness against wall seconds, then Table 5's
                    numbers on the validation subjects beside copy and warp, with the realism metrics
                    (bench/gpu/learn.py, bench/gpu/realism.py).
Every path runs with cuDNN's autotuner on (as the kit's trainer) and records the TF32 state it ran
under; every compiled figure records its compile seconds, graphs, graph breaks and recompiles, and
says "fell back to eager" where that happened. The watchdog (clock.py) writes what there is when the
budget runs out (exit status 3), and never over a run that finished.
On CPU (`--device cpu`, e.g. `--minutes 2`) the same command runs with the tiny config: what the
CPU can run is measured, the compile children run with TorchDynamo's "eager" backend as a check of
their code (`cpu_check`, beside DDP's gloo check), and every GPU-only figure (bf16, channels_last,
TF32, CUDA graphs, compile, NCCL, MFU, GPU memory) is written as "unmeasured: no GPU". Nothing here
needs dlib or papermill (the device machine has neither): `bench gpu --finish DIR`, run afterwards
where dlib is, adds the landmark NME of every snapshot and of the final images, FD-dlib and KID-dlib,
and identity (Rank-1, TAR@FAR) with dlib's face descriptor (bench/gpu/finish.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from lmexpr_nb.bench.gpu.clock import CPU_PLAN, GPU_PLAN, Budget, Watchdog, child_timeout, kill_group
from lmexpr_nb.bench.gpu.compiled import run_compile_child
from lmexpr_nb.bench.gpu.data import synthetic_cache
from lmexpr_nb.bench.gpu.ddp import run_ddp
from lmexpr_nb.bench.gpu.finish import finish
from lmexpr_nb.bench.gpu.learn import learning_check
from lmexpr_nb.bench.gpu.sections import (
    INFER_PATHS,
    TRAIN_PATHS,
    UNMEASURED,
    _err,
    bench_config,
    device_section,
    infer_section,
    peaks_of,
    precision_state,
    train_section,
)
from lmexpr_nb.bench.gpu.summary import (
    JSON_NAME,
    LOCK_NAME,
    SUMMARY_NAME,
    clean,
    speedups,
    summary_markdown,
    summary_rows,
)
from lmexpr_nb.bench.train import _with_flops
from lmexpr_nb.common.files import exclusive_lock, writable_dir, write_text

SECTIONS = ("device", "train_throughput", "inference", "ddp", "data", "learning")
COMPILED = {"train": ("train_throughput", "bf16_channels_last_compile"), "infer": ("inference", "bf16_compile")}


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


def skeleton(device: torch.device) -> dict:
    """Every section and path before anything ran: GPU-only entries are marked unmeasured on the CPU
    from the start, the rest "not run" until their numbers arrive (so a run the budget cuts short
    still writes a complete JSON)."""
    todo = {"status": "not run: the time budget ran out"}
    gpu_only = {"status": UNMEASURED} if device.type != "cuda" else todo
    return {"device": dict(todo),
            "train_throughput": {**todo, "paths": {p: dict(todo if p == "fp32_eager" else gpu_only)
                                                   for p in TRAIN_PATHS}},
            "inference": {**todo, "paths": {p: dict(todo if p == "fp32_eager" else gpu_only) for p in INFER_PATHS}},
            "ddp": dict(gpu_only), "data": dict(todo), "learning": dict(todo)}


def _write(out: Path, res: dict, say=print) -> None:
    text = "{}"
    for _ in range(3):            # the watchdog may write while a section adds its numbers: retry
        try:
            res["summary"] = summary_rows(res)
            text = json.dumps(clean(res), indent=1, allow_nan=False)
            break
        except RuntimeError:
            time.sleep(0.05)
    write_text(out / JSON_NAME, text + "\n")
    md = summary_markdown(res)
    write_text(out / SUMMARY_NAME, md + "\n")
    say("\n" + md, flush=True)


def bench_gpu(args, say=print) -> dict:
    budget = Budget(args.minutes)
    dev = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if args.device == "auto" else args.device))
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but torch sees no CUDA GPU")
    plan = GPU_PLAN if dev.type == "cuda" else CPU_PLAN
    plan = dataclasses.replace(plan, train_compile=args.train_compile_seconds or plan.train_compile,
                               infer_compile=args.infer_compile_seconds or plan.infer_compile)
    args.config = args.config or ("paper" if dev.type == "cuda" else "tiny")
    cfg = bench_config(args.config, dev)
    out = writable_dir(args.out, "bench gpu output folder")
    with exclusive_lock(out / LOCK_NAME, "bench gpu run"):
        return _run(args, cfg, dev, plan, budget, out, say)


def _run(args, cfg, dev: torch.device, plan, budget: Budget, out: Path, say) -> dict:
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True     # every path, as the kit's trainer has it on CUDA
    res = {"what": "bench gpu: training/inference speed, DDP, and a short learning check "
                   "(see lmexpr_nb.bench.gpu.main)",
           "command": " ".join(["python -m lmexpr_nb bench gpu"] + (args.argv or [])), "minutes": args.minutes,
           "config_name": args.config, "gpu_measured": cuda, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
           "config": {"model": cfg.model.__dict__, "batch": cfg.train.batch_size, "lr": cfg.train.lr,
                      "perceptual": "random-init VGG19 stand-in"},
           "settings": {**precision_state(), "plan_seconds": dataclasses.asdict(plan),
                        "note": "cuDNN autotuning on for every path (warm-up keeps it out of the timings); fp32 "
                                "paths with TF32 off, fp32_tf32 paths with it on, bf16 paths with PyTorch's "
                                "defaults; each figure records its own state under 'precision'"},
           "data": "synthetic default (not real faces)", "sections": skeleton(dev)}
    if not cuda:
        res["gpu_note"] = (f"{UNMEASURED}: this run is on the CPU; every GPU-only figure (bf16, channels_last, TF32, "
                           "CUDA graphs, torch.compile, NCCL, MFU, GPU memory) is marked so")

    def on_fire():                  # the hard stop: end the children, write what there is, then leave
        try:
            res["deadline_hit"] = True
            for child in list(wd.children):
                kill_group(child)
            for tmp_file in out.glob(".*.tmp"):           # a write the stop interrupted
                tmp_file.unlink(missing_ok=True)
            res["seconds_total"] = round(budget.elapsed(), 1)
            _write(out, res, say)
        except Exception:  # noqa: BLE001 -- say why, and still leave
            traceback.print_exc()
        finally:
            os._exit(3)
    wd = Watchdog(budget, on_fire)
    wd.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    _guard(res, "device", lambda: device_section(dev, args.peak_tflops), say)
    peaks = peaks_of(res["sections"]["device"])
    _guard(res, "train_throughput", lambda: train_section(cfg, dev, peaks), say)
    _compile_child(res, "train", args, dev, plan, budget, tmp, wd, peaks, say)
    _guard(res, "inference", lambda: infer_section(cfg, dev), say)
    _compile_child(res, "infer", args, dev, plan, budget, tmp, wd, peaks, say)

    def ddp_sec():
        r = run_ddp(cfg, cfg.train.batch_size, 3 if cuda else 1, 10 if cuda else 1, tmp / "ddp.json",
                    timeout_s=max(30.0, min(90.0, budget.left() * 0.2)))
        return r if cuda else {"status": UNMEASURED, "backend": "nccl", "cpu_gloo_check": r}
    _guard(res, "ddp", ddp_sec, say)
    cache_box = {}

    def data_sec():
        full = args.config == "paper"
        kw = (dict(subjects=24, frames=10, size=(640, 490), val_fraction=0.25) if full else
              dict(subjects=4, frames=6, size=(128, 98), val_fraction=0.5))
        workers = max(1, min(16, (os.cpu_count() or 1) - 1)) if cuda else 1
        t0 = time.perf_counter()
        c = synthetic_cache(cfg.model.image_size, workers=workers, **kw)
        cache_box["cache"] = c
        return {"status": "ok", "frames": len(c), "subjects": kw["subjects"], "frames_per_sequence": kw["frames"],
                "val_fraction": kw["val_fraction"], "frame_size": list(kw["size"]), "image_size": cfg.model.image_size,
                "val_subjects": c.meta["val_subjects"], "workers": workers,
                "seconds": round(time.perf_counter() - t0, 1), "built": c.meta["built"]}
    _guard(res, "data", data_sec, say)

    def learn_sec():
        if "cache" not in cache_box:
            raise RuntimeError("no data (the data section failed)")
        margin = 10.0 if cuda else 3.0          # writing the JSON and the summary
        say(f"[learning] until {budget.left() - margin:.0f} s from now ({args.config} config, batch "
            f"{cfg.train.batch_size})", flush=True)
        progress = res["sections"]["learning"] = {"status": "running"}
        return learning_check(cfg, cache_box["cache"], dev, budget.deadline - margin, out,
                              max_train_seconds=args.learn_seconds, progress=progress, log=lambda m: say(m, flush=True))
    _guard(res, "learning", learn_sec, say)
    tr = res["sections"]["train_throughput"]
    if "paths" in tr:
        tr["speedups"] = speedups(tr["paths"])
    if wd.finish():                 # from here on the deadline cannot write: this run's result stands
        res["seconds_total"] = round(budget.elapsed(), 1)
        _write(out, res, say)
    shutil.rmtree(tmp, ignore_errors=True)
    return res


def _compile_child(res: dict, kind: str, args, dev, plan, budget: Budget, tmp: Path, wd, peaks, say) -> None:
    """One compile child (compiled.py) for the time the plan gives it; its figure lands in its section
    (on the CPU as the `cpu_check` of an unmeasured figure)."""
    cuda = dev.type == "cuda"
    t = child_timeout(kind, budget.left(), plan)
    if args.no_compile:
        fig = {"status": "skipped: --no-compile"}
    elif t <= 0:
        fig = {"status": f"skipped: {budget.left():.0f} s left, too little beside the sections after it"}
    else:
        if cuda:
            torch.cuda.empty_cache()          # the child needs its own memory, not this process's cache
        say(f"[compile {kind}] in a child process, at most {t:.0f} s", flush=True)
        fig = run_compile_child(kind, args.config, dev, t, tmp, backend="inductor" if cuda else "eager",
                                mode=args.compile_mode, watchdog=wd)
        flops = res["sections"]["train_throughput"].get("flops_per_image")
        if kind == "train" and isinstance(fig.get("images_per_second"), float) and isinstance(flops, float):
            _with_flops(fig, flops, *peaks)
    say(f"[compile {kind}] {fig['status']} ({fig.get('child_seconds', 0)} s)", flush=True)
    sec, path = COMPILED[kind]
    res["sections"][sec].setdefault("paths", {})[path] = fig if cuda else {"status": UNMEASURED, "cpu_check": fig}


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
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="dense bf16 peak of this GPU (else the datasheet table's, by device name)")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile paths")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode for inference (default 'default')")
    ap.add_argument("--train-compile-seconds", type=float, default=None,
                    help=f"time of the training compile child (default {GPU_PLAN.train_compile:.0f} on a GPU; "
                         "taken from the learning check)")
    ap.add_argument("--infer-compile-seconds", type=float, default=None,
                    help=f"most time of the inference compile child (default {GPU_PLAN.infer_compile:.0f} on a GPU)")
    ap.add_argument("--learn-seconds", type=float, default=None,
                    help="at most this many seconds of training in the learning check "
                         "(default: what the budget leaves)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (default: 1 with --device cpu, else torch's choice)")
    ap.add_argument("--finish", metavar="DIR", default=None,
                    help="after a run: add landmark NME, FD-dlib/KID-dlib and identity (needs dlib) to DIR's results")
    a = ap.parse_args(argv)
    a.argv = argv
    prog = "lmexpr bench gpu"
    if a.threads:
        torch.set_num_threads(a.threads)
    elif a.device == "cpu" and not a.finish:
        torch.set_num_threads(1)      # the tiny CPU check: small convolutions run fastest on one thread
    try:
        if a.finish:
            finish(Path(a.finish), Path(a.out) if a.out else None)
            return 0
        for name in ("minutes", "train_compile_seconds", "infer_compile_seconds", "learn_seconds", "peak_tflops"):
            v = getattr(a, name)
            if v is not None and not v > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {v}")
        a.out = a.out or "outputs/bench/gpu"
        res = bench_gpu(a)
    except (FileNotFoundError, ValueError, RuntimeError, PermissionError) as e:
        print(f"{prog}: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    bad = [k for k, v in res["sections"].items() if str(v.get("status", "")).startswith("error")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(bench_main())
