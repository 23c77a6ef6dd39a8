"""Configuration as data: frozen dataclasses serialised to a versioned ``plans.json``.

A run folder's ``plans.json`` holds everything that preprocessing, training and prediction need; an
experiment variant is a difference in this file or a CLI flag, never a subclass. Unknown keys are errors.

Example:
    >>> plans = load_plans(Path("run/plans.json"))           # doctest: +SKIP
    >>> plans.patch_size, plans.model.name, plans.model.features
    ((40, 56, 40), 'unet', (16, 32, 64, 128))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from medseg.config.augment import AugmentConfig
from medseg.config.budget import BudgetChoice
from medseg.config.loss import LossParams
from medseg.config.migrate import upgrade
from medseg.config.postprocessing import PostProcessing
from medseg.config.semi_supervised import SemiSupervisedConfig
from medseg.errors import ConfigError
from medseg.fileutil import atomic_write_json
from medseg.labels import LabelSpec
from medseg.models.configs import ModelConfig
from medseg.serial import from_dict, to_dict

__all__ = [
    "PLANS_VERSION",
    "DataConfig",
    "InferConfig",
    "Plans",
    "TrainConfig",
    "load_plans",
    "save_plans",
]

PLANS_VERSION = 2


@dataclass(frozen=True)
class ChannelNorm:
    """How one input channel is normalised.

    ``ct``: clip to the dataset's foreground percentiles, then z-score with the dataset's foreground mean/std
    (Hounsfield units mean the same in every scan). ``zscore``: per-case mean/std (MRI, X-ray, microscopy:
    arbitrary units that differ between scans). ``imagenet`` (a pretrained encoder's input): clip to
    ``[clip_low, clip_high]`` (when ``clip_low == clip_high``, to the case's own 0.5/99.5 percentiles),
    map that range to [0, 1], then ``(x - mean) / std`` with the ImageNet statistics the weights expect.
    ``window``: a fixed range ``[clip_low, clip_high]`` (a CT window, :mod:`medseg.config.windows`) mapped to
    [0, 1], clipped. ``rescale``: the case's own 0.5/99.5 percentiles mapped to [0, 1], clipped.
    ``histogram``: the case's histogram landmarks mapped piecewise-linearly onto ``landmarks``, the standard
    scale learnt from the training cases (Nyúl's histogram standardisation, :mod:`medseg.preprocessing.histogram`).
    """

    scheme: Literal["ct", "zscore", "imagenet", "window", "rescale", "histogram"]
    clip_low: float = 0.0
    clip_high: float = 0.0
    mean: float = 0.0
    std: float = 1.0
    landmarks: tuple[float, ...] = ()


@dataclass(frozen=True)
class DataConfig:
    """What the data is and how preprocessing turns it into network input."""

    ndim: int
    channel_names: tuple[str, ...]
    labels: LabelSpec
    target_spacing: tuple[float, ...]  # array axis order, mm
    normalization: tuple[ChannelNorm, ...]
    crop_to_nonzero: bool = False
    file_ending: str = ".nii.gz"
    # channel files of a case on different grids: resampled onto the first channel's (--resample-channels)
    resample_channels: bool = False


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, loss (LOSSES terms joined by ``+``, :mod:`medseg.losses.registry`), budget."""

    batch_size: int = 2
    epochs: int = 100
    iterations_per_epoch: int = 50
    optimizer: Literal["sgd", "adamw"] = "sgd"
    learning_rate: float = 1e-2
    weight_decay: float = 3e-5
    momentum: float = 0.99
    schedule: Literal["poly", "cosine"] = "poly"
    warmup_epochs: int = 0
    grad_clip: float = 12.0
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    loss: str = "dice+ce"
    val_every: int = 5
    include_background: bool = False
    batch_dice: bool = False  # region terms over the whole batch (True) or per sample, then averaged (False)
    loss_params: LossParams = field(default_factory=LossParams)
    foreground_fraction: float = 1 / 3
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    deterministic: bool = False
    num_workers: int = 1
    folds: int = 5
    fold: int = 0
    time_budget_s: float = 0.0  # 0 = no budget; otherwise stop cleanly when it is spent
    # Mean Teacher on a folder of unlabelled scans (medseg.training.mean_teacher); None: supervised only
    semi_supervised: SemiSupervisedConfig | None = None


@dataclass(frozen=True)
class InferConfig:
    overlap: float = 0.5
    batch_size: int = 2
    mirror_axes: tuple[int, ...] = ()
    postprocessing: PostProcessing = field(default_factory=PostProcessing)


@dataclass(frozen=True)
class Plans:
    """Everything a run needs; ``version`` guards against files from incompatible versions.

    ``patch_size`` (array axis order, voxels of the planned grid) is the network input in training and the
    sliding window in prediction: one value for both. ``model`` is any registered model's config; its
    ``name`` says which.
    """

    dataset_name: str
    data: DataConfig
    patch_size: tuple[int, ...]
    model: ModelConfig
    train: TrainConfig
    infer: InferConfig
    # how the channels meet in the network (medseg.models.fusion): stacked, per-modality encoders, or networks
    fusion: Literal["early", "intermediate", "late"] = "early"
    # with a time budget: the configurations measured on the device and the one chosen (planning/budget.py)
    budget: BudgetChoice | None = None
    # "native": the network has the data's dimensionality; "2d": a 2D network segments 3D data slice by slice
    # (axis 0, the patch is 1 x H x W; nnU-Net's 2d configuration), see medseg.models.slices
    configuration: Literal["native", "2d"] = "native"
    version: int = PLANS_VERSION

    def __post_init__(self) -> None:
        if len(self.patch_size) != self.data.ndim or any(p < 1 for p in self.patch_size):
            raise ConfigError(f"patch_size {self.patch_size} must have {self.data.ndim} positive sizes (data.ndim)")
        if self.configuration == "2d":
            if self.data.ndim != 3 or self.model.ndim != 2 or self.patch_size[0] != 1:
                raise ConfigError(
                    f"configuration '2d' needs 3D data, a 2D model and a 1 x H x W patch; got data.ndim "
                    f"{self.data.ndim}, model.ndim {self.model.ndim}, patch_size {self.patch_size}"
                )
        elif self.model.ndim != self.data.ndim:
            raise ConfigError(f"model.ndim {self.model.ndim} differs from data.ndim {self.data.ndim}")
        img_size = getattr(self.model, "img_size", None)  # UNETR's fixed input: every patch must fit in it
        window = self.patch_size[len(self.patch_size) - self.model.ndim :]
        if img_size is not None and any(p > s for p, s in zip(window, img_size, strict=True)):
            raise ConfigError(
                f"patch_size {self.patch_size} exceeds model.img_size {img_size}; set img_size to at least the "
                "patch, in multiples of 16"
            )
        self.train.loss_params.check_classes(self.data.labels.n_outputs)


def save_plans(plans: Plans, path: Path) -> None:
    """Write ``plans`` as JSON atomically."""
    atomic_write_json(path, to_dict(plans))


def load_plans(path: Path) -> Plans:
    """Read and validate a plans.json; errors name the file and the offending key."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: not found (is this a medseg run folder?)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a JSON object")
    try:
        return from_dict(Plans, upgrade(data, PLANS_VERSION), "plans")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
