"""The record every dataset reader yields, and the kit's expression label space.

One label space for every dataset so that a model's label planes mean the same
thing everywhere: index 0 is neutral, 1..7 are CK+'s emotion codes. Oulu-CASIA
and folder datasets map their names onto it (Oulu has no contempt).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CLASSES: tuple[str, ...] = ("neutral", "anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
NUM_CLASSES = len(CLASSES)

# spellings seen in Oulu-CASIA and common folder datasets -> kit class name
ALIASES = {
    "angry": "anger", "anger": "anger", "contempt": "contempt", "disgust": "disgust",
    "disgusted": "disgust", "fear": "fear", "afraid": "fear", "fearful": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "sad": "sadness", "sadness": "sadness",
    "surprise": "surprise", "surprised": "surprise", "neutral": "neutral",
}


def class_index(name: str) -> int:
    """Map an expression name (any common spelling, any case) to its kit label index."""
    key = name.strip().lower()
    if key not in ALIASES:
        raise ValueError(f"unknown expression name {name!r}; known: {sorted(set(ALIASES))}")
    return CLASSES.index(ALIASES[key])


@dataclass
class Record:
    """One frame of a labelled sequence, as a dataset reader yields it.

    `landmarks` is the dataset's own (68, 2) float array of (x, y) pixel
    coordinates when the dataset ships them (CK+, the synthetic set), else None.
    `synthetic` is True for frames of the kit's procedural dataset, so every
    number made from them can say so. `landmarks_problem` says why the dataset's
    landmarks file for this frame was not used (a NaN in it, say), None otherwise.
    """
    dataset: str
    subject: str
    sequence: str
    frame: int
    path: Path
    label: int
    landmarks: np.ndarray | None = field(default=None, repr=False)
    synthetic: bool = False
    landmarks_problem: str | None = None

    @property
    def label_name(self) -> str:
        return CLASSES[self.label]
