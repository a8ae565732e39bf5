"""timm's ConViT attention layers (GPSA, MHSA) computed with `scaled_dot_product_attention`.

timm writes both out op by op: the (B, heads, N, N) score matrix is materialised, soft-maxed,
mixed and renormalised, and GPSA projects its positional indices once per image although they do
not depend on the image. On a GPU in bf16 those elementwise passes took most of the step (the
measurement: bench/experiments/README.md#fused-attention). Here:

    GPSA(x) = proj((1 - g) * softmax(q k^T / sqrt(d)) v  +  g * softmax(pos) v)

with g = sigmoid(gating) per head; the first term is one fused attention call, the second one
(heads, N, N) matrix shared by the batch. timm's renormalisation (dividing by the row sum, which
is (1 - g) + g = 1) is left out. Same parameters, same state_dict keys; attention dropout must be 0
(it is in every preset), since a fused call cannot drop both terms with one mask.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.convit import GPSA, MHSA
from torch import nn


class FusedGPSA(GPSA):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        h = self.num_heads
        if self.rel_indices.shape[1] != N:
            self.rel_indices = self.get_rel_indices(N)
        q, k = self.qk(x).reshape(B, N, 2, h, C // h).permute(2, 0, 3, 1, 4).unbind(0)
        v = self.v(x).reshape(B, N, h, C // h).transpose(1, 2)
        pos = self.pos_proj(self.rel_indices).permute(0, 3, 1, 2).softmax(dim=-1)  # (1, h, N, N)
        gate = torch.sigmoid(self.gating_param).view(1, h, 1, 1)
        patch = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        x = (1.0 - gate) * patch + gate * (pos.to(v.dtype) @ v)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


class FusedMHSA(MHSA):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


def _twin(attn: nn.Module) -> nn.Module:
    """The fused layer for a timm GPSA / MHSA with the same settings, or None for any other module."""
    if type(attn) is GPSA:
        return FusedGPSA(attn.dim, attn.num_heads, qkv_bias=attn.qk.bias is not None, attn_drop=attn.attn_drop.p,
                         proj_drop=attn.proj_drop.p, locality_strength=attn.locality_strength)
    if type(attn) is MHSA:
        return FusedMHSA(attn.proj.in_features, attn.num_heads, qkv_bias=attn.qkv.bias is not None,
                         attn_drop=attn.attn_drop.p, proj_drop=attn.proj_drop.p)
    return None


def fuse_attention(module: nn.Module) -> nn.Module:
    """Swap every timm GPSA / MHSA inside `module` for its fused twin, parameters moved, not copied.

    The twin is built on the meta device, so building it draws nothing from the random generator:
    a seeded model starts from the same weights as with timm's layers.
    """
    for name, child in module.named_children():
        with torch.device("meta"):
            fused = _twin(child)
        if fused is None:
            fuse_attention(child)
            continue
        if child.attn_drop.p:
            raise ValueError(f"{name}: fused attention needs attention dropout 0, got {child.attn_drop.p}")
        fused.load_state_dict(child.state_dict(), assign=True)
        if isinstance(child, GPSA):
            fused.rel_indices = child.rel_indices  # a non-persistent buffer: not in the state_dict
        setattr(module, name, fused.train(child.training))
    return module
