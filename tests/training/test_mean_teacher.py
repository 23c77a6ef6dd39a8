"""Mean Teacher semi-supervised training (``medseg train DATASET --unlabeled DIR``): the maths by hand, the
unlabelled patch pairs, one step for every registered network, a run end to end, resume after a SIGKILL,
and bad unlabelled folders through the command line."""

from __future__ import annotations

import copy
import json
import math
import multiprocessing
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medseg.apps.cli.app import main
from medseg.config.augment import AugmentConfig
from medseg.config.plans import Plans, load_plans, save_plans
from medseg.config.semi_supervised import SemiSupervisedConfig
from medseg.errors import ConfigError, DataError
from medseg.inference.network import network_for
from medseg.losses.registry import LossSettings, build_loss
from medseg.models.registry import MODELS
from medseg.run import load_checkpoint
from medseg.synthetic import SyntheticSpec, write_dataset
from medseg.training.batches import Batch
from medseg.training.loop import validation_dice
from medseg.training.mean_teacher import (
    consistency_loss,
    consistency_weight,
    ema,
    ema_decay,
    make_teacher,
    mean_teacher_losses,
    sigmoid_rampup,
    update_teacher,
)
from medseg.training.unlabeled import UnlabeledPatches, find_unlabeled, split_params
from medseg.transforms.augment import apply_params, draw_params
from medseg.workflow import TrainOptions, plan_run, train_run
from tests.models.test_registry import tiny
from tests.training.tiny_runs import PRELOAD, plan_tiny_run, run_cli

SPEC = SyntheticSpec(ndim=2, shape=(48, 48))
HANG_S = 120.0  # guard against a hung child only


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny networks on one thread: on a busy machine a second OpenMP thread makes every operation wait for
    a time slice (a tiny step took seconds instead of milliseconds)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------- the maths


@pytest.mark.parametrize(("step", "expected"), [(0, 0.0), (1, 0.5), (9, 0.9), (99, 0.99), (5000, 0.99)])
def test_ema_decay_ramps_up_to_the_configured_decay(step: int, expected: float) -> None:
    assert ema_decay(step, 0.99) == pytest.approx(expected)


def test_ema_by_hand() -> None:
    out = ema(torch.tensor([1.0, -2.0]), torch.tensor([3.0, 2.0]), 0.75)
    assert torch.allclose(out, torch.tensor([1.5, -1.0]))  # 0.75 * 1 + 0.25 * 3, 0.75 * -2 + 0.25 * 2


def test_update_teacher_averages_parameters_and_copies_buffers() -> None:
    torch.manual_seed(0)
    student = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    teacher = make_teacher(student)
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training
    before = copy.deepcopy(teacher.state_dict())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
        student.get_buffer("1.running_mean").fill_(0.3)
        student.get_buffer("1.num_batches_tracked").fill_(7)
    update_teacher(teacher, student, 0.9)
    state = teacher.state_dict()
    for name, p in student.named_parameters():
        assert torch.allclose(state[name], 0.9 * before[name] + 0.1 * p.detach(), atol=1e-7)
        assert torch.allclose(state[name], before[name] + 0.1, atol=1e-6)  # p = before + 1
    assert torch.equal(state["1.running_mean"], torch.full((2,), 0.3))
    assert int(state["1.num_batches_tracked"]) == 7


@pytest.mark.parametrize(
    ("progress", "rampup", "expected"),
    [
        (0.0, 0.25, math.exp(-5)),
        (0.125, 0.25, math.exp(-5 * 0.25)),  # t = 0.5: exp(-5 * 0.5^2)
        (0.25, 0.25, 1.0),
        (0.9, 0.25, 1.0),
        (0.0, 0.0, 1.0),  # no ramp-up: full weight at once
    ],
)
def test_sigmoid_rampup_values(progress: float, rampup: float, expected: float) -> None:
    assert sigmoid_rampup(progress, rampup) == pytest.approx(expected)
    config = SemiSupervisedConfig(unlabeled="u", batch_size=1, consistency_weight=0.5, rampup=rampup)
    assert consistency_weight(progress, config) == pytest.approx(0.5 * expected)


