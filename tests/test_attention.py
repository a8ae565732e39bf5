"""The fused GPSA / MHSA (suite.models.attention) against timm's layers they replace."""
import copy

import pytest
import torch
from timm.models.convit import GPSA, MHSA, Block

from suite.models.attention import FusedGPSA, FusedMHSA, fuse_attention


def _timm_block(gpsa: bool, seed: int = 0) -> Block:
    torch.manual_seed(seed)
    block = Block(48, 4, 2.0, qkv_bias=False, use_gpsa=gpsa, locality_strength=1.0)
    if gpsa:
        block.attn.local_init()
        with torch.no_grad():  # trained gates are not all equal
            block.attn.gating_param.normal_()
    return block


@pytest.mark.parametrize("gpsa", [True, False], ids=["gpsa", "mhsa"])
def test_fused_attention_trains_like_timm(gpsa, one_thread):
    timm = _timm_block(gpsa)
    fused = fuse_attention(copy.deepcopy(timm))
    assert type(fused.attn) is (FusedGPSA if gpsa else FusedMHSA)
    assert list(fused.state_dict()) == list(timm.state_dict())

    x = torch.randn(6, 16, 48, generator=torch.Generator().manual_seed(1))
    out_timm, out_fused = timm(x), fused(x)
    torch.testing.assert_close(out_fused, out_timm, rtol=1e-5, atol=1e-5)
    out_timm.square().sum().backward()
    out_fused.square().sum().backward()
    for (name, p), q in zip(timm.named_parameters(), fused.parameters()):
        # pos_proj.bias shifts every positional score of a head equally: softmax ignores it, its gradient
        # is 0 up to rounding in both
        scale = max(p.grad.abs().max().item(), 1.0)
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_fusing_moves_parameters_and_draws_no_random_numbers():
    timm = _timm_block(True, seed=3)
    after_timm = torch.rand(4)
    fused = fuse_attention(_timm_block(True, seed=3))
    assert torch.equal(torch.rand(4), after_timm)  # the fused twin was built on the meta device
    for (name, p), q in zip(timm.state_dict().items(), fused.state_dict().values()):
        assert q.device.type == "cpu" and torch.equal(p, q), name


def test_attention_dropout_is_refused():
    block = Block(48, 4, 2.0, attn_drop=0.1, use_gpsa=True)
    with pytest.raises(ValueError, match="attention dropout 0"):
        fuse_attention(block)


def test_encoder_uses_fused_attention():
    from suite.models import build_model

    model = build_model("daformer_m", image_size=8, channels=3, num_tasks=2, embed_dim=32, depth=2, num_heads=4,
                        patch_size=2)
    kinds = {type(m) for m in model.modules()}
    assert FusedGPSA in kinds and GPSA not in kinds and MHSA not in kinds
