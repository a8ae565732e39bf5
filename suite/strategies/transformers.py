"""DAFormer, DyTox and the plain baselines (replay, finetune, joint; the CNN bounds finetune_cnn and
joint_cnn): the releases' objective and their balanced finetuning on the memory after every task
but the first (the plain methods without a memory: cross-entropy alone)."""
from __future__ import annotations

import torch

from suite.learner.losses import (
    classification_loss, divergence_targets, knn_invariant_distillation, logit_distillation,
)
from suite.methods import FINETUNE
from suite.strategies.base import ExtraPhase, Strategy, register_strategy


@register_strategy("finetune", "replay", "dytox", "daformer_s", "daformer_m", "daformer", "joint", "finetune_cnn",
                   "joint_cnn")
class ReleaseRecipe(Strategy):
    def steps(self, task: int) -> tuple[str, ...]:
        finetunes = self.method.rehearsal and task > 0 and self.cfg.finetune.epochs > 0
        return super().steps(task) + ((FINETUNE,) if finetunes else ())

    def extra_phase(self, task: int, phase: str) -> ExtraPhase:
        """Balanced finetuning on the memory only: encoder frozen (the model's FINETUNE phase), small
        constant lr, the recipe's MixUp kept (finetune.mixup), no repeated augmentation (as released)."""
        cfg = self.cfg.finetune
        return ExtraPhase("memory", cfg.lr, scheduled=False, mixup=cfg.mixup, shuffle=cfg.shuffle)

    def loss(self, out, teacher_out, targets, phase) -> torch.Tensor:
        """(1-λ)·L_cls + λ·τ²·KL + w_div·L_div + β·L_knn (each term where it applies)."""
        cfg = self.cfg
        logits = out.logits.float()
        cls = classification_loss(logits, targets, cfg.train.loss)
        if not phase.distill:
            return cls
        num_old = phase.num_old
        loss = cls
        if teacher_out is not None:
            lam = num_old / logits.shape[1]
            kd = logit_distillation(logits[:, :num_old], teacher_out.logits.float(), cfg.distill.tau,
                                    cfg.distill.kd_reduction)
            loss = (1 - lam) * cls + lam * kd
            if cfg.distill.knn_weight > 0:
                old_slots = teacher_out.embeddings.shape[1]
                knn = knn_invariant_distillation(teacher_out.features, out.embeddings[:, :old_slots].flatten(1),
                                                 cfg.distill.knn_k, cfg.distill.knn_temperature)
                loss = loss + cfg.distill.knn_weight * knn
        if out.div_logits is not None and num_old > 0:
            div = classification_loss(out.div_logits.float(), divergence_targets(targets, num_old),
                                      cfg.train.loss)
            loss = loss + cfg.train.divergence_weight * div
        return loss
