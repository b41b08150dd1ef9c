"""Turn (source face, target landmarks, target label) into generated faces, in batches.

The one place where the generator is *used* (notebooks 02-09, the tables, the explorer and
real-time inference all call it): heatmaps are made from landmarks on the device, labels may
be class indices or soft (K,) vectors (the explorer blends them by intensity), results come
back as uint8 HWC arrays, the format every metric takes. A NaN or infinite pixel is an error
(NonFiniteOutput, naming the checkpoint model/trained.py loaded the generator from), never a
black face pasted into a photo, a figure or a table.
"""
from __future__ import annotations

import numpy as np
import torch

from lmexpr_nb.config import ModelConfig
from lmexpr_nb.landmarks.heatmaps import landmark_heatmaps


class NonFiniteOutput(ValueError):
    """The generator made NaN or infinite pixels; the message is one line naming its checkpoint."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def images_to_tensor(images) -> torch.Tensor:
    """uint8 (N,H,W,3) or float [-1,1] (N,3,H,W) -> float32 (N,3,H,W) in [-1,1]."""
    if torch.is_tensor(images) and images.dtype.is_floating_point:
        return images.float()
    a = np.ascontiguousarray(images.cpu() if torch.is_tensor(images) else images)
    if a.dtype != np.uint8 or a.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N,H,W,3) images or float (N,3,H,W); got {a.dtype} {a.shape}")
    return torch.from_numpy(a).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (N,3,H,W) in [-1,1] -> uint8 (N,H,W,3), rounding like PIL."""
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()


def label_tensor(labels, n: int) -> torch.Tensor:
    """int class indices (N,) -> long; soft (N,K) vectors -> float; a single int/vector is repeated."""
    t = torch.as_tensor(np.ascontiguousarray(labels))
    if t.dim() == 0 or (t.dim() == 1 and t.dtype.is_floating_point):
        t = t.unsqueeze(0).expand(n, *t.shape)
    return t.float() if t.dtype.is_floating_point else t.long()


@torch.no_grad()
def synthesize(G, source_images, source_landmarks, target_landmarks, target_labels, cfg: ModelConfig,
               batch_size: int = 32, device=None, return_masks: bool = False):
    """Generate one face per row: G(source, heatmaps(source lm), heatmaps(target lm), label).

    source_images: uint8 (N,S,S,3) (the cache's format) or float (N,3,S,S); landmarks (N,68,2) in
    crop pixels; target_labels: (N,) ints or (N,K) soft vectors. Returns uint8 (N,S,S,3), and the
    masks M_t of the first row when return_masks (for the pictures of notebook 02).
    """
    device = pick_device(device) if device is not None else next(G.parameters()).device
    was_training = G.training
    G.eval()
    src = images_to_tensor(source_images)
    n = src.shape[0]
    if src.shape[-1] != cfg.image_size:
        raise ValueError(f"images are {src.shape[-1]} px but the model expects {cfg.image_size} px")
    s_lm = torch.from_numpy(np.array(source_landmarks, dtype=np.float32))
    t_lm = torch.from_numpy(np.array(target_landmarks, dtype=np.float32))
    if t_lm.dim() == 2:
        t_lm = t_lm.unsqueeze(0).expand(n, -1, -1)
    labels = label_tensor(target_labels, n)
    out, masks = [], None
    try:
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            x = src[sl].to(device)
            hs = landmark_heatmaps(s_lm[sl].to(device), cfg.image_size, cfg.heatmap_sigma)
            ht = landmark_heatmaps(t_lm[sl].to(device), cfg.image_size, cfg.heatmap_sigma)
            y = G(x, hs, ht, labels[sl].to(device), return_masks=return_masks and masks is None)
            if isinstance(y, tuple):
                y, m = y
                masks = [mm[0].cpu() for mm in m]
            bad = ~torch.isfinite(y)
            if bool(bad.any()):                 # uint8 would turn them into a black face, silently
                raise NonFiniteOutput(
                    f"the generator{' of ' + G.loaded_from if getattr(G, 'loaded_from', None) else ''} made NaN "
                    f"or infinite pixels ({int(bad.sum())} of {bad.numel()} values): its weights are broken (a "
                    f"training run that diverged); train again, or load an earlier checkpoint")
            out.append(tensor_to_uint8(y))
    finally:
        G.train(was_training)
    images = np.concatenate(out) if out else np.zeros((0, cfg.image_size, cfg.image_size, 3), np.uint8)
    return (images, masks) if return_masks else images


def synthesize_pairs(G, cache, src_idx, tgt_idx, cfg: ModelConfig, **kw) -> np.ndarray:
    """Generated images for cache index pairs: target landmarks and label from the target frame."""
    return synthesize(G, cache.images[src_idx], cache.landmarks[src_idx], cache.landmarks[tgt_idx],
                      np.asarray(cache.labels)[tgt_idx], cfg, **kw)


