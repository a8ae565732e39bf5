"""WA, weight aligning (PyCIL's models/wa.py): iCaRL's losses weighted by the old classes' share
λ = C_old / C_all, (1-λ)·CE + λ·KD; after each task's training, the new classes' classifier rows
scaled so that their mean norm equals the old classes' (the bias untouched). With
train.nonnegative_classifier, DER's release's clipping: every classifier parameter clamped at 0 or
more after every step (PyCIL has none)."""
from __future__ import annotations

import torch

from suite.methods import TRAIN
from suite.strategies.base import register_strategy
from suite.strategies.icarl import ICaRL


@torch.no_grad()
def align_weights(heads: torch.nn.ModuleList) -> float:
    """Scale the last head's weight rows to the earlier heads' mean row norm; returns the factor."""
    old = torch.cat([head.weight for head in heads[:-1]])
    new = heads[-1].weight
    gamma = float(old.norm(dim=1).mean() / new.norm(dim=1).mean())
    new.mul_(gamma)
    return gamma


@register_strategy("wa")
class WA(ICaRL):
    weighted_by_share = True

    @torch.no_grad()
    def after_step(self, model) -> None:
        if self.cfg.train.nonnegative_classifier:
            for p in model.heads.parameters():
                p.clamp_(min=0)

    def after_phase(self, model, task: int, phase: str) -> None:
        if phase == TRAIN and task > 0:
            align_weights(model.heads)
