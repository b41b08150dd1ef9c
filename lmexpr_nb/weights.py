"""Where pretrained weights come from, and the message when they cannot be had.

The kit gets weights the usual way: a path the user gives, the folder named by
$LMEXPR_WEIGHTS, or torch's hub cache (`torch.hub.get_dir()/checkpoints`, where
torchvision's weights API puts its downloads). When a file is in none of those, a
download from its published address is tried (so a user online gets it without effort)
unless $LMEXPR_NO_DOWNLOAD is set; when that fails too, `MissingWeightsError` says which
file and where to put it. Stand-ins are never chosen here: a caller uses one only when
its config explicitly asks for it, and labels every output made with it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


class MissingWeightsError(RuntimeError):
    """Pretrained weights that a run needs are not on this machine."""


@dataclass(frozen=True)
class WeightSpec:
    filename: str
    what: str
    url: str | None = None
    sha256_prefix: str | None = None  # torch hub convention: the hash prefix in the file name
    hash_user_files: bool = False     # also check a file the user names (FID: numbers comparable only
                                      # with the exact weights); else only files under the canonical name


SPECS: dict[str, WeightSpec] = {
    "vgg19": WeightSpec("vgg19-dcbe5e31.pth", "VGG19 ImageNet weights (torchvision VGG19_Weights.IMAGENET1K_V1)",
                        "https://download.pytorch.org/models/vgg19-dcbe5e31.pth", "dcbe5e31"),
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
    import torch
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
            import torch
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
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if not h.hexdigest().startswith(spec.sha256_prefix):
            raise MissingWeightsError(f"{path} is not the expected {spec.what}: its sha256 starts "
                                      f"{h.hexdigest()[:8]}, expected {spec.sha256_prefix}; replace the file")
    return path
