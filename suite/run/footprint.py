"""How much memory a run's attention needs, against the memory there is, before anything trains.

Attention scores grow with N^2 per head (N patch tokens), and DAFormer's external attention with
N^2 per key: on 64x64 images at patch 2 (1,024 tokens) one evaluation batch of 256 at 10 keys
needs tens of GB. The estimate counts the score tensors only (the activations around them are
small beside them at such sizes): `least` is the largest single score tensor of an evaluation or
training batch, a lower bound of the peak, which refuses a run that cannot fit; `likely` adds the
softmax's output beside its input and, for training, what every block keeps for the backward
pass, which warns.
"""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass

import torch

from suite.config import Config
from suite.errors import UserError
from suite.methods import METHODS

FP32 = 4  # autocast keeps softmax in fp32


@dataclass(frozen=True)
class Footprint:
    least: int  # bytes: the largest single score tensor of a training or evaluation batch
    train: int  # bytes: a training batch's score tensors, kept for the backward pass
    eval: int  # bytes: an evaluation batch's largest block, scores and softmax together
    batch: str  # which batch sets `least`, for the message

    @property
    def likely(self) -> int:
        return max(self.train, self.eval)


def score_elements(cfg: Config, image_size: int, num_tasks: int, batch: int) -> list[int]:
    """Elements of each block's attention scores for one batch: the encoder blocks, then the task block."""
    tokens = (image_size // cfg.model.patch_size) ** 2
    heads = cfg.model.num_heads
    encoder = [batch * heads * tokens * tokens] * cfg.model.depth
    method = METHODS[cfg.method]
    keys = method.num_keys(cfg.model.num_keys, num_tasks)
    if keys:  # internal attention (fused) beside one external softmax over N per token and key
        task_block = batch * heads * tokens * keys * tokens
    elif cfg.method == "dytox":  # every task token attends to itself and the patches
        task_block = batch * heads * num_tasks * (1 + tokens)
    else:
        task_block = batch * heads * tokens * tokens
    return encoder + [task_block]


def estimate(cfg: Config, image_size: int, num_tasks: int) -> Footprint:
    train = score_elements(cfg, image_size, num_tasks, cfg.train.batch_size)
    evaluation = score_elements(cfg, image_size, num_tasks, cfg.train.eval_batch_size)
    batch = "train.eval_batch_size" if max(evaluation) >= max(train) else "train.batch_size"
    return Footprint(least=max(max(train), max(evaluation)) * FP32, train=2 * sum(train) * FP32,
                     eval=2 * max(evaluation) * FP32, batch=batch)


def host_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def remedy(cfg: Config, batch: str) -> str:
    """The keys that shrink the attention, `batch` (a train.* key) first among the batches."""
    return (f"use a larger model.patch_size (now {cfg.model.patch_size}), a smaller {batch} "
            f"(now {getattr(cfg.train, batch.split('.')[1])}) or smaller images (data.input_size)")


class OutOfMemory(RuntimeError):
    """A run that ran out of memory all the same: one line with the estimate and what to change."""


OUT_OF_MEMORY_TEXT = ("can't allocate memory", "out of memory")  # torch's CPU and CUDA allocators' words
OUT_OF_MEMORY_MARK = "OutOfMemory:"  # how results.json's error starts for one


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, (torch.OutOfMemoryError, OutOfMemory)) or (
        isinstance(error, RuntimeError) and any(text in str(error) for text in OUT_OF_MEMORY_TEXT))


def out_of_memory(cfg: Config, image_size: int, num_tasks: int) -> OutOfMemory:
    need = estimate(cfg, image_size, num_tasks)
    return OutOfMemory(f"out of memory: the attention scores of a training batch need about {gib(need.train)} and "
                       f"of an evaluation batch {gib(need.eval)} per worker; {remedy(cfg, need.batch)}")


def failure_text(error: BaseException, cfg: Config, image_size: int, num_tasks: int) -> tuple[BaseException, str]:
    """A failed run's error and what results.json records of it: an out-of-memory as OutOfMemory in
    one line (what to change), anything else with its traceback."""
    if is_out_of_memory(error):
        error = out_of_memory(cfg, image_size, num_tasks)
        return error, f"{OUT_OF_MEMORY_MARK} {error}"
    return error, traceback.format_exc(limit=3)


def check(cfg: Config, image_size: int, num_tasks: int, available: int, where: str) -> str | None:
    """Refuse a run whose least need exceeds `available` bytes (one line naming the keys to change);
    a warning line when the likely need comes near it; None when it fits."""
    need = estimate(cfg, image_size, num_tasks)
    fix = remedy(cfg, need.batch)
    if need.least > available:
        raise UserError(f"one attention tensor of this run needs {gib(need.least)} and {where} has "
                        f"{gib(available)}: it cannot fit; {fix}")
    if need.likely > 0.8 * available:
        return (f"warning: the attention of this run may need {gib(need.likely)} of the {gib(available)} "
                f"{where} has; if it runs out of memory, {fix}")
    return None


def check_run(cfg: Config, image_size: int, num_tasks: int) -> str | None:
    """`check` against the memory a worker will have: on the CPU this machine's; on a GPU the
    driver's GPU (times ray.gpus_per_worker), unchecked when the driver has none."""
    if not cfg.ray.use_gpu:
        return check(cfg, image_size, num_tasks, host_memory(), "this machine")
    if not torch.cuda.is_available():
        return None
    total = torch.cuda.get_device_properties(0).total_memory * min(1.0, cfg.ray.gpus_per_worker)
    return check(cfg, image_size, num_tasks, int(total), "a GPU share")
