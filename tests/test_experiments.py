"""experiments/: the methods, the shared evaluation set, Tables 5-6 and Figs. 7-9 on a tiny fake cache."""
import csv
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lmexpr_nb.common.paper import TABLE5_QUALITY, TABLE6_IDENTITY
from lmexpr_nb.common.weights import MissingWeightsError
from lmexpr_nb.config import Config, EvalConfig, ModelConfig
from lmexpr_nb.data import frames
from lmexpr_nb.data.pairs import evaluation_pairs
from lmexpr_nb.experiments import evalset, figures, table5, table6, tables, transfer
from lmexpr_nb.landmarks.align import align_shape
from lmexpr_nb.model import nets
from lmexpr_nb.model.trained import NoTrainedModel

S = 32
MODEL = ModelConfig(image_size=S, ngf=4, ndf=4, n_blocks=1, heatmap_sigma=1.5)
PROV = {"dataset": "synthetic", "data": "synthetic (not real faces)", "profile": "test", "standins": ["none"]}


class FakeCache(SimpleNamespace):
    """The FaceCache attributes the experiments read, and .subset(split)."""

    def subset(self, split):
        m = self.split == split
        return FakeCache(**{k: (v[m] if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()})


def _cache(subjects=("A", "B", "C"), train=("T",), seqs=(1, 5), per=2, seed=0):
    """Per subject and sequence: `per` neutral frames then `per` peak frames of label `seq`.
    Images: a subject-coloured disc with noise; landmarks: a subject's random layout, moved a little."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S]
    cols = dict(images=[], landmarks=[], labels=[], subjects=[], sequences=[], frames=[], split=[])
    for si, s in enumerate(list(subjects) + list(train)):
        base = rng.uniform(5, S - 6, (68, 2))
        colour = rng.uniform(40, 220, 3)
        for q in seqs:
            for f in range(2 * per):
                peak = f >= per
                lm = base + (rng.normal(0, 0.8, (68, 2)) if peak else 0) + rng.normal(0, 0.1, (68, 2))
                disc = ((xx - S / 2) ** 2 + (yy - S / 2) ** 2 < (S / 3) ** 2)[..., None]
                img = np.where(disc, colour, 255 - colour) + rng.normal(0, 12, (S, S, 3)) + (30 * q if peak else 0)
                cols["images"].append(np.clip(img, 0, 255).astype(np.uint8))
                cols["landmarks"].append(lm.astype(np.float32))
                cols["labels"].append(q if peak else 0)
                cols["subjects"].append(s)
                cols["sequences"].append(f"{q:03d}")
                cols["frames"].append(f + 1)
                cols["split"].append("train" if s in train else "val")
    return FakeCache(**{k: np.stack(v) if k in ("images", "landmarks") else np.array(v) for k, v in cols.items()},
                     meta={"dataset": "fake"})


class MeanColour:
    """A cheap recogniser for the identity maths: mean colour inside / outside the disc."""
    name = "meancolour"
    provenance = "test recogniser (mean colours)"
    last_stats = {}

    def embed(self, images):
        a = np.asarray(images, np.float64)
        c = a[:, S // 3:2 * S // 3, S // 3:2 * S // 3].mean((1, 2))
        return np.concatenate([c - 128, a[:, :3, :3].mean((1, 2)) - 128], axis=1)


@pytest.fixture(scope="module")
def cache():
    return _cache()


@pytest.fixture(scope="module")
def G():
    torch.manual_seed(0)
    return nets.build_generator(MODEL).eval()


@pytest.fixture(scope="module")
def cfg():
    return Config(model=MODEL, eval=EvalConfig(fid_features="dlib-standin", kid_subset_size=6, kid_subsets=4,
                                               max_pairs=10))


@pytest.fixture(scope="module")
def evs(cache, G, cfg):
    """Both protocols, capped at 10 pairs each (seeded)."""
    return evalset.evaluation_sets(cache, G, max_pairs=cfg.eval.max_pairs, seed=0, weights="untrained test G",
                                    log=lambda *a: None)


@pytest.fixture(scope="module")
def ev(evs):
    return evs[evalset.PRIMARY]


def _rule_pairs(cache, split="val"):
    """The neutral -> expression rule, written out: same subject, source neutral, target an expression."""
    idx = np.flatnonzero(cache.split == split)
    return {(int(i), int(j)) for i in idx for j in idx
            if cache.subjects[i] == cache.subjects[j] and cache.labels[i] == 0 and cache.labels[j] != 0}


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_methods_share_one_call_shape(cache, G):
    fns = evalset.methods(G)
    assert list(fns) == [evalset.COPY, evalset.WARP, evalset.OURS]
    i, j = np.array([0, 1]), np.array([2, 3])
    args = (cache.images[i], cache.landmarks[i], cache.landmarks[j], cache.labels[j])
    outs = {m: fn(*args) for m, fn in fns.items()}
    for m, out in outs.items():
        assert out.shape == (2, S, S, 3) and out.dtype == np.uint8, m
    np.testing.assert_array_equal(outs[evalset.COPY], cache.images[i])
    assert list(evalset.methods()) == [evalset.COPY, evalset.WARP]


def test_neutral_to_expression_pairs_are_exactly_the_rule(cache):
    s, t = evaluation_pairs(cache, "val", protocol=evalset.PRIMARY)
    got = list(zip(s.tolist(), t.tolist()))
    assert len(got) == len(set(got)) == 3 * 4 * 4       # 3 subjects x 4 neutral x 4 peak frames
    assert set(got) == _rule_pairs(cache)
    assert all(cache.split[i] == "val" for i in s)      # the training subject T never appears
    s2, t2 = evaluation_pairs(cache, "val", max_pairs=5, seed=2, protocol=evalset.PRIMARY)
    assert len(s2) == 5 and set(zip(s2.tolist(), t2.tolist())) <= set(got)


def test_evaluation_sets_share_one_generation_and_map_rows(cache, G, evs):
    assert list(evs) == [evalset.PRIMARY, evalset.SECONDARY]
    prim, sec = evs[evalset.PRIMARY], evs[evalset.SECONDARY]
    assert prim.n == sec.n == 10 and prim.n_all_pairs == 48 and sec.n_all_pairs == 3 * 8 * 7
    assert prim.union is sec.union and set(prim.fakes) == {evalset.COPY, evalset.WARP, evalset.OURS}
    u = prim.union
    both = set(zip(prim.src_idx.tolist(), prim.tgt_idx.tolist())) | set(zip(sec.src_idx.tolist(), sec.tgt_idx.tolist()))
    assert u.n == len(both)                               # a pair both protocols drew is generated once
    assert set(zip(prim.src_idx.tolist(), prim.tgt_idx.tolist())) <= _rule_pairs(cache)
    for e in (prim, sec):
        assert all(cache.split[i] == "val" and cache.split[j] == "val" for i, j in zip(e.src_idx, e.tgt_idx))
        np.testing.assert_array_equal(cache.subjects[e.src_idx], e.ids)
        np.testing.assert_array_equal(e.real, cache.images[e.tgt_idx])
        np.testing.assert_array_equal(e.target_landmarks, cache.landmarks[e.tgt_idx])
        np.testing.assert_array_equal(e.fakes[evalset.COPY], cache.images[e.src_idx])
    # uncapped, every primary pair is also an all-ordered pair: the union is the secondary list, and a
    # primary pair points at the very row (the same generated image) the secondary protocol uses
    src, tgt, rows, n_all, skipped = evalset.union_pairs(cache, max_pairs=0)
    assert len(src) == 168 and len(rows[evalset.PRIMARY]) == 48 and not skipped
    assert sorted(rows[evalset.SECONDARY].tolist()) == list(range(168))
    assert set(rows[evalset.PRIMARY].tolist()) <= set(rows[evalset.SECONDARY].tolist())
    assert {(int(src[r]), int(tgt[r])) for r in rows[evalset.PRIMARY]} == _rule_pairs(cache)


def test_evaluation_set_is_reused_from_store(cache, G, tmp_path):
    store, said = tmp_path / "fakes.npz", []
    first = evalset.evaluation_sets(cache, G, max_pairs=3, store=store, log=said.append)
    again = evalset.evaluation_sets(cache, G, max_pairs=3, store=store, log=said.append)
    assert not first[evalset.PRIMARY].reused and again[evalset.PRIMARY].reused and "reusing" in said[-1]
    for p in first:
        for m in first[p].fakes:
            np.testing.assert_array_equal(first[p].fakes[m], again[p].fakes[m])
    torch.manual_seed(1)
    other = evalset.evaluation_sets(cache, nets.build_generator(MODEL).eval(), max_pairs=3, store=store,
                                     log=said.append)
    assert not other[evalset.PRIMARY].reused, "other weights must not reuse the stored fakes"
    one = evalset.evaluation_set(cache, G, max_pairs=3, store=store, log=said.append)
    assert one.protocol == evalset.PRIMARY and not one.reused       # other pairs, other key


def test_a_protocol_without_pairs_is_skipped_not_fatal(cache, G):
    c = FakeCache(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(cache).items()})
    c.labels[c.labels == 0] = 1                          # no neutral frame left
    said = []
    sets = evalset.evaluation_sets(c, None, max_pairs=4, log=said.append)
    assert list(sets) == [evalset.SECONDARY] and evalset.PRIMARY in sets[evalset.SECONDARY].union.skipped
    assert any("skipped" in m for m in said)
    with pytest.raises(ValueError, match="no neutral-to-expression pairs"):
        evalset.evaluation_set(c, None)


def test_table5_rows_columns_paper_and_standin_names(evs, cfg, tmp_path):
    from skimage.metrics import peak_signal_noise_ratio
    ev = evs[evalset.PRIMARY]
    rows = table5.table5_quality(evs, cfg, tmp_path, PROV)
    csv_rows = _read(tmp_path / "table5.csv")
    md = (tmp_path / "table5.md").read_text()
    assert "primary protocol: neutral-to-expression" in md and "flatters copy-source" in md
    methods = [r["method"] for r in csv_rows]
    assert methods[:3] == [evalset.COPY, evalset.WARP, evalset.OURS]
    blocks = [r["protocol"] for r in csv_rows if r["source"] == tables.THIS_RUN]
    assert blocks == [evalset.PRIMARY] * 4 + [evalset.SECONDARY] * 4     # 3 methods + detector floor each
    sec = {r["method"]: r for r in csv_rows if r["protocol"] == evalset.SECONDARY}
    ref_sec = np.mean([peak_signal_noise_ratio(t, s, data_range=255)
                       for s, t in zip(evs[evalset.SECONDARY].source, evs[evalset.SECONDARY].real)])
    assert float(sec[evalset.COPY]["PSNR (dB)"]) == pytest.approx(ref_sec, rel=1e-5)
    csv_rows = [r for r in csv_rows if r["protocol"] != evalset.SECONDARY]
    assert {"GAFP-GAN", "GC-GAN", "CDAAE"} <= set(methods)
    cols = csv_rows[0].keys()
    # the stand-in is named as such, never FID; the paper's FID has its own column
    assert "ours: FD-dlib" in cols and "ours: KID-dlib" in cols and "ours: FID" not in cols
    assert {"paper: PSNR", "paper: SSIM", "paper: FID", "SSIM (skimage 7x7)", "SSIM (Wang, Gaussian 1.5)",
            "landmark NME (inter-ocular)", "data", "profile", "weights", "N"} <= set(cols)
    by = {r["method"]: r for r in csv_rows}
    assert float(by[evalset.OURS]["paper: FID"]) == TABLE5_QUALITY["our method"]["FID"]
    assert by[evalset.COPY]["paper: FID"] == "" and by["GC-GAN"]["source"] == tables.PAPER_ONLY
    assert float(by["CDAAE"]["paper: PSNR"]) == TABLE5_QUALITY["CDAAE"]["PSNR"]
    for r in csv_rows:
        assert all(r[c] != "" for c in ("data", "profile", "weights", "N")), r
    for m in (evalset.COPY, evalset.WARP, evalset.OURS):
        assert by[m]["N"] == str(ev.n) and by[m]["data"] == "synthetic (not real faces)"
    # copy source: PSNR(source, target), computed independently
    ref = np.mean([peak_signal_noise_ratio(t, s, data_range=255) for s, t in zip(ev.source, ev.real)])
    copy = next(r for r in rows if r["method"] == evalset.COPY and r["protocol"] == evalset.PRIMARY)
    assert copy["PSNR (dB)"] == pytest.approx(ref, abs=1e-4)
    assert all(math.isfinite(float(by[m]["ours: FD-dlib"])) for m in (evalset.COPY, evalset.OURS))
    assert set(tables.numbers(rows, keys=("protocol", "method"))) == {
        f"{p}/{m}" for p in evs for m in (evalset.COPY, evalset.WARP, evalset.OURS, "real target (detector floor)")}


def test_table5_per_expression_breaks_the_primary_pairs_down(evs, cfg, tmp_path):
    from lmexpr_nb.metrics.psnr_ssim import ssim
    ev = evs[evalset.PRIMARY]
    rows = table5.table5_per_expression(evs, cfg, tmp_path, PROV, landmark_error=False)
    assert (tmp_path / "table5_per_expression.md").is_file()
    by = {r["target expression"]: r for r in rows}
    assert list(by) == ["anger", "happy", "all"]          # the fake cache's labels 1 and 5
    assert by["all"]["N"] == ev.n == sum(by[k]["N"] for k in ("anger", "happy"))
    sel = ev.target_labels == 5
    ref = np.mean([ssim(f, r, "wang") for f, r in zip(ev.fakes[evalset.OURS][sel], ev.real[sel])])
    assert by["happy"]["ours: SSIM (Wang)"] == pytest.approx(ref, rel=1e-9)
    assert all(r["protocol"] == evalset.PRIMARY for r in rows)


def test_table5_names_the_column_after_the_metric(ev, cfg, tmp_path, monkeypatch):
    """With Inception features the column is 'ours: FID' (a cheap extractor stands in for the network)."""
    from lmexpr_nb.metrics import fid
    monkeypatch.setattr(fid, "_extractor", lambda c, d, b: (MeanColour().embed, "FID", "KID", "test"))
    table5.table5_quality(ev, cfg.updated({"eval": {"fid_features": "inception"}}), tmp_path, PROV,
                            landmark_error=False)
    cols = _read(tmp_path / "table5.csv")[0].keys()
    assert "ours: FID" in cols and "ours: FD-dlib" not in cols and "paper: FID" in cols


def test_table6_protocol_rows_and_paper_columns(evs, ev, cache, cfg, tmp_path):
    rows = table6.table6_identity(evs, cache, cfg, tmp_path, PROV, recognisers=[("meancolour", MeanColour())])
    all_rows = _read(tmp_path / "table6.csv")
    assert "Gallery: one real image per val subject" in (tmp_path / "table6.md").read_text()
    assert [r["protocol"] for r in all_rows if r["source"] == tables.THIS_RUN] == \
        [evalset.PRIMARY] * 4 + [evalset.SECONDARY] * 4
    csv_rows = [r for r in all_rows if r["protocol"] != evalset.SECONDARY]
    ours = [r for r in rows if r["source"] == tables.THIS_RUN and r["protocol"] == evalset.PRIMARY]
    assert [r["method"] for r in ours] == ["original", evalset.COPY, evalset.WARP, evalset.OURS]
    gallery = table6.identity_gallery(cache)
    assert len(gallery) == 3 and all(cache.labels[g] == 0 and cache.frames[g] == 1 for g in gallery)
    keep = ~np.isin(ev.src_idx, gallery) & ~np.isin(ev.tgt_idx, gallery)
    for r in ours:
        assert r["N"] == keep.sum() == r["genuine pairs"]
        assert r["impostor pairs"] == 2 * keep.sum() and "< 1000" in r["warning"]
        assert 0 <= r["Rank-1 (%)"] <= 100
    by = {r["method"]: r for r in csv_rows}
    assert float(by["original"]["paper VGG-Face: TAR@FAR=1%"]) == TABLE6_IDENTITY["original"]["VGG-Face"][1]
    assert float(by[evalset.OURS]["paper Light CNN: Rank-1"]) == TABLE6_IDENTITY["our method"]["Light CNN"][0]
    assert by[evalset.COPY]["paper Light CNN: Rank-1"] == ""
    assert by["C-GAN"]["source"] == tables.PAPER_ONLY and by["ExprGAN"]["N"] == "not printed"
    assert all(r[c] != "" for r in csv_rows for c in ("data", "profile", "weights", "N"))
    assert set(tables.numbers(rows)) == {f"{p}/meancolour/{m}" for p in evs
                                           for m in by if by[m]["source"] == tables.THIS_RUN}


class SubjectOracle:
    """A recogniser that knows the cache: an image's embedding is the one-hot subject of the
    nearest cached image (pixel L2). On real frames it is exact, so Table 6's "original" row
    (real probes against the real gallery) must come out perfect whatever the protocol."""
    name = "oracle"
    provenance = "test oracle (nearest cached image's subject)"
    last_stats = {}

    def __init__(self, cache):
        self.images = np.asarray(cache.images, np.float64).reshape(len(cache.images), -1)
        self.names = sorted(set(cache.subjects))
        self.subject = np.array([self.names.index(s) for s in cache.subjects])

    def embed(self, images):
        a = np.asarray(images, np.float64).reshape(len(images), -1)
        d = (a ** 2).sum(1)[:, None] - 2 * a @ self.images.T + (self.images ** 2).sum(1)[None]
        return np.eye(len(self.names))[self.subject[d.argmin(1)]]


def test_table6_original_row_is_perfect_with_an_oracle_recogniser(ev, cache, cfg, tmp_path):
    rows = table6.table6_identity(ev, cache, cfg, tmp_path, PROV, recognisers=[("oracle", SubjectOracle(cache))])
    by = {r["method"]: r for r in rows if r["source"] == tables.THIS_RUN}
    assert by["original"]["Rank-1 (%)"] == 100
    assert by["original"]["TAR@FAR=1% (%)"] == by["original"]["TAR@FAR=0.1% (%)"] == 100
    # copying the source keeps the identity exactly too (the source is a real frame of the subject)
    assert by[evalset.COPY]["Rank-1 (%)"] == 100


def test_table6_optional_recogniser_without_weights_is_a_skipped_row(ev, cache, cfg, tmp_path):
    c = cfg.updated({"eval": {"recognisers": [], "lightcnn_weights": str(tmp_path / "no.pth"),
                              "vggface_weights": str(tmp_path / "no_vgg.pth")}})
    said = []
    rows = table6.table6_identity(ev, cache, c, tmp_path, PROV, log=said.append)
    skipped = [r for r in rows if r["source"] == "skipped"]
    assert [r["recogniser"] for r in skipped] == ["lightcnn", "vggface"]
    assert "no.pth does not exist" in skipped[0]["note"] and len(said) == 2
    required = cfg.updated({"eval": {"recognisers": ["lightcnn"], "lightcnn_weights": str(tmp_path / "no.pth")}})
    with pytest.raises(MissingWeightsError, match="no.pth"):
        table6.table6_identity(ev, cache, required, tmp_path, PROV, log=said.append)


def test_figures_are_written(cache, G, tmp_path):
    import matplotlib.pyplot as plt
    _, info = figures.figure_same_identity(cache, G, tmp_path / "fig9_same_identity.png", PROV, n_subjects=2)
    assert info["columns"] == ["anger", "happy"] and len(info["subjects"]) == 2
    _, ex = figures.figure_landmark_transfer(cache, G, tmp_path / "fig8_landmark_transfer.png", PROV, n_examples=3)
    subj = cache.subjects
    assert all(subj[a] != subj[b] and cache.labels[a] == 0 and cache.labels[b] != 0 for a, b in ex)
    _, pairs = figures.figure_comparison(cache, G, tmp_path / "fig7_comparison.png", PROV, n_examples=3)
    assert set(map(tuple, pairs)) <= _rule_pairs(cache)                     # Fig. 7: primary-protocol pairs
    fig9_pairs = {(frames.neutral_frame(cache, s, "val"), t) for s in info["subjects"]
                  for t in frames.peak_frames(cache, s, "val").values()}
    assert fig9_pairs <= _rule_pairs(cache)                                 # Fig. 9 too
    plt.close("all")
    for name in ("fig9_same_identity", "fig8_landmark_transfer", "fig7_comparison"):
        p = tmp_path / f"{name}.png"
        assert p.is_file() and p.stat().st_size > 1000


def test_fig8_motion_rows_keep_the_inputs_shape_and_the_shape_rows_stay_the_papers(cache, G, tmp_path):
    import matplotlib.pyplot as plt
    fig, ex = figures.figure_landmark_transfer(cache, G, tmp_path / "fig8.png", PROV, n_examples=3)
    titles = [t.get_text() for ax in fig.axes for t in [ax.yaxis.label] if t.get_text()]
    assert any("motion transfer" in t for t in titles) and any("shape transfer" in t for t in titles)
    plt.close("all")
    lm = cache.landmarks.astype(np.float64)
    shape = figures.transfer_landmarks(cache, ex)
    np.testing.assert_allclose(shape, [align_shape(lm[d], lm[s]) for s, d in ex], atol=1e-4)   # Fig. 8 unchanged
    motion = figures.transfer_landmarks(cache, ex, "motion")
    # motion: the input's own landmarks + the donor's change from the neutral start of its sequence
    for (s, d), m in zip(ex, motion):
        ref = frames.reference_frame(cache, d)
        assert cache.labels[ref] == 0 and cache.sequences[ref] == cache.sequences[d] and cache.subjects[ref] == cache.subjects[d]
        assert np.linalg.norm(m - lm[s], axis=1).mean() < np.linalg.norm(shape[ex.index((s, d))] - lm[s], axis=1).mean()


def test_shape_vs_motion_table(cache, G, tmp_path):
    rows = transfer.transfer_comparison(cache, G, recogniser=MeanColour(), weights="untrained test G")
    pairs = transfer.cross_identity_pairs(cache)
    subj = cache.subjects
    assert len(pairs) == 3 * 2 * 2 and all(subj[a] != subj[b] and cache.labels[b] != 0 for a, b in pairs)
    by = {r["method"]: r for r in rows}
    assert list(by) == [transfer.COPY] + [m[0] for m in transfer.MODES.values()]
    assert all(r["N"] == len(pairs) for r in rows)
    assert by[transfer.COPY]["cosine to input"] == pytest.approx(1.0) and by[transfer.COPY]["Rank-1 (%)"] == 100
    assert (by["motion transfer"]["target moved from input (NME)"]
            < by["shape transfer (paper Fig. 8)"]["target moved from input (NME)"])
    gallery = transfer.identity_gallery_frames(cache)
    assert not set(gallery) & {a for a, _ in pairs}                       # no input is its own gallery image
    csv, md = transfer.write_transfer_table(tmp_path, rows, PROV)
    assert "motion transfer" in md.read_text() and "untrained test G" in csv.read_text()


def test_align_shape_recovers_a_similarity_transform():
    rng = np.random.default_rng(3)
    donor = rng.uniform(0, 60, (68, 2))
    a = 0.3
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    ref = donor @ rot.T * 0.7 + [5.0, -2.0]
    np.testing.assert_allclose(align_shape(donor, ref), ref, atol=1e-4)


def test_no_checkpoint_stops_with_one_line_message(tmp_path):
    from lmexpr_nb.runner.context import notebook_context
    ctx = notebook_context("smoke", out_dir=str(tmp_path), data_root=str(tmp_path))
    with pytest.raises(NoTrainedModel, match="run notebooks/03_training.ipynb first") as e:
        ctx.model()
    assert "\n" not in str(e.value)


class AlwaysHappy:
    """An expression classifier that sees 'happy' in every face (the table's plumbing under test)."""
    def predict(self, images, references):
        assert len(images) == len(references)
        return np.full(len(images), 5)


def test_table5_realism_columns(evs, cfg, tmp_path):
    from lmexpr_nb.metrics.sharpness import sharpness_ratio
    ev = evs[evalset.PRIMARY]
    rows = table5.table5_quality(evs, cfg, tmp_path, PROV, landmark_error=False, classifier=AlwaysHappy())
    by = {(r["protocol"], r["method"]): r for r in rows}
    copy = by[(evalset.PRIMARY, evalset.COPY)]
    ref = np.nanmean([sharpness_ratio(s, t, lm) for s, t, lm in zip(ev.source, ev.real, ev.target_landmarks)])
    assert copy[table5.SHARP_COL] == pytest.approx(ref, rel=1e-9)
    real = by[(evalset.PRIMARY, table5.REAL)]
    assert real[table5.SHARP_COL] == pytest.approx(1.0)
    assert real[table5.EXPR_COL] == pytest.approx(np.mean(ev.target_labels == 5))
    assert table5.EXPR_COL not in by[(evalset.SECONDARY, evalset.COPY)]     # neutral targets there: no column
    per = {r["target expression"]: r for r in
           table5.table5_per_expression(evs, cfg, tmp_path, PROV, landmark_error=False, classifier=AlwaysHappy())}
    assert per["happy"]["ours: expression acc."] == 1.0 and per["anger"]["real target: expression acc."] == 0.0
    assert per["all"]["copy: sharpness"] == pytest.approx(ref, rel=1e-9)
