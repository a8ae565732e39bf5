"""FOSTER as PyCIL runs it (models/foster.py; the network: suite/models/foster.py). The first task:
cross-entropy. Every later task, boosting: cross-entropy on the logits divided by class-balanced
weights (distill.foster_beta1 over the images each class trains on: the old classes' exemplars, the
new classes' images), plus the auxiliary classifier's cross-entropy on the new backbone, plus the
distillation (PyCIL's soft cross-entropy at distill.tau, weight 1) of the old classes' logits from the
frozen old classifier on the frozen old backbone. Then the compression (phase COMPRESS): the student
learns the boosted network's logits alone, by the class-balanced distillation (distill.foster_beta2),
on the same images, for distill.compress_epochs at distill.compress_lr on a cosine stepped per epoch,
without weight decay. PyCIL's weight aligning of teacher or student (off in every configuration) and
its "az" variant are not built."""
from __future__ import annotations

import torch

from suite.learner.losses import balanced_distillation, class_balanced_weights, classification_loss, soft_distillation
from suite.methods import COMPRESS, TRAIN
from suite.strategies.base import MEMORY, ExtraPhase, Strategy, register_strategy

OLD_LOGITS_WEIGHT = 1.0  # PyCIL's lambda_okd, 1 in every configuration


@register_strategy("foster")
class FOSTER(Strategy):
    def steps(self, task: int) -> tuple[str, ...]:
        return (TRAIN, COMPRESS, MEMORY) if task > 0 else (TRAIN, MEMORY)

    def epochs(self, task: int, phase: str) -> int:
        if phase == COMPRESS:
            return self.cfg.distill.compress_epochs or super().epochs(task, TRAIN)
        return super().epochs(task, phase)

    def problem(self, task_sizes: list[int]) -> str | None:
        memory = self.cfg.memory
        if memory.per_class is None and memory.size == 0 and len(task_sizes) > 1:
            return ("memory.size = 0 leaves the old classes without an exemplar: FOSTER's class weights need at "
                    "least one image of each class; expected a memory")
        return None

    def teacher(self, model, task: int):
        return None  # the network carries its frozen old part and, while compressing, its teacher

    def extra_phase(self, task: int, phase: str) -> ExtraPhase:
        lr = self.cfg.distill.compress_lr
        return ExtraPhase("main", self.main_lr(task) if lr is None else lr, scheduled=False, mixup=False, shuffle=True,
                          cosine=True, weight_decay=0.0)

    def loss(self, out, teacher_out, targets: torch.Tensor, phase) -> torch.Tensor:
        logits, cfg = out.logits.float(), self.cfg.distill
        if phase.name == COMPRESS:
            weights = class_balanced_weights(phase.images_per_class, cfg.foster_beta2, logits.device)
            return balanced_distillation(logits, out.teacher_logits.float(), weights, cfg.tau)
        kind = self.cfg.train.loss
        if out.teacher_logits is None:  # the first task
            return classification_loss(logits, targets, kind)
        weights = class_balanced_weights(phase.images_per_class, cfg.foster_beta1, logits.device)
        adjusted = classification_loss(logits / weights, targets, kind)
        auxiliary = classification_loss(out.div_logits.float(), targets, kind)
        old = soft_distillation(logits[:, :phase.num_old], out.teacher_logits.float(), cfg.tau)
        return adjusted + auxiliary + OLD_LOGITS_WEIGHT * old

    def after_phase(self, model, task: int, phase: str) -> None:
        if phase == TRAIN and task > 0:
            model.start_compression()
