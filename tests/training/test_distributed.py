"""DDP through torchrun with the gloo backend and 2 CPU processes: the same loss curve as one process with
the same global batch, one checkpoint set, resume after a kill, sharded prediction, one error line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medseg.errors import ConfigError
from medseg.io.images import read_label
from medseg.training.batches import RunIndices

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "medseg"]
MEDSEG = [sys.executable, "-m", "medseg"]


def _env() -> dict[str, str]:
    # one thread per process: two processes on two cores, and no oversubscription when CI runs them
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _run(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, encoding="utf-8", errors="replace", env=_env(), timeout=timeout
    )


def _plan(dataset: Path, run: Path, epochs: int, val_every: int = 1) -> Path:
    done = _run([*MEDSEG, "plan", str(dataset), "--out", str(run), "--device", "cpu", "--epochs", str(epochs)])
    assert done.returncode == 0, done.stderr
    plans = json.loads((run / "plans.json").read_text())
    # a global batch of 2 shared by 2 processes; float32 (no AMP measurement) so both runs compute alike
    plans["train"].update(batch_size=2, iterations_per_epoch=2, amp="off", val_every=val_every, num_workers=0)
    (run / "plans.json").write_text(json.dumps(plans, indent=2))
    return run


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (torchrun starts its workers in sessions of their own, so killing its
    process group does not reach them)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (run / "log.jsonl").read_text().splitlines() if line]


def test_run_indices_share_each_global_batch() -> None:
    single = list(RunIndices(8, 20, batch=4))
    shares = [list(RunIndices(8, 20, batch=4, rank=r, world=2)) for r in range(2)]
    assert shares == [[8, 9, 12, 13, 16, 17], [10, 11, 14, 15, 18, 19]]
    assert sorted(shares[0] + shares[1]) == single and len(RunIndices(8, 20, batch=4, world=2)) == 6
    with pytest.raises(ConfigError, match="a batch of 3 cannot be shared by 2 processes"):
        RunIndices(0, 9, batch=3, world=2)


def test_two_processes_follow_the_single_process_loss_curve(msd_2d: Path, tmp_path: Path) -> None:
    planned = _plan(msd_2d, tmp_path / "planned", epochs=4)
    one, two = (Path(shutil.copytree(planned, tmp_path / name)) for name in ("one", "two"))
    done = _run([*MEDSEG, "train", str(msd_2d), "--out", str(one), "--device", "cpu"])
    assert done.returncode == 0, done.stderr
    done = _run([*TORCHRUN, "train", str(msd_2d), "--out", str(two), "--device", "cpu", "--distributed"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert _losses(two) == pytest.approx(_losses(one), rel=0.02)  # the same patches; only summation order differs
    assert len(_losses(two)) == 4  # one log line per epoch, written by rank 0 only
    assert sorted(p.name for p in two.glob("*.pt")) == ["checkpoint_best.pt", "checkpoint_last.pt"]
    assert (two / "metrics.json").is_file() and done.stdout.count("run folder:") == 1


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds torchrun's workers through /proc (Linux)")
def test_a_killed_distributed_run_resumes_where_it_stopped(msd_2d: Path, tmp_path: Path) -> None:
    run = _plan(msd_2d, tmp_path / "run", epochs=40, val_every=20)
    argv = [*TORCHRUN, "train", str(msd_2d), "--out", str(run), "--device", "cpu", "--distributed"]
    proc = subprocess.Popen(
        argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and len(_losses(run) if (run / "log.jsonl").exists() else []) < 3:
            time.sleep(0.2)
    finally:
        for pid in [proc.pid, *_descendants(proc.pid)]:  # every process at once, as a crash would
            os.kill(pid, signal.SIGKILL)
        proc.wait()
    stopped = len(_losses(run))
    assert 3 <= stopped < 40, "the run was not killed mid-training"
    done = _run([*argv, "--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    epochs = [json.loads(line)["epoch"] for line in (run / "log.jsonl").read_text().splitlines() if line]
    assert epochs == list(range(1, 41))  # each epoch once: none lost, none repeated
    assert sorted(p.name for p in run.glob("*.pt")) == ["checkpoint_best.pt", "checkpoint_last.pt"]


def test_sharded_prediction_equals_single_process_prediction(msd_2d: Path, tmp_path: Path) -> None:
    run = _plan(msd_2d, tmp_path / "run", epochs=1)
    assert _run([*MEDSEG, "train", str(msd_2d), "--out", str(run), "--device", "cpu"]).returncode == 0
    images = msd_2d / "imagesTr"
    one, two = tmp_path / "one", tmp_path / "two"
    assert _run([*MEDSEG, "predict", str(run), str(images), str(one), "--device", "cpu"]).returncode == 0
    done = _run([*TORCHRUN, "predict", str(run), str(images), str(two), "--device", "cpu", "--distributed"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wrote 6 file(s)" in done.stdout and "by 2 processes" in done.stdout
    names = sorted(p.name for p in one.iterdir())
    assert names == sorted(p.name for p in two.iterdir()) and len(names) == 6
    for name in names:
        assert np.array_equal(read_label(one / name)[0], read_label(two / name)[0])


def test_a_bad_dataset_is_one_error_line_from_all_processes(msd_2d: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(msd_2d, tmp_path / "broken"))
    first = sorted((broken / "labelsTr").iterdir())[0]
    first.write_bytes(b"not an image")
    run = tmp_path / "run"
    done = _run([*TORCHRUN, "train", str(broken), "--out", str(run), "--device", "cpu", "--distributed"])
    assert done.returncode != 0 and not run.exists()
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(first) in errors[0], done.stderr[-3000:]


def test_distributed_outside_torchrun_says_how_to_start_it(msd_2d: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in _env().items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    done = subprocess.run(
        [*MEDSEG, "train", str(msd_2d), "--out", str(tmp_path / "run"), "--distributed"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        timeout=120,
    )
    assert done.returncode == 2 and not (tmp_path / "run").exists()
    assert done.stderr.strip() == (
        "error: --distributed needs the environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK missing): start "
        "it as torchrun --nproc-per-node N -m medseg ... --distributed"
    )
