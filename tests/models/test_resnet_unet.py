"""The ResNet-encoder U-Net: torchvision's ResNet layout, weights from files, freezing, input adaptation."""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import medseg.models
from medseg.errors import ConfigError
from medseg.models.configs import ModelInputs
from medseg.models.encoder_weights import (
    adapt_input_conv,
    check_encoder_weights,
    load_encoder_weights,
    read_state_dict,
)
from medseg.models.registry import MODELS, build_model
from medseg.models.resnet import ResNetEncoder
from medseg.models.resnet_unet import ResNetUNet
from medseg.models.resnet_unet_config import ResNetUNetConfig, plan_resnet_unet
from medseg.models.unet_config import plan_unet

STRIDES_2D = ((2, 2),) * 5
WIDTH = 8  # narrow encoders keep the files small; the layout is the same at torchvision's 64


def torchvision_resnet_shapes(depth: int, width: int = 64, in_channels: int = 3) -> dict[str, tuple[int, ...]]:
    """The state dict layout of torchvision's ``resnet18/34/50`` (key -> shape, ``fc`` included), written out
    from its definition (torchvision/models/resnet.py) and not from medseg's encoder."""
    blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3)}[depth]
    bottleneck = depth == 50
    expansion = 4 if bottleneck else 1
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (width, in_channels, 7, 7)}

    def bn(prefix: str, channels: int) -> None:
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    bn("bn1", width)
    inplanes = width
    for layer, n in enumerate(blocks):
        planes = width * 2**layer
        for b in range(n):
            p = f"layer{layer + 1}.{b}"
            if bottleneck:
                convs = [(planes, inplanes, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            else:
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            for i, (cout, cin, k) in enumerate(convs, start=1):
                shapes[f"{p}.conv{i}.weight"] = (cout, cin, k, k)
                bn(f"{p}.bn{i}", cout)
            if b == 0 and (layer > 0 or inplanes != planes * expansion):
                shapes[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    shapes["fc.weight"], shapes["fc.bias"] = (1000, inplanes), (1000,)
    return shapes


def torchvision_like_state(depth: int, width: int = WIDTH, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors in torchvision's layout, as a published checkpoint would hold them: He-scaled
    convolutions and batch norms near the identity, so a network of them computes finite values."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in torchvision_resnet_shapes(depth, width).items():
        noise = torch.randn(shape, generator=generator)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif len(shape) > 1:  # a convolution or the classifier
            state[key] = noise * math.sqrt(2 / math.prod(shape[1:]))
        elif key.endswith(("running_var", "bn1.weight", "bn2.weight", "bn3.weight", "downsample.1.weight")):
            state[key] = 1 + 0.1 * noise.abs() if "running_var" in key else 1 + 0.1 * noise
        else:  # biases and running means
            state[key] = 0.1 * noise
    return state


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def config_for(path: Path, name: str = "resnet18-unet", **overrides: object) -> ResNetUNetConfig:
    fields: dict[str, object] = {"ndim": 2, "in_channels": 3, "out_channels": 2, "strides": STRIDES_2D}
    fields |= {"encoder_width": WIDTH, "decoder_channels": (16, 8, 8, 4, 4), "name": name}
    fields |= {"encoder_weights": str(path), "encoder_weights_sha256": sha256(path)}
    return ResNetUNetConfig(**{**fields, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(("depth", "expected"), [(18, 11_176_512), (34, 21_284_672), (50, 23_508_032)])
def test_encoder_has_torchvisions_parameters_without_fc(depth: int, expected: int) -> None:
    with torch.device("meta"):  # shapes only
        encoder = ResNetEncoder(depth, in_channels=3, ndim=2)
    assert sum(p.numel() for p in encoder.parameters()) == expected
    want = {k: s for k, s in torchvision_resnet_shapes(depth).items() if not k.startswith("fc.")}
    assert {k: tuple(v.shape) for k, v in encoder.state_dict().items()} == want  # names and shapes
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert sum(math.prod(s) for k, s in want.items() if not k.endswith(buffers)) == expected


@pytest.mark.parametrize("fmt", ["pth", "safetensors", "wrapped"])
def test_a_torchvision_layout_file_loads_exactly(fmt: str, tmp_path: Path) -> None:
    """fc keys are ignored, a ``module.`` prefix is stripped, ``state_dict`` wrappers are opened."""
    state = torchvision_like_state(34)
    prefixed = {f"module.{k}": v for k, v in state.items()}
    path = tmp_path / f"w.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    if fmt == "safetensors":
        save_file(prefixed, str(path))
    else:
        torch.save({"state_dict": prefixed, "epoch": 3} if fmt == "wrapped" else prefixed, path)
    config = config_for(path, "resnet34-unet")
    net = build_model(config, generator=torch.Generator().manual_seed(0))
    assert load_encoder_weights(net, config)
    got = net.encoder.state_dict()
    assert set(got) == {k for k in state if not k.startswith("fc.")}
    for key, value in got.items():
        assert torch.equal(value, state[key]), key


def test_no_file_loads_nothing_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(torchvision_like_state(18), path)
    config = config_for(path)
    net = build_model(dataclasses.replace(config, encoder_weights="", encoder_weights_sha256=""))
    assert not load_encoder_weights(net, dataclasses.replace(config, encoder_weights="", encoder_weights_sha256=""))
    torch.save(torchvision_like_state(18, seed=1), path)  # replaced after planning
    changed = r"encoder weights changed since planning .*plan a new run$"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {changed}"):
        load_encoder_weights(net, config)


def _write(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("name", "edit", "message"),
    [
        ("resnet34-unet", lambda s: s, r"lacks 80 tensor\(s\) of the encoder, the first 'layer1\.2\.conv1\.weight'"),
        ("resnet18-unet", lambda s: {**s, "layer5.0.conv1.weight": torch.zeros(1)}, r"unexpected key 'layer5\.0"),
        (
            "resnet18-unet",
            lambda s: {**s, "layer2.0.conv1.weight": torch.zeros(16, 8, 5, 5)},
            r"layer2\.0\.conv1\.weight is \(16, 8, 5, 5\), the encoder needs \(16, 8, 3, 3\)",
        ),
        ("resnet50-unet", lambda s: s, r"lacks 165 tensor\(s\) of the encoder, the first 'layer1\.0\.conv3\.weight'"),
    ],
    ids=["resnet18-for-34", "unknown-key", "shape", "resnet18-for-50"],
)
def test_a_file_that_does_not_fit_is_one_line(name: str, edit, message: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = _write(tmp_path / "w.pth", edit(torchvision_like_state(18)))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}") as error:
        check_encoder_weights(config_for(path, name))
    assert "\n" not in str(error.value)


def test_another_width_is_a_shape_mismatch(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.pth", torchvision_like_state(18, width=16))
    with pytest.raises(ConfigError, match=r"conv1\.weight is \(16, 3, 7, 7\), the encoder needs \(8, 3, 7, 7\)"):
        check_encoder_weights(config_for(path))


def test_2d_weights_for_a_3d_network_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.pth", torchvision_like_state(18))
    config = config_for(path, ndim=3, strides=((2, 2, 2),) * 5)
    message = r"holds 2D weights \(conv1\.weight is \(8, 3, 7, 7\)\), the network is 3D; use 3D weights"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}"):
        check_encoder_weights(config)


@pytest.mark.parametrize(
    ("suffix", "content", "message"),
    [
        (".pth", b"not a checkpoint", "not a readable weights file"),
        (".safetensors", b"\x00\x01garbage", "not a readable weights file"),
        (".onnx", b"", r"encoder weights must be a \.pth, \.pt, \.safetensors file"),
    ],
)
def test_an_unreadable_file_is_one_line(suffix: str, content: bytes, message: str, tmp_path: Path) -> None:
    path = tmp_path / f"w{suffix}"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: {message}") as error:
        read_state_dict(path)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="encoder weights file not found"):
        read_state_dict(tmp_path / "missing.pth")


def test_a_file_of_something_else_is_not_a_state_dict(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.pt", [torch.zeros(2)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"holds no state dict"):
        read_state_dict(path)


def test_check_returns_the_files_sha256_and_builds_nothing_real(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.pth", torchvision_like_state(18))
    assert check_encoder_weights(config_for(path)) == sha256(path)


@pytest.mark.parametrize("in_channels", [1, 2, 4])
def test_rgb_weights_adapt_to_other_input_channels_as_timm(in_channels: int, tmp_path: Path) -> None:
    state = torchvision_like_state(18)
    path = _write(tmp_path / "w.pth", state)
    config = config_for(path, in_channels=in_channels)
    net = build_model(config)
    load_encoder_weights(net, config)
    rgb = state["conv1.weight"]
    if in_channels == 1:
        want = rgb[:, 0:1] + rgb[:, 1:2] + rgb[:, 2:3]
    else:
        want = rgb[:, [c % 3 for c in range(in_channels)]] * (3 / in_channels)
    torch.testing.assert_close(net.encoder.conv1.weight.detach(), want)
    torch.testing.assert_close(adapt_input_conv(rgb, 1), rgb.sum(dim=1, keepdim=True))
    with pytest.raises(ValueError, match="cannot adapt a 2-channel"):
        adapt_input_conv(rgb[:, :2], 4)


def test_frozen_stages_get_no_gradient_and_keep_their_batch_norm_statistics(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.pth", torchvision_like_state(18))
    config = config_for(path, frozen_stages=2)  # the stem and layer1
    net = build_model(config, generator=torch.Generator().manual_seed(0))
    load_encoder_weights(net, config)
    encoder = net.encoder
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
    net.eval()
    net.train()  # train() after eval() keeps the frozen batch norms in eval mode
    assert not encoder.bn1.training and not encoder.layer1[0].bn1.training and encoder.layer2[0].bn1.training
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        outputs = net(x)
        sum(o.square().mean() for o in outputs).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
    frozen = ("conv1.", "bn1.", "layer1.")
    for name, param in encoder.named_parameters():
        assert param.requires_grad == (not name.startswith(frozen)), name
        if name.startswith(frozen):
            assert param.grad is None, name
    after = encoder.state_dict()
    for key, value in after.items():
        if key.startswith(frozen):
            assert torch.equal(value, before[key]), key  # weights and running statistics alike
    assert not torch.equal(after["layer2.0.bn1.running_mean"], before["layer2.0.bn1.running_mean"])
    assert not torch.equal(after["layer2.0.conv1.weight"], before["layer2.0.conv1.weight"])


def test_config_checks_are_one_line_and_it_round_trips(tmp_path: Path) -> None:
    path = _write(tmp_path / "w.pth", torchvision_like_state(18))
    config = config_for(path, frozen_stages=5, dropout=0.3)
    assert ResNetUNetConfig.from_dict(config.to_dict()) == config
    assert config.depth == 18 and config.divisor == (32, 32) and config.n_outputs == 4
    with pytest.raises(ConfigError, match=r"^ResNetUNetConfig\.frozen_stages = 6 must be 0 \(none\) to 5"):
        dataclasses.replace(config, frozen_stages=6)
    with pytest.raises(ConfigError, match=r"^ResNetUNetConfig\.encoder_weights_sha256 = '' must be the 64"):
        dataclasses.replace(config, encoder_weights_sha256="")
    with pytest.raises(ConfigError, match=r"^ResNetUNetConfig\.strides\[0\] = \(3, 2\): each stride must be 1 or 2$"):
        dataclasses.replace(config, strides=((3, 2), *STRIDES_2D[1:]))
    with pytest.raises(ConfigError, match=r"^ResNetUNetConfig\.dropout = 1\.0 must be a probability"):
        dataclasses.replace(config, dropout=1.0)
    with pytest.raises(ConfigError, match=r"^ResNetUNetConfig\.name = 'resnet101-unet' is not one of"):
        dataclasses.replace(config, name="resnet101-unet")


def test_plan_is_imagenets_resnet_in_2d_and_the_unets_strides_in_3d() -> None:
    flat = plan_resnet_unet(ModelInputs(2, 1, 3, (96, 160), (1.0, 1.0)), name="resnet50-unet")
    assert flat.strides == STRIDES_2D and flat.encoder_width == 64 and flat.divisor == (32, 32)
    gpu = plan_resnet_unet(ModelInputs(2, 1, 3, (96, 160), (1.0, 1.0), gpu=True))
    assert gpu.decoder_channels == (256, 128, 64, 32, 16)  # segmentation_models_pytorch's
    inputs = ModelInputs(3, 1, 3, (16, 96, 96), (3.0, 1.0, 1.0))
    thin = plan_resnet_unet(inputs)
    unet = plan_unet(inputs).strides[1:6]
    assert thin.strides[: len(unet)] == unet and thin.divisor == plan_unet(inputs).divisor
    assert thin.strides[0] == (1, 2, 2)  # the coarse axis is not halved at first, as in the U-Net
    net = build_model(thin).eval()
    with torch.no_grad():
        assert net(torch.zeros(1, 1, 16, 96, 96)).shape == (1, 3, 16, 96, 96)


def test_dropout_acts_on_the_bottleneck_in_training_only() -> None:
    config = ResNetUNetConfig(2, 1, 2, strides=STRIDES_2D, encoder_width=4, dropout=0.5, deep_supervision=False)
    net = ResNetUNet(config, generator=torch.Generator().manual_seed(0))
    x = torch.randn(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    first, second = net(x), net(x)
    assert not torch.equal(first, second)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_package_exposes_the_network_lazily() -> None:
    assert medseg.models.ResNetUNet is MODELS["resnet34-unet"].build is MODELS["resnet50-unet"].build