@pytest.mark.parametrize("overlapping", [False, True])
def test_consistency_loss_by_hand_and_only_the_student_gets_a_gradient(overlapping: bool) -> None:
    # softmax of (ln 3, 0) is (0.75, 0.25) and of (0, 0) is (0.5, 0.5): both squared differences are 0.0625;
    # sigmoid(ln 3) = 0.75 and sigmoid(0) = 0.5: 0.0625 on channel 0, 0 on channel 1
    student = torch.zeros(1, 2, 1, 1, requires_grad=True)
    teacher = torch.tensor([math.log(3.0), 0.0]).reshape(1, 2, 1, 1).requires_grad_()
    loss = consistency_loss(student, teacher, overlapping=overlapping)
    expected = 0.0625 if not overlapping else (0.0625 + 0.0) / 2  # sigmoid: channel 1 agrees (0 vs 0)
    assert float(loss.detach()) == pytest.approx(expected)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


@pytest.mark.parametrize(
    ("field", "value"), [("ema_decay", 1.0), ("consistency_weight", -1.0), ("rampup", 1.5), ("batch_size", 0)]
)
def test_config_refuses_invalid_values(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"train.semi_supervised.{field}"):
        SemiSupervisedConfig(**{"unlabeled": "u", "batch_size": 2, field: value})  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------- unlabelled data


def test_split_params_applied_in_turn_equal_the_whole_augmentation() -> None:
    rng = np.random.default_rng(3)
    image, label = rng.normal(size=(2, 24, 20)).astype(np.float32), np.zeros((24, 20), np.uint8)
    config = AugmentConfig(p_spatial=1.0, p_noise=1.0, p_brightness=1.0, p_contrast=1.0, p_gamma=0.0, p_blur=1.0)
    params = draw_params(config, rng, n_channels=2, ndim=2)
    assert params.rotation and params.scale != 1.0 and params.noise_std > 0
    whole, _ = apply_params(image, label, params, out_shape=(16, 16))
    spatial, intensity = split_params(params)
    moved, blank = apply_params(image, label, spatial, out_shape=(16, 16))
    twice, _ = apply_params(moved, blank, intensity)
    assert np.allclose(whole, twice, atol=1e-5)
    assert not np.allclose(moved, twice)  # the intensity part changed the image


def _plans(tmp_path: Path, augment: AugmentConfig, noise_std: float) -> tuple[Plans, SemiSupervisedConfig]:
    dataset = write_dataset(tmp_path / "ds", SPEC, n_cases=3, seed=0, layout="msd")
    plans = plan_run(dataset, tmp_path / "run", TrainOptions(device="cpu", folds=3))
    semi = SemiSupervisedConfig(unlabeled=str(tmp_path), batch_size=2, noise_std=noise_std)
    return replace(plans, train=replace(plans.train, augment=augment, semi_supervised=semi)), semi


