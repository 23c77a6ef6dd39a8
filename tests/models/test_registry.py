"""The shared contract every registered model passes, in 2D and 3D, plus the registry itself."""

from __future__ import annotations

import dataclasses
import io
import re
import subprocess
import sys
import typing

import pytest
import torch

from medseg.errors import ConfigError
from medseg.models.configs import ModelConfig, ModelInputs
from medseg.models.mobile_unet_config import MobileUNetConfig
from medseg.models.monai_configs import SegResNetConfig, SwinUNETRConfig, UNETRConfig, VNetConfig
from medseg.models.registry import MODELS, build_model, model_entry
from medseg.models.residual_unet_config import ResidualUNetConfig
from medseg.models.resnet_unet_config import ResNetUNetConfig
from medseg.models.unet_config import UNetConfig

# Tracing and the TorchScript ONNX exporter warn about torch's own internals (instance norm's shape
# check); the messages are attributed to torch modules, so our own code's warnings still fail the tests.
IGNORE_TORCH_TRACER = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning:torch")
# MONAI's SwinUNETR reads sizes as Python numbers (hence ModelEntry.static_shapes); tracing warns inside monai.
IGNORE_MONAI_TRACER = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning:monai")
IGNORE_JIT_DEPRECATION = pytest.mark.filterwarnings("ignore:.*is deprecated:DeprecationWarning")
IGNORE_ONNX_INSTANCE_NORM = pytest.mark.filterwarnings("ignore:ONNX export mode is set to TrainingMode")
IGNORE_LEGACY_ONNX = pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX")

ODD_SIZES = {2: (37, 45), 3: (19, 23, 17)}
VARIANTS = {
    "nnunet-like": {},
    "classic-like": {
        "norm": "batch",
        "activation": "relu",
        "downsample": "maxpool",
        "upsample": "interpolate",
    },
    "three-convs": {"convs_per_level": 3, "downsample": "maxpool"},
}


def tiny_config(ndim: int, **overrides: object) -> UNetConfig:
    """4 levels, 4..16 features; 3D is anisotropic (kernel (1, 3, 3) and stride (1, 2, 2) at the top)."""
    if ndim == 2:
        kernels, strides = ((3, 3),) * 4, ((1, 1), (2, 2), (2, 2), (2, 2))
    else:
        kernels = ((1, 3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3))
        strides = ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2))
    fields: dict[str, object] = {
        "ndim": ndim,
        "in_channels": 2,
        "out_channels": 3,
        "features": (4, 8, 16, 16),
        "kernel_sizes": kernels,
        "strides": strides,
    }
    return UNetConfig(**{**fields, **overrides})  # type: ignore[arg-type]


def tiny_residual_config(ndim: int, **overrides: object) -> ResidualUNetConfig:
    """:func:`tiny_config`'s topology with 1, 2, 1, 1 residual blocks: identity skips (level 0, the second
    block of level 1) and projections (channels and stride at levels 1-2, stride only at level 3)."""
    name = overrides.pop("name", "residual-unet")
    unet = dataclasses.asdict(tiny_config(ndim, **overrides))
    return ResidualUNetConfig(**{**unet, "name": name, "blocks_per_level": (1, 2, 1, 1)})  # type: ignore[arg-type]


def tiny_mobile_config(ndim: int, **overrides: object) -> MobileUNetConfig:
    """:func:`tiny_config`'s topology with 1, 2, 1, 1 inverted residual blocks of expansion 2: residual
    blocks at level 0 and as level 1's second block, none where channels or size change."""
    name = overrides.pop("name", "mobilenet-unet")
    unet = dataclasses.asdict(tiny_config(ndim, **overrides))
    fields = {**unet, "name": name, "blocks_per_level": (1, 2, 1, 1), "expansion": 2}
    return MobileUNetConfig(**fields)  # type: ignore[arg-type]


def tiny_resnet_config(ndim: int, **overrides: object) -> ResNetUNetConfig:
    """ResNet encoders 4 wide (layer4: 32, or 128 for Bottleneck), decoder (16, 8, 8, 4, 4); 3D keeps
    stride 1 on axis 0 at the first step (a thin axis), so its divisor is (16, 32, 32)."""
    strides = ((2, 2),) * 5 if ndim == 2 else ((1, 2, 2),) + ((2, 2, 2),) * 4
    fields: dict[str, object] = {"ndim": ndim, "in_channels": 2, "out_channels": 3, "strides": strides}
    fields |= {"encoder_width": 4, "decoder_channels": (16, 8, 8, 4, 4)}
    return ResNetUNetConfig(**{**fields, **overrides})  # type: ignore[arg-type]


