"""Benchmarks: numbers printed and saved as JSON, never timed tests.

    preprocess.py  preprocessing speed (tracking vs per-frame detection)
    train.py       training step speed and MFU
    infer.py       generator latency and throughput
    learn.py       a recipe's quality against CPU seconds (how the smoke recipe was chosen)
    gpu/           the one prepared GPU call (`bench gpu`) and its `--finish` where dlib is
"""
