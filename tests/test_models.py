"""Models: shapes and growth per task, freezing, and the batched dual block against a per-key loop."""
import pytest
import torch

from suite.methods import METHODS
from suite.models import build_model
from suite.models.daformer import DAFormer, key_of_task

SMALL = dict(embed_dim=32, depth=1, num_heads=4, patch_size=2)


def small_model(method: str, num_tasks: int = 4, num_keys=None):
    return build_model(method, image_size=8, channels=3, num_tasks=num_tasks, num_keys=num_keys, **SMALL)


def naive_dual_block(block, x: torch.Tensor) -> torch.Tensor:
    """The published algorithm: the whole dual block once per key, attention written out."""
    B, N, C = x.shape
    h, d = block.num_heads, block.head_dim
    out = []
    for key, bias in zip(block.keys, block.key_biases):
        q, k, v = block.qkv(block.norm1(x)).reshape(B, N, 3, h, d).permute(2, 0, 3, 1, 4)
        q = q * d ** -0.5
        internal = (q @ k.transpose(-2, -1)).softmax(-1) @ v
        external = (q @ key.T + bias).softmax(-1) @ v
        o = block.proj((internal + external).transpose(1, 2).reshape(B, N, C))
        z = x + o
        z = z + block.mlp(block.norm2(z))
        out.append(z.mean(1))
    return torch.stack(out, dim=1)


def test_key_groups_are_contiguous_and_near_equal():
    assert key_of_task(10, 1) == [0] * 10
    assert key_of_task(10, 10) == list(range(10))
    assert key_of_task(10, 3) == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    with pytest.raises(ValueError):
        key_of_task(3, 4)


@pytest.mark.parametrize("out_proj", [True, False])
def test_batched_dual_block_equals_per_key_loop(out_proj):
    torch.manual_seed(0)
    model = DAFormer(8, 3, num_tasks=5, num_keys=5, out_proj=out_proj, **SMALL)
    for _ in range(5):
        model.add_task(2)
    with torch.no_grad():  # keys start at zero; give them values so that they differ
        for key, bias in zip(model.dual.keys, model.dual.key_biases):
            key.normal_()
            bias.normal_()
    model.eval()
    x = torch.randn(3, 16, 32)
    assert torch.allclose(model.dual(x), naive_dual_block(model.dual, x), atol=1e-5)


@pytest.mark.parametrize("method, num_keys, keys_after", [
    ("daformer_s", None, [1, 1, 1, 1]),
    ("daformer_m", None, [1, 2, 3, 4]),
    ("daformer", 2, [1, 1, 2, 2]),
])
def test_daformer_growth_per_task(method, num_keys, keys_after):
    model = small_model(method, num_tasks=4, num_keys=num_keys)
    x = torch.randn(5, 3, 8, 8)
    for t in range(4):
        model.add_task(3)
        assert len(model.dual.keys) == keys_after[t]
        model.train()
        out = model(x)
        assert out.logits.shape == (5, 3 * (t + 1))
        assert out.embeddings.shape == (5, keys_after[t], 32)
        assert (out.div_logits is None) == (t == 0)
        if t:
            assert out.div_logits.shape == (5, 4)
        model.eval()
        assert model(x).div_logits is None  # dropped at test time


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_grows_and_predicts(method):
    model = small_model(method, num_tasks=3)
    sizes = [2, 3, 4]
    for t, n in enumerate(sizes):
        model.add_task(n)
    assert model.task_sizes == sizes
    assert model(torch.randn(2, 3, 8, 8)).logits.shape == (2, 9)


@pytest.mark.parametrize("method", ["daformer_m", "daformer", "dytox", "replay"])
def test_frozen_parameters_do_not_move(method):
    torch.manual_seed(0)
    model = small_model(method, num_tasks=4, num_keys=2 if method == "daformer" else None)
    for _ in range(3):
        model.add_task(2)
    for phase in ("train", "finetune"):
        model.set_phase(phase)
        frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
        trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1)
        model.train()
        out = model(torch.randn(4, 3, 8, 8))
        loss = out.logits.sum() + (out.div_logits.sum() if out.div_logits is not None else 0)
        loss.backward()
        opt.step()
        params = dict(model.named_parameters())
        assert all(torch.equal(params[n], v) for n, v in frozen.items())
        assert any(not torch.equal(params[n], v) for n, v in trainable.items())
        if phase == "finetune":
            assert all(n.startswith(("encoder.", "div_head.")) for n in frozen)
        elif method != "replay":
            assert any(n.startswith("heads.0.") for n in frozen)  # old heads are frozen
        if method == "daformer_m" and phase == "train":
            assert {"dual.keys.0", "dual.keys.1"} <= set(frozen) and "dual.keys.2" in trainable
        if method == "daformer" and phase == "train":  # tasks 0,1 -> key 0; task 2 -> key 1
            assert "dual.keys.0" in frozen and "dual.keys.1" in trainable
