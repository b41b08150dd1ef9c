"""`bench gpu`: the CPU path of the one prepared GPU check. It must run without dlib, papermill,
ipywidgets, Jupyter or face_recognition_models (the device machine has none of them; blocked here in
every process the command starts), write one folder of few, simply named, small files whose JSON has
every section, mark every GPU-only figure as unmeasured on the CPU while its code still runs (the
compile children with TorchDynamo's eager backend, DDP with gloo), keep the JSON complete when the
budget cuts it short, never let the watchdog write over a finished run, and `--finish` must add
landmark NME, FD-dlib/KID-dlib and identity afterwards where dlib is, or say in one line what a
partial folder lacks. GPU-only pieces are checked with fakes: device names for the datasheet
peaks, a fake clock for the deadline, fake TorchDynamo counts for the compile verdict."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lmexpr_nb.bench.gpu import main as gpu
from lmexpr_nb.bench.gpu.clock import CPU_PLAN, GPU_PLAN, Budget, Plan, Watchdog, child_timeout, kill_group
from lmexpr_nb.bench.gpu.compiled import compile_counts, compile_verdict, run_compile_child
from lmexpr_nb.bench.gpu.learn import NPZ_LIMIT, _pairs_budget, save_eval
from lmexpr_nb.bench.gpu.sections import UNMEASURED, infer_section, measure_matmul_peak, train_section
from lmexpr_nb.bench.train import _with_flops, gpu_peak

REPO = Path(__file__).resolve().parents[1]
# the device machine's gaps: these imports fail, in the command and in every process it starts
BLOCKED = ("dlib", "papermill", "face_recognition_models", "ipywidgets", "IPython", "ipykernel", "nbformat",
           "nbconvert", "nbclient", "jupyter")
SITECUSTOMIZE = ("import sys, importlib.abc\n"
                 "class Block(importlib.abc.MetaPathFinder):\n"
                 "    def find_spec(self, name, path=None, target=None):\n"
                 "        top = name.split('.')[0]\n"
                 f"        if top in {BLOCKED!r} or top.startswith('jupyter'):\n"
                 "            raise ImportError(f'{name} is not on the device machine')\n"
                 "sys.meta_path.insert(0, Block())\n")
RUNNER = ("import sys\n"
          "from lmexpr_nb.__main__ import main\n"
          "rc = main(['bench', 'gpu'] + sys.argv[1:])\n"
          f"assert not [m for m in sys.modules if m.split('.')[0] in {BLOCKED!r} or m.startswith('jupyter')]\n"
          "sys.exit(rc)\n")


# The full CPU run's length is set by its work and --learn-seconds; its --minutes budget is only the
# hang guard, far above what a loaded machine needs (a 1-minute budget made the test fail whenever
# the smoke run shared the CPU)
GUARD_MINUTES = 20


def _blocked_path(folder: Path) -> str:
    """A PYTHONPATH whose sitecustomize blocks the device machine's gaps in every process started with it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return os.pathsep.join([str(folder), str(REPO)])


def _run(out: Path, *args: str) -> subprocess.CompletedProcess:
    """The whole command on the CPU. Its compile children are checked on their own below
    (test_the_compile_children_on_the_cpu): a loaded machine runs them for tens of seconds."""
    env = dict(os.environ, PYTHONPATH=_blocked_path(out.parent / f"{out.name}-block"), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-c", RUNNER, "--device", "cpu", "--threads", "1", "--out", str(out),
                           "--no-compile", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=GUARD_MINUTES * 60 + 120)


