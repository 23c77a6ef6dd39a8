from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medseg.datasets.dataset import detect_layout, load_dataset
from medseg.errors import DataError
from medseg.io.images import Geometry, write_image
from medseg.synthetic import LABEL_NAMES, OVERLAP_NAMES, write_dataset
from tests.conftest import SPEC_2D, SPEC_3D


def test_msd_layout(msd_2d: Path) -> None:
    ds = load_dataset(msd_2d)
    assert (ds.layout, len(ds.cases), len(ds.test_cases)) == ("msd", 6, 1)
    assert ds.labels.names == LABEL_NAMES and ds.labels.values == (0, 1, 2, 3)
    assert ds.channel_names == ("CT",)
    assert ds.cases[0].case_id == "case_000"
    assert ds.cases[0].label[0].name == "case_000.nii.gz"
    assert not ds.problems


def test_nnunet_layout(nnunet_3d: Path) -> None:
    ds = load_dataset(nnunet_3d)
    assert ds.layout == "nnunet" and len(ds.cases) == 3
    assert ds.cases[1].channels[0].name == "case_001_0000.nii.gz"
    assert ds.cases[1].label[0].name == "case_001.nii.gz"


def test_nnunet_multichannel_cases(tmp_path: Path) -> None:
    root = tmp_path / "mc"
    geometry = Geometry.identity(2)
    for case in ("a", "b"):
        for c in range(2):
            write_image(root / "imagesTr" / f"{case}_{c:04d}.nii.gz", np.ones((8, 8), np.float32) * c, geometry)
        write_image(root / "labelsTr" / f"{case}.nii.gz", np.zeros((8, 8), np.uint8), geometry)
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "T1", "1": "T2"},
                "labels": {"background": 0, "tumour": 1},
                "numTraining": 2,
                "file_ending": ".nii.gz",
            }
        )
    )
    ds = load_dataset(root)
    assert ds.channel_names == ("T1", "T2")
    assert [len(c.channels) for c in ds.cases] == [2, 2]


def test_folder_layout_discovers_label_values(tmp_path: Path) -> None:
    root = tmp_path / "f"
    for name in ("x1", "x2"):
        write_image(root / "images" / f"{name}.png", np.full((16, 16), 100, np.uint8), Geometry.identity(2))
        mask = np.zeros((16, 16), np.uint8)
        mask[4:8, 4:8] = 255
        write_image(root / "masks" / f"{name}.png", mask, Geometry.identity(2))
    ds = load_dataset(root)
    assert ds.layout == "folder"
    assert ds.labels.values == (0, 255)
    assert ds.labels.names == {0: "background", 1: "label_255"}


def test_folder_layout_with_structure_subfolders(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "ml", SPEC_2D, n_cases=3, seed=0, layout="folder", overlapping=True)
    ds = load_dataset(root)
    assert ds.labels.overlapping
    assert list(ds.labels.names.values()) == sorted(OVERLAP_NAMES)
    assert [p.parent.name for p in ds.cases[0].label] == sorted(OVERLAP_NAMES)


def test_folder_problems_missing_mask_and_orphan(folder_2d: Path) -> None:
    (folder_2d / "masks" / "case_001.png").rename(folder_2d / "masks" / "orphan.png")
    ds = load_dataset(folder_2d)
    messages = [str(p) for p in ds.problems]
    assert any("case_001.png" in m and "no mask" in m for m in messages)
    assert any("orphan.png" in m and "without an image" in m for m in messages)


def test_duplicate_ids_reported(tmp_path: Path) -> None:
    root = write_dataset(tmp_path / "d", SPEC_3D, n_cases=2, seed=0, layout="msd")
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"].append(meta["training"][0])
    (root / "dataset.json").write_text(json.dumps(meta))
    ds = load_dataset(root)
    assert len(ds.cases) == 2
    assert any("duplicate case id 'case_000'" in str(p) for p in ds.problems)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.pop("labels"), "missing key 'labels'"),
        (lambda m: m.update(training=[{"image": "../../etc/passwd", "label": "./labelsTr/x.nii.gz"}]), "outside"),
        (lambda m: m.update(labels=["background"]), "'labels' must map"),
    ],
)
def test_bad_dataset_json(msd_3d: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    meta = json.loads((msd_3d / "dataset.json").read_text())
    edit(meta)
    (msd_3d / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=message) as info:
        load_dataset(msd_3d)
    assert "dataset.json" in str(info.value)


def test_invalid_json_names_line(msd_3d: Path) -> None:
    (msd_3d / "dataset.json").write_text('{"labels": {"0": "bg",}}')
    with pytest.raises(DataError, match="invalid JSON at line 1"):
        load_dataset(msd_3d)


def test_unknown_layout(tmp_path: Path) -> None:
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DataError, match="no known dataset layout"):
        detect_layout(tmp_path)
    with pytest.raises(DataError, match="not found"):
        detect_layout(tmp_path / "missing")


def test_missing_label_file_reported(msd_3d: Path) -> None:
    shutil.move(msd_3d / "labelsTr" / "case_002.nii.gz", msd_3d / "elsewhere.nii.gz")
    ds = load_dataset(msd_3d)
    assert any("case_002.nii.gz" in str(p) and "missing" in str(p) for p in ds.problems)


def test_a_folder_that_cannot_be_listed_is_named(folder_2d: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An OSError while scanning a dataset (here: listing masks/) is one line naming the path."""
    listing = Path.iterdir

    def refuse(self: Path):  # type: ignore[no-untyped-def]
        if self.name == "masks":
            raise PermissionError(13, "Permission denied", str(self))
        return listing(self)

    monkeypatch.setattr(Path, "iterdir", refuse)
    with pytest.raises(DataError) as info:
        load_dataset(folder_2d)
    fix = "check the file and its permissions"
    assert str(info.value) == f"{folder_2d / 'masks'}: cannot be read (Permission denied) ({fix})"
