"""A candidate for suite.models.daformer's dual block, measured by the benchmark before anyone
changes the model.

`gemmattn`: external attention without broadcasting matmuls. `torch.matmul` of (B,1,h,N,d) by
(1,K,1,d,P) materialises q K times and the keys B*h times (and their gradients likewise); the
same scores are one GEMM (B*h*N, d) x (d, K*P), and A_ext V one batched GEMM per (sample, head),
(K*N, P) x (P, d), with nothing expanded.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

from suite.models.daformer import DualAttentionBlock


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


@contextmanager
def gemm_attention_block(block: DualAttentionBlock):
    """Within the block, `block.attend` is the GEMM form (same parameters, same autograd)."""
    block.attend = lambda x: attend_gemm(block, x)
    try:
        yield block
    finally:
        del block.attend
