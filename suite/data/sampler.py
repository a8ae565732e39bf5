"""The training sampler: a distributed shard of a seeded permutation, with repeated augmentation.

Repeated augmentation (Hoffer et al.; DeiT's `RASampler`, which the DyTox and DAFormer releases
use even on one GPU): each index of the epoch's permutation is repeated `repeats` times in a row
and the repeated list is dealt out to the workers in turn, so the copies of one image land on
different workers (or, on one worker, in one batch) and are augmented independently. Each worker
still sees len(dataset) / workers items per epoch, as without repetition: an epoch covers about
1 / `repeats` of the images, each `repeats` times.

With repeats=1 this is torch's `DistributedSampler` (same permutation, padding and striding). We
write it rather than reuse timm's or DeiT's copy: the releases' epoch length also rounds the data
down to a multiple of 256 (an ImageNet habit that would leave a task of under 256 images with no
batch at all), which we do not reproduce.
"""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class RepeatedAugmentationSampler(Sampler[int]):
    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0, repeats: int = 1,
                 shuffle: bool = True, seed: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
        self.size = size
        self.num_replicas = num_replicas
        self.rank = rank
        self.repeats = repeats
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.num_samples = math.ceil(size / num_replicas)  # per worker, per epoch
        self.total_size = math.ceil(size * repeats / num_replicas) * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> torch.Tensor:
        """The whole epoch's repeated, padded list, before it is dealt out to the workers."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.arange(self.size)
        repeated = order.repeat_interleave(self.repeats)
        padding = self.total_size - len(repeated)
        return torch.cat([repeated, repeated.repeat(math.ceil(padding / max(len(repeated), 1)))[:padding]])

    def __iter__(self):
        mine = self.epoch_indices()[self.rank:self.total_size:self.num_replicas]
        return iter(mine[:self.num_samples].tolist())

    def __len__(self) -> int:
        return self.num_samples
