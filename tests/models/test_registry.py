"""The shared contract every registered model passes, in 2D and 3D, plus the registry itself."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import typing

import pytest
import torch

from medseg.errors import ConfigError
from medseg.models.configs import ModelConfig, ModelInputs
from medseg.models.registry import MODELS, build_model, model_entry
from medseg.models.residual_unet_config import ResidualUNetConfig
from medseg.models.unet_config import UNetConfig

# Tracing and the TorchScript ONNX exporter warn about torch's own internals (instance norm's shape
# check); the messages are attributed to torch modules, so our own code's warnings still fail the tests.
IGNORE_TORCH_TRACER = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning:torch")
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


# Every config class of the registry -> its tiny config for the contract below; a new class adds one line.
TINY: dict[type, typing.Callable[..., typing.Any]] = {
    UNetConfig: tiny_config,
    ResidualUNetConfig: tiny_residual_config,
}


def make(name: str, ndim: int, seed: int = 0, **overrides: object) -> torch.nn.Module:
    """Registered model ``name`` built from its config class's tiny config (named ``name``, ``overrides``)."""
    config = TINY[MODELS[name].config](ndim, name=name, **overrides)
    return build_model(config, generator=torch.Generator().manual_seed(seed))


def odd_input(ndim: int, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 2, *ODD_SIZES[ndim], generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_eval_forward_keeps_odd_spatial_shape(name: str, ndim: int, variant: str) -> None:
    net = make(name, ndim, **VARIANTS[variant]).eval()
    with torch.no_grad():
        out = net(odd_input(ndim))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3, *ODD_SIZES[ndim])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_backward_gives_finite_gradients_to_every_parameter(name: str, ndim: int, variant: str) -> None:
    net = make(name, ndim, **VARIANTS[variant]).train()
    outputs = net(odd_input(ndim))
    sum(out.square().mean() for out in outputs).backward()
    for param_name, param in net.named_parameters():
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
@pytest.mark.parametrize("name", sorted(MODELS))
def test_deep_supervision_outputs_in_training_mode(name: str, ndim: int, expected: list[tuple[int, ...]]) -> None:
    net = make(name, ndim).train()
    outputs = net(odd_input(ndim))
    assert isinstance(outputs, list)
    assert [tuple(out.shape) for out in outputs] == [(2, 3, *size) for size in expected]
    net.eval()
    with torch.no_grad():
        assert isinstance(net(odd_input(ndim)), torch.Tensor)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_without_deep_supervision_training_returns_one_tensor(name: str, ndim: int) -> None:
    net = make(name, ndim, deep_supervision=False).train()
    out = net(odd_input(ndim))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (2, 3, *ODD_SIZES[ndim])


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_same_generator_seed_gives_same_weights(name: str, ndim: int) -> None:
    first, again, other = make(name, ndim, seed=3), make(name, ndim, seed=3), make(name, ndim, seed=4)
    weights = [list(net.state_dict().values()) for net in (first, again, other)]
    assert all(torch.equal(a, b) for a, b in zip(weights[0], weights[1], strict=True))
    assert not all(torch.equal(a, c) for a, c in zip(weights[0], weights[2], strict=True))


@pytest.mark.parametrize(("ndim", "variant"), [(2, "nnunet-like"), (2, "classic-like"), (3, "nnunet-like")])
@pytest.mark.parametrize("name", sorted(MODELS))
@IGNORE_TORCH_TRACER
@IGNORE_JIT_DEPRECATION
def test_torchscript_trace_matches_eager_on_other_sizes_too(name: str, ndim: int, variant: str) -> None:
    net = make(name, ndim, **VARIANTS[variant]).eval()
    x = odd_input(ndim, batch=1)
    other = torch.randn(1, 2, *(s + 3 for s in ODD_SIZES[ndim]), generator=torch.Generator().manual_seed(2))
    # check_trace and the optimising executor only cost time here; the parity check below is the test.
    with torch.no_grad(), torch.jit.optimized_execution(False):
        traced = torch.jit.trace(net, x, check_trace=False)
        for image in (x, other):  # the padding is traced from the input's shape, not frozen
            torch.testing.assert_close(traced(image), net(image))


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
@IGNORE_JIT_DEPRECATION
def test_torchscript_script_matches_eager_in_both_modes(name: str, ndim: int) -> None:
    net = make(name, ndim).eval()
    scripted = torch.jit.script(net)
    x = odd_input(ndim)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))
        net.train()
        scripted.train()
        for got, want in zip(scripted(x), net(x), strict=True):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
@IGNORE_TORCH_TRACER
@IGNORE_JIT_DEPRECATION
@IGNORE_ONNX_INSTANCE_NORM
@IGNORE_LEGACY_ONNX
def test_onnx_export_matches_eager_with_dynamic_sizes(name: str, ndim: int) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    net = make(name, ndim, upsample="interpolate").eval()
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
            torch.testing.assert_close(torch.from_numpy(got), net(image), rtol=1e-4, atol=1e-4)


def test_unknown_model_name_lists_the_known_ones() -> None:
    known = "attention-unet, classic-unet, residual-unet, unet"
    with pytest.raises(ConfigError, match=rf"unknown model 'vnet'; choose one of {known}$"):
        model_entry("vnet")
    with pytest.raises(ConfigError, match=r"UNetConfig.name = 'vnet' is not one of"):
        dataclasses.replace(tiny_config(2), name="vnet")


def test_registry_and_the_plans_union_agree() -> None:
    """Every config class of the plans.json union is registered under each name it serves, and every
    registered name is one its config class serves: a model cannot be half added."""
    union = typing.get_args(ModelConfig) or (ModelConfig,)
    assert {entry.config for entry in MODELS.values()} == set(union)
    assert {name for cls in union for name in cls.NAMES} == set(MODELS)
    for name, entry in MODELS.items():
        assert name in entry.config.NAMES
    assert set(TINY) == set(union)  # the shared contract builds every config class


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_plan_rule_gives_a_buildable_config_of_its_name(name: str, ndim: int) -> None:
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
    assert medseg.models.build_model is build_model
    with pytest.raises(AttributeError):
        _ = medseg.models.NotAModel