def tiny_monai_config(cls: type, per_ndim: dict[int, dict[str, object]]) -> typing.Callable[..., typing.Any]:
    """Tiny factory of a MONAI network's config class: 2 channels in, 3 out, the fields ``per_ndim[ndim]``."""

    def tiny_factory(ndim: int, **overrides: object) -> typing.Any:
        return cls(**{"ndim": ndim, "in_channels": 2, "out_channels": 3, **per_ndim[ndim], **overrides})

    return tiny_factory


SEGRESNET_TINY = {"init_filters": 8, "blocks_down": (1, 2, 1), "blocks_up": (1, 1)}
UNETR_TINY = {"feature_size": 4, "hidden_size": 32, "mlp_dim": 64, "num_heads": 2}
SWIN_TINY = {"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (3, 3, 3, 3), "window_size": 4}


# Every config class of the registry -> its tiny config for the contract below; a new class adds one line.
# A tiny factory takes ``ndim`` and config field overrides (``name`` among them) and returns a config whose
# network takes 2 input channels and returns 3, small enough that the whole contract runs in seconds.
TINY: dict[type, typing.Callable[..., typing.Any]] = {
    UNetConfig: tiny_config,
    ResidualUNetConfig: tiny_residual_config,
    ResNetUNetConfig: tiny_resnet_config,
    MobileUNetConfig: tiny_mobile_config,
    SegResNetConfig: tiny_monai_config(SegResNetConfig, {2: SEGRESNET_TINY, 3: SEGRESNET_TINY}),
    # img_size covers every size the contract feeds (ODD_SIZES + 5 per axis, rounded up to 16)
    UNETRConfig: tiny_monai_config(
        UNETRConfig, {2: {**UNETR_TINY, "img_size": (48, 64)}, 3: {**UNETR_TINY, "img_size": (32, 32, 32)}}
    ),
    SwinUNETRConfig: tiny_monai_config(SwinUNETRConfig, {2: SWIN_TINY, 3: SWIN_TINY}),
    VNetConfig: tiny_monai_config(VNetConfig, {3: {}}),  # MONAI's V-Net has fixed widths: no smaller one exists
}
# Config classes of the U-Net family also run the topology variants (norm, activation, down/up-sampling).
FAMILY_VARIANTS: dict[type, dict[str, dict[str, object]]] = {
    UNetConfig: VARIANTS,
    ResidualUNetConfig: VARIANTS,
    MobileUNetConfig: VARIANTS,
}
# The networks whose deep-supervision outputs are the decoder levels' (scales 1, 2, ...), tested exactly.
LEVEL_SUPERVISED = ("attention-unet", "classic-unet", "mobilenet-unet", "residual-unet", "unet")


def cases(*, variants: bool = False) -> list[tuple[str, int, str]]:
    """(name, ndim, variant) for every registered network and each dimensionality it claims."""
    out = []
    for name in sorted(MODELS):
        entry = MODELS[name]
        names = sorted(FAMILY_VARIANTS.get(entry.config, {"default": {}})) if variants else ["default"]
        out += [(name, ndim, v) for ndim in entry.ndims for v in names]
    return out


def variant(name: str, label: str) -> dict[str, object]:
    return FAMILY_VARIANTS.get(MODELS[name].config, {}).get(label, {})


def has_field(name: str, field: str) -> bool:
    return field in {f.name for f in dataclasses.fields(MODELS[name].config)}


def make(name: str, ndim: int, seed: int = 0, **overrides: object) -> torch.nn.Module:
    """Registered model ``name`` built from its config class's tiny config (named ``name``, ``overrides``)."""
    return build_model(tiny(name, ndim, **overrides), generator=torch.Generator().manual_seed(seed))


def tiny(name: str, ndim: int, **overrides: object) -> typing.Any:
    return TINY[MODELS[name].config](ndim, name=name, **overrides)


def odd_input(ndim: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 2, *ODD_SIZES[ndim], generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("name", "ndim", "label"), cases(variants=True))
def test_eval_forward_keeps_odd_spatial_shape(name: str, ndim: int, label: str) -> None:
    net = make(name, ndim, **variant(name, label)).eval()
    with torch.no_grad():
        out = net(odd_input(ndim))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3, *ODD_SIZES[ndim])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "ndim", "label"), cases(variants=True))
def test_backward_gives_finite_gradients_to_every_parameter(name: str, ndim: int, label: str) -> None:
    net = make(name, ndim, **variant(name, label)).train()
    outputs = net(odd_input(ndim))
    outputs = outputs if isinstance(outputs, list) else [outputs]
    sum(out.square().mean() for out in outputs).backward()
    for param_name, param in net.named_parameters():
        if not param.requires_grad:
            continue
        assert param.grad is not None, param_name
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name


