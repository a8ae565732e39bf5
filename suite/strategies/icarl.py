"""iCaRL as PyCIL runs it (models/icarl.py): cross-entropy on every class seen plus the
distillation of the old classes' logits at temperature distill.tau (2), weighted 1, without tau^2
(PyCIL's softmax variant of the paper's sigmoid loss); classified by the nearest mean of the
exemplars' features (and by its logits, recorded beside it)."""
from __future__ import annotations

import torch

from suite.learner.losses import classification_loss, soft_distillation
from suite.strategies.base import Strategy, register_strategy


@register_strategy("icarl")
class ICaRL(Strategy):
    weighted_by_share = False  # (1-λ)·CE + λ·KD with λ = C_old / C_all (WA, BiC) instead of CE + KD

    def loss(self, out, teacher_out, targets, phase) -> torch.Tensor:
        logits = out.logits.float()
        cls = classification_loss(logits, targets, self.cfg.train.loss)
        if teacher_out is None:
            return cls
        kd = soft_distillation(logits[:, :phase.num_old], teacher_out.logits.float(), self.cfg.distill.tau)
        if not self.weighted_by_share:
            return cls + kd
        share = phase.num_old / logits.shape[1]
        return (1 - share) * cls + share * kd
