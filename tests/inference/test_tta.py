from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from medseg.errors import ConfigError
from medseg.inference.tta import mirror_axes_combinations, mirrored

CONV = {2: F.conv2d, 3: F.conv3d}


def _conv_net(ndim: int, seed: int, kernel: Tensor | None = None):
    """A 3-wide zero-padded conv, 2 -> 3 channels; random (not flip-equivariant) unless ``kernel`` given."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn((3, 2) + (3,) * ndim, generator=g, dtype=torch.float64) if kernel is None else kernel
    bias = torch.randn(3, generator=g, dtype=torch.float64)
    return lambda x: CONV[ndim](x, weight, bias, padding=1)


def _symmetric_kernel(ndim: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    kernel = torch.randn((3, 2) + (3,) * ndim, generator=g, dtype=torch.float64)
    for dim in range(2, ndim + 2):
        kernel = kernel + kernel.flip(dim)
    return kernel


@pytest.mark.parametrize(
    ("axes", "expected"),
    [
        ((), [()]),
        ((0,), [(), (0,)]),
        ((0, 1), [(), (0,), (1,), (0, 1)]),
        ((2, 0), [(), (2,), (0,), (2, 0)]),
        ((0, 1, 2), [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]),
    ],
)
def test_mirror_axes_combinations_lists_every_subset(axes, expected):
    assert mirror_axes_combinations(axes) == expected


@pytest.mark.parametrize("axes", [(0, 0), (-1,), (1, 2, 1)])
def test_mirror_axes_combinations_rejects_bad_axes(axes):
    with pytest.raises(ConfigError, match="distinct"):
        mirror_axes_combinations(axes)


def test_mirrored_rejects_axis_missing_from_input():
    with pytest.raises(ValueError, match="2D input"):
        mirrored(lambda x: x, (0, 2))(torch.zeros(1, 1, 4, 4))


@pytest.mark.parametrize(("ndim", "axes"), [(2, (0,)), (2, (0, 1)), (3, (0, 1, 2)), (3, (2,))])
def test_mirrored_equals_net_for_flip_equivariant_nets(ndim, axes):
    x = torch.randn((2, 2) + (5,) * ndim, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for net in (_conv_net(ndim, 1, _symmetric_kernel(ndim, 2)), lambda t: 3 * t[:, :1] - t[:, 1:]):
        torch.testing.assert_close(mirrored(net, axes)(x), net(x), rtol=1e-12, atol=1e-12)


def test_mirrored_2d_equals_hand_computed_average():
    net = _conv_net(2, 3)
    x = torch.randn(2, 2, 5, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    expected = (net(x) + net(x.flip(2)).flip(2) + net(x.flip(3)).flip(3) + net(x.flip(2).flip(3)).flip(3).flip(2)) / 4
    assert not torch.allclose(expected, net(x))  # the net really is not flip-equivariant
    torch.testing.assert_close(mirrored(net, (0, 1))(x), expected, rtol=1e-12, atol=1e-12)


def test_mirrored_3d_single_axes_equals_hand_computed_average():
    net = _conv_net(3, 5)
    x = torch.randn(1, 2, 4, 5, 3, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    torch.testing.assert_close(mirrored(net, (1,))(x), (net(x) + net(x.flip(3)).flip(3)) / 2)
    torch.testing.assert_close(mirrored(net, (2,))(x), (net(x) + net(x.flip(4)).flip(4)) / 2)


@pytest.mark.parametrize(("axes", "calls"), [((), 1), ((0,), 2), ((0, 1), 4), ((0, 1, 2), 8)])
def test_mirrored_runs_the_net_once_per_subset(axes, calls):
    seen: list[Tensor] = []

    def net(x: Tensor) -> Tensor:
        seen.append(x)
        return x

    mirrored(net, axes)(torch.arange(2 * 3 * 4 * 5.0).reshape(2, 1, 3, 4, 5))
    assert len(seen) == calls
    assert len({tuple(t.flatten().tolist()) for t in seen}) == calls  # each call saw a different flip