@pytest.mark.parametrize(
    ("ndim", "expected"),
    [
        (2, [(37, 45), (19, 23)]),  # 4 levels -> 2 outputs, at scales 1 and 2
        (3, [(19, 23, 17), (19, 12, 9)]),  # first stride (1, 2, 2): axis 0 keeps its size
    ],
)
@pytest.mark.parametrize("name", LEVEL_SUPERVISED)
def test_deep_supervision_outputs_in_training_mode(name: str, ndim: int, expected: list[tuple[int, ...]]) -> None:
    net = make(name, ndim).train()
    outputs = net(odd_input(ndim))
    assert isinstance(outputs, list)
    assert [tuple(out.shape) for out in outputs] == [(2, 3, *size) for size in expected]
    net.eval()
    with torch.no_grad():
        assert isinstance(net(odd_input(ndim)), torch.Tensor)


@pytest.mark.parametrize(("name", "ndim", "label"), cases())
def test_training_outputs_match_n_outputs_full_resolution_first(name: str, ndim: int, label: str) -> None:
    """Every network: training mode returns ``config.n_outputs`` maps (one tensor when that is 1), the
    first at the input's size, each other at ``ceil(size / k)`` for a whole factor ``k`` per axis."""
    config = tiny(name, ndim)
    net = build_model(config).train()
    outputs = net(odd_input(ndim))
    if config.n_outputs == 1:
        assert isinstance(outputs, torch.Tensor)
        outputs = [outputs]
    assert isinstance(outputs, list) and len(outputs) == config.n_outputs
    assert outputs[0].shape == (2, 3, *ODD_SIZES[ndim])
    for out in outputs[1:]:
        assert out.shape[:2] == (2, 3)
        for size, full in zip(out.shape[2:], ODD_SIZES[ndim], strict=True):
            assert any(-(-full // k) == size for k in range(1, full + 1)), (out.shape, ODD_SIZES[ndim])


@pytest.mark.parametrize(("name", "ndim", "label"), [c for c in cases() if has_field(c[0], "deep_supervision")])
def test_without_deep_supervision_training_returns_one_tensor(name: str, ndim: int, label: str) -> None:
    net = make(name, ndim, deep_supervision=False).train()
    out = net(odd_input(ndim))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3, *ODD_SIZES[ndim])


@pytest.mark.parametrize(("name", "ndim", "label"), [c for c in cases() if has_field(c[0], "dropout")])
def test_dropout_is_active_in_training_mode_only(name: str, ndim: int, label: str) -> None:
    """Bottleneck dropout changes nothing in eval mode (nor the weights drawn from the seed) and makes two
    training-mode passes differ."""
    net, plain = make(name, ndim, dropout=0.5), make(name, ndim)
    x = odd_input(ndim)

    def first(out: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        return out[0] if isinstance(out, list) else out

    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), plain.eval()(x))
        net.train()
        torch.manual_seed(0)
        assert not torch.equal(first(net(x)), first(net(x)))


@pytest.mark.parametrize(("name", "ndim", "label"), cases())
def test_same_generator_seed_gives_same_weights(name: str, ndim: int, label: str) -> None:
    first, again, other = make(name, ndim, seed=3), make(name, ndim, seed=3), make(name, ndim, seed=4)
    weights = [list(net.state_dict().values()) for net in (first, again, other)]
    assert all(torch.equal(a, b) for a, b in zip(weights[0], weights[1], strict=True))
    assert not all(torch.equal(a, c) for a, c in zip(weights[0], weights[2], strict=True))


TRACE_VARIANTS = ("default", "nnunet-like", "classic-like")


@pytest.mark.parametrize(
    ("name", "ndim", "label"),
    [c for c in cases(variants=True) if c[2] in TRACE_VARIANTS and not (c[1] == 3 and c[2] == "classic-like")],
)
@IGNORE_TORCH_TRACER
@IGNORE_MONAI_TRACER
@IGNORE_JIT_DEPRECATION
def test_torchscript_trace_matches_eager_on_other_sizes_too(name: str, ndim: int, label: str) -> None:
    net = make(name, ndim, **variant(name, label)).eval()
    x = odd_input(ndim, batch=1)
    other = torch.randn(1, 2, *(s + 3 for s in ODD_SIZES[ndim]), generator=torch.Generator().manual_seed(2))
    # check_trace and the optimising executor only cost time here; the parity check below is the test.
    with torch.no_grad(), torch.jit.optimized_execution(False):
        traced = torch.jit.trace(net, x, check_trace=False)
        for image in (x, other):  # the padding is traced from the input's shape, not frozen
            torch.testing.assert_close(traced(image), net(image))


