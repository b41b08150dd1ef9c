"""Command line: `python -m lmexpr_nb COMMAND ...` (also the console script `lmexpr`).

Each command lives beside the stage it drives; this file only dispatches, importing lazily
so that `--help` is fast and a command never pays for another's imports.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "synth": ("lmexpr_nb.data.synthetic.write", "synth_main", "write the synthetic CK+-layout default dataset"),
    "preprocess": ("lmexpr_nb.landmarks.preprocess", "preprocess_main", "dlib detection, crops, landmarks, split -> cache"),
    "train": ("lmexpr_nb.train.cli", "train_main", "train the generator and discriminators"),
    "run": ("lmexpr_nb.runner.run", "run_main", "execute the notebooks headlessly with papermill"),
    "animate": ("lmexpr_nb.explore.animate", "animate_main", "drive a photo by a video, frames or a cache sequence"),
    "bench": ("lmexpr_nb.__main__", "bench_command", "benchmarks: preprocess | train | infer | learn | gpu | animate"),
}
BENCHES = {"preprocess": "lmexpr_nb.bench.preprocess", "train": "lmexpr_nb.bench.train",
           "infer": "lmexpr_nb.bench.infer", "learn": "lmexpr_nb.bench.learn", "gpu": "lmexpr_nb.bench.gpu.main",
           "animate": "lmexpr_nb.bench.animate"}


def bench_command(argv: list[str] | None = None) -> int:
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
