"""`bench gpu`: the CPU path of the one prepared GPU check. It must run without dlib,
papermill or face_recognition_models (the device machine has none of them), write one folder of
few, simply named, small files whose JSON has every section, mark every GPU-only figure as
unmeasured on the CPU, keep the JSON complete when the budget cuts it short, and `--finish` must
add landmark NME and identity afterwards where dlib is."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lmexpr_nb.bench.gpu import main as gpu
from lmexpr_nb.bench.gpu.learn import NPZ_LIMIT, _pairs_budget

REPO = Path(__file__).resolve().parents[1]
# run the command with the device machine's gaps: these imports fail as they would there
BLOCKED = ("dlib", "papermill", "face_recognition_models")
RUNNER = ("import sys, importlib.abc\n"
          "class Block(importlib.abc.MetaPathFinder):\n"
          "    def find_spec(self, name, path=None, target=None):\n"
          f"        if name.split('.')[0] in {BLOCKED!r}:\n"
          "            raise ImportError(f'{name} is not on the device machine')\n"
          "sys.meta_path.insert(0, Block())\n"
          "from lmexpr_nb.__main__ import main\n"
          "rc = main(['bench', 'gpu'] + sys.argv[1:])\n"
          "assert not [m for m in sys.modules if m.split('.')[0] in " + repr(BLOCKED) + "]\n"
          "sys.exit(rc)\n")


# The full CPU run's length is set by its work and --learn-seconds; its --minutes budget is only the
# hang guard, far above what a loaded machine needs (a 1-minute budget made the test fail whenever
# the smoke run shared the CPU)
GUARD_MINUTES = 20


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-c", RUNNER, "--device", "cpu", "--threads", "1", "--out", str(out), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=GUARD_MINUTES * 60 + 120)


def _gpu_only_marked(s: dict) -> None:
    for p in ("bf16_channels_last", "bf16_channels_last_compile"):
        assert s["train_throughput"]["paths"][p]["status"] == gpu.UNMEASURED, p
    for p in ("bf16_bn_folded", "bf16_cudagraph", "bf16_compile"):
        assert s["inference"]["paths"][p]["status"] == gpu.UNMEASURED, p
    assert s["ddp"]["status"] == gpu.UNMEASURED


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_gpu")
    proc = _run(out, "--minutes", str(GUARD_MINUTES), "--learn-seconds", "2")     # --learn-seconds keeps it short
    return out, proc


def test_cpu_run_writes_every_section_and_marks_gpu_figures_unmeasured(cpu_run):
    out, proc = cpu_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / gpu.JSON_NAME).read_text())
    s = res["sections"]
    assert set(gpu.SECTIONS) <= set(s) and res["gpu_measured"] is False and "deadline_hit" not in res
    assert all(s[k]["status"] in ("ok", gpu.UNMEASURED) for k in gpu.SECTIONS), {k: s[k]["status"] for k in s}
    _gpu_only_marked(s)
    train = s["train_throughput"]["paths"]["fp32_eager"]
    assert train["status"] == "ok" and train["images_per_second"] > 0 and train["losses_finite"]
    assert train["mfu_of_bf16_peak"] == gpu.UNMEASURED and train["peak_memory_gib"] == gpu.UNMEASURED
    lat = s["inference"]["paths"]["fp32_eager"]["latency_batch1"]
    assert 0 < lat["median_ms"] <= lat["p90_ms"]
    gloo = s["ddp"]["cpu_gloo_check"]
    assert gloo["backend"] == "gloo" and gloo["allreduce_correct"] and gloo["weights_identical_across_ranks"]
    le = s["learning"]
    assert le["steps"] >= 1 and len(le["curve"]) >= 2 and le["curve"][0]["step"] == 0
    assert set(le["table5"]) == {"our method", "copy source", "warp to target landmarks"}
    assert le["table5"]["copy source"]["n"] == le["data"]["final_pairs"]
    # the files: few, simply named, small, at most two folder levels (here: none)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"bench_gpu.json", "summary.md", "eval.npz", "samples.png"}
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) and p.stat().st_size < 16 * 2**20 for p in files)
    with np.load(out / "eval.npz", allow_pickle=False) as z:
        assert z["snap_fakes"].shape[0] == len(le["curve"]) and z["ours"].shape == z["real"].shape
        assert len(z["gallery_ids"]) == 2
    # one summary table printed at the end, and the same in summary.md
    md = (out / gpu.SUMMARY_NAME).read_text()
    assert proc.stdout.rstrip().endswith(md.rstrip().splitlines()[-1])
    assert "| learning: Table 5 | our method |" in md and gpu.UNMEASURED in md


def test_finish_adds_landmark_nme_and_identity(cpu_run, tmp_path):
    from lmexpr_nb.bench.gpu.finish import finish
    out, proc = cpu_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = []
    res = finish(out, tmp_path / "finished", say=said.append)
    fin = res["sections"]["learning"]["finished"]
    assert set(fin["nme"]) == {"our method", "copy source", "warp to target landmarks", "real target"}
    n = res["sections"]["learning"]["data"]["final_pairs"]
    assert all(v["n"] == n and 0 <= v["no_face"] <= n for v in fin["nme"].values())
    assert set(fin["identity"]) == {"original", "copy source", "warp to target landmarks", "our method"}
    assert all(0 <= v["rank1"] <= 100 and v["gallery"] == 2 for v in fin["identity"].values())
    assert all("landmark_nme" in c for c in res["sections"]["learning"]["curve"])
    assert (tmp_path / "finished" / gpu.JSON_NAME).is_file() and "learning: identity" in said[-1]
    assert json.loads((out / gpu.JSON_NAME).read_text())["sections"]["learning"].get("finished") is None


def test_a_run_the_budget_cuts_short_still_writes_a_complete_json(tmp_path):
    proc = _run(tmp_path, "--minutes", "0.02")
    assert proc.returncode == 3, proc.stderr[-2000:]
    res = json.loads((tmp_path / gpu.JSON_NAME).read_text())
    assert res["deadline_hit"] is True and set(gpu.SECTIONS) <= set(res["sections"])
    _gpu_only_marked(res["sections"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_finish_without_results_is_a_one_line_error(tmp_path, capsys):
    assert gpu.bench_main(["--finish", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no bench gpu results" in err and "\n" not in err


def test_configs_and_the_npz_budget():
    import torch
    cfg = gpu.bench_config("paper", torch.device("cpu"))
    assert (cfg.model.image_size, cfg.model.n_blocks, cfg.model.ngf, cfg.train.batch_size) == (128, 9, 64, 16)
    assert cfg.loss.vgg_standin and cfg.train.lr_decay_start == 1.0
    assert gpu.bench_config("tiny", torch.device("cpu")).model.image_size == 32
    f, m = _pairs_budget(128, 882, 6, 6)                   # the paper config's snapshot/final pairs
    assert f >= 32 and m >= 8 and (4 * f + 6 * m + 6) * 128 * 128 * 3 <= NPZ_LIMIT
    with pytest.raises(ValueError, match="paper or tiny"):
        gpu.bench_config("huge", torch.device("cpu"))
