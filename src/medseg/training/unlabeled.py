"""The unlabelled scans of semi-supervised training: found and checked, preprocessed, cut into patch pairs.

A folder of unlabelled scans (``train.semi_supervised.unlabeled``) is read like the scans given to
prediction (:mod:`medseg.inference.inputs`: image files, DICOM series folders, nnU-Net channel files
``CASE_0000``...), checked against the run (dimensionality and channel count from the headers, naming the
file, before anything is written) and preprocessed exactly as the labelled cases (the plans' crop,
resampling and normalisation, :func:`medseg.preprocessing.forward.preprocess_case`) into the run's cache,
``preprocessed/unlabeled/``.

:class:`UnlabeledPatches` item ``i`` is a pair of patches of one scan, drawn with its own stateless
generator ``default_rng([seed, 2**32 + 1, i])`` (a resumed run sees the same pairs): the *teacher's* patch
has the spatial augmentation (rotation, scaling, elastic deformation, mirroring) and no intensity change;
the *student's* patch is the teacher's plus the planned intensity augmentation and Gaussian noise. Both
are in one spatial frame, so the teacher's prediction is the student's target voxel for voxel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from medseg.config.plans import DataConfig, Plans
from medseg.config.semi_supervised import SemiSupervisedConfig
from medseg.datasets.records import Case
from medseg.errors import ConfigError, DataError
from medseg.inference.inputs import find_scans, group_channels
from medseg.io.images import read_info
from medseg.io.naming import SUPPORTED_SUFFIXES
from medseg.preprocessing.cache import load_preprocessed, preprocess_dataset
from medseg.preprocessing.forward import PreprocessedCase
from medseg.run import RunDir
from medseg.training.batches import RunIndices
from medseg.training.sampling import PatchSampler
from medseg.transforms.augment import AugmentParams, apply_params, draw_params, rotation_context

__all__ = [
    "UnlabeledPatches",
    "find_unlabeled",
    "make_unlabeled_loader",
    "preprocess_unlabeled",
    "split_params",
    "unlabeled_pairs",
]

logger = logging.getLogger(__name__)

_STREAM = 2**32 + 1  # the unlabelled patches' random stream, apart from the labelled ones ([seed, i])


def find_unlabeled(folder: Path, data: DataConfig) -> list[Case]:
    """The unlabelled scans of ``folder`` as cases without labels, checked from their headers against the
    run's ``data`` (spatial dimensionality, channel count); a problem is a one-line :class:`DataError`
    naming the folder or the file."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(folder, "the folder of unlabelled scans does not exist", "check the path given to --unlabeled")
    if not folder.is_dir():
        raise DataError(folder, "is not a folder", "pass --unlabeled a folder of unlabelled scans")
    if (folder / "dataset.json").is_file():
        raise DataError(
            folder, "is a dataset's root, not a folder of scans", f"pass its image folder, e.g. {folder}/imagesTr"
        )
    scans = find_scans(folder)
    if scans == [folder]:  # no image files or sub-folders: empty, or one DICOM series
        if not any(p for p in folder.iterdir() if not p.name.startswith(".")):
            raise DataError(folder, "the folder of unlabelled scans is empty", "put the unlabelled scans in it")
        try:
            read_info(folder)
        except DataError:
            raise DataError(
                folder,
                "holds no scans with a supported suffix and is no DICOM series",
                f"supported: {', '.join(SUPPORTED_SUFFIXES)}",
            ) from None
    n_channels = len(data.channel_names)
    cases = group_channels(scans, n_channels, data.channel_names)
    for case_id, channels in cases:
        infos = [read_info(path) for path in channels]
        for info in infos:
            if len(info.shape) != data.ndim:
                raise DataError(
                    info.path,
                    f"is a {len(info.shape)}D image, the run's labelled scans are {data.ndim}D",
                    f"pass --unlabeled a folder of {data.ndim}D scans like the labelled ones",
                )
        found = sum(info.channels for info in infos)
        if found != n_channels:
            raise DataError(
                channels[0],
                f"case {case_id!r} has {found} channel(s), the run's scans have {n_channels} "
                f"({', '.join(data.channel_names)})",
                "pass scans with the labelled cases' channels",
            )
    return [Case(case_id, channels) for case_id, channels in cases]


def preprocess_unlabeled(
    run: RunDir,
    plans: Plans,
    exclude: Collection[Path] = (),
    on_step: Callable[[str, int], Callable[[], None] | None] | None = None,
) -> list[PreprocessedCase]:
    """Check and preprocess the unlabelled scans of ``plans`` into the run's cache (reused when the data
    configuration is unchanged; none for a supervised run); a scan with a file in ``exclude`` (the run's
    validation cases' files; symbolic links followed) is left out, so that no held-out scan takes part in
    training. ``on_step(name, total)`` returns the per-scan progress function (:class:`medseg.workflow.Callbacks`)."""
    semi = plans.train.semi_supervised
    if semi is None:
        return []
    cases = find_unlabeled(Path(semi.unlabeled), plans.data)
    held_out = {Path(p).resolve() for p in exclude}
    kept = [c for c in cases if not any(p.resolve() in held_out for p in c.channels)]
    if len(kept) < len(cases):
        logger.info("left out %d unlabelled scan(s) that are validation cases of this run", len(cases) - len(kept))
    if not kept:
        raise DataError(
            Path(semi.unlabeled), "every unlabelled scan is a validation case of the run", "add other scans"
        )
    progress = on_step("preprocess unlabelled", len(kept)) if on_step is not None else None
    paths = preprocess_dataset(kept, plans.data, run.preprocessed_unlabeled, progress)
    return [load_preprocessed(p) for p in paths]


