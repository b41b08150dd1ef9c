"""Training pairs (paper Sec. III-B, IV-B; the pair list of PATN, Zhu et al. CVPR 2019).

A training example is an ordered pair (source frame, target frame) of the SAME subject:
the generator sees the source image, the source and target landmarks and the target's
expression label, and must produce the target frame. Every ordered pair of distinct
frames of a subject is used (PATN's pair list: all (P1, P2) of one person), across that
subject's sequences; `max_pairs` keeps a seeded random subset when asked.

Heatmaps are NOT made here: the landmarks travel as (68, 2) floats and the training step
turns them into heatmaps on the device (heatmaps.landmark_heatmaps), which is cheaper
than moving 2 x 68 x S x S floats per example through the loader.

`PairStream` is the infinite, seeded, resumable order in which pairs are drawn: the
concatenation of one seeded permutation of all pairs per epoch. Its only state is a
position (pairs consumed by the whole job), so a checkpoint that stores the position
continues exactly the same stream, and DDP ranks take disjoint consecutive slices of
each global batch (the equivalent of DistributedSampler's sharding).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def same_subject_pairs(subjects) -> np.ndarray:
    """(P, 2) int64 rows (source, target): every ordered pair of distinct rows of the same subject
    [PATN's pair list], ordered by subject, then source, then target."""
    subjects = np.asarray(subjects).astype(str)
    by_subject: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(subjects):
        by_subject[s].append(i)
    pairs = []
    for s in sorted(by_subject):
        rows = np.asarray(by_subject[s], dtype=np.int64)
        src, tgt = np.meshgrid(rows, rows, indexing="ij")
        keep = src != tgt
        pairs.append(np.stack([src[keep], tgt[keep]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


def neutral_expression_pairs(subjects, labels, neutral_label: int = 0) -> np.ndarray:
    """(P, 2) int64 rows (source, target) of the expression-transfer protocol (paper Fig. 9): source
    = one of a subject's neutral frames (label `neutral_label`: the first frames of its sequences),
    target = one of the same subject's peak frames of an expression (any other label); every such
    pair, ordered by subject, then source, then target. Subjects without both kinds give none."""
    subjects = np.asarray(subjects).astype(str)
    labels = np.asarray(labels)
    if len(subjects) != len(labels):
        raise ValueError(f"{len(subjects)} subjects but {len(labels)} labels")
    pairs = []
    for s in sorted(set(subjects.tolist())):
        mine = subjects == s
        src = np.flatnonzero(mine & (labels == neutral_label))
        tgt = np.flatnonzero(mine & (labels != neutral_label))
        if src.size and tgt.size:
            a, b = np.meshgrid(src, tgt, indexing="ij")
            pairs.append(np.stack([a.ravel(), b.ravel()], axis=1).astype(np.int64))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)


PROTOCOLS = ("neutral-to-expression", "all-ordered-pairs")


def protocol_pairs(subjects, labels, protocol: str = "neutral-to-expression") -> np.ndarray:
    """The pair list of a named protocol: "neutral-to-expression" (the paper's Fig. 9 task, the
    kit's primary evaluation protocol) or "all-ordered-pairs" (PATN's list, same_subject_pairs)."""
    if protocol == "neutral-to-expression":
        return neutral_expression_pairs(subjects, labels)
    if protocol == "all-ordered-pairs":
        return same_subject_pairs(subjects)
    raise ValueError(f"unknown pair protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")


def subsample(pairs: np.ndarray, max_pairs: int | None, seed: int) -> np.ndarray:
    """A seeded subset of `max_pairs` rows in their original order (all rows when 0/None/enough)."""
    if max_pairs is not None and 0 < max_pairs < len(pairs):
        return pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), size=max_pairs, replace=False))]
    return pairs


def evaluation_pairs(cache, split: str = "val", max_pairs: int = 0, seed: int = 0,
                     protocol: str = "all-ordered-pairs") -> tuple[np.ndarray, np.ndarray]:
    """Same-identity (source, target) index pairs for evaluation (paper Sec. IV-C, Fig. 9), by
    `protocol` (protocol_pairs): "neutral-to-expression" (a neutral source, a peak
    target of an expression of the same subject) or "all-ordered-pairs" (every ordered pair of
    distinct frames of one subject [PATN's test list]); seeded subsample to `max_pairs` when > 0.
    Indices refer to `cache` (not to the split subset)."""
    rows = np.flatnonzero(np.asarray(cache.split) == split)
    if rows.size == 0:
        raise ValueError(f"no {split} frames in the cache")
    local = protocol_pairs(np.asarray(cache.subjects)[rows], np.asarray(cache.labels)[rows], protocol)
    pairs = rows[subsample(local, max_pairs, seed)]
    return pairs[:, 0], pairs[:, 1]


def _subset(cache, split: str | None):
    if split is None or split == "all":
        return cache
    return cache.subset(split)


