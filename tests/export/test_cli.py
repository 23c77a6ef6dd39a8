"""``medseg export`` and ``medseg predict MODEL.medseg``, and their one-line errors (exit 2)."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from medseg.apps.cli.app import app, main
from medseg.datasets.dataset import load_dataset
from medseg.inference.ensemble import load_predictor
from medseg.io.images import read_label


def _medseg(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.argv", ["medseg", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


@pytest.fixture(scope="module")
def cli_bundle(tiny_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "tiny2d.medseg"
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert _medseg(["export", str(tiny_runs["run2"]), "--out", str(out), "--parity-cases", "1"], monkeypatch) == 0
    return out


def test_export_then_predict_with_the_bundle(
    cli_bundle: Path,
    tiny_runs: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli_bundle.is_file()
    capsys.readouterr()
    case = load_dataset(tiny_runs["data2"]).cases[0]
    assert _medseg(["predict", str(cli_bundle), str(case.channels[0]), str(tmp_path / "out")], monkeypatch) == 0
    assert "1 mask(s) written" in capsys.readouterr().out
    got, _ = read_label(tmp_path / "out" / case.channels[0].name)
    eager = load_predictor(tiny_runs["run2"])
    want, _ = eager.predict(list(case.channels))
    np.testing.assert_array_equal(got, eager.plans.data.labels.to_values(want))


def _missing(cli_bundle: Path, tmp_path: Path) -> Path:
    return tmp_path / "missing.medseg"


def _not_a_zip(cli_bundle: Path, tmp_path: Path) -> Path:
    (tmp_path / "notzip.medseg").write_bytes(b"PK not really a zip")
    return tmp_path / "notzip.medseg"


def _damaged(cli_bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "damaged.medseg"
    with zipfile.ZipFile(cli_bundle) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data.replace(b'"overlap"', b'"overlaq"') if name == "manifest.json" else data)
    return out


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_missing, r"missing\.medseg: no such bundle file"),
        (_not_a_zip, r"notzip\.medseg: not a medseg bundle"),
        (_damaged, r"damaged\.medseg: member manifest\.json fails its SHA-256 check"),
    ],
    ids=["missing", "not-a-zip", "wrong-checksum"],
)
def test_bad_bundles_exit_2_with_one_line(
    make: Callable[[Path, Path], Path], message: str, cli_bundle: Path, tiny_runs: dict[str, Path], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    bundle = make(cli_bundle, tmp_path)
    scan = load_dataset(tiny_runs["data2"]).cases[0].channels[0]
    assert _medseg(["predict", str(bundle), str(scan), str(tmp_path / "out")], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_export_errors_exit_2(
    tiny_runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", str(tmp_path / "no-run"), "--out", str(tmp_path / "x.medseg")]
    assert _medseg(argv, monkeypatch) == 2
    assert "no-run" in capsys.readouterr().err
    argv = ["export", str(tiny_runs["run2"]), "--out", str(tmp_path / "x.medseg"), "--format", "tflite"]
    assert _medseg(argv, monkeypatch) == 2
    assert "format 'tflite'" in capsys.readouterr().err
    assert not (tmp_path / "x.medseg").exists()


def test_export_help_lists_its_options_without_bool_placeholders() -> None:
    result = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    for flag in ("--out", "--format", "--int8", "--calibration-cases", "--precision", "--parity-cases", "--no-tta"):
        assert flag in result.output
