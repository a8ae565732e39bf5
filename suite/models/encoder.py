"""The shared encoder: patch embedding + learned positions + ConViT (GPSA) blocks from timm, their
attention fused (suite.models.attention)."""
from __future__ import annotations

import torch
from torch import nn
from timm.layers import PatchEmbed, trunc_normal_
from timm.models.convit import Block

from suite.config import ModelConfig
from suite.models.attention import fuse_attention


def drop_path_rates(cfg: ModelConfig) -> list[float]:
    """Stochastic depth grows linearly over the encoder blocks and the one task block after them."""
    return torch.linspace(0, cfg.drop_path, cfg.depth + 1).tolist()


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

    def __init__(self, cfg: ModelConfig, image_size: int, channels: int):
        super().__init__()
        if image_size % cfg.patch_size:
            raise ValueError(f"image size {image_size} is not a multiple of patch size {cfg.patch_size}")
        self.patch_embed = PatchEmbed(image_size, cfg.patch_size, channels, cfg.embed_dim)
        self.num_tokens = self.patch_embed.num_patches
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, cfg.embed_dim))
        rates = drop_path_rates(cfg)
        self.blocks = fuse_attention(nn.Sequential(*[
            Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, qkv_bias=False, drop_path=rates[i],
                  use_gpsa=True, locality_strength=cfg.locality_strength)
            for i in range(cfg.depth)
        ]))
        init_weights(self)
        trunc_normal_(self.pos_embed, std=0.02)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.patch_embed(images) + self.pos_embed)
