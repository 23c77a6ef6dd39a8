from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from medseg.datasets.dataset import load_dataset
from medseg.errors import ConfigError
from medseg.inference.explain import default_layer, explain_array, gradcam_window, occlusion_window
from medseg.io.images import read_image
from tests.inference.test_uncertainty import _predictor


class _Spot(nn.Module):
    """Class 1's logit is high where the input is bright: 1x1 convolutions on top of a feature block."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Conv2d(1, 2, 1), nn.ReLU())
        self.head = nn.Conv2d(2, 2, 1)
        with torch.no_grad():
            self.block[0].weight[:] = torch.tensor([[[[1.0]]], [[[-1.0]]]])
            self.block[0].bias.zero_()
            self.head.weight[:] = torch.tensor([[[[0.0]], [[1.0]]], [[[2.0]], [[0.0]]]])
            self.head.bias[:] = torch.tensor([0.0, -1.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(x))


def test_gradcam_and_occlusion_point_at_the_bright_spot() -> None:
    x = torch.zeros(1, 1, 16, 16)
    x[0, 0, 4:8, 9:13] = 3.0
    model = _Spot().eval()
    assert (model(x).argmax(1)[0] == 1).sum() == 16  # the spot is class 1
    for elementwise in (True, False):
        cam = gradcam_window(model, model.block, x, 1, overlapping=False, elementwise=elementwise)[0]
        assert cam[4:8, 9:13].min() > 0 and cam.sum() == pytest.approx(cam[4:8, 9:13].sum())
    heat = occlusion_window(model, x, 1, overlapping=False, cube=(4, 4))
    assert heat[4:8, 9:13].min() > 0 and float(heat[:4].sum()) == 0.0
    assert occlusion_window(model, torch.zeros(1, 1, 16, 16), 1, overlapping=False, cube=(4, 4)).sum() == 0


def test_3d_map_has_the_scans_shape_and_range(msd_3d: Path) -> None:
    image, geometry = read_image(load_dataset(msd_3d).cases[0].channels[0])
    predictor = _predictor(msd_3d, 0.0, geometry.spacing)
    layer = default_layer(predictor.model, predictor.plans.patch_size, 1)
    assert layer in dict(predictor.model.named_modules())
    counts = np.bincount(predictor.predict_array(image, geometry).ravel(), minlength=4)
    target = int(np.argmax(counts[1:])) + 1  # the class this untrained network predicts most
    heat = explain_array(predictor, image, geometry, target)  # occlusion: tests/test_trust.py (2D) and above
    assert heat.shape == image.shape[1:] and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)


def test_unknown_layer_and_method(msd_3d: Path) -> None:
    image, geometry = read_image(load_dataset(msd_3d).cases[0].channels[0])
    predictor = _predictor(msd_3d, 0.0, geometry.spacing)
    with pytest.raises(ConfigError, match="layer 'nope' is not a module"):
        explain_array(predictor, image, geometry, 1, layer="nope")
    with pytest.raises(ConfigError, match="unknown"):
        explain_array(predictor, image, geometry, 1, method="lime")
