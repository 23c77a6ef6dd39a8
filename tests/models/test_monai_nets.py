"""MONAI's networks behind medseg's adapters: the wrapping is thin, the padding exact, the seeding isolated.

The shared contract (tests/models/test_registry.py) runs them like every other network; here each adapter
is checked against the plain MONAI network with the same weights.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
import typing

import pytest
import torch
import torch.nn.functional as F
from monai.networks import nets

from medseg.config.plans import Plans
from medseg.errors import ConfigError
from medseg.labels import LabelSpec
from medseg.models.configs import ModelConfig, ModelInputs
from medseg.models.monai_configs import SegResNetConfig, SwinUNETRConfig, UNETRConfig, VNetConfig
from medseg.models.registry import MODELS, build_model
from medseg.planning.fingerprint import Fingerprint, IntensityStats
from medseg.planning.plans import Budget, make_plans
from medseg.serial import from_dict, to_dict
from tests.models.test_registry import tiny

MONAI_NAMES = ("segresnet", "swin-unetr", "unetr", "vnet")
# (name, ndim): 2D where the network has it (cheaper), V-Net in 3D
CASES = [("segresnet", 2), ("swin-unetr", 2), ("unetr", 2), ("vnet", 3), ("segresnet", 3), ("unetr", 3)]


def plain_monai(config: typing.Any) -> torch.nn.Module:
    """The MONAI network a config describes, built here by hand from MONAI's own arguments."""
    if isinstance(config, SegResNetConfig):
        return nets.SegResNet(
            spatial_dims=config.ndim,
            init_filters=config.init_filters,
            in_channels=config.in_channels,
            out_channels=config.out_channels,
            blocks_down=config.blocks_down,
            blocks_up=config.blocks_up,
        )
    if isinstance(config, UNETRConfig):
        return nets.UNETR(
            config.in_channels,
            config.out_channels,
            config.img_size,
            feature_size=config.feature_size,
            hidden_size=config.hidden_size,
            mlp_dim=config.mlp_dim,
            num_heads=config.num_heads,
            spatial_dims=config.ndim,
        )
    if isinstance(config, SwinUNETRConfig):
        return nets.SwinUNETR(
            config.in_channels,
            config.out_channels,
            depths=config.depths,
            num_heads=config.num_heads,
            window_size=config.window_size,
            feature_size=config.feature_size,
            spatial_dims=config.ndim,
        )
    return nets.VNet(3, config.in_channels, config.out_channels)