class PairDataset(Dataset):
    """(source, target) frame pairs of the same subject: by default all ordered pairs, source !=
    target [PATN]; `protocol` picks another pair rule of protocol_pairs.

    Items: {"source", "target": (3, S, S) float32 in [-1, 1]; "source_landmarks",
    "target_landmarks": (68, 2) float32 crop-pixel (x, y); "source_label", "target_label":
    int64; "source_index", "target_index": int64 row numbers in the split's cache}.
    `pairs` is the (P, 2) int64 array of (source, target) rows, ordered by subject, then
    source, then target (or, with max_pairs, a seeded subset in that order).
    `__getitems__` gathers a whole batch at once (DataLoader uses it when present).
    """

    def __init__(self, cache, split: str | None = "train", max_pairs: int | None = None, seed: int = 0,
                 protocol: str = "all-ordered-pairs"):
        self.cache = _subset(cache, split)
        self.split = split
        self.protocol = protocol
        subjects = np.asarray(self.cache.subjects).astype(str)
        self.pairs = protocol_pairs(subjects, np.asarray(self.cache.labels), protocol)
        self.total_pairs = len(self.pairs)
        self.pairs = subsample(self.pairs, max_pairs, seed)
        names, counts = np.unique(subjects, return_counts=True)
        self.subjects = sorted(names[counts >= 2].tolist())

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return (f"PairDataset(split={self.split!r}, protocol={self.protocol!r}, frames={len(self.cache)}, subjects={len(self.subjects)}, "
                f"pairs={len(self)} of {self.total_pairs})")

    def _gather(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        c = self.cache
        src, tgt = self.pairs[idx, 0], self.pairs[idx, 1]

        def images(rows):
            a = np.asarray(c.images[rows])                           # (B, S, S, 3) uint8
            t = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float()
            return t.div_(127.5).sub_(1.0)

        def lms(rows):
            return torch.from_numpy(np.asarray(c.landmarks[rows], dtype=np.float32).copy())

        def labels(rows):
            return torch.from_numpy(np.asarray(c.labels[rows], dtype=np.int64).copy())

        return {"source": images(src), "target": images(tgt),
                "source_landmarks": lms(src), "target_landmarks": lms(tgt),
                "source_label": labels(src), "target_label": labels(tgt),
                "source_index": torch.from_numpy(src.copy()), "target_index": torch.from_numpy(tgt.copy())}

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= k < len(self):
            raise IndexError(f"pair {k} out of range for {len(self)} pairs")
        return {key: v[0] for key, v in self._gather(np.asarray([k % len(self)])).items()}

    def __getitems__(self, ks) -> dict[str, torch.Tensor]:
        """A whole batch, already collated (use with `collate_batch`, the identity)."""
        return self._gather(np.asarray(ks, dtype=np.int64))

    def batch(self, ks) -> dict[str, torch.Tensor]:
        return self.__getitems__(ks)


def collate_batch(batch):
    """DataLoader collate_fn for PairDataset: __getitems__ already returns a collated dict."""
    return batch


class PairStream(Sampler):
    """The infinite seeded order of pairs, as batches of dataset indices for one rank.

    Conceptually the stream is perm_0 || perm_1 || ... with perm_e a permutation of
    range(n) seeded by (seed, e). A global step consumes `batch_size * world_size`
    consecutive positions; rank r takes the r-th block of `batch_size`. The state is the
    position (pairs consumed by all ranks together): `state(position)` / `PairStream(...,
    position=...)` continue exactly, even when n < the global batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 position: int = 0):
        if n < 1:
            raise ValueError("no training pairs: every subject needs at least two frames")
        if batch_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad batch_size {batch_size} / rank {rank} / world_size {world_size}")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.position = position
        self._perm_epoch, self._perm = -1, None

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._perm_epoch = epoch
        return self._perm

    def indices(self, start: int, count: int) -> list[int]:
        """Dataset indices at stream positions start .. start + count - 1."""
        out = []
        pos = start
        while len(out) < count:
            epoch, off = divmod(pos, self.n)
            take = min(count - len(out), self.n - off)
            out.extend(int(i) for i in self.permutation(epoch)[off:off + take])
            pos += take
        return out

    def batch_at(self, position: int) -> list[int]:
        """This rank's batch of the global step that starts at stream `position`."""
        return self.indices(position + self.rank * self.batch_size, self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        pos = self.position
        while True:
            yield self.batch_at(pos)
            pos += self.global_batch

    def __len__(self):  # infinite; DataLoader only asks for len() when told to
        raise TypeError("PairStream is infinite")

    def state(self, position: int) -> dict:
        """What a checkpoint stores to continue the stream after `position` pairs were consumed."""
        return {"position": int(position), "epoch": int(position // self.n), "n": int(self.n),
                "batch_size": int(self.batch_size), "world_size": int(self.world_size), "seed": int(self.seed)}