def _gpu_only_marked(s: dict) -> None:
    for p in ("fp32_tf32_eager", "bf16_channels_last", "bf16_channels_last_compile"):
        assert s["train_throughput"]["paths"][p]["status"] == UNMEASURED, p
    for p in ("fp32_tf32_eager", "bf16_bn_folded", "bf16_cudagraph", "bf16_compile"):
        assert s["inference"]["paths"][p]["status"] == UNMEASURED, p
    assert s["ddp"]["status"] == UNMEASURED


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
    assert list(s) == list(gpu.SECTIONS) and res["gpu_measured"] is False and "deadline_hit" not in res
    assert all(s[k]["status"] in ("ok", UNMEASURED) for k in gpu.SECTIONS), {k: s[k]["status"] for k in s}
    _gpu_only_marked(s)
    train = s["train_throughput"]["paths"]["fp32_eager"]
    assert train["status"] == "ok" and train["images_per_second"] > 0 and train["losses_finite"]
    assert train["mfu_of_bf16_peak"] == UNMEASURED and train["peak_memory_gib"] == UNMEASURED
    assert train["precision"]["tf32_convolutions"] is False and train["precision"]["tf32_matmul"] is False
    inf = s["inference"]
    lat = inf["paths"]["fp32_eager"]["latency_batch1"]
    assert 0 < lat["median_ms"] <= lat["p90_ms"] and inf["paths"]["fp32_eager"]["throughput"]["iters"] >= 30
    gloo = s["ddp"]["cpu_gloo_check"]
    assert gloo["backend"] == "gloo" and gloo["allreduce_correct"] and gloo["weights_identical_across_ranks"]
    # the training compile's turn comes first, before the eager inference section (here: --no-compile)
    order = [ln.split("]")[0] + "]" for ln in proc.stdout.splitlines() if ln.startswith("[")]
    assert order.index("[compile train]") < order.index("[inference]") < order.index("[compile infer]")
    assert s["train_throughput"]["paths"]["bf16_channels_last_compile"]["cpu_check"]["status"] == \
        "skipped: --no-compile"
    le = s["learning"]
    assert le["steps"] >= 1 and len(le["curve"]) >= 2 and le["curve"][0]["step"] == 0
    assert set(le["table5"]) == {"our method", "copy source", "warp to target landmarks"}
    assert le["table5"]["copy source"]["n"] == le["data"]["final_pairs"]
    assert all(np.isfinite(q["sharpness"]["value"]) for q in le["table5"].values())
    assert all(isinstance(pt["sharpness"], float) for pt in le["curve"])
    # the files: few, simply named, small, at most two folder levels (here: none)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"bench_gpu.json", "summary.md", "eval.npz", "samples.png", gpu.LOCK_NAME}
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", p.name) and p.stat().st_size < 16 * 2**20 for p in files)
    with np.load(out / "eval.npz", allow_pickle=False) as z:
        assert z["snap_fakes"].shape[0] == len(le["curve"]) and z["ours"].shape == z["real"].shape
        assert len(z["gallery_ids"]) == 2 and len(z["target_labels"]) == len(z["real"])
        # the training subjects' real peak frames, for an expression classifier in --finish
        assert len(z["train_peaks"]) == le["data"]["training_peak_frames"] > 0
        assert (z["train_peak_labels"] > 0).all()
        assert not set(z["train_peak_subjects"]) & set(s["data"]["val_subjects"])
        # and one neutral frame of each of their subjects: what the expression-change classifier reads against
        assert len(z["train_neutrals"]) == le["data"]["training_neutral_frames"] > 0
        assert set(z["train_neutral_subjects"]) <= set(z["train_peak_subjects"])
    # one summary table printed at the end, and the same in summary.md
    md = (out / gpu.SUMMARY_NAME).read_text()
    assert proc.stdout.rstrip().endswith(md.rstrip().splitlines()[-1])
    assert "| learning: Table 5 | our method |" in md and UNMEASURED in md and "CPU check (" in md


def test_finish_adds_landmark_nme_realism_and_identity(cpu_run, tmp_path):
    from lmexpr_nb.bench.gpu.finish import finish
    out, proc = cpu_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = []
    res = finish(out, tmp_path / "finished", say=said.append)
    fin = res["sections"]["learning"]["finished"]
    assert set(fin["nme"]) == {"our method", "copy source", "warp to target landmarks", "real target"}
    n = res["sections"]["learning"]["data"]["final_pairs"]
    assert all(v["n"] == n and 0 <= v["no_face"] <= n for v in fin["nme"].values())
    assert set(fin["realism"]) == {"our method", "copy source", "warp to target landmarks", "real target"}
    assert all(set(v) == {"FD-dlib", "KID-dlib", "Expression accuracy"} and v["FD-dlib"]["n"] == n
               for v in fin["realism"].values())
    acc = {m: v["Expression accuracy"] for m, v in fin["realism"].items()}
    assert all(0 <= a["value"] <= 1 and a["n"] == n for a in acc.values())
    assert acc["real target"]["value"] >= acc["copy source"]["value"]     # the ceiling; copy shows no expression
    assert "expression-change" in acc["our method"]["provenance"]
    assert "STAND-IN" in fin["realism"]["our method"]["FD-dlib"]["provenance"]
    assert set(fin["identity"]) == {"original", "copy source", "warp to target landmarks", "our method"}
    assert all(0 <= v["rank1"] <= 100 and v["gallery"] == 2 for v in fin["identity"].values())
    assert all("landmark_nme" in c for c in res["sections"]["learning"]["curve"])
    assert (tmp_path / "finished" / gpu.JSON_NAME).is_file() and "learning: identity" in said[-1]
    assert "FD-dlib" in said[-1] and "Expression accuracy" in said[-1]
    assert json.loads((out / gpu.JSON_NAME).read_text())["sections"]["learning"].get("finished") is None


