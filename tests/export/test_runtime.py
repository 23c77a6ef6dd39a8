"""The torch-free runtime (``runtime/``, package ``medseg_runtime``): resampling as torch computes it, the
streamed row resampler, and a whole prediction in a process where ``import torch`` fails."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from medseg_runtime import BundleError, BundlePredictor, PostStep
from medseg_runtime.postprocess import apply_steps, apply_steps_masks
from medseg_runtime.resample import RowResampler, resample

from medseg.config.postprocessing import PostProcessing
from medseg.datasets.dataset import load_dataset
from medseg.errors import MedsegError
from medseg.export.runtime import require
from medseg.inference.ensemble import load_predictor
from medseg.inference.postprocessing import apply_steps as medseg_apply_steps
from medseg.inference.postprocessing import apply_steps_masks as medseg_apply_steps_masks
from medseg.io.images import read_channels, read_label, write_image
from medseg.preprocessing.resample import resample as torch_resample


@pytest.mark.parametrize(
    ("shape", "target"),
    [((3, 17, 23, 19), (30, 11, 40)), ((1, 47, 33, 35), (20, 70, 35)), ((2, 9, 31), (9, 13)), ((1, 23, 4), (40, 4))],
)
def test_resample_is_torch_bit_for_bit(shape: tuple[int, ...], target: tuple[int, ...]) -> None:
    """3D, and 2D with one axis resampled: the same float32 values as torch's interpolate (medseg's)."""
    image = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    np.testing.assert_array_equal(resample(image, target), torch_resample(image, target))


def test_2d_resampling_of_both_axes_is_within_an_ulp_of_torch() -> None:
    """torch's 2D kernel rounds differently when both axes change; the runtime stays within float32 rounding."""
    image = np.random.default_rng(1).normal(size=(2, 20, 30)).astype(np.float32)
    np.testing.assert_allclose(resample(image, (7, 45)), torch_resample(image, (7, 45)), rtol=0, atol=5e-7)


@pytest.mark.parametrize("block", [1, 3, 16])
def test_row_resampler_fed_in_blocks_equals_one_resample(block: int) -> None:
    logits = np.random.default_rng(2).normal(size=(3, 21, 10, 12)).astype(np.float32)
    rows = RowResampler(21, (34, 7, 12))
    parts = [p for s in range(0, 21, block) for p in rows.feed(logits[:, s : s + block])] + list(rows.finish())
    assert [start for start, _ in parts] == sorted(start for start, _ in parts) and parts[0][0] == 0
    np.testing.assert_array_equal(np.concatenate([p for _, p in parts], axis=1), resample(logits, (34, 7, 12)))
    assert len(rows.rows) <= block + 2  # only the source rows still needed are kept


TORCH_FREE = """
import sys
sys.modules["torch"] = None  # `import torch` now raises ImportError, here and in anything imported below
sys.modules["medseg"] = None  # the runtime stands alone: no medseg either
from medseg_runtime.cli import main
main(["predict", *sys.argv[1:]])
"""


def test_runtime_predicts_without_torch_as_the_eager_predictor_does(
    tiny_runs: dict[str, Path], bundles: dict[str, Path], tmp_path: Path
) -> None:
    bundle = bundles["onnx3"]
    scans = tmp_path / "scans"
    for case in load_dataset(tiny_runs["data3"]).cases[:2]:  # one as it is, one on a finer grid than planned
        image, geometry = read_channels(list(case.channels))
        if case.case_id.endswith("1"):
            geometry = replace(geometry, spacing=tuple(s * 0.8 for s in geometry.spacing))
        write_image(scans / case.channels[0].name, image, geometry)
    result = subprocess.run(
        [sys.executable, "-c", TORCH_FREE, str(bundle), str(scans), str(tmp_path / "out")],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "2 mask(s) written" in result.stdout
    eager = load_predictor(tiny_runs["run3"])
    for scan in sorted(scans.iterdir()):
        want, geometry = eager.predict([scan])
        got, got_geometry = read_label(tmp_path / "out" / scan.name)
        np.testing.assert_array_equal(got, eager.plans.data.labels.to_values(want))
        assert got_geometry.matches(geometry)


def test_runtime_refuses_a_torchscript_bundle_in_one_line(bundles: dict[str, Path]) -> None:
    with pytest.raises(
        BundleError, match=r"ts2\.medseg: holds torchscript networks, which need torch; predict it with"
    ):
        BundlePredictor.load(bundles["ts2"])


STEPS = [
    PostProcessing(largest_component=True),
    PostProcessing(min_voxels=4, classes=(2,)),
    PostProcessing(fill_holes=True),
    PostProcessing(foreground_component=True, fill_holes=True, classes=(1,)),
]


@pytest.mark.parametrize("step", STEPS, ids=lambda s: repr(s)[15:60])
@pytest.mark.parametrize("ndim", [2, 3])
def test_runtime_postprocessing_equals_medseg(step: PostProcessing, ndim: int) -> None:
    """The runtime's copy of the post-processing (it cannot import medseg) gives medseg's results."""
    rng = np.random.default_rng(ndim)
    shape = (40, 40) if ndim == 2 else (12, 20, 20)
    labels = (rng.random(shape) * 3.6).astype(np.uint8) * (rng.random(shape) > 0.3)
    runtime_step = PostStep(**dataclasses.asdict(step))
    np.testing.assert_array_equal(apply_steps(labels, [runtime_step]), medseg_apply_steps(labels, [step]))
    masks = rng.random((3, *shape)) > 0.55
    np.testing.assert_array_equal(apply_steps_masks(masks, [runtime_step]), medseg_apply_steps_masks(masks, [step]))


@pytest.mark.parametrize(
    ("module", "hint"),
    [("onnx", "pip install 'medseg[export]'"), ("medseg_runtime", "pip install -e runtime/")],
)
def test_a_missing_package_is_one_line_with_the_pip_command(
    module: str, hint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` raises ImportError
    with pytest.raises(MedsegError, match=rf"^export and bundles need the package '{module}': {re.escape(hint)}"):
        require(module)
