"""`medseg pretrain` end to end on synthetic scans: the reconstruction loss goes down (2D and 3D), the
weights load with `medseg train --encoder-weights` (U-Net and ResNet U-Net), a SIGKILLed run resumes to
the weights of an uninterrupted one, and bad input is one line with exit code 2."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import medseg
from medseg.apps.cli.app import main
from medseg.config.plans import load_plans
from medseg.inference.network import network_for
from medseg.models.encoder_weights import load_encoder_weights, read_state_dict
from medseg.pretraining.loop import pretraining_network
from medseg.run import load_checkpoint
from medseg.synthetic import SyntheticSpec, write_dataset
from medseg.workflow import TrainOptions, plan_run
from tests.training.tiny_runs import plan_tiny_run

HANG_S = 120.0  # guard against a hung child only


def _medseg(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.argv", ["medseg", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


@pytest.fixture
def one_thread():  # type: ignore[no-untyped-def]
    """A tiny network on a busy machine: one thread, and the same arithmetic in every process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _planned(dataset: Path, run: Path, **options: object) -> Path:
    plan_tiny_run(dataset, run, TrainOptions(device="cpu", folds=3, **options))  # type: ignore[arg-type]
    return run


@pytest.mark.parametrize("ndim", [2, 3])
def test_the_reconstruction_loss_goes_down(ndim: int, tmp_path: Path, one_thread: None) -> None:
    spec = SyntheticSpec(ndim=2, shape=(48, 48)) if ndim == 2 else SyntheticSpec(ndim=3, shape=(24, 32, 32))
    dataset = write_dataset(tmp_path / "ds", spec, n_cases=3, seed=0, layout="msd")
    run = _planned(dataset, tmp_path / "run")
    options = medseg.PretrainOptions(epochs=6, iterations_per_epoch=4, device="cpu", learning_rate=3e-3)
    weights = medseg.pretrain([dataset / "imagesTr"], run, tmp_path / "pre", options)

    sidecar = json.loads((tmp_path / "pre" / "encoder.json").read_text())
    curve = sidecar["loss_curve"]
    assert len(curve) == 6 and sidecar["epochs"] == 6 and sidecar["stopped_by"] == "epochs"
    assert sum(curve[-2:]) < 0.8 * sum(curve[:2]), curve
    assert sidecar["method"] == "masked-reconstruction" and sidecar["scans"] == [str((dataset / "imagesTr").resolve())]
    # the file holds the encoder's keys only, with the planned network's shapes
    plans = load_plans(run / "plans.json")
    encoder = network_for(plans).encoder  # type: ignore[union-attr]
    state = read_state_dict(weights)
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in encoder.state_dict().items()}
    assert [json.loads(line)["epoch"] for line in (tmp_path / "pre" / "log.jsonl").read_text().splitlines()] == [
        1, 2, 3, 4, 5, 6,
    ]  # fmt: skip


