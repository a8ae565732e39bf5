"""The classic baselines' model: a CNN backbone (model.backbone) and one linear classifier that
grows by a task's classes, as PyCIL's `IncrementalNet` (its `SimpleLinear`: with a bias, weights
Kaiming-uniform for a linear layer, bias zero; the old classes' rows kept as they are).

The classifier is kept as one linear layer per task, concatenated: the same function as PyCIL's
single layer grown by copying its old rows, and the old and new classes' rows at hand for weight
aligning. Every parameter trains in every phase, as in PyCIL.
"""
from __future__ import annotations

import torch
from torch import nn

from suite.methods import METHODS
from suite.models.base import FINETUNE, TRAIN, Output, register_builder
from suite.models.resnet import BACKBONES


def linear_head(in_features: int, num_classes: int) -> nn.Linear:
    head = nn.Linear(in_features, num_classes)
    nn.init.kaiming_uniform_(head.weight, nonlinearity="linear")
    nn.init.zeros_(head.bias)
    return head


class IncrementalCNN(nn.Module):
    def __init__(self, backbone: str, channels: int):
        super().__init__()
        self.backbone = BACKBONES[backbone](channels=channels)
        self.out_dim = self.backbone.out_dim
        self.heads = nn.ModuleList()

    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    @property
    def task_sizes(self) -> list[int]:
        return [head.out_features for head in self.heads]

    @property
    def num_classes(self) -> int:
        return sum(self.task_sizes)

    def add_task(self, num_classes: int) -> None:
        self.heads.append(linear_head(self.out_dim, num_classes))

    def set_phase(self, phase: str) -> None:
        if phase not in (TRAIN, FINETUNE):
            raise ValueError(f"unknown phase {phase!r}")
        self.requires_grad_(True)

    def forward(self, images: torch.Tensor) -> Output:
        features = self.backbone(images)
        logits = torch.cat([head(features) for head in self.heads], dim=1)
        return Output(logits, features.unsqueeze(1))


def _build(method, image_size, channels, num_tasks, backbone="cifar_resnet32", **options):
    return IncrementalCNN(backbone, channels)


for _method in METHODS.values():
    if _method.architecture == "cnn":
        register_builder(_method.name, _build)
