from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from medseg.datasets.dataset import load_dataset
from medseg.inference.predictor import Predictor, _output_name
from medseg.io.images import read_image, read_label
from medseg.models.registry import build_model
from medseg.models.unet_config import nnunet_config
from medseg.planning.fingerprint import fingerprint
from medseg.planning.plans import Budget, make_plans


def _predictor(root: Path, spacing: tuple[float, ...] | None = None) -> Predictor:
    plans = make_plans(fingerprint(load_dataset(root)), Budget())
    if spacing is not None:
        plans = replace(plans, data=replace(plans.data, target_spacing=spacing))
    patch = (8, 32, 32)
    model_cfg = nnunet_config(3, 1, 4, patch, plans.data.target_spacing, base_features=4, max_features=8)
    plans = replace(plans, patch_size=patch, model=model_cfg, infer=replace(plans.infer, batch_size=2))
    model = build_model(model_cfg, generator=torch.Generator().manual_seed(0)).eval()
    return Predictor(plans, model, torch.device("cpu"))


def test_output_in_input_geometry_with_resampling(msd_3d: Path, tmp_path: Path) -> None:
    case = load_dataset(msd_3d).cases[0]
    image, geometry = read_image(case.channels[0])
    coarse = tuple(s * 1.7 for s in geometry.spacing)  # network grid differs from the scan's grid
    predictor = _predictor(msd_3d, coarse)
    labels, out_geometry = predictor.predict(case.channels)
    assert labels.shape == image.shape[1:] and out_geometry == geometry
    written = predictor.write(labels, out_geometry, case.channels[0], tmp_path)
    assert [p.name for p in written] == ["case_000.nii.gz"]
    back, back_geometry = read_label(written[0])
    np.testing.assert_array_equal(back, labels)
    assert back_geometry.matches(geometry)


def test_same_grid_path_equals_logits_argmax(msd_3d: Path) -> None:
    case = load_dataset(msd_3d).cases[1]
    image, geometry = read_image(case.channels[0])
    predictor = _predictor(msd_3d, geometry.spacing)
    labels = predictor.predict_array(image, geometry)  # streaming label path
    logits, _ = predictor.logits(image, geometry)
    np.testing.assert_array_equal(labels, logits.argmax(0).numpy())


def test_output_name_drops_nnunet_channel_suffix() -> None:
    assert _output_name(Path("a/CASE_0000.nii.gz")) == "CASE.nii.gz"
    assert _output_name(Path("a/scan.png")) == "scan.png"
    assert _output_name(Path("a/patient_12")) == "patient_12"
    assert _output_name(Path("a/polyp.jpg")) == "polyp.png"  # a JPEG mask would not survive compression
    assert _output_name(Path("a/polyp_0000.JPEG")) == "polyp.png"