def test_weights_load_with_train_encoder_weights(msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plan = tmp_path / "plan"
    plan_run(msd_2d, plan, TrainOptions(device="cpu", folds=3))  # as `medseg plan`: the default U-Net
    pre = tmp_path / "pre"
    argv = ["pretrain", str(msd_2d / "imagesTr"), str(msd_2d / "imagesTs"), "--plans", str(plan), "--out", str(pre)]
    # another seed than training's: the file then differs from the network training would initialise
    flags = ["--epochs", "1", "--iterations", "1", "--batch-size", "2", "--device", "cpu", "--seed", "7"]
    assert _medseg([*argv, *flags], monkeypatch) == 0
    weights = pre / "encoder.pth"
    file_state = read_state_dict(weights)

    # `medseg train --encoder-weights`: planned with medseg's normalisation (not ImageNet's), the file recorded
    run = tmp_path / "run"
    argv = ["train", str(msd_2d), "--out", str(run), "--encoder-weights", str(weights), "--folds", "3"]
    flags = ["--epochs", "1", "--iterations", "1", "--device", "cpu"]
    assert _medseg([*argv, *flags], monkeypatch) == 0
    plans = load_plans(run / "plans.json")
    assert plans.data.normalization == load_plans(plan / "plans.json").data.normalization
    assert plans.model.encoder_weights == str(weights.resolve())  # type: ignore[union-attr]
    # epoch 0 of that training: the network the loop builds, with the file loaded, holds the file's tensors
    model = network_for(plans, generator=torch.Generator().manual_seed(plans.train.seed))
    assert load_encoder_weights(model, plans.model)
    loaded = model.encoder.state_dict()  # type: ignore[union-attr]
    assert loaded.keys() == file_state.keys() and all(torch.equal(loaded[k], file_state[k]) for k in loaded)
    # and after one step the trained encoder is still close to the file's, far from a fresh initialisation
    trained = load_checkpoint(run / "checkpoint_last.pt")["model"]
    fresh = network_for(plans, generator=torch.Generator().manual_seed(plans.train.seed)).state_dict()
    convs = [k for k, v in file_state.items() if v.dim() > 2]  # the convolutions' weights
    assert convs
    for key in convs:
        moved = (trained[f"encoder.{key}"] - file_state[key]).norm()
        assert moved < 0.5 * (fresh[f"encoder.{key}"] - file_state[key]).norm(), key


def test_a_resnet_unet_encoder_pretrains_and_plans(msd_2d: Path, tmp_path: Path, one_thread: None) -> None:
    plan = tmp_path / "plan"
    plan_run(msd_2d, plan, TrainOptions(device="cpu", folds=3, model="resnet18-unet"))
    options = medseg.PretrainOptions(epochs=1, iterations_per_epoch=1, batch_size=2, device="cpu")
    weights = medseg.pretrain([msd_2d / "imagesTr"], plan, tmp_path / "pre", options)
    plans = plan_run(
        msd_2d,
        tmp_path / "run",
        TrainOptions(device="cpu", folds=3, model="resnet18-unet", encoder_weights=str(weights)),
    )
    assert plans.data.normalization[0].scheme != "imagenet"  # medseg's own weights: the planned normalisation
    model = network_for(plans)
    assert load_encoder_weights(model, plans.model)
    file_state = read_state_dict(weights)
    assert all(torch.equal(model.encoder.state_dict()[k], v) for k, v in file_state.items())  # type: ignore[union-attr]


def test_the_2d_configuration_pretrains_the_slice_network(msd_3d: Path, tmp_path: Path, one_thread: None) -> None:
    plan = _planned(msd_3d, tmp_path / "plan", configuration="2d")
    options = medseg.PretrainOptions(epochs=1, iterations_per_epoch=1, device="cpu")
    weights = medseg.pretrain([msd_3d / "imagesTr"], plan, tmp_path / "pre", options)
    plans = load_plans(plan / "plans.json")
    model = network_for(plans)  # SliceWise around the 2D network: the encoder is looked up inside
    config = replace(plans.model, encoder_weights=str(weights), encoder_weights_sha256=medseg_sha(weights))  # type: ignore[type-var]
    assert load_encoder_weights(model, config)


def medseg_sha(path: Path) -> str:
    from medseg.models.encoder_weights import sha256_of

    return sha256_of(path)


def test_a_model_without_an_encoder_is_refused(msd_2d: Path, tmp_path: Path) -> None:
    plan = tmp_path / "plan"
    plans = plan_run(msd_2d, plan, TrainOptions(device="cpu", folds=3, model="segresnet"))
    with pytest.raises(medseg.ConfigError, match=r"^model 'segresnet' has no encoder module to pre-train"):
        pretraining_network(plans)


@pytest.mark.parametrize(
    ("scans", "message"),
    [
        ("missing", r"missing: input not found"),
        ("empty", r"empty: holds no DICOM series"),  # an empty folder is taken for an empty DICOM series
        (
            "dataset",
            r"msd2d: is a dataset's root, not a folder of scans \(pass its image folder\(s\), e.g. .*imagesTr\)",
        ),
    ],
)
def test_a_bad_folder_is_one_line_and_exit_2(
    scans: str,
    message: str,
    msd_2d: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = _planned(msd_2d, tmp_path / "plan")
    (tmp_path / "empty").mkdir()
    folder = msd_2d if scans == "dataset" else tmp_path / scans
    argv = ["pretrain", str(folder), "--plans", str(plan), "--out", str(tmp_path / "pre"), "--device", "cpu"]
    assert _medseg(argv, monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert re.search(message, err), err
    assert not (tmp_path / "pre" / "encoder.pth").exists()


def test_missing_plans_and_a_second_run_into_the_same_folder_are_one_line(
    msd_2d: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["pretrain", str(msd_2d / "imagesTr"), "--out", str(tmp_path / "pre"), "--device", "cpu"]
    assert _medseg([*argv, "--plans", str(tmp_path / "nowhere")], monkeypatch) == 2
    assert "nowhere: no plans.json there (plan the labelled dataset first" in capsys.readouterr().err
    plan = _planned(msd_2d, tmp_path / "plan")
    flags = ["--plans", str(plan), "--epochs", "1", "--iterations", "1"]
    assert _medseg([*argv, *flags], monkeypatch) == 0
    capsys.readouterr()
    assert _medseg([*argv, *flags], monkeypatch) == 2
    assert "pre: holds a pre-training already (continue it with --resume" in capsys.readouterr().err


def _cli(argv: list[str], output: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(output, "wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "medseg.apps.cli.app", *argv], env=env, stdout=handle, stderr=subprocess.STDOUT
        )


def test_resume_after_sigkill_ends_with_the_weights_of_an_uninterrupted_run(
    msd_2d: Path, tmp_path: Path, one_thread: None
) -> None:
    plan = _planned(msd_2d, tmp_path / "plan")
    pre, whole = tmp_path / "pre", tmp_path / "whole"
    epochs = 30
    argv = ["pretrain", str(msd_2d / "imagesTr"), "--plans", str(plan), "--out", str(pre), "--device", "cpu"]
    argv += ["--epochs", str(epochs), "--iterations", "2"]
    output = tmp_path / "output.txt"
    proc = _cli(argv, output)
    deadline = time.monotonic() + HANG_S
    checkpoint = pre / "checkpoint_last.pt"
    while not (checkpoint.exists() and load_checkpoint(checkpoint)["epoch"] >= 2):
        assert proc.poll() is None, output.read_text()[-3000:]
        assert time.monotonic() < deadline, "pre-training hung"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=HANG_S)
    killed_at = load_checkpoint(checkpoint)["epoch"]
    assert 2 <= killed_at < epochs and not (pre / "encoder.pth").exists()
    logged = [json.loads(line)["epoch"] for line in (pre / "log.jsonl").read_text().splitlines() if line.endswith("}")]
    assert logged[-1] in (killed_at, killed_at + 1)  # at most the epoch in flight is lost

    options = medseg.PretrainOptions(epochs=epochs, iterations_per_epoch=2, device="cpu", resume=True)
    resumed = medseg.pretrain([msd_2d / "imagesTr"], plan, pre, options)
    uninterrupted = medseg.pretrain([msd_2d / "imagesTr"], plan, whole, replace(options, resume=False))

    log = [json.loads(line) for line in (pre / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, epochs + 1))
    a, b = read_state_dict(resumed), read_state_dict(uninterrupted)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (
        json.loads((pre / "encoder.json").read_text())["loss_curve"]
        == json.loads((whole / "encoder.json").read_text())["loss_curve"]
    )
