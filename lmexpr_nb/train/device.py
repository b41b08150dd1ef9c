"""Where training runs: device names (auto, cpu, cuda[:N]), AMP and channels_last switches, and the
torchrun process group (DistributedDataParallel; gloo on CPU, nccl on CUDA)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


def device_problem(name: str | None) -> str | None:
    """Why `name` cannot be trained on here (None: it can): auto, cpu, cuda, cuda:N."""
    name = str(name or "auto")
    if name == "auto":
        return None
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        return "not a device torch knows: use auto, cpu, cuda or cuda:N"
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            return "torch sees no CUDA GPU here: use cpu (or auto)"
        if dev.index is not None and dev.index >= n:
            return f"torch sees {n} CUDA GPU(s), cuda:0..cuda:{n - 1}"
    elif dev.type != "cpu":
        return f"training runs on cpu or cuda, not {dev.type}"
    return None


def resolve_device(name: str | None = "auto", local_rank: int = 0) -> torch.device:
    """The torch.device for `name`; ValueError (one line) for one that cannot be used here."""
    name = name or "auto"
    problem = device_problem(name)
    if problem:
        raise ValueError(f"device {name!r}: {problem}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    return dev


def _flag(value, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    v = str(value).lower()
    if v == "auto":
        return default
    if v in ("true", "1", "yes", "on"):
        return True
    if v in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"expected auto/true/false, got {value!r}")


def native_bf16(device: torch.device) -> bool:
    """Does `device` compute bfloat16 natively? CUDA: yes (Ampere and later run bf16 matmuls in
    hardware; older cards emulate, the user can say fp32). CPU: only with AVX512-BF16 or AMX;
    elsewhere oneDNN emulates bf16, and emulation is slower than fp32."""
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):   # a torch without these probes: assume emulated
        return False


def amp_dtype(cfg, device: torch.device) -> torch.dtype | None:
    """The autocast dtype cfg.train.amp asks for on `device` (None: fp32).

    auto: bf16 on CUDA, fp32 on CPU (the paper profile's setting). bf16-native: bf16 wherever
    the hardware has it (native_bf16), else fp32 (the smoke profile's setting; its measurement is
    in profiles/smoke.yaml). bf16 / fp32: always that. The dtype a run used is in its
    train_summary.json ("dtype")."""
    a = str(cfg.train.amp).lower()
    if a == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if a == "bf16-native":
        return torch.bfloat16 if native_bf16(device) else None
    if a in ("bf16", "bfloat16"):
        return torch.bfloat16
    if a in ("fp32", "float32", "none", "false"):
        return None
    raise ValueError(f"train.amp must be auto, bf16-native, bf16 or fp32; got {cfg.train.amp!r}")


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_name: str | None = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1) or when the caller
    already initialised one; nccl on CUDA, gloo on CPU."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (device_name or "auto") in ("auto", "cuda")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, initialised_here=True)
