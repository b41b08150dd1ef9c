"""`bench gpu`'s DDP check: the kit's training step under DistributedDataParallel, every GPU one rank.

NCCL on CUDA (gloo on CPU, which checks the same code but is not the GPU figure). The step is
train.TrainCore's with DDP wrapping forced on even for one rank, so a single-GPU machine still
runs the NCCL path (process group, DDP's gradient all-reduce buckets, broadcast of the initial
weights). Each rank times `steps` steps on random batches (bench.train.random_batches, a
different seed per rank) after `warmup`, and the check reads back:
  - an all_reduce of (rank + 1) equals world * (world + 1) / 2 (the collective is right);
  - the generator's weights are identical on every rank afterwards (gradients were averaged);
  - img/s per rank and in total, peak GPU memory per rank.
On CUDA the ranks are spawned (torch.multiprocessing, spawn; one per GPU, one process even for a
single GPU) and joined with a timeout, so an NCCL initialisation that hangs cannot stall the whole
run; on the CPU one gloo rank runs in this process. Rank 0 writes the JSON.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lmexpr_nb.bench.gpu.sections import precision_state
from lmexpr_nb.bench.train import random_batches
from lmexpr_nb.config import Config
from lmexpr_nb.train.core import TrainCore
from lmexpr_nb.train.device import DistInfo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, world: int, port: int, cfg_dict: dict, batch: int, warmup: int, steps: int,
           out_json: str) -> None:

    class _Forced(DistInfo):                    # DDP even with one rank: the NCCL path is what is checked
        @property
        def enabled(self) -> bool:
            return True

    cfg = Config.from_dict(cfg_dict)
    cuda = torch.cuda.is_available() and cfg.train.device != "cpu"
    if cuda:
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
        torch.backends.cudnn.benchmark = True       # as in every other path of bench gpu (and the trainer)
    else:
        device = torch.device("cpu")
    backend = "nccl" if cuda else "gloo"
    if not cuda:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    else:
        os.environ.setdefault("NCCL_DEBUG", "WARN")
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        t = torch.tensor([rank + 1.0], device=device)
        dist.all_reduce(t)
        allreduce_ok = float(t.item()) == world * (world + 1) / 2
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        core = TrainCore(cfg, device, dist_info=_Forced(rank, world, rank), amp=torch.bfloat16 if cuda else None,
                         channels_last=cuda, compile=False)
        batches = random_batches(cfg, batch, 2, seed=rank)
        if cuda:
            batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
        for i in range(warmup):
            terms = core.step(batches[i % 2], i)
        if cuda:
            torch.cuda.synchronize(device)
        dist.barrier()
        t0 = time.perf_counter()
        for i in range(steps):
            terms = core.step(batches[i % 2], warmup + i)
        if cuda:
            torch.cuda.synchronize(device)
        sec = time.perf_counter() - t0
        flat = torch.cat([p.detach().float().flatten() for p in core.generator.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, 0)
        same = torch.tensor([float(torch.equal(flat, ref))], device=device)
        dist.all_reduce(same, op=dist.ReduceOp.MIN)
        rate = torch.tensor([batch * steps / sec], device=device, dtype=torch.float64)
        rates = [torch.zeros_like(rate) for _ in range(world)]
        dist.all_gather(rates, rate)
        mem = torch.tensor([torch.cuda.max_memory_allocated(device) / 2**30 if cuda else 0.0], device=device,
                           dtype=torch.float64)
        mems = [torch.zeros_like(mem) for _ in range(world)]
        dist.all_gather(mems, mem)
        if rank == 0:
            r = {"status": "ok", "backend": backend, "world_size": world, "batch_per_rank": batch,
                 "warmup_steps": warmup, "timed_steps": steps, "seconds": round(sec, 3),
                 "images_per_second_per_rank": [round(float(x), 2) for x in rates],
                 "images_per_second_total": round(float(sum(rates)), 2), "dtype": core.dtype_name,
                 "channels_last": core.channels_last, "allreduce_correct": allreduce_ok,
                 "weights_identical_across_ranks": bool(same.item() == 1.0),
                 "losses_finite": bool(torch.isfinite(terms).all()), "precision": precision_state(),
                 "peak_memory_gib_per_rank": ([round(float(x), 2) for x in mems] if cuda else "unmeasured: no GPU")}
            Path(out_json).write_text(json.dumps(r))
    finally:
        dist.destroy_process_group()


def run_ddp(cfg, batch: int, warmup: int, steps: int, out_json: Path, timeout_s: float) -> dict:
    """Run the check on every visible GPU (one rank on CPU); returns rank 0's JSON or an error dict."""
    cuda = torch.cuda.is_available() and cfg.train.device != "cpu"
    world = torch.cuda.device_count() if cuda else 1
    port = _free_port()
    args = (world, port, cfg.to_dict(), batch, warmup, steps, str(out_json))
    if not cuda:                 # gloo on the CPU: one rank, in this process (the code path, quickly)
        worker(0, *args)
    else:                        # NCCL in child processes, even for one GPU: a hung init cannot stall the run
        ctx = mp.start_processes(worker, args=args, nprocs=world, join=False, start_method="spawn")
        t_end = time.perf_counter() + timeout_s
        while not ctx.join(timeout=max(1.0, t_end - time.perf_counter())):
            if time.perf_counter() >= t_end:
                for p in ctx.processes:
                    if p.is_alive():
                        p.terminate()
                return {"status": f"error: timed out after {timeout_s:.0f} s", "world_size": world}
    if not Path(out_json).is_file():
        return {"status": "error: rank 0 wrote no result", "world_size": world}
    return json.loads(Path(out_json).read_text())
