"""Describing the networks: every layer's output shape beside the paper's Tables 1-3, parameter
counts and forward FLOPs (notebook 02, the benchmarks).

    describe_layers(cfg)    one row per layer/stage of G and both Ds, from hooks on a real forward pass
    size_summary(configs)   parameters (M) and forward GFLOP per image of G and both Ds, per config
    count_params(module), count_flops(cfg), example_inputs(cfg)
"""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from lmexpr_nb.config import ModelConfig
from lmexpr_nb.model.nets import Generator, build_discriminators


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def example_inputs(cfg: ModelConfig, batch: int = 1, device="cpu"):
    """Zero inputs of the right shapes: (source, source_heatmaps, target_heatmaps, label)."""
    s = cfg.image_size
    img = torch.zeros(batch, 3, s, s, device=device)
    hm = torch.zeros(batch, cfg.num_landmarks, s, s, device=device)
    return img, hm, hm.clone(), torch.zeros(batch, dtype=torch.long, device=device)


# What the paper prints for each row (Tables 1-3), for the paper's config.
_TABLE1_P = ["1_1 ReflectionPad2d1", "1_2 Conv1", "1_3 BatchNorm1", "1_4 ReLU1", "1_5 Dropout",
             "1_6 ReflectionPad2d2", "1_7 Conv2", "1_8 BatchNorm2"]


_TABLE1_S = ["2_1 ReflectionPad2d21", "2_2 Conv1", "2_3 BatchNorm1", "2_4 ReLU1", "2_5 Dropout",
             "2_6 ReflectionPad2d2", "2_7 Conv2"]


_TABLE2 = [("1 ConvTranspose2d1", "64x64x128"), ("2 BatchNorm1", ""), ("3 ReLU1", ""),
           ("4 ConvTranspose2d2", "128x128x64"), ("5 BatchNorm2", ""), ("6 ReLU2", ""),
           ("7 ReflectionPad2d", "134x134x64"), ("8 Conv", "128x128x3"), ("9 Tanh", "")]


_TABLE3 = [("1 Conv1", "64x64x64"), ("2 LeakyReLU1", ""), ("3 Conv2", "32x32x128"), ("4 BatchNorm2", ""),
           ("5 LeakyReLU2", ""), ("6 Conv3", "16x16x256"), ("7 BatchNorm3", ""), ("8 LeakyReLU3", ""),
           ("9 Conv4", "15x15x512"), ("10 BatchNorm4", ""), ("11 LeakyReLU4", ""), ("12 Conv5", "14x14x1"),
           ("13 BatchNorm5", ""), ("14 Sigmoid", "")]


