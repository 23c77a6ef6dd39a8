from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from torch import Tensor

from medseg.errors import ConfigError
from medseg.inference.sliding_window import (
    SlidingWindowConfig,
    gaussian_importance_map,
    sliding_window_labels,
    sliding_window_logits,
    window_starts,
)

CONV = {2: F.conv2d, 3: F.conv3d}


def _pointwise_net(channels: int, classes: int, seed: int):
    """A 1x1 conv (translation-equivariant, no receptive field): ``(B, C, *s) -> (B, K, *s)``."""
    g = torch.Generator().manual_seed(seed)
    weight, bias = torch.randn(classes, channels, generator=g), torch.randn(classes, generator=g)
    return lambda x: torch.einsum("kc,bc...->bk...", weight, x) + bias.view(-1, *[1] * (x.ndim - 2))


def _conv_net(ndim: int, channels: int, classes: int, seed: int):
    """One zero-padded 3-wide conv: windows smaller than the image differ from the whole image at borders."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn((classes, channels) + (3,) * ndim, generator=g)
    bias = torch.randn(classes, generator=g)
    return lambda x: CONV[ndim](x, weight, bias, padding=1)


def _image(shape: tuple[int, ...], seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


# --- window_starts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "patch", "overlap", "expected"),
    [
        ([10], [4], 0.5, [[0, 2, 4, 6]]),  # step 2 fits exactly
        ([10], [4], 0.0, [[0, 3, 6]]),  # ceil(6 / 4) + 1 = 3 windows spread over 0..6
        ([11], [4], 0.5, [[0, 2, 4, 5, 7]]),  # 5 windows, step 7/4 = 1.75 rounded (3.5 -> 4)
        ([7], [5], 0.5, [[0, 2]]),  # target step 2.5, one step reaches the border
        ([4], [4], 0.5, [[0]]),  # patch covers the axis
        ([5], [3], 0.75, [[0, 1, 2]]),  # step 0.75 is raised to one voxel (no duplicate starts)
        ([10, 4, 9], [4, 4, 3], 0.5, [[0, 2, 4, 6], [0], [0, 2, 3, 4, 6]]),  # 9: 5 windows, 1.5 steps
    ],
)
def test_window_starts_hand_examples(image, patch, overlap, expected):
    assert window_starts(image, patch, overlap) == expected


@settings(max_examples=200, deadline=None)
@given(
    patch=st.integers(1, 20),
    extra=st.integers(0, 60),
    overlap=st.sampled_from([0.0, 0.1, 0.25, 0.33, 0.5, 0.75, 0.9]),
)
def test_window_starts_cover_every_voxel_and_end_at_the_border(patch, extra, overlap):
    size = patch + extra
    (starts,) = window_starts([size], [patch], overlap)
    covered = np.zeros(size, dtype=bool)
    for s in starts:
        covered[s : s + patch] = True
    assert covered.all()
    assert starts[0] == 0
    assert starts[-1] == size - patch
    gaps = np.diff(starts)
    assert (gaps > 0).all()
    assert (gaps <= math.ceil(max(patch * (1 - overlap), 1))).all()
    # the fewest windows with that step: one less window could not reach the border
    assert (len(starts) - 2) * max(patch * (1 - overlap), 1) < size - patch or len(starts) == 1


def test_window_starts_rejects_image_smaller_than_patch():
    with pytest.raises(ValueError, match="pad"):
        window_starts([3, 10], [4, 4], 0.5)


@pytest.mark.parametrize(("patch", "overlap"), [([4], 1.0), ([4], -0.1), ([0], 0.5), ([], 0.5)])
def test_window_starts_rejects_bad_settings(patch, overlap):
    with pytest.raises(ConfigError):
        window_starts([10] * len(patch), patch, overlap)


# --- gaussian_importance_map -------------------------------------------------------------------------------


@pytest.mark.parametrize("patch", [(9,), (7, 11), (5, 9, 7)])
def test_gaussian_matches_scipy_filtered_delta(patch):
    # nnU-Net's construction: Gaussian-filter a delta at the centre (odd sizes, so both centres agree)
    delta = np.zeros(patch)
    delta[tuple(p // 2 for p in patch)] = 1
    reference = ndimage.gaussian_filter(delta, [p / 8 for p in patch], mode="constant", truncate=50)
    reference /= reference.max()
    result = gaussian_importance_map(patch, dtype=torch.float64)
    np.testing.assert_allclose(result.numpy(), reference, rtol=1e-10)


@pytest.mark.parametrize("patch", [(8,), (7, 10), (4, 6, 5), (64, 64)])
def test_gaussian_is_one_at_centre_symmetric_and_positive(patch):
    result = gaussian_importance_map(patch)
    assert result.shape == patch
    assert result.dtype == torch.float32
    centre = tuple(slice((p - 1) // 2, p // 2 + 1) for p in patch)  # 1 voxel (odd) or 2 (even) per axis
    assert (result[centre] == 1).all()
    assert result.max() == 1
    for dim in range(len(patch)):
        torch.testing.assert_close(result.flip(dim), result, rtol=0, atol=0)
    assert (result > 0).all()
    assert result.min() < 0.01  # corners are far out in the tails with sigma = size / 8


def test_gaussian_replaces_underflow_by_smallest_nonzero():
    result = gaussian_importance_map((40, 40), sigma_scale=0.01)
    assert (result > 0).all()
    smallest = result.min()
    assert (result == smallest).sum() > 1000  # the underflowed tails share the smallest non-zero value
    assert result[19, 19] == 1


def test_gaussian_rejects_non_positive_sigma():
    with pytest.raises(ConfigError, match="sigma_scale"):
        gaussian_importance_map((8, 8), sigma_scale=0)


# --- SlidingWindowConfig -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patch_size": (8, 0)},
        {"patch_size": (8, 8), "overlap": 1.0},
        {"patch_size": (8, 8), "batch_size": 0},
        {"patch_size": (8, 8), "mirror_axes": (0, 2)},
        {"patch_size": (8, 8), "mirror_axes": (1, 1)},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError):
        SlidingWindowConfig(**kwargs)


def test_config_normalises_sequences_to_tuples():
    config = SlidingWindowConfig(patch_size=[8, 6], mirror_axes=[1])  # type: ignore[arg-type]
    assert config.patch_size == (8, 6)
    assert config.mirror_axes == (1,)


# --- sliding_window_logits -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 6, 7), (1, 4, 5, 3)])
def test_single_window_reproduces_net_exactly(shape):
    image = _image(shape, 0)
    ndim = len(shape) - 1
    net = _conv_net(ndim, shape[0], 3, 1)
    config = SlidingWindowConfig(patch_size=shape[1:], gaussian=False)
    torch.testing.assert_close(sliding_window_logits(net, image, config), net(image[None])[0], rtol=0, atol=0)
    weighted = SlidingWindowConfig(patch_size=shape[1:])
    torch.testing.assert_close(sliding_window_logits(net, image, weighted), net(image[None])[0])


@pytest.mark.parametrize(("shape", "patch"), [((2, 3, 7), (6, 7)), ((1, 5, 2, 4), (5, 5, 6))])
def test_image_smaller_than_patch_is_zero_padded_and_cropped(shape, patch):
    # a single zero-padded conv (bias included) sees the same zeros beyond the border
    # whether we pad or the conv does
    image = _image(shape, 2)
    net = _conv_net(len(patch), shape[0], 2, 3)
    seen: list[Tensor] = []

    def recording(x: Tensor) -> Tensor:
        seen.append(x.clone())
        return net(x)

    result = sliding_window_logits(recording, image, SlidingWindowConfig(patch_size=patch, gaussian=False))
    torch.testing.assert_close(result, net(image[None])[0])  # conv on another shape: float noise only
    (batch,) = seen
    before = [(p - n) // 2 for n, p in zip(shape[1:], patch, strict=True)]
    inside = (0, slice(None), *(slice(b, b + n) for b, n in zip(before, shape[1:], strict=True)))
    torch.testing.assert_close(batch[inside], image, rtol=0, atol=0)
    outside = torch.ones_like(batch, dtype=torch.bool)
    outside[inside] = False
    assert (batch[outside] == 0).all()


@pytest.mark.parametrize("gaussian", [True, False])
@pytest.mark.parametrize(
    ("shape", "patch", "overlap"),
    [((2, 17, 13), (8, 6), 0.5), ((1, 9, 7, 10), (4, 3, 5), 0.33), ((3, 20, 5), (6, 5), 0.0)],
)
def test_pointwise_net_is_reproduced_with_overlap(shape, patch, overlap, gaussian):
    image = _image(shape, 4)
    net = _pointwise_net(shape[0], 3, 5)
    config = SlidingWindowConfig(patch_size=patch, overlap=overlap, gaussian=gaussian, batch_size=3)
    torch.testing.assert_close(sliding_window_logits(net, image, config), net(image[None])[0])


@pytest.mark.parametrize("gaussian", [True, False])
@pytest.mark.parametrize(
    ("shape", "patch", "overlap"),
    [
        ((2, 11, 13), (5, 7), 0.5),
        ((2, 3, 13), (5, 7), 0.5),  # padded on axis 0
        ((2, 11, 13, 6), (5, 7, 4), 0.5),
        ((1, 8, 8, 12), (4, 4, 4), 0.75),
        ((2, 12, 8, 4), (4, 4, 4), 0.0),
    ],
)
def test_logits_match_monai_where_the_windows_agree(shape, patch, overlap, gaussian):
    # MONAI steps by int(patch * (1 - overlap)) and clamps the last window to the border; with these sizes
    # its windows are ours. Its own Gaussian is clamped at 1e-3, so we hand it our weight map.
    monai_inferers = pytest.importorskip("monai.inferers")
    image = _image(shape, 14)
    net = _conv_net(len(patch), shape[0], 3, 15)
    weight = gaussian_importance_map(patch) if gaussian else torch.ones(patch)
    reference = monai_inferers.sliding_window_inference(
        image[None], patch, 3, net, overlap=overlap, mode="constant", roi_weight_map=weight
    )[0]
    config = SlidingWindowConfig(patch_size=patch, overlap=overlap, gaussian=gaussian, batch_size=3)
    torch.testing.assert_close(sliding_window_logits(net, image, config), reference)


def test_logits_are_float32_for_float64_nets():
    image = _image((1, 6, 6), 6).double()
    result = sliding_window_logits(lambda x: x * 2, image, SlidingWindowConfig(patch_size=(4, 4)))
    assert result.dtype == torch.float32
    torch.testing.assert_close(result, (image * 2).float())


def test_mirroring_in_config_averages_flipped_predictions():
    image = _image((2, 6, 5), 7)
    net = _conv_net(2, 2, 3, 8)
    x = image[None]
    expected = (net(x) + net(x.flip(3)).flip(3))[0] / 2
    config = SlidingWindowConfig(patch_size=(6, 5), gaussian=False, mirror_axes=(1,))
    torch.testing.assert_close(sliding_window_logits(net, image, config), expected)


def test_progress_reports_every_batch_up_to_the_total():
    calls: list[tuple[int, int]] = []
    config = SlidingWindowConfig(patch_size=(4, 4), overlap=0.5, batch_size=3)  # 4 x 3 = 12 windows
    image = _image((2, 10, 8), 9)
    sliding_window_labels(lambda x: x, image, config, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(3, 12), (6, 12), (9, 12), (12, 12)]


def test_bad_net_output_and_image_are_reported():
    config = SlidingWindowConfig(patch_size=(4, 4))
    with pytest.raises(ValueError, match="net returned"):
        sliding_window_logits(lambda x: x[..., :2], _image((1, 8, 8), 0), config)
    with pytest.raises(ValueError, match="spatial axes"):
        sliding_window_logits(lambda x: x, _image((1, 8, 8, 8), 0), config)
    with pytest.raises(ValueError, match="activation"):
        sliding_window_labels(lambda x: x, _image((1, 8, 8), 0), config, activation="relu")
    with pytest.raises(ValueError, match="threshold"):
        sliding_window_labels(lambda x: x, _image((1, 8, 8), 0), config, activation="sigmoid", threshold=1.0)


# --- sliding_window_labels -------------------------------------------------------------------------------

LABEL_CASES = [
    # (shape (C, *spatial), patch, overlap, batch_size)
    ((2, 17, 13), (8, 6), 0.5, 4),
    ((2, 17, 13), (5, 6), 0.0, 1),  # rows do not overlap: a whole slab is finalised at each step
    ((1, 23, 9), (6, 4), 0.75, 5),  # many overlapping rows, batches span rows
    ((2, 3, 12), (8, 5), 0.5, 2),  # image smaller than the patch on axis 0 (padded)
    ((2, 12, 3), (5, 8), 0.5, 3),  # image smaller than the patch on axis 1
    ((1, 11, 7, 9), (4, 4, 4), 0.5, 4),
    ((2, 9, 3, 10), (4, 5, 3), 0.25, 3),  # 3D, smaller than the patch on axis 1
]


@pytest.mark.parametrize("mirror", [False, True])
@pytest.mark.parametrize(("shape", "patch", "overlap", "batch_size"), LABEL_CASES)
def test_labels_equal_argmax_of_logits(shape, patch, overlap, batch_size, mirror):
    image = _image(shape, 10)
    net = _conv_net(len(patch), shape[0], 4, 11)
    config = SlidingWindowConfig(
        patch_size=patch, overlap=overlap, batch_size=batch_size, mirror_axes=(0,) if mirror else ()
    )
    logits = sliding_window_logits(net, image, config)
    labels = sliding_window_labels(net, image, config)
    assert labels.dtype == torch.int64
    assert labels.shape == shape[1:]
    torch.testing.assert_close(labels, logits.argmax(dim=0), rtol=0, atol=0)
    assert len(labels.unique()) > 1  # the comparison is not trivially all-zero


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.8])
@pytest.mark.parametrize(("shape", "patch", "overlap", "batch_size"), LABEL_CASES[::2])
def test_sigmoid_masks_equal_thresholded_logits(shape, patch, overlap, batch_size, threshold):
    image = _image(shape, 12)
    net = _conv_net(len(patch), shape[0], 3, 13)
    config = SlidingWindowConfig(patch_size=patch, overlap=overlap, batch_size=batch_size, gaussian=False)
    logits = sliding_window_logits(net, image, config)
    masks = sliding_window_labels(net, image, config, activation="sigmoid", threshold=threshold)
    assert masks.dtype == torch.bool
    assert masks.shape == (3, *shape[1:])
    torch.testing.assert_close(masks, logits > math.log(threshold / (1 - threshold)), rtol=0, atol=0)
    assert masks.any() and not masks.all()


# --- property: stitching a pointwise net is seamless -------------------------------------------------------


@st.composite
def _stitching_case(draw: st.DrawFn) -> tuple[tuple[int, ...], tuple[int, ...], float, int, bool]:
    ndim = draw(st.sampled_from([2, 3]))
    limit = 14 if ndim == 2 else 7
    size = tuple(draw(st.integers(1, limit)) for _ in range(ndim))
    patch = tuple(draw(st.integers(1, limit)) for _ in range(ndim))
    overlap = draw(st.sampled_from([0.0, 0.2, 0.5, 0.66, 0.8]))
    return size, patch, overlap, draw(st.integers(1, 6)), draw(st.booleans())


@settings(max_examples=60, deadline=None)
@given(case=_stitching_case(), seed=st.integers(0, 2**16))
def test_stitched_pointwise_net_equals_whole_image(case, seed):
    size, patch, overlap, batch_size, gaussian = case
    image = _image((2, *size), seed)
    net = _pointwise_net(2, 3, seed + 1)
    config = SlidingWindowConfig(patch_size=patch, overlap=overlap, batch_size=batch_size, gaussian=gaussian)
    logits = sliding_window_logits(net, image, config)
    torch.testing.assert_close(logits, net(image[None])[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sliding_window_labels(net, image, config), logits.argmax(0), rtol=0, atol=0)


def test_every_window_is_visited_once():
    starts_seen: list[tuple[int, ...]] = []

    def net(x: Tensor) -> Tensor:
        # recover each window's start from a coordinate image
        for patch in x:
            starts_seen.append(tuple(int(patch[d].flatten()[0]) for d in range(2)))
        return x

    grid = torch.stack(torch.meshgrid(torch.arange(10.0), torch.arange(9.0), indexing="ij"))
    config = SlidingWindowConfig(patch_size=(4, 5), batch_size=4)
    sliding_window_logits(net, grid, config)
    expected = list(itertools.product(*window_starts((10, 9), (4, 5), 0.5)))
    assert starts_seen == expected
