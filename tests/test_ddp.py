"""DistributedDataParallel with the gloo backend on CPU: 2 processes, as torchrun would run them.

After training steps the two ranks hold identical weights, and those differ from a
single-process run on rank 0's shard alone (so the gradients were averaged across ranks,
not just computed locally); only rank 0 writes the run's files.
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from test_train import csv_rows, make_cache, tiny_cfg  # noqa: E402

from lmexpr_nb.common import checkpoint as ckpt_io  # noqa: E402
from lmexpr_nb.train.trainer import Trainer  # noqa: E402

pytestmark = pytest.mark.slow          # two processes with their own torch start-up: `-m "not slow"` leaves it out
STEPS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _params(trainer) -> dict:
    return {f"{m}.{k}": v.detach().clone() for m, mod in trainer.core.models().items()
            for k, v in mod.named_parameters()}


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    cfg = tiny_cfg(steps=STEPS, checkpoint_every=STEPS, log_every=1, sample_every=STEPS)
    trainer = Trainer(cfg, make_cache(), Path(out) / "ddp", progress=False)
    assert trainer.dist.world_size == world and trainer.dist.rank == rank
    trainer.run()
    torch.save({"params": _params(trainer), "first_batch": trainer.stream.batch_at(0)},
               Path(out) / f"rank{rank}.pt")


def test_gloo_two_process_step_averages_gradients(tmp_path):
    torch.set_num_threads(1)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # each rank drew its own shard of the global batch
    assert r0["first_batch"] != r1["first_batch"]
    # identical weights on both ranks
    assert r0["params"].keys() == r1["params"].keys()
    assert all(torch.equal(v, r1["params"][k]) for k, v in r0["params"].items())

    # one process on rank 0's shard alone: same seeds, same data, no averaging -> different weights
    cfg = tiny_cfg(steps=STEPS, checkpoint_every=STEPS, log_every=1, sample_every=STEPS)
    single = Trainer(cfg, make_cache(), tmp_path / "single", progress=False)
    assert single.dist.world_size == 1 and single.stream.batch_at(0) == r0["first_batch"]
    single.run()
    p = _params(single)
    differ = [k for k, v in p.items() if not torch.equal(v, r0["params"][k])]
    assert len(differ) > len(p) // 2, f"only {len(differ)} of {len(p)} tensors differ"

    # rank 0 wrote the run's files, with the global stream position and the averaged losses
    c = ckpt_io.load_checkpoint(tmp_path / "ddp/checkpoints/last.pt")
    assert c["step"] == STEPS and c["sampler"]["world_size"] == 2
    assert c["sampler"]["position"] == STEPS * 2 * cfg.train.batch_size and len(c["rng"]) == 2
    assert all(torch.equal(c["models"][k.split(".")[0]][k.split(".", 1)[1]], v) for k, v in r0["params"].items())
    assert [int(r["step"]) for r in csv_rows(tmp_path / "ddp")] == [1, 2]
    assert (tmp_path / "ddp/train_summary.json").is_file()
