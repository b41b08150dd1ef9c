"""`python -m lmexpr_nb train`: the command line over trainer.train (one-line errors, exit 2)."""
from __future__ import annotations

import argparse
import os
import sys

import torch

from lmexpr_nb.common.files import writable_dir
from lmexpr_nb.common.weights import MissingWeightsError
from lmexpr_nb.config import load_profile
from lmexpr_nb.train.core import NonFiniteLossError
from lmexpr_nb.train.device import device_problem
from lmexpr_nb.train.trainer import train


def train_main(argv: list[str] | None = None) -> int:
    """`python -m lmexpr_nb train --profile smoke|paper | --config FILE --data CACHE --out DIR
    [--steps N] [--resume] [--device D]`. Errors are one line, exit code 2 (1 for a NaN stop)."""

    ap = argparse.ArgumentParser(prog="lmexpr train", description=(
        "Train the generator and both discriminators (paper Sec. III-B, IV-B) on a preprocessed cache. "
        "Several GPUs: torchrun --nproc_per_node N -m lmexpr_nb train ..."))
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--profile", default=None, help="smoke (CPU, synthetic, stand-in VGG) | paper (GPU); default smoke")
    src.add_argument("--config", default=None, help="a profile-format YAML file (config: overrides)")
    ap.add_argument("--data", required=True, help="preprocessed cache folder (python -m lmexpr_nb preprocess)")
    ap.add_argument("--out", required=True, help="run folder: checkpoints/, losses.csv, samples/, train_summary.json")
    ap.add_argument("--steps", type=int, default=None, help="total steps (overrides the profile's length)")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    ap.add_argument("--device", default=None, help="auto | cpu | cuda (default: the profile's, auto)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads for torch (default: torch's choice; on a small shared CPU 1 can be fastest)")
    ap.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    a = ap.parse_args(argv)
    prog = "lmexpr train"
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.device is not None and device_problem(a.device):
        print(f"{prog}: --device {a.device}: {device_problem(a.device)}", file=sys.stderr)
        return 2
    try:
        writable_dir(a.out, "--out")
        cfg = load_profile(a.config or a.profile or "smoke")
        if a.steps is not None and a.steps < 1:
            raise ValueError("--steps must be >= 1")
        s = train(cfg, a.data, a.out, resume=a.resume, steps=a.steps, device=a.device, progress=not a.no_progress)
    except MissingWeightsError as e:
        print(f"{prog}: {e} (or set loss.vgg_standin: true in the config for the labelled offline stand-in)",
              file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as e:
        text = str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)
        msg = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        print(f"{prog}: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; the last checkpoint is in {a.out}/checkpoints, continue with --resume",
              file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    rate = s["images_per_second"]
    if s.get("reused"):
        print(f"already trained: {a.out} is at step {s['final_step']} of {s['steps']} (summary: "
              f"{a.out}/train_summary.json); give a larger --steps with --resume to train on")
        return 0
    print(f"trained {s['start_step']} -> {s['final_step']} of {s['steps']} steps in {s['seconds']:.1f} s "
          f"({rate if rate is not None else '-'} img/s, {s['device']}, {s['dtype']}); perceptual: {s['perceptual']}; "
          f"data: {s['dataset']}{' (synthetic)' if s['synthetic'] else ''}; summary: {a.out}/train_summary.json")
    return 0
