"""Training batches: patches sampled and augmented on the fly, jointly for image and mask.

Randomness is stateless: patch ``i`` of the run is drawn with ``numpy.random.default_rng([seed, i])``, so
the data a run sees depends only on the seed and the position in the run — not on worker count timing or
on whether the run was interrupted and resumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from medseg.config.plans import Plans, TrainConfig
from medseg.errors import ConfigError
from medseg.preprocessing.forward import PreprocessedCase
from medseg.training.sampling import PatchSampler, class_locations
from medseg.training.targets import EXTRA_TARGETS
from medseg.transforms.augment import augment, rotation_context

__all__ = ["Batch", "PatchDataset", "RunIndices", "make_loader"]


@dataclass(frozen=True)
class Batch(Mapping[str, torch.Tensor]):
    """One training batch: ``image`` (B, C, *patch) float32, ``target`` (B, 1, *patch) int64 class indices
    or (B, K, *patch) float32 binary masks, and the extra targets the loss asked for (e.g.
    ``distance_map`` (B, K, *patch)). Reads like a dict: ``batch["image"]``, ``batch["distance_map"]``.
    """

    image: torch.Tensor
    target: torch.Tensor
    extras: Mapping[str, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, items: Mapping[str, torch.Tensor]) -> Batch:
        """From the loader's collated dict ``{"image": ..., "target": ..., **extras}``."""
        extras = {k: v for k, v in items.items() if k not in ("image", "target")}
        return cls(items["image"], items["target"], extras)

    def to(self, device: torch.device) -> Batch:
        return Batch(self.image.to(device), self.target.to(device), {k: v.to(device) for k, v in self.extras.items()})

    def __getitem__(self, name: str) -> torch.Tensor:
        if name == "image":
            return self.image
        if name == "target":
            return self.target
        return self.extras[name]

    def __iter__(self) -> Iterator[str]:
        return iter(("image", "target", *self.extras))

    def __len__(self) -> int:
        return 2 + len(self.extras)


class PatchDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Map-style dataset whose item ``i`` is the ``i``-th training patch of the run, as a dict of tensors
    that the loader collates into a :class:`Batch`: ``image`` (C, *patch) float32, ``target`` (1, *patch)
    int64 class indices or (K, *patch) float32 binary masks, and each name of ``extras`` computed by
    :data:`medseg.training.targets.EXTRA_TARGETS` from the augmented label.
    """

    def __init__(self, cases: Sequence[PreprocessedCase], plans: Plans, extras: Sequence[str] = ()) -> None:
        self.cases = list(cases)
        self.config = plans.train
        self.patch_size = tuple(plans.patch_size)
        self.labels = plans.data.labels
        unknown = [e for e in extras if e not in EXTRA_TARGETS]
        if unknown:
            raise ValueError(f"extra targets {unknown} are not in EXTRA_TARGETS ({', '.join(EXTRA_TARGETS)})")
        self.extras = tuple(extras)
        context = rotation_context(self.patch_size, self.config.augment)
        self.sampler = PatchSampler(self.patch_size, self.config.foreground_fraction, context)
        rng = np.random.default_rng([self.config.seed, 2**31])
        self.locations = []
        for case in self.cases:
            if case.label is None:
                raise ValueError(f"training case {case.properties.case_id!r} has no label")
            self.locations.append(class_locations(case.label, case.image.ndim - 1, rng))

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.config.seed, int(index)])
        k = int(rng.integers(len(self.cases)))
        case = self.cases[k]
        assert case.label is not None  # only labelled cases are given to training (internal invariant)
        image, label = self.sampler.sample(case.image, case.label, rng, self.locations[k])
        image, label = augment(image, label, self.config.augment, rng, out_shape=self.patch_size)
        target = torch.from_numpy(np.ascontiguousarray(label))
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "target": target.float() if self.labels.overlapping else target.long()[None],
        }
        for name in self.extras:
            made = EXTRA_TARGETS[name](label, self.labels.n_outputs, self.labels.overlapping)
            item[name] = torch.from_numpy(np.ascontiguousarray(made, dtype=np.float32))
        return item


class RunIndices(torch.utils.data.Sampler[int]):
    """Patch indices ``start, start + 1, ...`` up to ``stop``: the rest of the run, lazily.

    Shared by ``world`` processes, process ``rank`` takes its ``batch // world`` consecutive indices of every
    global batch of ``batch``, so the processes together draw exactly the patches one process would
    (``start`` and ``stop`` are multiples of ``batch``)."""

    def __init__(self, start: int, stop: int, *, batch: int = 1, rank: int = 0, world: int = 1) -> None:
        if batch % world:
            raise ConfigError(
                f"a batch of {batch} cannot be shared by {world} processes: set train.batch_size in plans.json "
                f"to a multiple of {world}"
            )
        self.start, self.stop, self.batch, self.rank, self.world = start, stop, batch, rank, world

    def __iter__(self) -> Iterator[int]:
        if self.world == 1:
            return iter(range(self.start, self.stop))
        share = self.batch // self.world
        first = self.rank * share
        return (g + first + i for g in range(self.start, self.stop, self.batch) for i in range(share))

    def __len__(self) -> int:
        return (self.stop - self.start) // self.world


def make_loader(
    dataset: PatchDataset, first_epoch: int, config: TrainConfig, *, rank: int = 0, world: int = 1
) -> torch.utils.data.DataLoader:
    """A loader over the remaining epochs, starting at ``first_epoch``; iterate it once for the whole run.
    With ``world`` processes it yields process ``rank``'s share of each global batch (:class:`RunIndices`)."""
    per_epoch = config.iterations_per_epoch * config.batch_size
    epochs = config.epochs if config.time_budget_s <= 0 else max(config.epochs, 10**6)
    workers = config.num_workers
    indices = RunIndices(first_epoch * per_epoch, epochs * per_epoch, batch=config.batch_size, rank=rank, world=world)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size // world,
        sampler=indices,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        pin_memory=torch.cuda.is_available(),
    )
