"""The input pipeline: images/s out of the learner's DataLoader on synthetic 32x32 data.

The same pieces the learner uses (`IndexedImages` + `build_transform(train=True)` with the CIFAR
preset's data keys: random crop, flip, RandAugment), batch 128, shuffled, with
`data.num_workers` 0 and 2. The loader is timed alone: on a machine where the workers share
cores with the training step it can only be slower than this.
"""
from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from suite.config import apply
from suite.data.dataset import IndexedImages, build_transform
from suite.data.registry import load_dataset
from bench.perf.step import PRESETS, preset_config
from bench.perf.timing import summary


def loader_rate(num_workers: int, batch: int, batches: int, repeats: int, per_class: int = 500) -> dict:
    """images/s over `batches` batches (after the first, which pays for worker start-up), `repeats` times."""
    cfg = preset_config_for_data(per_class)
    data = load_dataset(cfg.data)
    indices = np.arange(len(data.train))
    dataset = IndexedImages(data.train, indices, {c: c for c in range(data.num_classes)},
                            build_transform(data, cfg.data, train=True))
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=num_workers,
                        persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(0))
    samples, startup = [], []
    # timed by hand: the calls advance one iterator, whose first batch (worker start-up) is timed apart
    for _ in range(repeats):
        it = iter(loader)
        start = time.perf_counter()
        next(it)
        startup.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        samples.append(batch * batches / (time.perf_counter() - start))
        del it
    return {"num_workers": num_workers, "batch": batch, "batches": batches,
            "transform": [type(t).__name__ for t in dataset.transform.transforms],
            "images_per_s": summary(samples), "first_batch_s": summary(startup)}


def preset_config_for_data(per_class: int):
    """The CIFAR preset's data keys, on 10 synthetic classes of 32x32 images."""
    from bench.perf.step import Case

    cfg = preset_config(Case("daformer_m", 1))
    size = PRESETS["cifar"].image_size
    return apply(cfg, {"data.name": "synthetic", "data.image_size": size, "data.num_classes": 10,
                       "data.train_per_class": per_class, "data.test_per_class": 1}, "perf")
