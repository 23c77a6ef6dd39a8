"""UNetPlusPlus: the nested nodes (count, inputs, anisotropic up-sampling), parity with MONAI's BasicUNetPlusPlus
(parameter count and outputs with copied weights), the full-resolution deep-supervision outputs and the plan rule.
(The shared contract, tests/models/test_registry.py, covers 2D/3D, odd sizes, backward and export.)"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from medseg.models.blocks import crop_spatial
from medseg.models.configs import ModelInputs
from medseg.models.unet_config import UNetConfig, plan_unet, plan_unetpp
from medseg.models.unetpp import NestedNode, UNetPlusPlus, nested_nodes

ANISOTROPIC = UNetConfig(
    3,
    2,
    3,
    features=(4, 8, 16, 16),
    kernel_sizes=((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
    strides=((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2)),
    name="unet++",
)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("levels", [2, 3, 4, 7])
def test_a_network_of_l_levels_has_l_times_l_minus_1_over_2_nested_nodes(levels: int) -> None:
    nodes = nested_nodes(levels)
    assert len(nodes) == len(set(nodes)) == levels * (levels - 1) // 2
    assert set(nodes) == {(i, j) for i in range(levels) for j in range(1, levels - i)}
    for k, (i, j) in enumerate(nodes):  # every node comes after the ones it reads
        assert (i + 1, j - 1) in nodes[:k] or j == 1
        assert all((i, c) in nodes[:k] for c in range(1, j))


def test_node_i_j_convolves_j_maps_of_its_level_and_the_up_sampled_coarser_node() -> None:
    net = UNetPlusPlus(ANISOTROPIC)
    assert len(net.nodes) == 6 and net.node_index == [(0, 1), (1, 1), (2, 1), (0, 2), (1, 2), (0, 3)]
    for node, (i, j) in zip(net.nodes, net.node_index, strict=True):
        first_conv = node.convs[0][0]
        assert first_conv.in_channels == (j + 1) * ANISOTROPIC.features[i]
        assert first_conv.out_channels == ANISOTROPIC.features[i]
        assert first_conv.kernel_size == ANISOTROPIC.kernel_sizes[i]
        assert node.up.in_channels == ANISOTROPIC.features[i + 1] and node.up.out_channels == ANISOTROPIC.features[i]
        assert node.up.stride == ANISOTROPIC.strides[i + 1]  # level 0's nodes up-sample by (1, 2, 2)
    node = NestedNode(ANISOTROPIC, level=0, column=2)
    row = [torch.randn(1, 4, 3, 8, 8), torch.randn(1, 4, 3, 8, 8)]
    assert node(torch.randn(1, 8, 3, 4, 4), row).shape == (1, 4, 3, 8, 8)


def test_training_outputs_are_full_resolution_heads_on_the_top_row_deepest_nested_first() -> None:
    strides = ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
    config = dataclasses.replace(
        ANISOTROPIC, features=(4, 8, 8, 16, 16), kernel_sizes=((3, 3, 3),) * 5, strides=strides
    )
    net = UNetPlusPlus(config, generator=seeded()).train()
    top: dict[int, torch.Tensor] = {}
    for node, (i, j) in zip(net.nodes, net.node_index, strict=True):
        if i == 0:
            node.register_forward_hook(lambda _m, _i, out, j=j: top.__setitem__(j, out))
    x = torch.randn(2, 2, 9, 21, 14, generator=seeded(1))
    outputs = net(x)
    assert isinstance(outputs, list) and len(outputs) == config.n_outputs == 3  # 5 levels, as the U-Net
    assert sorted(top) == [1, 2, 3, 4]
    for k, out in enumerate(outputs):  # X[0][4], X[0][3], X[0][2]; X[0][1] has no head
        assert out.shape == (2, 3, 9, 21, 14)
        torch.testing.assert_close(out, crop_spatial(net.heads[k](top[4 - k]), [9, 21, 14]))
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), outputs[0])  # instance norm: eval is the final node's logits


def _monai_pair(ndim: int) -> tuple[UNetPlusPlus, torch.nn.Module]:
    """Our UNet++ and MONAI's BasicUNetPlusPlus on the same topology: 5 levels of 4, 4, 8, 16, 32 features,
    3x3(x3) convs, instance norm, leaky ReLU 0.01, 2x max-pooling, 2x transposed convs, no conv biases."""
    basic_unetplusplus = pytest.importorskip("monai.networks.nets.basic_unetplusplus")
    strides = ((1,) * ndim,) + ((2,) * ndim,) * 4
    config = UNetConfig(ndim, 1, 2, (4, 4, 8, 16, 32), ((3,) * ndim,) * 5, strides, downsample="maxpool", name="unet++")
    act = ("LeakyReLU", {"negative_slope": 0.01, "inplace": True})
    monai = basic_unetplusplus.BasicUNetPlusPlus(
        ndim, 1, 2, features=(4, 4, 8, 16, 32, 4), deep_supervision=True, act=act, bias=False
    )
    return UNetPlusPlus(config, generator=seeded()), monai


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _deconvs(module: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.conv._ConvTransposeNd)]


@pytest.mark.parametrize("ndim", [2, 3])
def test_parameter_count_equals_monai_basic_unetplusplus_on_its_topology(ndim: int) -> None:
    ours, monai = _monai_pair(ndim)
    # MONAI's transposed convs keep a bias: 4 channels out at X[0][1..4] and X[1][1..3], 8 at X[2][1..2], 16 at X[3][1]
    deconv_biases = sum(m.bias.numel() for m in _deconvs(monai))
    assert deconv_biases == 4 * 4 + 3 * 4 + 2 * 8 + 16
    # ... and a fourth head, on X[0][1] (4 features -> 2 classes: 8 weights + 2 biases); the rest is equal
    assert _count(ours) == _count(monai) - deconv_biases - (4 * 2 + 2)


@pytest.mark.parametrize(("ndim", "size"), [(2, (32, 48)), (3, (16, 32, 16))])
def test_outputs_equal_monai_basic_unetplusplus_with_the_same_weights(ndim: int, size: tuple[int, ...]) -> None:
    ours, monai = _monai_pair(ndim)
    pairs: list[tuple[torch.nn.Module, torch.nn.Module]] = [
        (ours.encoder.levels[i], getattr(monai, f"conv_{i}_0")) for i in range(5)
    ]
    for node, (i, j) in zip(ours.nodes, ours.node_index, strict=True):
        upcat = getattr(monai, f"upcat_{i}_{j}")
        pairs += [(node.up, upcat.upsample.deconv), (node.convs, upcat.convs)]
    pairs += [(ours.heads[k], getattr(monai, f"final_conv_0_{4 - k}")) for k in range(3)]
    with torch.no_grad():
        for deconv in _deconvs(monai):
            deconv.bias.zero_()  # ours has none
        for mine, theirs in pairs:
            skip = {id(m.bias) for m in _deconvs(theirs)}
            theirs_params = [p for p in theirs.parameters() if id(p) not in skip]
            for a, b in zip(mine.parameters(), theirs_params, strict=True):  # both in creation order
                assert a.shape == b.shape
                b.copy_(a)
    x = torch.randn(2, 1, *size, generator=seeded(1))
    with torch.no_grad():
        want = monai.eval()(x)  # [X01, X02, X03, X04] logits
        torch.testing.assert_close(ours.eval()(x), want[3], rtol=1e-4, atol=1e-5)
        got = ours.train()(x)
        for k in range(3):
            torch.testing.assert_close(got[k], want[3 - k], rtol=1e-4, atol=1e-5)


def test_plan_rule_is_the_unet_topology_with_half_the_widths_on_a_cpu() -> None:
    inputs = ModelInputs(2, 1, 4, (256, 256), (1.0, 1.0))
    unet, cpu = plan_unet(inputs), plan_unetpp(inputs)
    assert cpu.name == "unet++" and cpu.features == (8, 16, 32, 64, 128, 128, 128)
    assert dataclasses.replace(cpu, features=unet.features, name="unet") == unet
    assert cpu.n_outputs == unet.n_outputs and cpu.divisor == unet.divisor
    gpu = ModelInputs(3, 1, 3, (40, 56, 40), (1.0, 1.0, 1.0), gpu=True)
    assert plan_unetpp(gpu) == dataclasses.replace(plan_unet(gpu), name="unet++")
