"""A small expression classifier: trained on real training images, applied to generated ones.

Used twice: (1) expression accuracy of generated faces (the target label is the expected
class), and (2) notebook 08 / paper Table 4 (accuracy when the training set is enlarged
with generated faces; the paper does not describe its classifier, so this one is ours). For
Table 4 the classes are the dataset's own expressions on peak frames (experiments/table4.py
maps them to 0..C-1 and passes num_classes=C); per-class accuracy and the confusion matrix below.

Inputs: uint8 (N, H, W, 3) RGB, or float in [-1, 1] (NCHW or NHWC), any square size; they
are resized to `input_size` (64 by default): area-averaged when larger (128 -> 64 averages
2x2 blocks), bilinear when smaller. Labels are class
indices 0..num_classes-1: by default those of lmexpr_nb.data.records.CLASSES (8 classes).

Network (about 0.1 M parameters; ~15 MFLOP per 64x64 image, seconds on a CPU for a few
hundred images and tens of epochs):
    [Conv3 -> BN -> ReLU -> MaxPool2] x 3 with w, 2w, 4w channels, Conv3 4w -> BN -> ReLU,
    global average pool, Dropout 0.3, Linear -> classes.       (w = 16 by default)
Training: Adam (lr 2e-3, weight decay 1e-4), cross entropy, batch 32, random horizontal
flips and shifts of up to 1/16 of the side. Deterministic on CPU for a given seed: every
random draw comes from the seed (torch's global RNG is forked and restored, so the
caller's random state is left alone).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmexpr_nb.data.records import NUM_CLASSES
from lmexpr_nb.metrics.result import MetricResult, require


def to_model_input(images, size: int = 64) -> torch.Tensor:
    """uint8 HWC / float [-1,1] (CHW or HWC) images -> float32 (N, 3, size, size) in [-1, 1]."""
    if isinstance(images, (list, tuple)):
        images = np.stack([im.detach().cpu().numpy() if hasattr(im, "detach") else np.asarray(im)
                           for im in images])
    if hasattr(images, "detach"):
        x = images.detach().cpu()
    else:
        x = torch.from_numpy(np.ascontiguousarray(images))
    if x.dim() == 3:
        x = x[None]
    if x.dim() != 4:
        raise ValueError(f"expected a batch of images, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        if x.shape[-1] in (1, 3):
            x = x.permute(0, 3, 1, 2)
        x = x.float() / 127.5 - 1.0
    else:
        if x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
            x = x.permute(0, 3, 1, 2)
        x = x.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (size, size):
        if min(x.shape[-2:]) > size:       # downscale: area average (128 -> 64 is a 2x2 box)
            x = F.interpolate(x, size=(size, size), mode="area")
        else:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.contiguous()


class ExpressionNet(nn.Module):
    def __init__(self, num_classes: int = NUM_CLASSES, width: int = 16, input_size: int = 64):
        super().__init__()
        self.input_size = input_size
        self.num_classes = num_classes
        layers, cin = [], 3
        for cout in (width, 2 * width, 4 * width):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = cout
        layers += [nn.Conv2d(cin, cin, 3, padding=1, bias=False), nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(cin, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    pad = max(1, h // 16)
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    return torch.stack([xp[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def train_expression_classifier(images, labels, epochs: int = 30, seed: int = 0, device="cpu",
                                batch_size: int = 32, lr: float = 2e-3, weight_decay: float = 1e-4,
                                input_size: int = 64, width: int = 16, num_classes: int = NUM_CLASSES,
                                augment: bool = True, verbose: bool = False) -> ExpressionNet:
    """Train the classifier from scratch on (images, labels); returns it in eval mode.

    model.history holds the mean training loss and accuracy per epoch.
    """
    x_all = to_model_input(images, input_size)
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if len(x_all) != len(y_all):
        raise ValueError(f"{len(x_all)} images but {len(y_all)} labels")
    if len(y_all) == 0:
        raise ValueError("no training images")
    if int(y_all.min()) < 0 or int(y_all.max()) >= num_classes:
        raise ValueError(f"labels must be in 0..{num_classes - 1}")
    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = ExpressionNet(num_classes, width, input_size).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        model.history = []
        n = len(x_all)
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=gen)
            tot_loss, tot_ok = 0.0, 0
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                if len(idx) < 2 and n >= 2:      # a BatchNorm batch of one: skipped this epoch
                    continue
                xb, yb = x_all[idx], y_all[idx]
                if augment:
                    xb = _augment(xb, gen)
                xb, yb = xb.to(device), yb.to(device)
                logits = model(xb)
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                tot_loss += loss.item() * len(idx)
                tot_ok += int((logits.argmax(1) == yb).sum())
            model.history.append(dict(epoch=epoch, loss=tot_loss / n, train_acc=tot_ok / n))
            if verbose:
                print(f"epoch {epoch}: loss {tot_loss / n:.4f}, train acc {tot_ok / n:.3f}")
    return model.eval()


@torch.no_grad()
def predict_proba(model: ExpressionNet, images, batch_size: int = 256) -> np.ndarray:
    model.eval()
    dev = next(model.parameters()).device
    x = to_model_input(images, model.input_size)
    out = [F.softmax(model(x[i:i + batch_size].to(dev)), 1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.num_classes))


def predict(model: ExpressionNet, images, batch_size: int = 256) -> np.ndarray:
    return predict_proba(model, images, batch_size).argmax(1)


def accuracy(model: ExpressionNet, images, labels) -> float:
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(predict(model, images) == labels))


def confusion_matrix(model: ExpressionNet, images, labels) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted."""
    c = model.num_classes
    m = np.zeros((c, c), dtype=np.int64)
    np.add.at(m, (np.asarray(labels), predict(model, images)), 1)
    return m


def per_class_accuracy(confusion) -> np.ndarray:
    """(C,) recall of each class from a confusion matrix (rows = true class): correct / that class's
    test images; NaN for a class without test images."""
    m = np.asarray(confusion, np.float64)
    n = m.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.diag(m) / np.where(n > 0, n, 1), np.nan)


def expression_accuracy_metric(*, fake=None, fake_labels=None, classifier=None, **_) -> list[MetricResult]:
    """Registry entry: accuracy of the classifier on images against their labels (the generated faces'
    target labels, or Table 4's real test frames), with the confusion matrix (rows = true class) and
    each class's accuracy in `extra`."""
    require(dict(fake=fake, fake_labels=fake_labels, classifier=classifier),
            "fake", "fake_labels", "classifier", metric="expression_accuracy")
    conf = confusion_matrix(classifier, fake, fake_labels)
    n = int(conf.sum())
    acc = float(np.trace(conf) / n) if n else float("nan")
    return [MetricResult("Expression accuracy", acc, len(fake_labels), None, "fraction",
                         "kit's small CNN trained on the real training split (lmexpr_nb.metrics.expression)",
                         {"confusion": conf, "per_class_accuracy": per_class_accuracy(conf)})]