@pytest.mark.parametrize(("name", "ndim", "label"), [c for c in cases() if MODELS[c[0]].scriptable])
@IGNORE_JIT_DEPRECATION
def test_torchscript_script_matches_eager_in_both_modes(name: str, ndim: int, label: str) -> None:
    net = make(name, ndim).eval()
    scripted = torch.jit.script(net)
    x = odd_input(ndim)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))
        net.train()
        scripted.train()
        got, want = scripted(x), net(x)
        got, want = (got, want) if isinstance(want, list) else ([got], [want])
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize(("name", "ndim", "label"), cases())
@IGNORE_TORCH_TRACER
@IGNORE_MONAI_TRACER
@IGNORE_JIT_DEPRECATION
@IGNORE_ONNX_INSTANCE_NORM
@IGNORE_LEGACY_ONNX
def test_onnx_export_matches_eager_with_dynamic_sizes(name: str, ndim: int, label: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    overrides = {"upsample": "interpolate"} if has_field(name, "upsample") else {}
    net = make(name, ndim, **overrides).eval()
    x = odd_input(ndim, batch=1)
    axes = {0: "batch", **{2 + a: f"size{a}" for a in range(ndim)}}
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            net,
            (x,),
            buffer,
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
        )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    other = torch.randn(2, 2, *(s + 5 for s in ODD_SIZES[ndim]), generator=torch.Generator().manual_seed(2))
    for image in (x, other):
        (got,) = session.run(None, {"image": image.numpy()})
        with torch.no_grad():
            want = net(image)
        # ONNX Runtime's InstanceNormalization is less exact than torch's (5e-5 on unit-scale maps beside
        # zero padding, where torch stays within 3e-6 of float64); deep nets such as SwinUNETR amplify it,
        # so the absolute tolerance grows with the logits' scale (a wrong graph is off by that scale)
        scale = max(1.0, float(want.abs().max()))
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-4 * scale)


def test_unknown_model_name_lists_the_known_ones() -> None:
    known = re.escape(", ".join(sorted(MODELS)))
    with pytest.raises(ConfigError, match=rf"unknown model 'no-such-net'; choose one of {known}$"):
        model_entry("no-such-net")
    with pytest.raises(ConfigError, match=r"UNetConfig.name = 'vnet' is not one of"):
        dataclasses.replace(tiny_config(2), name="vnet")


@pytest.mark.parametrize("config_class", sorted(TINY, key=lambda c: c.__name__))
def test_every_config_class_has_a_dropout_field(config_class: type) -> None:
    """``--dropout`` sets ``model.dropout`` on whichever network is planned."""
    assert "dropout" in {f.name for f in dataclasses.fields(config_class)}


def test_a_dimensionality_the_model_lacks_is_a_config_error() -> None:
    entry = dataclasses.replace(MODELS["unet"], ndims=(3,))
    with pytest.raises(ConfigError, match=r"^model 'unet' supports 3D data only; this data is 2D$"):
        entry.check_ndim("unet", 2)


def test_registry_and_the_plans_union_agree() -> None:
    """Every config class of the plans.json union is registered under each name it serves, and every
    registered name is one its config class serves: a model cannot be half added."""
    union = typing.get_args(ModelConfig) or (ModelConfig,)
    assert {entry.config for entry in MODELS.values()} == set(union)
    assert {name for cls in union for name in cls.NAMES} == set(MODELS)
    for name, entry in MODELS.items():
        assert name in entry.config.NAMES
    assert set(TINY) == set(union)  # the shared contract builds every config class


@pytest.mark.parametrize(("name", "ndim", "label"), cases())
def test_each_plan_rule_gives_a_buildable_config_of_its_name(name: str, ndim: int, label: str) -> None:
    patch, spacing = ((64, 64), (1.0, 1.0)) if ndim == 2 else ((16, 32, 32), (3.0, 1.0, 1.0))
    config = MODELS[name].plan(ModelInputs(ndim, 1, 3, patch, spacing, gpu=False))
    assert config.name == name and isinstance(config, MODELS[name].config)
    net = build_model(config).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, *patch)).shape == (1, 3, *patch)


def test_reading_the_model_config_does_not_import_torch() -> None:
    code = (
        "import sys; from medseg.models import UNetConfig, nnunet_config; "
        "nnunet_config(3, 1, 2, (16, 64, 64), (3.0, 1.0, 1.0)); print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, encoding="utf-8", errors="replace", check=True
    )
    assert result.stdout.strip() == "False"


def test_package_exposes_the_networks_lazily() -> None:
    import medseg.models

    assert medseg.models.UNet is MODELS["unet"].build
    assert medseg.models.ResidualUNet is MODELS["residual-unet"].build
    assert medseg.models.AttentionUNet is MODELS["attention-unet"].build
    assert medseg.models.UNetPlusPlus is MODELS["unet++"].build
    assert medseg.models.MobileUNet is MODELS["mobilenet-unet"].build
    assert medseg.models.build_model is build_model
    with pytest.raises(AttributeError):
        _ = medseg.models.NotAModel
