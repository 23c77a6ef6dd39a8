"""The masked-block maths against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.pretraining.masking import block_mask, block_shape, hide, masked_blocks, masked_mse


@pytest.mark.parametrize(
    ("divisor", "size", "want"),
    [((8, 8), 0, (8, 8)), ((32, 32, 32), 0, (16, 16, 16)), ((1, 16, 16), 0, (1, 16, 16)), ((1, 8, 8), 4, (1, 4, 4))],
)
def test_block_shape_is_the_stride_capped_at_16_and_1_on_unpooled_axes(divisor, size, want) -> None:  # type: ignore[no-untyped-def]
    assert block_shape(divisor, size) == want


@pytest.mark.parametrize(("n", "ratio", "want"), [(16, 0.6, 10), (4, 0.5, 2), (4, 0.01, 1), (4, 0.99, 3), (1, 0.6, 1)])
def test_masked_blocks_rounds_and_keeps_one_block_of_each_kind(n: int, ratio: float, want: int) -> None:
    assert masked_blocks(n, ratio) == want


@pytest.mark.parametrize(
    ("patch", "block", "ratio"),
    [((32, 32), (8, 8), 0.6), ((16, 32, 32), (4, 8, 8), 0.75), ((1, 32, 32), (1, 8, 8), 0.5)],
)
def test_the_mask_hides_exactly_the_ratio_in_whole_blocks(patch, block, ratio) -> None:  # type: ignore[no-untyped-def]
    mask = block_mask(patch, block, ratio, np.random.default_rng(0))
    n_blocks = int(np.prod([p // b for p, b in zip(patch, block, strict=True)]))
    assert mask.shape == patch and mask.dtype == bool
    assert mask.sum() == masked_blocks(n_blocks, ratio) * int(np.prod(block))
    # every block is all hidden or all visible
    view = mask.reshape([x for p, b in zip(patch, block, strict=True) for x in (p // b, b)])
    per_block = view.mean(axis=tuple(range(1, view.ndim, 2)))
    assert set(np.unique(per_block).tolist()) == {0.0, 1.0}


def test_the_mask_is_a_function_of_the_generator() -> None:
    a, b = (block_mask((32, 32), (8, 8), 0.6, np.random.default_rng(7)) for _ in range(2))
    c = block_mask((32, 32), (8, 8), 0.6, np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_edge_blocks_are_cropped_to_the_patch() -> None:
    mask = block_mask((10, 6), (4, 4), 0.5, np.random.default_rng(0))
    assert mask.shape == (10, 6)  # a 3 x 2 grid of blocks, cropped


def test_masked_mse_counts_masked_voxels_only_by_hand() -> None:
    target = torch.zeros(1, 2, 2, 2)
    prediction = torch.tensor([[[[1.0, 2.0], [3.0, 100.0]], [[-1.0, 0.0], [2.0, 100.0]]]])
    mask = torch.tensor([[[[True, True], [True, False]]]])
    # masked voxels of both channels: 1, 4, 9 and 1, 0, 4 -> 19 / 6; the 100s are visible and do not count
    assert masked_mse(prediction, target, mask).item() == pytest.approx(19 / 6)
    assert masked_mse(prediction, target, torch.zeros_like(mask)).item() == 0.0


def test_masked_mse_gradient_is_zero_on_visible_voxels() -> None:
    prediction = torch.randn(2, 1, 4, 4, requires_grad=True)
    mask = torch.from_numpy(block_mask((4, 4), (2, 2), 0.5, np.random.default_rng(0)))[None, None].expand(2, 1, 4, 4)
    masked_mse(prediction, torch.zeros(2, 1, 4, 4), mask).backward()
    assert prediction.grad is not None
    assert torch.all(prediction.grad[~mask] == 0) and torch.all(prediction.grad[mask] != 0)


def test_hide_zeroes_the_masked_voxels_of_every_channel() -> None:
    image = torch.arange(1.0, 9.0).reshape(1, 2, 2, 2)
    mask = torch.tensor([[[[True, False], [False, True]]]])
    assert hide(image, mask).tolist() == [[[[0.0, 2.0], [3.0, 0.0]], [[0.0, 6.0], [7.0, 0.0]]]]