def test_expression_classifier_in_finish_reads_training_subjects_and_a_missing_one_is_a_recorded_skip(cpu_run):
    """--finish trains Table 5's expression-change classifier on eval.npz's training frames only; an
    eval.npz whose training frames hold no face gives a recorded skip, not a traceback."""
    from lmexpr_nb.bench.gpu import realism
    out, proc = cpu_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(out / "eval.npz") as z:
        d = {k: z[k] for k in z.files}
    clf = realism.expression_classifier(d)
    assert "train subjects" in clf.provenance and "expression-change" in clf.provenance
    blank = {**d, "train_peaks": np.zeros_like(d["train_peaks"]), "train_neutrals": np.zeros_like(d["train_neutrals"])}
    got = realism.realism_in_finish(blank, {"our method": "ours"})["our method"]
    assert got["Expression accuracy"]["value"] is None and "no train subject" in got["Expression accuracy"]["skipped"]
    assert got["FD-dlib"]["value"] is not None


def test_finish_on_a_partial_folder_says_what_is_missing_in_one_line(cpu_run, tmp_path, capsys):
    out, _ = cpu_run
    res = json.loads((out / gpu.JSON_NAME).read_text())
    no_npz = tmp_path / "no_npz"                          # the learning check never wrote eval.npz
    no_npz.mkdir()
    res["sections"]["learning"] = {"status": "error: RuntimeError: no data (the data section failed)"}
    (no_npz / gpu.JSON_NAME).write_text(json.dumps(res))
    assert gpu.bench_main(["--finish", str(no_npz)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "partial" in err and "eval.npz" in err and "learning curve" in err
    assert "no data" in err
    thin = tmp_path / "thin"                              # an eval.npz without the final images
    thin.mkdir()
    shutil.copy(out / gpu.JSON_NAME, thin / gpu.JSON_NAME)
    with np.load(out / "eval.npz") as z:
        np.savez(thin / "eval.npz", **{k: z[k] for k in z.files if k not in ("ours", "train_peaks")})
    assert gpu.bench_main(["--finish", str(thin)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "ours" in err and "train_peaks" in err and "learning curve" not in err


def test_a_run_the_budget_cuts_short_still_writes_a_complete_json(tmp_path):
    proc = _run(tmp_path / "out", "--minutes", "0.02")
    assert proc.returncode == 3, proc.stderr[-2000:]
    res = json.loads((tmp_path / "out" / gpu.JSON_NAME).read_text())
    assert res["deadline_hit"] is True and set(gpu.SECTIONS) <= set(res["sections"])
    _gpu_only_marked(res["sections"])
    assert not list((tmp_path / "out").glob(".*.tmp"))


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_the_deadline_fires_once_and_never_over_a_finished_run():
    clock = FakeClock()
    fired = []
    wd = Watchdog(Budget(1.0, clock), lambda: fired.append(clock.t))
    clock.t += 59.9
    assert not wd.check() and not fired
    clock.t += 0.1
    assert wd.check() and len(fired) == 1
    clock.t += 100
    assert not wd.check() and len(fired) == 1          # once only
    assert wd.finish() is False                         # the main thread must not write after it
    clock2, fired2 = FakeClock(), []
    wd2 = Watchdog(Budget(1.0, clock2), lambda: fired2.append(clock2.t))
    clock2.t += 30
    assert wd2.finish() is True
    clock2.t += 1000
    assert not wd2.check() and not fired2               # a finished run is never rewritten


def test_the_watchdog_thread_fires_on_the_fake_clock():
    import threading
    clock, done = FakeClock(), threading.Event()
    wd = Watchdog(Budget(0.5, clock), done.set, poll_s=0.01)
    wd.start()
    assert not done.wait(0.2)                          # the clock has not moved
    clock.t += 31
    assert done.wait(10) and wd.state == "fired"


def test_the_training_compile_keeps_its_floor_and_the_inference_compile_what_is_spare():
    # at the start of a default 8-minute call, the training compile gets its whole floor (no fraction)
    assert child_timeout("train", 440.0, GPU_PLAN) == GPU_PLAN.train_compile == 240.0
    # later it is cut only to keep the sections after it their seconds
    after = GPU_PLAN.infer_eager + GPU_PLAN.ddp + GPU_PLAN.data + GPU_PLAN.learn_min
    assert child_timeout("train", 300.0, GPU_PLAN) == 300.0 - after
    # a longer floor can be asked for (--train-compile-seconds): not capped by a fixed limit
    assert child_timeout("train", 600.0, Plan(**{**GPU_PLAN.__dict__, "train_compile": 400.0})) == 400.0
    rest = GPU_PLAN.ddp + GPU_PLAN.data + GPU_PLAN.learn_min
    assert child_timeout("infer", rest + 500.0, GPU_PLAN) == GPU_PLAN.infer_compile
    assert child_timeout("infer", rest + 35.0, GPU_PLAN) == 35.0
    assert child_timeout("infer", rest + 20.0, GPU_PLAN) == 0.0          # under child_min: not started
    assert child_timeout("train", 59.0, CPU_PLAN) > CPU_PLAN.child_min    # the CPU check fits a 1-minute run
    with pytest.raises(ValueError, match="train or infer"):
        child_timeout("both", 100.0, GPU_PLAN)


def test_datasheet_peaks_are_read_for_the_exact_model():
    want = {"NVIDIA H100 80GB HBM3": 989.4, "NVIDIA H100 PCIe": 756.4, "NVIDIA H100 NVL": 835.5,
            "NVIDIA H100 80GB HBM2e": 756.4, "NVIDIA H200": 989.4, "NVIDIA H200 NVL": 835.5,
            "NVIDIA GH200 480GB": 989.4, "NVIDIA A100-SXM4-80GB": 312.0, "NVIDIA A100 80GB PCIe": 312.0,
            "NVIDIA L40S": 362.05, "NVIDIA L40": 181.05, "NVIDIA A10": 125.0, "NVIDIA L4": 121.0}
    got = {name: gpu_peak(name) for name in want}
    assert {k: round(v[0] / 1e12, 2) for k, v in got.items()} == want
    assert all(src.startswith("datasheet") for _, src in got.values())
    for unknown in ("NVIDIA H100", "Tesla V100-SXM2-16GB", "NVIDIA GeForce RTX 4090"):
        peak, why = gpu_peak(unknown)
        assert peak is None and "--peak-tflops" in why


def test_the_measured_peak_and_both_utilisations():
    m = measure_matmul_peak(torch.device("cpu"), n=128, per_round=2, rounds=3, warmup=1)
    assert m["tflops_best"] >= m["tflops_median"] > 0 and m["products"] == 6
    r = _with_flops({"images_per_second": 100.0}, 2e12, 800e12, 400e12)
    assert r["achieved_tflops"] == 200.0 and r["mfu_of_bf16_peak"] == 0.25 and r["mfu_of_measured_bf16_peak"] == 0.5


def _metric(compile_id, fail_type=None, recompile_reason=None, seconds=1.0, forward=True):
    return SimpleNamespace(compile_id=compile_id, fail_type=fail_type, recompile_reason=recompile_reason,
                           is_forward=forward, entire_frame_compile_time_s=seconds if forward else None,
                           backward_cumulative_compile_time_us=None if forward else seconds * 1e6)


def test_the_compile_verdict_from_fake_dynamo_counts():
    before = compile_counts({}, [])
    counters = {"stats": {"unique_graphs": 5}, "graph_break": {"print": 2, "data-dependent": 1},
                "frames": {"total": 6, "ok": 5}}
    metrics = [_metric("0/0"), _metric("1/0"), _metric("1/1", recompile_reason="size mismatch"), _metric("1/2"),
               _metric("2/0", fail_type="Unsupported"), _metric("1/1", forward=False, seconds=2.0)]
    v = compile_verdict(before, compile_counts(counters, metrics))
    assert (v["graphs"], v["graph_breaks"], v["recompiles"], v["failed_compiles"]) == (5, 3, 2, 1)
    assert (v["compiles"], v["backward_compiles"]) == (5, 1)       # a backward graph's record: no recompile
    assert v["dynamo_seconds"] == 7.0 and v["fell_back_to_eager"]          # a frame that failed runs eagerly
    assert compile_verdict(before, compile_counts({"stats": {"unique_graphs": 0}}, []))["fell_back_to_eager"]
    ok = compile_verdict(before, compile_counts({"stats": {"unique_graphs": 2}}, [_metric("0/0")]),
                         warm=compile_counts({"stats": {"unique_graphs": 2}}, [_metric("0/0")]))
    assert not ok["fell_back_to_eager"] and ok["recompiles_while_timed"] == 0


def test_compile_counts_read_torchdynamo_itself():
    def f(x):
        y = x.sin()
        torch._dynamo.graph_break()
        return y.cos()
    before = compile_counts()
    fc = torch.compile(f, backend="aot_eager")             # forward and backward graphs, no kernels
    fc(torch.ones(3, requires_grad=True)).sum().backward()
    fc(torch.ones(4, 2, requires_grad=True)).sum().backward()        # a new rank: both frames again
    v = compile_verdict(before, compile_counts())
    assert v["graphs"] >= 2 and v["graph_breaks"] >= 1 and not v["fell_back_to_eager"]
    # two frames (the graph break splits f), each compiled again once; backward graphs are no recompiles
    assert v["backward_compiles"] >= 1 and v["recompiles"] == v["compiles"] - 2 == 2


def test_the_gpu_paths_code_runs_on_the_cpu():
    """The TF32 switch, bf16 + channels_last and BN folding run here too (only CUDA graphs need CUDA)."""
    cpu = torch.device("cpu")
    cfg = gpu.bench_config("tiny", cpu)
    tf32_before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    tr = train_section(cfg, cpu, (None, None), gpu_paths=True)
    p = tr["paths"]
    assert all(p[k]["status"] == "ok" for k in ("fp32_eager", "fp32_tf32_eager", "bf16_channels_last")), p
    assert (p["fp32_eager"]["precision"]["tf32_convolutions"], p["fp32_tf32_eager"]["precision"]["tf32_matmul"]) \
        == (False, True)
    assert p["bf16_channels_last"]["dtype"] == "bfloat16 autocast" and p["bf16_channels_last"]["channels_last"]
    inf = infer_section(cfg, cpu, gpu_paths=True)["paths"]
    assert inf["bf16_cudagraph"]["status"] == UNMEASURED and inf["bf16_bn_folded"]["status"] == "ok"
    assert 0 < inf["bf16_bn_folded"]["rel_err_vs_fp32_throughput"] < 0.05
    assert inf["fp32_tf32_eager"]["rel_err_vs_fp32_latency"] < 1e-5        # the CPU has no TF32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == tf32_before


@pytest.fixture(scope="module")
def children(tmp_path_factory):
    """The two compile children on the CPU (TorchDynamo's eager backend), in the device machine's gaps."""
    tmp = tmp_path_factory.mktemp("compile_children")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", _blocked_path(tmp / "block"))
        return {kind: run_compile_child(kind, "tiny", torch.device("cpu"), 200.0, tmp, backend="eager")
                for kind in ("train", "infer")}


def test_the_compile_children_on_the_cpu(children):
    tc = children["train"]
    assert tc["status"] == "ok" and tc["backend"] == "eager" and tc["images_per_second"] > 0, tc["status"]
    c = tc["compile"]      # G and the discriminators' shared forward (with and without gradients, two widths)
    assert c["graphs"] >= 2 and c["recompiles"] >= 1 and not c["fell_back_to_eager"]
    assert c["recompiles_while_timed"] == 0 and c["compile_seconds"] >= 0 and tc["timeout_s"] == 200
    assert tc["precision"]["cudnn_benchmark"] is False and tc["dtype"] == "bfloat16 autocast"
    ic = children["infer"]
    assert ic["status"] == "ok" and ic["compile"]["graphs"] >= 1 and not ic["compile"]["fell_back_to_eager"]
    assert ic["compile"]["recompiles"] >= 1                       # batch 1, then the throughput batch
    assert 0 < ic["rel_err_vs_fp32_throughput"] < 0.05 and ic["throughput"]["iters"] >= 30


def test_a_compile_child_that_runs_out_of_time_is_killed_with_its_workers(tmp_path):
    r = run_compile_child("train", "tiny", torch.device("cpu"), 0.5, tmp_path, backend="eager")
    assert r["status"].startswith("error: timed out after")
    code = ("import subprocess, sys, time\n"
            "w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            "print(w.pid, flush=True)\n"
            "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    worker = int(proc.stdout.readline())
    kill_group(proc)
    assert proc.returncode == -9
    status = Path(f"/proc/{worker}/status")
    for _ in range(100):                   # the worker is gone (or a zombie its new parent reaps)
        if not status.exists() or "State:\tZ" in status.read_text():
            break
        subprocess.run(["sleep", "0.05"])
    assert not status.exists() or "State:\tZ" in status.read_text()


def test_eval_npz_is_written_atomically(tmp_path):
    path = tmp_path / "eval.npz"
    save_eval(path, a=np.arange(3))

    class Torn:
        def __array__(self, dtype=None, copy=None):
            raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        save_eval(path, a=np.arange(5), b=Torn())
    with np.load(path) as z:
        assert list(z["a"]) == [0, 1, 2]              # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["eval.npz"]


def test_finish_without_results_is_a_one_line_error(tmp_path, capsys):
    assert gpu.bench_main(["--finish", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no bench gpu results" in err and "\n" not in err


def test_configs_and_the_npz_budget():
    cfg = gpu.bench_config("paper", torch.device("cpu"))
    assert (cfg.model.image_size, cfg.model.n_blocks, cfg.model.ngf, cfg.train.batch_size) == (128, 9, 64, 16)
    assert cfg.loss.vgg_standin and cfg.train.lr_decay_start == 1.0
    assert gpu.bench_config("tiny", torch.device("cpu")).model.image_size == 32
    f, m, p = _pairs_budget(128, 882, 6, 6, 126)      # the paper config's final/snapshot pairs, peak frames
    assert f >= 32 and m >= 8 and p >= 100 and (4 * f + 6 * m + 6 + p) * 128 * 128 * 3 <= NPZ_LIMIT
    with pytest.raises(ValueError, match="paper or tiny"):
        gpu.bench_config("huge", torch.device("cpu"))


def test_the_summary_of_a_gpu_shaped_result(cpu_run, children):
    """The rows a GPU run prints (its figures in place of the CPU checks), built from the CPU run's JSON
    and the compile children's figures."""
    from lmexpr_nb.bench.gpu.summary import speedups, summary_markdown
    out, proc = cpu_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / gpu.JSON_NAME).read_text())
    s = res["sections"]
    s["device"].update(type="cuda", name="NVIDIA H100 80GB HBM3", gpus=1, peak_bf16_dense_tflops=989.4,
                       peak_source="datasheet, H100 SXM", measured_bf16_tflops=790.0)
    tp = s["train_throughput"]["paths"]
    tp["bf16_channels_last_compile"] = json.loads(json.dumps(children["train"]))
    tp["bf16_channels_last_compile"]["compile"]["fell_back_to_eager"] = True
    for p in ("fp32_eager", "bf16_channels_last_compile"):
        tp[p].update(mfu_of_bf16_peak=0.25, mfu_of_measured_bf16_peak=0.3125, achieved_tflops=247.4)
    s["train_throughput"]["speedups"] = speedups(tp)
    ip = s["inference"]["paths"]
    ip["bf16_compile"] = children["infer"]
    res.pop("gpu_note"), res.pop("summary")                 # the stored rows are the CPU run's
    md = summary_markdown(res)
    row = next(ln for ln in md.splitlines() if "| bf16_channels_last_compile |" in ln)
    assert "| 25.0 / 31.2 |" in row and "graphs" in row and "FELL BACK TO EAGER" in row
    assert "CPU check" not in md and "measured 790.0 TFLOP/s" in md
    assert "bf16_channels_last_compile vs fp32" in md
    row = next(ln for ln in md.splitlines() if "| bf16_compile |" in ln)
    assert "rel. error vs fp32" in row and "recompiles" in row
