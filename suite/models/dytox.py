"""DyTox baseline: one learned task token per task + a CaiT-style class-attention block.

All task tokens attend in one batched computation: token t's query sees its own key/value and
the patch tokens' keys/values, exactly as if each token ran the block alone (as DyTox does).
"""
from __future__ import annotations

import torch
from timm.layers import DropPath, Mlp, trunc_normal_
from torch import nn

from suite.models.base import IncrementalModel, encoder_args, register_builder
from suite.models.encoder import init_weights


class ClassAttentionBlock(nn.Module):
    """Task tokens (B, T, C) attend to [own token; patches (B, N, C)] -> updated tokens (B, T, C)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm1 = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        return x.reshape(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, L, d)

    def attend(self, tokens: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        B, T, C = tokens.shape
        t, p = self.norm1(tokens), self.norm1(patches)
        q = self._heads(self.q(t)) * self.head_dim ** -0.5
        k_self, v_self = self._heads(self.k(t)), self._heads(self.v(t))  # (B, h, T, d)
        k_patch, v_patch = self._heads(self.k(p)), self._heads(self.v(p))  # (B, h, N, d)
        scores = torch.cat([(q * k_self).sum(-1, keepdim=True), q @ k_patch.transpose(-2, -1)], dim=-1)
        attn = scores.softmax(dim=-1)  # (B, h, T, 1 + N)
        out = attn[..., :1] * v_self + attn[..., 1:] @ v_patch
        return self.proj(out.transpose(1, 2).reshape(B, T, C))

    def forward(self, tokens: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.drop_path(self.attend(tokens, patches))
        return tokens + self.drop_path(self.mlp(self.norm2(tokens)))


class DyTox(IncrementalModel):
    def __init__(self, image_size: int, channels: int, task_token_init: str = "random", num_heads: int = 4,
                 mlp_ratio: float = 4.0, **encoder):
        super().__init__(image_size, channels, num_heads=num_heads, mlp_ratio=mlp_ratio, **encoder)
        self.token_init = task_token_init
        self.tab = ClassAttentionBlock(self.embed_dim, num_heads, mlp_ratio, self.encoder.task_block_drop_path)
        init_weights(self.tab)
        self.task_tokens = nn.ParameterList()

    def _grow(self, task: int) -> None:
        """A fresh task token (trunc_normal, std 0.02): the release deep-copies the last token and
        re-initialises the copy; model.task_token_init=copy keeps the copy instead."""
        if task > 0 and self.token_init == "copy":
            token = self.task_tokens[-1].detach().clone()
        else:
            token = trunc_normal_(torch.zeros(1, self.embed_dim), std=0.02)
        self.task_tokens.append(nn.Parameter(token))

    def _old_task_parameters(self):
        return iter(self.task_tokens[:-1])

    def embed(self, patches: torch.Tensor) -> torch.Tensor:
        tokens = torch.cat(tuple(self.task_tokens)).expand(patches.shape[0], -1, -1)
        return self.tab(tokens, patches)


def _build(method, image_size, channels, num_tasks, task_token_init="random", **options):
    return DyTox(image_size, channels, task_token_init, **encoder_args(options))


register_builder("dytox", _build)
