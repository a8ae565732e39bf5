"""UCIR (LUCIR) as its release trains CIFAR-100 (hshustc/CVPR19_Incremental_Learning,
class_incremental_cosine_cifar100.py with --imprint_weights --less_forget --adapt_lamda --mr_loss;
PyCIL has no UCIR): a cosine classifier, one weight a class (suite/models/cosine.py), trained with
cross-entropy on the sigma-scaled cosines; from the second task on, the new classes' weights
imprinted (each the normalised mean of its training images' normalised features, times the old
weights' mean norm), the old ones frozen; the less-forget constraint, 1 - cos of the features with the
previous model's, weighted distill.less_forget x sqrt(old / new classes); the margin ranking loss on
images of old classes (their true class's cosine against the K = 2 highest new-class cosines, margin
0.5, weight 1: the release's values in every published run). No class-balanced finetuning: the
release has it for ImageNet only, off in its commands."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from suite.learner.losses import classification_loss, feature_distillation, margin_ranking_loss
from suite.strategies.base import Strategy, register_strategy

MARGIN, HARDEST_NEW, MARGIN_WEIGHT = 0.5, 2, 1.0  # --dist, --K, --lw_mr


@torch.no_grad()
def imprint(new_head: torch.nn.Module, old_heads: torch.nn.ModuleList, features: list[torch.Tensor]) -> None:
    """Each new class's weight: the normalised mean of its images' normalised features, scaled to the
    old classes' mean weight norm."""
    old_norm = float(torch.cat([head.weight for head in old_heads]).norm(dim=1).mean())
    means = torch.stack([F.normalize(f.double(), dim=1).mean(dim=0) for f in features])  # on the CPU
    new_head.weight.copy_(F.normalize(means, dim=1) * old_norm)


@register_strategy("ucir")
class UCIR(Strategy):
    def problem(self, task_sizes: list[int]) -> str | None:
        return self.hard_label_problem()  # its margin ranking loss

    def after_growth(self, model, task: int, new_class_features) -> None:
        if task > 0:
            imprint(model.heads[-1], model.heads[:-1], new_class_features())

    def loss(self, out, teacher_out, targets: torch.Tensor, phase) -> torch.Tensor:
        logits = out.logits.float()
        loss = classification_loss(logits, targets, self.cfg.train.loss)
        if teacher_out is None:
            return loss
        num_old = phase.num_old
        weight = self.cfg.distill.less_forget * math.sqrt(num_old / (logits.shape[1] - num_old))
        less_forget = feature_distillation(out.features, teacher_out.features)
        ranking = margin_ranking_loss(logits / out.scale.float(), targets.argmax(dim=1), num_old, HARDEST_NEW, MARGIN)
        return loss + weight * less_forget + MARGIN_WEIGHT * ranking