def test_unlabeled_pairs_share_the_spatial_frame_and_differ_by_noise(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    cases = [type("Case", (), {"image": rng.normal(size=(1, 60, 70)).astype(np.float32)})()]
    no_intensity = AugmentConfig(p_spatial=1.0, p_brightness=0, p_contrast=0, p_gamma=0, p_noise=0, p_blur=0)
    plans, semi = _plans(tmp_path, no_intensity, noise_std=0.0)
    same = UnlabeledPatches(cases, plans, semi)  # type: ignore[arg-type]
    item = same[5]
    assert item["student"].shape == item["teacher"].shape == (1, *plans.patch_size)
    assert torch.equal(item["student"], item["teacher"])  # no intensity change: the very same patch
    assert torch.equal(same[5]["teacher"], item["teacher"])  # a pure function of the index
    assert not torch.equal(same[6]["teacher"], item["teacher"])
    noisy = UnlabeledPatches(cases, plans, replace(semi, noise_std=0.1))  # type: ignore[arg-type]
    difference = noisy[5]["student"] - noisy[5]["teacher"]
    assert torch.equal(noisy[5]["teacher"], item["teacher"])  # the teacher's patch: spatial part only
    assert 0 < float(difference.abs().max()) <= 0.2 + 1e-6  # Gaussian noise clipped to 2 std


# --------------------------------------------------------------------------- every registered network


@pytest.mark.parametrize("name", sorted(MODELS))
def test_one_mean_teacher_step_for_every_registered_network(name: str) -> None:
    """A step (labelled + unlabelled patches, Dice + CE + consistency, SGD) then the EMA update: the
    teacher is the EMA of its old weights and the student's new ones, and differs from the student."""
    ndim = min(MODELS[name].ndims)
    config = tiny(name, ndim)
    size = (16, 16) if ndim == 2 else (16, 16, 16)
    student = MODELS[name].build(config, generator=torch.Generator().manual_seed(0)).train()
    teacher = make_teacher(student)
    loss_fn = build_loss("dice+ce", LossSettings(), overlapping=False, n_outputs=config.n_outputs)
    gen = torch.Generator().manual_seed(1)
    batch = Batch(torch.randn(2, 2, *size, generator=gen), torch.randint(0, 3, (2, 1, *size), generator=gen))
    pair = {"student": torch.randn(1, 2, *size, generator=gen), "teacher": torch.randn(1, 2, *size, generator=gen)}
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    loss, consistency = mean_teacher_losses(student, teacher, loss_fn, batch, pair, overlapping=False)
    assert consistency.ndim == 0 and float(consistency.detach()) > 0
    (loss + 0.1 * consistency).backward()
    optimizer.step()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    update_teacher(teacher, student, 0.9)
    params = dict(student.named_parameters())
    moved = False
    for key, value in teacher.state_dict().items():
        if key in params:
            assert torch.allclose(value, ema(before[key], params[key].detach(), 0.9), atol=1e-6), key
            moved |= not torch.allclose(value, params[key])
        else:
            assert torch.equal(value, student.state_dict()[key]), key  # buffers copied
    assert moved


# ------------------------------------------------------------------------------------------- end to end


def _semi_run(tmp_path: Path, epochs: int) -> tuple[Path, Path, Path]:
    """A tiny planned run (``medseg plan --unlabeled``) on 6 labelled 2D cases and 4 unlabelled scans."""
    dataset = write_dataset(tmp_path / "ds", SPEC, n_cases=6, seed=0, layout="msd")
    unlabeled = write_dataset(tmp_path / "u", SPEC, n_cases=4, seed=5, layout="msd") / "imagesTr"
    run = tmp_path / "run"
    options = TrainOptions(
        epochs=epochs, iterations_per_epoch=2, val_every=1, device="cpu", folds=3, deterministic=True
    )
    plans = plan_tiny_run(dataset, run, replace(options, unlabeled=str(unlabeled)))
    assert plans.train.semi_supervised is not None
    semi = replace(plans.train.semi_supervised, batch_size=2)
    save_plans(replace(plans, train=replace(plans.train, semi_supervised=semi)), run / "plans.json")
    return dataset, unlabeled, run


def _one_thread_train(dataset: Path, run: Path, options: TrainOptions) -> None:
    """``train_run`` on one thread (as the forked CLI processes, :func:`run_cli`); the plans are deterministic."""
    before = torch.are_deterministic_algorithms_enabled()
    try:
        train_run(dataset, run, options)
    finally:
        torch.use_deterministic_algorithms(before)


def test_end_to_end_the_teacher_is_validated_and_saved(tmp_path: Path) -> None:
    dataset, unlabeled, run = _semi_run(tmp_path, epochs=2)
    _one_thread_train(dataset, run, TrainOptions(device="cpu", unlabeled=str(unlabeled)))  # the plans' folder
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["consistency_loss"] > 0 and 0 < r["consistency_weight"] <= 0.1 for r in records)
    assert records[0]["consistency_weight"] == pytest.approx(0.1 * math.exp(-5))  # progress 0
    assert len(list((run / "preprocessed" / "unlabeled").glob("*.npz"))) == 4
    last = load_checkpoint(run / "checkpoint_last.pt")
    assert last["ema_step"] == 4 and last["model"].keys() == last["student"].keys()
    assert any(not torch.equal(last["model"][k], last["student"][k]) for k in last["model"])
    # validation used the teacher (checkpoint "model"): its Dice is the logged one
    plans = load_plans(run / "plans.json")
    teacher = network_for(plans)
    teacher.load_state_dict(last["model"])
    from medseg.preprocessing.cache import load_preprocessed

    record = json.loads((run / "dataset.json").read_text())
    val = [load_preprocessed(run / "preprocessed" / f"{i}.npz") for i in record["validation"]]
    dice = validation_dice(teacher, val, plans, torch.device("cpu"))
    assert float(np.nanmean(list(dice.values()))) == pytest.approx(records[-1]["val_dice"])
    assert (run / "metrics.json").is_file()  # prediction of the held-out cases loaded the teacher unchanged


def test_train_refuses_another_unlabeled_folder_than_planned(tmp_path: Path) -> None:
    dataset, _, run = _semi_run(tmp_path, epochs=1)
    with pytest.raises(DataError, match="differs from the run's plans"):
        train_run(dataset, run, TrainOptions(device="cpu", unlabeled=str(tmp_path)))


