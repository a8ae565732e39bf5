"""The cosine-classifier methods' model (PODNet: PyCIL's `CosineIncrementalNet`; UCIR: its release's
network): a CNN backbone (model.backbone, PyCIL's `cosine_resnet32` under its protocol) and a
classifier that scores a class by the cosine of the features with its weights, times one learnable
scale sigma (init 1). UCIR's is the case of one weight a class.

With model.proxies > 1 it is PODNet's local similarity classifier: each class has that many proxy
weights, and its score is the mean of their cosines weighted by their softmax. New weights are drawn
uniformly in +-1/sqrt(features), as PyCIL's (PODNet's release imprints them instead). The classifier
is kept as one block of proxies per task (PyCIL's `SplitCosineLinear` keeps the old and the new ones
apart the same way); the old tasks' proxies are frozen in every phase (PyCIL: lr 0, weight decay 0),
sigma and everything else trains. The backbone's stage outputs ride along (`Output.maps`) for
PODNet's spatial distillation.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from suite.methods import FINETUNE, TRAIN
from suite.models.base import Output, register_builder
from suite.models.cnn import LinearHeads
from suite.models.resnet import BACKBONE_BUILDERS


class ProxyCosineHead(nn.Module):
    """One task's classes: `proxies` unit-normalised weights each; their cosines with the normalised
    features, reduced to one score per class (softmax-weighted mean over a class's proxies)."""

    def __init__(self, in_features: int, num_classes: int, proxies: int):
        super().__init__()
        self.out_features, self.proxies = num_classes, proxies
        self.weight = nn.Parameter(torch.empty(num_classes * proxies, in_features))
        bound = 1 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, unit_features: torch.Tensor) -> torch.Tensor:
        cosines = F.linear(unit_features, F.normalize(self.weight, dim=1))
        per_class = cosines.view(len(cosines), self.out_features, self.proxies)
        return (per_class.softmax(dim=-1) * per_class).sum(dim=-1)


class CosineCNN(LinearHeads, nn.Module):
    def __init__(self, backbone: str, channels: int, proxies: int = 1):
        super().__init__()
        self.backbone = BACKBONE_BUILDERS[backbone](channels=channels)
        self.out_dim, self.proxies = self.backbone.out_dim, proxies
        self.heads = nn.ModuleList()
        self.sigma = nn.Parameter(torch.ones(1))

    def add_task(self, num_classes: int) -> None:
        self.heads.append(ProxyCosineHead(self.out_dim, num_classes, self.proxies))

    def set_phase(self, phase: str) -> None:
        if phase not in (TRAIN, FINETUNE):
            raise ValueError(f"unknown phase {phase!r}")
        self.requires_grad_(True)
        self.heads[:-1].requires_grad_(False)

    def forward(self, images: torch.Tensor) -> Output:
        maps = self.backbone.feature_maps(images)
        features = maps[-1].mean(dim=(2, 3))
        unit = F.normalize(features, dim=1)
        logits = self.sigma * torch.cat([head(unit) for head in self.heads], dim=1)
        return Output(logits, features.unsqueeze(1), maps=tuple(maps), scale=self.sigma)


def build_cosine_cnn(method, image_size, channels, num_tasks, backbone="cifar_resnet32", proxies=10, **options):
    return CosineCNN(backbone, channels, proxies)


def build_cosine_cnn_one_weight_a_class(method, image_size, channels, num_tasks, backbone="cifar_resnet32", **options):
    return CosineCNN(backbone, channels, proxies=1)


register_builder("podnet", build_cosine_cnn)
register_builder("ucir", build_cosine_cnn_one_weight_a_class)
