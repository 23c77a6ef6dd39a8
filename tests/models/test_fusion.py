"""Multi-modal fusion (models/fusion.py): early, intermediate and late networks built by ``build_network``."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from medseg.errors import ConfigError
from medseg.labels import LabelSpec
from medseg.models.configs import ModelInputs
from medseg.models.fusion import (
    IntermediateFusion,
    LateFusion,
    build_network,
    check_fusion,
    intermediate_models,
    splits_into_encoder_decoder,
)
from medseg.models.registry import MODELS, build_model
from medseg.planning.fingerprint import Fingerprint, IntensityStats
from medseg.planning.plans import Budget, make_plans
from tests.models.test_registry import (
    IGNORE_JIT_DEPRECATION,
    IGNORE_LEGACY_ONNX,
    IGNORE_ONNX_INSTANCE_NORM,
    IGNORE_TORCH_TRACER,
    tiny,
)

FUSED = ("intermediate", "late")
FAMILY = ("attention-unet", "classic-unet", "residual-unet", "unet")  # built as encoder -> decoder -> heads
CLASSES = ("attention-unet", "residual-unet", "unet")  # one name per network class of the family
SIZES = {2: (21, 19), 3: (9, 13, 11)}  # odd sizes, not multiples of the tiny networks' divisors


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def image(ndim: int, batch: int = 1, channels: int = 2, grow: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, *(s + grow for s in SIZES[ndim]), generator=seeded(1))


def net(fusion: str, name: str = "unet", ndim: int = 2, **overrides: object) -> torch.nn.Module:
    return build_network(tiny(name, ndim, **overrides), fusion, generator=seeded())


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("fusion", FUSED)
def test_fused_networks_give_the_shapes_of_the_early_one(fusion: str, ndim: int) -> None:
    early, fused = net("early", ndim=ndim), net(fusion, ndim=ndim)
    x = image(ndim, batch=2)
    with torch.no_grad():
        assert fused.eval()(x).shape == early.eval()(x).shape == (2, 3, *SIZES[ndim])
        want = [o.shape for o in early.train()(x)]
        got = fused.train()(x)
    assert isinstance(got, list) and [o.shape for o in got] == want and len(want) == 2  # deep supervision


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("fusion", FUSED)
def test_gradients_reach_every_branch_and_every_parameter(fusion: str, name: str) -> None:
    fused = net(fusion, name).train()
    outputs = fused(image(2))
    sum(o.square().mean() for o in outputs).backward()
    for param_name, param in fused.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, param_name
    branches = fused.encoders if isinstance(fused, IntermediateFusion) else fused.branches  # type: ignore[union-attr]
    assert len(branches) == 2


@pytest.mark.parametrize("fusion", FUSED)
def test_each_branch_sees_its_own_modality_only(fusion: str) -> None:
    fused = net(fusion).eval()
    branches = fused.encoders if isinstance(fused, IntermediateFusion) else fused.branches  # type: ignore[union-attr]
    first_convs = [next(m for m in b.modules() if isinstance(m, torch.nn.Conv2d)) for b in branches]
    assert [c.in_channels for c in first_convs] == [1, 1]
    assert not torch.equal(first_convs[0].weight, first_convs[1].weight)  # the generator seeds each branch anew
    x = image(2)
    changed = x.clone()
    changed[:, 1] = torch.randn(changed[:, 1].shape, generator=seeded(5))
    with torch.no_grad():  # the first branch does not see the second modality change ...
        for before, after in zip(branches[0](x[:, :1]), branches[0](changed[:, :1]), strict=True):
            assert torch.equal(before, after)
        assert not torch.allclose(fused(x), fused(changed))  # ... and the second modality reaches the output


@pytest.mark.parametrize("fusion", FUSED)
def test_fused_networks_differ_from_early_fusion(fusion: str) -> None:
    early, fused = net("early"), net(fusion)
    assert {k for k in fused.state_dict()} != {k for k in early.state_dict()}
    x = image(2)
    with torch.no_grad():
        assert not torch.allclose(fused.eval()(x), early.eval()(x))


def test_late_fusion_is_exactly_the_mean_of_the_branch_logits() -> None:
    fused = net("late")
    assert isinstance(fused, LateFusion)
    x = image(2)
    with torch.no_grad():
        fused.eval()
        parts = [branch(x[:, c : c + 1]) for c, branch in enumerate(fused.branches)]
        assert torch.equal(fused(x), (parts[0] + parts[1]) / 2)
        fused.train()
        outputs = fused(x)
        per_branch = [branch(x[:, c : c + 1]) for c, branch in enumerate(fused.branches)]
    assert isinstance(outputs, list) and len(outputs) == 2
    for k, out in enumerate(outputs):  # each deep-supervision output is averaged too
        assert torch.equal(out, (per_branch[0][k] + per_branch[1][k]) / 2)


def test_intermediate_fusion_starts_as_the_mean_of_the_modalities_features() -> None:
    fused = net("intermediate")
    assert isinstance(fused, IntermediateFusion)
    x = image(2)
    with torch.no_grad():
        features = [encoder(x[:, c : c + 1]) for c, encoder in enumerate(fused.encoders)]
        for level, fuse in enumerate(fused.fuse):
            got = fuse(torch.cat([f[level] for f in features], dim=1))
            torch.testing.assert_close(got, (features[0][level] + features[1][level]) / 2)


def test_intermediate_fusion_applies_the_networks_bottleneck_dropout() -> None:
    fused = net("intermediate", dropout=0.5)
    assert isinstance(fused.dropout, torch.nn.Dropout2d)
    x = image(2)
    with torch.no_grad():
        assert torch.equal(fused.eval()(x), fused(x))  # inactive in eval mode
        assert not torch.equal(fused.train()(x)[0], fused(x)[0])  # active in training


@pytest.mark.parametrize("fusion", ["early", *FUSED])
def test_same_seed_same_weights(fusion: str) -> None:
    first, again, other = (build_network(tiny("unet", 2), fusion, generator=seeded(s)) for s in (3, 3, 4))
    weights = [list(n.state_dict().values()) for n in (first, again, other)]
    assert all(torch.equal(a, b) for a, b in zip(weights[0], weights[1], strict=True))
    assert not all(torch.equal(a, c) for a, c in zip(weights[0], weights[2], strict=True))


def test_early_fusion_is_the_registered_network_itself() -> None:
    early, plain = net("early"), build_model(tiny("unet", 2), generator=seeded())
    assert type(early) is type(plain)
    assert all(torch.equal(a, b) for a, b in zip(early.state_dict().values(), plain.state_dict().values(), strict=True))


@pytest.mark.parametrize(("fusion", "ndim"), [("intermediate", 2), ("intermediate", 3), ("late", 2)])
@IGNORE_TORCH_TRACER
@IGNORE_JIT_DEPRECATION
def test_fused_networks_trace_with_parity_on_other_sizes(fusion: str, ndim: int) -> None:
    fused = net(fusion, ndim=ndim).eval()
    x, other = image(ndim, batch=1), image(ndim, batch=1, grow=3)
    with torch.no_grad(), torch.jit.optimized_execution(False):
        traced = torch.jit.trace(fused, x, check_trace=False)
        for sample in (x, other):
            torch.testing.assert_close(traced(sample), fused(sample))


@pytest.mark.parametrize("name", CLASSES)
@pytest.mark.parametrize("fusion", FUSED)
@IGNORE_JIT_DEPRECATION
def test_fused_networks_of_scriptable_models_script_in_both_modes(fusion: str, name: str) -> None:
    fused = net(fusion, name)
    scripted = torch.jit.script(fused)
    x = image(2)
    with torch.no_grad():
        for training in (False, True):
            fused.train(training)
            scripted.train(training)
            got, want = scripted(x), fused(x)
            got, want = (got, want) if isinstance(want, list) else ([got], [want])
            assert len(got) == len(want) == (2 if training else 1)
            for a, b in zip(got, want, strict=True):
                torch.testing.assert_close(a, b)


@pytest.mark.parametrize("fusion", FUSED)
@IGNORE_TORCH_TRACER
@IGNORE_JIT_DEPRECATION
@IGNORE_ONNX_INSTANCE_NORM
@IGNORE_LEGACY_ONNX
def test_fused_networks_export_to_onnx_with_parity(fusion: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    fused = net(fusion, upsample="interpolate").eval()
    x = image(2, batch=1)
    axes = {0: "batch", 2: "size0", 3: "size1"}
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(
            fused,
            (x,),
            buffer,
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
        )
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for sample in (x, image(2, batch=2, grow=5)):
        (got,) = session.run(None, {"image": sample.numpy()})
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(got), fused(sample), rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("fusion", FUSED)
def test_a_single_channel_is_refused_for_intermediate_and_late(fusion: str) -> None:
    config = tiny("unet", 2, in_channels=1)
    message = rf"^fusion '{fusion}' needs at least 2 channels \(modalities\); this data has 1: use --fusion early$"
    with pytest.raises(ConfigError, match=message):
        build_network(config, fusion)
    build_network(config, "early")  # a single channel is what early fusion always took


def test_an_unknown_fusion_names_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"^unknown fusion 'middle'; choose one of early, intermediate, late$"):
        build_network(tiny("unet", 2), "middle")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_intermediate_fusion_fits_exactly_the_encoder_decoder_networks(name: str) -> None:
    """Every registered network: built as encoder -> decoder -> heads, intermediate fusion works on it;
    otherwise the plan-time check is one line naming the networks it fits (late fusion fits all)."""
    ndim = 2 if 2 in MODELS[name].ndims else 3
    inputs = ModelInputs(ndim, 2, 3, (32, 32) if ndim == 2 else (16, 32, 32), (1.0,) * ndim)
    config = MODELS[name].plan(inputs)
    supported = intermediate_models(inputs)
    assert set(FAMILY) <= set(supported)
    if splits_into_encoder_decoder(config):
        assert name in supported
        fused = build_network(config, "intermediate", generator=seeded()).eval()
        with torch.no_grad():
            assert fused(torch.zeros(1, 2, *inputs.patch_size)).shape == (1, 3, *inputs.patch_size)
    else:
        assert name not in supported
        message = (
            f"fusion 'intermediate' needs a network built as encoder -> decoder -> heads, which model {name!r} "
            f"is not; choose one of {', '.join(supported)} (or --fusion late, which fits every model)"
        )
        with pytest.raises(ConfigError) as error:
            check_fusion("intermediate", config, inputs)
        assert str(error.value) == message
        check_fusion("late", config, inputs)


def test_the_structure_check_builds_nothing_real_and_draws_no_random_numbers() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert splits_into_encoder_decoder(MODELS["classic-unet"].plan(ModelInputs(3, 2, 3, (64,) * 3, (1.0,) * 3)))
    assert torch.equal(torch.rand(3), expected)


def _fingerprint(channels: tuple[str, ...]) -> Fingerprint:
    return Fingerprint(
        name="t",
        shapes=((64, 64),) * 3,
        spacings=((1.0, 1.0),) * 3,
        cropped_shapes=((64, 64),) * 3,
        channel_names=channels,
        labels=LabelSpec({0: "bg", 1: "a"}, (0, 1)),
        foreground_intensity=tuple(IntensityStats(10.0, 5.0, -100.0, 300.0) for _ in channels),
        file_ending=".nii.gz",
    )


@pytest.mark.parametrize("fusion", FUSED)
def test_plans_record_the_fusion_and_refuse_it_for_one_channel(fusion: str) -> None:
    plans = make_plans(_fingerprint(("T1", "FLAIR")), Budget(fusion=fusion))
    assert plans.fusion == fusion and plans.model.in_channels == 2
    assert make_plans(_fingerprint(("T1", "FLAIR")), Budget()).fusion == "early"
    with pytest.raises(ConfigError, match="needs at least 2 channels"):
        make_plans(_fingerprint(("T1",)), Budget(fusion=fusion))


def test_plans_refuse_intermediate_fusion_for_a_network_without_encoder_and_decoder() -> None:
    inputs = ModelInputs(2, 2, 3, (32, 32), (1.0, 1.0))
    others = [n for n in sorted(MODELS) if 2 in MODELS[n].ndims and n not in intermediate_models(inputs)]
    if not others:
        pytest.skip("every registered 2D network is built as encoder -> decoder -> heads")
    with pytest.raises(ConfigError, match=rf"which model '{others[0]}' is not; choose one of "):
        make_plans(_fingerprint(("T1", "FLAIR")), Budget(model=others[0], fusion="intermediate"))
    assert make_plans(_fingerprint(("T1", "FLAIR")), Budget(model=others[0], fusion="late")).fusion == "late"


def test_old_plans_without_fusion_load_as_early(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from medseg.config.plans import load_plans, save_plans

    plans = make_plans(_fingerprint(("T1", "FLAIR")), Budget(fusion="late"))
    path = tmp_path / "plans.json"
    save_plans(plans, path)
    data = json.loads(path.read_text())
    assert data["fusion"] == "late" and data["data"]["resample_channels"] is False and data["version"] == 2
    del data["fusion"], data["data"]["resample_channels"]  # as a plans.json of an earlier medseg
    path.write_text(json.dumps(data))
    old = load_plans(path)
    assert old.fusion == "early" and old.data.resample_channels is False
    assert dataclasses.replace(old, fusion="late") == plans
