"""Plan the whole run from a dataset's fingerprint: a pure function of the fingerprint and the budget.

The heuristics follow nnU-Net v2, scaled to the hardware:

* target spacing = median spacing; when the data is anisotropic (coarsest/finest median spacing > 3), the
  coarse axis takes the 10th percentile of its spacings instead, so thin-slice scans are not thrown away;
* normalisation: a channel named CT is clipped to the foreground's 0.5/99.5 percentiles and z-scored with
  the dataset's foreground mean/std; every other channel is z-scored per case;
* patch size starts at the median resampled shape and shrinks the axis of largest physical extent until
  the patch fits the voxel budget of the device (CPU budgets are 8x smaller than GPU ones), then is rounded
  to a multiple of the network's total stride; topology (pooling per axis, kernel sizes) comes from
  :func:`medseg.models.unet_config.nnunet_config`; the network itself is the chosen model's plan rule
  (:data:`medseg.models.registry.MODELS`);
* crop to the non-zero region when that removes more than a quarter of the median image.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from medseg.config.augment import AugmentConfig
from medseg.config.plans import ChannelNorm, DataConfig, InferConfig, Plans, TrainConfig
from medseg.config.windows import parse_normalization
from medseg.errors import ConfigError
from medseg.losses.registry import default_loss, loss_entry
from medseg.models.configs import ModelConfig, ModelInputs
from medseg.models.encoder_weights import check_encoder_weights, pretrain_metadata
from medseg.models.fusion import check_fusion
from medseg.models.registry import MODELS, model_entry
from medseg.models.unet_config import UNetConfig, plan_unet
from medseg.planning.fingerprint import Fingerprint, IntensityStats

__all__ = ["Budget", "default_patch_voxels", "make_plans", "median_extent", "mirror_axes", "target_spacing"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """What the plan must fit and what the user chose: ``device`` 'cpu' or 'cuda', time in seconds (0 = none),
    epochs (0 = the device's default), the network (a name in :data:`medseg.models.registry.MODELS`) and
    the loss (terms of :data:`medseg.losses.registry.LOSSES` joined by ``+``; empty = the labelling's default),
    and the network's dropout probability (None: the model's default)."""

    device: str = "cpu"
    time_budget_s: float = 0.0
    epochs: int = 0
    model: str = "unet"
    encoder_weights: str = ""  # a pretrained encoder's weights file ("": none); the model must have an encoder
    frozen_stages: int = 0  # encoder stages frozen in training (0: none); needs encoder_weights
    loss: str = ""
    fusion: str = "early"  # how the channels meet: early, intermediate or late (medseg.models.fusion)
    resample_channels: bool = False  # channel files on other grids: resampled onto the first channel's
    dropout: float | None = None  # None: the model's default (0, none)
    # a candidate configuration of a time budget (planning/budget.py); 1 / 0: the device's defaults
    spacing_factor: float = 1.0  # multiplies the target spacing (2: half the resolution)
    patch_voxels: int = 0  # the patch's voxel budget
    batch_size: int = 0
    width_factor: float = 1.0  # multiplies the planned U-Net's features per level (0.5: half as wide)
    configuration: str = "native"  # "2d": a 2D network on the axial slices of 3D data (nnU-Net's 2d)
    normalization: str = "auto"  # --normalization (medseg.config.windows): auto = medseg's rule per channel


def target_spacing(spacings: np.ndarray) -> tuple[float, ...]:
    """Median spacing; for anisotropic data the coarse axis takes its 10th percentile (nnU-Net rule)."""
    target = np.median(spacings, axis=0)
    coarse = int(np.argmax(target))
    others = [a for a in range(len(target)) if a != coarse]
    if others and target[coarse] > 3 * min(target[a] for a in others):
        target[coarse] = max(np.percentile(spacings[:, coarse], 10), min(target[a] for a in others))
    return tuple(float(t) for t in target)


def make_plans(fp: Fingerprint, budget: Budget) -> Plans:
    """Plan preprocessing, network, training and inference for ``fp`` on ``budget`` (pure)."""
    gpu = budget.device.startswith("cuda")
    voxel_budget = budget.patch_voxels or default_patch_voxels(fp.ndim, gpu)
    slices = _check_configuration(budget.configuration, fp.ndim)
    if slices:  # the 2D patch budget on the in-plane axes (1, 2); axis 0 is one slice, never resampled coarser
        voxel_budget = budget.patch_voxels or default_patch_voxels(2, gpu)
        spacing, median_shape = _spacing(fp, gpu, voxel_budget, budget.spacing_factor, first_axis=1)
    else:
        spacing, median_shape = _spacing(fp, gpu, voxel_budget, budget.spacing_factor)
    shapes = np.array(fp.shapes)
    crop = bool(np.median(np.prod(np.array(fp.cropped_shapes), axis=1)) < 0.75 * np.median(np.prod(shapes, axis=1)))
    net_ndim = 2 if slices else fp.ndim
    net_spacing = spacing[1:] if slices else spacing
    inputs = ModelInputs(
        net_ndim,
        len(fp.channel_names),
        fp.labels.n_outputs,
        _fit_patch(median_shape[1:] if slices else median_shape, net_spacing, voxel_budget),
        net_spacing,
        gpu,
    )
    # the patch is a multiple of the planned U-Net's total stride, so no window needs padding
    divisor = plan_unet(inputs).divisor
    net_patch = tuple(int(math.ceil(p / d) * d) for p, d in zip(inputs.patch_size, divisor, strict=True))
    patch = (1, *net_patch) if slices else net_patch
    entry = model_entry(budget.model)
    entry.check_ndim(budget.model, net_ndim)
    model = entry.plan(replace(inputs, patch_size=net_patch))
    check_fusion(budget.fusion, model, replace(inputs, patch_size=net_patch))
    if budget.dropout is not None:
        model = replace(model, dropout=budget.dropout)
    if budget.width_factor != 1.0 and isinstance(model, UNetConfig):
        features = tuple(max(MIN_FEATURES, round(f * budget.width_factor)) for f in model.features)
        model = replace(model, features=features)
    model = _encoder_weights(model, budget)
    # 2D: the batch fills twice (CPU) or four times (GPU) the device's default patch budget, so a smaller
    # candidate patch gets a larger batch; 3D: 2
    default_voxels = default_patch_voxels(net_ndim, gpu)
    batch = budget.batch_size or (
        2 if net_ndim == 3 else int(np.clip(((4 if gpu else 2) * default_voxels) // np.prod(patch), 2, 32))
    )
    data = DataConfig(
        ndim=fp.ndim,
        channel_names=fp.channel_names,
        labels=fp.labels,
        target_spacing=spacing,
        normalization=_normalization(fp, pretrained=_imagenet_weights(model), asked=budget.normalization),
        crop_to_nonzero=crop,
        file_ending=fp.file_ending,
        resample_channels=budget.resample_channels,
    )
    mirror = mirror_axes(fp.ndim, fp.labels.names)
    if slices:  # mirroring a one-slice patch along axis 0 does nothing
        mirror = tuple(a for a in mirror if a != 0)
    train = _train_config(fp, budget, batch, mirror, anisotropic=slices or max(spacing) > 3 * min(spacing))
    if slices:  # simulated low resolution zooms every axis, a one-slice patch's too: off
        train = replace(train, augment=replace(train.augment, p_low_res=0.0, through_plane_axis=0))
    infer = InferConfig(overlap=0.5, batch_size=batch, mirror_axes=mirror if gpu else ())
    return Plans(
        dataset_name=fp.name,
        data=data,
        patch_size=patch,
        model=model,
        train=train,
        infer=infer,
        fusion=budget.fusion,  # type: ignore[arg-type]  # one of FUSIONS: check_fusion passed
        configuration="2d" if slices else "native",
    )


MIN_FEATURES = 4  # a narrower candidate keeps at least this many features per level
CONFIGURATIONS = ("native", "2d", "3d")  # --configuration: 3d = native for 3D data


def _check_configuration(configuration: str, ndim: int) -> bool:
    """Whether the plan is the 2D configuration of 3D data; refuses an unknown name or one the data lacks."""
    if configuration not in CONFIGURATIONS:
        raise ConfigError(f"unknown configuration {configuration!r}; choose 2d or 3d")
    if configuration != "native" and ndim != 3:
        raise ConfigError(f"--configuration {configuration} is for 3D data; this dataset is {ndim}D (drop the flag)")
    return configuration == "2d"


def default_patch_voxels(ndim: int, gpu: bool) -> int:
    """The patch's voxel budget of a device (CPU budgets are 4-8x smaller than GPU ones)."""
    return {(2, False): 256**2, (2, True): 512**2, (3, False): 64**3, (3, True): 128**3}[(ndim, gpu)]


def _spacing(
    fp: Fingerprint, gpu: bool, voxel_budget: int, factor: float = 1.0, first_axis: int = 0
) -> tuple[tuple[float, ...], np.ndarray]:
    """Target spacing (axes from ``first_axis`` on coarsened by the CPU rule or times ``factor``; the axes
    before it, e.g. the slice axis of the 2D configuration, stay at the target spacing) and the median image
    shape at that spacing."""
    spacings, shapes = np.array(fp.spacings), np.array(fp.shapes)
    spacing = target_spacing(spacings)
    kept, scaled = spacing[:first_axis], spacing[first_axis:]
    if not gpu and factor == 1.0:  # a candidate's factor replaces the CPU's coarsening rule
        median = np.median(shapes * spacings / np.array(spacing), axis=0)
        scaled = _coarsen_for_context(scaled, median[first_axis:], voxel_budget)
    spacing = (*kept, *(float(s * factor) for s in scaled))
    return spacing, np.median(shapes * spacings / np.array(spacing), axis=0)


def median_extent(fp: Fingerprint) -> np.ndarray:
    """The median image's physical extent per axis (mm): what a patch's coverage is measured against."""
    return np.median(np.array(fp.shapes) * np.array(fp.spacings), axis=0)


def _train_config(
    fp: Fingerprint, budget: Budget, batch: int, mirror: tuple[int, ...], *, anisotropic: bool
) -> TrainConfig:
    gpu = budget.device.startswith("cuda")
    loss = budget.loss or default_loss(fp.labels.overlapping)
    loss_entry(loss, overlapping=fp.labels.overlapping)  # refuse a loss that does not fit the labels now
    return TrainConfig(
        batch_size=batch,
        # with a time budget and no epoch count, time alone decides when to stop
        epochs=budget.epochs or (10**6 if budget.time_budget_s > 0 else 1000 if gpu else 100),
        iterations_per_epoch=250 if gpu else 50,
        val_every=5 if gpu else 10,  # validation of the whole held-out fold costs ~ one CPU epoch
        # nnU-Net's SGD (lr 1e-2, momentum 0.99) is tuned for 250k iterations; a CPU budget allows a few
        # thousand, where AdamW converges several times faster (synthetic demo: val Dice 0.96 after 100
        # iterations against 0.62 with SGD)
        optimizer="sgd" if gpu else "adamw",
        learning_rate=1e-2 if gpu else 3e-3,
        loss=loss,
        augment=replace(AugmentConfig(), flip_axes=mirror, rotate_in_plane_only=anisotropic, p_low_res=0.25),
        time_budget_s=budget.time_budget_s,
        # on CPU the network, not the data, is the bottleneck (augmenting a patch takes ~1-30 ms against
        # ~0.5 s for a forward/backward pass), and a loader process would steal one of few cores
        num_workers=4 if gpu else 0,
    )


_SIDES = re.compile(r"(^|[^a-z])(left|right|l|r)([^a-z]|$)")


def mirror_axes(ndim: int, label_names: dict[int, str]) -> tuple[int, ...]:
    """Axes to mirror in augmentation and TTA: all, except the left-right axis (the last array axis in
    both ITK (z, y, x) volumes and (row, column) images) when class names are sided ('left_lung',
    'right clavicle', 'kidney_L'): mirroring would teach the network that left and right look alike.
    (Found on JSRT, where mirrored training predicted every lung as both left and right.)"""
    sided = any(_SIDES.search(name.lower()) for name in label_names.values())
    return tuple(range(ndim - 1)) if sided else tuple(range(ndim))


def _coarsen_for_context(spacing: tuple[float, ...], median_shape: np.ndarray, voxel_budget: int) -> tuple[float, ...]:
    """CPU rule (nnU-Net's low-resolution idea): when the median image holds more than 4x the patch budget,
    a patch would see too little of the anatomy (a 256² patch of a 1024² chest X-ray cannot tell the heart
    from the lungs), so coarsen the target spacing isotropically until the image is 4x the budget."""
    ratio = float(np.prod(median_shape)) / (4 * voxel_budget)
    if ratio <= 1:
        return spacing
    factor = ratio ** (1 / len(spacing))
    return tuple(float(s * factor) for s in spacing)


def _fit_patch(median_shape: np.ndarray, spacing: tuple[float, ...], voxel_budget: int) -> tuple[int, ...]:
    patch = np.maximum(np.round(median_shape), 8).astype(float)
    while np.prod(patch) > voxel_budget:
        extent = patch * np.array(spacing)
        axis = int(np.argmax(extent))
        patch[axis] = max(8.0, math.floor(patch[axis] * 0.9))
    return tuple(int(p) for p in patch)


def _encoder_weights(model: ModelConfig, budget: Budget) -> ModelConfig:
    """Record the pretrained encoder's file (absolute path, SHA-256) and the frozen stages in the model's
    config, after checking that the file fits the planned encoder (now, before any run folder exists)."""
    if not budget.encoder_weights and not budget.frozen_stages:
        return model
    if not hasattr(model, "encoder_weights"):
        names = [n for n, e in MODELS.items() if "encoder_weights" in {f.name for f in fields(e.config)}]
        raise ConfigError(
            f"model {model.name!r} has no pretrained encoder for --encoder-weights / --frozen-stages; "
            f"choose one of {', '.join(sorted(names))}"
        )
    if not budget.encoder_weights:
        raise ConfigError("--frozen-stages freezes pretrained layers: give their file with --encoder-weights")
    if budget.fusion != "early":
        raise ConfigError(f"--encoder-weights loads one encoder: use --fusion early, not {budget.fusion!r}")
    pretrained: Any = model  # a config with encoder fields (checked above)
    given = Path(budget.encoder_weights).expanduser()  # errors name the path as the user gave it
    # the config requires a digest with a file; a placeholder until the file has been read and checked
    planned = replace(pretrained, encoder_weights=str(given), encoder_weights_sha256="0" * 64)
    if hasattr(planned, "frozen_stages"):
        planned = replace(planned, frozen_stages=budget.frozen_stages)
    elif budget.frozen_stages:
        raise ConfigError(f"model {model.name!r} has no encoder stages to freeze; drop --frozen-stages")
    sha256 = check_encoder_weights(planned)
    return replace(planned, encoder_weights=str(given.resolve()), encoder_weights_sha256=sha256)


def _imagenet_weights(model: ModelConfig) -> bool:
    """Whether the model loads pretrained weights that expect ImageNet's normalisation: any file except one
    written by ``medseg pretrain``, whose encoder learnt on the plans' own normalisation (kept as planned)."""
    name = getattr(model, "encoder_weights", "")
    return bool(name) and pretrain_metadata(Path(name)) is None


# ImageNet's per-channel statistics (RGB), and their means for other channel counts (timm's grey values)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
IMAGENET_GREY_MEAN, IMAGENET_GREY_STD = 0.449, 0.226
_EIGHT_BIT_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".gif")