def test_plans_without_the_field_still_load(tmp_path: Path) -> None:
    fixture = Path(__file__).parents[1] / "fixtures" / "plans_v1.json"
    assert load_plans(fixture).train.semi_supervised is None
    _, unlabeled, run = _semi_run(tmp_path, epochs=1)
    data = json.loads((run / "plans.json").read_text())
    assert data["train"]["semi_supervised"]["unlabeled"] == str(unlabeled)
    del data["train"]["semi_supervised"]
    (run / "plans.json").write_text(json.dumps(data))
    assert load_plans(run / "plans.json").train.semi_supervised is None


def test_resume_after_sigkill_ends_as_an_uninterrupted_run(tmp_path: Path) -> None:
    epochs = 8
    dataset, _, run = _semi_run(tmp_path, epochs=epochs)
    output = tmp_path / "train-output.txt"
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    argv = ["train", str(dataset), "--out", str(run), "--device", "cpu"]
    proc = ctx.Process(target=run_cli, args=(argv, str(output)))
    proc.start()
    last, deadline = run / "checkpoint_last.pt", time.monotonic() + HANG_S
    while not (last.exists() and load_checkpoint(last)["epoch"] >= 2):
        assert proc.exitcode is None, output.read_text()[-3000:]
        assert time.monotonic() < deadline, "training process hung"
        time.sleep(0.005)
    proc.kill()
    proc.join()
    assert proc.exitcode == -9
    killed_at = load_checkpoint(last)["epoch"]
    assert killed_at < epochs
    resumed = ctx.Process(target=run_cli, args=([*argv, "--resume"], str(output)))
    resumed.start()
    resumed.join(HANG_S * 2)
    assert resumed.exitcode == 0, output.read_text()[-3000:]

    whole = tmp_path / "uninterrupted"
    whole.mkdir()
    for name in ("plans.json", "dataset.json"):
        shutil.copy(run / name, whole / name)
    _one_thread_train(dataset, whole, TrainOptions(device="cpu"))
    a, b = load_checkpoint(last), load_checkpoint(whole / "checkpoint_last.pt")
    assert a["epoch"] == b["epoch"] == epochs and a["ema_step"] == b["ema_step"] == epochs * 2
    for key in ("model", "student"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    log = [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert log == list(range(1, epochs + 1))


# ------------------------------------------------------------------------------- bad folders, via the CLI


def _bad_folder(kind: str, tmp_path: Path) -> tuple[Path, Path]:
    """(the --unlabeled folder, the path the error must name)."""
    folder = tmp_path / "unlabeled"
    if kind == "missing":
        return folder, folder
    folder.mkdir()
    if kind == "empty":
        return folder, folder
    if kind == "no images":
        (folder / "notes.txt").write_text("no scans here")
        return folder, folder
    if kind == "dataset root":
        (folder / "dataset.json").write_text("{}")
        return folder, folder
    if kind == "3D volumes":
        volumes = write_dataset(
            tmp_path / "v", SyntheticSpec(ndim=3, shape=(8, 48, 48)), n_cases=1, seed=0, layout="msd"
        )
        shutil.copy(volumes / "imagesTr" / "case_000.nii.gz", folder / "vol.nii.gz")
        return folder, folder / "vol.nii.gz"
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(folder / "rgb.png")  # 3 channels, the run has 1
    return folder, folder / "rgb.png"


@pytest.mark.parametrize("kind", ["missing", "empty", "no images", "dataset root", "3D volumes", "RGB image"])
def test_bad_unlabeled_folder_is_one_line_and_exit_2(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = write_dataset(tmp_path / "ds", SPEC, n_cases=4, seed=0, layout="msd")
    folder, named = _bad_folder(kind, tmp_path)
    run = tmp_path / "run"
    argv = ["medseg", "train", str(dataset), "--out", str(run), "--device", "cpu", "--unlabeled", str(folder)]
    monkeypatch.setattr(sys, "argv", argv)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.strip().startswith(f"error: {named}:"), err
    assert "Traceback" not in err
    assert not run.exists()  # checked before anything is written


def test_find_unlabeled_accepts_a_good_folder(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", SPEC, n_cases=2, seed=0, layout="msd")
    plans = plan_run(dataset, tmp_path / "run", TrainOptions(device="cpu", folds=2))
    cases = find_unlabeled(dataset / "imagesTr", plans.data)
    assert [c.case_id for c in cases] == ["case_000", "case_001"] and all(not c.label for c in cases)
