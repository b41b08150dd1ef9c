"""Notebook 00: what this environment has (versions, dlib models, GPU, weights, data)."""
from __future__ import annotations

import platform

import torch

from lmexpr_nb.common.weights import SPECS, MissingWeightsError, dlib_model, locate

PACKAGES = ("torch", "torchvision", "dlib", "numpy", "scipy", "skimage", "matplotlib", "ipywidgets",
            "papermill", "yaml", "tqdm", "PIL", "imageio_ffmpeg")
DLIB_MODELS = ("shape_predictor_68_face_landmarks.dat", "shape_predictor_5_face_landmarks.dat",
               "dlib_face_recognition_resnet_model_v1.dat")


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
    if torch.cuda.is_available():
        return {"item": "GPU", "value": f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})", "ok": True}
    return {"item": "GPU", "value": f"none: CPU only ({torch.get_num_threads()} threads); fine for the smoke profile",
            "ok": True}


def _weight_rows() -> list[dict]:
    rows = []
    for key, spec in SPECS.items():
        try:
            rows.append({"item": f"weights {key}", "value": str(locate(key, download=False)), "ok": True})
        except MissingWeightsError:
            rows.append({"item": f"weights {key}", "value": f"not here ({spec.filename}): the smoke profile uses "
                         f"labelled stand-ins; the paper profile needs it", "ok": None})
    return rows