def _normalization(fp: Fingerprint, *, pretrained: bool, asked: str = "auto") -> tuple[ChannelNorm, ...]:
    """Per channel: as a pretrained encoder expects (``imagenet``), as asked (``--normalization``, the same for
    every channel), or medseg's own rule (``ct``, ``zscore``)."""
    pairs = list(zip(fp.channel_names, fp.foreground_intensity, strict=True))
    scheme, low, high = parse_normalization(asked)
    if pretrained and scheme != "auto":
        raise ConfigError(
            f"--normalization {asked} and --encoder-weights: pretrained weights expect ImageNet's normalisation "
            "(drop --normalization)"
        )
    if scheme == "ct":
        return tuple(_ct_norm(stats) for _, stats in pairs)
    if scheme in ("zscore", "window", "rescale"):
        return tuple(ChannelNorm(scheme, low, high) for _ in pairs)  # type: ignore[arg-type]
    if scheme == "histogram":
        if len(fp.landmarks) != len(pairs):
            raise ConfigError("--normalization histogram-match: the fingerprint has no histogram landmarks (re-plan)")
        return tuple(ChannelNorm("histogram", landmarks=landmarks) for landmarks in fp.landmarks)
    if not pretrained:
        return tuple(_channel_norm(name, stats) for name, stats in pairs)
    rgb = len(pairs) == 3
    return tuple(
        _imagenet_norm(
            name,
            stats,
            fp.file_ending,
            IMAGENET_MEAN[c] if rgb else IMAGENET_GREY_MEAN,
            IMAGENET_STD[c] if rgb else IMAGENET_GREY_STD,
        )
        for c, (name, stats) in enumerate(pairs)
    )


