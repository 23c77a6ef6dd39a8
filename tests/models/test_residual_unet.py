"""ResidualUNet: the residual block against hand-computed values and its formula, the encoder's levels, the config
and the plan rule. (The shared contract, tests/models/test_registry.py, covers 2D/3D, backward and export.)"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from medseg.errors import ConfigError
from medseg.models.blocks import ConvNormAct
from medseg.models.configs import ModelInputs
from medseg.models.residual_unet import ResidualBlock, ResidualUNet, residual_level
from medseg.models.residual_unet_config import ResidualUNetConfig, plan_residual_unet
from medseg.models.unet_config import plan_unet


def _zero_branch(block: ResidualBlock) -> None:
    """Zero both 3x3 convolutions: the residual branch then gives 0 and the block is ``act(skip(x))``."""
    with torch.no_grad():
        block.conv_norm_act[0].weight.zero_()
        block.conv.weight.zero_()


def test_identity_skip_when_channels_and_size_stay() -> None:
    block = ResidualBlock(1, 1, (3, 3), (1, 1), ndim=2)
    assert isinstance(block.skip, torch.nn.Identity)
    _zero_branch(block)
    x = torch.tensor([[[[-2.0, 1.0], [3.0, -4.0]]]])
    # the residual branch is 0, so the output is the input through the skip, then leaky ReLU (slope 0.01)
    expected = torch.tensor([[[[-0.02, 1.0], [3.0, -0.04]]]])
    torch.testing.assert_close(block(x), expected)


def test_projection_skip_is_a_strided_1x1_convolution_with_norm() -> None:
    block = ResidualBlock(2, 3, (3, 3), (2, 2), ndim=2, norm="batch", activation="relu").eval()
    projection, norm = block.skip
    assert projection.kernel_size == (1, 1) and projection.stride == (2, 2) and projection.bias is None
    assert isinstance(norm, torch.nn.BatchNorm2d)
    _zero_branch(block)
    with torch.no_grad():
        projection.weight.fill_(1.0)  # every output channel = channel 0 + channel 1, every other voxel
    norm.eps = 0.0  # eval mode, running mean 0 and variance 1: the norm is then exactly the identity
    x = torch.stack([torch.arange(16.0).reshape(4, 4), torch.full((4, 4), 100.0)])[None]
    expected = torch.tensor([[100.0, 102.0], [108.0, 110.0]]).expand(1, 3, 2, 2)
    torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize(("in_channels", "stride"), [(4, (1, 1)), (4, (2, 2)), (2, (1, 1))])
def test_skip_projects_exactly_when_channels_or_stride_change(in_channels: int, stride: tuple[int, int]) -> None:
    block = ResidualBlock(in_channels, 4, (3, 3), stride, ndim=2)
    projects = in_channels != 4 or stride != (1, 1)
    assert isinstance(block.skip, torch.nn.Sequential) == projects
    assert block(torch.randn(1, in_channels, 8, 6)).shape == (1, 4, 8 // stride[0], 6 // stride[1])


def test_parameter_count_by_hand() -> None:
    # conv 3x3 2->3 (54) + norm (6) + conv 3x3 3->3 (81) + norm (6) + projection 1x1 2->3 (6) + norm (6)
    block = ResidualBlock(2, 3, (3, 3), (2, 2), ndim=2)
    assert sum(p.numel() for p in block.parameters()) == 54 + 6 + 81 + 6 + 6 + 6


@pytest.mark.parametrize("ndim", [2, 3])
def test_block_matches_its_formula_written_with_functional_ops(ndim: int) -> None:
    """act(IN(conv(act(IN(conv(x))))) + IN(conv1x1(x))), leaky ReLU 0.01, with the block's random weights."""
    torch.manual_seed(0)
    stride = (2,) * ndim if ndim == 2 else (1, 2, 2)
    block = ResidualBlock(2, 3, (3,) * ndim, stride, ndim=ndim)
    for norm in (block.conv_norm_act[1], block.norm, block.skip[1]):  # non-trivial affine parameters
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    conv = F.conv2d if ndim == 2 else F.conv3d
    x = torch.randn(2, 2, *(6,) * ndim)

    def inorm(t: torch.Tensor, layer: torch.nn.Module) -> torch.Tensor:
        return F.instance_norm(t, weight=layer.weight, bias=layer.bias, eps=layer.eps)

    first_conv, first_norm = block.conv_norm_act[0], block.conv_norm_act[1]
    first = F.leaky_relu(inorm(conv(x, first_conv.weight, stride=stride, padding=1), first_norm), 0.01)
    branch = inorm(conv(first, block.conv.weight, padding=1), block.norm)
    skip = inorm(conv(x, block.skip[0].weight, stride=stride), block.skip[1])
    torch.testing.assert_close(block(x), F.leaky_relu(branch + skip, 0.01))


