"""The fault suite: bad input and faults against the command line and the Python API.

Every case asserts the exact outcome a careful user should get, one of
- a one-line error: exit status 2 and one stderr line naming the file or setting (command
  line), or a ValueError / MissingWeightsError whose one-line message names it (API);
- a recorded skip with its reason (in the preprocessing report);
- a refusal (a weight file that would need unpickling, a second writer into a cache folder);
and, where something already exists, that nothing is lost: the cache, checkpoint or table is
intact and still used, including after `kill -9` in the middle of writing the cache and the
checkpoint.

`@fault(kind)` records what the case guards against, i.e. what a user saw where the case
failed before the fault suite's fixes (KINDS); `guard` marks cases that ended well already and
stay here so that they keep doing so. The command-line cases call the same `main()` that
`python -m lmexpr_nb` runs, in-process (seconds); a few run as real subprocesses, where a
process boundary is the point (tracebacks, kill -9, two writers).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lmexpr_nb.config import DataConfig, EvalConfig, load_profile
from lmexpr_nb.data.cache import load_cache
from lmexpr_nb.landmarks.preprocess import preprocess_dataset

REPO = Path(__file__).resolve().parents[1]
KINDS = ("code execution", "data loss", "silent wrong result", "traceback", "vague message",
         "housekeeping", "missing provenance", "guard")
FAULTS: dict[str, str] = {}          # test function name -> kind (read by the tally in the issue note)


def fault(kind: str):
    assert kind in KINDS, kind

    def mark(fn):
        FAULTS[fn.__name__] = kind
        return fn
    return mark


TINY_PROFILE = textwrap.dedent("""\
    description: tiny CPU profile for the fault suite
    config:
      data: {image_size: 32}
      model: {image_size: 32, ngf: 4, ndf: 4, n_blocks: 1, heatmap_sigma: 1.5}
      loss: {vgg_standin: true}
      train: {steps: 2, batch_size: 2, checkpoint_every: 1, sample_every: 2, log_every: 1,
              num_workers: 0, device: cpu, deterministic: true}
      eval: {fid_features: dlib-standin}
    """)


# ----------------------------------------------------------------------------- helpers

def one_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert "Traceback" not in text, text
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    return lines[0]


def cli(capsys, *args) -> tuple[int, str, str]:
    """`python -m lmexpr_nb ARGS` in this process: (exit status, stdout, stderr)."""
    from lmexpr_nb.__main__ import main
    try:
        rc = main([str(a) for a in args])
    except SystemExit as e:                       # argparse's own errors
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def cli_error(capsys, *args, needles=()) -> str:
    rc, _, err = cli(capsys, *args)
    assert rc == 2, (rc, err)
    line = one_line(err)
    assert line.startswith("lmexpr"), line
    for n in needles:
        assert str(n) in line, (n, line)
    return line


def api_error(exc, fn, *needles):
    with pytest.raises(exc) as e:
        fn()
    msg = one_line(str(e.value))
    for n in needles:
        assert str(n) in msg, (n, msg)
    return msg


def run_py(code: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, **kw)


def kill_mid_write(code: str, flag: Path, timeout: float = 180.0) -> None:
    """Start `code` in a child process, wait until it writes `flag` (it does so in the middle
    of writing a file, then sleeps), and kill -9 it there."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t0 = time.time()
    try:
        while not flag.exists():
            if p.poll() is not None:
                raise AssertionError(f"the child ended before the write: {p.stderr.read().decode()[-2000:]}")
            if time.time() - t0 > timeout:
                raise AssertionError("the child never reached the write")
            time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait(30)
        assert p.returncode == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def tmp_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.name.endswith(".tmp"))


