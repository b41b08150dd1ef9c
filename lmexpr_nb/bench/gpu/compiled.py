"""`bench gpu`'s torch.compile figures, each in a child process of its own with its own timeout.

    python -m lmexpr_nb.bench.gpu.compiled {train,infer} OUT_JSON [--config paper] [--device cuda]
                                           [--backend inductor] [--mode default]

A compile that hangs or runs long cannot eat the window: the parent (`run_compile_child`) kills the
child's whole process group (Inductor's compile workers too) at its timeout (clock.child_timeout) and
keeps what the child wrote so far (the JSON is rewritten atomically after each part).

  train  the kit's training step (train.TrainCore: bf16 autocast, channels_last, torch.compile of G and
         both discriminators) at the config's batch: 3 warm-up steps (the first compiles G's forward and
         backward and the discriminators' graphs) then timed steps. Run first, with a floor of time.
  infer  the BatchNorm-folded bf16 channels_last generator through torch.compile(dynamic=False):
         batch-1 latency (compiles the batch-1 graph), then throughput at the batch (a second graph,
         counted as a recompile); relative error against fp32 with TF32 off.

Each compiled figure says what the compile did, from TorchDynamo's own counts (`compile_counts`:
torch._dynamo.utils.counters and get_compilation_metrics): graphs, graph breaks, recompiles (a frame
compiled again for new guards: the discriminators share one forward, used with and without parameter
gradients and at two input widths, so a few are expected), frames whose compile failed (they run
eagerly), compile seconds (the warm-up's wall time beyond steady steps, and TorchDynamo's own), and
recompiles during the timed steps (0, or the figure includes compiling). Where nothing was compiled,
or a frame failed, the figure is marked "fell back to eager" (`compile_verdict`): torch.compile's flag
alone says what was asked, not what ran.

On the CPU (`bench gpu --device cpu`, the check of this code) the backend is "eager": TorchDynamo
traces and counts the same graphs but compiles no kernels; the figures are not GPU figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

from lmexpr_nb.bench.gpu.clock import kill_group
from lmexpr_nb.bench.gpu.sections import (
    _err,
    _peak_gib,
    _reset_peak,
    bench_config,
    precision_state,
    tf32_mode,
)
from lmexpr_nb.bench.infer import _reference_outputs, fold_batchnorm, time_infer_path as infer_path
from lmexpr_nb.bench.train import time_train_path as train_path
from lmexpr_nb.common.files import write_json
from lmexpr_nb.model.nets import build_generator

ROOT = Path(__file__).resolve().parents[3]          # the folder that holds the package


def compile_counts(counters=None, metrics=None) -> dict:
    """TorchDynamo's counts so far in this process. `counters` (a {group: {name: count}} mapping) and
    `metrics` (records with compile_id "frame/attempt", is_forward, fail_type, recompile_reason and
    compile times) default to torch._dynamo.utils's counters and get_compilation_metrics(); tests
    pass fakes. A backward graph's compile has a record of its own (is_forward False, the frame's
    compile_id): it counts as a backward compile, never as a recompile."""
    if counters is None:
        counters = torch._dynamo.utils.counters
    if metrics is None:
        metrics = torch._dynamo.utils.get_compilation_metrics()
    frames = [m for m in metrics if getattr(m, "is_forward", None) is not False]
    recompiles = failed = 0
    seconds = sum(float(getattr(m, "backward_cumulative_compile_time_us", None) or 0.0) / 1e6
                  for m in metrics if getattr(m, "is_forward", None) is False)
    for m in frames:
        attempt = str(getattr(m, "compile_id", None) or "0/0").split("/")[-1]
        if getattr(m, "recompile_reason", None) or (attempt.isdigit() and int(attempt) > 0):
            recompiles += 1
        failed += bool(getattr(m, "fail_type", None))
        seconds += float(getattr(m, "entire_frame_compile_time_s", None) or 0.0)
    return {"graphs": int(counters.get("stats", {}).get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters.get("graph_break", {}).values())),
            "frames": int(counters.get("frames", {}).get("total", 0)),
            "frames_ok": int(counters.get("frames", {}).get("ok", 0)),
            "compiles": len(frames), "backward_compiles": len(metrics) - len(frames), "recompiles": recompiles,
            "failed_compiles": failed, "dynamo_seconds": round(seconds, 2)}


def compile_verdict(before: dict, after: dict, warm: dict | None = None) -> dict:
    """What compiling did between two compile_counts (and during the timed part, after `warm`):
    the counts' differences, and fell_back_to_eager (nothing compiled, or a frame's compile failed)."""
    d = {k: round(after[k] - before[k], 2) if isinstance(after[k], float) else after[k] - before[k] for k in after}
    d["fell_back_to_eager"] = bool(d["graphs"] == 0 or d["failed_compiles"] > 0)
    if warm is not None:
        d["recompiles_while_timed"] = after["recompiles"] - warm["recompiles"]
        d["graphs_while_timed"] = after["graphs"] - warm["graphs"]
    return d


def _status(c: dict) -> str:
    if not c["fell_back_to_eager"]:
        return "ok"
    why = "nothing was compiled" if c["graphs"] == 0 else f"{c['failed_compiles']} frame compile(s) failed"
    return f"fell back to eager ({why})"


def train_child(cfg, device: torch.device, backend: str, out_json: Path) -> dict:
    """The compiled training step (module doc); writes and returns its figure."""
    cuda = device.type == "cuda"
    out = {"stage": "building the compiled TrainCore", "backend": backend}
    write_json(out_json, out)
    before, warm = compile_counts(), {}

    def after_warmup():
        warm.update(compile_counts())
        out["stage"] = "timed steps"
        write_json(out_json, out)
    try:
        _reset_peak(device)
        out["stage"] = "warm-up steps (compiling)"
        write_json(out_json, out)
        p = train_path(cfg, cfg.train.batch_size, device, amp=torch.bfloat16, channels_last=True, compile=True,
                       warmup=3, steps=10 if cuda else 2, compile_backend=backend, after_warmup=after_warmup)
        c = compile_verdict(before, compile_counts(), warm)
        c["compile_seconds"] = round(max(0.0, p["warmup_seconds"] - p["warmup_steps"] * p["seconds_per_step"]), 2)
        p.update(compile=c, backend=backend, precision=precision_state(), peak_memory_gib=_peak_gib(device),
                 status=_status(c))
        out = p
    except Exception as e:  # noqa: BLE001 -- the parent records it
        traceback.print_exc()
        out = {"status": _err(e), "stage": out["stage"], "backend": backend}
    write_json(out_json, out)
    return out


def infer_child(cfg, device: torch.device, backend: str, mode: str, out_json: Path) -> dict:
    """The compiled generator (module doc); rewrites its figure after each part and returns it."""
    cuda = device.type == "cuda"
    kw = dict(runs=100, warmup=10, batch=64, iters=30) if cuda else dict(runs=30, warmup=2, batch=4, iters=30)
    out = {"stage": "building the compiled generator", "backend": backend}
    write_json(out_json, out)
    try:
        torch.manual_seed(0)                  # the same weights as the eager inference section's
        G = build_generator(cfg.model).to(device).eval()
        with tf32_mode(False):
            ref = _reference_outputs(G, cfg.model, device, kw["batch"])
        folded = fold_batchnorm(G).to(dtype=torch.bfloat16, memory_format=torch.channels_last)
        del G
        opts = {"mode": mode} if backend == "inductor" else {}
        Gc = torch.compile(folded, backend=backend, dynamic=False, **opts)
        before = compile_counts()
        _reset_peak(device)

        def part(r):                      # after batch 1, then after the throughput batch
            c = compile_verdict(before, compile_counts())
            for key, steady in (("latency_batch1", "median_ms"), ("throughput", "ms_per_batch")):
                if key in r and r[key].get("first_call_ms") is not None:
                    c[f"compile_seconds_{key}"] = round(max(0.0, r[key]["first_call_ms"] - r[key][steady]) / 1e3, 2)
            done = "throughput" in r
            out.clear()
            out.update(r, compile=c, backend=backend, compile_mode=opts.get("mode"), precision=precision_state(),
                       peak_memory_gib=_peak_gib(device), stage="done" if done else "throughput (compiling)",
                       status=_status(c) if done else "cut short: batch-1 latency only")
            write_json(out_json, out)
        out["stage"] = "batch-1 latency (compiling)"
        write_json(out_json, out)
        infer_path("bf16_compile", Gc, cfg.model, device, dtype=torch.bfloat16, channels_last=True, mode="compile",
                   reference=ref, on_result=part, **kw)
    except Exception as e:  # noqa: BLE001 -- the parent records it
        traceback.print_exc()
        out = {**{k: v for k, v in out.items() if k != "status"}, "status": _err(e)}
        write_json(out_json, out)
    return out


def run_compile_child(kind: str, config: str, device: torch.device, timeout_s: float, tmp: Path,
                      backend: str = "inductor", mode: str = "default", watchdog=None) -> dict:
    """Run one compile child (module doc) for at most timeout_s; its figure, with status and seconds."""
    out = tmp / f"compile_{kind}.json"
    cmd = [sys.executable, "-m", "lmexpr_nb.bench.gpu.compiled", kind, str(out), "--config", config,
           "--device", device.type, "--backend", backend, "--mode", mode]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=os.getcwd(), env=env, start_new_session=True)
    if watchdog is not None:
        watchdog.children.add(proc)
    try:
        rc = proc.wait(timeout=timeout_s)
        status = None if rc == 0 else f"error: the child's exit status was {rc}"
    except subprocess.TimeoutExpired:
        kill_group(proc)
        status = f"error: timed out after {timeout_s:.0f} s"
    finally:
        if watchdog is not None:
            watchdog.children.discard(proc)
    got = json.loads(out.read_text()) if out.is_file() else {}
    if status is not None:
        stage = got.get("stage")
        got["status"] = status + (f" (during: {stage})" if stage and stage != "done" else "")
    got.setdefault("status", "error: the child wrote no result")
    got.update(child_seconds=round(time.perf_counter() - t0, 1), timeout_s=round(timeout_s))
    return got


def child_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lmexpr_nb.bench.gpu.compiled", description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=("train", "infer"))
    ap.add_argument("out_json")
    ap.add_argument("--config", choices=("paper", "tiny"), default="paper")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend (the CPU check uses eager)")
    ap.add_argument("--mode", default="default", help="torch.compile mode for Inductor (inference)")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True          # as in the parent: the same settings for every path
    else:
        torch.set_num_threads(1)
    cfg = bench_config(a.config, device)
    if a.kind == "train":
        train_child(cfg, device, a.backend, Path(a.out_json))
    else:
        infer_child(cfg, device, a.backend, a.mode, Path(a.out_json))
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
