"""Stage 1, data: readers of the published layouts (CK+, Oulu-CASIA, a folder tree), the synthetic
default, the preprocessing cache every later stage reads, training and evaluation pairs, and the
frames a figure or table picks from a cache.

    records.py    the Record a reader yields, the kit's expression label space (CLASSES)
    readers.py    CK+, Oulu-CASIA NIR&VIS and <subject>/<expression>/<image> trees -> Records
    synthetic/    the embedded procedural dataset, written in the CK+ layout
    cache.py      cache.npz (crops, landmarks, labels, split) + its preprocessing report
    pairs.py      same-subject pair lists (training, the evaluation protocols), PairDataset, PairStream
    frames.py     named frames of a cache: a subject's neutral and peak frames, example pairs
"""
