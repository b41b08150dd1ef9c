"""Shared plumbing every stage uses: nothing here knows about faces or the GAN.

    files.py       atomic writes, output-folder checks, the one-writer lock
    checkpoint.py  the training checkpoint's format, written atomically, read with weights_only=True
    weights.py     where pretrained weights and dlib's model files come from; safe loading, hashes
    viz.py         figure grids, provenance footers, Markdown tables for notebooks
    paper.py       the paper's printed numbers (Tables 2-7), set beside ours everywhere
"""
