"""Datasets: readers of the published layouts, the synthetic default, the preprocessing cache, pairs."""
from .readers import READERS, ReadResult, read_ckplus, read_dataset, read_folder, read_oulu  # noqa: F401
from .records import CLASSES, NUM_CLASSES, Record, class_index  # noqa: F401