class Payload:
    """A pickle that runs code when loaded: it writes `marker`."""
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The synthetic CK+-layout set, 2 subjects x 7 sequences x 4 frames (640x490)."""
    from lmexpr_nb.data.synthetic.write import write_synthetic_ckplus
    root = tmp_path_factory.mktemp("tree") / "synth"
    write_synthetic_ckplus(root, subjects=2, frames=4, seed=0)
    return root


@pytest.fixture
def small_tree(tree, tmp_path):
    """A writable copy of one subject of `tree` (28 frames: seconds to preprocess)."""
    dst = tmp_path / "tree"
    for sub in ("cohn-kanade-images", "Emotion", "Landmarks"):
        shutil.copytree(tree / sub / "S001", dst / sub / "S001")
    shutil.copy(tree / "SYNTHETIC.md", dst / "SYNTHETIC.md")
    return dst


@pytest.fixture(scope="module")
def built(tree, tmp_path_factory):
    """A finished cache of `tree` at 32 px (two subjects: one train, one validation)."""
    out = tmp_path_factory.mktemp("built") / "cache"
    preprocess_dataset("ckplus", tree, out, DataConfig(image_size=32), progress=False)
    return out


@pytest.fixture
def cache_copy(built, tmp_path):
    dst = tmp_path / "cache"
    shutil.copytree(built, dst)
    return dst


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("profile") / "tiny.yaml"
    p.write_text(TINY_PROFILE)
    return p


@pytest.fixture(scope="module")
def trained(built, profile_file, tmp_path_factory):
    """A finished 2-step run of the tiny profile on `built`."""
    from lmexpr_nb.train.trainer import train
    out = tmp_path_factory.mktemp("trained") / "run"
    train(load_profile(profile_file), built, out, progress=False)
    return out


@pytest.fixture
def run_copy(trained, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained, dst)
    return dst


@pytest.fixture
def weight_dirs(tmp_path, monkeypatch):
    """Empty $LMEXPR_WEIGHTS and torch hub cache; no download."""
    w, th = tmp_path / "weights", tmp_path / "torch"
    (th / "hub" / "checkpoints").mkdir(parents=True)
    w.mkdir()
    monkeypatch.setenv("LMEXPR_WEIGHTS", str(w))
    monkeypatch.setenv("TORCH_HOME", str(th))
    monkeypatch.setenv("LMEXPR_NO_DOWNLOAD", "1")
    return {"LMEXPR_WEIGHTS": w, "hub cache": th / "hub" / "checkpoints"}


# ============================================================================= 1. weight files

LIGHTCNN = "LightCNN_29Layers_V2_checkpoint.pth.tar"


@fault("code execution")
@pytest.mark.parametrize("where", ["LMEXPR_WEIGHTS", "hub cache"])
def test_lightcnn_payload_dropped_where_weights_are_looked_for_is_refused_not_run(weight_dirs, tmp_path, where):
    from lmexpr_nb.common.weights import MissingWeightsError
    from lmexpr_nb.metrics.recognisers import load_recogniser
    marker = tmp_path / "pwned"
    path = weight_dirs[where] / LIGHTCNN
    torch.save({"state_dict": Payload(marker)}, path)
    api_error(MissingWeightsError, lambda: load_recogniser("lightcnn", EvalConfig()), path)
    assert not marker.exists(), "the file's pickled code ran"


@fault("code execution")
def test_vggface_payload_given_as_the_users_file_is_refused_not_run(tmp_path):
    from lmexpr_nb.common.weights import MissingWeightsError
    from lmexpr_nb.metrics.recognisers import load_recogniser
    marker = tmp_path / "pwned"
    path = tmp_path / "vgg_face_dag.pth"
    torch.save(Payload(marker), path)
    msg = api_error(MissingWeightsError, lambda: load_recogniser("vggface", EvalConfig(vggface_weights=str(path))),
                    path, "convert")
    assert "weights_only=False" not in msg
    assert not marker.exists()


@fault("guard")
def test_inception_payload_under_the_release_name_fails_the_hash_before_loading(weight_dirs, tmp_path):
    from lmexpr_nb.common.weights import MissingWeightsError
    from lmexpr_nb.metrics.inception import load_fid_inception
    marker = tmp_path / "pwned"
    path = weight_dirs["hub cache"] / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(Payload(marker), path)
    api_error(MissingWeightsError, load_fid_inception, path, "sha256")
    assert not marker.exists()


@fault("traceback")
def test_vgg19_payload_as_the_users_perceptual_weights_is_a_one_line_refusal(tmp_path):
    from lmexpr_nb.common.weights import MissingWeightsError
    from lmexpr_nb.config import LossConfig
    from lmexpr_nb.model.losses import PerceptualLoss
    marker = tmp_path / "pwned"
    path = tmp_path / "my_vgg19.pth"
    torch.save({"features.0.weight": Payload(marker)}, path)
    msg = api_error(MissingWeightsError, lambda: PerceptualLoss(LossConfig(vgg_weights=str(path))), path)
    assert "weights_only=False" not in msg
    assert not marker.exists()


@fault("traceback")
def test_checkpoint_payload_is_refused_by_load_trained(tmp_path):
    from lmexpr_nb.model.trained import load_trained
    marker = tmp_path / "pwned"
    path = tmp_path / "last.pt"
    torch.save({"format": "lmexpr-nb-checkpoint/1", "models": Payload(marker)}, path)
    msg = api_error(ValueError, lambda: load_trained(path), path)
    assert "weights_only" not in msg
    assert not marker.exists()


@fault("code execution")
def test_every_load_in_the_kit_refuses_pickles():
    """Source check over the package: every torch.load passes weights_only=True, every np.load
    allow_pickle=False, and nothing calls pickle.load(s), yaml.load or weights_only=False."""
    import ast

    import lmexpr_nb
    bad, loads = [], 0
    for path in sorted(Path(lmexpr_nb.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            kw = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
            where = f"{path.name}:{node.lineno}"
            if (owner, node.func.attr) == ("torch", "load"):
                loads += 1
                if kw.get("weights_only") is not True:
                    bad.append(f"{where} torch.load without weights_only=True")
            elif (owner, node.func.attr) in (("np", "load"), ("numpy", "load")):
                loads += 1
                if kw.get("allow_pickle") is not False:
                    bad.append(f"{where} np.load without allow_pickle=False")
            elif (owner, node.func.attr) in (("pickle", "load"), ("pickle", "loads"), ("yaml", "load")):
                bad.append(f"{where} {owner}.{node.func.attr}")
    assert loads >= 4 and bad == []


def _small_lightcnn():
    from lmexpr_nb.metrics.recognisers import LightCNN29v2
    torch.manual_seed(0)
    return LightCNN29v2(num_classes=10).eval()


@fault("code execution")
def test_lightcnn_release_with_numpy_extras_loads_without_a_full_unpickle(tmp_path):
    """The release's dict carries numpy scalars beside the tensors: allowed exactly, not by unpickling."""
    from lmexpr_nb.metrics.recognisers import LightCNNRecogniser
    net = _small_lightcnn()
    path = tmp_path / LIGHTCNN
    torch.save({"epoch": np.int64(80), "arch": "LightCNN-29v2", "prec1": np.float64(98.7),
                "state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # no "loading it as a full pickle"
        rec = LightCNNRecogniser.from_weights(path)
    ims = np.random.default_rng(0).integers(0, 256, (1, 128, 128, 3)).astype(np.uint8)
    x = torch.from_numpy(np.rint(ims @ np.array([0.299, 0.587, 0.114]))).float()[:, None] / 255
    with torch.no_grad():
        np.testing.assert_allclose(rec.embed(ims), net.embedding(x).double().numpy(), rtol=1e-5, atol=1e-5)


@fault("missing provenance")
def test_recogniser_provenance_carries_the_weight_files_sha256(tmp_path):
    from lmexpr_nb.metrics.recognisers import LightCNNRecogniser
    path = tmp_path / LIGHTCNN
    torch.save({"state_dict": _small_lightcnn().state_dict()}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    rec = LightCNNRecogniser.from_weights(path)
    assert f"sha256 {digest[:16]}" in rec.provenance and LIGHTCNN in rec.provenance


@fault("traceback")
def test_truncated_lightcnn_file_is_a_one_line_error_naming_it(tmp_path):
    from lmexpr_nb.common.weights import MissingWeightsError
    from lmexpr_nb.metrics.recognisers import LightCNNRecogniser
    path = tmp_path / LIGHTCNN
    torch.save({"state_dict": _small_lightcnn().state_dict()}, path)
    path.write_bytes(path.read_bytes()[:5000])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        msg = api_error(MissingWeightsError, lambda: LightCNNRecogniser.from_weights(path), path)
    assert "weights_only=False" not in msg


# ============================================================================= checkpoints

@fault("traceback")
def test_train_resume_from_a_truncated_checkpoint_is_one_line(capsys, run_copy, built, profile_file):
    ck = run_copy / "checkpoints" / "last.pt"
    ck.write_bytes(ck.read_bytes()[:4096])
    line = cli_error(capsys, "train", "--config", profile_file, "--data", built, "--out", run_copy,
                     "--resume", "--steps", "3", "--no-progress", needles=[ck])
    assert "weights_only" not in line


@fault("traceback")
def test_train_resume_from_a_file_that_is_no_checkpoint_is_one_line(capsys, run_copy, built, profile_file):
    ck = run_copy / "checkpoints" / "last.pt"
    ck.write_bytes(b"hello, not a checkpoint\n")
    line = cli_error(capsys, "train", "--config", profile_file, "--data", built, "--out", run_copy,
                     "--resume", "--steps", "3", "--no-progress", needles=[ck])
    assert "weights_only" not in line


@pytest.fixture(scope="module")
def killed_run(trained, built, profile_file, tmp_path_factory):
    """A copy of the finished run whose resume was killed -9 in the middle of writing last.pt
    (made once; tests use their own copy, killed_checkpoint)."""
    run = tmp_path_factory.mktemp("killed") / "run"
    shutil.copytree(trained, run)
    before = (run / "checkpoints" / "last.pt").read_bytes()
    flag = run.parent / "mid-write"
    kill_mid_write(textwrap.dedent(f"""
        import time
        from pathlib import Path
        import torch
        def torn(obj, f, *a, **k):
            with open(f, "wb") as fh:
                fh.write(b"PK\\x03\\x04" + bytes(65536))
                fh.flush()
            Path({str(flag)!r}).write_text("mid-write")
            time.sleep(600)
        torch.save = torn
        from lmexpr_nb.config import load_profile
        from lmexpr_nb.train.trainer import train
        train(load_profile({str(profile_file)!r}), {str(built)!r}, {str(run)!r}, resume=True, steps=3,
              progress=False)
        """), flag)
    return run, before


@pytest.fixture
def killed_checkpoint(killed_run, tmp_path):
    """This test's own copy of killed_run (torn temporary included): a test that resumes it changes
    nothing another test sees, whatever the order."""
    run, before = killed_run
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst, before


@fault("guard")
def test_kill_9_while_writing_the_checkpoint_leaves_the_last_one_whole(killed_checkpoint):
    from lmexpr_nb.common.checkpoint import load_checkpoint
    run, before = killed_checkpoint
    assert (run / "checkpoints" / "last.pt").read_bytes() == before
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2
    assert tmp_files(run), "the torn temporary file is what kill -9 leaves (the next write removes it)"


@fault("housekeeping")
def test_resume_after_kill_9_continues_and_removes_the_torn_temporary(killed_checkpoint, built, profile_file):
    from lmexpr_nb.common.checkpoint import load_checkpoint
    from lmexpr_nb.train.trainer import train
    run, _ = killed_checkpoint
    s = train(load_profile(profile_file), built, run, resume=True, steps=3, progress=False)
    assert s["start_step"] == 2 and s["final_step"] == 3
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 3
    assert tmp_files(run) == []


@fault("guard")
def test_checkpoint_write_that_fails_half_way_keeps_the_old_file(run_copy, monkeypatch):
    from lmexpr_nb.common import checkpoint as ck_io
    path = run_copy / "checkpoints" / "last.pt"
    before = path.read_bytes()
    ck = ck_io.load_checkpoint(path)
    real_save = torch.save

    def half(obj, f, *a, **k):
        real_save(obj, f)                                  # a real file ...
        Path(f).write_bytes(Path(f).read_bytes()[:len(before) // 2])   # ... torn half way
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(ck_io.torch, "save", half)
    with pytest.raises(OSError, match="No space"):
        ck_io.save_checkpoint(path, step=3, config=ck["config"], models=ck["models"], optimizers=ck["optimizers"],
                              sampler=ck["sampler"], rng=ck["rng"])
    assert path.read_bytes() == before and tmp_files(run_copy) == []


@fault("guard")
def test_training_into_a_finished_run_without_resume_is_refused_and_keeps_it(capsys, run_copy, built, profile_file):
    before = (run_copy / "checkpoints" / "last.pt").read_bytes()
    cli_error(capsys, "train", "--config", profile_file, "--data", built, "--out", run_copy, "--no-progress",
              needles=["--resume"])
    assert (run_copy / "checkpoints" / "last.pt").read_bytes() == before


@fault("guard")
def test_resume_with_another_model_config_is_refused_and_keeps_the_run(capsys, run_copy, built, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(TINY_PROFILE.replace("n_blocks: 1", "n_blocks: 2"))
    before = (run_copy / "checkpoints" / "last.pt").read_bytes()
    cli_error(capsys, "train", "--config", other, "--data", built, "--out", run_copy, "--resume", "--no-progress",
              needles=["different model config"])
    assert (run_copy / "checkpoints" / "last.pt").read_bytes() == before


# ============================================================================= 3. the preprocessing cache

def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])


@fault("traceback")
def test_truncated_cache_is_rebuilt_by_preprocess(tree, cache_copy):
    _truncate(cache_copy / "cache.npz")
    rep = preprocess_dataset("ckplus", tree, cache_copy, DataConfig(image_size=32), progress=False)
    assert rep["reused"] is False and len(load_cache(cache_copy)) == rep["frames_kept"] == 56


@fault("traceback")
def test_train_on_a_truncated_cache_names_it_and_force(capsys, cache_copy, profile_file, tmp_path):
    _truncate(cache_copy / "cache.npz")
    cli_error(capsys, "train", "--config", profile_file, "--data", cache_copy, "--out", tmp_path / "run",
              "--no-progress", needles=[cache_copy / "cache.npz", "--force"])


@fault("silent wrong result")
def test_report_of_another_cache_is_not_trusted_on_reuse(tree, small_tree, tmp_path):
    """A crash between the two writes (or a second writer) leaves report.json of another cache."""
    out = tmp_path / "cache"
    other = preprocess_dataset("ckplus", tree, tmp_path / "other", DataConfig(image_size=32), progress=False)
    mine = preprocess_dataset("ckplus", small_tree, out, DataConfig(image_size=32), progress=False)
    assert (other["frames_kept"], mine["frames_kept"]) == (56, 28)
    (out / "report.json").write_text((tmp_path / "other" / "report.json").read_text())
    again = preprocess_dataset("ckplus", small_tree, out, DataConfig(image_size=32), progress=False)
    assert again["reused"] is True
    assert again["frames_kept"] == len(load_cache(out)) == 28
    assert json.loads((out / "report.json").read_text())["frames_kept"] == 28


@fault("data loss")
def test_second_preprocess_into_the_same_folder_is_refused_and_the_first_result_kept(capsys, small_tree, tmp_path):
    """The first writer holds the folder until the test has tried the second one: it says so on its
    stdout and waits for a line on its stdin (no time window that a loaded machine could miss)."""
    out = tmp_path / "cache"
    first = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        import lmexpr_nb.landmarks.preprocess as P
        real = P.process_sequence
        held = []
        def holding(*a, **k):
            if not held:                     # the first sequence: hold the folder until told to go on
                held.append(1)
                print("holding", flush=True)
                sys.stdin.readline()
            return real(*a, **k)
        P.process_sequence = holding
        rep = P.preprocess_dataset("ckplus", {str(small_tree)!r}, {str(out)!r}, P.DataConfig(image_size=32),
                                   progress=False)
        print(rep["cache_key"])
        """)], env=dict(os.environ, PYTHONPATH=str(REPO)), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        said = first.stdout.readline()            # blocks until the first writer holds the folder (or ends)
        assert said == "holding\n", (said, first.stderr.read() if first.poll() is not None else "")
        cli_error(capsys, "preprocess", "--dataset", "ckplus", "--root", small_tree, "--out", out,
                  "--image-size", "48", needles=[out, "another"])
        stdout, stderr = first.communicate("go on\n", timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, stderr
    c = load_cache(out)
    assert c.images.shape[1] == 32 and c.meta["cache_key"] == stdout.strip().splitlines()[-1]


@pytest.fixture
def killed_cache(small_tree, tmp_path):
    """A finished cache whose rebuild (other settings) was killed -9 in the middle of writing it."""
    out = tmp_path / "cache"
    preprocess_dataset("ckplus", small_tree, out, DataConfig(image_size=32), progress=False)
    before = (out / "cache.npz").read_bytes()
    flag = tmp_path / "mid-write"
    kill_mid_write(textwrap.dedent(f"""
        import time
        from pathlib import Path
        import numpy as np
        def torn(f, **arrays):
            f.write(b"PK\\x03\\x04" + bytes(65536))
            f.flush()
            Path({str(flag)!r}).write_text("mid-write")
            time.sleep(600)
        np.savez = torn
        from lmexpr_nb.config import DataConfig
        from lmexpr_nb.landmarks.preprocess import preprocess_dataset
        preprocess_dataset("ckplus", {str(small_tree)!r}, {str(out)!r}, DataConfig(image_size=48), progress=False)
        """), flag)
    return out, before


@fault("guard")
def test_kill_9_while_writing_the_cache_keeps_the_old_one_in_use(killed_cache, small_tree):
    out, before = killed_cache
    assert (out / "cache.npz").read_bytes() == before
    assert tmp_files(out), "the torn temporary file is what kill -9 leaves"
    rep = preprocess_dataset("ckplus", small_tree, out, DataConfig(image_size=32), progress=False)
    assert rep["reused"] is True and load_cache(out).images.shape == (28, 32, 32, 3)


@fault("housekeeping")
def test_the_next_cache_write_removes_the_torn_temporary(killed_cache, small_tree):
    out, _ = killed_cache
    rep = preprocess_dataset("ckplus", small_tree, out, DataConfig(image_size=48), progress=False)
    assert rep["reused"] is False and load_cache(out).images.shape[1] == 48
    assert tmp_files(out) == []


@fault("guard")
def test_cache_write_that_fails_half_way_keeps_the_old_cache(small_tree, tmp_path, monkeypatch):
    import lmexpr_nb.data.cache as cache_mod
    out = tmp_path / "cache"
    preprocess_dataset("ckplus", small_tree, out, DataConfig(image_size=32), progress=False)
    before = (out / "cache.npz").read_bytes()
    real = np.savez

    def half(f, **arrays):
        real(f, **arrays)
        f.flush()
        f.truncate(f.tell() // 2)                          # half of the archive is on disk ...
        raise KeyboardInterrupt("interrupted mid-write")   # ... when the user presses Ctrl-C
    monkeypatch.setattr(cache_mod.np, "savez", half)
    with pytest.raises(KeyboardInterrupt):
        preprocess_dataset("ckplus", small_tree, out, DataConfig(image_size=48), progress=False)
    assert (out / "cache.npz").read_bytes() == before and tmp_files(out) == []
    assert load_cache(out).images.shape[1] == 32


@fault("vague message")
def test_preprocess_into_a_folder_under_a_file_stops_before_the_work(capsys, small_tree, tmp_path, monkeypatch):
    import lmexpr_nb.landmarks.preprocess as P

    def no_work(*a, **k):
        raise AssertionError("the output folder must be checked before any frame is processed")
    monkeypatch.setattr(P, "process_sequence", no_work)
    (tmp_path / "afile").write_text("x")
    cli_error(capsys, "preprocess", "--dataset", "ckplus", "--root", small_tree, "--out", tmp_path / "afile" / "c",
              needles=["--out", tmp_path / "afile"])


# ============================================================================= 4. silent wrong samples

def _first_frame(root: Path, seq="001"):
    f = sorted((root / "cohn-kanade-images" / "S001" / seq).glob("*.png"))[0]
    return f, root / "Landmarks" / "S001" / seq / f"{f.stem}_landmarks.txt"


@fault("silent wrong result")
def test_noise_frame_with_valid_dataset_landmarks_is_a_recorded_skip(small_tree, tmp_path):
    from PIL import Image
    frame, lm = _first_frame(small_tree)
    assert lm.is_file()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (490, 640, 3)).astype(np.uint8)).save(frame)
    rep = preprocess_dataset("ckplus", small_tree, tmp_path / "c", DataConfig(image_size=32), progress=False)
    skip = [s for s in rep["skip_examples"] if s["path"] == str(frame)]
    assert len(skip) == 1 and "noise" in skip[0]["reason"], rep["skip_examples"]
    assert rep["frames_kept"] == 27 and str(frame) not in set(load_cache(tmp_path / "c").paths)


@fault("silent wrong result")
def test_dataset_landmarks_outside_the_image_are_a_recorded_skip(small_tree, tmp_path):
    from PIL import Image
    frame, lm = _first_frame(small_tree)
    Image.fromarray(np.full((490, 640, 3), 120, np.uint8)).save(frame)            # dlib finds nothing ...
    pts = np.loadtxt(lm) + [900.0, 0.0]                                             # ... and the file points off-image
    lm.write_text("".join(f"{x:16.7e}{y:16.7e}\n" for x, y in pts))
    rep = preprocess_dataset("ckplus", small_tree, tmp_path / "c", DataConfig(image_size=32), progress=False)
    skip = [s for s in rep["skip_examples"] if s["path"] == str(frame)]
    assert len(skip) == 1 and "outside the image" in skip[0]["reason"]
    assert rep["frames_kept"] == 27


@fault("silent wrong result")
def test_flat_frame_with_valid_dataset_landmarks_is_a_recorded_skip(small_tree, tmp_path):
    from PIL import Image
    frame, _ = _first_frame(small_tree)
    Image.fromarray(np.full((490, 640, 3), 90, np.uint8)).save(frame)
    rep = preprocess_dataset("ckplus", small_tree, tmp_path / "c", DataConfig(image_size=32), progress=False)
    skip = [s for s in rep["skip_examples"] if s["path"] == str(frame)]
    assert len(skip) == 1 and "flat" in skip[0]["reason"]
    assert rep["frames_kept"] == 27


def _emotion(root: Path, seq="001") -> Path:
    return next((root / "Emotion" / "S001" / seq).glob("*_emotion.txt"))


@fault("vague message")
def test_emotion_file_holding_nan_is_a_recorded_skip_naming_it(small_tree, tmp_path):
    emo = _emotion(small_tree)
    emo.write_text("   nan\n")
    rep = preprocess_dataset("ckplus", small_tree, tmp_path / "c", DataConfig(image_size=32), progress=False)
    skip = [s for s in rep["skip_examples"] if s["path"] == str(emo)]
    assert len(skip) == 1 and "nan" in skip[0]["reason"] and rep["frames_kept"] == 24


@fault("traceback")
def test_emotion_file_holding_inf_is_a_recorded_skip_naming_it(capsys, small_tree, tmp_path):
    emo = _emotion(small_tree, "002")
    emo.write_text("inf\n")
    rc, out, err = cli(capsys, "preprocess", "--dataset", "ckplus", "--root", small_tree, "--out", tmp_path / "c",
                       "--image-size", "32")
    assert rc == 0, err
    rep = json.loads((tmp_path / "c" / "report.json").read_text())
    skip = [s for s in rep["skip_examples"] if s["path"] == str(emo)]
    assert len(skip) == 1 and "inf" in skip[0]["reason"] and rep["frames_kept"] == 24


# ============================================================================= 6. command-line arguments

@fault("vague message")
@pytest.mark.parametrize("size", ["0", "-32"])
def test_preprocess_image_size_out_of_range(capsys, small_tree, tmp_path, size):
    cli_error(capsys, "preprocess", "--dataset", "ckplus", "--root", small_tree, "--out", tmp_path / "c",
              "--image-size", size, needles=["--image-size", size])
    assert not (tmp_path / "c" / "cache.npz").exists()


@fault("silent wrong result")
def test_preprocess_val_fraction_out_of_range(capsys, small_tree, tmp_path):
    cli_error(capsys, "preprocess", "--dataset", "ckplus", "--root", small_tree, "--out", tmp_path / "c",
              "--val-fraction", "1.5", needles=["--val-fraction", "1.5"])


@fault("guard")
def test_preprocess_root_that_does_not_exist(capsys, tmp_path):
    cli_error(capsys, "preprocess", "--dataset", "ckplus", "--root", tmp_path / "nowhere", "--out", tmp_path / "c",
              needles=[tmp_path / "nowhere"])


@fault("traceback")
def test_train_out_under_a_file(capsys, built, profile_file, tmp_path):
    (tmp_path / "afile").write_text("x")
    cli_error(capsys, "train", "--config", profile_file, "--data", built, "--out", tmp_path / "afile" / "run",
              "--no-progress", needles=["--out", tmp_path / "afile"])


@fault("traceback")
def test_train_device_cuda_without_such_a_gpu(capsys, built, profile_file, tmp_path):
    dev = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    cli_error(capsys, "train", "--config", profile_file, "--data", built, "--out", tmp_path / "run",
              "--device", dev, "--no-progress", needles=["--device", dev])
    assert not (tmp_path / "run" / "checkpoints").exists()


@fault("traceback")
def test_train_device_that_torch_does_not_know(capsys, built, profile_file, tmp_path):
    cli_error(capsys, "train", "--config", profile_file, "--data", built, "--out", tmp_path / "run",
              "--device", "tpu7", "--no-progress", needles=["--device", "tpu7"])


def _tiny_with(path: Path, setting: str, value) -> Path:
    import yaml
    section, key = setting.split(".")
    raw = yaml.safe_load(TINY_PROFILE)
    raw["config"][section][key] = value
    path.write_text(yaml.safe_dump(raw))
    return path


@fault("traceback")
@pytest.mark.parametrize("setting,value", [("train.steps", "ten"), ("model.n_blocks", 2.5), ("train.lr", "fast")])
def test_profile_parameter_of_the_wrong_type_is_named(capsys, built, tmp_path, setting, value):
    prof = _tiny_with(tmp_path / "bad.yaml", setting, value)
    cli_error(capsys, "train", "--config", prof, "--data", built, "--out", tmp_path / "run", "--no-progress",
              needles=[f"config.{setting}"])
    assert not (tmp_path / "run" / "checkpoints").exists()


@fault("silent wrong result")
def test_profile_switch_that_is_not_a_boolean_is_named(capsys, built, tmp_path):
    """`vgg_standin: "maybe"` must not quietly count as true (a stand-in run labelled as asked for)."""
    prof = _tiny_with(tmp_path / "bad.yaml", "loss.vgg_standin", "maybe")
    cli_error(capsys, "train", "--config", prof, "--data", built, "--out", tmp_path / "run", "--no-progress",
              needles=["config.loss.vgg_standin"])
    assert not (tmp_path / "run" / "checkpoints").exists()


@fault("guard")
def test_unknown_profile_setting_is_named(capsys, built, tmp_path):
    prof = _tiny_with(tmp_path / "bad.yaml", "model.n_blockz", 2)
    cli_error(capsys, "train", "--config", prof, "--data", built, "--out", tmp_path / "run", "--no-progress",
              needles=["config.model.n_blockz"])


@fault("traceback")
def test_profile_that_is_not_valid_yaml_is_named(capsys, built, tmp_path):
    prof = tmp_path / "broken.yaml"
    prof.write_text("config:\n  train: {steps: 3\n")
    cli_error(capsys, "train", "--config", prof, "--data", built, "--out", tmp_path / "run", "--no-progress",
              needles=[prof])


@fault("guard")
def test_train_data_folder_without_a_cache(capsys, profile_file, tmp_path):
    (tmp_path / "empty").mkdir()
    cli_error(capsys, "train", "--config", profile_file, "--data", tmp_path / "empty", "--out", tmp_path / "run",
              "--no-progress", needles=[tmp_path / "empty"])


@fault("traceback")
def test_synth_out_is_an_existing_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    cli_error(capsys, "synth", "--out", tmp_path / "afile", "--subjects", "1", needles=[tmp_path / "afile"])
    assert (tmp_path / "afile").read_text() == "x"


@fault("guard")
def test_synth_zero_subjects(capsys, tmp_path):
    cli_error(capsys, "synth", "--out", tmp_path / "s", "--subjects", "0", needles=["--subjects"])


@fault("traceback")
def test_run_out_under_a_file(capsys, tmp_path):
    (tmp_path / "afile").write_text("x")
    cli_error(capsys, "run", "--out", tmp_path / "afile" / "r", needles=["--out", tmp_path / "afile"])


@fault("guard")
def test_run_data_that_does_not_exist(capsys, tmp_path):
    cli_error(capsys, "run", "--out", tmp_path / "r", "--data", tmp_path / "nowhere", needles=[tmp_path / "nowhere"])


@fault("guard")
def test_run_profile_that_does_not_exist(capsys, tmp_path):
    cli_error(capsys, "run", "--out", tmp_path / "r", "--profile", tmp_path / "nope.yaml", needles=["nope.yaml"])


@fault("traceback")
def test_tracebacks_do_not_cross_the_process_boundary(built, tmp_path):
    """The same faults through a real `python -m lmexpr_nb` process: one line, status 2."""
    (tmp_path / "afile").write_text("x")
    for args in (["synth", "--out", str(tmp_path / "afile")],
                 ["train", "--data", str(built), "--out", str(tmp_path / "r"), "--device", "tpu7"]):
        r = subprocess.run([sys.executable, "-m", "lmexpr_nb", *args], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=120)
        assert r.returncode == 2, (args, r.stderr)
        assert one_line(r.stderr).startswith("lmexpr")


# ============================================================================= 5. relative paths (lmexpr run)

def _probe_notebooks(folder: Path) -> Path:
    """A one-notebook stand-in for notebooks/: it records what its context sees."""
    import nbformat
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\nout_dir = None\ndataset = "synthetic"\ndata_root = None\n'
                                       'cache_dir = None\ninteractive = True\nmetrics_path = None')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "from lmexpr_nb.runner.context import notebook_context\n"
        "ctx = notebook_context(profile, out_dir, dataset, data_root, cache_dir, interactive, metrics_path)\n"
        "assert ctx.data_root.is_dir(), ctx.data_root\n"
        "ctx.save_metrics('probe', {'steps': ctx.cfg.train.steps, 'data_root': str(ctx.data_root),\n"
        "                           'data': ctx.provenance()['data']})")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "00_probe.ipynb")
    return folder


@fault("vague message")
def test_run_resolves_relative_profile_data_and_out_against_the_callers_folder(capsys, tmp_path, monkeypatch):
    from lmexpr_nb.runner import run
    monkeypatch.setattr(run, "NOTEBOOK_DIR", _probe_notebooks(tmp_path / "nbs"))
    work = tmp_path / "work"
    (work / "ds").mkdir(parents=True)                      # a real (not synthetic) tree: labelled real
    (work / "my.yaml").write_text("config:\n  train: {steps: 7}\nnotebooks:\n  dataset: synthetic\n")
    monkeypatch.chdir(work)
    rc, out, err = cli(capsys, "run", "--profile", "my.yaml", "--data", "ds", "--out", "r")
    assert rc == 0, err
    got = json.loads((work / "r" / "notebooks" / "00_probe.metrics.json").read_text())["probe"]
    assert got["values"] == {"steps": 7, "data_root": str(work / "ds"), "data": "real"}
    assert got["provenance"]["profile"] == "my"


@fault("vague message")
def test_run_with_a_bad_profile_parameter_stops_before_any_notebook(capsys, tmp_path, monkeypatch):
    from lmexpr_nb.runner import run
    monkeypatch.setattr(run, "NOTEBOOK_DIR", _probe_notebooks(tmp_path / "nbs"))
    (tmp_path / "ds").mkdir()
    prof = tmp_path / "bad.yaml"
    prof.write_text("config:\n  train: {steps: ten}\n")
    cli_error(capsys, "run", "--profile", prof, "--data", tmp_path / "ds", "--out", tmp_path / "r",
              needles=["config.train.steps"])
    assert not (tmp_path / "r" / "notebooks" / "00_probe.ipynb").exists()


# ============================================================================= 2. FaceEditor.edit / edit_face

class Echo(torch.nn.Module):
    def forward(self, source, *args, **kw):
        return source


@pytest.fixture(scope="module")
def photo():
    from skimage import data
    return data.astronaut()


@pytest.fixture(scope="module")
def editor(photo):
    from lmexpr_nb.config import Config
    from lmexpr_nb.data.synthetic.shape import MEAN_SHAPE
    from lmexpr_nb.explore import expressions as ex, infer
    cfg = Config.from_dict({"model": {"image_size": 64, "ngf": 4, "ndf": 4, "n_blocks": 1, "heatmap_sigma": 1.5}})
    d = np.zeros((8, 68, 2))
    d[5, [48, 54], 1] = -0.05
    subjects = np.zeros(8, int)
    subjects[5] = 3
    model = ex.ExpressionModel(ex.reference_shape(MEAN_SHAPE[None]), d, subjects)
    face = infer.prepare_face(photo, 64, cfg.data.crop_margin)
    return infer.FaceEditor(Echo(), cfg, model), face


def _edit(editor, photo, target="happy", **kw):
    ed, face = editor
    kw.setdefault("source_landmarks", face.frame_landmarks)
    return lambda: ed.edit(photo, target, **kw)


@fault("silent wrong result")
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_edit_intensity_not_finite(editor, photo, value):
    api_error(ValueError, _edit(editor, photo, intensity=value), "intensity")


@fault("silent wrong result")
@pytest.mark.parametrize("value", [5, -1])
def test_edit_intensity_outside_0_1_is_refused_unless_extrapolating(editor, photo, value):
    api_error(ValueError, _edit(editor, photo, intensity=value), "intensity", "extrapolate")


@fault("traceback")
def test_edit_intensity_given_as_text(editor, photo):
    api_error(ValueError, _edit(editor, photo, intensity="0.8"), "intensity", "'0.8'")


@fault("silent wrong result")
def test_edit_all_nan_target_landmarks(editor, photo):
    api_error(ValueError, _edit(editor, photo, np.full((68, 2), np.nan)), "landmarks", "finite")


@fault("silent wrong result")
def test_edit_target_landmarks_far_outside_the_face(editor, photo):
    ed, face = editor
    api_error(ValueError, _edit(editor, photo, face.frame_landmarks + 1e5), "landmarks", "outside")


@fault("vague message")
def test_edit_source_landmarks_not_finite(editor, photo):
    bad = editor[1].frame_landmarks.copy()
    bad[3] = np.nan
    api_error(ValueError, _edit(editor, photo, source_landmarks=bad), "source_landmarks", "finite")


@fault("traceback")
def test_edit_unknown_region(editor, photo):
    api_error(ValueError, _edit(editor, photo, regions={"nose": 0.5}), "nose", "mouth")


@fault("silent wrong result")
def test_edit_region_amount_not_finite(editor, photo):
    api_error(ValueError, _edit(editor, photo, regions={"mouth": float("nan")}), "mouth")


@fault("guard")
def test_edit_target_landmarks_of_the_wrong_shape(editor, photo):
    api_error(ValueError, _edit(editor, photo, np.zeros((10, 2))), "(68,2)")


# ============================================================================= 7. housekeeping

@fault("housekeeping")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_atomic_writes_honour_the_umask(tmp_path, umask):
    from lmexpr_nb.common.files import write_json
    old = os.umask(umask)
    try:
        write_json(tmp_path / "t.json", {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "t.json").stat().st_mode) == 0o666 & ~umask


@fault("housekeeping")
def test_stale_temporaries_are_removed_and_a_live_writers_kept(tmp_path):
    from lmexpr_nb.common.files import atomic_path, write_json
    orphan = tmp_path / ".report.json.k3j2l1x9.tmp"                  # what an interrupted older write left
    orphan.write_bytes(bytes(1000))
    os.utime(orphan, (time.time() - 7200, time.time() - 7200))
    with atomic_path(tmp_path / "report.json") as live:               # a write in progress ...
        live.write_text("{}")
        write_json(tmp_path / "report.json", {"a": 1})                # ... while another finishes
        assert live.exists(), "a live writer's temporary file was removed"
    assert not orphan.exists()
    assert tmp_files(tmp_path) == []


@fault("vague message")
def test_bench_preprocess_says_a_real_tree_is_real(small_tree, tmp_path):
    from lmexpr_nb.bench.preprocess import bench_preprocess
    (small_tree / "SYNTHETIC.md").unlink()                            # now a real-layout tree, not synthetic
    for sub in ("cohn-kanade-images", "Emotion", "Landmarks"):         # two sequences are enough here
        for seq in sorted((small_tree / sub / "S001").iterdir())[2:]:
            shutil.rmtree(seq)
    r = bench_preprocess(tmp_path / "b.json", frames=4, workers=1, data=small_tree)
    assert not r["data"].startswith("synthetic") and "real" in r["data"] and str(small_tree) in r["data"]
    assert r["frames"] == 8 and "1 subjects, 2 sequences, 8 frames" in r["data"]
    assert json.loads((tmp_path / "b.json").read_text())["data"] == r["data"]
