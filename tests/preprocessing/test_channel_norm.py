"""Per-modality normalisation: every channel of a multi-channel case gets its own ChannelNorm, planned by its
name, and comes out normalised on its own whatever the scales of the others."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config.plans import ChannelNorm, DataConfig
from medseg.datasets.dataset import load_dataset
from medseg.labels import LabelSpec
from medseg.planning.fingerprint import Fingerprint, IntensityStats, fingerprint
from medseg.planning.plans import Budget, make_plans
from medseg.preprocessing.forward import normalize, preprocess_case
from medseg.synthetic import SyntheticSpec, write_dataset

LABELS = LabelSpec({0: "bg", 1: "a"}, (0, 1))


def data_config(*norms: ChannelNorm) -> DataConfig:
    names = tuple(f"MR{c}" for c in range(len(norms)))
    return DataConfig(ndim=2, channel_names=names, labels=LABELS, target_spacing=(1.0, 1.0), normalization=norms)


def test_two_channels_of_very_different_scales_both_come_out_z_scored() -> None:
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(5e4, 1e4, (32, 40)), rng.normal(-3e-3, 1e-4, (32, 40))]).astype(np.float32)
    out = normalize(image, data_config(ChannelNorm("zscore"), ChannelNorm("zscore")))
    assert out.dtype == np.float32 and out.shape == image.shape
    np.testing.assert_allclose(out.mean(axis=(1, 2)), [0.0, 0.0], atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), [1.0, 1.0], rtol=1e-3)
    alone = normalize(image[1:], data_config(ChannelNorm("zscore")))
    np.testing.assert_array_equal(out[1:], alone)  # a channel's result does not depend on the others


def test_a_ct_channel_and_an_mr_channel_are_normalised_each_by_its_scheme() -> None:
    rng = np.random.default_rng(1)
    ct, mr = rng.uniform(-1500, 2000, (16, 16)), rng.normal(800, 50, (16, 16))
    out = normalize(np.stack([ct, mr]), data_config(ChannelNorm("ct", -1000, 1000, 40, 200), ChannelNorm("zscore")))
    np.testing.assert_allclose(out[0], (np.clip(ct, -1000, 1000) - 40) / 200, rtol=1e-5, atol=1e-5)
    assert abs(out[1].mean()) < 1e-4 and abs(out[1].std() - 1) < 1e-3


def test_planning_gives_each_channel_its_own_norm_by_its_name() -> None:
    stats = (IntensityStats(40.0, 300.0, -1000.0, 1500.0), IntensityStats(800.0, 50.0, 600.0, 1000.0))
    fp = Fingerprint("t", ((64, 64),) * 2, ((1.0, 1.0),) * 2, ((64, 64),) * 2, ("CT", "T1"), LABELS, stats, ".nii.gz")
    norms = make_plans(fp, Budget()).data.normalization
    assert norms == (ChannelNorm("ct", -1000.0, 1500.0, 40.0, 300.0), ChannelNorm("zscore"))


@pytest.mark.parametrize("layout", ["nnunet", "msd"])
def test_a_synthetic_two_channel_case_is_preprocessed_per_channel(layout: str, tmp_path: Path) -> None:
    root = write_dataset(
        tmp_path / "d", SyntheticSpec(ndim=2, shape=(48, 48)), n_cases=2, seed=0, layout=layout, n_channels=2
    )
    dataset = load_dataset(root)
    fp = fingerprint(dataset)
    assert fp.channel_names == ("CT", "MR1") and len(fp.foreground_intensity) == 2
    plans = make_plans(fp, Budget())
    assert [n.scheme for n in plans.data.normalization] == ["ct", "zscore"]
    case = preprocess_case(dataset.cases[0], plans.data)
    assert case.image.shape[0] == 2
    mr = case.image[1]
    # z-scored on its own (raw scale 0 .. 1000), then resampled to the planned spacing (which smooths a little)
    assert abs(mr.mean()) < 1e-2 and abs(mr.std() - 1) < 0.1
    ct_norm = plans.data.normalization[0]
    assert case.image[0].max() <= (ct_norm.clip_high - ct_norm.mean) / ct_norm.std + 1e-4
