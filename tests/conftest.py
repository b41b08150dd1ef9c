"""Test-wide settings: never touch the network, keep CPU threads modest, fixed seeds."""
import os

os.environ.setdefault("LMEXPR_NO_DOWNLOAD", "1")   # weights.locate never tries a download in tests
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    np.random.seed(0)
    try:
        import torch
        torch.manual_seed(0)
    except ImportError:
        pass


def pytest_configure(config):
    # one intra-op thread: on a 2-core machine shared by other processes, torch's spinning
    # threads make small CPU convolutions 2-10x slower than a single thread
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