def split_params(params: AugmentParams) -> tuple[AugmentParams, AugmentParams]:
    """(spatial part, intensity part) of drawn augmentation parameters: applied one after the other they
    do what ``params`` does."""
    spatial = AugmentParams(
        flip_axes=params.flip_axes,
        rotation=params.rotation,
        scale=params.scale,
        elastic_alpha=params.elastic_alpha,
        elastic_sigma=params.elastic_sigma,
        elastic_seed=params.elastic_seed,
    )
    intensity = replace(params, flip_axes=(), rotation=(), scale=1.0, elastic_alpha=0.0, elastic_sigma=0.0)
    return spatial, intensity


class UnlabeledPatches(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Map-style dataset whose item ``i`` is the ``i``-th unlabelled patch pair of the run:
    ``{"student": (C, *patch), "teacher": (C, *patch)}`` float32, in one spatial frame (module docstring)."""

    def __init__(self, cases: Sequence[PreprocessedCase], plans: Plans, semi: SemiSupervisedConfig) -> None:
        if not cases:
            raise ValueError("semi-supervised training needs at least one unlabelled case")
        self.cases, self.config, self.noise_std = list(cases), plans.train, semi.noise_std
        self.patch_size = tuple(plans.patch_size)
        context = rotation_context(self.patch_size, self.config.augment)
        self.sampler = PatchSampler(self.patch_size, 0.0, context)  # uniform crops: there is no label

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.config.seed, _STREAM, int(index)])
        image = self.cases[int(rng.integers(len(self.cases)))].image
        spatial_shape = image.shape[1:]
        no_label = np.broadcast_to(np.zeros((), np.uint8), spatial_shape)  # the sampler cuts a label too
        patch, blank = self.sampler.sample(image, no_label, rng)
        params = draw_params(self.config.augment, rng, n_channels=image.shape[0], ndim=image.ndim - 1)
        spatial, intensity = split_params(params)
        teacher, blank = apply_params(patch, blank, spatial, out_shape=self.patch_size)
        student, _ = apply_params(teacher, blank, intensity)
        if self.noise_std > 0:
            noise = rng.normal(0.0, self.noise_std, size=student.shape)
            student = student + np.clip(noise, -2 * self.noise_std, 2 * self.noise_std).astype(np.float32)
        return {
            "student": torch.from_numpy(np.ascontiguousarray(student, dtype=np.float32)),
            "teacher": torch.from_numpy(np.ascontiguousarray(teacher, dtype=np.float32)),
        }


def make_unlabeled_loader(
    dataset: UnlabeledPatches, first_epoch: int, plans: Plans, *, rank: int = 0, world: int = 1
) -> torch.utils.data.DataLoader:
    """A loader of unlabelled pairs over the remaining epochs from ``first_epoch``, ``semi.batch_size`` a
    step (with ``world`` processes, process ``rank``'s share); iterate it once for the whole run."""
    config, semi = plans.train, plans.train.semi_supervised
    if semi is None:
        raise ValueError("plans.train.semi_supervised is None")
    if semi.batch_size % world:
        raise ConfigError(
            f"an unlabelled batch of {semi.batch_size} cannot be shared by {world} processes: set "
            f"train.semi_supervised.batch_size in plans.json to a multiple of {world}"
        )
    per_epoch = config.iterations_per_epoch * semi.batch_size
    epochs = config.epochs if config.time_budget_s <= 0 else max(config.epochs, 10**6)
    indices = RunIndices(first_epoch * per_epoch, epochs * per_epoch, batch=semi.batch_size, rank=rank, world=world)
    workers = config.num_workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=semi.batch_size // world,
        sampler=indices,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        pin_memory=torch.cuda.is_available(),
    )


def unlabeled_pairs(
    plans: Plans, unlabeled: Sequence[PreprocessedCase], first_epoch: int, *, rank: int = 0, world: int = 1
) -> Iterator[dict[str, torch.Tensor]] | None:
    """The batches of unlabelled pairs of a semi-supervised run from ``first_epoch`` on; None for a supervised
    run (which must be given no unlabelled cases)."""
    semi = plans.train.semi_supervised
    if semi is None:
        if unlabeled:
            raise ValueError("unlabeled cases were given, but plans.train.semi_supervised is None")
        return None
    if not unlabeled:
        raise ValueError("plans.train.semi_supervised is set, but no unlabeled cases were given")
    dataset = UnlabeledPatches(unlabeled, plans, semi)
    return iter(make_unlabeled_loader(dataset, first_epoch, plans, rank=rank, world=world))