def _imagenet_norm(name: str, stats: IntensityStats, file_ending: str, mean: float, std: float) -> ChannelNorm:
    """Which range becomes [0, 1] before ImageNet's ``(x - mean) / std``: 0..255 for 8-bit images, the
    dataset's foreground 0.5/99.5 percentiles for CT (as ``ct``), each case's own percentiles otherwise
    (``clip_low == clip_high``: MRI and other arbitrary units)."""
    if file_ending.lower() in _EIGHT_BIT_SUFFIXES and stats.p00_5 >= 0 and stats.p99_5 <= 255:
        return ChannelNorm("imagenet", 0.0, 255.0, mean, std)
    if name.strip().upper() == "CT" and stats.p99_5 > stats.p00_5:
        return ChannelNorm("imagenet", stats.p00_5, stats.p99_5, mean, std)
    return ChannelNorm("imagenet", 0.0, 0.0, mean, std)


def _channel_norm(name: str, stats: IntensityStats) -> ChannelNorm:
    if name.strip().upper() == "CT":
        return _ct_norm(stats)
    return ChannelNorm("zscore")


def _ct_norm(stats: IntensityStats) -> ChannelNorm:
    return ChannelNorm("ct", stats.p00_5, stats.p99_5, stats.mean, max(stats.std, 1e-8))
