"""DER without pruning: a network that grows a backbone per task (PyCIL's `DERNet`, the DER release's
network without its masks).

Each task adds a backbone (model.backbone) initialised from the last one's weights; the old ones are
frozen, their BatchNorm statistics too (kept in eval mode while the new one trains). One classifier
reads the concatenated features of every backbone: kept as one linear layer per task, as
suite/models/cnn.py's, each widened when a backbone is added (its old weights in the old feature
columns, the new columns initialised as a new layer is, its bias kept): the same function as PyCIL's
single layer grown by copying (under DER's release's protocol its strategy draws every row afresh
instead: suite/strategies/der.py). From the second task on, an auxiliary classifier on the newest
backbone's features alone tells the task's classes apart from one bucket for all old classes
(`div_head`: the role the ViTs' divergence head plays, and like it left out of the parameters
counted at test time).
"""
from __future__ import annotations

import torch
from torch import nn

from suite.methods import FINETUNE, TRAIN
from suite.models.base import Output, register_builder
from suite.models.cnn import LinearHeads, linear_head
from suite.models.resnet import BACKBONE_BUILDERS


def widened(head: nn.Linear, in_features: int) -> nn.Linear:
    """`head` reading `in_features` features: its weights on the first ones, the rest as a new layer's."""
    wide = linear_head(in_features, head.out_features).to(head.weight.device)
    with torch.no_grad():
        wide.weight[:, :head.in_features] = head.weight
        wide.bias.copy_(head.bias)
    return wide


class BackboneStack(LinearHeads, nn.Module):
    """Backbones of one kind (model.backbone), one linear classifier a task over their features and an
    auxiliary classifier (`div_head`): DER's network and FOSTER's."""

    def __init__(self, backbone: str, channels: int):
        super().__init__()
        self.backbone_name, self.channels = backbone, channels
        self.phase = TRAIN
        self.backbones = nn.ModuleList()
        self.heads = nn.ModuleList()
        self.div_head: nn.Linear | None = None

    @property
    def out_dim(self) -> int:
        """One backbone's feature width."""
        return self.backbones[0].out_dim

    def new_backbone(self) -> nn.Module:
        return BACKBONE_BUILDERS[self.backbone_name](channels=self.channels)


class DERNet(BackboneStack):
    def add_task(self, num_classes: int) -> None:
        new = self.new_backbone()
        if len(self.backbones):
            new.load_state_dict(self.backbones[-1].state_dict())
        self.backbones.append(new)
        width = self.out_dim * len(self.backbones)
        self.heads = nn.ModuleList([widened(head, width) for head in self.heads] + [linear_head(width, num_classes)])
        self.div_head = linear_head(self.out_dim, num_classes + 1) if len(self.backbones) > 1 else None

    def set_phase(self, phase: str) -> None:
        """TRAIN: everything but the old backbones trains (the classifier's old rows too, as PyCIL's).
        FINETUNE (the DER release's classifier retraining): the classifier alone, every backbone in
        eval mode."""
        if phase not in (TRAIN, FINETUNE):
            raise ValueError(f"unknown phase {phase!r}")
        self.phase = phase
        self.requires_grad_(phase == TRAIN)
        self.backbones[:-1].requires_grad_(False)
        self.heads.requires_grad_(True)

    def train(self, mode: bool = True) -> DERNet:
        super().train(mode)
        frozen = self.backbones if self.phase == FINETUNE else self.backbones[:-1]
        for backbone in frozen:
            backbone.eval()  # frozen BatchNorm statistics
        return self

    def forward(self, images: torch.Tensor) -> Output:
        with torch.no_grad():  # frozen: the same values, without their graph
            old = [backbone(images) for backbone in self.backbones[:-1]]
        new = self.backbones[-1](images)
        features = torch.cat([*old, new], dim=1)
        logits = torch.cat([head(features) for head in self.heads], dim=1)
        div = self.div_head(new) if self.training and self.div_head is not None else None
        return Output(logits, features.unsqueeze(1), div)


def build_der(method, image_size, channels, num_tasks, backbone="cifar_resnet32", **options):
    return DERNet(backbone, channels)


register_builder("der", build_der)
