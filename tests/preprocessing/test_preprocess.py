from __future__ import annotations

import numpy as np
import torch

from medseg.config.plans import ChannelNorm, DataConfig
from medseg.io.images import Geometry
from medseg.labels import LabelSpec
from medseg.preprocessing.forward import normalize, preprocess_image
from medseg.preprocessing.inverse import logits_to_labels, logits_to_probabilities
from medseg.preprocessing.resample import resample_label


def _data(spacing=(1.0, 1.0), crop=False, scheme="zscore") -> DataConfig:  # type: ignore[no-untyped-def]
    return DataConfig(
        ndim=2,
        channel_names=("x",),
        labels=LabelSpec({0: "bg", 1: "a", 2: "b"}, (0, 1, 2)),
        target_spacing=spacing,
        normalization=(ChannelNorm(scheme, -100, 100, 10, 20),),
        crop_to_nonzero=crop,
    )


def test_normalize_schemes() -> None:
    image = np.array([[[-500.0, 0.0, 50.0, 500.0]]])
    ct = normalize(image, _data(scheme="ct"))
    np.testing.assert_allclose(ct[0, 0], [(-100 - 10) / 20, (0 - 10) / 20, (50 - 10) / 20, (100 - 10) / 20])
    z = normalize(image, _data())
    assert abs(z.mean()) < 1e-6 and abs(z.std() - 1) < 1e-5


def test_resampling_halves_shape_and_label_argmax_keeps_classes() -> None:
    image = np.random.default_rng(0).normal(size=(1, 40, 30)).astype(np.float32)
    out, props = preprocess_image(image, Geometry.identity(2, (1.0, 1.0)), _data(spacing=(2.0, 2.0)))
    assert out.shape == (1, 20, 15) and props.resampled_shape == (20, 15) and props.original_shape == (40, 30)
    label = np.zeros((40, 30), np.uint8)
    label[10:30, 5:15] = 1
    label[10:30, 15:25] = 2
    small = resample_label(label, 3, (20, 15))
    assert set(np.unique(small)) == {0, 1, 2}
    assert (small[5:15, 3:7] == 1).all() and (small[5:15, 8:12] == 2).all()


def test_inverse_restores_original_grid_and_crop() -> None:
    image = np.zeros((1, 40, 30), np.float32)
    image[0, 5:35, 4:28] = np.random.default_rng(1).normal(size=(30, 24)) + 5
    geometry = Geometry.identity(2, (1.0, 1.0))
    array, props = preprocess_image(image, geometry, _data(spacing=(2.0, 2.0), crop=True))
    assert (props.bbox_start, props.bbox_stop) == ((5, 4), (35, 28))
    # logits that say class 1 inside a block of the cropped, resampled grid
    logits = torch.zeros((3, *array.shape[1:]))
    logits[0] = 5  # background logit halfway, so linear interpolation puts the edge exactly between voxels
    logits[1, 4:10, 3:9] = 10
    labels = logits_to_labels(logits, props, overlapping=False)
    assert labels.shape == (40, 30)
    assert labels[:5].sum() == 0  # outside the crop stays background
    ys, xs = np.nonzero(labels == 1)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (5 + 8, 5 + 19, 4 + 6, 4 + 17)
    probs = logits_to_probabilities(logits, props, overlapping=False)
    np.testing.assert_allclose(probs.sum(0), 1, atol=1e-5)
    assert probs[0, 0, 0] == 1.0
    np.testing.assert_array_equal(probs.argmax(0), labels)


def test_multilabel_inverse_thresholds_logits() -> None:
    props_image = np.ones((1, 8, 8), np.float32)
    _, props = preprocess_image(props_image, Geometry.identity(2), _data())
    logits = torch.full((2, 8, 8), -3.0)
    logits[0, :4] = 3.0
    logits[1, 2:6] = 3.0
    masks = logits_to_labels(logits, props, overlapping=True)
    assert masks.shape == (2, 8, 8)
    assert masks[0, :4].all() and not masks[0, 4:].any()
    assert (masks[0] & masks[1]).any()  # structures may overlap
