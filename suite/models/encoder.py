"""The shared encoder: patch embedding + learned positions + ConViT (GPSA) blocks from timm, their
attention fused (suite.models.attention)."""
from __future__ import annotations

import torch
from torch import nn
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.convit import Block

from suite.models.attention import fuse_attention


def drop_path_rates(drop_path: float, depth: int) -> list[float]:
    """Stochastic depth grows linearly over the `depth` encoder blocks and the one task block after them."""
    return torch.linspace(0, drop_path, depth + 1).tolist()


def init_weights(module: nn.Module) -> None:
    """ConViT's initialisation: truncated-normal linears, unit LayerNorms, then GPSA's local init."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for m in module.modules():
        if hasattr(m, "local_init"):
            m.local_init()


class Encoder(nn.Module):
    """Images (B, channels, S, S) -> patch tokens (B, N, C). No class token."""

    def __init__(self, image_size: int, channels: int, embed_dim: int = 64, depth: int = 2, num_heads: int = 4,
                 patch_size: int = 2, mlp_ratio: float = 4.0, drop_path: float = 0.0, locality_strength: float = 1.0):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of patch size {patch_size}")
        self.patch_embed = PatchEmbed(image_size, patch_size, channels, embed_dim)
        self.num_tokens = self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, embed_dim))
        rates = drop_path_rates(drop_path, depth)
        self.task_block_drop_path = rates[-1]  # for the block that follows the encoder
        self.blocks = fuse_attention(nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=False, drop_path=rates[i],
                  use_gpsa=True, locality_strength=locality_strength,
                  norm_layer=nn.LayerNorm)  # eps 1e-5 as the releases' blocks (timm's default is 1e-6)
            for i in range(depth)
        ]))
        init_weights(self)
        trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.patch_embed(images) + self.pos_embed)
