"""FOSTER's network (PyCIL's `FOSTERNet` and its learner's student): boosting with a second backbone,
then compression back into one.

The first task trains one backbone (model.backbone) and a linear classifier. Every later task is
boosted: the network is [the last task's single backbone, frozen, its BatchNorm statistics too | a
new backbone initialised from it], one classifier over their concatenated features (its old rows'
weights on the old features kept, the rest as a new layer's, as PyCIL widens it), the previous
classifier on the old features (`old_heads`, frozen: the old model's logits, which the boosting
distils) and an auxiliary classifier on the new backbone's features over every class seen
(`div_head`, PyCIL's `fe_fc`). Then the compression (phase COMPRESS) trains a student of one
backbone, started from the frozen old backbone and classifier (the new classes' rows as a new
layer's), to the boosted network's logits. The task's evaluation, herding and class means use the
boosted network, as PyCIL reports it (its trainer evaluates the teacher); the student's own logits
are evaluated beside, as the classifier "student" (PyCIL logs them as "darknet"; after the first
task the network is its own student); the next task starts from the student.

Classifiers are kept as one linear layer per task (suite/models/cnn.py's reasons). Only the boosted
backbones and classifier count as the parameters used at test time; the classifier "student"
counts the student's own.
"""
from __future__ import annotations

import torch
from torch import nn

from suite.methods import COMPRESS, TRAIN
from suite.models.base import Output, register_builder
from suite.models.cnn import linear_head
from suite.models.der import BackboneStack, widened


class Student(nn.Module):
    """One backbone and one linear classifier per task over its features."""

    def __init__(self, backbone: nn.Module, heads: nn.ModuleList):
        super().__init__()
        self.backbone, self.heads = backbone, heads

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.backbone(images)
        return torch.cat([head(features) for head in self.heads], dim=1), features


class FOSTERNet(BackboneStack):
    training_only = ("div_head", "old_heads", "student")  # not used at test time (the learner's count)
    classifier_networks = {"student": "student"}  # the "student" classifier's own count

    def __init__(self, backbone: str, channels: int):
        super().__init__(backbone, channels)
        self.old_heads: nn.ModuleList | None = None
        self.student: Student | None = None

    @property
    def boosting(self) -> bool:
        return len(self.backbones) == 2

    def add_task(self, num_classes: int) -> None:
        if not self.backbones:
            self.backbones.append(self.new_backbone())
            self.heads.append(linear_head(self.out_dim, num_classes))
            return
        if self.boosting:  # the last task's student is the network the new one boosts
            self.backbones, self.heads = nn.ModuleList([self.student.backbone]), self.student.heads
        new = self.new_backbone()
        new.load_state_dict(self.backbones[0].state_dict())
        self.backbones.append(new)
        self.old_heads = self.heads
        self.heads = nn.ModuleList([widened(head, 2 * self.out_dim) for head in self.old_heads] +
                                   [linear_head(2 * self.out_dim, num_classes)])
        self.div_head = linear_head(self.out_dim, self.num_classes)
        self.student = Student(self.new_backbone(), nn.ModuleList(
            [linear_head(self.out_dim, head.out_features) for head in self.heads]))

    @torch.no_grad()
    def start_compression(self) -> None:
        """The student from the frozen old backbone and the old classifier; its new rows stay as drawn."""
        self.student.backbone.load_state_dict(self.backbones[0].state_dict())
        for mine, old in zip(self.student.heads, self.old_heads):
            mine.load_state_dict(old.state_dict())

    def set_phase(self, phase: str) -> None:
        """TRAIN: everything but the old backbone, the old classifier and the student trains.
        COMPRESS: the student alone."""
        if phase not in (TRAIN, COMPRESS):
            raise ValueError(f"unknown phase {phase!r}")
        self.phase = phase
        self.requires_grad_(phase == TRAIN)
        if self.boosting:
            self.backbones[0].requires_grad_(False)
            self.old_heads.requires_grad_(False)
            self.student.requires_grad_(phase == COMPRESS)

    def train(self, mode: bool = True) -> FOSTERNet:
        super().train(mode)
        if mode and self.boosting:  # frozen BatchNorm statistics: the old backbone's, and the teacher's in COMPRESS
            (self.backbones if self.phase == COMPRESS else self.backbones[0]).eval()
        return self

    def _boosted(self, images: torch.Tensor, auxiliary: bool) -> Output:
        if not self.boosting:  # the first task's network: one backbone, its own student
            features = self.backbones[0](images)
            logits = torch.cat([head(features) for head in self.heads], dim=1)
            return Output(logits, features.unsqueeze(1), other_logits={} if self.training else {"student": logits})
        with torch.no_grad():  # frozen: the same values, without their graph
            old = self.backbones[0](images)
            old_logits = torch.cat([head(old) for head in self.old_heads], dim=1)
        new = self.backbones[1](images)
        features = torch.cat([old, new], dim=1)
        logits = torch.cat([head(features) for head in self.heads], dim=1)
        div = self.div_head(new) if auxiliary else None
        student = {} if self.training else {"student": self.student(images)[0]}
        return Output(logits, features.unsqueeze(1), div, teacher_logits=old_logits, other_logits=student)

    def forward(self, images: torch.Tensor) -> Output:
        if not (self.training and self.phase == COMPRESS):
            return self._boosted(images, auxiliary=self.training)
        with torch.no_grad():
            teacher_logits = self._boosted(images, auxiliary=False).logits
        logits, features = self.student(images)
        return Output(logits, features.unsqueeze(1), teacher_logits=teacher_logits)


def build_foster(method, image_size, channels, num_tasks, backbone="cifar_resnet32", **options):
    return FOSTERNet(backbone, channels)


register_builder("foster", build_foster)
