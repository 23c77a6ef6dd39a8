"""UNet and UNetConfig: reference parity with MONAI's DynUNet, hand-counted parameters, presets, config."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from medseg.errors import ConfigError
from medseg.models.blocks import crop_spatial, pad_to_multiple
from medseg.models.unet import UNet
from medseg.models.unet_config import UNetConfig, classic_config, nnunet_config

TINY_3D = {
    "ndim": 3,
    "in_channels": 2,
    "out_channels": 3,
    "features": (4, 8, 16, 16),
    "kernel_sizes": ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
    "strides": ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2)),
}


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- the network ------------------------------------------------------------------------------------


def _dynunet_parameters_in_forward_order(net: torch.nn.Module) -> list[torch.nn.Parameter]:
    params: list[torch.nn.Parameter] = []

    def basic_block(block: torch.nn.Module) -> None:
        for part in (block.conv1, block.norm1, block.conv2, block.norm2):
            params.extend(part.parameters())

    for block in (net.input_block, *net.downsamples, net.bottleneck):
        basic_block(block)
    for up in net.upsamples:
        params.extend(up.transp_conv.parameters())
        basic_block(up.conv_block)
    params.extend(net.output_block.parameters())
    assert len(params) == len(list(net.parameters()))  # the walk above covers the whole net
    return params


@pytest.mark.parametrize(("norm", "activation"), [("instance", "leaky_relu"), ("batch", "relu")])
@pytest.mark.parametrize(
    ("strides", "size"),
    [
        (((1, 1), (2, 2), (2, 2)), (16, 24)),
        (((1, 1, 1), (1, 2, 2), (2, 2, 2)), (6, 12, 8)),  # anisotropic strides
    ],
)
def test_matches_monai_dynunet_with_the_same_weights(
    norm: str, activation: str, strides: tuple[tuple[int, ...], ...], size: tuple[int, ...]
) -> None:
    dynunet = pytest.importorskip("monai.networks.nets").DynUNet
    ndim = len(size)
    kernels = ((3,) * ndim,) * 3  # DynUNet's decoder takes the kernel of the level below; equal here
    config = UNetConfig(
        ndim, 2, 3, (4, 8, 16), kernels, strides, norm=norm, activation=activation, deep_supervision=False
    )
    ours = UNet(config, generator=seeded()).eval()
    monai_act = ("leakyrelu", {"negative_slope": 0.01}) if activation == "leaky_relu" else "relu"
    monai_norm = ("instance", {"affine": True}) if norm == "instance" else "batch"
    reference = dynunet(ndim, 2, 3, kernels, strides, strides[1:], [4, 8, 16], None, monai_norm, monai_act)
    reference.eval()
    with torch.no_grad():
        for mine, theirs in zip(ours.parameters(), _dynunet_parameters_in_forward_order(reference), strict=True):
            assert mine.shape == theirs.shape
            theirs.copy_(mine)
        x = torch.randn(2, 2, *size, generator=seeded(1))
        torch.testing.assert_close(ours(x), reference(x))


def _classic_2d_parameter_count(upsample_weights_per_pair: int) -> int:
    """Ronneberger's U-Net, in=1, out=2: bias-free 3x3 convs with batch norm, bias-free up-sampling convs."""
    widths = [64, 128, 256, 512, 1024]

    def double_conv(cin: int, cout: int) -> int:
        return 9 * cin * cout + 2 * cout + 9 * cout * cout + 2 * cout  # two convs, two (weight, bias) norms

    encoder = double_conv(1, 64) + sum(double_conv(a, b) for a, b in itertools.pairwise(widths))
    decoder = sum(upsample_weights_per_pair * a * b + double_conv(2 * a, a) for a, b in itertools.pairwise(widths))
    return encoder + decoder + 64 * 2 + 2  # 1x1 head with bias


