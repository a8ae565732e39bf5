"""DER without pruning (PyCIL's models/der.py): cross-entropy on every class seen, plus, from the
second task on, the auxiliary classifier's cross-entropy (weight 1) with every old class in bucket 0;
no distillation (the old backbones are frozen instead). After each task's training, PyCIL aligns the
new classes' classifier rows to the old ones' mean norm (WA's weight aligning).

With finetune.retrain_classifier (the DER/DyTox-table preset) the classifiers are handled as the DER
release's: built afresh each task, without the old classes' rows (its reuse_oldfc: False; Kaiming-normal
weights, biases 0), re-initialised with the auxiliary one at the end of the warm-up (nn.Linear's own
initialisation, the bias, which the release's layers lack, at 0; SGD's momentum kept), and, from the
second task on, its classifier retraining ("decouple") takes the aligning's place: the classifier
re-initialised, then trained alone, every backbone in eval mode, on a class-balanced subset of the
task's training images (its new images and the memory it trained with, every class cut to the
smallest one's count), for finetune.epochs at finetune.lr, x train.lr_decay after
finetune.milestones, its logits divided by finetune.temperature; the memory is updated after it."""
from __future__ import annotations

import torch
from torch import nn

from suite.learner import dist
from suite.learner.losses import classification_loss, divergence_targets
from suite.methods import FINETUNE, TRAIN
from suite.strategies.base import MEMORY, ExtraPhase, Strategy, register_strategy
from suite.strategies.wa import align_weights


@register_strategy("der")
class DER(Strategy):
    def retrains_classifier(self, task: int) -> bool:
        return task > 0 and self.cfg.finetune.retrain_classifier and self.cfg.finetune.epochs > 0

    def steps(self, task: int) -> tuple[str, ...]:
        return (TRAIN, FINETUNE, MEMORY) if self.retrains_classifier(task) else (TRAIN, MEMORY)

    def extra_phase(self, task: int, phase: str) -> ExtraPhase:
        cfg = self.cfg.finetune
        return ExtraPhase("balanced", cfg.lr, scheduled=False, mixup=False, shuffle=True,
                          milestones=tuple(cfg.milestones))

    def after_growth(self, model, task: int, new_class_features) -> None:
        if self.cfg.finetune.retrain_classifier:
            for head in classifiers(model):
                nn.init.kaiming_normal_(head.weight, nonlinearity="linear")
                nn.init.zeros_(head.bias)

    def after_epoch(self, model, task: int, phase: str, epochs_done: int) -> None:
        """The release resets at the start of the epoch after the warm-up: never when there is none."""
        warmup = self.cfg.train.warmup_epochs
        if self.cfg.finetune.retrain_classifier and phase == TRAIN and epochs_done == warmup < self.epochs(task, TRAIN):
            for head in classifiers(model):
                reset(head)
                dist.broadcast_parameters(head)

    def loss(self, out, teacher_out, targets: torch.Tensor, phase) -> torch.Tensor:
        logits = out.logits.float()
        if phase.name == FINETUNE:
            return classification_loss(logits / self.cfg.finetune.temperature, targets, self.cfg.train.loss)
        loss = classification_loss(logits, targets, self.cfg.train.loss)
        if out.div_logits is not None and phase.num_old > 0:
            aux = divergence_targets(targets, phase.num_old)
            loss = loss + classification_loss(out.div_logits.float(), aux, self.cfg.train.loss)
        return loss

    def after_phase(self, model, task: int, phase: str) -> None:
        if phase != TRAIN or task == 0:
            return
        if self.retrains_classifier(task):
            for head in model.heads:
                reset(head)
        else:
            align_weights(model.heads)


def reset(head: nn.Linear) -> None:
    """The release's reset (nn.Linear's own initialisation); the bias, which its layers lack, at 0."""
    head.reset_parameters()
    nn.init.zeros_(head.bias)


def classifiers(model) -> list[nn.Linear]:
    """DER's classifier (a layer a task) and its auxiliary one, where there is one."""
    return [*model.heads, *([model.div_head] if model.div_head is not None else [])]
