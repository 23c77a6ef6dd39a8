"""AttentionUNet: the attention gate against MONAI's AttentionBlock (copied weights), against the paper's formula
written with functional ops and a hand-computed value; the network reduces to the U-Net when every gate is open.
(The shared contract, tests/models/test_registry.py, covers 2D/3D, backward and export.)"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medseg.models.attention_unet import AttentionDecoderStage, AttentionGate, AttentionUNet
from medseg.models.configs import ModelInputs
from medseg.models.unet import UNet
from medseg.models.unet_config import UNetConfig, plan_attention_unet, plan_unet


def _randomise_biases(gate: AttentionGate) -> None:
    for conv in (gate.w_g, gate.psi):
        torch.nn.init.normal_(conv.bias)


@pytest.mark.parametrize("ndim", [2, 3])
def test_gate_with_unit_stride_equals_monai_attention_block(ndim: int) -> None:
    attentionunet = pytest.importorskip("monai.networks.nets.attentionunet")
    torch.manual_seed(0)
    gate = AttentionGate(skip_channels=4, gate_channels=6, inter_channels=2, stride=(1,) * ndim, ndim=ndim)
    _randomise_biases(gate)
    monai = attentionunet.AttentionBlock(ndim, f_int=2, f_g=6, f_l=4).eval()
    with torch.no_grad():
        monai.W_g[0].conv.weight.copy_(gate.w_g.weight)
        monai.W_g[0].conv.bias.copy_(gate.w_g.bias)
        monai.W_x[0].conv.weight.copy_(gate.w_x.weight)
        monai.W_x[0].conv.bias.zero_()  # the paper's W_x has no bias (b_g covers it)
        monai.psi[0].conv.weight.copy_(gate.psi.weight)
        monai.psi[0].conv.bias.copy_(gate.psi.bias)
    for norm in (monai.W_g[1], monai.W_x[1], monai.psi[1]):
        norm.eps = 0.0  # eval mode, running mean 0, variance 1: MONAI's batch norms become the identity
    x, g = torch.randn(2, 4, *(5,) * ndim), torch.randn(2, 6, *(5,) * ndim)
    with torch.no_grad():
        torch.testing.assert_close(gate(x, g), monai(g=g, x=x))


@pytest.mark.parametrize(("ndim", "stride"), [(2, (2, 2)), (3, (1, 2, 2)), (3, (2, 2, 2))])
def test_strided_gate_matches_the_paper_formula_written_with_functional_ops(ndim: int, stride: tuple[int, ...]) -> None:
    """alpha = sigmoid(psi(relu(W_x x + W_g g + b_g)) + b_psi) on g's grid, resampled linearly to x's grid."""
    torch.manual_seed(1)
    gate = AttentionGate(4, 6, 2, stride, ndim)
    _randomise_biases(gate)
    conv = F.conv2d if ndim == 2 else F.conv3d
    coarse = (3, 4) if ndim == 2 else (3, 4, 5)
    x = torch.randn(2, 4, *(c * s for c, s in zip(coarse, stride, strict=True)))
    g = torch.randn(2, 6, *coarse)
    q = F.relu(conv(x, gate.w_x.weight, stride=stride) + conv(g, gate.w_g.weight, gate.w_g.bias))
    alpha = torch.sigmoid(conv(q, gate.psi.weight, gate.psi.bias))
    mode = "bilinear" if ndim == 2 else "trilinear"
    alpha = F.interpolate(alpha, size=x.shape[2:], mode=mode, align_corners=False)
    with torch.no_grad():
        torch.testing.assert_close(gate(x, g), x * alpha)
        assert gate.coefficients(x, g).shape == (2, 1, *x.shape[2:])


def test_gate_with_zero_weights_scales_by_sigmoid_of_the_psi_bias() -> None:
    gate = AttentionGate(2, 3, 1, (2, 2), ndim=2)
    with torch.no_grad():
        for conv in (gate.w_x, gate.w_g, gate.psi):
            conv.weight.zero_()
        gate.w_g.bias.zero_()
        gate.psi.bias.fill_(math.log(3.0))  # sigmoid(log 3) = 3 / 4
    x = torch.tensor([[[[4.0, -8.0], [1.0, 0.0]], [[2.0, 2.0], [-4.0, 12.0]]]])
    expected = torch.tensor([[[[3.0, -6.0], [0.75, 0.0]], [[1.5, 1.5], [-3.0, 9.0]]]])
    with torch.no_grad():
        torch.testing.assert_close(gate(x, torch.randn(1, 3, 1, 1)), expected)


def test_gating_signal_is_the_coarser_decoder_map() -> None:
    config = UNetConfig(3, 1, 2, (4, 8, 12), ((1, 3, 3), (3, 3, 3), (3, 3, 3)), ((1, 1, 1), (1, 2, 2), (2, 2, 2)))
    stage = AttentionDecoderStage(config, level=0)
    # W_x brings the skip (features[0] = 4) down by strides[1]; W_g takes the coarser map's features[1] = 8
    assert stage.gate.w_x.in_channels == 4 and stage.gate.w_x.stride == (1, 2, 2)
    assert stage.gate.w_g.in_channels == 8 and stage.gate.w_x.out_channels == 2  # half the skip's channels
    out = stage(torch.randn(1, 8, 3, 2, 2), torch.randn(1, 4, 3, 4, 4))
    assert out.shape == (1, 4, 3, 4, 4)


@pytest.mark.parametrize("ndim", [2, 3])
def test_with_every_gate_open_it_is_the_unet_with_the_same_weights(ndim: int) -> None:
    strides = ((1,) * ndim,) + ((2,) * ndim,) * 2
    config = UNetConfig(ndim, 2, 3, (4, 8, 16), ((3,) * ndim,) * 3, strides, name="attention-unet")
    net = AttentionUNet(config, generator=torch.Generator().manual_seed(0)).eval()
    with torch.no_grad():
        for stage in net.decoder.stages:
            stage.gate.psi.weight.zero_()
            stage.gate.psi.bias.fill_(100.0)  # sigmoid(100) == 1 in float32: alpha = 1 everywhere
    unet = UNet(UNetConfig(ndim, 2, 3, (4, 8, 16), ((3,) * ndim,) * 3, strides)).eval()
    state = {k: v for k, v in net.state_dict().items() if ".gate." not in k}
    unet.load_state_dict(state)  # strict: every other weight has the U-Net's name
    x = torch.randn(1, 2, *(13, 10, 7)[:ndim])
    with torch.no_grad():
        torch.testing.assert_close(net(x), unet(x))


def test_plan_rule_is_the_unet_topology_named_attention_unet() -> None:
    inputs = ModelInputs(3, 1, 3, (40, 56, 40), (1.0, 1.0, 1.0))
    config = plan_attention_unet(inputs)
    assert config.name == "attention-unet"
    assert config == UNetConfig(**{**plan_unet(inputs).__dict__, "name": "attention-unet"})
