"""Plain-ViT baselines: the same encoder + one self-attention block, mean-pooled, one growing
linear classifier (per-task linear heads concatenated). `replay` rehearses; `finetune` has no
memory (lower bound); `joint` learns every class in one task (upper bound)."""
from __future__ import annotations

import torch
from timm.models.convit import Block
from torch import nn

from suite.models.attention import fuse_attention
from suite.models.base import IncrementalModel, register_builder
from suite.models.encoder import drop_path_rates, init_weights


class PlainViT(IncrementalModel):
    def __init__(self, cfg, image_size: int, channels: int, divergence: bool, freezes_old_heads: bool):
        super().__init__(cfg, image_size, channels, divergence, freezes_old_heads)
        self.block = fuse_attention(Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, qkv_bias=False,
                                          drop_path=drop_path_rates(cfg)[-1], use_gpsa=False))
        self.norm = nn.LayerNorm(cfg.embed_dim)
        init_weights(self.block)

    def make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.embed_dim, num_classes)

    def slot_of_task(self, task: int) -> int:
        return 0

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.block(tokens).mean(dim=1)).unsqueeze(1)


def _build(cfg, image_size, channels, num_tasks, method):
    return PlainViT(cfg, image_size, channels, method.divergence, method.freezes_old_heads)


for _name in ("replay", "finetune", "joint"):
    register_builder(_name, _build)
