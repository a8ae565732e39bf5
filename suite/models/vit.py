"""Plain-ViT baselines: the same encoder + one self-attention block, mean-pooled, one growing
linear classifier (per-task linear heads concatenated). `replay` rehearses; `finetune` has no
memory (lower bound); `joint` learns every class in one task (upper bound)."""
from __future__ import annotations

import torch
from timm.models.convit import Block
from torch import nn

from suite.models.attention import fuse_attention
from suite.models.base import IncrementalModel, encoder_args, register_builder
from suite.models.encoder import init_weights


class PlainViT(IncrementalModel):
    def __init__(self, image_size: int, channels: int, divergence: bool, freezes_old_heads: bool,
                 num_heads: int = 4, mlp_ratio: float = 4.0, **encoder):
        super().__init__(image_size, channels, divergence, freezes_old_heads, num_heads=num_heads,
                         mlp_ratio=mlp_ratio, **encoder)
        self.block = fuse_attention(Block(self.embed_dim, num_heads, mlp_ratio, qkv_bias=False,
                                          drop_path=self.encoder.task_block_drop_path, use_gpsa=False))
        self.norm = nn.LayerNorm(self.embed_dim)
        init_weights(self.block)

    def make_head(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.embed_dim, num_classes)

    def slot_of_task(self, task: int) -> int:
        return 0

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.norm(self.block(tokens).mean(dim=1)).unsqueeze(1)


def _build(method, image_size, channels, num_tasks, **options):
    return PlainViT(image_size, channels, method.divergence, method.freezes_old_heads, **encoder_args(options))


for _name in ("replay", "finetune", "joint"):
    register_builder(_name, _build)
