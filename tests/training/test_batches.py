"""Training batches: the Batch record, and extra targets computed by the loader when a loss asks for them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

from medseg.config.plans import ChannelNorm, DataConfig, InferConfig, Plans, TrainConfig
from medseg.io.images import Geometry
from medseg.labels import LabelSpec
from medseg.models.unet_config import nnunet_config
from medseg.preprocessing.forward import CaseProperties, PreprocessedCase
from medseg.training.batches import Batch, PatchDataset, make_loader
from medseg.training.targets import signed_distance_maps


def _plans(overlapping: bool = False) -> Plans:
    names = {1: "a", 2: "b"} if overlapping else {0: "bg", 1: "a", 2: "b"}
    data = DataConfig(2, ("MR",), LabelSpec(names, tuple(names), overlapping), (1.0, 1.0), (ChannelNorm("zscore"),))
    model = nnunet_config(2, 1, len(names), (16, 16), (1.0, 1.0), base_features=4, max_features=8)
    return Plans(
        "toy", data, (16, 16), model, TrainConfig(batch_size=3, iterations_per_epoch=2, epochs=1), InferConfig()
    )


def _case(overlapping: bool = False) -> PreprocessedCase:
    rng = np.random.default_rng(0)
    label = np.zeros((24, 24), dtype=np.uint8)
    label[4:12, 5:15], label[14:20, 10:22] = 1, 2
    if overlapping:
        label = np.stack([label == 1, label >= 1]).astype(np.uint8)
    props = CaseProperties("c", (24, 24), Geometry.identity(2), (0, 0), (24, 24), (24, 24))
    return PreprocessedCase(rng.normal(size=(1, 24, 24)).astype(np.float32), label, props)


def test_loader_provides_requested_extra_targets_as_the_loss_receives_them() -> None:
    plans = _plans()
    dataset = PatchDataset([_case()], plans, extras=("distance_map",))
    batch = Batch.from_dict(next(iter(make_loader(dataset, 0, plans.train))))
    assert batch.image.shape == (3, 1, 16, 16) and batch.target.shape == (3, 1, 16, 16)
    assert set(batch) == {"image", "target", "distance_map"} and len(batch) == 3
    distance = batch["distance_map"]
    assert distance.shape == (3, 3, 16, 16) and distance.dtype == torch.float32
    for b in range(3):  # the map belongs to this patch's (augmented) label, channel by channel
        label = batch.target[b, 0].numpy()
        np.testing.assert_allclose(distance[b].numpy(), signed_distance_maps(label, 3, overlapping=False))


def test_without_extras_a_batch_carries_image_and_target_only() -> None:
    plans = _plans(overlapping=True)
    item = PatchDataset([_case(overlapping=True)], plans)[7]
    assert set(item) == {"image", "target"} and item["target"].shape == (2, 16, 16)
    with pytest.raises(ValueError, match="not in EXTRA_TARGETS"):
        PatchDataset([_case()], plans, extras=("nonsense",))


def test_signed_distance_matches_scipy_by_hand() -> None:
    mask = np.zeros((9, 9), dtype=np.uint8)
    mask[3:6, 2:7] = 1
    (got,) = signed_distance_maps(mask[None], 1, overlapping=True)
    inside = mask.astype(bool)
    np.testing.assert_allclose(got[~inside], ndimage.distance_transform_edt(~inside)[~inside])
    np.testing.assert_allclose(got[inside], 1.0 - ndimage.distance_transform_edt(inside)[inside])
    assert got[4, 4] == -1.0 and got[3, 4] == 0.0 and got[0, 4] == 3.0  # centre, border voxel, 3 rows above
    empty = signed_distance_maps(np.zeros((4, 4), np.uint8), 2, overlapping=False)
    assert empty.shape == (2, 4, 4) and not empty[1].any()  # class 1 absent: zeros


def test_batch_moves_every_tensor() -> None:
    batch = Batch(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2).long(), {"distance_map": torch.ones(1, 2, 2, 2)})
    moved = batch.to(torch.device("cpu"))
    assert moved["distance_map"].sum() == 8 and replace(moved, extras={}).extras == {}
