"""Pretrained encoder weights from a local file: read, check against the encoder, adapt, load.

A file is a ``.pth`` / ``.pt`` (``torch.load(weights_only=True)``: tensors only, no pickled code; a dict
wrapping the state dict under ``"state_dict"`` or ``"model"`` is unwrapped) or a ``.safetensors`` file.
Keys lose a leading ``module.`` (DataParallel), ``encoder.`` or ``backbone.`` and the classifier's keys
(``fc.*``) are dropped, so torchvision's and timm's ImageNet ResNets load as published. Whatever does not
fit the encoder (a missing or unexpected key, a shape, 2D weights for a 3D network) is one
:class:`~medseg.errors.ConfigError` naming the file and the first problem. Files written by ``medseg
pretrain`` carry a small ``medseg_pretrain`` entry beside ``state_dict`` (:func:`pretrain_metadata`): their
encoder learnt on the plans' own normalisation, not ImageNet's. The first convolution is
adapted to the input channels as timm's ``adapt_input_conv``: summed over its input channels for one
channel, repeated and scaled by ``3 / C`` for ``C`` channels.

``medseg plan`` calls :func:`check_encoder_weights` (is the file readable, does it fit, its SHA-256);
training calls :func:`load_encoder_weights` on a fresh start only (a resumed run's checkpoint holds the
weights, and prediction never reads the file).

Example:
    >>> net = build_model(config)                           # doctest: +SKIP
    >>> load_encoder_weights(net, config)                   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from medseg.errors import ConfigError

__all__ = [
    "adapt_input_conv",
    "check_encoder_weights",
    "fit_state_dict",
    "load_encoder_weights",
    "pretrain_metadata",
    "read_state_dict",
    "sha256_of",
]

logger = logging.getLogger(__name__)

SUFFIXES = (".pth", ".pt", ".safetensors")
PREFIXES = ("module.", "encoder.", "backbone.")
IGNORED = ("fc.",)  # the ImageNet classifier
INPUT_CONV = "conv1.weight"
PRETRAIN_KEY = "medseg_pretrain"  # the metadata entry of a file written by `medseg pretrain`


def sha256_of(path: Path) -> str:
    """The SHA-256 of the file at ``path``, as 64 lower-case hex digits."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the encoder weights ({exc.strerror or exc})") from exc
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors of a ``.pth`` / ``.pt`` / ``.safetensors`` file, by key, on the CPU."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"{path}: encoder weights must be a {', '.join(SUFFIXES)} file")
    if not path.is_file():
        raise ConfigError(f"{path}: encoder weights file not found")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path), device="cpu")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader's failure is the same user error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: not a readable weights file ({first[:200]})") from exc
    for wrapper in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(wrapper), dict):
            data = data[wrapper]
            break
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in data.items()):
        raise ConfigError(f"{path}: holds no state dict (a mapping of parameter names to tensors)")
    return data


def pretrain_metadata(path: Path) -> dict[str, Any] | None:
    """The ``medseg_pretrain`` metadata of a weights file written by ``medseg pretrain`` (method, model,
    plans fingerprint), or None for any other file (ImageNet weights, a ``.safetensors`` file)."""
    path = Path(path)
    if path.suffix.lower() not in (".pth", ".pt") or not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable: read_state_dict names the problem
        return None
    meta = data.get(PRETRAIN_KEY) if isinstance(data, dict) else None
    return meta if isinstance(meta, dict) else None


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def adapt_input_conv(weight: Tensor, in_channels: int) -> Tensor:
    """timm's ``adapt_input_conv``: a first convolution ``(O, I, *k)`` for ``in_channels`` inputs.

    One channel: the sum over the file's input channels. Otherwise (the file must have 3): RGB repeated
    to ``in_channels`` and scaled by ``3 / in_channels``, so a grey image repeated per channel gives the
    activations it would give as RGB. Raises ``ValueError`` for other combinations.
    """
    have = weight.shape[1]
    if have == in_channels:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    if have != 3:
        raise ValueError(f"cannot adapt a {have}-channel first convolution to {in_channels} channels")
    repeat = math.ceil(in_channels / 3)
    return weight.repeat(1, repeat, *([1] * (weight.dim() - 2)))[:, :in_channels] * (3 / in_channels)