@pytest.mark.parametrize(
    ("upsample", "weights_per_pair", "expected"),
    [("transpose", 4, 31_035_586), ("interpolate", 1, 28_946_626)],  # 2x2 transposed conv / 1x1 conv
)
def test_classic_2d_unet_has_the_original_parameter_count(upsample: str, weights_per_pair: int, expected: int) -> None:
    net = UNet(classic_config(2, 1, 2, upsample=upsample), generator=seeded())
    count = sum(p.numel() for p in net.parameters())
    assert count == _classic_2d_parameter_count(weights_per_pair) == expected


@pytest.mark.parametrize(("activation", "slope"), [("leaky_relu", 0.01), ("relu", 0.0)])
def test_convolutions_are_he_normal_initialised(activation: str, slope: float) -> None:
    config = UNetConfig(2, 1, 2, (64, 64), ((3, 3), (3, 3)), ((1, 1), (2, 2)), activation=activation)
    net = UNet(config, generator=seeded())
    weight = net.encoder.levels[1][1][0].weight  # 64 -> 64, 3x3: fan_in 576, 36,864 samples
    expected_std = math.sqrt(2.0 / (1 + slope**2)) / math.sqrt(64 * 9)
    assert weight.mean().abs() < 0.05 * expected_std
    assert weight.std().item() == pytest.approx(expected_std, rel=0.03)
    assert all(torch.count_nonzero(head.bias) == 0 for head in net.heads)


@pytest.mark.parametrize(
    ("features", "expected"),
    [
        ((4, 4), [(37, 45)]),  # 2 levels: only the full-resolution output
        ((4, 4, 4, 4, 4), [(37, 45), (19, 23), (10, 12)]),  # 5 levels: all but the lowest 2 resolutions
    ],
)
def test_deep_supervision_drops_the_lowest_two_resolutions(
    features: tuple[int, ...], expected: list[tuple[int, int]]
) -> None:
    levels = len(features)
    strides = ((1, 1),) + ((2, 2),) * (levels - 1)
    net = UNet(UNetConfig(2, 1, 2, features, ((3, 3),) * levels, strides), generator=seeded()).train()
    outputs = net(torch.randn(1, 1, 37, 45, generator=seeded(1)))
    assert [tuple(out.shape[2:]) for out in outputs] == expected


def test_eval_forward_leaves_the_module_unchanged() -> None:
    net = UNet(UNetConfig(**TINY_3D), generator=seeded()).eval()
    before = {name: value.clone() for name, value in net.state_dict().items()}
    with torch.no_grad():
        net(torch.randn(1, 2, 19, 23, 17, generator=seeded(1)))
    assert all(torch.equal(before[name], value) for name, value in net.state_dict().items())


def test_dropout_acts_on_the_bottleneck_and_keeps_the_state_dict() -> None:
    """Channel dropout sees the encoder's last level only; it has no weights, so a checkpoint of a network
    without dropout (every release before it) loads strictly into one with it, and p = 0 adds no layer."""
    plain = UNet(UNetConfig(**TINY_3D), generator=seeded())
    assert isinstance(plain.dropout, torch.nn.Identity)
    net = UNet(UNetConfig(**TINY_3D, dropout=0.25), generator=seeded(5))
    assert isinstance(net.dropout, torch.nn.Dropout3d) and net.dropout.p == 0.25
    net.load_state_dict(plain.state_dict())
    assert net.state_dict().keys() == plain.state_dict().keys()
    seen: list[tuple[int, ...]] = []
    net.dropout.register_forward_hook(lambda _module, inputs, _out: seen.append(tuple(inputs[0].shape)))
    with torch.no_grad():
        net.eval()(torch.randn(1, 2, 19, 23, 17, generator=seeded(1)))
    assert seen == [(1, 16, 5, 3, 3)]  # padded to (20, 24, 24), divided by the divisor (4, 8, 8)


