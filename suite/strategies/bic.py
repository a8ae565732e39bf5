"""BiC, bias correction, as PyCIL runs it (models/bic.py): iCaRL's losses weighted by the old
classes' share, (1-λ)·CE + λ·KD, in the main phase, trained without a part of each class's images
(new classes' and old exemplars alike: 10% of the memory's size over the old classes, per class);
then, from the second task on, a BIAS phase trains only the newest task's (alpha, beta) on those
held-out images, augmented, for as many epochs and at the lr, milestones and weight decay of the
main phase, with PyCIL's loss: cross-entropy on the softmax of the corrected logits (a softmax
twice). Every task's bias layer stays applied to its own logits. The memory is updated after it.
"""
from __future__ import annotations

import torch

from suite.learner.losses import classification_loss
from suite.methods import BIAS, TRAIN
from suite.strategies.base import MEMORY, ExtraPhase, register_strategy
from suite.strategies.icarl import ICaRL

HELD_OUT_SHARE = 0.1  # PyCIL's split_ratio: of the memory's size


@register_strategy("bic")
class BiC(ICaRL):
    weighted_by_share = True

    def steps(self, task: int) -> tuple[str, ...]:
        return (TRAIN, BIAS, MEMORY) if task > 0 else (TRAIN, MEMORY)

    def epochs(self, task: int, phase: str) -> int:
        return super().epochs(task, TRAIN if phase == BIAS else phase)

    def held_out_per_class(self, task: int, num_old: int) -> int:
        if task == 0:
            return 0
        memory = self.cfg.memory
        size = memory.size if memory.per_class is None else memory.per_class * num_old
        return int(HELD_OUT_SHARE * size / num_old)

    def problem(self, task_sizes: list[int]) -> str | None:
        for task in range(1, len(task_sizes)):
            if self.held_out_per_class(task, sum(task_sizes[:task])) == 0:
                return (f"memory.size = {self.cfg.memory.size} holds out no image per class for BiC's bias phase in "
                        f"task {task + 1} ({HELD_OUT_SHARE:g} x memory / {sum(task_sizes[:task])} old classes < 1); "
                        f"expected at least {int(sum(task_sizes[:-1]) / HELD_OUT_SHARE)} exemplars")
        return None

    def extra_phase(self, task: int, phase: str) -> ExtraPhase:
        return ExtraPhase("held_out", self.main_lr(task), scheduled=True, mixup=False, shuffle=True)

    def loss(self, out, teacher_out, targets, phase) -> torch.Tensor:
        if phase.name == BIAS:
            return classification_loss(torch.softmax(out.logits.float(), dim=-1), targets, "ce")
        return super().loss(out, teacher_out, targets, phase)