def fit_state_dict(state: dict[str, Tensor], encoder: nn.Module, path: Path) -> dict[str, Tensor]:
    """``state`` (a file's tensors) made to fit ``encoder``'s state dict, or a one-line ConfigError.

    Prefixes are stripped, ``fc.*`` dropped, the first convolution adapted to the input channels; a
    batch norm's ``num_batches_tracked`` the file lacks keeps the encoder's value.
    """
    want = encoder.state_dict()
    fitted: dict[str, Tensor] = {}
    for raw, tensor in state.items():
        key = _strip(raw)
        if key.startswith(IGNORED):
            continue
        if key not in want:
            raise ConfigError(
                f"{path}: unexpected key {raw!r}; the encoder has no such tensor (weights of another network?)"
            )
        fitted[key] = tensor
    missing = [k for k in want if k not in fitted and not k.endswith("num_batches_tracked")]
    if missing:
        raise ConfigError(f"{path}: lacks {len(missing)} tensor(s) of the encoder, the first {missing[0]!r}")
    for key, target in want.items():
        if key not in fitted:
            fitted[key] = target
            continue
        got = fitted[key]
        if got.dim() != target.dim() and key == INPUT_CONV:
            file_dims, model_dims = got.dim() - 2, target.dim() - 2
            raise ConfigError(
                f"{path}: holds {file_dims}D weights ({key} is {tuple(got.shape)}), the network is {model_dims}D; "
                f"use {model_dims}D weights or train without --encoder-weights"
            )
        if key == INPUT_CONV and got.dim() == target.dim() and got.shape[1] != target.shape[1]:
            try:
                got = adapt_input_conv(got, target.shape[1])
            except ValueError as exc:
                raise ConfigError(f"{path}: {key} {tuple(got.shape)}: {exc}") from exc
        if got.shape != target.shape:
            raise ConfigError(
                f"{path}: {key} is {tuple(got.shape)}, the encoder needs {tuple(target.shape)} "
                "(another ResNet depth or width, or pre-trained with other plans?)"
            )
        fitted[key] = got.to(target.dtype)
    return fitted


def _encoder(model: nn.Module) -> nn.Module:
    """``model.encoder``; a slice-wise wrapper (the ``2d`` configuration of 3D data) is looked through."""
    inner = getattr(model, "net", None)
    if not hasattr(model, "encoder") and isinstance(inner, nn.Module):
        model = inner
    encoder = getattr(model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ConfigError(
            f"{type(model).__name__} has no single encoder to load weights into (encoder weights need fusion 'early')"
        )
    return encoder


def check_encoder_weights(config: Any) -> str:
    """Check that ``config.encoder_weights`` fits the encoder of the network ``config`` describes; return
    the file's SHA-256. The network is built on the meta device (shapes only, no memory, no init cost)."""
    from medseg.models.registry import build_model

    path = Path(config.encoder_weights)
    state = read_state_dict(path)
    with torch.device("meta"):
        model = build_model(config)
    fit_state_dict(state, _encoder(model), path)
    return sha256_of(path)


def load_encoder_weights(model: nn.Module, config: Any) -> bool:
    """Load ``config.encoder_weights`` (when the config names a file) into ``model.encoder``; True if loaded.

    The file's SHA-256 must be ``config.encoder_weights_sha256`` (recorded by ``medseg plan``): a file
    changed since planning is refused. Freezing is the network's own (``frozen_stages``), applied at build.
    """
    name = getattr(config, "encoder_weights", "")
    if not name:
        return False
    path = Path(name)
    digest = sha256_of(path)
    if digest != config.encoder_weights_sha256:
        raise ConfigError(
            f"{path}: encoder weights changed since planning (SHA-256 {digest[:12]}..., plans.json records "
            f"{config.encoder_weights_sha256[:12]}...); restore the file or plan a new run"
        )
    encoder = _encoder(model)
    encoder.load_state_dict(fit_state_dict(read_state_dict(path), encoder, path))
    logger.info("encoder weights loaded from %s (%d frozen stage(s))", path, getattr(config, "frozen_stages", 0))
    return True