def adapter_and_plain(name: str, ndim: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The adapter (tiny config, seed 0) and the plain MONAI network with its weights, both in eval mode."""
    adapter = build_model(tiny(name, ndim), generator=torch.Generator().manual_seed(0)).eval()
    plain = plain_monai(adapter.config).eval()
    state = {key.removeprefix("net."): value for key, value in adapter.state_dict().items()}
    plain.load_state_dict(state, strict=True)  # every adapter key is a MONAI key under "net."
    return adapter, plain


# a size MONAI takes as it is, per network and ndim
DIVISIBLE = {
    ("segresnet", 2): (24, 36),
    ("segresnet", 3): (8, 12, 16),
    ("swin-unetr", 2): (32, 64),
    ("unetr", 2): (48, 64),
    ("unetr", 3): (32, 32, 32),
    ("vnet", 3): (16, 16, 32),
}
# (odd size, the padded size MONAI must see)
ODD = {
    ("segresnet", 2): ((37, 45), (40, 48)),
    ("segresnet", 3): ((9, 13, 6), (12, 16, 8)),
    ("swin-unetr", 2): ((37, 45), (64, 64)),
    ("unetr", 2): ((37, 45), (48, 64)),
    ("unetr", 3): ((19, 23, 17), (32, 32, 32)),
    ("vnet", 3): ((9, 20, 15), (16, 32, 16)),
}


def image(size: tuple[int, ...], batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 2, *size, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("name", "ndim"), CASES)
def test_adapter_equals_the_plain_monai_network_on_a_divisible_input(name: str, ndim: int) -> None:
    adapter, plain = adapter_and_plain(name, ndim)
    x = image(DIVISIBLE[(name, ndim)])
    with torch.no_grad():
        torch.testing.assert_close(adapter(x), plain(x), rtol=0, atol=0)


@pytest.mark.parametrize(("name", "ndim"), CASES)
def test_odd_sizes_are_zero_padded_for_monai_and_cropped_back(name: str, ndim: int) -> None:
    adapter, plain = adapter_and_plain(name, ndim)
    (odd, padded) = ODD[(name, ndim)]
    x = image(odd)
    pads = [p for size, full in zip(reversed(odd), reversed(padded), strict=True) for p in (0, full - size)]
    with torch.no_grad():
        want = plain(F.pad(x, pads))[(..., *(slice(0, s) for s in odd))]
        torch.testing.assert_close(adapter(x), want, rtol=0, atol=0)


def test_swin_unetr_pads_a_single_voxel_bottleneck_further() -> None:
    """32 x 32 would leave SwinUNETR's bottleneck one voxel, which MONAI's instance norm refuses."""
    adapter, plain = adapter_and_plain("swin-unetr", 2)
    x = image((20, 30))
    with pytest.raises(ValueError, match="more than 1 spatial element"):
        plain(F.pad(x, [0, 2, 0, 12]))
    with torch.no_grad():
        torch.testing.assert_close(adapter(x), plain(F.pad(x, [0, 34, 0, 12]))[..., :20, :30], rtol=0, atol=0)


def test_unetr_refuses_an_input_larger_than_its_img_size() -> None:
    adapter = build_model(tiny("unetr", 2))  # img_size (48, 64)
    with pytest.raises(ValueError, match=r"^UNETR input \[49, 20\] exceeds its img_size \[48, 64\]; feed windows"):
        adapter(image((49, 20), batch=1))


@pytest.mark.parametrize(("name", "ndim"), [("segresnet", 2), ("swin-unetr", 2), ("unetr", 2), ("vnet", 3)])
def test_same_seed_same_weights_and_the_global_rng_is_untouched(name: str, ndim: int) -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = build_model(tiny(name, ndim), generator=torch.Generator().manual_seed(5)).state_dict()
    again = build_model(tiny(name, ndim), generator=torch.Generator().manual_seed(5)).state_dict()
    assert torch.equal(torch.get_rng_state(), before)
    other = build_model(tiny(name, ndim), generator=torch.Generator().manual_seed(6)).state_dict()
    assert all(torch.equal(first[key], again[key]) for key in first)
    assert not all(torch.equal(first[key], other[key]) for key in first)


def test_without_a_generator_monai_draws_from_the_global_rng_as_on_its_own() -> None:
    before = torch.get_rng_state()
    torch.manual_seed(7)
    first = build_model(tiny("segresnet", 2)).state_dict()
    torch.manual_seed(7)
    again = build_model(tiny("segresnet", 2)).state_dict()
    torch.set_rng_state(before)
    assert all(torch.equal(first[key], again[key]) for key in first)


@pytest.mark.parametrize("name", MONAI_NAMES)
def test_config_round_trips_through_json_and_the_plans_union(name: str) -> None:
    config = tiny(name, 3, dropout=0.25)
    cls = type(config)
    assert cls.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert from_dict(ModelConfig, json.loads(json.dumps(to_dict(config)))) == config  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"unknown model config key\(s\) \['features'\]"):
        cls.from_dict({**config.to_dict(), "features": [8]})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: SegResNetConfig(2, 1, 2, init_filters=12),
            r"^SegResNetConfig.init_filters = 12 must be a multiple of 8",
        ),
        (
            lambda: SegResNetConfig(2, 1, 2, blocks_up=(1, 1)),
            r"^SegResNetConfig.blocks_up = \(1, 1\) must have 3 entries",
        ),
        (
            lambda: UNETRConfig(3, 1, 2, img_size=(32, 40, 32)),
            r"^UNETRConfig.img_size = \[32, 40, 32\] must be multiples",
        ),
        (lambda: UNETRConfig(2, 1, 2, (32, 32), hidden_size=100), r"^UNETRConfig.hidden_size = 100 must be a multiple"),
        (
            lambda: SwinUNETRConfig(2, 1, 2, feature_size=16),
            r"^SwinUNETRConfig.feature_size = 16 must be a multiple of 12",
        ),
        (
            lambda: SwinUNETRConfig(2, 1, 2, num_heads=(5, 6, 12, 24)),
            r"^SwinUNETRConfig.num_heads\[0\] = 5 must divide",
        ),
        (lambda: VNetConfig(2, 1, 2), r"^VNetConfig.ndim = 2 must be 3 \(spatial dimensions\)$"),
        (lambda: VNetConfig(3, 1, 2, dropout=1.0), r"^VNetConfig.dropout = 1.0 must be a probability"),
    ],
)
def test_invalid_configs_are_one_line_config_errors(make: typing.Callable[[], object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        make()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("in_channels", "net_in_channels"), [(3, 4), (5, 8), (20, 16)])
def test_vnet_projects_channels_that_do_not_divide_16(in_channels: int, net_in_channels: int) -> None:
    config = VNetConfig(3, in_channels, 2)
    assert config.net_in_channels == net_in_channels
    with torch.device("meta"):  # the shapes and keys only: no memory, no time for V-Net's 45 M weights
        net = build_model(config, generator=torch.Generator()).eval()
        assert net(torch.zeros(1, in_channels, 9, 10, 11)).shape == (1, 2, 9, 10, 11)
    keys = set(net.state_dict())
    assert {"project.weight", "project.bias"} <= keys
    assert net.state_dict()["project.weight"].shape == (net_in_channels, in_channels, 1, 1, 1)
    assert all(key.startswith(("project.", "net.")) for key in keys)
    with torch.device("meta"):
        assert not any(key.startswith("project.") for key in build_model(VNetConfig(3, 4, 2)).state_dict())


def _fingerprint(shape: tuple[int, ...]) -> Fingerprint:
    return Fingerprint(
        name="t",
        shapes=(shape,) * 3,
        spacings=((1.0,) * len(shape),) * 3,
        cropped_shapes=(shape,) * 3,
        channel_names=("MRI",),
        labels=LabelSpec({0: "bg", 1: "a"}, (0, 1)),
        foreground_intensity=(IntensityStats(10.0, 5.0, -100.0, 300.0),),
        file_ending=".nii.gz",
    )


def test_vnet_refuses_2d_data_at_planning_in_one_line() -> None:
    with pytest.raises(ConfigError, match=r"^model 'vnet' supports 3D data only; this data is 2D$"):
        make_plans(_fingerprint((96, 80)), Budget(model="vnet"))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("name", MONAI_NAMES)
def test_plans_record_the_network_and_read_back(name: str, device: str) -> None:
    plans = make_plans(_fingerprint((50, 70, 45)), Budget(device=device, model=name))
    assert plans.model.name == name
    assert from_dict(Plans, json.loads(json.dumps(to_dict(plans)))) == plans
    if name == "unetr":  # the planned patch fits in img_size, so every window of the patch is accepted
        assert all(p <= s for p, s in zip(plans.patch_size, plans.model.img_size, strict=True))


def test_a_plans_patch_larger_than_unetrs_img_size_is_a_config_error() -> None:
    plans = make_plans(_fingerprint((50, 70, 45)), Budget(model="unetr"))
    larger = (plans.model.img_size[0] + 1, *plans.patch_size[1:])
    with pytest.raises(
        ConfigError, match=r"^patch_size \(\d+, \d+, \d+\) exceeds model.img_size \(\d+, \d+, \d+\); set"
    ):
        dataclasses.replace(plans, patch_size=larger)


def _monai_default(net: type, argument: str) -> typing.Any:
    value = inspect.signature(net).parameters[argument].default
    return tuple(value) if isinstance(value, list) else value


def test_gpu_plans_take_monai_defaults_and_cpu_plans_are_smaller() -> None:
    cpu = ModelInputs(3, 1, 2, (40, 56, 40), (1.0, 1.0, 1.0), gpu=False)
    gpu = ModelInputs(3, 1, 2, (40, 56, 40), (1.0, 1.0, 1.0), gpu=True)
    unetr = MODELS["unetr"].plan(gpu)
    for field in ("feature_size", "hidden_size", "mlp_dim", "num_heads"):
        assert getattr(unetr, field) == _monai_default(nets.UNETR, field)
    assert unetr.img_size == (48, 64, 48)
    assert MODELS["unetr"].plan(cpu).hidden_size < unetr.hidden_size
    swin = MODELS["swin-unetr"].plan(gpu)
    for field in ("feature_size", "depths", "num_heads", "window_size"):
        assert getattr(swin, field) == _monai_default(nets.SwinUNETR, field)
    assert MODELS["swin-unetr"].plan(cpu).feature_size < swin.feature_size
    segresnet = MODELS["segresnet"].plan(gpu)
    assert (segresnet.blocks_down, segresnet.blocks_up) == (
        _monai_default(nets.SegResNet, "blocks_down"),
        _monai_default(nets.SegResNet, "blocks_up"),
    )
    assert MODELS["segresnet"].plan(cpu).init_filters == _monai_default(nets.SegResNet, "init_filters")
    assert MODELS["vnet"].plan(gpu).dropout == _monai_default(nets.VNet, "dropout_prob_down")


def test_only_building_a_monai_network_imports_monai() -> None:
    code = (
        "import sys; from medseg.models.registry import MODELS, build_model; "
        "from medseg.models.configs import ModelInputs; "
        "MODELS['unetr'].plan(ModelInputs(2, 1, 2, (32, 32), (1.0, 1.0))); print('monai' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, encoding="utf-8", errors="replace", check=True
    )
    assert result.stdout.strip() == "False"
