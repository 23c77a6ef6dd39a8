from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medseg.datasets.dataset import load_dataset
from medseg.labels import LabelSpec
from medseg.planning.fingerprint import Fingerprint, IntensityStats, fingerprint
from medseg.planning.plans import Budget, make_plans, target_spacing
from medseg.preprocessing.forward import nonzero_bbox


def _fp(shapes, spacings, channel="CT") -> Fingerprint:  # type: ignore[no-untyped-def]
    return Fingerprint(
        name="t",
        shapes=tuple(map(tuple, shapes)),
        spacings=tuple(map(tuple, spacings)),
        cropped_shapes=tuple(map(tuple, shapes)),
        channel_names=(channel,),
        labels=LabelSpec({0: "bg", 1: "a"}, (0, 1)),
        foreground_intensity=(IntensityStats(10.0, 5.0, -100.0, 300.0),),
        file_ending=".nii.gz",
    )


def test_target_spacing_median_and_anisotropy_rule() -> None:
    iso = np.array([[1.0, 1.0, 1.0], [1.2, 1.0, 1.0], [0.8, 1.0, 1.0]])
    assert target_spacing(iso) == (1.0, 1.0, 1.0)
    # thick slices: median z 5 mm > 3 x 0.8 mm -> z takes the 10th percentile of its spacings
    aniso = np.array([[5.0, 0.8, 0.8], [5.0, 0.8, 0.8], [1.5, 0.8, 0.8], [5.0, 0.8, 0.8], [3.0, 0.8, 0.8]])
    z = target_spacing(aniso)[0]
    assert z == pytest.approx(np.percentile(aniso[:, 0], 10))
    assert target_spacing(aniso)[1:] == (0.8, 0.8)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_plans_fit_budget_and_network_divisor(device: str) -> None:
    fp = _fp([(120, 512, 512)] * 3, [(2.5, 0.7, 0.7)] * 3)
    plans = make_plans(fp, Budget(device=device))
    patch = plans.patch_size
    budget = 64**3 if device == "cpu" else 128**3
    assert math.prod(patch) <= budget * 1.5  # rounding up to the divisor may add a little
    assert all(p % d == 0 for p, d in zip(patch, plans.model.divisor, strict=True))
    assert plans.model.kernel_sizes[0][0] == 1  # thick slices: no 3x kernel through-plane at full resolution
    assert plans.data.normalization[0].scheme == "ct"
    assert plans.data.normalization[0].clip_low == -100.0
    assert plans.train.augment.rotate_in_plane_only
    assert plans.train.optimizer == ("adamw" if device == "cpu" else "sgd")


def test_small_images_give_whole_image_patches() -> None:
    plans = make_plans(_fp([(36, 50, 35)] * 5, [(1.0, 1.0, 1.0)] * 5, channel="MRI"), Budget())
    assert all(p >= s for p, s in zip(plans.patch_size, (36, 50, 35), strict=True))
    assert plans.data.normalization[0].scheme == "zscore"


def test_fingerprint_reads_cases(msd_3d: Path) -> None:
    fp = fingerprint(load_dataset(msd_3d))
    assert len(fp.shapes) == 4 and fp.ndim == 3
    assert fp.channel_names == ("CT",)
    # foreground (lung, heart, aorta) mean HU lies between lung and soft tissue
    assert -900 < fp.foreground_intensity[0].mean < 100


def test_nonzero_bbox() -> None:
    image = np.zeros((2, 6, 7))
    image[1, 2:4, 3:6] = 1
    assert nonzero_bbox(image) == ((2, 3), (4, 6))
    assert nonzero_bbox(np.zeros((1, 3, 3))) == ((0, 0), (3, 3))


def test_cpu_coarsens_large_images_for_context_gpu_does_not() -> None:
    fp = _fp([(1024, 1024)] * 3, [(0.35, 0.35)] * 3, channel="xray")
    cpu = make_plans(fp, Budget(device="cpu"))
    gpu = make_plans(fp, Budget(device="cuda"))
    assert gpu.data.target_spacing == (0.35, 0.35)
    assert cpu.data.target_spacing == pytest.approx((0.7, 0.7))  # 1024² -> 512² = 4 x the 256² budget
    assert cpu.patch_size == (256, 256)


def test_time_budget_without_epochs_lets_time_decide() -> None:
    fp = _fp([(36, 50, 35)] * 3, [(1.0, 1.0, 1.0)] * 3)
    assert make_plans(fp, Budget(time_budget_s=600)).train.epochs >= 10**6
    assert make_plans(fp, Budget(time_budget_s=600, epochs=7)).train.epochs == 7
    assert make_plans(fp, Budget()).train.epochs == 100


@pytest.mark.parametrize(
    ("names", "sided"),
    [
        ({0: "bg", 1: "heart", 2: "lung"}, False),
        ({1: "heart", 2: "left_lung", 3: "right_lung"}, True),
        ({1: "Kidney_L", 2: "Kidney_R"}, True),
        ({1: "liver", 2: "clavicle right"}, True),
        ({1: "lrsomething", 2: "brain"}, False),
    ],
)
def test_sided_labels_are_not_mirrored_left_right(names: dict[int, str], sided: bool) -> None:
    from medseg.planning.plans import mirror_axes

    assert mirror_axes(2, names) == ((0,) if sided else (0, 1))
    assert mirror_axes(3, names) == ((0, 1) if sided else (0, 1, 2))


def test_thickness_orders_thin_and_thick_regions() -> None:
    from medseg.planning.fingerprint import thickness_mm

    strip = np.zeros((64, 64), bool)
    strip[:, 30:34] = True  # 4 px wide
    disc = np.zeros((64, 64), bool)
    yy, xx = np.mgrid[:64, :64]
    disc[(yy - 32) ** 2 + (xx - 32) ** 2 < 20**2] = True
    assert thickness_mm(strip, (1.0, 1.0)) < 4 < thickness_mm(disc, (1.0, 1.0))
    assert thickness_mm(strip, (0.5, 0.5)) == pytest.approx(thickness_mm(strip, (1.0, 1.0)) / 2)
    assert np.isnan(thickness_mm(np.zeros((4, 4), bool), (1.0, 1.0)))


def test_fingerprint_measures_every_class_thickness(msd_2d: Path) -> None:
    fp = fingerprint(load_dataset(msd_2d))
    assert len(fp.thickness_mm) == len(fp.labels.names)
    assert all(t > 0 for t in fp.thickness_mm if np.isfinite(t))


def test_thickness_on_the_bounding_box_equals_the_whole_volume() -> None:
    from scipy import ndimage

    from medseg.planning.fingerprint import thickness_mm

    mask = np.zeros((40, 200, 200), bool)
    mask[10:14, 50:120, 60:63] = True  # a thin slab far from the borders
    mask[0:3, 0:5, 190:200] = True  # and a piece touching them
    whole = 2.0 * ndimage.distance_transform_edt(mask, sampling=(2.0, 1.0, 1.0))[mask].mean()
    assert thickness_mm(mask, (2.0, 1.0, 1.0)) == pytest.approx(whole, rel=1e-6)
