"""DER without pruning (PyCIL's models/der.py): cross-entropy on every class seen, plus, from the
second task on, the auxiliary classifier's cross-entropy (weight 1) with every old class in bucket 0;
no distillation (the old backbones are frozen instead). After each task's training, PyCIL aligns the
new classes' classifier rows to the old ones' mean norm (WA's weight aligning, in place of the DER
release's classifier retraining)."""
from __future__ import annotations

import torch

from suite.learner.losses import classification_loss, divergence_targets
from suite.methods import TRAIN
from suite.strategies.base import Strategy, register_strategy
from suite.strategies.wa import align_weights


@register_strategy("der")
class DER(Strategy):
    def loss(self, out, teacher_out, targets: torch.Tensor, phase) -> torch.Tensor:
        loss = classification_loss(out.logits.float(), targets, self.cfg.train.loss)
        if out.div_logits is not None and phase.num_old > 0:
            aux = divergence_targets(targets, phase.num_old)
            loss = loss + classification_loss(out.div_logits.float(), aux, self.cfg.train.loss)
        return loss

    def after_phase(self, model, task: int, phase: str) -> None:
        if phase == TRAIN and task > 0:
            align_weights(model.heads)
