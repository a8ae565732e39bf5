"""A phase's optimizer and learning-rate schedule, from the train section of the config."""
from __future__ import annotations

import math
from functools import partial
from typing import Optional

import torch
from timm.optim import param_groups_weight_decay

from suite.config import TrainConfig


def epoch_cosine(step: int, batches: int, epochs: int, floor: float) -> float:
    """The lr factor at `step` of a cosine over `epochs` epochs of `batches` steps that changes once
    per epoch, from 1 down towards `floor`: torch's CosineAnnealingLR stepped per epoch, as PyCIL."""
    epoch = min(step // batches, epochs)
    return floor + (1 - floor) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, lr: float, weight_decay: float,
                   steps: Optional[int], warmup: int, milestones: list[int], schedule: Optional[str] = None,
                   batches: int = 1):
    """(optimizer, scheduler stepped once per batch; None for a constant lr when `steps` is None).

    adamw: biases and 1-D parameters without weight decay, as timm's create_optimizer gives the
    releases. sgd: momentum, weight decay on every parameter, as PyCIL. The schedule: a linear
    warm-up of `warmup` steps, then cosine to cfg.min_lr over the rest (per batch, or with
    "cosine_epoch" once per epoch of `batches` steps), or multistep at `milestones` (in steps,
    counted from the warm-up's end, as DER's release counts them); `schedule` overrides
    cfg.schedule."""
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.AdamW(param_groups_weight_decay(model, weight_decay), lr=lr)
    if steps is None:
        return optimizer, None
    schedule = schedule or cfg.schedule
    if schedule == "multistep":
        main = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=cfg.lr_decay)
    elif schedule == "cosine_epoch":
        floor = min(cfg.min_lr, lr) / lr if lr > 0 else 0.0
        main = torch.optim.lr_scheduler.LambdaLR(optimizer, partial(
            epoch_cosine, batches=batches, epochs=max(1, (steps - warmup) // batches), floor=floor))
    else:
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps - warmup),
                                                          eta_min=min(cfg.min_lr, lr))
    if warmup == 0:
        return optimizer, main
    ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=warmup)
    return optimizer, torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