def test_pad_to_multiple_zero_pads_the_end_and_crop_undoes_it() -> None:
    x = torch.arange(30.0).reshape(1, 1, 5, 6)
    padded = pad_to_multiple(x, [4, 3])
    assert padded.shape == (1, 1, 8, 6)
    assert torch.equal(padded[..., :5, :], x)
    assert torch.count_nonzero(padded[..., 5:, :]) == 0
    assert torch.equal(crop_spatial(padded, [5, 6]), x)


# --- the configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        UNetConfig(**TINY_3D),
        classic_config(2, 1, 2, upsample="transpose", deep_supervision=True),
        nnunet_config(3, 4, 3, (16, 160, 160), (5.0, 0.8, 0.8)),
    ],
)
def test_config_survives_a_json_round_trip(config: UNetConfig) -> None:
    assert UNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_from_dict_rejects_unknown_and_missing_keys() -> None:
    fields = UNetConfig(**TINY_3D).to_dict()
    with pytest.raises(ConfigError, match=r"unknown model config key\(s\) \['drop_rate'\]"):
        UNetConfig.from_dict({**fields, "drop_rate": 0.1})
    del fields["strides"]
    with pytest.raises(ConfigError, match=r"lacks key\(s\) \['strides'\]"):
        UNetConfig.from_dict(fields)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"ndim": 4}, "ndim"),
        ({"in_channels": 0}, "in_channels"),
        ({"convs_per_level": 0}, "convs_per_level"),
        ({"features": (4,), "kernel_sizes": ((3, 3, 3),), "strides": ((1, 1, 1),)}, "at least 2 levels"),
        ({"kernel_sizes": ((3, 3, 3),) * 3}, "kernel_sizes.*one entry per level"),
        ({"strides": ((1, 1, 1), (2, 2), (2, 2, 2), (2, 2, 2))}, r"strides\[1\].*one entry per spatial axis"),
        ({"strides": ((2, 2, 2),) * 4}, r"strides\[0\].*all ones"),
        ({"kernel_sizes": ((2, 3, 3),) * 4}, "odd"),
        ({"strides": ((1, 1, 1), (0, 2, 2), (2, 2, 2), (2, 2, 2))}, "positive integer"),
        ({"norm": "group"}, "norm.*instance, batch"),
        ({"activation": "gelu"}, "activation"),
        ({"downsample": "avgpool"}, "downsample"),
        ({"upsample": "nearest"}, "upsample"),
        ({"deep_supervision": "yes"}, "deep_supervision"),
        ({"dropout": 1.0}, r"^UNetConfig.dropout = 1.0 must be a probability with 0 <= p < 1$"),
        ({"dropout": -0.1}, r"UNetConfig.dropout = -0.1 must be a probability"),
        ({"dropout": True}, r"UNetConfig.dropout = True must be a probability"),
    ],
)
def test_invalid_config_raises_config_error(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        UNetConfig(**{**TINY_3D, **overrides})  # type: ignore[arg-type]


def test_config_accepts_lists_and_stores_tuples() -> None:
    config = UNetConfig(2, 1, 2, [4, 8], [[3, 3], [3, 3]], [[1, 1], [2, 2]])  # type: ignore[arg-type]
    assert config.features == (4, 8)
    assert config.strides == ((1, 1), (2, 2))
    assert hash(config) == hash(UNetConfig(2, 1, 2, (4, 8), ((3, 3),) * 2, ((1, 1), (2, 2))))


def test_divisor_is_the_product_of_strides_per_axis() -> None:
    assert UNetConfig(**TINY_3D).divisor == (4, 8, 8)


def test_classic_config_is_the_original_unet() -> None:
    config = classic_config(3, 1, 2)
    assert config.features == (64, 128, 256, 512, 1024)
    assert config.kernel_sizes == ((3, 3, 3),) * 5
    assert config.strides == ((1, 1, 1),) + ((2, 2, 2),) * 4
    assert (config.norm, config.activation, config.downsample) == ("batch", "relu", "maxpool")
    assert (config.upsample, config.deep_supervision) == ("interpolate", False)
    with pytest.raises(ConfigError, match="depth"):
        classic_config(2, 1, 2, depth=1)


def test_nnunet_config_on_anisotropic_spacing() -> None:
    # Hand-run of the rule: in-plane spacing 0.8 doubles to 1.6 and 3.2 before 5.0 is within 2x of it,
    # so axis 0 is neither pooled nor convolved for two levels; it then pools twice until its size is 4.
    config = nnunet_config(3, 1, 2, (16, 160, 160), (5.0, 0.8, 0.8))
    assert config.strides == ((1, 1, 1), (1, 2, 2), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2))
    assert config.kernel_sizes == ((1, 3, 3), (1, 3, 3)) + ((3, 3, 3),) * 4
    assert config.features == (32, 64, 128, 256, 320, 320)
    assert config.divisor == (4, 32, 32)
    assert (config.norm, config.activation, config.downsample, config.upsample) == (
        "instance",
        "leaky_relu",
        "conv",
        "transpose",
    )
    UNet(config, generator=seeded())  # builds; too big to run here


