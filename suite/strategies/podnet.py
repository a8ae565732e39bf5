"""PODNet as PyCIL runs it (models/podnet.py): the local similarity classifier (suite/models/cosine.py)
trained with the NCA loss; from the second task on, pooled-output distillation from the previous
model, spatial (every stage's output, weight distill.pod_spatial) and flat (the features, weight
distill.pod_flat), both times sqrt(classes seen / new classes).

After a task's training (from the second task on), PyCIL's balanced finetuning: the new classes are
herded at the share of the memory the old classes hold (memory.size // old classes each; PyCIL's
fixed total), and the whole model but the old proxies trains on those exemplars alone, with the same
loss and distillation, for finetune.epochs at finetune.lr on a cosine stepped per epoch (PyCIL's);
then the memory is updated as usual (the new classes herded again, at their final share). PODNet's
release tunes the classifier alone instead, and sets distill.pod_spatial to 3 for its CNN results."""
from __future__ import annotations

import math

import torch

from suite.learner.losses import feature_distillation, nca_loss, pod_spatial_loss
from suite.methods import FINETUNE, TRAIN
from suite.strategies.base import FINETUNE_MEMORY, MEMORY, ExtraPhase, Strategy, register_strategy


@register_strategy("podnet")
class PODNet(Strategy):
    def steps(self, task: int) -> tuple[str, ...]:
        if task == 0 or self.cfg.finetune.epochs == 0:
            return (TRAIN, MEMORY)
        return (TRAIN, FINETUNE_MEMORY, FINETUNE, MEMORY)

    def problem(self, task_sizes: list[int]) -> str | None:
        memory = self.cfg.memory
        if self.cfg.finetune.epochs and memory.per_class is None and memory.size == 0 and len(task_sizes) > 1:
            return ("podnet finetunes on its memory after every task but the first: memory.size = 0 leaves it "
                    "nothing; expected a memory, or finetune.epochs = 0")
        return self.hard_label_problem()  # its NCA loss

    def extra_phase(self, task: int, phase: str) -> ExtraPhase:
        return ExtraPhase("memory", self.cfg.finetune.lr, scheduled=False, mixup=False, shuffle=True, cosine=True,
                          distill=True)

    def loss(self, out, teacher_out, targets: torch.Tensor, phase) -> torch.Tensor:
        logits = out.logits.float()
        loss = nca_loss(logits, targets.argmax(dim=1))
        if teacher_out is None:
            return loss
        factor = math.sqrt(logits.shape[1] / (logits.shape[1] - phase.num_old))
        cfg = self.cfg.distill
        flat = feature_distillation(out.features, teacher_out.features)
        spatial = pod_spatial_loss(out.maps, teacher_out.maps)
        return loss + factor * (cfg.pod_flat * flat + cfg.pod_spatial * spatial)
