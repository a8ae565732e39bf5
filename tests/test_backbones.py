"""The classic baselines' CNN backbones: their published shapes and parameter counts."""
import pytest
import torch
from torch import nn

from suite.models.resnet import BACKBONE_BUILDERS, CifarResNet, ShortcutA

pytestmark = pytest.mark.usefixtures("one_thread")


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name, params, features", [
    ("cifar_resnet32", 463_504, 64),  # PyCIL's ResNet-32 without its head
    ("cifar_resnet18", 11_220_132 - 51_300, 512),  # DER's: 11.22M with a 100-class head (512 x 100 + 100)
    ("resnet18", 11_689_512 - 513_000, 512),  # torchvision's ResNet-18 without its 1000-class head
    ("preact_resnet18", 11_177_536, 512),  # DER's release's PreActResNet18(dataset="imagenet100"), counted there
])
def test_parameter_counts_and_feature_sizes_are_the_references(name, params, features):
    net = BACKBONE_BUILDERS[name]()
    assert count(net) == params
    assert net.out_dim == features
    size = 64 if name in ("resnet18", "preact_resnet18") else 32
    assert net.eval()(torch.randn(2, 3, size, size)).shape == (2, features)


def test_cifar_resnet18_keeps_full_resolution_until_its_second_stage():
    net = BACKBONE_BUILDERS["cifar_resnet18"]()
    assert isinstance(net.maxpool, nn.Identity) and net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert all(not block.bn2.weight.any() for layer in (net.layer1, net.layer4) for block in layer)  # zero-init residual


def test_ders_preact_resnet18_activates_before_each_convolution_and_normalises_after_the_sum():
    """DER's ImageNet-100 B0 backbone (its release's PreActBlock): a stem without BatchNorm; each block
    BN-ReLU-conv twice, the shortcut a 1x1 convolution of the activated input where the shape changes,
    then BN and ReLU after the sum; a stage's output at a quarter, eighth ... of 224."""
    from suite.models.resnet import PreActBlock

    net = BACKBONE_BUILDERS["preact_resnet18"]().eval()
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.stem)
    block = net.stages[1][0]
    assert isinstance(block, PreActBlock) and block.shortcut.kernel_size == (1, 1) and net.stages[0][0].shortcut is None
    x = torch.randn(2, 64, 56, 56)
    with torch.no_grad():
        activated = torch.relu(block.bn1(x))
        inner = block.conv2(torch.relu(block.bn2(block.conv1(activated))))
        expected = torch.relu(block.bn3(inner + block.shortcut(activated)))
        assert torch.allclose(block(x), expected)
        maps = net.feature_maps(torch.randn(1, 3, 224, 224))
    assert [m.shape[1:] for m in maps] == [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)]


def test_option_a_shortcut_subsamples_and_pads_with_zero_channels():
    x = torch.arange(2 * 4 * 4 * 4, dtype=torch.float32).view(2, 4, 4, 4)
    out = ShortcutA(extra_channels=4, stride=2)(x)
    assert out.shape == (2, 8, 2, 2)
    assert torch.equal(out[:, :4], x[:, :, ::2, ::2]) and not out[:, 4:].any()


def test_a_cifar_resnet_refuses_a_depth_that_is_not_6n_plus_2():
    with pytest.raises(ValueError, match="6n \\+ 2"):
        CifarResNet(depth=30)