def test_nnunet_config_isotropic_2d_caps_features_at_512() -> None:
    config = nnunet_config(2, 1, 2, (256, 256), (1.0, 1.0))
    assert config.strides == ((1, 1),) + ((2, 2),) * 6  # 256 -> 4
    assert config.features == (32, 64, 128, 256, 512, 512, 512)
    assert config.kernel_sizes == ((3, 3),) * 7


def test_nnunet_config_pools_a_lone_axis_only_while_it_is_three_times_min_size() -> None:
    # (12, 40): both axes pool once -> (6, 20); axis 0 is now below 8, axis 1 pools alone while >= 12:
    # -> (6, 10), then 10 < 12 stops it (without that rule it would pool once more, to (6, 5)).
    config = nnunet_config(2, 1, 2, (12, 40), (1.0, 1.0))
    assert config.strides == ((1, 1), (2, 2), (1, 2))


@pytest.mark.parametrize(
    ("patch", "spacing", "message"),
    [((7, 7), (1.0, 1.0), "too small"), ((64, 64), (1.0,), "2 entries"), ((64, 64), (1.0, 0.0), "positive")],
)
def test_nnunet_config_rejects_bad_patches(patch: tuple[int, ...], spacing: tuple[float, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        nnunet_config(len(patch), 1, 2, patch, spacing)


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    ndim=st.sampled_from([2, 3]),
)
def test_nnunet_config_keeps_the_bottleneck_at_least_min_size(data: st.DataObject, ndim: int) -> None:
    patch = data.draw(st.lists(st.integers(12, 300), min_size=ndim, max_size=ndim))
    spacing = data.draw(st.lists(st.floats(0.3, 8.0), min_size=ndim, max_size=ndim))
    config = nnunet_config(ndim, 1, 2, patch, spacing)
    assert all(math.ceil(p / d) >= 4 for p, d in zip(patch, config.divisor, strict=True))
    assert all(k in (1, 3) for row in config.kernel_sizes for k in row)
    assert all(s in (1, 2) for row in config.strides for s in row)
    assert max(config.features) <= (320 if ndim == 3 else 512)


def test_planned_classic_unet_keeps_the_papers_five_levels_on_large_patches() -> None:
    from medseg.models.configs import ModelInputs
    from medseg.models.unet_config import plan_classic_unet, plan_unet

    inputs = ModelInputs(2, 1, 2, (256, 256), (1.0, 1.0))
    assert len(plan_unet(inputs).features) > 5
    assert plan_classic_unet(inputs).features == (64, 128, 256, 512, 1024)
    small = ModelInputs(2, 1, 2, (32, 32), (1.0, 1.0))
    assert len(plan_classic_unet(small).features) == len(plan_unet(small).features) < 5