def describe_layers(cfg: ModelConfig, batch: int = 1) -> list[dict]:
    """Every stage's output shape for cfg.image_size input, from forward hooks on a real
    forward pass with zeros (eval mode, no grad), with parameter counts and, where the
    paper prints one, the table row and its printed output, for notebook 02.

    Rows: {"net": "G" | "D_image" | "D_geometry", "stage", "layer", "output": (H, W, C),
    "params", "paper_row", "paper_output"}. Every parameter is counted in exactly one row,
    so the "params" of a net's rows sum to count_params(net). Block 1 is shown layer by
    layer (Table 1); every block then gets rows for F^P_t, F^S_t and M_t (Eq. 1-3).
    """
    g = Generator(cfg).eval()
    d_image, d_geometry = (d.eval() for d in build_discriminators(cfg))
    rows: list[dict] = []
    hooks = []

    def own_params(m):
        return sum(p.numel() for p in m.parameters(recurse=False))

    def add(net, stage, layer, t, params, ref=("", "")):
        h, w, c = t.shape[2], t.shape[3], t.shape[1]
        rows.append(dict(net=net, stage=stage, layer=layer, output=(h, w, c), params=params,
                         paper_row=ref[0], paper_output=ref[1]))

    def hook_seq(net, stage, seq, refs=None):
        refs = refs if refs is not None and len(refs) == len(seq) else [("", "")] * len(seq)
        for m, ref in zip(seq, refs):
            ref = ref if isinstance(ref, tuple) else (ref, "")
            hooks.append(m.register_forward_hook(
                lambda mod, inp, out, ref=ref: add(net, stage, type(mod).__name__, out, own_params(mod), ref)))

    # Generator: E_ini per stream, block 1 in detail, every block's outputs, label planes, decoder.
    for name, mod in (("E_ini image", g.init_image), ("E_ini landmarks", g.init_landmark)):
        if isinstance(mod, nn.Sequential):
            hook_seq("G", name, mod)
        else:
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: add("G", name.replace("E_ini", "fixed downsample"), type(m).__name__,
                                               o, count_params(m))))
    for t, block in enumerate(g.blocks, start=1):
        if t == 1:
            hook_seq("G", "block 1 conv_p", block.conv_p, _TABLE1_P)
            hook_seq("G", "block 1 conv_s", block.conv_s, _TABLE1_S)

        def block_hook(mod, inp, out, t=t):
            f_p, f_s, m = out
            add("G", f"block {t}", "F^P (Eq. 2)", f_p, 0 if t == 1 else count_params(mod))
            add("G", f"block {t}", "F^S (Eq. 3)", f_s, 0)
            add("G", f"block {t}", "M (Eq. 1)", m, 0)
        hooks.append(block.register_forward_hook(block_hook))

    def decoder_input(mod, inp):
        x = inp[0]
        if cfg.use_label_planes:
            k = cfg.num_classes
            add("G", "label planes", "Fig. 4 planes", x[:, -k:], 0)
            add("G", "decoder input", "F^P || planes", x, 0)
    hooks.append(g.decoder.register_forward_pre_hook(decoder_input))
    hook_seq("G", "decoder", g.decoder, _TABLE2 if cfg.n_downsampling == 2 else None)
    hook_seq("D_image", "D_image", d_image.layers, _TABLE3)
    hook_seq("D_geometry", "D_geometry", d_geometry.layers, _TABLE3)

    try:
        with torch.no_grad():
            src, hm_s, hm_t, label = example_inputs(cfg, batch)
            fake = g(src, hm_s, hm_t, label)
            d_image(torch.cat([fake, src], 1))
            d_geometry(torch.cat([fake, hm_t], 1))
    finally:
        for h in hooks:
            h.remove()
    return rows


def count_flops(cfg: ModelConfig, batch: int = 1) -> dict[str, int]:
    """FLOPs (2 per multiply-add, torch.utils.flop_counter) of one forward of G and of each D
    for `batch` images of cfg's size: {"generator", "d_image", "d_geometry"}."""
    g = Generator(cfg).eval()
    d_image, d_geometry = (d.eval() for d in build_discriminators(cfg))
    out = {}
    with torch.no_grad():
        src, hm_s, hm_t, label = example_inputs(cfg, batch)
        for name, fn in (("generator", lambda: g(src, hm_s, hm_t, label)),
                         ("d_image", lambda: d_image(torch.cat([src, src], 1))),
                         ("d_geometry", lambda: d_geometry(torch.cat([src, hm_t], 1)))):
            counter = FlopCounterMode(display=False)
            with counter:
                fn()
            out[name] = counter.get_total_flops()
    return out


def size_summary(configs: dict[str, ModelConfig]) -> list[dict]:
    """Parameter counts and forward GFLOP per image of G and both Ds, one row per named config."""
    rows = []
    for name, cfg in configs.items():
        g = Generator(cfg)
        d_image, d_geometry = build_discriminators(cfg)
        flops = count_flops(cfg)
        rows.append({"config": name, "G params (M)": round(count_params(g) / 1e6, 3),
                     "D_image params (M)": round(count_params(d_image) / 1e6, 3),
                     "D_geometry params (M)": round(count_params(d_geometry) / 1e6, 3),
                     "G GFLOP/img": round(flops["generator"] / 1e9, 2),
                     "D GFLOP/img (both)": round((flops["d_image"] + flops["d_geometry"]) / 1e9, 2)})
    return rows

