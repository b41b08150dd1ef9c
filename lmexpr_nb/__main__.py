"""Command line: `python -m lmexpr_nb COMMAND ...` (also the console script `lmexpr`).

Each command lives beside the stage it drives; this file only dispatches, importing lazily
so that `--help` is fast and a command never pays for another's imports.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

COMMANDS = {
    "synth": ("lmexpr_nb.__main__", "synth_main", "write the synthetic CK+-layout default dataset"),
    "preprocess": ("lmexpr_nb.preprocess", "preprocess_main", "dlib detection, crops, landmarks, split -> cache"),
    "train": ("lmexpr_nb.train", "train_main", "train the generator and discriminators"),
    "run": ("lmexpr_nb.run", "run_main", "execute the notebooks headlessly with papermill"),
    "bench": ("lmexpr_nb.__main__", "bench_main", "benchmarks: preprocess | train | infer | learn | gpu"),
}
BENCHES = {"preprocess": "lmexpr_nb.bench.preprocess", "train": "lmexpr_nb.bench.train",
           "infer": "lmexpr_nb.bench.infer", "learn": "lmexpr_nb.bench.learn", "gpu": "lmexpr_nb.bench.gpu"}


def synth_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="lmexpr synth", description=(
        "Write the embedded synthetic dataset in the CK+ layout (cohn-kanade-images/, Emotion/, Landmarks/): "
        "procedural faces, not real ones; everything made from it is labelled synthetic."))
    ap.add_argument("--out", required=True, help="folder to write (created)")
    ap.add_argument("--subjects", type=int, default=24, help="number of identities (default 24)")
    ap.add_argument("--frames", type=int, default=10, help="frames per neutral->peak sequence (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="random seed; same seed -> identical files")
    ap.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    a = ap.parse_args(argv)
    if a.subjects < 1 or a.frames < 2:
        print("lmexpr synth: need --subjects >= 1 and --frames >= 2", file=sys.stderr)
        return 2
    from .data.synthetic import write_synthetic_ckplus
    from .io import writable_dir
    try:
        writable_dir(Path(a.out).expanduser().parent, "the folder of --out")
        if Path(a.out).exists() and not Path(a.out).is_dir():
            raise ValueError(f"--out {a.out} is a file: give a folder to write the dataset into")
        s = write_synthetic_ckplus(a.out, subjects=a.subjects, frames=a.frames, seed=a.seed, workers=a.workers)
    except (OSError, ValueError) as e:
        print(f"lmexpr synth: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    print(f"wrote synthetic CK+-layout dataset to {a.out}: {s}")
    return 0


def bench_main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[2:] if argv is None else argv)
    if not argv or argv[0] not in BENCHES:
        print(f"usage: lmexpr bench {{{','.join(BENCHES)}}} [--help]", file=sys.stderr)
        return 2
    return _call(BENCHES[argv[0]], "bench_main", argv[1:])


def _call(module: str, func: str, argv: list[str]) -> int:
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        print(f"lmexpr: this command is not available yet ({e})", file=sys.stderr)
        return 2
    return int(getattr(mod, func)(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m lmexpr_nb COMMAND [options]   (COMMAND --help for its options)\n")
        for name, (_, _, what) in COMMANDS.items():
            print(f"  {name:<11} {what}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module, func, _ = COMMANDS[argv[0]]
    return _call(module, func, argv[1:])


if __name__ == "__main__":
    sys.exit(main())
