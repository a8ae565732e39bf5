"""A phase's optimizer and learning-rate schedule, from the train section of the config."""
from __future__ import annotations

from typing import Optional

import torch
from timm.optim import param_groups_weight_decay

from suite.config import TrainConfig


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, lr: float, weight_decay: float,
                   steps: Optional[int], warmup: int, milestones: list[int], schedule: Optional[str] = None):
    """(optimizer, scheduler stepped once per batch; None for a constant lr when `steps` is None).

    adamw: biases and 1-D parameters without weight decay, as timm's create_optimizer gives the
    releases. sgd: momentum, weight decay on every parameter, as PyCIL. The schedule: a linear
    warm-up of `warmup` steps, then cosine to cfg.min_lr over the rest, or multistep at
    `milestones` (in steps, counted from the warm-up's end, as DER's release counts them); `schedule`
    overrides cfg.schedule."""
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.AdamW(param_groups_weight_decay(model, weight_decay), lr=lr)
    if steps is None:
        return optimizer, None
    if (schedule or cfg.schedule) == "multistep":
        main = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=cfg.lr_decay)
    else:
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps - warmup),
                                                          eta_min=min(cfg.min_lr, lr))
    if warmup == 0:
        return optimizer, main
    ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-3, total_iters=warmup)
    return optimizer, torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, main], milestones=[warmup])
