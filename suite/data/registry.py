"""One registry of data sets. Each yields images, labels (original class ids) and class names."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from suite.config import DataConfig
from suite.errors import UserError


@dataclass
class Split:
    """One split. `images` is a uint8 array (N, H, W, C) held in memory, or an array of file paths."""

    images: np.ndarray
    labels: np.ndarray  # int64, original class ids

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_memory(self) -> bool:
        return self.images.dtype == np.uint8


@dataclass
class DataSet:
    name: str
    train: Split
    test: Split
    class_names: list[str]
    image_size: int  # side of the images the model sees
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool = True  # horizontal flip is a valid augmentation (not for digits)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


@dataclass
class Loader:
    load: Callable[[DataConfig], DataSet]
    num_classes: Callable[[DataConfig], int]  # cheap: for validating a plan before loading


LOADERS: dict[str, Loader] = {}


def register(name: str, num_classes: Callable[[DataConfig], int]):
    def wrap(fn):
        LOADERS[name] = Loader(fn, num_classes)
        return fn

    return wrap


def _loader(name: str) -> Loader:
    import suite.data.sources  # noqa: F401  (registers every loader; here, as each source imports this module)

    if name not in LOADERS:
        raise UserError(f"data.name: unknown data set '{name}'; expected one of {', '.join(sorted(LOADERS))}")
    return LOADERS[name]


def first_classes(data: DataSet, n: int | None) -> DataSet:
    """The data set with only its classes 0..n-1 (all of them when n is None or not smaller)."""
    if n is None or n >= data.num_classes:
        return data

    def keep(split: Split) -> Split:
        mask = split.labels < n
        return Split(split.images[mask], split.labels[mask])

    return replace(data, train=keep(data.train), test=keep(data.test), class_names=data.class_names[:n])


def load_dataset(cfg: DataConfig) -> DataSet:
    return first_classes(_loader(cfg.name).load(cfg), cfg.max_classes)


def count_classes(cfg: DataConfig) -> int:
    total = _loader(cfg.name).num_classes(cfg)
    return min(total, cfg.max_classes) if cfg.max_classes else total


def require_path(cfg: DataConfig, expected: str):
    """The data directory as a Path, or a UserError saying what should be there."""
    if not cfg.path:
        raise UserError(f"data.path is not set; data set '{cfg.name}' needs a directory holding {expected} (use --data-path DIR)")
    path = Path(cfg.path).expanduser()
    if not path.is_dir():
        raise UserError(f"data.path '{path}' is not a directory; expected a directory holding {expected}")
    return path
