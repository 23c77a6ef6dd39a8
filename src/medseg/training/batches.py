"""Training batches: patches sampled and augmented on the fly, jointly for image and mask.

Randomness is stateless: patch ``i`` of the run is drawn with ``numpy.random.default_rng([seed, i])``, so
the data a run sees depends only on the seed and the position in the run — not on worker count timing or
on whether the run was interrupted and resumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from medseg.config.plans import TrainConfig
from medseg.preprocessing.forward import PreprocessedCase
from medseg.training.sampling import PatchSampler, class_locations
from medseg.transforms.augment import augment, rotation_context

__all__ = ["PatchDataset", "RunIndices", "make_loader"]


class PatchDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Map-style dataset whose item ``i`` is the ``i``-th training patch of the run.

    Returns image ``(C, *patch)`` float32 and label ``(1, *patch)`` int64 class indices, or
    ``(K, *patch)`` float32 binary masks for overlapping structures.
    """

    def __init__(self, cases: Sequence[PreprocessedCase], config: TrainConfig, overlapping: bool) -> None:
        self.cases = list(cases)
        self.config = config
        self.overlapping = overlapping
        context = rotation_context(config.patch_size, config.augment)
        self.sampler = PatchSampler(tuple(config.patch_size), config.foreground_fraction, context)
        rng = np.random.default_rng([config.seed, 2**31])
        self.locations = [class_locations(c.label, c.image.ndim - 1, rng) for c in self.cases]

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.config.seed, int(index)])
        k = int(rng.integers(len(self.cases)))
        case = self.cases[k]
        assert case.label is not None  # only labelled cases are given to training (internal invariant)
        image, label = self.sampler.sample(case.image, case.label, rng, self.locations[k])
        image, label = augment(image, label, self.config.augment, rng, out_shape=self.config.patch_size)
        target = torch.from_numpy(np.ascontiguousarray(label))
        target = target.float() if self.overlapping else target.long()[None]
        return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)), target


class RunIndices(torch.utils.data.Sampler[int]):
    """Patch indices ``start, start + 1, ...`` up to ``stop``: the rest of the run, lazily."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def make_loader(dataset: PatchDataset, first_epoch: int, config: TrainConfig) -> torch.utils.data.DataLoader:
    """A loader over the remaining epochs, starting at ``first_epoch``; iterate it once for the whole run."""
    per_epoch = config.iterations_per_epoch * config.batch_size
    epochs = config.epochs if config.time_budget_s <= 0 else max(config.epochs, 10**6)
    workers = config.num_workers
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=RunIndices(first_epoch * per_epoch, epochs * per_epoch),
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        pin_memory=torch.cuda.is_available(),
    )
