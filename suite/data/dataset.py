"""Torch datasets over a split, addressed by indices (task data, rehearsal memory, test data)."""
from __future__ import annotations

import numpy as np
import torch
from timm.data import IMAGENET_DEFAULT_MEAN
from PIL import Image
from timm.data.auto_augment import (
    augment_and_mix_transform, auto_augment_transform, posterize, rand_augment_transform,
)
from timm.data.transforms import str_to_pil_interp
from torch.utils.data import Dataset
from torchvision.transforms import v2

from suite.config import DataConfig
from suite.data.registry import DataSet, Split
from suite.data.sources.imagefolder import open_image


def auto_augment(policy: str, size: int, channels: int):
    """timm's augmentation policy (e.g. 'rand-m9-mstd0.5-inc1') built as the releases build it
    through timm's create_transform: translations up to 0.45 of the side, bicubic, ImageNet-mean fill."""
    fill = tuple(min(255, round(255 * m)) for m in IMAGENET_DEFAULT_MEAN)
    params = {"translate_const": int(size * 0.45), "img_mean": fill if channels == 3 else fill[0],
              "interpolation": str_to_pil_interp("bicubic")}
    if policy.startswith("rand"):
        transform = rand_augment_transform(policy, params)
    elif policy.startswith("augmix"):
        transform = augment_and_mix_transform(policy, {**params, "translate_pct": 0.3})
    else:
        transform = auto_augment_transform(policy, params)
    for op in getattr(transform, "ops", ()):
        if op.aug_fn is posterize:
            op.aug_fn = posterize_to_zero_bits
    return transform


def posterize_to_zero_bits(image: Image.Image, bits: int, **kwargs) -> Image.Image:
    """timm's posterize, with 0 bits kept meaning a black image, as in the Pillow the releases ran
    on: Pillow 13 refuses 0 bits, which timm's increasing posterize asks for at magnitude 10."""
    if bits > 0:
        return posterize(image, bits, **kwargs)
    return Image.new(image.mode, image.size)


def build_transform(data: DataSet, cfg: DataConfig, train: bool) -> v2.Compose:
    """Per-data-set transforms with that set's mean and std: crop + flip (+ brightness jitter, timm's
    policy) to train.

    timm's policies work on PIL images: with one, the image is a PIL image until after it."""
    size = cfg.input_size or data.image_size
    policy = cfg.auto_augment if train else None
    steps: list = [v2.ToPILImage()] if policy else []
    on_disk = not data.train.in_memory
    if on_disk:  # full-size photos: the ImageNet recipe, bicubic as the releases resize
        bicubic = v2.InterpolationMode.BICUBIC
        steps += ([v2.RandomResizedCrop(size, interpolation=bicubic, antialias=True)] if train
                  else [v2.Resize(int(size * 8 / 7), interpolation=bicubic, antialias=True), v2.CenterCrop(size)])
    elif size != data.image_size:
        steps.append(v2.Resize(size, antialias=True))
    if train and cfg.augment:
        if not on_disk:
            steps.append(v2.RandomCrop(size, padding=max(1, size // 8)))
        if data.flip:
            steps.append(v2.RandomHorizontalFlip())
    if train and cfg.color_jitter:
        steps.append(v2.ColorJitter(brightness=cfg.color_jitter))
    if policy:
        steps += [auto_augment(policy, size, data.channels), v2.ToImage()]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(data.mean, data.std)]
    return v2.Compose(steps)


def _to_tensor(image) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        # a copy: the array may be a read-only view (a data set from Ray's object store)
        return torch.from_numpy(np.array(image.transpose(2, 0, 1)))
    return v2.functional.pil_to_tensor(image)


class IndexedImages(Dataset):
    """Images `split[indices]` with incremental labels, transformed on the fly.

    Items are (image, label, index): the index into the split lets the learner name exemplars.
    """

    def __init__(self, split: Split, indices: np.ndarray, label_of_class: dict[int, int], transform):
        self.split = split
        self.indices = np.asarray(indices, dtype=np.int64)
        lookup = np.full(max(label_of_class) + 1, -1, dtype=np.int64)
        for cls, label in label_of_class.items():
            lookup[cls] = label
        self.labels = lookup[split.labels[self.indices]]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        index = int(self.indices[i])
        raw = self.split.images[index]
        if not self.split.in_memory:
            raw = open_image(raw)
        return self.transform(_to_tensor(raw)), int(self.labels[i]), index


def indices_of_classes(split: Split, classes) -> np.ndarray:
    return np.flatnonzero(np.isin(split.labels, list(classes)))
