"""MobileUNet: the inverted residual block (structure, residual exactly where shapes match, a hand count), the
depthwise-separable decoder, the encoder's levels, parameters against the U-Net's at equal widths, the config
and the plan rule. (The shared contract, tests/models/test_registry.py, covers 2D/3D, backward and export.)"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from medseg.errors import ConfigError
from medseg.models.blocks import ConvNormAct
from medseg.models.configs import ModelInputs
from medseg.models.mobile_unet import InvertedResidual, MobileUNet, SeparableConv, mobile_level
from medseg.models.mobile_unet_config import MobileUNetConfig, plan_mobile_unet
from medseg.models.unet import UNet
from medseg.models.unet_config import UNetConfig, plan_unet

KERNELS_3D = ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
STRIDES_3D = ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2))


def config_3d(**overrides: object) -> MobileUNetConfig:
    fields: dict[str, object] = {"ndim": 3, "in_channels": 2, "out_channels": 3, "features": (4, 8, 16, 16)}
    fields |= {"kernel_sizes": KERNELS_3D, "strides": STRIDES_3D, "blocks_per_level": (1, 2, 1, 1), "expansion": 4}
    return MobileUNetConfig(**{**fields, **overrides})  # type: ignore[arg-type]


def convs(module: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]


def test_inverted_residual_expands_filters_depthwise_and_projects_linearly() -> None:
    block = InvertedResidual(config_3d(), 8, 16, kernel=(1, 3, 3), stride=(1, 2, 2))
    expand, depthwise, project = block.expand[0], block.depthwise[0], block.project[0]
    assert (expand.in_channels, expand.out_channels, expand.kernel_size) == (8, 32, (1, 1, 1))
    assert (depthwise.in_channels, depthwise.out_channels, depthwise.groups) == (32, 32, 32)
    assert depthwise.kernel_size == (1, 3, 3) and depthwise.stride == (1, 2, 2)  # anisotropic, in the depthwise conv
    assert (project.in_channels, project.out_channels, project.kernel_size) == (32, 16, (1, 1, 1))
    assert len(block.project) == 2  # conv and norm: no activation after the projection (linear bottleneck)
    assert not block.residual
    assert block(torch.randn(1, 8, 3, 8, 8)).shape == (1, 16, 3, 4, 4)


@pytest.mark.parametrize(
    ("in_channels", "out_channels", "stride", "residual"),
    [(8, 8, (1, 1, 1), True), (8, 16, (1, 1, 1), False), (8, 8, (1, 2, 2), False), (8, 8, (2, 1, 1), False)],
)
def test_residual_exactly_when_channels_and_size_stay(
    in_channels: int, out_channels: int, stride: tuple[int, ...], residual: bool
) -> None:
    block = InvertedResidual(config_3d(), in_channels, out_channels, (3, 3, 3), stride)
    assert block.residual == residual
    with torch.no_grad():
        block.project[0].weight.zero_()  # the branch gives norm(0) = 0: the output is x, or 0 without residual
    x = torch.randn(1, in_channels, 4, 6, 6)
    out = block(x)
    if residual:
        torch.testing.assert_close(out, x)
    else:
        assert torch.count_nonzero(out) == 0


def test_expansion_one_drops_the_expanding_convolution_and_parameters_count_by_hand() -> None:
    config = MobileUNetConfig(2, 1, 2, (4, 8), ((3, 3),) * 2, ((1, 1), (2, 2)), blocks_per_level=(1, 1), expansion=2)
    # expand 1x1 4->8 (32) + norm (16); depthwise 3x3 on 8 (72) + norm (16); project 1x1 8->4 (32) + norm (8)
    assert sum(p.numel() for p in InvertedResidual(config, 4, 4, (3, 3), (1, 1)).parameters()) == 176
    plain = InvertedResidual(dataclasses.replace(config, expansion=1), 4, 4, (3, 3), (1, 1))
    assert len(plain.expand) == 0 and plain.depthwise[0].groups == 4
    # depthwise 3x3 on 4 (36) + norm (8); project 1x1 4->4 (16) + norm (8)
    assert sum(p.numel() for p in plain.parameters()) == 68


def test_separable_conv_is_depthwise_then_pointwise() -> None:
    conv = SeparableConv(config_3d(), 8, 4, (1, 3, 3))
    depthwise, pointwise = convs(conv)
    assert depthwise.groups == 8 == depthwise.in_channels == depthwise.out_channels
    assert depthwise.kernel_size == (1, 3, 3)
    assert (pointwise.in_channels, pointwise.out_channels, pointwise.kernel_size, pointwise.groups) == (
        8,
        4,
        (1, 1, 1),
        1,
    )
    assert conv(torch.randn(1, 8, 3, 5, 5)).shape == (1, 4, 3, 5, 5)


def test_only_the_stem_up_sampling_and_heads_are_dense_convolutions() -> None:
    net = MobileUNet(config_3d())
    dense = [m for m in convs(net) if m.groups == 1 and any(k != 1 for k in m.kernel_size)]
    stem = net.encoder.levels[0][0][0]
    ups = [stage.up for stage in net.decoder.stages]
    assert {id(m) for m in dense} == {id(stem), *(id(up) for up in ups)}  # transposed convs: kernel = stride
    assert all(m.kernel_size == (1, 1, 1) for m in convs(net.heads))


def test_encoder_levels_stem_blocks_and_where_they_add_the_input() -> None:
    config = config_3d()
    levels = [mobile_level(config, level) for level in range(4)]
    assert isinstance(levels[0][0], ConvNormAct)  # the stem: in_channels -> features[0] at full resolution
    assert [[b.residual for b in level if isinstance(b, InvertedResidual)] for level in levels] == [
        [True],  # 4 -> 4, stride 1
        [False, True],  # 4 -> 8 with stride (1, 2, 2), then 8 -> 8
        [False],  # 8 -> 16
        [False],  # 16 -> 16 but strided
    ]
    pooled = mobile_level(dataclasses.replace(config, downsample="maxpool"), 3)
    assert isinstance(pooled[0], torch.nn.MaxPool3d) and pooled[1].residual  # the pool takes the stride
    stem_only = mobile_level(dataclasses.replace(config, blocks_per_level=(0, 2, 1, 1)), 0)
    assert len(stem_only) == 1 and isinstance(stem_only[0], ConvNormAct)


# In 2D a block (1x1 to 4x, 3x3 depthwise, 1x1 back: 8 f^2 + 36 f) is close to a 3x3 conv (9 f^2), so the
# encoder keeps 85 % of the U-Net's; the separable decoder has a third. In 3D (27 f^2 per conv) both shrink.
@pytest.mark.parametrize(("ndim", "most"), [(2, 0.7), (3, 0.3)])
def test_parameters_are_well_below_the_unets_at_equal_widths(ndim: int, most: float) -> None:
    unet_config = UNetConfig(
        ndim, 1, 4, (16, 32, 64, 128, 256), ((3,) * ndim,) * 5, ((1,) * ndim,) + ((2,) * ndim,) * 4
    )
    fields = dataclasses.asdict(unet_config) | {"name": "mobilenet-unet"}
    mobile_config = MobileUNetConfig(**fields, blocks_per_level=(1, 2, 2, 2, 2), expansion=4)
    unet = sum(p.numel() for p in UNet(unet_config).parameters())
    mobile = sum(p.numel() for p in MobileUNet(mobile_config).parameters())
    assert mobile < most * unet


def test_training_outputs_are_the_unets_decoder_levels() -> None:
    kernels, strides = (*KERNELS_3D, (3, 3, 3)), (*STRIDES_3D, (1, 2, 2))
    config = config_3d(features=(4, 8, 8, 16, 16), kernel_sizes=kernels, strides=strides, blocks_per_level=(1,) * 5)
    net = MobileUNet(config)
    outputs = net.train()(torch.randn(1, 2, 9, 21, 14))
    assert [tuple(o.shape) for o in outputs] == [(1, 3, 9, 21, 14), (1, 3, 9, 11, 7), (1, 3, 5, 6, 4)]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"expansion": 0}, r"^MobileUNetConfig.expansion = 0 must be a positive integer"),
        ({"expansion": 2.5}, r"MobileUNetConfig.expansion = 2.5"),
        ({"blocks_per_level": (1, 0, 1, 1)}, r"^MobileUNetConfig.blocks_per_level\[1\] = 0 must be an integer >= 1$"),
        ({"blocks_per_level": (-1, 1, 1, 1)}, r"blocks_per_level\[0\] = -1 must be an integer >= 0"),
        ({"blocks_per_level": (1, 1)}, r"blocks_per_level = \(1, 1\) must have one entry per level \(4"),
        ({"dropout": 1.5}, r"^MobileUNetConfig.dropout = 1.5 must be a probability"),
        ({"norm": "group"}, r"MobileUNetConfig.norm"),
    ],
)
def test_invalid_config_is_a_config_error_naming_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_3d(**overrides)


def test_config_round_trips_and_accepts_lists() -> None:
    config = config_3d(blocks_per_level=[0, 2, 1, 1], dropout=0.2)
    assert config.blocks_per_level == (0, 2, 1, 1) and config.dropout == 0.2
    assert MobileUNetConfig.from_dict(config.to_dict()) == config


def test_plan_rule_on_a_cpu_halves_widths_and_leaves_full_resolution_to_the_stem() -> None:
    inputs = ModelInputs(3, 1, 3, (16, 32, 32), (3.0, 1.0, 1.0))
    unet, cpu = plan_unet(inputs), plan_mobile_unet(inputs)
    assert cpu.features == tuple(f // 2 for f in unet.features)
    assert (cpu.kernel_sizes, cpu.strides, cpu.n_outputs) == (unet.kernel_sizes, unet.strides, unet.n_outputs)
    assert cpu.blocks_per_level == (0, 2, 2, 2)[: len(unet.features)] and cpu.expansion == 4
    gpu = plan_mobile_unet(ModelInputs(2, 1, 3, (256, 256), (1.0, 1.0), gpu=True))
    assert gpu.features == plan_unet(ModelInputs(2, 1, 3, (256, 256), (1.0, 1.0), gpu=True)).features
    assert gpu.blocks_per_level == (1, 2, 3, 4, 4, 4, 4) and gpu.expansion == 6
