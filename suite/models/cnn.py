"""The classic baselines' model: a CNN backbone (model.backbone) and one linear classifier that
grows by a task's classes, as PyCIL's `IncrementalNet` (its `SimpleLinear`: with a bias, weights
Kaiming-uniform for a linear layer, bias zero; the old classes' rows kept as they are).

The classifier is kept as one linear layer per task, concatenated: the same function as PyCIL's
single layer grown by copying its old rows, and the old and new classes' rows at hand for weight
aligning. Every parameter trains in every phase, as in PyCIL, but for BiC's bias layers
(`bias_correction`): one (alpha, beta) pair per task on its block of logits, all of them applied
(PyCIL's `IncrementalNetWithBias`), frozen in the main phase; the BIAS phase trains the newest.
"""
from __future__ import annotations

import torch
from torch import nn

from suite.models.base import Output, register_builder
from suite.methods import BIAS, PHASES
from suite.models.resnet import BACKBONE_BUILDERS


def linear_head(in_features: int, num_classes: int) -> nn.Linear:
    head = nn.Linear(in_features, num_classes)
    nn.init.kaiming_uniform_(head.weight, nonlinearity="linear")
    nn.init.zeros_(head.bias)
    return head


class BiasLayer(nn.Module):
    """alpha * logits + beta on one task's logits (alpha 1, beta 0 at first)."""

    def __init__(self):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        self.beta = nn.Parameter(torch.zeros(1))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return self.alpha * logits + self.beta


class LinearHeads:
    """The tasks and classes of a model whose `heads` are one linear layer per task."""

    heads: nn.ModuleList

    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    @property
    def task_sizes(self) -> list[int]:
        return [head.out_features for head in self.heads]

    @property
    def num_classes(self) -> int:
        return sum(self.task_sizes)


class IncrementalCNN(LinearHeads, nn.Module):
    def __init__(self, backbone: str, channels: int, bias_correction: bool = False):
        super().__init__()
        self.backbone = BACKBONE_BUILDERS[backbone](channels=channels)
        self.out_dim = self.backbone.out_dim
        self.heads = nn.ModuleList()
        self.biases = nn.ModuleList() if bias_correction else None

    def add_task(self, num_classes: int) -> None:
        self.heads.append(linear_head(self.out_dim, num_classes))
        if self.biases is not None:
            self.biases.append(BiasLayer())

    def set_phase(self, phase: str) -> None:
        if phase not in PHASES or (phase == BIAS and self.biases is None):
            raise ValueError(f"unknown phase {phase!r}")
        self.requires_grad_(phase != BIAS)
        if self.biases is not None:
            self.biases.requires_grad_(False)
            if phase == BIAS:
                self.biases[-1].requires_grad_(True)

    def forward(self, images: torch.Tensor) -> Output:
        features = self.backbone(images)
        blocks = [head(features) for head in self.heads]
        if self.biases is not None:
            blocks = [bias(block) for bias, block in zip(self.biases, blocks)]
        return Output(torch.cat(blocks, dim=1), features.unsqueeze(1))


def build_cnn(method, image_size, channels, num_tasks, backbone="cifar_resnet32", **options):
    """The builder of a CNN method's model (model.backbone; the other model.* keys are the ViTs')."""
    return IncrementalCNN(backbone, channels)


def build_cnn_with_bias_layers(method, image_size, channels, num_tasks, backbone="cifar_resnet32", **options):
    return IncrementalCNN(backbone, channels, bias_correction=True)


for _name in ("icarl", "wa", "finetune_cnn", "joint_cnn"):
    register_builder(_name, build_cnn)
register_builder("bic", build_cnn_with_bias_layers)