def _config(**overrides: object) -> ResidualUNetConfig:
    fields: dict[str, object] = {
        "ndim": 2,
        "in_channels": 1,
        "out_channels": 2,
        "features": (4, 8, 8),
        "kernel_sizes": ((3, 3),) * 3,
        "strides": ((1, 1), (2, 2), (2, 2)),
        "blocks_per_level": (1, 2, 3),
    }
    return ResidualUNetConfig(**{**fields, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize("downsample", ["conv", "maxpool"])
def test_encoder_levels_stem_then_blocks_the_first_one_downsampling(downsample: str) -> None:
    config = _config(downsample=downsample)
    stem, *level0 = residual_level(config, 0)
    assert isinstance(stem, ConvNormAct) and [type(b) for b in level0] == [ResidualBlock]
    assert isinstance(level0[0].skip, torch.nn.Identity)  # the stem already gives features[0] channels
    for level, n_blocks in ((1, 2), (2, 3)):
        layers = list(residual_level(config, level))
        if downsample == "maxpool":
            pool, *layers = layers
            assert isinstance(pool, torch.nn.MaxPool2d) and pool.stride == (2, 2)
        assert len(layers) == n_blocks and all(isinstance(b, ResidualBlock) for b in layers)
        first_stride = (1, 1) if downsample == "maxpool" else (2, 2)
        assert layers[0].conv_norm_act[0].stride == first_stride
        assert all(isinstance(b.skip, torch.nn.Identity) for b in layers[1:])
    net = ResidualUNet(config).eval()
    assert net(torch.randn(1, 1, 13, 10)).shape == (1, 2, 13, 10)


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ((1, 2), r"ResidualUNetConfig.blocks_per_level = \(1, 2\) must have one entry per level \(3"),
        ((1, 0, 2), r"ResidualUNetConfig.blocks_per_level\[1\] = 0 must be a positive integer"),
    ],
)
def test_invalid_blocks_per_level_is_a_config_error(blocks: tuple[int, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _config(blocks_per_level=blocks)


def test_shared_fields_are_checked_and_named_after_the_class() -> None:
    with pytest.raises(ConfigError, match=r"ResidualUNetConfig.norm = 'layer' is unknown"):
        _config(norm="layer")
    with pytest.raises(ConfigError, match=r"ResidualUNetConfig.name = 'unet' is not one of residual-unet"):
        _config(name="unet")
    config = _config(blocks_per_level=[1, 2, 3], features=[4, 8, 8])  # lists become tuples
    assert config.blocks_per_level == (1, 2, 3) and config.features == (4, 8, 8)
    assert ResidualUNetConfig.from_dict(config.to_dict()) == config
    assert (config.n_outputs, config.divisor) == (1, (4, 4))


@pytest.mark.parametrize(
    ("gpu", "expected"),
    [(False, (1, 2, 2, 2, 2, 2)), (True, (1, 3, 4, 6, 6, 6))],  # CPU: capped at 2; GPU: nnU-Net's ResEnc
)
def test_plan_rule_is_the_unet_topology_with_residual_blocks(gpu: bool, expected: tuple[int, ...]) -> None:
    inputs = ModelInputs(3, 1, 3, (64, 128, 128), (1.0, 1.0, 1.0), gpu=gpu)
    config = plan_residual_unet(inputs)
    assert config.blocks_per_level == expected
    unet = dataclasses.asdict(plan_unet(inputs))
    assert {k: v for k, v in dataclasses.asdict(config).items() if k in unet and k != "name"} == {
        k: v for k, v in unet.items() if k != "name"
    }
