"""nets.py against the paper's Tables 1-3 and Eq. 1-3, and the ablation switches of Table 7."""
import dataclasses

import pytest
import torch
import torch.nn as nn

from lmexpr_nb.config import ModelConfig
from lmexpr_nb.model import describe, nets

PAPER = ModelConfig()
TINY = ModelConfig(image_size=32, ngf=8, ndf=8, n_blocks=2)


def tiny(**kw) -> ModelConfig:
    return dataclasses.replace(TINY, **kw)


def inputs(cfg: ModelConfig, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    s, k = cfg.image_size, cfg.num_landmarks
    src = torch.rand(batch, 3, s, s, generator=g) * 2 - 1
    hs = torch.rand(batch, k, s, s, generator=g)
    ht = torch.rand(batch, k, s, s, generator=g)
    label = torch.randint(0, cfg.num_classes, (batch,), generator=g)
    return src, hs, ht, label


def shapes(net: nn.Module) -> dict:
    return {n: tuple(p.shape) for n, p in net.named_parameters()}


# ---------------------------------------------------------------- the paper's config, full size

@pytest.fixture(scope="module")
def paper_rows():
    return describe.describe_layers(PAPER)   # one real forward of G and both Ds at 128x128, batch 1


def _out(rows, net, stage, layer=None):
    return [r["output"] for r in rows if r["net"] == net and r["stage"] == stage
            and (layer is None or r["layer"] == layer)]


# The paper's Tables 1-3, transcribed from the paper (not from the kit): (layer type, kernel, stride,
# pad, output H x W x C); None where the table prints "-". Table 1 prints no output sizes; with the
# paper's 128 px input and E_ini's two stride-2 convs the blocks work at 32 x 32 on d = 256 channels.
TABLE_1_CONV_P = [("ReflectionPad2d", 1, None, None), ("Conv2d", 3, 1, None), ("BatchNorm2d", None, None, None),
                  ("ReLU", None, None, None), ("Dropout", None, None, None), ("ReflectionPad2d", 1, None, None),
                  ("Conv2d", 3, 1, None), ("BatchNorm2d", None, None, None)]
TABLE_1_CONV_S = TABLE_1_CONV_P[:7]                  # rows 2_1 .. 2_7: the same without the last BN
TABLE_2 = [("ConvTranspose2d", 3, 2, 1, (64, 64, 128)), ("BatchNorm2d", None, None, None, None),
           ("ReLU", None, None, None, None), ("ConvTranspose2d", 3, 2, 1, (128, 128, 64)),
           ("BatchNorm2d", None, None, None, None), ("ReLU", None, None, None, None),
           ("ReflectionPad2d", 3, None, None, (134, 134, 64)), ("Conv2d", 7, 1, 0, (128, 128, 3)),
           ("Tanh", None, None, None, None)]
TABLE_3 = [("Conv2d", 4, 2, 1, (64, 64, 64)), ("LeakyReLU", None, None, None, None),
           ("Conv2d", 4, 2, 1, (32, 32, 128)), ("BatchNorm2d", None, None, None, None),
           ("LeakyReLU", None, None, None, None), ("Conv2d", 4, 2, 1, (16, 16, 256)),
           ("BatchNorm2d", None, None, None, None), ("LeakyReLU", None, None, None, None),
           ("Conv2d", 4, 1, 1, (15, 15, 512)), ("BatchNorm2d", None, None, None, None),
           ("LeakyReLU", None, None, None, None), ("Conv2d", 4, 1, 1, (14, 14, 1)),
           ("BatchNorm2d", None, None, None, None), ("Sigmoid", None, None, None, None)]


def _as_table(module: nn.Module) -> tuple:
    """(type, kernel, stride, pad) of a layer, in the tables' terms (a pad layer's kernel is its width)."""
    name = type(module).__name__
    if isinstance(module, nn.ReflectionPad2d):
        return name, module.padding[0], None, None
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        return name, module.kernel_size[0], module.stride[0], module.padding[0]
    return name, None, None, None


def test_paper_config_layers_are_tables_1_to_3(paper_rows):
    g = nets.Generator(PAPER)
    di, dg = nets.build_discriminators(PAPER)
    def pad0(row):                       # Table 1 prints '-' for a conv's pad: none (0)
        return (*row[:3], 0 if row[0] == "Conv2d" else None)
    for block in g.blocks:
        assert [_as_table(m) for m in block.conv_p] == [pad0(r) for r in TABLE_1_CONV_P]
        assert [_as_table(m) for m in block.conv_s] == [pad0(r) for r in TABLE_1_CONV_S]
    assert [_as_table(m) for m in g.decoder] == [r[:4] for r in TABLE_2]
    for d in (di, dg):
        assert [_as_table(m) for m in d.layers] == [r[:4] for r in TABLE_3]
        assert all(m.negative_slope == 0.2 for m in d.layers if isinstance(m, nn.LeakyReLU))
    # every output size the tables print, from a real forward pass at 128 x 128 (describe_layers)
    decoder = [r for r in paper_rows if r["net"] == "G" and r["stage"] == "decoder"]
    assert [(r["layer"], r["output"]) for r in decoder if r["layer"] in ("ConvTranspose2d", "ReflectionPad2d", "Conv2d")] \
        == [(t, out) for t, *_, out in TABLE_2 if out]
    for d in ("D_image", "D_geometry"):
        rows = [r for r in paper_rows if r["net"] == d]
        assert [r["layer"] for r in rows] == [t for t, *_ in TABLE_3]
        assert [r["output"] for r in rows if r["layer"] == "Conv2d"] == [out for *_, out in TABLE_3 if out]
    # E_ini (both streams): 128x128 -> 64x64x128 -> 32x32x256; Table 1's blocks keep 32x32x256
    for stream in ("E_ini image", "E_ini landmarks"):
        assert _out(paper_rows, "G", stream, "Conv2d") == [(128, 128, 64), (64, 64, 128), (32, 32, 256)]
    for path in ("block 1 conv_p", "block 1 conv_s"):
        assert [r["output"] for r in paper_rows if r["stage"] == path] == [
            (34, 34, 256) if t == "ReflectionPad2d" else (32, 32, 256)
            for t, *_ in (TABLE_1_CONV_P if path.endswith("conv_p") else TABLE_1_CONV_S)]
    for t in range(1, 10):
        assert _out(paper_rows, "G", f"block {t}") == [(32, 32, 256), (32, 32, 512), (32, 32, 256)]  # F^P, F^S, M
    assert _out(paper_rows, "G", "label planes") == [(32, 32, 8)]
    assert _out(paper_rows, "G", "decoder input") == [(32, 32, 264)]       # 256 image channels + 8 label planes


def test_paper_config_parameter_counts(paper_rows):
    d, c, K = 256, 512, 8
    conv = lambda i, o, k: i * o * k * k          # noqa: E731 (no bias: followed by BN)
    bn = lambda ch: 2 * ch                       # noqa: E731
    e_ini = lambda i: conv(i, 64, 7) + bn(64) + conv(64, 128, 3) + bn(128) + conv(128, 256, 3) + bn(256)  # noqa: E731
    conv_p = 2 * (conv(d, d, 3) + bn(d))
    conv_s = lambda ch: conv(ch, ch, 3) + bn(ch) + conv(ch, d, 3) + d   # noqa: E731 (last conv: bias, no BN)
    blocks = (conv_p + conv_s(d)) + 8 * (conv_p + conv_s(c))
    dec = conv(d + K, 128, 3) + bn(128) + conv(128, 64, 3) + bn(64) + conv(64, 3, 7) + 3
    expected_g = e_ini(3) + e_ini(136) + blocks + dec
    disc = lambda i: (conv(i, 64, 4) + 64 + conv(64, 128, 4) + bn(128) + conv(128, 256, 4) + bn(256)  # noqa: E731
                      + conv(256, 512, 4) + bn(512) + conv(512, 1, 4) + bn(1))
    g = nets.Generator(PAPER)
    di, dg = nets.build_discriminators(PAPER)
    counts = {"G": describe.count_params(g), "D_image": describe.count_params(di), "D_geometry": describe.count_params(dg)}
    print(f"\npaper config parameters: {counts}")
    assert counts == {"G": expected_g, "D_image": disc(6), "D_geometry": disc(71)}
    assert counts == {"G": 41_690_883, "D_image": 2_768_706, "D_geometry": 2_835_266}
    # PATN reports 41.36 M for the same generator with 2 x 18 keypoint channels and no labels
    patn_like = expected_g - (conv(136, 64, 7) - conv(36, 64, 7)) - conv(K, 128, 3)
    assert abs(patn_like / 1e6 - 41.36) < 0.01
    # describe_layers counts each parameter exactly once
    for net, n in counts.items():
        assert sum(r["params"] for r in paper_rows if r["net"] == net) == n


# ---------------------------------------------------------------- small configs

def test_generator_output_and_masks():
    cfg = tiny()
    g = nets.build_generator(cfg)
    src, hs, ht, label = inputs(cfg)
    out, masks = g(src, hs, ht, label, return_masks=True)
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    assert len(masks) == cfg.n_blocks
    for m in masks:
        assert m.shape == (2, 32, 8, 8)             # d = ngf * 4 at image_size / 4
        assert m.min() > 0 and m.max() < 1
    # soft labels are accepted, a one-hot float equals the index label
    g.eval()
    with torch.no_grad():
        a = g(src, hs, ht, label)
        b = g(src, hs, ht, nn.functional.one_hot(label, cfg.num_classes).float())
    assert torch.allclose(a, b)


def test_blend_output_composes_source_and_colour_by_the_fourth_channel():
    """model.output "blend" (non-paper, GANimation): Table 2's last conv gains one channel; the
    image is A * source + (1 - A) * colour with A = (tanh + 1) / 2; everything else is unchanged."""
    cfg = tiny(output="blend")
    g = nets.build_generator(cfg)
    plain = nets.build_generator(tiny())
    last = g.decoder[-2]
    assert last.out_channels == 4 and plain.decoder[-2].out_channels == 3
    extra = sum(p.numel() for p in g.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == last.in_channels * 7 * 7 + 1           # one more 7x7 filter and its bias
    src, hs, ht, label = inputs(cfg)
    decoded = []
    g.decoder.register_forward_hook(lambda m, i, o: decoded.append(o))
    g.eval()
    with torch.no_grad():
        out = g(src, hs, ht, label)
        y = decoded[-1]
        a = (y[:, 3:] + 1) / 2
        assert torch.allclose(out, a * src + (1 - a) * y[:, :3], atol=1e-6)
        last.bias[3] = 50.0                                # A -> 1: the source itself
        assert torch.allclose(g(src, hs, ht, label), src, atol=1e-5)
        last.bias[3] = -50.0                               # A -> 0: the decoded colour alone
        out = g(src, hs, ht, label)
        assert torch.allclose(out, decoded[-1][:, :3], atol=1e-5) and not torch.allclose(out, src, atol=1e-2)


def test_migration_block_implements_eq_1_to_3():
    torch.manual_seed(1)
    for landmark_ch in (16, 32):                    # first block (c = d) and later blocks (c = 2d)
        block = nets.init_weights(nets.MigrationUnitBlock(16, landmark_ch, dropout=0.5)).eval()
        f_p, f_s = torch.randn(2, 16, 8, 8), torch.randn(2, landmark_ch, 8, 8)
        new_p, new_s, m = block(f_p, f_s)
        s = block.conv_s(f_s)
        assert torch.allclose(m, torch.sigmoid(s))                                  # Eq. 1
        assert torch.allclose(new_p, torch.sigmoid(s) * block.conv_p(f_p) + f_p)    # Eq. 2
        assert torch.allclose(new_s, torch.cat([s, new_p], 1))                      # Eq. 3
        assert new_s.shape[1] == 32
        # Table 1: conv_p ends with BN, conv_s ends with a conv (with bias, no norm)
        assert [type(x).__name__ for x in block.conv_p] == ["ReflectionPad2d", "Conv2d", "BatchNorm2d", "ReLU",
                                                            "Dropout", "ReflectionPad2d", "Conv2d", "BatchNorm2d"]
        assert [type(x).__name__ for x in block.conv_s] == ["ReflectionPad2d", "Conv2d", "BatchNorm2d", "ReLU",
                                                            "Dropout", "ReflectionPad2d", "Conv2d"]
        assert block.conv_s[1].in_channels == block.conv_s[1].out_channels == landmark_ch
        assert block.conv_s[6].bias is not None and block.conv_p[6].bias is None


def test_without_feature_init_only_e_ini_changes():
    on, off = nets.Generator(tiny()), nets.Generator(tiny(use_feature_init=False))
    s_on, s_off = shapes(on), shapes(off)
    e_ini = {n for n in s_on if n.startswith(("init_image.", "init_landmark."))}
    assert e_ini and not any(n.startswith(("init_image.", "init_landmark.")) for n in s_off)
    assert {n: s for n, s in s_on.items() if n not in e_ini} == s_off          # nothing else changes
    assert describe.count_params(off) == describe.count_params(on) - sum(
        p.numel() for n, p in on.named_parameters() if n in e_ini)
    assert isinstance(off.init_image, nets.FixedDownsample) and describe.count_params(off.init_image) == 0
    assert describe.count_params(off.init_landmark) == 0
    src, hs, ht, label = inputs(tiny())
    assert off(src, hs, ht, label).shape == on(src, hs, ht, label).shape == (2, 3, 32, 32)


def test_fixed_downsample_is_fixed_and_lossless():
    fd = nets.FixedDownsample(3, 256, 4)
    assert list(fd.parameters()) == [] and "projection" in fd.state_dict()
    w = fd.projection[:, :, 0, 0].double()                     # (256, 3), columns orthogonal
    assert torch.allclose(w.T @ w, torch.eye(3, dtype=torch.float64) * 256 / 3, atol=1e-4)
    assert torch.equal(fd.projection, nets.FixedDownsample(3, 256, 4).projection)   # seeded
    x = torch.randn(2, 3, 128, 128)
    y = fd(x)
    assert y.shape == (2, 256, 32, 32)
    pooled = nn.functional.avg_pool2d(x, 4)
    assert torch.allclose(torch.einsum("oi,bihw->bohw", w.float(), pooled), y, atol=1e-5)
    small = nets.FixedDownsample(136, 64, 4)                    # fewer out than in channels: orthonormal rows
    w2 = small.projection[:, :, 0, 0].double()
    assert torch.allclose(w2 @ w2.T, torch.eye(64, dtype=torch.float64), atol=1e-4)
    nets.init_weights(fd)
    assert torch.equal(fd.projection, nets.FixedDownsample(3, 256, 4).projection)   # init leaves it alone


def test_without_label_planes_decoder_shrinks_and_label_is_ignored():
    on, off = nets.build_generator(tiny()), nets.build_generator(tiny(use_label_planes=False))
    s_on, s_off = shapes(on), shapes(off)
    diff = {n for n in s_on if s_on[n] != s_off.get(n)}
    assert diff == {"decoder.0.weight"} and s_on.keys() == s_off.keys()
    assert s_on["decoder.0.weight"][0] - s_off["decoder.0.weight"][0] == TINY.num_classes   # ConvT: (in, out, k, k)
    assert off.decoder[0].in_channels == TINY.ngf * 4
    src, hs, ht, _ = inputs(tiny())
    on.eval(), off.eval()
    with torch.no_grad():
        a, b = (torch.tensor([0, 1]), torch.tensor([5, 6]))
        assert torch.equal(off(src, hs, ht, a), off(src, hs, ht, b))
        assert torch.equal(off(src, hs, ht, None), off(src, hs, ht, a))
        assert not torch.allclose(on(src, hs, ht, a), on(src, hs, ht, b))


def test_label_planes_values_and_range_switch():
    label = torch.tensor([2, 0])
    pm1 = nets.label_planes(label, 4, 3, "pm1")
    z1 = nets.label_planes(label, 4, 3, "01")
    assert pm1.shape == z1.shape == (2, 4, 3, 3)
    assert torch.equal(pm1[0, :, 1, 2], torch.tensor([-1.0, -1.0, 1.0, -1.0]))
    assert torch.equal(z1[0, :, 0, 0], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert torch.equal(pm1, 2 * z1 - 1)
    assert (pm1 == pm1[:, :, :1, :1]).all()                                   # constant planes
    soft = nets.label_planes(torch.tensor([[0.5, 0.5, 0.0, 0.0]]), 4, 2, "pm1")
    assert torch.equal(soft[0, :, 0, 0], torch.tensor([0.0, 0.0, -1.0, -1.0]))
    with pytest.raises(ValueError):
        nets.label_planes(label, 4, 3, "unit")
    with pytest.raises(ValueError):
        nets.label_planes(torch.ones(2, 3), 4, 3)
    # the switch changes the planes only: same parameters, different output
    torch.manual_seed(0)
    g_pm1 = nets.build_generator(tiny()).eval()
    g_01 = nets.build_generator(tiny(label_range="01")).eval()
    g_01.load_state_dict(g_pm1.state_dict())
    src, hs, ht, lab = inputs(tiny())
    with torch.no_grad():
        assert not torch.allclose(g_pm1(src, hs, ht, lab), g_01(src, hs, ht, lab))


def test_landmark_stream_sees_source_switch():
    both, target_only = nets.Generator(tiny()), nets.Generator(tiny(landmark_stream_sees_source=False))
    s_b, s_t = shapes(both), shapes(target_only)
    diff = {n for n in s_b if s_b[n] != s_t[n]}
    assert diff == {"init_landmark.1.weight"}
    assert s_b["init_landmark.1.weight"][1] == 136 and s_t["init_landmark.1.weight"][1] == 68
    src, hs, ht, label = inputs(tiny())
    assert target_only(src, None, ht, label).shape == (2, 3, 32, 32)
    fixed = nets.Generator(tiny(landmark_stream_sees_source=False, use_feature_init=False))
    assert fixed.init_landmark.in_ch == 68


def test_discriminator_table_3_and_bn_switch():
    with_bn = nets.PatchDiscriminator(6, 8, bn_before_sigmoid=True)
    without = nets.PatchDiscriminator(6, 8, bn_before_sigmoid=False)
    names = lambda d: [type(m).__name__ for m in d.layers]    # noqa: E731
    assert names(with_bn) == ["Conv2d", "LeakyReLU", "Conv2d", "BatchNorm2d", "LeakyReLU", "Conv2d", "BatchNorm2d",
                              "LeakyReLU", "Conv2d", "BatchNorm2d", "LeakyReLU", "Conv2d", "BatchNorm2d", "Sigmoid"]
    assert names(without) == names(with_bn)[:12] + ["Sigmoid"]
    assert with_bn.layers[11].bias is None and without.layers[11].bias is not None
    convs = [m for m in with_bn.layers if isinstance(m, nn.Conv2d)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [((4, 4), (2, 2), (1, 1))] * 3 + [((4, 4), (1, 1), (1, 1))] * 2
    assert all(abs(m.negative_slope - 0.2) < 1e-9 for m in with_bn.layers if isinstance(m, nn.LeakyReLU))
    x = torch.randn(2, 6, 128, 128)
    for d in (with_bn, without):
        p = d(x)
        assert p.shape == (2, 1, 14, 14) and p.min() > 0 and p.max() < 1
        assert torch.allclose(torch.sigmoid(d(x, return_logits=True)), p)
    di, dg = nets.build_discriminators(tiny())
    assert di.layers[0].in_channels == 6 and dg.layers[0].in_channels == 3 + 68
    di2, _ = nets.build_discriminators(tiny(d_bn_before_sigmoid=False))
    assert not di2.bn_before_sigmoid and len(di2.layers) == 13


def test_init_statistics():
    torch.manual_seed(0)
    g = nets.build_generator(tiny(ngf=16))
    d, _ = nets.build_discriminators(tiny(ndf=16))
    for net in (g, d):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                if m.weight.numel() >= 20_000:
                    assert abs(m.weight.std().item() - 0.02) < 0.001
                    assert abs(m.weight.mean().item()) < 0.001
                if m.bias is not None:
                    assert torch.count_nonzero(m.bias) == 0
            elif isinstance(m, nn.BatchNorm2d) and m.num_features >= 64:
                assert abs(m.weight.mean().item() - 1) < 0.01 and 0.01 < m.weight.std().item() < 0.03
                assert torch.count_nonzero(m.bias) == 0
    big = nets.init_weights(nn.Conv2d(64, 64, 3), 0.05)
    assert abs(big.weight.std().item() - 0.05) < 0.002


def test_describe_layers_small_config_is_consistent():
    cfg = tiny(use_label_planes=False, use_feature_init=False)
    rows = describe.describe_layers(cfg)
    assert not [r for r in rows if r["stage"] == "label planes"]
    assert [r["output"] for r in rows if r["stage"].startswith("fixed downsample")] == [(8, 8, 32)] * 2
    assert sum(r["params"] for r in rows if r["net"] == "G") == describe.count_params(nets.Generator(cfg))
    assert rows[-1]["output"] == (2, 2, 1)     # 32 -> 16, 8, 4, 3, 2 (128 -> 64, 32, 16, 15, 14)
