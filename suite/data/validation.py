"""The validation split (data.validation_fraction): training images held out, per class, to choose
settings on without looking at the test images.

A pure function of the labels, the fraction and the run's seed, drawn from a generator of its own
(no global random state is read or advanced), so that every Ray Train worker, the driver and a
resumed run hold out the same images, and no other random stream of the run changes.
"""
from __future__ import annotations

import numpy as np

from suite.errors import UserError

STREAM = 0x56414C  # "VAL": keeps this generator apart from the others seeded by the run's seed


def held_out_count(fraction: float, images: int) -> int:
    """Images of a class of `images` held out: the fraction of them rounded half up, at least one
    when the fraction is above 0."""
    if fraction <= 0:
        return 0
    return max(1, int(fraction * images + 0.5))


def validation_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training indices, validation indices) into a training split with these labels, each sorted.

    Raises a UserError when a class would keep no training image."""
    labels = np.asarray(labels)
    if fraction <= 0:
        return np.arange(len(labels), dtype=np.int64), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, STREAM])
    held = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        count = held_out_count(fraction, len(members))
        if count >= len(members):
            raise UserError(f"data.validation_fraction = {fraction:g} leaves class {cls} no training image "
                            f"(it has {len(members)}); expected a data set with at least 2 training images per class, "
                            "or data.validation_fraction=0")
        held.append(rng.choice(members, size=count, replace=False))
    validation = np.sort(np.concatenate(held)).astype(np.int64)
    return np.setdiff1d(np.arange(len(labels), dtype=np.int64), validation, assume_unique=True), validation
