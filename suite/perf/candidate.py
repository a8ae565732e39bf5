"""Candidates for suite.models.daformer's dual block, measured by the benchmark before anyone
changes the model.

1. `meanfirst`: the MLP's last layer after the token mean.

e_k = mean_n z_k[n] with z_k = z'_k + DropPath(fc2(act(fc1(LN(z'_k))))). fc2 is affine and DropPath
scales whole samples, so mean_n commutes with both: e_k = mean_n z'_k + DropPath(fc2(mean_n
act(fc1(LN(z'_k))))). fc2 then runs on (B, K, 4C) instead of (B, K, N, 4C): N times less of about
half the per-key work, forward and backward. Exact in exact arithmetic whenever the MLP has no
norm between act and fc2 and no dropout after fc2 (timm's Mlp as the block builds it); otherwise
the block's own tail is used.

2. `gemmattn`: external attention without broadcasting matmuls. `torch.matmul` of (B,1,h,N,d) by
(1,K,1,d,P) materialises q K times and the keys B*h times (and their gradients likewise); the
same scores are one GEMM (B*h*N, d) x (d, K*P), and A_ext V one batched GEMM per (sample, head),
(K*N, P) x (P, d), with nothing expanded.

`both` = 1 + 2.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from suite.models.daformer import DualAttentionBlock


def commutes(block: DualAttentionBlock) -> bool:
    mlp = block.mlp
    return isinstance(mlp.norm, nn.Identity) and (mlp.drop2.p == 0 or not block.training)


def attend_gemm(block: DualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """`block.attend(x)` ((B, K, N, C), before the projection) with no broadcast copies."""
    B, N, C = x.shape
    h, d = block.num_heads, block.head_dim
    q, k, v = block.qkv(block.norm1(x)).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
    internal = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d)
    keys = torch.stack(tuple(block.keys))  # (K, P, d)
    biases = torch.stack(tuple(block.key_biases))  # (K, P)
    K, P = biases.shape
    scores = (q * d ** -0.5).reshape(B * h * N, d) @ keys.reshape(K * P, d).t()  # one GEMM
    attn = (scores.view(B, h, N, K, P) + biases).softmax(dim=-1)
    external = torch.matmul(attn.view(B, h, N * K, P), v).view(B, h, N, K, d)  # per (b, h): (N*K, P) x (P, d)
    out = external + internal.unsqueeze(3)  # (B, h, N, K, d)
    return out.permute(0, 3, 2, 1, 4).reshape(B, K, N, C)


def dual_forward(block: DualAttentionBlock, x: torch.Tensor, gemm: bool, mean_first: bool) -> torch.Tensor:
    """Per-key embeddings (B, K, C), as `block(x)`, with the chosen rewrites."""
    mlp = block.mlp
    attended = attend_gemm(block, x) if gemm else block.attend(x)
    z = x.unsqueeze(1) + block.drop_path(block.proj(attended))  # (B, K, N, C)
    if not (mean_first and commutes(block)):
        z = z + block.drop_path(mlp(block.norm2(z)))
        return z.mean(dim=2)
    hidden = mlp.drop1(mlp.act(mlp.fc1(block.norm2(z))))  # (B, K, N, 4C)
    return z.mean(dim=2) + block.drop_path(mlp.drop2(mlp.fc2(hidden.mean(dim=2))))


def mean_first_forward(block: DualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    return dual_forward(block, x, gemm=False, mean_first=True)


@contextmanager
def candidate_block(block: DualAttentionBlock, gemm: bool, mean_first: bool):
    block.forward = lambda x: dual_forward(block, x, gemm, mean_first)
    try:
        yield block
    finally:
        del block.forward


def mean_first_block(block):
    return candidate_block(block, gemm=False, mean_first=True)


def gemm_attention_block(block):
    return candidate_block(block, gemm=True, mean_first=False)


def both_block(block):
    return candidate_block(block, gemm=True, mean_first=True)
