"""DAFormer: the shared ConViT encoder + one dual-attention block driven by learned external keys.

DAFormer-S has one key shared by all tasks; DAFormer-M one key per task; `daformer` any K in
between, tasks split into K contiguous groups (group g owns key g).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

from suite.models.base import IncrementalModel, encoder_args, register_builder
from suite.models.encoder import init_weights


def key_of_task(num_tasks: int, num_keys: int) -> list[int]:
    """Key index of every task: K contiguous groups of near-equal size (earlier groups larger)."""
    if not 1 <= num_keys <= num_tasks:
        raise ValueError(f"num_keys must be in 1..{num_tasks}, got {num_keys}")
    groups = np.array_split(np.arange(num_tasks), num_keys)
    return [g for g, tasks in enumerate(groups) for _ in tasks]


class DualAttentionBlock(nn.Module):
    """Internal attention (keys from the sample) + external attention (learned keys), all keys at once.

    For tokens x (B, N, C) and active keys M (K, P, d) with biases b (K, P), P = N:
        A_int V is computed once; A_ext,k V for every k in one batched matmul; then per key the
        output projection, residual and MLP run as one (B*K)-batch. Returns embeddings (B, K, C).

    The MLP's second layer runs after the mean over tokens: the embedding is
    mean_n(z + DropPath(fc2(h))) = mean_n z + DropPath(fc2(mean_n h)), because fc2 is affine and
    DropPath scales whole samples. Exact (to rounding) for timm's Mlp as built here (no norm
    between act and fc2, no dropout), and fc2 then costs N times less. Both rewrites are checked
    against the published per-key block (bench/perf/naive.py) in tests/test_models.py and
    tests/test_perf.py; their speed-ups are measured in bench/experiments/README.md#after-dual-rewrites.
    """

    def __init__(self, dim: int, num_heads: int, num_tokens: int, mlp_ratio: float, drop_path: float, out_proj: bool):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.num_tokens = num_tokens
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim) if out_proj else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.keys = nn.ParameterList()  # M_k: (P, d), zero at birth: uniform external attention
        self.key_biases = nn.ParameterList()  # b_k: (P,)

    def add_key(self) -> None:
        """The first key starts as the DAFormer release's key convolution does (torch's default init
        of nn.Conv2d(head_dim, tokens, 1), DualVit.py); every later one at zero (dual.py add_model)."""
        if len(self.keys) == 0:
            conv = nn.Conv2d(self.head_dim, self.num_tokens, 1)
            key, bias = conv.weight.detach().flatten(1), conv.bias.detach()
        else:
            key, bias = torch.zeros(self.num_tokens, self.head_dim), torch.zeros(self.num_tokens)
        self.keys.append(nn.Parameter(key.clone()))
        self.key_biases.append(nn.Parameter(bias.clone()))

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """Per-key attention output before the projection: (B, K, N, C).

        The external scores are one GEMM (B*h*N, d) x (d, K*P) and A_ext V one batched GEMM per
        (sample, head), (N*K, P) x (P, d): a broadcasting matmul over a key axis would copy q K
        times and the keys B*h times (measured in bench/experiments/README.md#gemm-candidate).
        """
        B, N, C = x.shape
        h, d = self.num_heads, self.head_dim
        q, k, v = self.qkv(self.norm1(x)).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
        internal = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, d), independent of the key
        keys = torch.stack(tuple(self.keys))  # (K, P, d)
        biases = torch.stack(tuple(self.key_biases))  # (K, P)
        K, P = biases.shape
        scores = (q * d ** -0.5).reshape(B * h * N, d) @ keys.reshape(K * P, d).t()
        attn = (scores.view(B, h, N, K, P) + biases).softmax(dim=-1)
        external = torch.matmul(attn.view(B, h, N * K, P), v).view(B, h, N, K, d)
        out = external + internal.unsqueeze(3)  # (B, h, N, K, d)
        return out.permute(0, 3, 2, 1, 4).reshape(B, K, N, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.unsqueeze(1) + self._drop_path(self.proj(self.attend(x)))  # (B, K, N, C)
        mlp = self.mlp
        hidden = mlp.act(mlp.fc1(self.norm2(z)))  # (B, K, N, hidden)
        return z.mean(dim=2) + self._drop_path(mlp.fc2(hidden.mean(dim=2)))

    def _drop_path(self, t: torch.Tensor) -> torch.Tensor:
        """DropPath with one mask per sample and key, as the release's one call per key draws them."""
        return self.drop_path(t.flatten(0, 1)).view_as(t)


class DAFormer(IncrementalModel):
    def __init__(self, image_size: int, channels: int, num_tasks: int, num_keys: int, out_proj: bool = False,
                 num_heads: int = 4, mlp_ratio: float = 4.0, **encoder):
        super().__init__(image_size, channels, num_heads=num_heads, mlp_ratio=mlp_ratio, **encoder)
        self.key_of_task = key_of_task(num_tasks, num_keys)
        self.dual = DualAttentionBlock(
            self.embed_dim, num_heads, self.encoder.num_tokens, mlp_ratio, self.encoder.task_block_drop_path, out_proj,
        )
        init_weights(self.dual)

    def slot_of_task(self, task: int) -> int:
        return self.key_of_task[task]

    def _grow(self, task: int) -> None:
        if self.key_of_task[task] == len(self.dual.keys):
            self.dual.add_key()

    def _old_task_parameters(self):
        current = self.key_of_task[self.num_tasks - 1]
        for key in range(current):
            yield self.dual.keys[key]
            yield self.dual.key_biases[key]

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.dual(tokens)


def build(method, image_size, channels, num_tasks, num_keys=None, out_proj=False, **options):
    return DAFormer(image_size, channels, num_tasks, method.num_keys(num_keys, num_tasks), out_proj,
                    **encoder_args(options))


for _name in ("daformer_s", "daformer_m", "daformer"):
    register_builder(_name, build)
